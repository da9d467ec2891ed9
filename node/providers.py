"""Who holds a video: Kademlia provider records, one per video (not per chunk).

A node announces each video it holds whole (its own, the ones it seeds or fetched) and
looks up the holders of a video before fetching it. The DHT key of a video is
``/toktok/video/`` followed by its 32-byte manifest id. Every DHT call is bounded in time
and failures only cost a hint: gossip origins and placement still name providers.
"""

import logging

import trio
from libp2p.host.basic_host import BasicHost
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

log = logging.getLogger("toktok.providers")

KEY_PREFIX = b"/toktok/video/"
PROVIDE_TIMEOUT_S = 10.0
FIND_TIMEOUT_S = 5.0
FIND_COUNT = 20
ADDR_TTL_S = 600


def video_key(mid: bytes) -> str:
    """The DHT key of video ``mid``, as py-libp2p takes it (hex of the key bytes)."""
    return (KEY_PREFIX + mid).hex()


class Providers:
    """The node's Kademlia DHT, used for provider records of videos."""

    def __init__(self, host: BasicHost, *, server: bool) -> None:
        self._host = host
        self.dht = KadDHT(host, DHTMode.SERVER if server else DHTMode.CLIENT)
        self.provided = 0
        self.lookups = 0
        self.found = 0

    async def add_peer(self, peer: ID) -> None:
        """Put a connected peer in the routing table (if it serves the DHT)."""
        try:
            with trio.move_on_after(FIND_TIMEOUT_S):
                await self.dht.add_peer(peer)
        except Exception as exc:  # a peer without the DHT protocol, or gone
            log.debug("dht add_peer failed", extra={"peer": str(peer), "error": repr(exc)})

    async def provide(self, mid: bytes) -> bool:
        """Announce that this node holds video ``mid``; False when it could not."""
        try:
            with trio.move_on_after(PROVIDE_TIMEOUT_S):
                done = bool(await self.dht.provide(video_key(mid)))
                self.provided += done
                return done
        except Exception as exc:  # no DHT peers yet, or they left: a hint lost
            log.debug("dht provide failed", extra={"id": mid.hex(), "error": repr(exc)})
        return False

    async def find(self, mid: bytes) -> list[ID]:
        """Peers announcing video ``mid`` (distinct, not this node), addresses remembered."""
        self.lookups += 1
        try:
            with trio.move_on_after(FIND_TIMEOUT_S):
                infos = await self.dht.find_providers(video_key(mid), FIND_COUNT)
                return self._remember(infos)
        except Exception as exc:  # as for provide: a hint lost
            log.debug("dht lookup failed", extra={"id": mid.hex(), "error": repr(exc)})
        return []

    def _remember(self, infos: list[PeerInfo]) -> list[ID]:
        me = self._host.get_id()
        peerstore = self._host.get_peerstore()
        found: list[ID] = []
        for info in infos:
            if info.peer_id == me or info.peer_id in found:
                continue  # find_providers can return the same peer several times
            if info.addrs:
                peerstore.add_addrs(info.peer_id, info.addrs, ADDR_TTL_S)
            found.append(info.peer_id)
        self.found += len(found)
        return found
