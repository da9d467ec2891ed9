"""Chunk exchange over ``/toktok/chunks/1.0.0``: serving, and downloading from a swarm.

Serving (:class:`ChunkServer`): a peer opens a stream and writes requests; each is answered
in order with the chunk, read back and hash-checked from the store, or a status saying
why not. Each peer may hold ``streams_per_peer_max`` streams and each stream
``requests_queued_max`` unanswered requests; beyond that the server stops reading, so a
greedy peer slows only itself.

Downloading (:func:`download_rendition`): protocol/fetch.py's scheduler decides which
peer serves which chunk; this module carries its requests over one stream per peer, feeds
it the answers and the passing time, stores what it verified and reports bad peers.
"""

import hashlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.peer.id import ID

from node.streams import read_some
from protocol.chunkwire import (
    ERROR,
    NOT_FOUND,
    OK,
    PROTOCOL_ID,
    ChunkRequest,
    ChunkResponse,
    FrameDecoder,
    encode_frame,
)
from protocol.errors import DecodeError
from protocol.fetch import Cancel, FetchLimits, FetchScheduler, Penalize, Request, Store
from protocol.kinds import VideoManifest
from storage.chunks import ChunkStore, PinReason
from storage.errors import ChunkMissing, StoreError

log = logging.getLogger("toktok.swarm")

READ_BYTES = 256 * 1024
ANSWERS_AHEAD = 2
"""Answers a chunk server loads ahead of the one being written, per stream."""
HASH_AHEAD = 4
"""Received chunks waiting for their hash, per stream."""
CHUNK_PROTOCOL = TProtocol(PROTOCOL_ID)


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class SwarmError(Exception):
    """A download that cannot finish: no reachable peer holds some chunks."""


@dataclass
class SwarmStats:
    chunks_served: int = 0
    bytes_served: int = 0
    chunks_fetched: int = 0
    bytes_fetched: int = 0
    requests_refused: int = 0


class UploadLimit:
    """A token bucket over the bytes this node serves: the operator's upload cap.

    Holds at most one second of tokens, so a burst never exceeds the rate for long.
    """

    def __init__(self, bytes_per_second: int) -> None:
        if bytes_per_second < 1:
            raise ValueError("an upload limit is at least 1 byte per second")
        self._rate = bytes_per_second
        self._tokens = float(bytes_per_second)
        self._stamp: float | None = None
        """trio's clock at the last take; None before the first (made outside trio)."""
        self._lock = trio.Lock()

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes may be sent (one at a time, in arrival order)."""
        async with self._lock:
            now = trio.current_time()
            elapsed = 0.0 if self._stamp is None else now - self._stamp
            self._tokens = min(self._rate, self._tokens + elapsed * self._rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                await trio.sleep(-self._tokens / self._rate)


class ChunkServer:
    """Answers chunk requests from the local chunk store."""

    def __init__(
        self,
        chunks: ChunkStore,
        stats: SwarmStats,
        *,
        streams_per_peer_max: int = 4,
        upload_limit: UploadLimit | None = None,
    ) -> None:
        self._chunks = chunks
        self._stats = stats
        self.upload_limit = upload_limit
        self._streams_per_peer_max = streams_per_peer_max
        self._streams: defaultdict[ID, int] = defaultdict(int)

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if self._streams[peer] >= self._streams_per_peer_max:
            self._stats.requests_refused += 1
            await stream.reset()
            return
        self._streams[peer] += 1
        try:
            await self._serve(stream)
        except (DecodeError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("chunk stream ended", extra={"peer": str(peer), "error": str(exc)})
            await stream.reset()
        except Exception as exc:  # the stream's many error types; one peer, one stream
            log.debug("chunk stream failed", extra={"peer": str(peer), "error": repr(exc)})
            await stream.reset()
        finally:
            self._streams[peer] -= 1
            if not self._streams[peer]:
                del self._streams[peer]

    async def _serve(self, stream: INetStream) -> None:
        # Two tasks: this one reads requests and loads their answers in a worker thread
        # (the read re-hashes the chunk), the other writes them. ANSWERS_AHEAD answers
        # between them keep the stream busy while the next chunk loads; the reader stops
        # reading when they are waiting, so a peer's backlog stays bounded.
        answers_send, answers = trio.open_memory_channel[ChunkResponse](ANSWERS_AHEAD)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_answers, stream, answers)
            async with answers_send:
                decoder = FrameDecoder(ChunkRequest)
                while data := await read_some(stream, READ_BYTES):
                    for request in decoder.feed(data):
                        response = await trio.to_thread.run_sync(self._answer, request)
                        if response.status == OK:
                            self._stats.chunks_served += 1
                            self._stats.bytes_served += len(response.data)
                        await answers_send.send(response)
        await stream.close()

    async def _write_answers(
        self, stream: INetStream, answers: trio.MemoryReceiveChannel[ChunkResponse]
    ) -> None:
        async for response in answers:
            if self.upload_limit is not None and response.data:
                await self.upload_limit.take(len(response.data))
            await stream.write(encode_frame(response))

    def _answer(self, request: ChunkRequest) -> ChunkResponse:
        """The answer to ``request`` from the store (runs in a worker thread)."""
        try:
            data = self._chunks.get(request.cid)
        except ChunkMissing:
            return ChunkResponse(id=request.id, status=NOT_FOUND, data=b"")
        except StoreError as exc:  # damaged on our disk: reported, never served
            log.warning("cannot serve a chunk", extra={"error": str(exc)})
            return ChunkResponse(id=request.id, status=ERROR, data=b"")
        return ChunkResponse(id=request.id, status=OK, data=data)


Progress = Callable[[int, int], None]
"""Called with (bytes held, bytes total) as chunks arrive."""


@dataclass(frozen=True)
class _Event:
    peer: ID
    response: ChunkResponse | None
    """None: the peer's stream broke or could not be opened."""
    sha256: bytes | None = None
    """The digest of the response's data, computed in a worker thread."""


