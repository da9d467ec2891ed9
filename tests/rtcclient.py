"""A data-channel client of the node's WebRTC service, in Python (aiortc), for tests.

It speaks what the web app's player speaks (docs/api.md, "Streaming"): one channel named
``toktok``, JSON requests, 12-byte-header frames back. Its coroutines run on an asyncio
loop: in tests, the node's own bridge loop through ``Bridge.run_asyncio``.
"""

import asyncio
import json
import struct
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

HEADER = struct.Struct(">III")


class ChunkRefused(Exception):
    """The node answered a request with an error message."""


@dataclass
class _Pending:
    done: "asyncio.Future[bytes]"
    parts: dict[int, bytes] = field(default_factory=dict)


class RtcClient:
    """One peer connection with its data channel, asking for chunks."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("toktok", ordered=True)
        self.opened = asyncio.Event()
        self.texts: list[dict[str, object]] = []
        self._pending: dict[int, _Pending] = {}
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)

    async def offer(self) -> str:
        """The offer SDP, every candidate in it (aiortc gathers before it returns)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str, timeout_s: float = 20.0) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        await asyncio.wait_for(self.opened.wait(), timeout_s)

    def send_text(self, text: str) -> None:
        self.channel.send(text)

    async def chunk(self, rid: int, video: bytes, cid: bytes, timeout_s: float = 20.0) -> bytes:
        """Ask for one chunk and wait for all of it. Raises ChunkRefused with the node's
        message."""
        pending = self._pending[rid] = _Pending(asyncio.get_running_loop().create_future())
        self.channel.send(json.dumps({"id": rid, "video": video.hex(), "cid": cid.hex()}))
        try:
            return await asyncio.wait_for(pending.done, timeout_s)
        finally:
            self._pending.pop(rid, None)

    def cancel(self, rid: int) -> None:
        self.channel.send(json.dumps({"cancel": rid}))

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            value = json.loads(message)
            self.texts.append(value)
            pending = self._pending.get(value.get("id"))
            if pending is not None and not pending.done.done():
                pending.done.set_exception(ChunkRefused(str(value.get("error"))))
            return
        rid, offset, total = HEADER.unpack_from(message)
        pending = self._pending.get(rid)
        if pending is None or pending.done.done():
            return
        pending.parts[offset] = message[HEADER.size :]
        if sum(len(p) for p in pending.parts.values()) >= total:
            data = b"".join(pending.parts[k] for k in sorted(pending.parts))
            pending.done.set_result(data)

    async def close(self) -> None:
        await self.pc.close()
