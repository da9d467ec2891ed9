"""The download scheduler: policy tables, faults, and a seeded swarm simulation."""

import dataclasses
import hashlib
import heapq
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from protocol.cid import chunk_id
from protocol.fetch import (
    BAD_HASH,
    BAD_SIZE,
    Action,
    Cancel,
    FetchLimits,
    FetchScheduler,
    Penalize,
    Request,
    Store,
)
from protocol.kinds import ChunkRef, VideoManifest
from tests.factories import account, fake_video, manifest_for

ACCOUNT = account(1)
CHUNKS = fake_video(b"fetch", segments=8, segment_bytes=64)
THUMB, INIT, *SEGS = (chunk_id(c) for c in CHUNKS)
DATA = {chunk_id(c): c for c in CHUNKS}
MANIFEST = manifest_for(ACCOUNT, CHUNKS)
ALL = frozenset(DATA)
A, B, C, D = b"peer-a", b"peer-b", b"peer-c", b"peer-d"
T0 = 1_000


def scheduler(
    held: Sequence[bytes] = (), seed: int = 0, manifest: VideoManifest = MANIFEST, **limits: int
) -> FetchScheduler:
    return FetchScheduler(manifest, "360p", held, random.Random(seed), FetchLimits(**limits))


def requests(actions: Sequence[Action]) -> list[Request]:
    return [a for a in actions if isinstance(a, Request)]


def only_request(actions: Sequence[Action]) -> Request:
    found = requests(actions)
    assert len(found) == 1, actions
    return found[0]


def answer(s: FetchScheduler, r: Request, now_ms: int = T0) -> list[Action]:
    return s.received(r.peer, r.request_id, DATA[r.cid], now_ms)


def serial_order(s: FetchScheduler, first: Sequence[Action]) -> list[bytes]:
    """With one request in flight at a time, answer each and return the cids in order."""
    order: list[bytes] = []
    actions = list(first)
    while not s.done:
        r = only_request(actions)
        order.append(r.cid)
        actions = answer(s, r)
        assert Store(r.cid, DATA[r.cid]) in actions
    return order


def segs(*indexes: int) -> set[bytes]:
    return {SEGS[i] for i in indexes}


@dataclass(frozen=True)
class Setup:
    window: int = 3
    held: tuple[bytes, ...] = ()
    seek: int | None = None
    partial: tuple[tuple[bytes, set[bytes]], ...] = ()
    """Peers besides A (which holds everything) and the chunks they announce."""
    removed: tuple[bytes, ...] = ()


REST = segs(3, 4, 5, 6, 7) | {THUMB}
ORDER_CASES: list[tuple[str, Setup, list[set[bytes]]]] = [
    # (case, setup, expected groups: in order between groups, any order within a group)
    ("init, window, rest", Setup(), [{INIT}, segs(0), segs(1), segs(2), REST]),
    ("no window", Setup(window=0), [{INIT}, segs(0, 1, 2) | REST]),
    ("window of 1", Setup(window=1), [{INIT}, segs(0), segs(1, 2) | REST]),
    ("held skipped", Setup(held=(INIT, SEGS[1])), [segs(0), segs(2), REST]),
    ("seek", Setup(seek=5), [{INIT}, segs(5), segs(6), segs(7), segs(0, 1, 2, 3, 4) | {THUMB}]),
    ("window clipped", Setup(seek=7), [{INIT}, segs(7), segs(0, 1, 2, 3, 4, 5, 6) | {THUMB}]),
    (
        "rarest first after the window",
        Setup(partial=((B, segs(5, 6)), (C, segs(6, 7)), (D, segs(6)))),
        [{INIT}, segs(0), segs(1), segs(2), segs(3, 4) | {THUMB}, segs(5, 7), segs(6)],
    ),
    (
        "rarity forgets peers that left",
        Setup(partial=((B, segs(6)), (C, segs(6)), (D, segs(5))), removed=(B, C)),
        [{INIT}, segs(0), segs(1), segs(2), segs(3, 4, 6, 7) | {THUMB}, segs(5)],
    ),
    (
        "a new announcement replaces the old",
        Setup(partial=((B, segs(6)), (C, segs(6)), (D, segs(6)), (B, segs(5)), (C, segs(5)))),
        [{INIT}, segs(0), segs(1), segs(2), segs(3, 4, 7) | {THUMB}, segs(6), segs(5)],
    ),
]