class _Download:
    """Drives one FetchScheduler over libp2p streams."""

    def __init__(
        self,
        host: BasicHost,
        scheduler: FetchScheduler,
        chunks: ChunkStore,
        pin: PinReason | None,
        stats: SwarmStats,
        offend: Callable[[ID, str], Awaitable[None]],
        progress: Progress | None,
    ) -> None:
        self._host = host
        self._scheduler = scheduler
        self._chunks = chunks
        self._pin = pin
        self._stats = stats
        self._offend = offend
        self._progress = progress
        start = scheduler.progress
        self._held_bytes, self._total_bytes = start.bytes_held, start.bytes_total
        self._events_send, self._events = trio.open_memory_channel[_Event](1024)
        self._outboxes: dict[ID, trio.MemorySendChannel[bytes]] = {}
        self._by_bytes: dict[bytes, ID] = {}

    async def run(self, peers: Sequence[ID], stall_ms: int, playhead: int = 0) -> None:
        """Raises SwarmError (nothing to ask for ``stall_ms``) or StoreError, bare: raised
        out of the nursery, trio would wrap them in a group their callers do not catch."""
        failure: SwarmError | StoreError | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._drive(peers, stall_ms, playhead)
            except (SwarmError, StoreError) as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _drive(self, peers: Sequence[ID], stall_ms: int, playhead: int) -> None:
        now = monotonic_ms()
        for peer in peers:
            self._by_bytes[peer.to_bytes()] = peer
            self._scheduler.add_peer(peer.to_bytes(), None, now)
        if playhead:
            self._scheduler.seek(playhead, now)
        await self._carry_out(self._scheduler.start(now))
        stalled_since: int | None = None
        while not self._scheduler.done:
            now = monotonic_ms()
            if self._scheduler.stalled:
                stalled_since = now if stalled_since is None else stalled_since
                if now - stalled_since >= stall_ms:
                    missing = len(self._scheduler.unavailable)
                    raise SwarmError(f"{missing} chunks are held by no reachable peer")
            else:
                stalled_since = None
            deadline = self._scheduler.next_deadline_ms
            wait_ms = 200 if deadline is None else max(0, min(deadline - now, 200))
            with trio.move_on_after(wait_ms / 1000):
                event = await self._events.receive()
                await self._carry_out(self._on_event(event))
            await self._carry_out(self._scheduler.tick(monotonic_ms()))

    def _on_event(self, event: _Event) -> list[Request | Cancel | Store | Penalize]:
        now = monotonic_ms()
        key = event.peer.to_bytes()
        response = event.response
        if response is None:
            self._outboxes.pop(event.peer, None)
            return self._scheduler.remove_peer(key, now)
        if response.status == OK:
            return self._scheduler.received(
                key, response.id, response.data, now, sha256=event.sha256
            )
        return self._scheduler.failed(key, response.id, now)

    async def _carry_out(self, actions: Sequence[Request | Cancel | Store | Penalize]) -> None:
        for action in actions:
            if isinstance(action, Request):
                self._send(self._by_bytes[action.peer], action)
            elif isinstance(action, Store):
                # The scheduler checked the bytes; the write goes to a worker thread so
                # the event loop keeps reading the streams meanwhile.
                await trio.to_thread.run_sync(
                    partial(self._chunks.put_verified, action.cid, action.data, pin=self._pin)
                )
                self._stats.chunks_fetched += 1
                self._stats.bytes_fetched += len(action.data)
                self._held_bytes += len(action.data)
                if self._progress is not None:
                    self._progress(self._held_bytes, self._total_bytes)
            elif isinstance(action, Penalize):
                peer = self._by_bytes[action.peer]
                self._outboxes.pop(peer, None)
                await self._offend(peer, action.reason)
            # A Cancel needs nothing: the scheduler ignores a late answer to it.

    def _send(self, peer: ID, request: Request) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            send, receive = trio.open_memory_channel[bytes](64)
            outbox = self._outboxes[peer] = send
            self._nursery.start_soon(self._link, peer, receive)
        frame = encode_frame(ChunkRequest(id=request.request_id, cid=request.cid))
        try:
            outbox.send_nowait(frame)
        except (trio.WouldBlock, trio.BrokenResourceError):
            self._events_send.send_nowait(_Event(peer, None))

    async def _link(self, peer: ID, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
        """One stream to ``peer``: write queued requests, read answers, report a break."""
        try:
            stream = await self._host.new_stream(peer, [CHUNK_PROTOCOL])
        except Exception as exc:  # dial and negotiation fail in many ways; all mean "gone"
            log.debug("cannot open a chunk stream", extra={"peer": str(peer), "error": repr(exc)})
            await self._events_send.send(_Event(peer, None))
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, stream, outbox)
                await self._read(peer, stream)
                nursery.cancel_scope.cancel()
        except Exception as exc:  # a broken stream, a reset, garbage: the peer is gone to us
            log.debug("chunk stream broke", extra={"peer": str(peer), "error": repr(exc)})
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.reset()
        await self._events_send.send(_Event(peer, None))

    async def _write(self, stream: INetStream, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
        async for frame in outbox:
            await stream.write(frame)

    async def _read(self, peer: ID, stream: INetStream) -> None:
        # Reading goes on while answers are hashed, so the peer's flow-control window
        # keeps opening: a hasher task takes them through a channel of HASH_AHEAD.
        responses_send, responses = trio.open_memory_channel[ChunkResponse](HASH_AHEAD)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._hash, peer, responses)
            async with responses_send:
                decoder = FrameDecoder(ChunkResponse)
                while data := await read_some(stream, READ_BYTES):
                    for response in decoder.feed(data):
                        await responses_send.send(response)

    async def _hash(self, peer: ID, responses: trio.MemoryReceiveChannel[ChunkResponse]) -> None:
        async for response in responses:
            digest = None
            if response.status == OK:
                # hashlib releases the GIL: hashing in a thread uses the second core.
                digest = await trio.to_thread.run_sync(_sha256, response.data)
            await self._events_send.send(_Event(peer, response, digest))


