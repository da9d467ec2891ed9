"""ManifestStore and SocialStore over both KV backends."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.cid import chunk_id
from protocol.envelope import seal
from protocol.errors import Reject
from protocol.kinds import Follow, Profile, Reaction, Tombstone, Unfollow
from storage.chunks import PinReason
from storage.keys import Prefix
from storage.kv import Batch
from storage.manifests import DamagedRecord, MissingChunks, Withdrawn, manifest_chunks
from storage.stores import Stores
from tests.factories import NOW_MS, account, fake_video, sealed_manifest


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
        assert stores.manifests.put(message)
        assert not stores.manifests.put(message)  # idempotent
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
        stores.manifests.put(message)
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
    stores.manifests.put(message)
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
        stores.manifests.put(message)


def test_invalid_tombstone_by_another_account(stores: Stores) -> None:
    alice, mallory = account(1), account(3)
    chunks = fake_video(b"target")
    put_chunks(stores, chunks)
    message = sealed_manifest(alice, chunks)
    stores.manifests.put(message)
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