@pytest.mark.parametrize(
    ("setup", "groups"), [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES]
)
def test_request_order(setup: Setup, groups: list[set[bytes]]) -> None:
    # One slot in all: every request waits for the previous answer, so the order shows.
    s = scheduler(setup.held, in_flight_max=1, window_segments=setup.window)
    s.add_peer(A, None, T0)
    for peer, has in setup.partial:
        s.add_peer(peer, frozenset(has), T0)
    for peer in setup.removed:
        s.remove_peer(peer, T0)
    if setup.seek is not None:
        s.seek(setup.seek, T0)
    order = serial_order(s, s.start(T0))
    assert len(order) == len(set(order)) == sum(map(len, groups))
    at = 0
    for group in groups:
        assert set(order[at : at + len(group)]) == group, (order, group)
        at += len(group)


def test_seek_moves_the_window_mid_download() -> None:
    s = scheduler(in_flight_max=1)
    s.add_peer(A, None, T0)
    r = only_request(s.start(T0))
    assert r.cid == INIT
    r = only_request(answer(s, r))
    assert r.cid == SEGS[0]
    s.seek(6, T0)  # the request in flight stays
    assert s.in_flight == 1
    assert serial_order(s, answer(s, r))[:2] == [SEGS[6], SEGS[7]]


def test_ties_are_broken_by_the_rng() -> None:
    def rest_order(seed: int) -> list[bytes]:
        s = scheduler(seed=seed, in_flight_max=1, window_segments=0)
        s.add_peer(A, None, T0)
        return serial_order(s, s.start(T0))

    assert rest_order(1) == rest_order(1)
    assert len({tuple(rest_order(seed)) for seed in range(8)}) > 1


@pytest.mark.parametrize(
    ("peers", "per_peer", "total", "expected"),
    [(1, 4, 16, 4), (3, 4, 16, 10), (5, 4, 16, 10), (5, 4, 6, 6), (10, 2, 5, 5), (4, 1, 16, 4)],
)
def test_bounds_at_start(peers: int, per_peer: int, total: int, expected: int) -> None:
    s = scheduler(peer_in_flight_max=per_peer, in_flight_max=total)
    for i in range(peers):
        s.add_peer(b"p%d" % i, None, T0)
    sent = requests(s.start(T0))
    assert len(sent) == expected == s.in_flight  # 10 chunks in all
    per = Counter(r.peer for r in sent)
    assert max(per.values()) <= per_peer
    assert max(per.values()) - min(per.values()) <= 1  # fewest in flight first: spread evenly
    assert len({r.cid for r in sent}) == len(sent)  # one request per chunk
    assert len({r.request_id for r in sent}) == len(sent)


def test_nothing_is_requested_before_start() -> None:
    s = scheduler()
    assert s.add_peer(A, None, T0) == []
    assert s.seek(2, T0) == []
    assert not s.stalled
    assert len(requests(s.start(T0))) == 4


