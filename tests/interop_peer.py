"""A py-libp2p peer for the interop tests: it listens, waits for a foreign peer, publishes.

    python -m tests.interop_peer --topic /toktok/v1/manifests --publish HEX [--publish HEX]

It runs GossipSub with the settings of docs/protocol.md ("Gossip"): TCP, noise, yamux,
``/meshsub/1.1.0``, StrictSign, message id SHA-256 of the data. It listens on a random
port of 127.0.0.1, and once the first peer that connects is in its mesh for the topic,
publishes each ``--publish`` batch (hex) in order. Progress goes to stdout as one JSON
object a line, for the test to wait on:

    {"event": "listening", "addr": "/ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID"}
    {"event": "mesh", "peer": "PEER_ID"}
    {"event": "published", "msg_id": "HEX"}

It then stays up, so that the batches can still be gossiped, until ``--lifetime-s`` is
over or it is killed. It exits 1 when no peer joins the mesh within ``--wait-s``.
"""

import argparse
import json
import sys

# multiaddr ships no type hints; the ignore stays harmless once pyproject.toml names it.
import multiaddr  # type: ignore[import-untyped, unused-ignore]
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetwork
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from node.streams import QuietNotifee
from protocol.gossipwire import gossip_message_id

LISTEN = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
CONNECTED_MAX = 16
"""Connections queued for the main task; later ones wait (a test makes one or two)."""


class _Connections(QuietNotifee):
    """Hands the peer id of every new connection to the main task."""

    def __init__(self, send: trio.MemorySendChannel[ID]) -> None:
        self._send = send

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        await self._send.send(conn.muxed_conn.peer_id)


def batch_id(msg: rpc_pb2.Message) -> bytes:
    return gossip_message_id(msg.data)


def say(event: str, **fields: str) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def serve(topic: str, batches: list[bytes], wait_s: float, lifetime_s: float) -> int:
    host = new_host(
        key_pair=create_new_key_pair(),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[LISTEN],
    )
    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V11],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        # py-libp2p's spam limit drops a peer's messages silently above 10 a second.
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub, msg_id_constructor=batch_id, strict_signing=True)
    send, receive = trio.open_memory_channel[ID](CONNECTED_MAX)
    host.get_network().register_notifee(_Connections(send))
    # Pubsub runs before the address is printed, so before any peer can connect.
    async with (
        host.run([LISTEN]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        await pubsub.subscribe(topic)
        say("listening", addr=str(host.get_addrs()[0]))
        try:
            with trio.fail_after(wait_s):
                peer = await receive.receive()
                await pubsub.wait_for_mesh(peer, topic, timeout=wait_s)
        except trio.TooSlowError:
            print(f"no peer joined the mesh of {topic} in {wait_s} s", file=sys.stderr)
            return 1
        say("mesh", peer=str(peer))
        for data in batches:
            await pubsub.publish(topic, data)
            say("published", msg_id=gossip_message_id(data).hex())
        await trio.sleep(lifetime_s)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--publish", action="append", default=[], metavar="HEX")
    parser.add_argument("--wait-s", type=float, default=30.0)
    parser.add_argument("--lifetime-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    batches = [bytes.fromhex(h) for h in args.publish]
    return trio.run(serve, args.topic, batches, args.wait_s, args.lifetime_s)


if __name__ == "__main__":
    sys.exit(main())
