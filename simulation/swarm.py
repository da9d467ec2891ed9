"""Chunk swarming: videos seeded by placement, watched by viewers that run the node's
real download scheduler (:class:`protocol.fetch.FetchScheduler`).

The node drives the scheduler over libp2p streams (node/swarm.py); this module is its
second driver, over :class:`~simulation.network.Network`. Each view feeds the scheduler
the same events the node does (peers, answers, failures, the passing time, the
playhead) and carries out its actions: a ``Request`` becomes a message to the peer, the
peer's answer a message back, a ``Store`` a chunk held, a ``Penalize`` a bad chunk
caught. Everything else is the scheduler's own policy, unchanged.

What is modelled:

- Videos: ``videos.count`` real signed manifests (one author key, one rendition of
  ``videos.segments`` segments of ``segment_ms``), seeded whole from the start by the
  ``videos.seeders`` nodes that rank highest under rendezvous placement
  (:mod:`protocol.placement`) over every node's peer id (:func:`node_peer_id`).
- Bad seeders: ``bad_seeders`` other nodes claim to hold every video whole and answer
  every request with wrong bytes of the right size. The scheduler must catch each
  (``BAD_HASH``), drop the peer and fetch the chunk elsewhere; a corrupt chunk stored by
  a viewer is a failure of the run.
- Views: ``videos.viewers`` views arrive from ``videos.start_s`` at ``views_per_s``
  (Poisson), each by a random online honest node that holds nothing of the video; a
  ``popular_viewers_fraction`` of them watch video 0, the rest pick by Zipf(zipf_s).
  Startup delay: from the view's start until the init chunk and the first segment are
  held. Playback then consumes one segment every ``segment_ms``; a stall is the next
  segment missing when it is due, and lasts until it arrives.
- Holders: every node keeps what it fetched and serves it while online (a partial
  holder); a view that completes makes its node a whole holder. A node that goes offline
  abandons its views in progress and keeps its chunks for when it returns.
- Messages: a request (:data:`REQUEST_BYTES`) and its answer (the chunk's modelled size
  plus :data:`RESPONSE_OVERHEAD_BYTES`) go as direct streams through the sender's uplink
  queue, the link's latency and the receiver's downlink queue, and may be lost.

Simplifications, each a choice made for speed or because the node has no equivalent:

- Chunk bytes: each chunk's bytes are a 32-byte payload whose SHA-256 is the content id
  in the manifest, so the scheduler checks real sizes and real hashes (a bad seeder's
  payload fails the hash) at the cost of hashing 32 bytes. The chunk's *size* on the
  network is modelled apart (``videos.segment_bytes`` per segment, :data:`INIT_BYTES`,
  :data:`THUMBNAIL_BYTES`): hashing real 250 KB chunks for every transfer of a
  1,000-viewer run would cost more than the rest of the run together.
- Provider discovery: a view's peers are up to :data:`PEERS_MAX` online holders
  (whole or partial, seeders and bad seeders among them) drawn at random, topped up
  every :data:`DISCOVERY_US` while it knows fewer, or when it can ask nobody (the
  node's DHT lookups). What a tracked peer stores is announced to the view at once and
  for free (``peer_has``), where the node would learn it with a control message.
- A peer that goes offline is removed from the views tracking it at once (its
  connection broke). Lost messages and slow peers are left to the scheduler's
  timeouts: the view calls ``tick`` at ``next_deadline_ms``.
- A view that can ask nobody for :data:`GIVE_UP_MS` gives up, as the node's download
  does (``stall_ms``). Serving has no per-peer stream limits or upload caps beyond the
  uplink queue.
- Like the node's chunk server, a peer answers every request it receives, even one
  whose asker has timed out meanwhile (a ``Cancel`` is not sent on the wire). A popular
  video's seeders can then queue more than ``request_timeout_ms`` of answers, every one
  of which arrives too late: the swarm stalls. ``busy_backlog_ms`` models the remedy
  the wire format allows but the node does not implement: answer ``BUSY`` when the
  uplink already holds that much, so the asker tries elsewhere at once.
- Availability counts a video available while one honest whole holder is online.

Costs: building ranks every node for every video, ``count * nodes`` SHA-256 digests
(10,000 nodes and one video: a few milliseconds).
"""

