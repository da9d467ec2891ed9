"""The asyncio bridge and the WebRTC service, over real peer connections on 127.0.0.1.

The node side is the production RtcService on its Bridge; the browser side is an aiortc
client (tests/rtcclient.py) speaking the player's protocol on the same asyncio loop. The
chunks come from an in-memory source with SegmentSource's interface, so every refusal
and every size can be arranged exactly.
"""

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

from node.gateway.bridge import Bridge, BridgeClosed
from node.gateway.rtc import (
    HEADER,
    MESSAGE_BYTES_MAX,
    PAYLOAD_BYTES_MAX,
    RtcLimits,
    RtcRefused,
    RtcService,
    frames,
)
from node.gateway.segments import SegmentError
from node.swarm import SwarmError, SwarmStats, download_rendition
from protocol.kinds import VideoManifest
from storage.stores import Stores
from tests.factories import account, fake_video, sealed_manifest
from tests.rtcclient import ChunkRefused, RtcClient

GUARD_S = 15
VIDEO = bytes(range(32))


def cid_of(data: bytes) -> bytes:
    return bytes.fromhex("01551220") + hashlib.sha256(data).digest()


class MemorySource:
    """Chunks by cid; ``gate`` holds every answer until set (to keep requests in flight)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.by_cid = {cid_of(c): c for c in chunks}
        self.gate: trio.Event | None = None
        self.asked = 0

    async def chunk(self, mid: bytes, cid: bytes) -> bytes:
        self.asked += 1
        if self.gate is not None:
            await self.gate.wait()
        if mid != VIDEO or cid not in self.by_cid:
            raise SegmentError("the video names no such chunk", 404)
        return self.by_cid[cid]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        yield b
        nursery.cancel_scope.cancel()


async def connect(bridge: Bridge, rtc: RtcService, client_addr: str = "127.0.0.1") -> RtcClient:
    client: RtcClient = await bridge.run_asyncio(_new_client)
    offer = await bridge.run_asyncio(client.offer)
    try:
        answer = await rtc.answer(offer, client_addr)
    except RtcRefused:
        await bridge.run_asyncio(client.close)
        raise
    await bridge.run_asyncio(lambda: client.accept(answer))
    return client


async def _new_client() -> RtcClient:
    return RtcClient()


def test_frames_split_at_the_message_limit() -> None:
    data = os.urandom(PAYLOAD_BYTES_MAX * 2 + 5)
    messages = list(frames(7, data))
    assert [len(m) for m in messages] == [MESSAGE_BYTES_MAX, MESSAGE_BYTES_MAX, HEADER.size + 5]
    assert [HEADER.unpack_from(m) for m in messages] == [
        (7, 0, len(data)),
        (7, PAYLOAD_BYTES_MAX, len(data)),
        (7, 2 * PAYLOAD_BYTES_MAX, len(data)),
    ]
    assert b"".join(m[HEADER.size :] for m in messages) == data
    assert list(frames(1, b"")) == [HEADER.pack(1, 0, 0)]


@pytest.mark.trio
async def test_bridge_carries_results_errors_and_cancellation(bridge: Bridge) -> None:
    async def double(x: int) -> int:
        await trio.sleep(0)
        return 2 * x

    async def on_asyncio() -> int:
        return await bridge.run_trio(double, 21)

    with trio.fail_after(GUARD_S):
        assert await bridge.run_asyncio(on_asyncio) == 42

        async def fails() -> None:
            raise ValueError("from asyncio")

        with pytest.raises(ValueError, match="from asyncio"):
            await bridge.run_asyncio(fails)

        # Cancelling the asyncio side cancels the trio task it waits for.
        cancelled = trio.Event()

        async def forever() -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.set()

        async def wait_then_cancel() -> None:
            task = asyncio.ensure_future(bridge.run_trio(forever))
            await asyncio.sleep(0.05)
            task.cancel()

        await bridge.run_asyncio(wait_then_cancel)
        await cancelled.wait()


@pytest.mark.trio
async def test_bridge_refuses_when_not_running() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(BridgeClosed):
        await Bridge().run_asyncio(nothing)


@pytest.mark.trio
async def test_chunks_arrive_whole_and_verified(bridge: Bridge) -> None:
    chunks = [os.urandom(n) for n in (1, 1000, PAYLOAD_BYTES_MAX, 3 * 1024 * 1024 + 17)]
    rtc = RtcService(bridge, MemorySource(chunks))
    with trio.fail_after(GUARD_S):
        client = await connect(bridge, rtc)
        for rid, data in enumerate(chunks):
            got = await bridge.run_asyncio(partial(client.chunk, rid, VIDEO, cid_of(data)))
            assert got == data
        stats = rtc.stats()
        assert stats["chunks_sent"] == len(chunks)
        assert stats["bytes_sent"] == sum(map(len, chunks))
        # The 3 MiB chunk went out in messages no larger than the limit, with pauses to
        # let the channel drain past the high-water mark.
        assert stats["pauses"] >= 1
        await bridge.run_asyncio(client.close)


@pytest.mark.trio
async def test_refusals_on_the_channel(bridge: Bridge) -> None:
    source = MemorySource([b"held"])
    rtc = RtcService(bridge, source, limits=RtcLimits(requests_in_flight_max=2))
    with trio.fail_after(GUARD_S):
        client = await connect(bridge, rtc)
        with pytest.raises(ChunkRefused, match="no such chunk"):
            await bridge.run_asyncio(lambda: client.chunk(1, VIDEO, cid_of(b"not held")))
        # Malformed requests get their reason, with the id when one can be read.
        for text, reason in (
            ("not json", "JSON object"),
            ('{"id": 5, "video": "zz", "cid": "00"}', "video:"),
            ('{"id": -1}', "id:"),
            ('{"id": 6, "video": "' + VIDEO.hex() + '", "cid": "ab"}', "cid:"),
        ):
            before = len(client.texts)
            await bridge.run_asyncio(partial(_send, client, text))
            await _until(bridge, lambda b=before: len(client.texts) > b)
            assert reason in str(client.texts[-1]["error"])
        # More requests in flight than allowed: the extra one is refused at once.
        source.gate = trio.Event()
        held = cid_of(b"held")

        tasks: list[asyncio.Task[bytes]] = []

        async def three() -> int:
            tasks.extend(asyncio.ensure_future(client.chunk(i, VIDEO, held)) for i in (10, 11, 12))
            await asyncio.sleep(0.3)
            return sum(t.done() for t in tasks)

        assert await bridge.run_asyncio(three) == 1
        assert "at most 2 requests in flight" in str(client.texts[-1]["error"])
        source.gate.set()

        async def rest() -> list[bytes | BaseException]:
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = await bridge.run_asyncio(rest)
        assert [type(r) for r in results].count(bytes) == 2
        assert sum(isinstance(r, ChunkRefused) for r in results) == 1
        assert rtc.stats()["requests_refused"] >= 5
        await bridge.run_asyncio(client.close)


@pytest.mark.trio
async def test_connection_limits_and_bad_offers(bridge: Bridge) -> None:
    rtc = RtcService(bridge, MemorySource([]), limits=RtcLimits(per_client_max=1))
    with trio.fail_after(GUARD_S):
        good: str = await bridge.run_asyncio(_offer_text)
        small = good.replace("a=max-message-size:262144", "a=max-message-size:65536")
        video = good.replace("m=application", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=application")
        for sdp, status, reason in (
            ("", 400, "SDP text"),
            ("hello", 400, "one data channel"),
            ("v=0\r\n" + "a" * 70_000, 413, "at most"),
            (5, 400, "SDP text"),
            (small, 400, "max-message-size"),
            (video, 400, "one data channel"),
        ):
            with pytest.raises(RtcRefused, match=reason) as refused:
                await rtc.answer(sdp, "127.0.0.1")
            assert refused.value.status == status
        first = await connect(bridge, rtc, "127.0.0.2")
        with pytest.raises(RtcRefused, match=r"connections from 127\.0\.0\.2") as refused:
            await connect(bridge, rtc, "127.0.0.2")
        assert refused.value.status == 429
        other = await connect(bridge, rtc, "127.0.0.3")  # another client is let in
        assert rtc.stats()["connections_open"] == 2
        # A browser that closes its connection frees its place.
        await bridge.run_asyncio(first.close)
        await _until(bridge, lambda: rtc.stats()["connections_open"] == 1)
        await bridge.run_asyncio(other.close)


async def _offer_text() -> str:
    client = RtcClient()
    try:
        return await client.offer()
    finally:
        await client.close()


async def _send(client: RtcClient, text: str) -> None:
    client.send_text(text)


async def _until(bridge: Bridge, condition: object) -> None:
    assert callable(condition)
    while not condition():
        await trio.sleep(0.02)


@pytest.mark.trio
async def test_a_download_nobody_serves_raises_swarm_error_bare() -> None:
    """trio wraps what a nursery raises in an ExceptionGroup; callers of download_rendition
    (the on-demand source, seeding, `toktok fetch`) catch SwarmError, so it must come out
    bare, or it would escape their handlers and stop the node."""
    stores = Stores.memory()
    message = sealed_manifest(account(1), fake_video(b"nobody"))
    manifest = message.record
    assert isinstance(manifest, VideoManifest)

    async def offend(peer: object, reason: str) -> None:
        raise AssertionError("no peer to offend")

    with trio.fail_after(GUARD_S), pytest.raises(SwarmError, match="no reachable peer"):
        await download_rendition(
            None,  # type: ignore[arg-type]  # no peer: the host is never used
            stores.chunks,
            manifest,
            manifest.renditions[0].name,
            [],
            pin=None,
            stats=SwarmStats(),
            offend=offend,
            stall_ms=50,
        )
