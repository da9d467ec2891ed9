"""WebRTC to browsers: the answer to a page's offer, and chunks over its data channel.

A page POSTs an SDP offer (non-trickle: its candidates inside) to ``/api/rtc``; the node
answers with its own, and the page opens one data channel, ``toktok``. On it the page asks
for chunks and the node sends them (docs/api.md, "Streaming"):

    request   text    {"id": <uint32>, "video": <manifest id hex>, "cid": <cid hex>}
    cancel    text    {"cancel": <id>}
    chunk     binary  u32 id, u32 offset, u32 total (big-endian), then bytes from offset;
                      each message at most MESSAGE_BYTES_MAX, the chunk whole at offset +
                      length == total
    refusal   text    {"id": <id>, "error": <message>}

Everything here but :class:`RtcService`'s public methods runs on the bridge's asyncio
loop; chunk bytes come from the trio side (:class:`~node.gateway.segments.SegmentSource`)
through :meth:`Bridge.run_trio`. The sender respects the channel's ``bufferedAmount``: it
pauses above BUFFERED_HIGH and resumes on ``bufferedamountlow`` (BUFFERED_LOW), so a slow
browser holds at most about a MiB of a node's memory per connection.

aioice leaves 127.0.0.1 out of its host candidates; a node serving loopback pages must
offer it, so the service sets aioice's host address list to ``ice_addresses``.
"""

import asyncio
import json
import logging
import re
import struct
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from node.gateway.bridge import Bridge, BridgeClosed
from node.gateway.segments import SegmentError
from node.httpserver import Refusal

log = logging.getLogger("toktok.gateway")

CHANNEL_LABEL = "toktok"
MESSAGE_BYTES_MAX = 256 * 1024
HEADER = struct.Struct(">III")
PAYLOAD_BYTES_MAX = MESSAGE_BYTES_MAX - HEADER.size
BUFFERED_HIGH = 1024 * 1024
BUFFERED_LOW = 256 * 1024
DRAIN_S = 30.0
"""How long a full send buffer may stay full before the browser is cut off."""
REQUEST_BYTES_MAX = 1024
SDP_BYTES_MAX = 64 * 1024
REQUEST_ID_MAX = 2**32 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX72 = re.compile(r"[0-9a-f]{72}")


class ChunkSource(Protocol):
    """Where chunk bytes come from (trio side): node.gateway.segments.SegmentSource."""

    async def chunk(self, mid: bytes, cid: bytes) -> bytes:
        """The verified chunk; raises SegmentError to refuse."""
        ...


class RtcRefused(Refusal):
    """An offer the node will not answer, with the HTTP status to say so."""


@dataclass(frozen=True)
class RtcLimits:
    connections_max: int = 64
    per_client_max: int = 8
    requests_in_flight_max: int = 8
    open_s_max: float = 30.0
    """From the answer to an open data channel; a connection that takes longer is closed."""
    idle_s_max: float = 300.0
    """A connection that asks for nothing for this long is closed."""


@dataclass
class RtcStats:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    requests: int = 0
    requests_refused: int = 0
    chunks_sent: int = 0
    bytes_sent: int = 0
    pauses: int = 0
    """Times a sender waited for the browser to drain its buffer."""


class _BadRequest(Exception):
    pass


def parse_request(text: str) -> tuple[int, bytes, bytes] | int:
    """A data-channel text message: ``(id, video, cid)`` for a request, the id alone for
    a cancel. Raises _BadRequest with the reason."""
    if len(text.encode()) > REQUEST_BYTES_MAX:
        raise _BadRequest(f"a request is at most {REQUEST_BYTES_MAX} bytes")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _BadRequest("a request is a JSON object") from exc
    if not isinstance(value, dict):
        raise _BadRequest("a request is a JSON object")
    if "cancel" in value:
        return _request_id(value.get("cancel"))
    rid = _request_id(value.get("id"))
    video, cid = value.get("video"), value.get("cid")
    if not isinstance(video, str) or not _HEX64.fullmatch(video):
        raise _BadRequest("video: a manifest id, 64 lower-case hex digits")
    if not isinstance(cid, str) or not _HEX72.fullmatch(cid):
        raise _BadRequest("cid: a content id, 72 lower-case hex digits")
    return rid, bytes.fromhex(video), bytes.fromhex(cid)


def _request_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= REQUEST_ID_MAX:
        raise _BadRequest(f"id: an integer from 0 to {REQUEST_ID_MAX}")
    return value