def test_unknown_ids_and_wrong_peers_are_ignored() -> None:
    s = scheduler(peer_in_flight_max=1)
    s.add_peer(A, None, T0)
    s.add_peer(B, None, T0)
    sent = requests(s.start(T0))
    r = next(x for x in sent if x.peer == A)
    assert s.received(A, 999, DATA[r.cid], T0) == []
    assert s.received(B, r.request_id, DATA[r.cid], T0) == []  # B was not asked this
    assert s.failed(B, r.request_id, T0) == []
    assert s.stats.ignored_responses == 3
    assert s.in_flight == 2 and s.progress.chunks_held == 0
    assert Store(r.cid, DATA[r.cid]) in answer(s, r)
    assert s.received(A, r.request_id, DATA[r.cid], T0) == []  # answered already
    assert s.stats.ignored_responses == 4


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (lambda d: d[:-1], BAD_SIZE),
        (lambda d: d + b"x", BAD_SIZE),
        (lambda d: bytes([d[0] ^ 1]) + d[1:], BAD_HASH),
        (lambda d: DATA[SEGS[4]] if d != DATA[SEGS[4]] else DATA[SEGS[5]], BAD_HASH),
    ],
)
def test_bad_bytes_penalise_and_drop_the_peer(
    corrupt: Callable[[bytes], bytes], reason: str
) -> None:
    s = scheduler(peer_in_flight_max=2)
    s.add_peer(A, None, T0)
    liar_sent = requests(s.start(T0))
    assert [r.cid for r in liar_sent] == [INIT, SEGS[0]]
    b_sent = requests(s.add_peer(B, None, T0))
    bad = liar_sent[0]
    actions = s.received(A, bad.request_id, corrupt(DATA[bad.cid]), T0)
    assert actions[:2] == [Penalize(A, reason), Cancel(A, liar_sent[1].request_id)]
    assert not any(isinstance(a, Store) for a in actions)
    # Both of A's chunks wait for B, which is busy with the two it got on arrival.
    assert s.peer_in_flight(A) == 0 and s.stats.peers_dropped == 1
    assert s.add_peer(A, None, T0) == [] and s.stats.peers_refused == 1
    assert s.received(A, liar_sent[1].request_id, DATA[liar_sent[1].cid], T0) == []
    assert drain(s, [*actions, *b_sent]) == DATA


def test_banned_peers_are_remembered_up_to_banned_max() -> None:
    s = scheduler(peer_in_flight_max=1, banned_max=1)
    s.add_peer(A, None, T0)
    s.add_peer(B, None, T0)
    first, second = requests(s.start(T0))
    for r in (first, second):
        s.received(r.peer, r.request_id, b"junk", T0)
    assert s.stats.peers_dropped == 2
    assert s.add_peer(second.peer, None, T0) == []  # the newest ban holds
    assert s.add_peer(first.peer, None, T0) != []  # the oldest was forgotten
    assert s.stats.peers_refused == 1


def drain(s: FetchScheduler, actions: Sequence[Action], now_ms: int = T0) -> dict[bytes, bytes]:
    """Answer every request honestly until done; return what was stored, checking it."""
    stored: dict[bytes, bytes] = {}
    queue = list(actions)
    while queue:
        action = queue.pop(0)
        if isinstance(action, Request):
            queue += answer(s, action, now_ms)
        elif isinstance(action, Store):
            assert chunk_id(action.data) == action.cid and action.cid not in stored
            stored[action.cid] = action.data
    assert s.done, s.unavailable
    return stored


def test_timeout_cancels_and_asks_elsewhere() -> None:
    s = scheduler(peer_in_flight_max=1, request_timeout_ms=500)
    s.add_peer(A, None, T0)
    slow = only_request(s.start(T0))
    assert slow.cid == INIT and s.next_deadline_ms == T0 + 500
    assert s.tick(T0 + 499) == []
    on_b = only_request(s.add_peer(B, None, T0 + 499))
    actions = s.tick(T0 + 500)
    assert actions[0] == Cancel(A, slow.request_id) and s.stats.timeouts == 1
    # A failed INIT: INIT waits for B, which has no failure for it; A gets other work.
    assert only_request(actions[1:]) == Request(A, slow.request_id + 2, SEGS[1])
    assert s.received(A, slow.request_id, DATA[INIT], T0 + 600) == []  # too late
    assert s.stats.ignored_responses == 1
    assert only_request(answer(s, on_b, T0 + 600)) == Request(B, slow.request_id + 3, INIT)


def test_failure_asks_elsewhere() -> None:
    s = scheduler(peer_in_flight_max=1)
    s.add_peer(A, None, T0)
    first = only_request(s.start(T0))
    on_b = only_request(s.add_peer(B, None, T0))
    # INIT's only peer without a failure (B) is busy: INIT waits, A takes the next chunk.
    assert only_request(s.failed(A, first.request_id, T0)).cid == SEGS[1]
    assert only_request(answer(s, on_b)) == Request(B, first.request_id + 3, INIT)
    assert s.stats.failures == 1


