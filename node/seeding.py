"""Which videos this node holds, and fetching them from the swarm.

Placement (protocol/placement.py): each video is seeded by the ``replicas`` nodes that
rank highest for it under rendezvous hashing over the peers this node knows, besides its
creator and whoever pinned it. When a manifest arrives and this node is one of them, it
queues the video and fetches it, pinned for SEEDING. ``toktok fetch`` fetches a video
pinned as WATCHED. Providers are, in order: the node that first gossiped the manifest
(its creator's, usually), then connected peers in placement order, the likeliest seeders
first.
"""

import logging
from collections import OrderedDict
from collections.abc import Callable

import trio
from libp2p.host.basic_host import BasicHost
from libp2p.peer.id import ID

from node.peers import PeerBook
from node.providers import Providers
from node.swarm import Progress, SwarmError, SwarmStats, download_rendition
from protocol.envelope import SignedMessage
from protocol.kinds import VideoManifest
from protocol.placement import rank, should_seed
from storage.chunks import PinReason
from storage.errors import ManifestError, StoreError
from storage.stores import Stores

log = logging.getLogger("toktok.seeding")

QUEUE_MAX = 1024
REBALANCE_MAX = 100_000
"""Videos a rebalance looks at; beyond that the oldest ids wait (a bound, not a plan)."""
UNDECIDED_MAX = 8192
ORIGINS_MAX = 10_000
PROVIDERS_MAX = 16
STALL_MS = 15_000
"""How long a download waits with nothing to ask of anyone before it fails."""
SEEDING_STALL_MS = 5_000
"""The same for placement's downloads: the next video in the queue should not wait long
behind one nobody reachable holds."""


