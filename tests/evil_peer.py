"""A misbehaving py-libp2p peer for the network tests, in its own process.

    python -m tests.evil_peer --connect MULTIADDR --mode flood
    python -m tests.evil_peer --connect MULTIADDR --mode chunks --sizes FILE

``flood``: publishes, every ``--interval-ms``, forged envelopes (a valid manifest with one
signature byte flipped) and malformed batches on the manifest topic. ``chunks``: serves
``/toktok/chunks/1.0.0`` and answers every request with bytes of the size ``--sizes``
(a JSON object: cid text -> size) gives, but not the chunk's content.

It prints JSON lines: ``{"event": "connected", "peer_id": ...}`` once connected to the
target, and ``{"event": "cut_off"}`` when the target closed every connection to it. It
runs until killed or ``--lifetime-s`` is over.
"""

import argparse
import json
import os

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from protocol.chunkwire import OK, PROTOCOL_ID, ChunkRequest, ChunkResponse, FrameDecoder
from protocol.chunkwire import encode_frame as encode_chunk_frame
from protocol.cid import cid_to_text
from protocol.gossipwire import MANIFEST_TOPIC, SOCIAL_TOPIC, encode_batch, gossip_message_id
from tests.factories import account, fake_video, sealed_manifest


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def forged_envelope(n: int) -> bytes:
    raw = bytearray(sealed_manifest(account(7), fake_video(b"evil%d" % n)).raw)
    raw[-5] ^= 0x01  # inside the signature, the envelope's last field
    return bytes(raw)


async def flood(pubsub: Pubsub, interval_s: float) -> None:
    n = 0
    while True:
        n += 1
        data = encode_batch([forged_envelope(n)]) if n % 2 else os.urandom(64)
        await pubsub.publish(MANIFEST_TOPIC, data)
        await trio.sleep(interval_s)


def chunk_handler(sizes: dict[str, int]):  # type: ignore[no-untyped-def]
    async def handle(stream: INetStream) -> None:
        decoder = FrameDecoder(ChunkRequest)
        try:
            while True:
                try:
                    data = await stream.read(65536)
                except StreamEOF:
                    return
                if not data:
                    return
                for request in decoder.feed(data):
                    size = sizes.get(cid_to_text(request.cid), 1000)
                    response = ChunkResponse(id=request.id, status=OK, data=os.urandom(size))
                    await stream.write(encode_chunk_frame(response))
        except Exception:  # the victim hung up on us: that is the point
            return

    return handle


async def main(args: argparse.Namespace) -> None:
    host = new_host(
        key_pair=create_new_key_pair(os.urandom(32)),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )
    gossipsub = GossipSub(
        protocols=[TProtocol("/meshsub/1.1.0")],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, msg_id_constructor=lambda m: gossip_message_id(m.data))
    if args.mode == "chunks":
        with open(args.sizes) as f:
            sizes = json.load(f)
        host.set_stream_handler(TProtocol(PROTOCOL_ID), chunk_handler(sizes))
    target = info_from_p2p_addr(multiaddr.Multiaddr(args.connect))
    with trio.move_on_after(args.lifetime_s):
        async with (
            host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
            background_trio_service(pubsub),
            background_trio_service(gossipsub),
        ):
            await pubsub.wait_until_ready()
            for topic in (MANIFEST_TOPIC, SOCIAL_TOPIC):
                await pubsub.subscribe(topic)
            await host.connect(target)
            say(
                event="connected",
                peer_id=str(host.get_id()),
                addrs=[str(a) for a in host.get_addrs()],
            )
            async with trio.open_nursery() as nursery:
                if args.mode == "flood":
                    await trio.sleep(1.5)  # let the mesh form, so the flood reaches the target
                    nursery.start_soon(flood, pubsub, args.interval_ms / 1000)
                while target.peer_id in host.get_connected_peers():
                    await trio.sleep(0.1)
                say(event="cut_off")
                nursery.cancel_scope.cancel()
            await trio.sleep(args.linger_s)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", required=True)
    parser.add_argument("--mode", choices=["flood", "chunks"], required=True)
    parser.add_argument("--sizes", default=None)
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--lifetime-s", type=float, default=120)
    parser.add_argument("--linger-s", type=float, default=0)
    trio.run(main, parser.parse_args())