def test_retries_then_unavailable_then_resumed_by_a_new_peer() -> None:
    s = scheduler(retries_max=2)
    s.add_peer(A, frozenset({INIT}), T0)
    r = only_request(s.start(T0))
    r = only_request(s.failed(A, r.request_id, T0))  # A is the only holder: asked again
    assert r.peer == A and r.cid == INIT
    assert s.failed(A, r.request_id, T0) == []
    assert s.stalled and set(s.unavailable) == ALL
    assert s.add_peer(A, frozenset({INIT}), T0) == []  # the same peer again: no news
    assert s.stalled
    actions = s.add_peer(B, None, T0)
    assert {r.peer for r in requests(actions)} == {B} and not s.stalled
    assert drain(s, actions).keys() == ALL


def test_peer_has_makes_a_chunk_available() -> None:
    s = scheduler()
    s.add_peer(A, frozenset(), T0)
    assert s.start(T0) == [] and s.stalled
    r = only_request(s.peer_has(A, SEGS[3], T0))
    assert r == Request(A, r.request_id, SEGS[3])
    assert s.peer_has(A, SEGS[3], T0) == []  # known already
    assert s.peer_has(A, b"not wanted", T0) == []
    assert s.peer_has(C, SEGS[4], T0) == [] and s.stats.ignored_events == 1


def test_peer_removed_mid_download() -> None:
    s = scheduler(peer_in_flight_max=2)
    s.add_peer(A, None, T0)
    s.add_peer(B, None, T0)
    sent = requests(s.start(T0))
    on_a = [r for r in sent if r.peer == A]
    actions = s.remove_peer(A, T0 + 5)
    assert actions[: len(on_a)] == [Cancel(A, r.request_id) for r in on_a]
    assert s.stats.failures == s.stats.timeouts == 0  # leaving is not failing
    assert s.received(A, on_a[0].request_id, DATA[on_a[0].cid], T0) == []
    assert s.remove_peer(A, T0) == [] and s.stats.ignored_events == 1
    stored = drain(s, [*actions[len(on_a) :], *[r for r in sent if r.peer == B]])
    assert stored == DATA


def test_stalled_without_peers_then_resumed() -> None:
    s = scheduler()
    assert s.start(T0) == [] and s.stalled and set(s.unavailable) == ALL
    assert drain(s, s.add_peer(A, None, T0)) == DATA
    assert not s.stalled and s.unavailable == ()


def test_progress_and_already_held() -> None:
    s = scheduler(held=[INIT, THUMB, b"something else"])
    p = s.progress
    assert (p.chunks_held, p.chunks_total) == (2, 10)
    assert p.bytes_held == len(DATA[INIT]) + len(DATA[THUMB])
    assert p.bytes_total == sum(map(len, CHUNKS))
    done = scheduler(held=list(ALL))
    assert done.done and done.add_peer(A, None, T0) == [] and done.start(T0) == []
    assert not done.stalled


def test_peers_max() -> None:
    s = scheduler(peers_max=2)
    s.add_peer(A, None, T0)
    s.add_peer(B, None, T0)
    assert s.add_peer(C, None, T0) == [] and s.stats.peers_refused == 1
    s.remove_peer(A, T0)
    s.add_peer(C, None, T0)
    assert s.stats.peers_refused == 1