import hashlib
from dataclasses import dataclass, field

from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import seal
from protocol.fetch import Action, FetchLimits, FetchScheduler, Penalize, Request, Store
from protocol.kinds import (
    DURATION_MS_MAX,
    SEGMENTS_MAX,
    ChunkRef,
    Rendition,
    SegmentRef,
    VideoManifest,
)
from protocol.placement import seeders as placement_seeders
from simulation.dists import ScenarioError, Zipf
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.metrics import Result, percentile
from simulation.network import Network
from simulation.scenario import VideosConfig

RENDITION = "360p"
SEGMENT_MS_MAX = 60_000
"""The longest segment a manifest may name (``SegmentRef.duration_ms``)."""
PAYLOAD_BYTES = 32
INIT_BYTES = 2_000
"""Modelled size of a rendition's init chunk (an fMP4 header)."""
THUMBNAIL_BYTES = 20_000
REQUEST_BYTES = 48
"""A ChunkRequest frame: length prefix, request id and 36-byte content id."""
RESPONSE_OVERHEAD_BYTES = 16
NOT_FOUND_BYTES = 16
PEERS_MAX = 8
"""Peers a view tracks at once (the node tries at most 16 providers)."""
DISCOVERY_US = 1 * US_PER_S
"""How long a provider lookup takes, and how often a view short of peers looks again."""
DISCOVERY_PROBES = 4
"""Random draws from a video's holders per peer wanted, before the lookup settles."""
GIVE_UP_MS = 15_000
"""The node's ``stall_ms``: a download that can ask nobody this long fails."""
CREATED_MS = 1_790_000_000_000

ACTIVE, DONE, ABANDONED, GAVE_UP = "active", "done", "abandoned", "gave up"


def node_peer_id(node: int) -> bytes:
    """The peer id node ``node`` ranks under for placement: deterministic, 32 bytes."""
    return hashlib.sha256(b"sim-node" + node.to_bytes(4, "big")).digest()


@dataclass(eq=False, slots=True)
class _Video:
    index: int
    manifest: VideoManifest
    video_id: bytes
    init: bytes
    segments: tuple[bytes, ...]
    wire_bytes: dict[bytes, int]
    """Each chunk's modelled size on the network."""
    payload: dict[bytes, bytes]
    seeders: list[int]
    holding: dict[int, set[bytes] | None] = field(default_factory=dict)
    """What each holder holds: None for the whole video (seeders, bad seeders, done)."""
    holders: list[int] = field(default_factory=list)
    """The keys of ``holding`` in the order they came, for random draws."""
    whole_online: int = 0
    """Honest whole holders online now: the video is available while this is > 0."""


@dataclass(eq=False, slots=True)
class _View:
    number: int
    node: int
    video: _Video
    started_us: int
    scheduler: FetchScheduler
    held: set[bytes]
    state: str = ACTIVE
    peers: dict[int, None] = field(default_factory=dict)
    banned: dict[int, None] = field(default_factory=dict)
    tick_at_us: int | None = None
    discovering: bool = False
    starved_since_ms: int | None = None
    startup_us: int | None = None
    playhead: int = 0
    waiting_for: int | None = None
    """The segment playback is stalled on, if it is."""
    stall_since_us: int = 0
    stalls: int = 0
    stalled_us: int = 0


