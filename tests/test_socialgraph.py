"""SocialGraph: the feed's view of follows, likes, views and videos, kept incrementally, over
both KV backends; the incremental indexes equal a full rebuild from the registers and view
receipts."""

import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal
from protocol.kinds import Follow, Reaction, Tombstone, Unfollow, View
from protocol.ranking import SocialView, VideoInfo
from storage import socialgraph
from storage.chunks import PinReason
from storage.errors import StoreError
from storage.keys import META_SCHEMA, META_SOCIAL_GRAPH, Prefix, meta_key
from storage.kv import KV, Batch, MemoryKV
from storage.social import INDEX_PREFIXES, SocialStore, ViewTotal
from storage.socialgraph import SocialGraph
from storage.stores import SCHEMA_VERSION, Stores
from tests.factories import NOW_MS, account, fake_video, sealed_manifest

GRAPH_PREFIXES = (*INDEX_PREFIXES, Prefix.MANIFEST_INFO)
"""Every prefix SocialGraph.rebuild recomputes."""


@pytest.fixture(params=["memory", "leveldb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    s = Stores.memory() if request.param == "memory" else Stores.open(tmp_path / "db")
    yield s
    s.close()


def follow(author: AccountKey, target: AccountKey, ms: int, *, on: bool = True) -> SignedMessage:
    cls = Follow if on else Unfollow
    return seal(author, cls(author=author.public_key, created_ms=ms, target=target.public_key))


def react(author: AccountKey, video: bytes, ms: int, *, like: bool = True) -> SignedMessage:
    reaction = "like" if like else "unlike"
    record = Reaction(author=author.public_key, created_ms=ms, manifest=video, reaction=reaction)
    return seal(author, record)


def watch(viewer: AccountKey, video: bytes, ms: int, watched_ms: int = 1000) -> SignedMessage:
    record = View(author=viewer.public_key, created_ms=ms, manifest=video, watched_ms=watched_ms)
    return seal(viewer, record)


def video_id(n: int) -> bytes:
    return bytes([n]) * 32


def dump(kv: KV) -> dict[bytes, bytes]:
    return dict(kv.iterate(b""))


def rebuilt_copy(kv: KV) -> MemoryKV:
    """A copy of ``kv`` without any graph index, then rebuilt from its registers."""
    copy = MemoryKV()
    batch = Batch()
    for key, value in kv.iterate(b""):
        if key[0] not in GRAPH_PREFIXES and key != meta_key(META_SOCIAL_GRAPH):
            batch.put(key, value)
    copy.write(batch)
    SocialGraph(copy, SocialStore(copy)).rebuild()
    return copy


def apply_all(stores: Stores, messages: list[SignedMessage]) -> None:
    for message in messages:
        stores.social.apply(message)


# ---------------------------------------------------------------------------- SocialView


def test_the_graph_is_the_rankings_social_view(stores: Stores) -> None:
    view: SocialView = stores.graph  # mypy checks the structure
    assert view.following(account(1).public_key, 10) == []
    assert view.video(video_id(1)) is None


def test_following_is_newest_first_and_limited(stores: Stores) -> None:
    alice, others = account(1), [account(10 + i) for i in range(5)]
    messages = [follow(alice, b, NOW_MS + i) for i, b in enumerate(others)]
    random.Random(1).shuffle(messages)
    apply_all(stores, messages)
    graph = stores.graph
    newest_first = [b.public_key for b in reversed(others)]
    assert graph.following(alice.public_key, 10) == newest_first
    assert graph.following(alice.public_key, 3) == newest_first[:3]
    assert graph.following(alice.public_key, 0) == []
    assert graph.following(alice.public_key, -1) == []
    assert graph.following(others[0].public_key, 10) == []
    # Unfollowing drops the entry; following again moves it to the front.
    assert stores.social.apply(follow(alice, others[3], NOW_MS + 9, on=False))
    assert stores.social.apply(follow(alice, others[0], NOW_MS + 10))
    expected = [others[0], others[4], others[2], others[1]]
    assert graph.following(alice.public_key, 10) == [b.public_key for b in expected]


def test_liked_is_newest_first_with_times(stores: Stores) -> None:
    bob = account(2)
    apply_all(stores, [react(bob, video_id(i), NOW_MS + 10 * i) for i in (3, 1, 2)])
    graph = stores.graph
    assert graph.liked(bob.public_key, 10) == [
        (video_id(3), NOW_MS + 30),
        (video_id(2), NOW_MS + 20),
        (video_id(1), NOW_MS + 10),
    ]
    assert graph.liked(bob.public_key, 1) == [(video_id(3), NOW_MS + 30)]
    assert stores.social.apply(react(bob, video_id(3), NOW_MS + 40, like=False))
    assert [v for v, _ in graph.liked(bob.public_key, 10)] == [video_id(2), video_id(1)]


def test_viewed_is_most_recently_watched_first_and_rewatches_add_up(stores: Stores) -> None:
    bob = account(2)
    apply_all(stores, [watch(bob, video_id(i), NOW_MS + 10 * i, 100 * i) for i in (3, 1, 2)])
    graph = stores.graph
    assert graph.viewed(bob.public_key, 10) == [
        (video_id(3), NOW_MS + 30),
        (video_id(2), NOW_MS + 20),
        (video_id(1), NOW_MS + 10),
    ]
    assert graph.viewed(bob.public_key, 1) == [(video_id(3), NOW_MS + 30)]
    assert graph.viewed(bob.public_key, 0) == []
    assert graph.viewed(account(1).public_key, 10) == []
    # A rewatch moves the video to the front and adds up; an older receipt only adds up.
    assert stores.social.apply(watch(bob, video_id(1), NOW_MS + 40, 250))
    assert stores.social.apply(watch(bob, video_id(2), NOW_MS + 5, 50))
    assert [v for v, _ in graph.viewed(bob.public_key, 10)] == [video_id(i) for i in (1, 3, 2)]
    assert graph.watched(bob.public_key, video_id(1)) == ViewTotal(2, 350, NOW_MS + 40)
    assert graph.watched(bob.public_key, video_id(2)) == ViewTotal(2, 250, NOW_MS + 20)
    assert graph.watched(bob.public_key, video_id(9)) is None
    # Views are not likes.
    assert graph.liked(bob.public_key, 10) == []
    assert graph.like_count(video_id(1)) == 0


def test_likers_and_like_count(stores: Stores) -> None:
    video = video_id(7)
    fans = [account(20 + i) for i in range(4)]
    apply_all(stores, [react(fan, video, NOW_MS + i) for i, fan in enumerate(fans)])
    graph = stores.graph
    assert graph.likers(video, 10) == [fan.public_key for fan in reversed(fans)]
    assert graph.likers(video, 2) == [fans[3].public_key, fans[2].public_key]
    assert graph.like_count(video) == 4
    # A second like by the same account counts once and moves it to its new time.
    assert stores.social.apply(react(fans[0], video, NOW_MS + 9))
    assert graph.like_count(video) == 4
    assert graph.likers(video, 1) == [fans[0].public_key]
    # An older unlike changes nothing; a newer one takes the like back.
    assert not stores.social.apply(react(fans[1], video, NOW_MS, like=False))
    assert stores.social.apply(react(fans[1], video, NOW_MS + 20, like=False))
    assert graph.like_count(video) == 3
    assert fans[1].public_key not in graph.likers(video, 10)
    for fan in (fans[0], fans[2], fans[3]):
        assert stores.social.apply(react(fan, video, NOW_MS + 30, like=False))
    assert graph.like_count(video) == 0
    assert graph.likers(video, 10) == []
    assert list(stores.kv.iterate(bytes([Prefix.LIKE_COUNT]))) == []  # never a zero count


def test_is_liking_reads_the_latest_reaction(stores: Stores) -> None:
    fan, other, video = account(20), account(21), video_id(7)
    assert not stores.social.is_liking(fan.public_key, video)
    stores.social.apply(react(fan, video, NOW_MS + 1))
    assert stores.social.is_liking(fan.public_key, video)
    assert not stores.social.is_liking(other.public_key, video)
    assert not stores.social.is_liking(fan.public_key, video_id(8))
    # An older unlike changes nothing; a newer one takes the like back.
    stores.social.apply(react(fan, video, NOW_MS, like=False))
    assert stores.social.is_liking(fan.public_key, video)
    stores.social.apply(react(fan, video, NOW_MS + 2, like=False))
    assert not stores.social.is_liking(fan.public_key, video)


def test_videos_by_and_video_read_the_manifest_indexes(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    messages = [
        sealed_manifest(alice, fake_video(b"v%d" % i), created_ms=NOW_MS + i) for i in range(4)
    ]
    for message in reversed(messages):
        stores.manifests.put(message, pin=None)
    graph = stores.graph
    infos = [VideoInfo(m.id, alice.public_key, NOW_MS + i) for i, m in enumerate(messages)]
    assert graph.videos_by(alice.public_key, 10) == infos[::-1]
    assert graph.videos_by(alice.public_key, 2) == [infos[3], infos[2]]
    assert graph.videos_by(bob.public_key, 10) == []
    assert graph.video(messages[1].id) == infos[1]
    assert graph.video(video_id(9)) is None


def test_withdrawn_videos_disappear(stores: Stores) -> None:
    alice = account(1)
    kept = sealed_manifest(alice, fake_video(b"kept"), created_ms=NOW_MS)
    gone = sealed_manifest(alice, fake_video(b"gone"), created_ms=NOW_MS + 1)
    for message in (kept, gone):
        stores.manifests.put(message, pin=None)
    tomb = Tombstone(author=alice.public_key, created_ms=NOW_MS + 2, manifest=gone.id, reason="")
    assert stores.manifests.withdraw(seal(alice, tomb))
    graph = stores.graph
    assert graph.video(gone.id) is None
    assert graph.videos_by(alice.public_key, 10) == [VideoInfo(kept.id, alice.public_key, NOW_MS)]
    # A tombstone that came first keeps the video out when it arrives.
    early = sealed_manifest(alice, fake_video(b"early"), created_ms=NOW_MS + 3)
    tomb = Tombstone(author=alice.public_key, created_ms=NOW_MS + 4, manifest=early.id, reason="")
    stores.manifests.withdraw(seal(alice, tomb))
    with pytest.raises(StoreError):
        stores.manifests.put(early, pin=None)
    assert graph.video(early.id) is None
    assert len(graph.videos_by(alice.public_key, 10)) == 1


def test_a_like_of_a_video_not_yet_known(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    chunks = fake_video(b"later")
    message = sealed_manifest(alice, chunks)
    stores.social.apply(react(bob, message.id, NOW_MS + 5))
    assert stores.graph.liked(bob.public_key, 10) == [(message.id, NOW_MS + 5)]
    assert stores.graph.video(message.id) is None
    for data in chunks:
        stores.chunks.put(chunk_id(data), data)
    stores.manifests.put(message, pin=PinReason.OWN)
    assert stores.graph.video(message.id) == VideoInfo(message.id, alice.public_key, NOW_MS)


def test_followers_in_id_order_and_limited(stores: Stores) -> None:
    star = account(1)
    fans = [account(30 + i) for i in range(5)]
    apply_all(stores, [follow(fan, star, NOW_MS) for fan in fans])
    ids = sorted(fan.public_key for fan in fans)
    assert stores.graph.followers(star.public_key, 10) == ids
    assert stores.graph.followers(star.public_key, 2) == ids[:2]
    stores.social.apply(follow(fans[0], star, NOW_MS + 1, on=False))
    assert fans[0].public_key not in stores.graph.followers(star.public_key, 10)


def test_ties_on_created_ms_go_to_the_greater_id(stores: Stores) -> None:
    alice, bob = account(1), account(2)
    both = [follow(alice, bob, NOW_MS), follow(alice, bob, NOW_MS, on=False)]
    winner = max(both, key=lambda m: m.id)
    for order in (both, both[::-1]):
        s = Stores.memory()
        apply_all(s, order)
        following = [bob.public_key] if isinstance(winner.record, Follow) else []
        assert s.graph.following(alice.public_key, 10) == following
        assert dump(s.kv) == dump(rebuilt_copy(s.kv))
        s.close()


def test_invalid_ids_are_refused(stores: Stores) -> None:
    graph, short = stores.graph, b"\x01" * 31
    calls: list[Callable[[], object]] = [
        lambda: graph.following(short, 10),
        lambda: graph.liked(short, 10),
        lambda: graph.viewed(short, 10),
        lambda: graph.watched(short, video_id(1)),
        lambda: graph.watched(account(1).public_key, short),
        lambda: graph.likers(short, 10),
        lambda: graph.like_count(short),
        lambda: graph.videos_by(short, 10),
        lambda: graph.video(short),
        lambda: graph.followers(short, 10),
        lambda: graph.block(short, account(1).public_key),
        lambda: graph.block(account(1).public_key, short),
        lambda: graph.unblock(short, account(1).public_key),
        lambda: graph.blocked(short),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="32 bytes"):
            call()


# ---------------------------------------------------------------------------- blocks


def test_blocks_are_per_viewer_and_local(stores: Stores) -> None:
    alice, bob, carol = (account(n).public_key for n in (1, 2, 3))
    graph = stores.graph
    before = {k: v for k, v in dump(stores.kv).items() if k[0] != Prefix.SOCIAL_BLOCK}
    assert graph.block(alice, bob)
    assert not graph.block(alice, bob)
    assert graph.block(alice, carol)
    assert graph.blocked(alice) == frozenset({bob, carol})
    assert graph.blocked(bob) == frozenset()
    # Nothing but the block list changed: no message, no sync item.
    after = {k: v for k, v in dump(stores.kv).items() if k[0] != Prefix.SOCIAL_BLOCK}
    assert after == before
    assert graph.unblock(alice, bob)
    assert not graph.unblock(alice, bob)
    assert graph.blocked(alice) == frozenset({carol})


def test_invalid_block_of_oneself(stores: Stores) -> None:
    alice = account(1).public_key
    for change in (stores.graph.block, stores.graph.unblock):
        with pytest.raises(ValueError, match=socialgraph.SELF_BLOCK):
            change(alice, alice)
    assert stores.graph.blocked(alice) == frozenset()


def test_invalid_block_beyond_the_limit(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socialgraph, "BLOCKS_MAX", 2)
    viewer = account(1).public_key
    assert stores.graph.block(viewer, account(2).public_key)
    assert stores.graph.block(viewer, account(3).public_key)
    with pytest.raises(StoreError, match="at most 2"):
        stores.graph.block(viewer, account(4).public_key)
    assert len(stores.graph.blocked(viewer)) == 2


# ---------------------------------------------------------------------------- incremental


@dataclass(frozen=True)
class Event:
    kind: str  # "follow", "unfollow", "like", "unlike", "view"
    author: int
    target: int  # an account number, or a video number
    ms: int


ACCOUNTS = [account(100 + n) for n in range(4)]
VIDEO_KINDS = ("like", "unlike", "view")
"""Kinds whose target is a video number rather than an account number."""

events = st.builds(
    Event,
    kind=st.sampled_from(["follow", "unfollow", "like", "unlike", "view"]),
    author=st.integers(0, 3),
    target=st.integers(0, 3),
    ms=st.integers(0, 5),  # few times, so ties are common
).map(lambda e: e if e.kind in VIDEO_KINDS or e.author != e.target else _other(e))


def _other(event: Event) -> Event:
    """The event with another target: an account does not follow itself."""
    return Event(event.kind, event.author, (event.author + 1) % 4, event.ms)


def sealed(event: Event) -> SignedMessage:
    author, ms = ACCOUNTS[event.author], NOW_MS + event.ms
    if event.kind in ("follow", "unfollow"):
        return follow(author, ACCOUNTS[event.target], ms, on=event.kind == "follow")
    if event.kind == "view":
        # Two views of the same (viewer, video, ms) are one message: the same watch.
        return watch(author, video_id(event.target), ms, 1 + 7 * event.ms)
    return react(author, video_id(event.target), ms, like=event.kind == "like")


def expected_view(messages: list[SignedMessage]) -> dict[str, object]:
    """What the graph must answer, computed from the messages alone (last write wins for
    follows and reactions; every distinct view message adds up)."""
    winners: dict[tuple[str, bytes, bytes], SignedMessage] = {}
    views: dict[tuple[bytes, bytes], dict[bytes, View]] = {}  # (viewer, video) -> id -> view
    for m in messages:
        r = m.record
        if isinstance(r, View):
            views.setdefault((r.author, r.manifest), {})[m.id] = r
            continue
        assert isinstance(r, Follow | Unfollow | Reaction)
        pair = (
            ("f", r.author, r.target)
            if isinstance(r, Follow | Unfollow)
            else ("r", r.author, r.manifest)
        )
        held = winners.get(pair)
        if held is None or (held.record.created_ms, held.id) < (r.created_ms, m.id):
            winners[pair] = m
    following: dict[bytes, list[tuple[int, bytes]]] = {}
    liked: dict[bytes, list[tuple[int, bytes]]] = {}
    likers: dict[bytes, list[tuple[int, bytes]]] = {}
    for (_, author, target), m in winners.items():
        r, ms = m.record, m.record.created_ms
        if isinstance(r, Follow):
            following.setdefault(author, []).append((-ms, target))
        elif isinstance(r, Reaction) and r.reaction == "like":
            liked.setdefault(author, []).append((-ms, target))
            likers.setdefault(target, []).append((-ms, author))
    viewed: dict[bytes, list[tuple[int, bytes]]] = {}
    totals: dict[tuple[bytes, bytes], ViewTotal] = {}
    for (viewer, video), receipts in views.items():
        last_ms = max(r.created_ms for r in receipts.values())
        watched_ms = sum(r.watched_ms for r in receipts.values())
        totals[viewer, video] = ViewTotal(len(receipts), watched_ms, last_ms)
        viewed.setdefault(viewer, []).append((-last_ms, video))
    view: dict[str, object] = {}
    for key in ACCOUNTS:
        a = key.public_key
        view[f"following {a.hex()}"] = [t for _, t in sorted(following.get(a, []))]
        view[f"liked {a.hex()}"] = [(v, -ms) for ms, v in sorted(liked.get(a, []))]
        view[f"viewed {a.hex()}"] = [(v, -ms) for ms, v in sorted(viewed.get(a, []))]
        for n in range(4):
            view[f"watched {a.hex()} {n}"] = totals.get((a, video_id(n)))
    for n in range(4):
        v = video_id(n)
        view[f"likers {v.hex()}"] = [a for _, a in sorted(likers.get(v, []))]
        view[f"count {v.hex()}"] = len(likers.get(v, []))
    return view


def actual_view(graph: SocialGraph) -> dict[str, object]:
    view: dict[str, object] = {}
    for key in ACCOUNTS:
        a = key.public_key
        view[f"following {a.hex()}"] = graph.following(a, 100)
        view[f"liked {a.hex()}"] = graph.liked(a, 100)
        view[f"viewed {a.hex()}"] = graph.viewed(a, 100)
        for n in range(4):
            view[f"watched {a.hex()} {n}"] = graph.watched(a, video_id(n))
    for n in range(4):
        v = video_id(n)
        view[f"likers {v.hex()}"] = graph.likers(v, 100)
        view[f"count {v.hex()}"] = graph.like_count(v)
    return view


def check_incremental(stores: Stores, arrivals: list[SignedMessage]) -> None:
    apply_all(stores, arrivals)
    assert actual_view(stores.graph) == expected_view(arrivals)
    assert dump(stores.kv) == dump(rebuilt_copy(stores.kv))


@st.composite
def arrivals(draw: st.DrawFn) -> list[Event]:
    """Events in a random arrival order, some of them arriving more than once."""
    batch = draw(st.lists(events, min_size=1, max_size=40))
    order = draw(st.permutations(batch))
    again = draw(st.lists(st.sampled_from(batch), max_size=5))
    return order + again


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_incremental_indexes_equal_a_rebuild_memory(order: list[Event]) -> None:
    with Stores.memory() as stores:
        check_incremental(stores, [sealed(e) for e in order])


@settings(max_examples=20, deadline=None)
@given(arrivals())
def test_incremental_indexes_equal_a_rebuild_leveldb(order: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Stores.open(Path(tmp) / "db") as stores:
        check_incremental(stores, [sealed(e) for e in order])


# ---------------------------------------------------------------------------- upgrade


def fill(stores: Stores) -> None:
    """Follows, likes, unlikes, views and videos, one of them withdrawn."""
    keys = [account(40 + i) for i in range(6)]
    messages = [
        follow(a, b, NOW_MS + i + j)
        for i, a in enumerate(keys)
        for j, b in enumerate(keys)
        if a is not b
    ]
    messages += [react(a, video_id(i % 3), NOW_MS + i) for i, a in enumerate(keys)]
    messages += [
        follow(keys[0], keys[1], NOW_MS + 50, on=False),
        react(keys[0], video_id(0), NOW_MS + 50, like=False),
    ]
    messages += [watch(a, video_id(i % 2), NOW_MS + i, 100 + i) for i, a in enumerate(keys)]
    messages += [watch(keys[0], video_id(0), NOW_MS + 60, 5000)]
    apply_all(stores, messages)
    videos = [
        sealed_manifest(k, fake_video(b"u%d" % i), created_ms=NOW_MS + i)
        for i, k in enumerate(keys[:3])
    ]
    for message in videos:
        stores.manifests.put(message, pin=None)
    creator = keys[0]
    tomb = Tombstone(
        author=creator.public_key, created_ms=NOW_MS + 9, manifest=videos[0].id, reason=""
    )
    stores.manifests.withdraw(seal(creator, tomb))


def drop_graph(kv: KV, *, keep: int = 0) -> None:
    """Delete the graph's indexes and marker (all but ``keep`` index entries), as a store
    from before them, or one whose rebuild was cut short, has them."""
    batch = Batch()
    for p in GRAPH_PREFIXES:
        for key, _ in list(kv.iterate(bytes([p]), include_value=False))[keep:]:
            batch.delete(key)
    batch.delete(meta_key(META_SOCIAL_GRAPH))
    kv.write(batch)


def test_a_schema_1_store_is_upgraded_on_open(tmp_path: Path) -> None:
    with Stores.open(tmp_path / "db") as stores:
        fill(stores)
        assert stores.graph.indexed()
        before = dump(stores.kv)
        drop_graph(stores.kv)
        batch = Batch()
        batch.put(meta_key(META_SCHEMA), b"1")
        stores.kv.write(batch)
        assert not stores.graph.indexed()
    with Stores.open(tmp_path / "db") as stores:
        assert stores.kv.get(meta_key(META_SCHEMA)) == str(SCHEMA_VERSION).encode()
        assert stores.graph.indexed()
        assert dump(stores.kv) == before


def test_a_rebuild_cut_short_is_done_again_on_open(tmp_path: Path) -> None:
    with Stores.open(tmp_path / "db") as stores:
        fill(stores)
        before = dump(stores.kv)
        drop_graph(stores.kv, keep=2)
        # A stale entry the rebuild must remove.
        batch = Batch()
        batch.put(bytes([Prefix.LIKE_COUNT]) + video_id(9), (5).to_bytes(8, "big"))
        stores.kv.write(batch)
    with Stores.open(tmp_path / "db") as stores:
        assert dump(stores.kv) == before
        assert stores.graph.like_count(video_id(9)) == 0