def test_duplicate_segments_are_fetched_once() -> None:
    r = MANIFEST.renditions[0]
    twice = dataclasses.replace(r, segments=(*r.segments, r.segments[0]))
    s = scheduler(manifest=dataclasses.replace(MANIFEST, renditions=(twice,)))
    s.add_peer(A, None, T0)
    assert drain(s, s.start(T0)) == DATA
    assert s.stats.requests == len(DATA)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FetchScheduler(MANIFEST, "1080p", (), random.Random(0)), "no rendition"),
        (lambda: scheduler(in_flight_max=0), "in_flight_max"),
        (lambda: scheduler(window_segments=-1), "window_segments"),
        (
            lambda: scheduler(
                manifest=dataclasses.replace(MANIFEST, thumbnail=ChunkRef(INIT, 5)),
            ),
            "sizes",
        ),
        (lambda: scheduler().seek(8, T0), "outside"),
        (lambda: scheduler().seek(-1, T0), "outside"),
    ],
)
def test_invalid_arguments(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# ---------------------------------------------------------------------------------------
# Simulation: the scheduler against a swarm of fake peers in virtual time, from a seed.

HONEST = "honest"  # whole video, answers well within the timeout, never leaves
SLOW = "slow"  # answers, sometimes after the timeout
LIAR = "liar"  # mostly sends bad bytes, sometimes under the wrong request id
LEAVER = "leaver"  # honest, but leaves (and may come back)
FLAKY = "flaky"  # half its requests fail or go unanswered
SILENT = "silent"  # never answers
PARTIAL = "partial"  # holds a subset, announces more over time
TIMEOUT_MS = 1_000
SIM_END_MS = 600_000


@dataclass
class FakePeer:
    id: bytes
    kind: str
    has: frozenset[bytes] | None
    latency_ms: tuple[int, int]
    arrive_ms: int
    leave_ms: int | None = None
    live: bool = False


@dataclass
class Sim:
    """One run: the scheduler, the fake swarm, and the driver's own accounting."""

    seed: int
    rng: random.Random
    data: dict[bytes, bytes]
    scheduler: FetchScheduler
    peers: dict[bytes, FakePeer]
    events: list[tuple[int, int, str, tuple[object, ...]]] = field(default_factory=list)
    open: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    stored: dict[bytes, bytes] = field(default_factory=dict)
    penalized: list[bytes] = field(default_factory=list)
    lied: set[bytes] = field(default_factory=set)
    held: frozenset[bytes] = frozenset()
    log: list[str] = field(default_factory=list)
    seq: int = 0

    def push(self, at_ms: int, kind: str, *args: object) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at_ms, self.seq, kind, args))

    def fail(self, message: str) -> str:
        return f"{message}; reproduce with seed={self.seed}"