class Swarm:
    """Videos seeded by placement and watched by viewers (see the module doc)."""

    name = "swarm"

    def __init__(
        self,
        sim: Sim,
        net: Network,
        videos: VideosConfig,
        bad_seeders: int = 0,
        limits: FetchLimits | None = None,
        *,
        busy_backlog_ms: int | None = None,
    ) -> None:
        """Build the videos, place their seeders and pick the bad seeders; nothing runs
        until :meth:`start`. ``bad_seeders`` is a count (``byzantine.bad_seeders``);
        ``limits`` are the scheduler's (default: the node's); ``busy_backlog_ms``, when
        given, makes a peer answer BUSY while its uplink queue is longer than that (the
        node never does: None is faithful to it). After construction
        ``seeder_nodes`` and ``bad_seeder_nodes`` name the nodes chosen, for a runner
        that wants to keep them out of churn.

        Draws from the streams ``swarm.sizes``, ``swarm.roles``, ``swarm.views``,
        ``swarm.peers`` and ``swarm.fetch``. Raises :class:`ScenarioError` for videos a
        manifest cannot describe, or more seeders and bad seeders than nodes."""
        _check_videos(videos)
        if videos.count and videos.seeders + bad_seeders >= net.n:
            raise ScenarioError(
                f"videos.seeders + byzantine.bad_seeders must be < the nodes ({net.n}), "
                f"got {videos.seeders + bad_seeders}"
            )
        self.sim = sim
        self.net = net
        self.cfg = videos
        self.limits = limits or FetchLimits()
        self.busy_backlog_us = None if busy_backlog_ms is None else busy_backlog_ms * US_PER_MS
        self.peer_ids = [node_peer_id(node) for node in range(net.n)]
        self._node_of = {peer: node for node, peer in enumerate(self.peer_ids)}
        self._views_rng = sim.rng("swarm.views")
        self._peers_rng = sim.rng("swarm.peers")
        self._fetch_rng = sim.rng("swarm.fetch")
        self._zipf = Zipf(videos.count, videos.zipf_s) if videos.count else None
        self._author = AccountKey(hashlib.sha256(b"sim-author").digest())
        self.videos = [self._build_video(index) for index in range(videos.count)]
        self.seeder_nodes = sorted({node for v in self.videos for node in v.seeders})
        honest = set(self.seeder_nodes)
        others = [node for node in range(net.n) if node not in honest]
        roles = sim.rng("swarm.roles")
        self.bad_seeder_nodes = sorted(roles.sample(others, bad_seeders)) if self.videos else []
        self._liars = set(self.bad_seeder_nodes)
        self._whole_of: dict[int, list[_Video]] = {}
        for video in self.videos:
            for node in video.seeders:
                self._hold_whole(video, node)
            for node in self.bad_seeder_nodes:
                video.holding[node] = None
                video.holders.append(node)
        self._active: dict[int, list[_View]] = {}
        """Views in progress, by the node running them."""
        self._trackers: dict[int, dict[_View, None]] = {}
        """Views in progress that track a node as a peer, by that node."""
        self.views: list[_View] = []
        self.skipped = 0
        self.corrupt_stored: list[str] = []
        self.bytes_sent = 0
        self.bytes_served = [0] * net.n
        self.requests = 0
        self.busy = 0
        self._online = sum(net.online)
        self._availability: list[float] = []
        self._last_sample = (0, 0)
        net.watch_online(self._on_online)

    # -- building ------------------------------------------------------------------------

    def _build_video(self, index: int) -> _Video:
        cfg = self.cfg
        sizes = self.sim.rng("swarm.sizes")
        tag = b"sim-video" + index.to_bytes(4, "big")
        payloads = [
            hashlib.sha256(tag + part.to_bytes(4, "big")).digest()
            for part in range(cfg.segments + 2)
        ]
        thumb, init, *segments = payloads
        wire = [THUMBNAIL_BYTES, INIT_BYTES]
        wire += [max(1, int(cfg.segment_bytes.sample(sizes))) for _ in segments]
        key = self._author
        manifest = VideoManifest(
            author=key.public_key,
            created_ms=CREATED_MS + index,
            title=f"simulated video {index}",
            description="",
            tags=("sim",),
            license="CC-BY-4.0",
            remix_of=b"",
            duration_ms=cfg.segment_ms * cfg.segments,
            source_sha256=hashlib.sha256(tag).digest(),
            source_size=sum(wire),
            thumbnail=ChunkRef(cid=chunk_id(thumb), size=PAYLOAD_BYTES),
            renditions=(
                Rendition(
                    name=RENDITION,
                    width=640,
                    height=360,
                    bandwidth=800_000,
                    codecs="avc1.64001e,mp4a.40.2",
                    init=ChunkRef(cid=chunk_id(init), size=PAYLOAD_BYTES),
                    segments=tuple(
                        SegmentRef(cid=chunk_id(s), size=PAYLOAD_BYTES, duration_ms=cfg.segment_ms)
                        for s in segments
                    ),
                ),
            ),
        )
        video_id = seal(key, manifest).id
        cids = [chunk_id(p) for p in payloads]
        placed = placement_seeders(video_id, self.peer_ids, cfg.seeders)
        return _Video(
            index=index,
            manifest=manifest,
            video_id=video_id,
            init=cids[1],
            segments=tuple(cids[2:]),
            wire_bytes=dict(zip(cids, wire, strict=True)),
            payload=dict(zip(cids, payloads, strict=True)),
            seeders=sorted(self._node_of[peer] for peer in placed),
        )

    def _hold_whole(self, video: _Video, node: int) -> None:
        if node not in video.holding:
            video.holders.append(node)
        video.holding[node] = None
        self._whole_of.setdefault(node, []).append(video)
        if self.net.online[node]:
            video.whole_online += 1

    # -- the model -----------------------------------------------------------------------

    def start(self) -> None:
        if self.cfg.viewers and self.videos:
            self.sim.at(int(self.cfg.start_s * US_PER_S), self._arrive)

    def _arrive(self) -> None:
        self._begin_view()
        if len(self.views) + self.skipped < self.cfg.viewers:
            gap_s = self._views_rng.expovariate(self.cfg.views_per_s)
            self.sim.after(max(1, int(gap_s * US_PER_S)), self._arrive)

    def _pick_video(self) -> _Video:
        rng = self._views_rng
        if rng.random() < self.cfg.popular_viewers_fraction:
            return self.videos[0]
        assert self._zipf is not None
        return self.videos[self._zipf.sample(rng)]

    def _begin_view(self) -> None:
        video = self._pick_video()
        node = self._pick_viewer(video)
        if node is None:
            self.skipped += 1
            return
        now_ms = self.sim.now // US_PER_MS
        scheduler = FetchScheduler(video.manifest, RENDITION, (), self._fetch_rng, self.limits)
        view = _View(len(self.views), node, video, self.sim.now, scheduler, set())
        self.views.append(view)
        video.holding[node] = view.held
        video.holders.append(node)
        self._active.setdefault(node, []).append(view)
        self._discover(view)
        self._run(view, scheduler.start(now_ms))

    def _pick_viewer(self, video: _Video) -> int | None:
        rng, net = self._views_rng, self.net
        for _ in range(64):
            node = rng.randrange(net.n)
            if net.online[node] and node not in video.holding and node not in self._liars:
                return node
        return None

    # -- carrying out the scheduler's actions --------------------------------------------

    def _run(self, view: _View, actions: list[Action], source: int | None = None) -> None:
        """Carry out ``actions`` (and those they lead to), then arm the view's timers.

        ``source`` is the peer whose answer produced them (a Store's origin)."""
        queue = list(actions)
        now_ms = self.sim.now // US_PER_MS
        scheduler = view.scheduler
        i = 0
        while i < len(queue) and view.state == ACTIVE:
            action = queue[i]
            i += 1
            if isinstance(action, Request):
                peer = self._node_of[action.peer]
                self.requests += 1
                sent = self.net.send(
                    view.node,
                    peer,
                    REQUEST_BYTES,
                    self._serve,
                    view,
                    peer,
                    action.request_id,
                    action.cid,
                    direct=True,
                )
                if not sent and not self.net.reachable(view.node, peer):
                    self._untrack(view, peer)
                    queue += scheduler.remove_peer(action.peer, now_ms)
            elif isinstance(action, Store):
                self._store(view, action, source)
            elif isinstance(action, Penalize):
                peer = self._node_of[action.peer]
                view.banned[peer] = None
                self._untrack(view, peer)
            # A Cancel needs nothing: the scheduler ignores a late answer to it.
        if view.state != ACTIVE:
            return
        if scheduler.done:
            self._complete(view)
            return
        self._arm(view, now_ms)

    def _store(self, view: _View, store: Store, source: int | None) -> None:
        video = view.video
        cid = store.cid
        if store.data != video.payload[cid]:
            self.corrupt_stored.append(
                f"swarm: view {view.number} (node {view.node}) stored a corrupt chunk "
                f"{cid.hex()} of video {video.index} from node {source}"
            )
        view.held.add(cid)
        peer_id = self.peer_ids[view.node]
        now_ms = self.sim.now // US_PER_MS
        for other in list(self._trackers.get(view.node, ())):
            if other.video is video:
                self._run(other, other.scheduler.peer_has(peer_id, cid, now_ms))
        if view.startup_us is None:
            if video.init in view.held and video.segments[0] in view.held:
                view.startup_us = self.sim.now - view.started_us
                self.sim.after(self.cfg.segment_ms * US_PER_MS, self._advance, view)
        elif view.waiting_for is not None and cid == video.segments[view.waiting_for]:
            view.stalled_us += self.sim.now - view.stall_since_us
            view.playhead, view.waiting_for = view.waiting_for, None
            self.sim.after(self.cfg.segment_ms * US_PER_MS, self._advance, view)

    def _arm(self, view: _View, now_ms: int) -> None:
        """Schedule the next tick, and a provider lookup when the view is short of peers;
        give up when it has had nobody to ask for GIVE_UP_MS."""
        scheduler = view.scheduler
        deadline_ms = scheduler.next_deadline_ms
        if deadline_ms is not None:
            at_us = max(deadline_ms * US_PER_MS, self.sim.now + 1)
            if view.tick_at_us is None or at_us < view.tick_at_us:
                view.tick_at_us = at_us
                self.sim.at(at_us, self._tick, view, at_us)
        if scheduler.stalled:
            if view.starved_since_ms is None:
                view.starved_since_ms = now_ms
            elif now_ms - view.starved_since_ms >= GIVE_UP_MS:
                self._end(view, GAVE_UP)
                return
        else:
            view.starved_since_ms = None
        if (scheduler.stalled or len(view.peers) < PEERS_MAX) and not view.discovering:
            view.discovering = True
            self.sim.after(DISCOVERY_US, self._rediscover, view)

    def _tick(self, view: _View, at_us: int) -> None:
        if view.state != ACTIVE or view.tick_at_us != at_us:
            return
        view.tick_at_us = None
        self._run(view, view.scheduler.tick(self.sim.now // US_PER_MS))

    def _rediscover(self, view: _View) -> None:
        view.discovering = False
        if view.state == ACTIVE:
            self._run(view, self._discover(view))

    def _discover(self, view: _View) -> list[Action]:
        """Add up to PEERS_MAX - known online holders of the video, drawn at random."""
        video, net, rng = view.video, self.net, self._peers_rng
        wanted = PEERS_MAX - len(view.peers)
        holders = video.holders
        if len(holders) <= wanted * DISCOVERY_PROBES:
            draws = list(holders)
            rng.shuffle(draws)
        else:
            draws = [holders[rng.randrange(len(holders))] for _ in range(wanted * DISCOVERY_PROBES)]
        actions: list[Action] = []
        now_ms = self.sim.now // US_PER_MS
        for node in draws:
            if wanted == 0:
                break
            if node in view.peers or node in view.banned or node == view.node:
                continue
            has = video.holding[node]
            if (has is not None and not has) or not net.reachable(view.node, node):
                continue
            view.peers[node] = None
            self._trackers.setdefault(node, {})[view] = None
            wanted -= 1
            known = None if has is None else frozenset(has)
            actions += view.scheduler.add_peer(self.peer_ids[node], known, now_ms)
        return actions

    def _untrack(self, view: _View, peer: int) -> None:
        view.peers.pop(peer, None)
        tracked = self._trackers.get(peer)
        if tracked is not None:
            tracked.pop(view, None)

    # -- the peer's side -----------------------------------------------------------------

    def _serve(self, view: _View, peer: int, request_id: int, cid: bytes) -> None:
        """A request arrived at ``peer``: answer it from what the peer holds."""
        video = view.video
        if peer in self._liars:
            data: bytes | None = hashlib.sha256(b"sim-bad" + video.payload[cid]).digest()
        else:
            has = video.holding.get(peer, set())
            data = video.payload[cid] if has is None or cid in has else None
        size = NOT_FOUND_BYTES
        busy = self.busy_backlog_us
        if busy is not None and self.net.up_free[peer] - self.sim.now > busy:
            data = None  # BUSY: a status, answered as cheaply as NOT_FOUND
            self.busy += 1
        if data is not None:
            size = video.wire_bytes[cid] + RESPONSE_OVERHEAD_BYTES
            self.bytes_sent += size
            self.bytes_served[peer] += size
        self.net.send(
            peer, view.node, size, self._answer, view, peer, request_id, data, direct=True
        )

    def _answer(self, view: _View, peer: int, request_id: int, data: bytes | None) -> None:
        if view.state != ACTIVE:
            return
        now_ms = self.sim.now // US_PER_MS
        peer_id = self.peer_ids[peer]
        if data is None:
            self._run(view, view.scheduler.failed(peer_id, request_id, now_ms))
        else:
            self._run(view, view.scheduler.received(peer_id, request_id, data, now_ms), peer)

    # -- playback and the end of a view --------------------------------------------------

    def _advance(self, view: _View) -> None:
        """The segment at the playhead has played out: play the next, or stall on it."""
        if view.state != ACTIVE:
            return  # done: every segment is held, so playback cannot stall any more
        following = view.playhead + 1
        if following >= len(view.video.segments):
            return
        now_ms = self.sim.now // US_PER_MS
        if view.video.segments[following] in view.held:
            view.playhead = following
            self.sim.after(self.cfg.segment_ms * US_PER_MS, self._advance, view)
        else:
            view.waiting_for = following
            view.stall_since_us = self.sim.now
            view.stalls += 1
        self._run(view, view.scheduler.seek(following, now_ms))

    def _complete(self, view: _View) -> None:
        self._end(view, DONE)
        self._hold_whole(view.video, view.node)

    def _end(self, view: _View, state: str) -> None:
        view.state = state
        if view.waiting_for is not None:
            view.stalled_us += self.sim.now - view.stall_since_us
            view.waiting_for = None
        for peer in list(view.peers):
            self._untrack(view, peer)
        self._active[view.node].remove(view)

    def _on_online(self, node: int, online: bool) -> None:
        self._online += 1 if online else -1
        for video in self._whole_of.get(node, ()):
            video.whole_online += 1 if online else -1
        if online:
            return
        for view in list(self._active.get(node, ())):
            self._end(view, ABANDONED)
        now_ms = self.sim.now // US_PER_MS
        peer_id = self.peer_ids[node]
        for view in list(self._trackers.pop(node, {})):
            view.peers.pop(node, None)
            if view.state == ACTIVE:
                self._run(view, view.scheduler.remove_peer(peer_id, now_ms))

    # -- figures -------------------------------------------------------------------------

    def availability(self) -> float:
        """The fraction of videos with an honest whole holder online (1.0 for none)."""
        if not self.videos:
            return 1.0
        return sum(1 for v in self.videos if v.whole_online > 0) / len(self.videos)

    def sample(self) -> dict[str, float]:
        availability = self.availability()
        self._availability.append(availability)
        last_us, last_bytes = self._last_sample
        elapsed_s = (self.sim.now - last_us) / US_PER_S
        rate = (self.bytes_sent - last_bytes) / elapsed_s if elapsed_s > 0 else 0.0
        self._last_sample = (self.sim.now, self.bytes_sent)
        return {
            "availability": availability,
            "online_fraction": self._online / self.net.n,
            "viewers_active": sum(len(views) for views in self._active.values()),
            "views_completed": sum(1 for v in self.views if v.state == DONE),
            "bytes_per_s": rate,
        }

    def finish(self, result: Result) -> None:
        views = self.views
        startup_ms = [v.startup_us / US_PER_MS for v in views if v.startup_us is not None]
        ongoing_us = [self.sim.now - v.stall_since_us for v in views if v.waiting_for is not None]
        stats = [v.scheduler.stats for v in views]
        availability = self._availability or [self.availability()]
        result.samples["startup_ms"] = startup_ms
        result.per_node["swarm_bytes_served"] = [float(b) for b in self.bytes_served]
        result.summary["swarm"] = {
            "videos": len(self.videos),
            "views": len(views),
            "views_skipped": self.skipped,
            "completed": sum(1 for v in views if v.state == DONE),
            "abandoned": sum(1 for v in views if v.state == ABANDONED),
            "gave_up": sum(1 for v in views if v.state == GAVE_UP),
            "unfinished": sum(1 for v in views if v.state == ACTIVE),
            "started_playing": len(startup_ms),
            "startup_ms_p50": percentile(startup_ms, 50),
            "startup_ms_p90": percentile(startup_ms, 90),
            "startup_ms_p99": percentile(startup_ms, 99),
            "stalls": sum(v.stalls for v in views),
            "stalled_ms": (sum(v.stalled_us for v in views) + sum(ongoing_us)) / US_PER_MS,
            "availability_mean": sum(availability) / len(availability),
            "availability_min": min(availability),
            "requests": self.requests,
            "busy": self.busy,
            "chunks_transferred": sum(s.stored for s in stats),
            "chunk_bytes_sent": self.bytes_sent,
            "timeouts": sum(s.timeouts for s in stats),
            "failures": sum(s.failures for s in stats),
            "bad_chunks_caught": sum(s.bad_chunks for s in stats),
            "bad_chunks_accepted": len(self.corrupt_stored),
            "seeders": len(self.seeder_nodes),
            "bad_seeders": len(self.bad_seeder_nodes),
        }
        result.failures += self.corrupt_stored


def _check_videos(cfg: VideosConfig) -> None:
    """Raises :class:`ScenarioError` for videos no manifest can describe."""
    if cfg.segments > SEGMENTS_MAX:
        raise ScenarioError(f"videos.segments: must be <= {SEGMENTS_MAX}, got {cfg.segments}")
    if cfg.segment_ms > SEGMENT_MS_MAX:
        raise ScenarioError(f"videos.segment_ms: must be <= {SEGMENT_MS_MAX}, got {cfg.segment_ms}")
    if cfg.segments * cfg.segment_ms > DURATION_MS_MAX:
        raise ScenarioError(
            f"videos: segments * segment_ms must be <= {DURATION_MS_MAX} (a manifest's "
            f"longest video), got {cfg.segments * cfg.segment_ms}"
        )