def frames(request_id: int, data: bytes) -> Iterator[bytes]:
    """The messages that carry ``data`` for request ``request_id`` (one for empty data),
    made one at a time: a chunk is never held twice over while it is sent."""
    total = len(data)
    view = memoryview(data)
    for offset in range(0, max(total, 1), PAYLOAD_BYTES_MAX):
        yield HEADER.pack(request_id, offset, total) + view[offset : offset + PAYLOAD_BYTES_MAX]


def _check_offer(sdp: object) -> str:
    # [REJECT] The offer is SDP text of bounded size with a data channel section.
    if not isinstance(sdp, str) or not sdp:
        raise RtcRefused("sdp: the offer's SDP text", 400)
    if len(sdp) > SDP_BYTES_MAX:
        raise RtcRefused(f"sdp: at most {SDP_BYTES_MAX} bytes", 413)
    lines = sdp.split("\r\n")
    media = [line for line in lines if line.startswith("m=")]
    # [REJECT] One media section, a data channel: nothing else is served here.
    if not sdp.startswith("v=0") or len(media) != 1 or not media[0].startswith("m=application"):
        raise RtcRefused("sdp: an SDP offer with one data channel (m=application) only", 400)
    # [REJECT] The browser takes messages of MESSAGE_BYTES_MAX (without the attribute, a
    # browser takes 64 KiB: RFC 8841 section 6).
    sizes = [line.partition(":")[2] for line in lines if line.startswith("a=max-message-size:")]
    if not sizes or not sizes[0].isdigit() or 0 < int(sizes[0]) < MESSAGE_BYTES_MAX:
        raise RtcRefused(
            f"sdp: the browser must take data-channel messages of {MESSAGE_BYTES_MAX} bytes "
            "(a=max-message-size)",
            400,
        )
    # Browsers hide their addresses behind mDNS names (….local); aioice would spend a
    # second failing to resolve them. Without them the browser's checks still reach our
    # candidates, and its address is learnt from them (a peer-reflexive candidate).
    return "\r\n".join(
        line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)
    )