def make_sim(seed: int) -> Sim:
    rng = random.Random(seed)
    chunks = fake_video(b"sim %d" % seed, rng.randint(1, 12), rng.choice([16, 64, 300]))
    data = {chunk_id(c): c for c in chunks}
    cids = list(data)
    held = [c for c in cids if rng.random() < 0.1]
    limits = FetchLimits(
        peer_in_flight_max=rng.randint(1, 4),
        in_flight_max=rng.randint(1, 16),
        request_timeout_ms=TIMEOUT_MS,
        window_segments=rng.randint(0, 3),
        retries_max=rng.randint(1, 3),
        peers_max=16,
    )
    # The scheduler gets its own stream, so the swarm's draws do not shift its choices.
    s = FetchScheduler(manifest_for(ACCOUNT, chunks), "360p", held, random.Random(seed), limits)
    peers: dict[bytes, FakePeer] = {}
    honest = FakePeer(b"honest", HONEST, None, (5, TIMEOUT_MS // 3), rng.randint(0, 3_000))
    peers[honest.id] = honest
    for i in range(rng.randint(0, 10)):
        kind = rng.choice([HONEST, SLOW, LIAR, LEAVER, FLAKY, SILENT, PARTIAL])
        has = frozenset(rng.sample(cids, rng.randint(0, len(cids)))) if kind == PARTIAL else None
        latency = (100, 3 * TIMEOUT_MS) if kind == SLOW else (5, TIMEOUT_MS // 2)
        peer = FakePeer(b"%s-%d" % (kind.encode(), i), kind, has, latency, rng.randint(0, 5_000))
        if kind in (LEAVER, SLOW, FLAKY, LIAR):
            peer.leave_ms = peer.arrive_ms + rng.randint(0, 8_000)
        peers[peer.id] = peer
    sim = Sim(seed, rng, data, s, peers, held=frozenset(held))
    for peer in peers.values():
        sim.push(peer.arrive_ms, "arrive", peer.id)
        if peer.leave_ms is not None:
            sim.push(peer.leave_ms, "leave", peer.id)
            if rng.random() < 0.3:
                sim.push(peer.leave_ms + rng.randint(0, 5_000), "arrive", peer.id)
        if peer.has is not None:
            for cid in rng.sample(cids, rng.randint(0, len(cids))):
                sim.push(peer.arrive_ms + rng.randint(0, 5_000), "have", peer.id, cid)
    sim.push(rng.randint(0, 1_000), "start")
    for _ in range(rng.randint(0, 3)):
        segments = len(chunks) - 2
        sim.push(rng.randint(0, 10_000), "seek", rng.randrange(segments))
    return sim


def respond(sim: Sim, now_ms: int, r: Request) -> None:
    """The fake peer's answer to ``r``, if any, as a future event."""
    peer = sim.peers[r.peer]
    rng = sim.rng
    at = now_ms + rng.randint(*peer.latency_ms)
    if peer.kind == SILENT or (peer.kind == FLAKY and rng.random() < 0.5):
        if rng.random() < 0.5:
            sim.push(at, "fail", r.peer, r.request_id)
        return
    if peer.has is not None and r.cid not in peer.has:
        sim.push(at, "fail", r.peer, r.request_id)  # NOT_FOUND
        return
    data = sim.data[r.cid]
    request_id = r.request_id
    if peer.kind == LIAR and rng.random() < 0.7:
        data = rng.choice([data[:-1], data + b"!", bytes([data[0] ^ 0xFF]) + data[1:]])
        request_id += rng.choice([0, 0, 1])  # sometimes echoes the wrong id too
    sim.push(at, "deliver", r.peer, request_id, data)


def apply(sim: Sim, now_ms: int, actions: list[Action]) -> None:
    s = sim.scheduler
    for action in actions:
        sim.log.append(f"{now_ms} {action!r}")
        if isinstance(action, Request):
            assert sim.peers[action.peer].live, sim.fail("request to a peer that is not there")
            assert action.request_id not in sim.open
            assert action.cid not in {cid for _, cid in sim.open.values()}, sim.fail("duplicate")
            sim.open[action.request_id] = (action.peer, action.cid)
            respond(sim, now_ms, action)
        elif isinstance(action, Cancel):
            assert sim.open.pop(action.request_id)[0] == action.peer, sim.fail("wrong cancel")
        elif isinstance(action, Store):
            assert chunk_id(action.data) == action.cid, sim.fail("stored unverified bytes")
            assert action.cid not in sim.stored, sim.fail("stored twice")
            sim.stored[action.cid] = action.data
        else:
            assert sim.peers[action.peer].kind == LIAR, sim.fail("honest peer penalised")
            sim.penalized.append(action.peer)
    # The bounds, by the driver's own count of open requests.
    per_peer = Counter(peer for peer, _ in sim.open.values())
    assert len(sim.open) == s.in_flight <= s.limits.in_flight_max, sim.fail("global bound")
    assert all(n <= s.limits.peer_in_flight_max for n in per_peer.values()), sim.fail("bound")
    assert all(s.peer_in_flight(p) == n for p, n in per_peer.items())
    deadline = s.next_deadline_ms
    if deadline is not None:
        sim.push(deadline, "tick")


def step(sim: Sim, now_ms: int, kind: str, args: tuple[object, ...]) -> list[Action]:
    s = sim.scheduler
    if kind == "start":
        return s.start(now_ms)
    if kind == "tick":
        return s.tick(now_ms)
    if kind == "seek":
        assert isinstance(args[0], int)
        return s.seek(args[0], now_ms)
    assert isinstance(args[0], bytes)
    peer = sim.peers[args[0]]
    if kind == "arrive":
        peer.live = True
        return s.add_peer(peer.id, peer.has, now_ms)
    if kind == "leave":
        peer.live = False
        return s.remove_peer(peer.id, now_ms)
    if kind == "have":
        assert isinstance(args[1], bytes) and peer.has is not None
        peer.has = peer.has | {args[1]}
        return s.peer_has(peer.id, args[1], now_ms) if peer.live else []
    request_id = args[1]
    assert isinstance(request_id, int)
    expected = sim.open.get(request_id, (None, b""))[0] == peer.id
    ignored = s.stats.ignored_responses
    if kind == "fail":
        actions = s.failed(peer.id, request_id, now_ms)
    else:
        assert isinstance(args[2], bytes)
        if expected and chunk_id(args[2]) != sim.open[request_id][1]:
            sim.lied.add(peer.id)
        actions = s.received(peer.id, request_id, args[2], now_ms)
    if expected:
        del sim.open[request_id]
    # A stale, unknown or misrouted answer changes nothing but a counter.
    assert (s.stats.ignored_responses == ignored) == expected, sim.fail("answer mishandled")
    return actions


def simulate(seed: int) -> Sim:
    sim = make_sim(seed)
    steps = 0
    while sim.events and not sim.scheduler.done:
        now_ms, _, kind, args = heapq.heappop(sim.events)
        assert now_ms < SIM_END_MS and steps < 20_000, sim.fail("no progress")
        apply(sim, now_ms, step(sim, now_ms, kind, args))
        steps += 1
    return sim


@pytest.mark.parametrize("block", range(8))
def test_simulated_swarm_always_completes(block: int) -> None:
    for seed in range(block * 50, block * 50 + 50):
        sim = simulate(seed)
        s = sim.scheduler
        assert s.done, sim.fail(f"not done, unavailable {len(s.unavailable)}")
        assert all(chunk_id(d) == c for c, d in sim.stored.items())
        assert sim.stored.keys() == sim.data.keys() - sim.held, sim.fail("stored set")
        p = s.progress
        assert p.chunks_held == p.chunks_total == len(sim.data), sim.fail("progress")
        assert sum(len(d) for d in sim.stored.values()) == s.stats.bytes_stored
        assert set(sim.penalized) == sim.lied, sim.fail("every liar caught, once")
        assert len(sim.penalized) == len(set(sim.penalized)), sim.fail("penalised twice")


def test_simulation_is_deterministic() -> None:
    for seed in range(20):
        assert simulate(seed).log == simulate(seed).log


SIM_SCRIPT = """
import hashlib
from tests.test_fetch import simulate
print(hashlib.sha256("\\n".join(simulate(7).log + simulate(8).log).encode()).hexdigest())
"""


def test_simulation_is_deterministic_across_hash_seeds() -> None:
    """Set order of bytes changes with PYTHONHASHSEED; the actions must not."""
    root = Path(__file__).resolve().parent.parent
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", SIM_SCRIPT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_a_busy_only_seeder_is_asked_again_after_the_backoff() -> None:
    s = scheduler(retries_max=2, retry_backoff_ms=5_000)
    s.add_peer(A, None, T0)
    outstanding = requests(s.start(T0))
    while outstanding:  # A answers BUSY to every request until nothing is asked
        r = outstanding.pop()
        outstanding += requests(s.failed(A, r.request_id, T0))
    assert s.stalled and set(s.unavailable) == ALL
    assert s.next_deadline_ms == T0 + 5_000
    assert s.tick(T0 + 4_999) == []
    resumed = s.tick(T0 + 5_000)
    assert requests(resumed) and {r.peer for r in requests(resumed)} == {A}
    assert drain(s, resumed, T0 + 5_000).keys() <= ALL and s.done


def test_useless_peers_do_not_keep_a_seeder_out() -> None:
    s = scheduler(peers_max=4)
    s.start(T0)
    for i in range(4):
        s.add_peer(b"empty-%d" % i, frozenset(), T0)
    actions = s.add_peer(b"seeder", None, T0)
    assert requests(actions) and s.stats.peers_evicted == 1 and s.stats.peers_refused == 0
    assert drain(s, actions).keys() == ALL


def test_a_digest_from_the_driver_is_checked_like_the_bytes() -> None:
    s = scheduler(peer_in_flight_max=2)
    s.add_peer(A, None, T0)
    good, wrong = requests(s.start(T0))
    data = DATA[good.cid]
    stored = s.received(A, good.request_id, data, T0, sha256=hashlib.sha256(data).digest())
    assert Store(good.cid, data) in stored
    other = hashlib.sha256(b"not these bytes").digest()
    actions = s.received(A, wrong.request_id, DATA[wrong.cid], T0, sha256=other)
    assert actions[0] == Penalize(A, BAD_HASH)