class Seeding:
    """Queues and runs downloads: placement's, and the owner's."""

    def __init__(
        self,
        host: BasicHost,
        stores: Stores,
        peers: PeerBook,
        stats: SwarmStats,
        *,
        replicas: int,
        clock: Callable[[], int],
        providers: Providers | None = None,
        peer_live_ms: int = 600_000,
        rebalance_s: int = 60,
    ) -> None:
        self._host = host
        self._stores = stores
        self._peers = peers
        self._stats = stats
        self._replicas = replicas
        self._clock = clock
        self._dht = providers
        self._me = host.get_id().to_bytes()
        self._origins: OrderedDict[bytes, ID] = OrderedDict()
        self._queue_send, self._queue = trio.open_memory_channel[bytes](QUEUE_MAX)
        self._undecided_send, self._undecided = trio.open_memory_channel[bytes](UNDECIDED_MAX)
        self._peer_live_ms = peer_live_ms
        self._rebalance_s = rebalance_s
        self._queued: set[bytes] = set()
        """Videos waiting in the queue or being fetched for seeding."""
        self._seeding: set[bytes] | None = None
        """Videos pinned for SEEDING here; read from the store at the first rebalance."""
        self.seeded = 0
        self.failed = 0
        self.released = 0

    def note_origin(self, mid: bytes, origin: ID) -> None:
        """Remember who first gossiped manifest ``mid``: it holds the video."""
        if mid not in self._origins:
            self._origins[mid] = origin
            while len(self._origins) > ORIGINS_MAX:
                self._origins.popitem(last=False)

    def on_message(self, message: SignedMessage) -> None:
        """An ingest listener: consider each new manifest for seeding."""
        if not isinstance(message.record, VideoManifest):
            return
        try:
            self._undecided_send.send_nowait(message.id)
        except trio.WouldBlock:
            log.warning("seeding backlog full", extra={"id": message.id.hex()})

    async def _decide(self) -> None:
        # Decided in a task of its own, after the gossip validator that brought the
        # manifest has noted its origin: the creator's node is not one of the R seeders.
        async for mid in self._undecided:
            if self._is_seeder(mid, self._candidates()):
                self._enqueue(mid)

    def _is_seeder(self, mid: bytes, live: set[bytes]) -> bool:
        """Whether this node is one of the seeders of ``mid`` among ``live`` (binary ids)."""
        origin = self._origins.get(mid)
        candidates = live - {origin.to_bytes()} if origin is not None else live
        return should_seed(self._me, mid, candidates, self._replicas)

    def _enqueue(self, mid: bytes) -> bool:
        if mid in self._queued:
            return False
        try:
            self._queue_send.send_nowait(mid)
        except trio.WouldBlock:
            log.warning("seeding queue full", extra={"id": mid.hex()})
            return False
        self._queued.add(mid)
        return True

    def _candidates(self) -> set[bytes]:
        """The peers placement ranks, as binary ids: those alive lately, and those
        connected now."""
        live = self._peers.live(self._clock(), self._peer_live_ms)
        return {p.to_bytes() for p in live | set(self._host.get_connected_peers())}

    async def _rebalance_forever(self) -> None:
        while True:
            await trio.sleep(self._rebalance_s)
            await self.rebalance()

    async def rebalance(self) -> tuple[int, int]:
        """Compute placement again over the peers alive now: queue the videos this node
        should seed and lacks (a seeder left, or a download failed), and release the ones
        it no longer should (the quota may then evict them). Returns (queued, released)."""
        if self._seeding is None:
            self._seeding = self._stores.manifests.pinned_videos(PinReason.SEEDING)
        live = self._candidates()
        queued = released = 0
        for count, mid in enumerate(list(self._stores.manifests.ids())[:REBALANCE_MAX]):
            if count % 100 == 99:
                await trio.sleep(0)  # placement is hashing: let the node breathe
            if self._is_seeder(mid, live):
                if mid not in self._queued and self._lacks(mid):
                    queued += self._enqueue(mid)
            elif mid in self._seeding:
                try:
                    self._stores.manifests.unpin_video(mid, PinReason.SEEDING)
                except StoreError as exc:
                    log.warning("cannot release a video", extra={"error": str(exc)})
                    continue
                self._seeding.discard(mid)
                released += 1
        self.released += released
        return queued, released

    def _lacks(self, mid: bytes) -> bool:
        try:
            stored = self._stores.manifests.get(mid)
        except StoreError:
            return False  # damaged here: `toktok verify` reports it
        return stored is not None and not self._stores.manifests.has_all_chunks(stored.manifest)

    async def providers(self, mid: bytes, *, lookup: bool) -> list[ID]:
        """Peers to ask for video ``mid``, likeliest holders first: its gossip origin,
        those announcing it in the DHT (with ``lookup``), then connected peers in placement
        order."""
        out: list[ID] = []
        origin = self._origins.get(mid)
        if origin is not None and origin != self._host.get_id():
            out.append(origin)
        if lookup and self._dht is not None:
            out += [p for p in await self._dht.find(mid) if p not in out]
        connected = {p.to_bytes(): p for p in self._host.get_connected_peers()}
        for key in rank(mid, connected):
            if connected[key] not in out:
                out.append(connected[key])
        return out[:PROVIDERS_MAX]

    async def run(self) -> None:
        """Decide what to seed, and fetch it one video at a time (seeding must not crowd
        out the owner)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._decide)
            nursery.start_soon(self._rebalance_forever)
            await self._fetch_queued()

    async def _fetch_queued(self) -> None:
        async for mid in self._queue:
            try:
                await self.fetch(mid, PinReason.SEEDING, stall_ms=SEEDING_STALL_MS)
                self.seeded += 1
                if self._seeding is not None:
                    self._seeding.add(mid)
            except (SwarmError, StoreError) as exc:  # ManifestError is a StoreError
                # Tried again at the next rebalance, while this node is still a seeder.
                self.failed += 1
                log.info("seeding failed", extra={"id": mid.hex(), "error": str(exc)})
            finally:
                self._queued.discard(mid)

    async def fetch(
        self,
        mid: bytes,
        pin: PinReason,
        progress: Progress | None = None,
        *,
        stall_ms: int = STALL_MS,
    ) -> VideoManifest:
        """Fetch every chunk of stored manifest ``mid`` and pin it for ``pin``.

        Raises :class:`ManifestError` when the manifest is not stored, and
        :class:`~node.swarm.SwarmError` when no reachable peer holds some chunks.
        """
        stored = self._stores.manifests.get(mid)
        if stored is None:
            raise ManifestError(f"no video {mid.hex()} is known here")
        manifest = stored.manifest
        # Pinned before and after: chunks held now are kept while the rest arrive (the
        # download pins each new chunk as it stores it).
        self._stores.manifests.pin_video(mid, pin)
        # Placement's seeders find the holders without the DHT: the gossip origin, and the
        # other seeders among connected peers. A lookup costs every node on its path CPU,
        # so only the owner's fetches make one (or a seeding download nobody answers).
        seeding = pin is PinReason.SEEDING
        peers = await self.providers(mid, lookup=not seeding)
        if seeding and not peers:
            peers = await self.providers(mid, lookup=True)
        total = sum(r.init.size + sum(s.size for s in r.segments) for r in manifest.renditions)
        done_before = 0
        for rendition in manifest.renditions:
            size = rendition.init.size + sum(s.size for s in rendition.segments)

            def step(held: int, _total: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(min(base + held, total), total)

            await download_rendition(
                self._host,
                self._stores.chunks,
                manifest,
                rendition.name,
                peers,
                pin=pin,
                stall_ms=stall_ms,
                stats=self._stats,
                offend=self.offend,
                progress=step,
            )
            done_before += size
        self._stores.manifests.pin_video(mid, pin)
        if self._dht is not None and not seeding:
            # Seeders are found by placement; others announce (the periodic announcer
            # covers every video held whole, seeded ones too, at its slow pace).
            await self._dht.provide(mid)
        return manifest

    async def offend(self, peer: ID, reason: str) -> None:
        await self._peers.offend(peer, reason, self._clock())