class RtcService:
    """The node's WebRTC side: answers offers (from trio), serves data channels (asyncio)."""

    def __init__(
        self,
        bridge: Bridge,
        source: ChunkSource,
        *,
        limits: RtcLimits = RtcLimits(),
        ice_addresses: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.bridge = bridge
        self.source = source
        self.limits = limits
        self.counters = RtcStats()
        self._viewers: set[_Viewer] = set()
        addresses = list(ice_addresses)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
        bridge.on_stop(self._close_all)

    def stats(self) -> dict[str, Any]:
        """The counters, for the node page (read from the trio thread: plain ints)."""
        out = dict(vars(self.counters))
        out["limits"] = dict(vars(self.limits))
        return out

    async def answer(self, offer_sdp: object, client: str) -> str:
        """The answer SDP to a page's offer. Raises RtcRefused: 400/413 for a bad offer,
        429 when the limits on connections are reached, 503 when the bridge is down."""
        sdp = _check_offer(offer_sdp)
        try:
            return await self.bridge.run_asyncio(lambda: self._answer(sdp, client))
        except BridgeClosed as exc:
            raise RtcRefused("the WebRTC side is not running", 503) from exc
        except ValueError as exc:  # aiortc's word on an offer it cannot parse or use
            raise RtcRefused(f"sdp: {exc}", 400) from exc

    # -- asyncio side -------------------------------------------------------------------

    async def _answer(self, sdp: str, client: str) -> str:
        per_client = Counter(v.client for v in self._viewers)
        if len(self._viewers) >= self.limits.connections_max:
            self.counters.connections_refused += 1
            raise RtcRefused(f"{self.limits.connections_max} connections are open: later", 429)
        if per_client[client] >= self.limits.per_client_max:
            self.counters.connections_refused += 1
            raise RtcRefused(
                f"{self.limits.per_client_max} connections from {client} are open already", 429
            )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        viewer = _Viewer(self, pc, client)
        self._viewers.add(viewer)
        self.counters.connections_total += 1
        self.counters.connections_open = len(self._viewers)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            await viewer.close()
            raise
        viewer.watch()
        return pc.localDescription.sdp

    def forget(self, viewer: "_Viewer") -> None:
        self._viewers.discard(viewer)
        self.counters.connections_open = len(self._viewers)

    async def _close_all(self) -> None:
        await asyncio.gather(*(v.close() for v in list(self._viewers)), return_exceptions=True)


class _Viewer:
    """One browser's peer connection and its data channel."""

    def __init__(self, service: RtcService, pc: RTCPeerConnection, client: str) -> None:
        self.service = service
        self.pc = pc
        self.client = client
        self.channel: RTCDataChannel | None = None
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self.last_active = time.monotonic()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None

    def watch(self) -> None:
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)
        self._watchdog = asyncio.get_running_loop().create_task(self._guard())

    async def _guard(self) -> None:
        limits = self.service.limits
        await asyncio.sleep(limits.open_s_max)
        if self.channel is None or self.channel.readyState != "open":
            await self.close()
            return
        while not self._closed:
            idle = time.monotonic() - self.last_active
            if idle >= limits.idle_s_max and not self.in_flight:
                await self.close()
                return
            await asyncio.sleep(max(1.0, limits.idle_s_max - idle))

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    def _on_channel(self, channel: RTCDataChannel) -> None:
        if self.channel is not None or channel.label != CHANNEL_LABEL:
            channel.close()  # one channel per connection, of ours
            return
        self.channel = channel
        channel.bufferedAmountLowThreshold = BUFFERED_LOW
        channel.on("bufferedamountlow", self._drained.set)
        channel.on("message", self._on_message)
        channel.on("close", lambda: asyncio.ensure_future(self.close()))

    def _on_message(self, message: str | bytes) -> None:
        if self._closed:
            return
        self.last_active = time.monotonic()
        if not isinstance(message, str):
            self._send_error(0, "requests are text messages")
            return
        try:
            parsed = parse_request(message)
        except _BadRequest as exc:
            self.service.counters.requests_refused += 1
            self._send_error(_id_of(message), str(exc))
            return
        if isinstance(parsed, int):
            task = self.in_flight.pop(parsed, None)
            if task is not None:
                task.cancel()
            return
        rid, video, cid = parsed
        limit = self.service.limits.requests_in_flight_max
        if rid in self.in_flight:
            self._send_error(rid, "that request id is in flight already")
        elif len(self.in_flight) >= limit:
            self.service.counters.requests_refused += 1
            self._send_error(rid, f"at most {limit} requests in flight")
        else:
            self.service.counters.requests += 1
            task = asyncio.get_running_loop().create_task(self._serve(rid, video, cid))
            self.in_flight[rid] = task

    async def _serve(self, rid: int, video: bytes, cid: bytes) -> None:
        try:
            data = await self.service.bridge.run_trio(self.service.source.chunk, video, cid)
            for message in frames(rid, data):
                if not await self._room():
                    return
                assert self.channel is not None, "a request came on the channel"
                self.channel.send(message)
            stats = self.service.counters
            stats.chunks_sent += 1
            stats.bytes_sent += len(data)
        except SegmentError as exc:
            self._send_error(rid, exc.message)
        except BridgeClosed:
            self._send_error(rid, "the node is stopping")
        except Exception as exc:  # the top of a request's task: log it, tell the page
            log.error("chunk request failed", exc_info=True, extra={"error": repr(exc)})
            self._send_error(rid, "internal error")
        finally:
            if self.in_flight.get(rid) is asyncio.current_task():
                del self.in_flight[rid]
            self.last_active = time.monotonic()

    async def _room(self) -> bool:
        """Wait while the channel holds more than BUFFERED_HIGH unsent bytes; False when
        the channel is gone. A browser that reads nothing for DRAIN_S is cut off."""
        channel = self.channel
        while self._open() and channel is not None and channel.bufferedAmount > BUFFERED_HIGH:
            self.service.counters.pauses += 1
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), DRAIN_S)
            except TimeoutError:
                log.info("viewer stopped reading", extra={"client": self.client})
                await self.close()
        return self._open()

    def _open(self) -> bool:
        return not self._closed and self.channel is not None and self.channel.readyState == "open"

    def _send_error(self, rid: int, message: str) -> None:
        # Refusals skip flow control, so one that finds the buffer full is dropped: a page
        # that sends garbage and reads nothing must not grow it.
        channel = self.channel
        if self._open() and channel is not None and channel.bufferedAmount <= BUFFERED_HIGH:
            channel.send(json.dumps({"id": rid, "error": message}))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drained.set()
        for task in self.in_flight.values():
            task.cancel()
        self.in_flight.clear()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        self.service.forget(self)
        await self.pc.close()


def _id_of(text: str) -> int:
    """The id of a request refused as malformed, when one can be read from it (else 0)."""
    try:
        value = json.loads(text) if len(text) <= REQUEST_BYTES_MAX else None
    except ValueError:
        return 0
    rid = value.get("id") if isinstance(value, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0 else 0