async def download_rendition(
    host: BasicHost,
    chunks: ChunkStore,
    manifest: VideoManifest,
    rendition: str,
    peers: Sequence[ID],
    *,
    pin: PinReason | None,
    stats: SwarmStats,
    offend: Callable[[ID, str], Awaitable[None]],
    limits: FetchLimits | None = None,
    stall_ms: int = 15_000,
    progress: Progress | None = None,
    rng: random.Random | None = None,
    playhead: int = 0,
    only: Collection[bytes] | None = None,
) -> None:
    """Fetch every missing chunk of one rendition from ``peers``, verified, into ``chunks``,
    the playback window from segment ``playhead`` first (a viewer who seeked); with
    ``only``, just the missing chunks among those (the thumbnail, say).

    Raises :class:`SwarmError` when, for ``stall_ms``, no chunk can be asked of any peer.
    """
    held = [
        cid
        for cid in _rendition_chunks(manifest, rendition)
        if (only is not None and cid not in only) or chunks.has(cid)
    ]
    scheduler = FetchScheduler(manifest, rendition, held, rng or random.Random(), limits)
    if scheduler.done:
        return
    download = _Download(host, scheduler, chunks, pin, stats, offend, progress)
    await download.run(peers, stall_ms, playhead)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _rendition_chunks(manifest: VideoManifest, rendition: str) -> list[bytes]:
    cids = [manifest.thumbnail.cid]
    for r in manifest.renditions:
        if r.name == rendition:
            cids.append(r.init.cid)
            cids.extend(s.cid for s in r.segments)
    return cids
