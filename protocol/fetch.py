"""The download scheduler for one rendition of one video, as a sans-IO machine.

The driver (the node's chunk service, or the simulator) feeds a :class:`FetchScheduler`
events: peers appear, announce chunks and leave, the player seeks, responses arrive, time
passes. Each event method returns the actions to carry out, in order: send a
:class:`Request`, abandon one (:class:`Cancel`), write verified bytes (:class:`Store`),
punish a peer (:class:`Penalize`). The scheduler never touches a stream, a clock or global
randomness; time comes in as ``now_ms`` with every event and tie-breaking randomness from the
``rng`` the caller passes in, so one seed gives one sequence of actions.

Policy (docs/swarm.md says it in plain words):

- Wanted: the rendition's init chunk, its media segments and the video's thumbnail, each
  distinct content id once, less those already held.
- Order: the init chunk first, then the playback window (the ``window_segments`` segments
  from the playhead, in play order), then the rest rarest first (fewest live peers known to
  hold it), ties broken by a per-chunk random key drawn once from ``rng``.
- One request per chunk at a time; no endgame duplicates (see :class:`FetchLimits`).
- Peer choice: among live holders, those that failed this chunk least often; among them the
  one with the fewest consecutive failures, then the fewest requests in flight. If every such
  peer is busy the chunk waits rather than going to a peer that already failed it.
- Every response is checked against the manifest (exact size, then SHA-256 via the CID). A
  bad chunk gets its sender penalised and dropped for this video; the chunk is asked again
  elsewhere. A timeout or a failure counts against that peer for that chunk; after
  ``retries_max`` failures a peer is not asked for the chunk again. A chunk no live peer may
  be asked for is *unavailable*; when nothing can be asked at all the scheduler is
  *stalled*, and resumes as soon as a peer that holds a missing chunk arrives.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from protocol.cid import CID_PREFIX, chunk_id
from protocol.kinds import VideoManifest

BAD_SIZE = "chunk size differs from the manifest"
BAD_HASH = "chunk bytes do not match their content id"


class Rng(Protocol):
    """The randomness the scheduler needs; ``random.Random`` is one."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class FetchLimits:
    """The scheduler's bounds. Every one is at least 1 (the window may be 0: no window).

    No endgame: a chunk is never asked of two peers at once, so in-flight bytes never exceed
    the bounds and a response is never wasted; a chunk stuck on a slow peer moves elsewhere
    after ``request_timeout_ms``.
    """

    peer_in_flight_max: int = 4
    """Requests in flight to one peer."""
    in_flight_max: int = 16
    """Requests in flight for this video, over all peers."""
    request_timeout_ms: int = 10_000
    """How long a request may stay unanswered before it is cancelled and counted a failure."""
    window_segments: int = 3
    """Segments from the playhead fetched in play order before anything else but init."""
    retries_max: int = 2
    """Failures (timeouts, errors) of one peer for one chunk before it is not asked again,
    until ``retry_backoff_ms`` has passed since the chunk's last failure."""
    retry_backoff_ms: int = 5_000
    """How long after a chunk's last failure its failure counts are forgotten, so a seeder
    that was busy or slow is asked again (it may be the only one)."""
    peers_max: int = 64
    """Live peers tracked for this video; further peers are refused until some leave."""
    banned_max: int = 256
    """Peers remembered as dropped for bad bytes; the oldest is forgotten beyond this."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < (0 if name == "window_segments" else 1):
                raise ValueError(f"FetchLimits.{name} out of range: {value}")


@dataclass(frozen=True)
class Request:
    """Send ``ChunkRequest(id=request_id, cid=cid)`` to ``peer``."""

    peer: bytes
    request_id: int
    cid: bytes


@dataclass(frozen=True)
class Cancel:
    """The scheduler gave up on this request: stop waiting, any late answer is ignored."""

    peer: bytes
    request_id: int


@dataclass(frozen=True)
class Store:
    """``data`` matched ``cid`` and its size in the manifest: write it to the chunk store."""

    cid: bytes
    data: bytes


@dataclass(frozen=True)
class Penalize:
    """``peer`` misbehaved (``reason`` is :data:`BAD_SIZE` or :data:`BAD_HASH`): lower its score."""

    peer: bytes
    reason: str


Action = Request | Cancel | Store | Penalize


@dataclass
class FetchStats:
    """Counters, for metrics and tests."""

    requests: int = 0
    stored: int = 0
    bytes_stored: int = 0
    bad_chunks: int = 0
    failures: int = 0
    timeouts: int = 0
    cancels: int = 0
    ignored_responses: int = 0
    """Responses with an unknown request id, or from a peer the request was not sent to."""
    ignored_events: int = 0
    """peer_has or remove_peer for a peer not tracked."""
    peers_refused: int = 0
    """add_peer refused: a peer dropped for bad bytes, or ``peers_max`` reached."""
    peers_dropped: int = 0
    peers_evicted: int = 0


@dataclass(frozen=True)
class Progress:
    chunks_held: int
    chunks_total: int
    bytes_held: int
    bytes_total: int


@dataclass(slots=True)
class _Chunk:
    cid: bytes
    size: int
    tiebreak: float
    holders: int = 0
    """Live partial peers that announced it (whole-video peers hold every chunk alike)."""
    held: bool = False
    request: int | None = None
    fails: dict[bytes, int] = field(default_factory=dict)
    """Failures per peer, kept when the peer leaves so a returning peer is not retried
    at once; forgotten ``retry_backoff_ms`` after the last one."""
    last_fail_ms: int = 0


@dataclass(slots=True)
class _Peer:
    id: bytes
    has: set[bytes] | None
    """Wanted chunks it announced, or None when it holds the whole video."""
    tiebreak: float
    in_flight: int = 0
    consecutive_failures: int = 0

    def holds(self, cid: bytes) -> bool:
        return self.has is None or cid in self.has


@dataclass(frozen=True, slots=True)
class _Pending:
    peer: bytes
    cid: bytes
    deadline_ms: int


class FetchScheduler:
    """Downloads one rendition of a video from a swarm of peers (see the module doc)."""

    def __init__(
        self,
        manifest: VideoManifest,
        rendition: str,
        held: Iterable[bytes],
        rng: Rng,
        limits: FetchLimits | None = None,
    ) -> None:
        """Raises :class:`ValueError` for an unknown rendition, or a manifest that names one
        content id with two sizes (no bytes could match both)."""
        chosen = next((r for r in manifest.renditions if r.name == rendition), None)
        if chosen is None:
            raise ValueError(f"the manifest has no rendition {rendition!r}")
        self.limits = limits or FetchLimits()
        self.stats = FetchStats()
        self._rng = rng
        self._init = chosen.init.cid
        self._segments = tuple(s.cid for s in chosen.segments)
        refs = [(chosen.init.cid, chosen.init.size)]
        refs += [(s.cid, s.size) for s in chosen.segments]
        refs.append((manifest.thumbnail.cid, manifest.thumbnail.size))
        self._chunks: dict[bytes, _Chunk] = {}
        for cid, size in refs:
            known = self._chunks.get(cid)
            if known is None:
                self._chunks[cid] = _Chunk(cid, size, rng.random())
            elif known.size != size:
                raise ValueError(f"chunk {cid.hex()} listed with sizes {known.size} and {size}")
        for cid in set(held) & self._chunks.keys():
            self._chunks[cid].held = True
        self._missing = sum(not c.held for c in self._chunks.values())
        self._peers: dict[bytes, _Peer] = {}
        self._banned: dict[bytes, None] = {}
        self._requests: dict[int, _Pending] = {}
        """In send order, so deadlines are in order too (see _stamp)."""
        self._next_request_id = 1
        self._playhead = 0
        self._now_ms = 0
        self._started = False

    # -- State -------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when every wanted chunk is held."""
        return self._missing == 0

    @property
    def stalled(self) -> bool:
        """True when started, not done, and no chunk can be asked of any live peer."""
        return self._started and not self.done and not self._requests

    @property
    def unavailable(self) -> tuple[bytes, ...]:
        """Missing chunks that no live peer may be asked for now, in manifest order."""
        return tuple(
            c.cid
            for c in self._chunks.values()
            if not c.held and c.request is None and not self._eligible(c)
        )

    @property
    def progress(self) -> Progress:
        held = [c for c in self._chunks.values() if c.held]
        return Progress(
            chunks_held=len(held),
            chunks_total=len(self._chunks),
            bytes_held=sum(c.size for c in held),
            bytes_total=sum(c.size for c in self._chunks.values()),
        )

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def peer_in_flight(self, peer: bytes) -> int:
        known = self._peers.get(peer)
        return known.in_flight if known else 0

    @property
    def next_deadline_ms(self) -> int | None:
        """When to call :meth:`tick` next: the oldest request's timeout, or the end of a
        retry backoff that holds back a chunk a live peer has. None when neither."""
        first = next(iter(self._requests.values()), None)
        times = [first.deadline_ms] if first else []
        times += [
            c.last_fail_ms + self.limits.retry_backoff_ms
            for c in self._chunks.values()
            if not c.held
            and c.request is None
            and c.fails
            and not self._eligible(c)
            and any(p.holds(c.cid) for p in self._peers.values())
        ]
        return min(times) if times else None

    # -- Events ------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        """Begin requesting. Events before this only record state, so a driver can add the
        peers it knows first and get one well-spread batch of requests."""
        self._stamp(now_ms)
        self._started = True
        return self._schedule()

    def add_peer(self, peer: bytes, has: frozenset[bytes] | None, now_ms: int) -> list[Action]:
        """A peer that holds ``has`` (None: the whole video) is connected. A known peer's
        announcement replaces its previous one. Refused (and counted) beyond ``peers_max``
        and for peers dropped for bad bytes."""
        self._stamp(now_ms)
        if peer in self._banned:
            self.stats.peers_refused += 1
            return []
        known = self._peers.get(peer)
        if known is None:
            if len(self._peers) >= self.limits.peers_max and not self._evict_useless():
                self.stats.peers_refused += 1
                return []
            known = self._peers[peer] = _Peer(peer, None, self._rng.random())
        else:
            self._count(known, -1)
        known.has = None if has is None else set(has) & self._chunks.keys()
        self._count(known, +1)
        return self._schedule()

    def peer_has(self, peer: bytes, cid: bytes, now_ms: int) -> list[Action]:
        """A tracked peer announced one more chunk."""
        self._stamp(now_ms)
        known = self._peers.get(peer)
        if known is None:
            self.stats.ignored_events += 1
            return []
        if known.has is None or cid not in self._chunks or cid in known.has:
            return []
        known.has.add(cid)
        self._chunks[cid].holders += 1
        return self._schedule()

    def remove_peer(self, peer: bytes, now_ms: int) -> list[Action]:
        """A peer disconnected: its requests are cancelled and asked elsewhere, without
        counting as failures (the chunk was not at fault)."""
        self._stamp(now_ms)
        if peer not in self._peers:
            self.stats.ignored_events += 1
            return []
        return self._forget(peer) + self._schedule()

    def seek(self, segment_index: int, now_ms: int) -> list[Action]:
        """Move the playhead (on a seek, and as playback advances). Requests already in
        flight are kept: they are still wanted, and their slots free up soon.

        Raises :class:`ValueError` when ``segment_index`` is not a segment of the rendition.
        """
        self._stamp(now_ms)
        if not 0 <= segment_index < len(self._segments):
            raise ValueError(f"segment {segment_index} outside 0..{len(self._segments) - 1}")
        self._playhead = segment_index
        return self._schedule()

    def received(
        self,
        peer: bytes,
        request_id: int,
        data: bytes,
        now_ms: int,
        *,
        sha256: bytes | None = None,
    ) -> list[Action]:
        """``peer`` answered request ``request_id`` with ``data`` (status OK).

        ``sha256`` is the digest of ``data`` when the driver has computed it already (the
        node hashes off its event loop); the check against the content id is the same.
        """
        self._stamp(now_ms)
        pending = self._take(peer, request_id)
        if pending is None:
            return []
        chunk = self._chunks[pending.cid]
        # Size first: it is free, and a wrong size spares hashing up to CHUNK_BYTES_MAX.
        reason = BAD_SIZE if len(data) != chunk.size else None
        if (
            reason is None
            and (chunk_id(data) if sha256 is None else CID_PREFIX + sha256) != chunk.cid
        ):
            reason = BAD_HASH
        if reason is not None:
            self.stats.bad_chunks += 1
            self.stats.peers_dropped += 1
            actions: list[Action] = [Penalize(peer, reason), *self._forget(peer)]
            self._ban(peer)
            return actions + self._schedule()
        chunk.held = True
        self._missing -= 1
        self._peers[peer].consecutive_failures = 0
        self.stats.stored += 1
        self.stats.bytes_stored += len(data)
        return [Store(chunk.cid, data), *self._schedule()]

    def failed(self, peer: bytes, request_id: int, now_ms: int) -> list[Action]:
        """``peer`` answered request ``request_id`` with NOT_FOUND, BUSY or ERROR, or the
        stream carrying it broke. Counts against that peer for that chunk."""
        self._stamp(now_ms)
        pending = self._take(peer, request_id)
        if pending is None:
            return []
        self.stats.failures += 1
        self._count_failure(pending)
        return self._schedule()

    def tick(self, now_ms: int) -> list[Action]:
        """Time passed: cancel requests past their deadline and ask elsewhere."""
        self._stamp(now_ms)
        actions: list[Action] = []
        for request_id, pending in list(self._requests.items()):
            if pending.deadline_ms > self._now_ms:
                break  # the rest were sent later
            self._close(request_id)
            self._count_failure(pending)
            self.stats.timeouts += 1
            self.stats.cancels += 1
            actions.append(Cancel(pending.peer, request_id))
        return actions + self._schedule()

    # -- Internals ---------------------------------------------------------------------

    def _stamp(self, now_ms: int) -> None:
        # Time never runs backwards here, so deadlines stay in send order.
        self._now_ms = max(self._now_ms, now_ms)

    def _count(self, peer: _Peer, sign: int) -> None:
        # Whole-video peers hold every chunk alike, so only partial holders are counted.
        for cid in peer.has or ():
            self._chunks[cid].holders += sign

    def _take(self, peer: bytes, request_id: int) -> _Pending | None:
        # A response is trusted only on the stream of the peer we asked.
        pending = self._requests.get(request_id)
        if pending is None or pending.peer != peer:
            self.stats.ignored_responses += 1
            return None
        self._close(request_id)
        return pending

    def _close(self, request_id: int) -> _Pending:
        pending = self._requests.pop(request_id)
        self._peers[pending.peer].in_flight -= 1
        self._chunks[pending.cid].request = None
        return pending

    def _evict_useless(self) -> bool:
        """Make room by forgetting the oldest idle peer that holds no missing chunk, so
        peers that announce nothing cannot fill the table and keep seeders out."""
        missing = [c.cid for c in self._chunks.values() if not c.held]
        for p in self._peers.values():
            if p.in_flight == 0 and not any(p.holds(cid) for cid in missing):
                self._forget(p.id)
                self.stats.peers_evicted += 1
                return True
        return False

    def _count_failure(self, pending: _Pending) -> None:
        chunk = self._chunks[pending.cid]
        if self._now_ms >= chunk.last_fail_ms + self.limits.retry_backoff_ms:
            chunk.fails.clear()  # the earlier failures are old news: start counting again
        chunk.last_fail_ms = self._now_ms
        fails = chunk.fails
        if pending.peer not in fails and len(fails) >= self.limits.peers_max:
            del fails[next(iter(fails))]  # forgetting the oldest only allows a retry
        fails[pending.peer] = fails.get(pending.peer, 0) + 1
        known = self._peers.get(pending.peer)
        if known is not None:
            known.consecutive_failures += 1

    def _forget(self, peer: bytes) -> list[Action]:
        """Stop tracking ``peer``: cancel its requests and uncount what it holds."""
        cancels: list[Action] = []
        for request_id, pending in list(self._requests.items()):
            if pending.peer == peer:
                self._close(request_id)
                self.stats.cancels += 1
                cancels.append(Cancel(peer, request_id))
        self._count(self._peers.pop(peer), -1)
        return cancels

    def _ban(self, peer: bytes) -> None:
        self._banned[peer] = None
        if len(self._banned) > self.limits.banned_max:
            del self._banned[next(iter(self._banned))]

    def _eligible(self, chunk: _Chunk) -> list[_Peer]:
        """Live holders with retries left that failed this chunk least often (every live
        holder once the retry backoff since its last failure is over)."""
        backoff_over = self._now_ms >= chunk.last_fail_ms + self.limits.retry_backoff_ms
        if not chunk.fails or backoff_over:  # the common case: nobody failed it yet
            return [p for p in self._peers.values() if p.holds(chunk.cid)]
        best: list[_Peer] = []
        best_fails = self.limits.retries_max
        for p in self._peers.values():
            fails = chunk.fails.get(p.id, 0)
            if fails > best_fails or not p.holds(chunk.cid):
                continue
            if fails < best_fails:
                best, best_fails = [], fails
            best.append(p)
        return best if best_fails < self.limits.retries_max else []

    def _pick(self, chunk: _Chunk, open_peers: list[_Peer]) -> _Peer | None:
        if not any(p.holds(chunk.cid) for p in open_peers):
            return None  # cheap exit: nobody with a free slot has it
        ready = [p for p in self._eligible(chunk) if p.in_flight < self.limits.peer_in_flight_max]
        if not ready:
            return None
        return min(ready, key=lambda p: (p.consecutive_failures, p.in_flight, p.tiebreak, p.id))

    def _candidates(self) -> Iterator[_Chunk]:
        """Missing chunks not in flight, in priority order: init, window, rarest first."""
        urgent = [self._init, *self._segments[self._playhead :][: self.limits.window_segments]]
        seen: set[bytes] = set()
        for cid in urgent:
            chunk = self._chunks[cid]
            if cid not in seen and not chunk.held and chunk.request is None:
                seen.add(cid)
                yield chunk
        rest = [
            c
            for c in self._chunks.values()
            if not c.held and c.request is None and c.cid not in seen
        ]
        rest.sort(key=lambda c: (c.holders, c.tiebreak))
        yield from rest

    def _schedule(self) -> list[Action]:
        if not self._started or self.done:
            return []
        free = self.limits.in_flight_max - len(self._requests)
        open_peers = [
            p for p in self._peers.values() if p.in_flight < self.limits.peer_in_flight_max
        ]
        actions: list[Action] = []
        if free <= 0 or not open_peers:
            return actions
        for chunk in self._candidates():
            peer = self._pick(chunk, open_peers)
            if peer is None:
                continue
            actions.append(self._send(chunk, peer))
            free -= 1
            if peer.in_flight >= self.limits.peer_in_flight_max:
                open_peers.remove(peer)
            if free == 0 or not open_peers:
                break
        return actions

    def _send(self, chunk: _Chunk, peer: _Peer) -> Request:
        request_id = self._next_request_id
        self._next_request_id += 1
        self._requests[request_id] = _Pending(
            peer.id, chunk.cid, self._now_ms + self.limits.request_timeout_ms
        )
        peer.in_flight += 1
        chunk.request = request_id
        self.stats.requests += 1
        return Request(peer.id, request_id, chunk.cid)
