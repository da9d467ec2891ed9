"""The bytes a browser plays: manifest envelopes and chunks, from the store or the network.

A chunk the node does not hold is fetched on demand: one download per (video, rendition)
at a time, started from the segment the viewer asked for (so a seek into the middle does
not wait for the beginning), its chunks verified and pinned as watched like any
`toktok fetch`. A thumbnail is fetched alone and left unpinned. Every request waits for
its own chunk, not for the whole rendition.
"""

import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio

from node.daemon import Node
from node.httpserver import Refusal
from node.swarm import SwarmError, download_rendition
from protocol.kinds import VideoManifest
from storage.chunks import PinReason
from storage.errors import ChunkCorrupt, ChunkMissing, StoreError
from storage.manifests import StoredManifest

log = logging.getLogger("toktok.gateway")

CHUNK_WAIT_S = 30.0
"""How long a request waits for a chunk being fetched before it is answered 504."""
DOWNLOADS_MAX = 8
"""On-demand downloads at once, over all viewers."""
NEARBY_STALL_MS = 3_000
"""How long the peers at hand may all fail a chunk before the DHT is asked."""
STALL_MS = 15_000
"""How long every known holder may fail a chunk before the download gives up."""
VIDEOS_KEPT = 256
"""Manifests kept parsed, with their chunks' places, for the videos being watched."""
CACHE_BYTES_MAX = 64 * 1024 * 1024
"""Chunks served lately, kept verified in memory: many viewers of one video (the popular
case) then cost one read and one hash per chunk, not one each."""


class SegmentError(Refusal):
    """A request for bytes that cannot be answered, with the HTTP-like ``status``."""


@dataclass(frozen=True)
class ChunkPlace:
    """Where a chunk sits in a manifest: its rendition (None: the thumbnail) and index
    (-1: the init segment)."""

    rendition: str | None
    index: int
    size: int


def chunk_places(manifest: VideoManifest) -> dict[bytes, ChunkPlace]:
    """Where each chunk ``manifest`` names sits in it (a cid named twice: its first place)."""
    places: dict[bytes, ChunkPlace] = {}
    places.setdefault(manifest.thumbnail.cid, ChunkPlace(None, 0, manifest.thumbnail.size))
    for rendition in manifest.renditions:
        places.setdefault(rendition.init.cid, ChunkPlace(rendition.name, -1, rendition.init.size))
        for index, segment in enumerate(rendition.segments):
            places.setdefault(segment.cid, ChunkPlace(rendition.name, index, segment.size))
    return places


class _Download:
    """One on-demand download, which wakes its waiters at every chunk it stores."""

    def __init__(self) -> None:
        self.changed = trio.Event()
        self.error: str | None = None
        self.done = False

    def step(self, _held: int, _total: int) -> None:
        self.changed.set()
        self.changed = trio.Event()


class _ChunkCache:
    """Verified chunk bytes by cid, least recently used out first, at most ``bytes_max``.
    Content ids name immutable bytes, so an entry is never stale."""

    def __init__(self, bytes_max: int) -> None:
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes_max = bytes_max
        self.bytes = 0

    def get(self, cid: bytes) -> bytes | None:
        data = self._entries.get(cid)
        if data is not None:
            self._entries.move_to_end(cid)
        return data

    def put(self, cid: bytes, data: bytes) -> None:
        if len(data) > self._bytes_max or cid in self._entries:
            return
        self._entries[cid] = data
        self.bytes += len(data)
        while self.bytes > self._bytes_max:
            _, old = self._entries.popitem(last=False)
            self.bytes -= len(old)


