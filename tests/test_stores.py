"""ManifestStore and SocialStore over both KV backends."""

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal
from protocol.errors import Reject
from protocol.kinds import Follow, Profile, Reaction, Tombstone, Unfollow, VideoManifest, View
from storage.chunks import PinReason
from storage.errors import (
    DamagedRecord,
    ManifestError,
    MissingChunks,
    QuotaExceeded,
    StoreError,
    Withdrawn,
)
from storage.keys import META_SCHEMA, Prefix, meta_key, u64
from storage.keys import key as store_key
from storage.kv import Batch
from storage.manifests import manifest_chunks
from storage.social import ViewTotal
from storage.stores import Stores
from tests.factories import NOW_MS, account, fake_video, manifest_for, sealed_manifest


@pytest.fixture(params=["memory", "leveldb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    s = Stores.memory() if request.param == "memory" else Stores.open(tmp_path / "db")
    yield s
    s.close()


def put_chunks(stores: Stores, chunks: list[bytes]) -> None:
    for data in chunks:
        stores.chunks.put(chunk_id(data), data)


def test_manifest_round_trip_and_indexes(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    messages = []
    for i, key in enumerate([alice, bob, alice]):
        chunks = fake_video(b"v%d" % i)
        put_chunks(stores, chunks)
        message = sealed_manifest(key, chunks, created_ms=NOW_MS + i, title=f"video {i}")
        assert stores.manifests.put(message, pin=PinReason.SEEDING)
        assert not stores.manifests.put(message, pin=PinReason.SEEDING)  # idempotent
        messages.append(message)
    got = stores.manifests.get(messages[0].id)
    assert got is not None and got.message.raw == messages[0].raw
    assert [m.id for m in stores.manifests.recent()] == [m.id for m in reversed(messages)]
    assert [m.id for m in stores.manifests.by_creator(alice.public_key)] == [
        messages[2].id,
        messages[0].id,
    ]
    assert stores.manifests.count() == 3
    assert stores.manifests.resolve(messages[1].id.hex()[:12]) == messages[1].id


def test_invalid_manifest_before_its_chunks(stores: Stores) -> None:
    chunks = fake_video(b"partial")
    put_chunks(stores, chunks[:-1])
    message = sealed_manifest(account(1), chunks)
    with pytest.raises(MissingChunks):
        stores.manifests.put(message, pin=PinReason.SEEDING)
    assert not stores.manifests.has(message.id)
    assert stores.manifests.recent() == []


def test_own_manifest_pins_its_chunks(stores: Stores) -> None:
    chunks = fake_video(b"own")
    put_chunks(stores, chunks)
    message = sealed_manifest(account(1), chunks)
    stores.manifests.put(message, pin=PinReason.OWN)
    for cid in manifest_chunks(message.record):  # type: ignore[arg-type]
        assert PinReason.OWN in stores.chunks.pins(cid)


def test_damaged_manifest_is_reported_on_read(stores: Stores) -> None:
    chunks = fake_video(b"damage")
    put_chunks(stores, chunks)
    message = sealed_manifest(account(1), chunks)
    stores.manifests.put(message, pin=PinReason.SEEDING)
    key = bytes([Prefix.MANIFEST]) + message.id
    raw = bytearray(message.raw)
    raw[len(raw) // 2] ^= 1
    batch = Batch()
    batch.put(key, bytes(raw))
    stores.kv.write(batch)
    with pytest.raises(DamagedRecord):
        stores.manifests.get(message.id)


def test_tombstone_withdraws_and_blocks_the_video(stores: Stores) -> None:
    alice = account(1)
    chunks = fake_video(b"withdrawn")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    stores.manifests.put(message, pin=PinReason.OWN)
    tomb = seal(
        alice, Tombstone(author=alice.public_key, created_ms=NOW_MS, manifest=message.id, reason="")
    )
    assert stores.manifests.withdraw(tomb)
    assert stores.manifests.get(message.id) is None
    assert stores.manifests.recent() == []
    assert all(not stores.chunks.pins(c) for c in manifest_chunks(message.record))  # type: ignore[arg-type]
    with pytest.raises(Withdrawn):
        stores.manifests.put(message, pin=PinReason.OWN)


def test_invalid_tombstone_by_another_account(stores: Stores) -> None:
    alice, mallory = account(1), account(3)
    chunks = fake_video(b"target")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    stores.manifests.put(message, pin=PinReason.SEEDING)
    tomb = seal(
        mallory,
        Tombstone(author=mallory.public_key, created_ms=NOW_MS, manifest=message.id, reason=""),
    )
    with pytest.raises(Reject):
        stores.manifests.withdraw(tomb)
    assert stores.manifests.get(message.id) is not None


def test_follow_state_is_last_write_wins_in_any_order(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    events = [
        seal(alice, Follow(author=alice.public_key, created_ms=NOW_MS, target=bob.public_key)),
        seal(
            alice, Unfollow(author=alice.public_key, created_ms=NOW_MS + 1, target=bob.public_key)
        ),
        seal(alice, Follow(author=alice.public_key, created_ms=NOW_MS + 2, target=bob.public_key)),
    ]
    # Newest first: only the first application changes anything.
    assert stores.social.apply(events[2])
    assert not stores.social.apply(events[0])
    assert not stores.social.apply(events[1])
    assert not stores.social.apply(events[2])
    assert stores.social.is_following(alice.public_key, bob.public_key)
    assert stores.social.following(alice.public_key) == [bob.public_key]
    assert stores.social.followers(bob.public_key) == [alice.public_key]
    late_unfollow = seal(
        alice, Unfollow(author=alice.public_key, created_ms=NOW_MS + 3, target=bob.public_key)
    )
    assert stores.social.apply(late_unfollow)
    assert not stores.social.is_following(alice.public_key, bob.public_key)
    assert stores.social.followers(bob.public_key) == []


def test_reactions_and_profiles(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    video = bytes(32)
    like = seal(
        bob, Reaction(author=bob.public_key, created_ms=NOW_MS, manifest=video, reaction="like")
    )
    assert stores.social.apply(like)
    assert stores.social.likes(video) == [bob.public_key]
    unlike = seal(
        bob,
        Reaction(author=bob.public_key, created_ms=NOW_MS + 5, manifest=video, reaction="unlike"),
    )
    assert stores.social.apply(unlike)
    assert stores.social.likes(video) == []
    old = seal(
        alice, Profile(author=alice.public_key, created_ms=NOW_MS, name="old", bio="", avatar=b"")
    )
    new = seal(
        alice,
        Profile(author=alice.public_key, created_ms=NOW_MS + 1, name="new", bio="", avatar=b""),
    )
    assert stores.social.apply(new)
    assert not stores.social.apply(old)
    profile = stores.social.profile(alice.public_key)
    assert profile is not None and profile.name == "new"


def test_own_changes_within_one_millisecond_apply_in_order(stores: Stores) -> None:
    """A like then an unlike (a follow then an unfollow) made within one millisecond: each
    is stamped past the last, so the later one wins whatever their message ids."""
    bob, carol, video = account(2), account(3), bytes(32)
    social = stores.social
    for i in range(20):  # message ids order at random: twenty pairs all go the right way
        now = NOW_MS + 100 * i
        like_ms = social.reaction_stamp_ms(bob.public_key, video, now)
        assert like_ms == now  # the last unlike is older than now
        stores.social.apply(
            seal(
                bob,
                Reaction(
                    author=bob.public_key, created_ms=like_ms, manifest=video, reaction="like"
                ),
            )
        )
        unlike_ms = social.reaction_stamp_ms(bob.public_key, video, now)
        assert unlike_ms == like_ms + 1
        assert social.apply(
            seal(
                bob,
                Reaction(
                    author=bob.public_key, created_ms=unlike_ms, manifest=video, reaction="unlike"
                ),
            )
        )
        assert not social.is_liking(bob.public_key, video)
        follow_ms = social.follow_stamp_ms(bob.public_key, carol.public_key, now)
        social.apply(
            seal(bob, Follow(author=bob.public_key, created_ms=follow_ms, target=carol.public_key))
        )
        unfollow_ms = social.follow_stamp_ms(bob.public_key, carol.public_key, now)
        assert unfollow_ms == follow_ms + 1
        assert social.apply(
            seal(
                bob,
                Unfollow(author=bob.public_key, created_ms=unfollow_ms, target=carol.public_key),
            )
        )
        assert not social.is_following(bob.public_key, carol.public_key)
    # A clock that moved on is used as it is.
    assert social.reaction_stamp_ms(bob.public_key, video, NOW_MS + 10**6) == NOW_MS + 10**6


def test_views_add_up_and_each_message_counts_once(stores: Stores) -> None:
    bob, video = account(2), bytes(32)

    def view(ms: int, watched_ms: int) -> SignedMessage:
        record = View(author=bob.public_key, created_ms=ms, manifest=video, watched_ms=watched_ms)
        return seal(bob, record)

    first, rewatch, older = view(NOW_MS, 4000), view(NOW_MS + 9, 1500), view(NOW_MS - 5, 600)
    assert stores.social.watched(bob.public_key, video) is None
    assert stores.social.apply(first)
    assert not stores.social.apply(first)  # the same message again counts once
    assert stores.social.apply(rewatch)
    assert stores.social.apply(older)  # an older receipt still adds; the last time stays
    assert not stores.social.apply(rewatch)
    assert stores.social.watched(bob.public_key, video) == ViewTotal(3, 6100, NOW_MS + 9)
    assert stores.graph.viewed(bob.public_key, 10) == [(video, NOW_MS + 9)]
    # The same watch told twice is two messages (another created_ms): it adds up.
    assert stores.social.apply(view(NOW_MS + 10, 1500))
    assert stores.social.watched(bob.public_key, video) == ViewTotal(4, 7600, NOW_MS + 10)


def test_invalid_stored_view_entries_are_refused(stores: Stores) -> None:
    bob, video = account(2), bytes(32)
    record = View(author=bob.public_key, created_ms=NOW_MS, manifest=video, watched_ms=10)
    assert stores.social.apply(seal(bob, record))
    total = store_key(Prefix.VIEW_TOTAL, bob.public_key, video)
    for damaged in (b"", bytes(24), u64(2) + u64(1) + u64(NOW_MS)):
        batch = Batch()
        batch.put(total, damaged)
        stores.kv.write(batch)
        with pytest.raises(DamagedRecord, match="damaged view total"):
            stores.social.watched(bob.public_key, video)
        with pytest.raises(DamagedRecord):
            stores.social.apply(seal(bob, dataclasses.replace(record, created_ms=NOW_MS + 1)))


def tombstone(key: AccountKey, mid: bytes) -> SignedMessage:
    return seal(key, Tombstone(author=key.public_key, created_ms=NOW_MS, manifest=mid, reason=""))


def test_a_forged_tombstone_never_hides_a_video(stores: Stores) -> None:
    alice, mallory = account(1), account(3)
    chunks = fake_video(b"pre-empted")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    # Mallory's tombstone arrives before the video: stored under Mallory, harmless.
    assert stores.manifests.withdraw(tombstone(mallory, message.id))
    assert stores.manifests.put(message, pin=PinReason.SEEDING)
    assert stores.manifests.get(message.id) is not None
    # Alice's own tombstone still withdraws it.
    assert stores.manifests.withdraw(tombstone(alice, message.id))
    assert stores.manifests.get(message.id) is None


def test_an_early_tombstone_by_the_author_blocks_the_video(stores: Stores) -> None:
    alice = account(1)
    chunks = fake_video(b"early")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    assert stores.manifests.withdraw(tombstone(alice, message.id))
    with pytest.raises(Withdrawn):
        stores.manifests.put(message, pin=PinReason.SEEDING)


def test_withdrawing_keeps_pins_of_chunks_another_video_names(stores: Stores) -> None:
    alice = account(1)
    chunks = fake_video(b"shared")
    put_chunks(stores, chunks)
    first = sealed_manifest(alice, chunks, title="first")
    second = sealed_manifest(alice, chunks, title="second")
    stores.manifests.put(first, pin=PinReason.OWN)
    stores.manifests.put(second, pin=PinReason.OWN)
    stores.manifests.withdraw(tombstone(alice, first.id))
    assert all(PinReason.OWN in stores.chunks.pins(c) for c in chunks_of(second))
    stores.manifests.withdraw(tombstone(alice, second.id))
    assert all(not stores.chunks.pins(c) for c in chunks_of(second))


def test_withdrawing_a_video_with_a_chunk_gone(stores: Stores) -> None:
    alice = account(1)
    chunks = fake_video(b"gone")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    stores.manifests.put(message, pin=PinReason.OWN)
    stores.chunks.delete(chunk_id(chunks[-1]))
    assert stores.manifests.withdraw(tombstone(alice, message.id))
    assert stores.manifests.get(message.id) is None


def test_the_quota_never_evicts_a_stored_videos_chunks(tmp_path: Path) -> None:
    chunks = fake_video(b"quota")
    size = sum(map(len, chunks))
    with Stores.open(tmp_path / "db", quota_bytes=size + 10) as stores:
        put_chunks(stores, chunks)
        message = sealed_manifest(account(1), chunks)
        stores.manifests.put(message, pin=PinReason.SEEDING)
        with pytest.raises(QuotaExceeded):
            stores.chunks.put(chunk_id(b"x" * 100), b"x" * 100)
        for cid in chunks_of(message):
            stores.chunks.get(cid)


def test_invalid_manifest_with_wrong_chunk_sizes(stores: Stores) -> None:
    alice = account(1)
    chunks = fake_video(b"sizes")
    put_chunks(stores, chunks)
    manifest = manifest_for(alice, chunks)
    wrong = dataclasses.replace(
        manifest, thumbnail=dataclasses.replace(manifest.thumbnail, size=1 + len(chunks[0]))
    )
    with pytest.raises(MissingChunks, match="the manifest says"):
        stores.manifests.put(seal(alice, wrong), pin=PinReason.SEEDING)
    assert stores.manifests.count() == 0


def test_invalid_message_bytes_are_not_stored(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    chunks = fake_video(b"forged")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    forged = dataclasses.replace(message, raw=message.raw[:-1] + bytes([message.raw[-1] ^ 1]))
    with pytest.raises(ManifestError, match="invalid manifest"):
        stores.manifests.put(forged, pin=PinReason.SEEDING)
    assert stores.manifests.count() == 0
    follow = seal(alice, Follow(author=alice.public_key, created_ms=NOW_MS, target=bob.public_key))
    bad = dataclasses.replace(follow, raw=follow.raw[:-1] + bytes([follow.raw[-1] ^ 1]))
    with pytest.raises(StoreError, match="invalid follow"):
        stores.social.apply(bad)
    assert not stores.social.is_following(alice.public_key, bob.public_key)


def test_a_crashed_publish_is_undone_on_open(tmp_path: Path) -> None:
    alice = account(1)
    chunks = fake_video(b"crashed")
    message = sealed_manifest(alice, chunks)
    kept = chunk_id(chunks[0])
    with Stores.open(tmp_path / "db") as stores:
        stores.chunks.put(kept, chunks[0], pin=PinReason.WATCHED)  # held for another reason
        stores.manifests.begin(message)
        for data in chunks:
            stores.chunks.put(chunk_id(data), data, pin=PinReason.OWN)
        # The process dies here, before the manifest's batch.
    with Stores.open(tmp_path / "db") as stores:
        assert stores.manifests.count() == 0
        assert stores.chunks.pins(kept) == {PinReason.WATCHED}
        assert [cid for cid in stores.chunks.ids()] == [kept]
        assert stores.chunks.used_bytes == len(chunks[0])
        assert not list(stores.kv.iterate(bytes([Prefix.MANIFEST_PENDING])))


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with Stores.open(tmp_path / "db") as stores:
        batch = Batch()
        batch.put(meta_key(META_SCHEMA), b"99")
        stores.kv.write(batch)
    with pytest.raises(StoreError, match="newer toktok"):
        Stores.open(tmp_path / "db")


def chunks_of(message: SignedMessage) -> list[bytes]:
    manifest = message.record
    assert isinstance(manifest, VideoManifest)
    return manifest_chunks(manifest)


def test_pinning_videos_while_another_thread_writes_chunks(stores: Stores) -> None:
    # A download writes chunks from a worker thread while the node pins and unpins videos:
    # neither may meet the other's unwritten batch (BatchConflict).
    key = account(1)
    chunks = fake_video(b"pinned", segments=8)
    put_chunks(stores, chunks)
    message = sealed_manifest(key, chunks)
    stores.manifests.put(message, pin=None)
    others = [bytes([i]) * 2000 for i in range(200)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for data in others:
                stores.chunks.put_verified(chunk_id(data), data)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        stores.manifests.pin_video(message.id, PinReason.WATCHED)
        stores.manifests.unpin_video(message.id, PinReason.WATCHED)
    thread.join()
    assert errors == []
    assert all(stores.chunks.has(chunk_id(data)) for data in others)