class SegmentSource:
    """Manifest envelopes and chunks for the web gateway (trio side)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._downloads: dict[tuple[bytes, str], _Download] = {}
        """Running downloads by (video, rendition or "thumbnail")."""
        self._cache = _ChunkCache(CACHE_BYTES_MAX)
        self._videos: OrderedDict[bytes, tuple[VideoManifest, dict[bytes, ChunkPlace]]] = (
            OrderedDict()
        )
        self.served_bytes = 0
        self.downloads_started = 0
        self.downloads_failed = 0
        self.fetched_on_demand = 0
        """Renditions downloaded whole on demand."""
        self.cache_hits = 0

    def stats(self) -> dict[str, int]:
        """The counters, for the node page."""
        return {
            "served_bytes": self.served_bytes,
            "downloads_started": self.downloads_started,
            "downloads_failed": self.downloads_failed,
            "fetched_on_demand": self.fetched_on_demand,
            "downloading": sum(1 for d in self._downloads.values() if not d.done),
            "cache_hits": self.cache_hits,
            "cache_bytes": self._cache.bytes,
        }

    def manifest(self, mid: bytes) -> VideoManifest:
        """The stored manifest ``mid``. Raises SegmentError 404 when it is not held."""
        return self._stored(mid).manifest

    async def envelope(self, mid: bytes) -> bytes:
        """The manifest's signed envelope, as stored (the browser checks its hash).
        Raises SegmentError 404 when the node does not hold the manifest."""
        return self._stored(mid).message.raw

    async def chunk(self, mid: bytes, cid: bytes) -> bytes:
        """The verified bytes of chunk ``cid`` of video ``mid``, fetched when missing.

        Raises SegmentError: 404 for an unknown video or a cid the manifest does not name,
        502 when no reachable peer has it, 504 when it does not arrive in CHUNK_WAIT_S.
        """
        manifest, places = self._video(mid)
        place = places.get(cid)
        if place is None:
            raise SegmentError("the video names no such chunk", 404)
        download: _Download | None = None
        with trio.move_on_after(CHUNK_WAIT_S):
            while True:
                data = await self._read(cid)
                if data is not None:
                    self.served_bytes += len(data)
                    return data
                if download is not None and download.error is not None:
                    raise SegmentError(f"cannot fetch the chunk: {download.error}", 502)
                # The running download of its rendition, or a new one (the last one ended
                # without this chunk: evicted at once under a full quota).
                download = self._download(mid, manifest, place)
                if not download.done:
                    await download.changed.wait()
        raise SegmentError(f"the chunk did not arrive within {CHUNK_WAIT_S:.0f} s", 504)

    def _video(self, mid: bytes) -> tuple[VideoManifest, dict[bytes, ChunkPlace]]:
        """The manifest and its chunks' places, kept for the videos watched lately: every
        chunk request needs them, and a stored manifest is read and checked only once."""
        entry = self._videos.get(mid)
        if entry is not None and self._node.stores.manifests.has(mid):  # not withdrawn
            self._videos.move_to_end(mid)
            return entry
        manifest = self.manifest(mid)
        entry = self._videos[mid] = (manifest, chunk_places(manifest))
        while len(self._videos) > VIDEOS_KEPT:
            self._videos.popitem(last=False)
        return entry

    def _stored(self, mid: bytes) -> StoredManifest:
        try:
            stored = self._node.stores.manifests.get(mid)
        except StoreError as exc:
            raise SegmentError(f"the manifest is damaged here: {exc}", 500) from exc
        if stored is None:
            raise SegmentError(f"no video {mid.hex()} is known here", 404)
        return stored

    async def _read(self, cid: bytes) -> bytes | None:
        cached = self._cache.get(cid)
        if cached is not None:
            self.cache_hits += 1
            return cached
        chunks = self._node.stores.chunks
        if not chunks.has(cid):
            return None
        try:
            # The read hashes the chunk (hashlib releases the GIL): off the event loop.
            data: bytes = await trio.to_thread.run_sync(chunks.get, cid)
            self._cache.put(cid, data)
            return data
        except ChunkMissing:
            return None  # evicted between the two calls
        except ChunkCorrupt as exc:
            # Refused rather than served; `toktok verify` reports it to the operator.
            raise SegmentError(f"the stored chunk is damaged: {exc}", 500) from exc

    def _download(self, mid: bytes, manifest: VideoManifest, place: ChunkPlace) -> _Download:
        # A thumbnail is fetched alone and not pinned: a feed shows many videos nobody here
        # watches. A segment brings its whole rendition, pinned as watched.
        job = _Job(mid, manifest.renditions[0].name, 0, manifest.thumbnail.cid)
        if place.rendition is not None:
            job = _Job(mid, place.rendition, max(place.index, 0), None)
        download = self._downloads.get(job.key)
        if download is not None and not download.done:
            return download
        running = sum(1 for d in self._downloads.values() if not d.done)
        if running >= DOWNLOADS_MAX:
            raise SegmentError(f"{DOWNLOADS_MAX} downloads are running: try again soon", 503)
        download = self._downloads[job.key] = _Download()
        self.downloads_started += 1
        self._node.nursery.start_soon(self._run, manifest, job, download)
        return download

    async def _run(self, manifest: VideoManifest, job: "_Job", d: _Download) -> None:
        """A task in the node's nursery: nothing may escape it, or the node stops."""
        node = self._node
        pin = None if job.only is not None else PinReason.WATCHED
        try:
            if pin is not None:
                node.stores.manifests.pin_video(job.mid, pin)
            # A viewer waits: first the likely holders at hand (the gossip origin, the
            # connected peers in placement order); a DHT lookup only when they fail.
            try:
                await self._fetch(manifest, job, d, pin, lookup=False)
            except SwarmError:
                await self._fetch(manifest, job, d, pin, lookup=True)
            if pin is not None:
                self.fetched_on_demand += 1
        except (SwarmError, StoreError) as exc:
            d.error = str(exc)
            self.downloads_failed += 1
            log.info("on-demand fetch failed", extra={"id": job.mid.hex(), "error": str(exc)})
        except Exception as exc:  # the top of a task: a bug here must not stop the node
            d.error = "internal error"
            self.downloads_failed += 1
            log.error("on-demand fetch crashed", exc_info=True, extra={"error": repr(exc)})
        finally:
            d.done = True
            d.step(0, 0)  # its waiters look again: at the store, or at the error
            if self._downloads.get(job.key) is d:
                del self._downloads[job.key]

    async def _fetch(
        self,
        manifest: VideoManifest,
        job: "_Job",
        d: _Download,
        pin: PinReason | None,
        *,
        lookup: bool,
    ) -> None:
        node = self._node
        peers = await node.seeding.providers(job.mid, lookup=lookup)
        await download_rendition(
            node.host,
            node.stores.chunks,
            manifest,
            job.rendition,
            peers,
            pin=pin,
            stats=node.swarm_stats,
            offend=node.seeding.offend,
            progress=d.step,
            playhead=job.playhead,
            only=None if job.only is None else (job.only,),
            stall_ms=STALL_MS if lookup else NEARBY_STALL_MS,
        )


@dataclass(frozen=True)
class _Job:
    """One on-demand download: a rendition from a segment on, or one chunk (``only``)."""

    mid: bytes
    rendition: str
    playhead: int
    only: bytes | None

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.mid, self.rendition if self.only is None else "thumbnail")
