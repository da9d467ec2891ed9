"""Who this node knows, and who it has cut off.

Every service reports misbehaviour here: a forged or malformed gossip message, a chunk
that does not match its id. A peer that passes ``invalid_max`` offences is disconnected
and banned for ``ban_seconds``: its connections are closed, new ones are closed as they
open, and pubsub drops what it relays. Honest peers never offend (their messages are
valid by construction), so a small threshold only forgives a bug or a race, not a flood.

The book also remembers peers with their addresses (from connections, the bootstrap list
and peer exchange), bounded, for placement and for dialling.
"""

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from libp2p.peer.id import ID

log = logging.getLogger("toktok.peers")

KNOWN_PEERS_MAX = 4096
BANNED_MAX = 4096


@dataclass
class _Record:
    offences: int = 0
    banned_until_ms: int = 0


class PeerBook:
    """Offences, bans and the set of peers known to be in the network."""

    def __init__(
        self,
        *,
        self_id: ID,
        invalid_max: int,
        ban_ms: int,
        cut_off: Callable[[ID], Awaitable[None]],
    ) -> None:
        self.self_id = self_id
        self._invalid_max = invalid_max
        self._ban_ms = ban_ms
        self._cut_off = cut_off
        self._records: OrderedDict[ID, _Record] = OrderedDict()
        self._known: OrderedDict[ID, tuple[str, ...]] = OrderedDict()
        self._seen_ms: dict[ID, int] = {}
        """When each known peer was last connected here or reported by a peer."""
        self.bans = 0
        self.offences = 0

    async def offend(self, peer: ID, reason: str, now_ms: int) -> bool:
        """Count an offence by ``peer``; ban and cut it off past the threshold.

        Returns True when this offence banned it.
        """
        if peer == self.self_id:
            return False
        record = self._record(peer)
        record.offences += 1
        self.offences += 1
        log.info("peer offence", extra={"peer": str(peer), "reason": reason})
        if record.offences < self._invalid_max or self.is_banned(peer, now_ms):
            return False
        record.banned_until_ms = now_ms + self._ban_ms
        record.offences = 0
        self.bans += 1
        self._known.pop(peer, None)
        log.warning("peer banned", extra={"peer": str(peer), "reason": reason})
        await self._cut_off(peer)
        return True

    def is_banned(self, peer: ID, now_ms: int) -> bool:
        record = self._records.get(peer)
        return record is not None and record.banned_until_ms > now_ms

    def _record(self, peer: ID) -> _Record:
        record = self._records.get(peer)
        if record is None:
            record = self._records[peer] = _Record()
            while len(self._records) > BANNED_MAX:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(peer)
        return record

    def learn(self, peer: ID, addrs: tuple[str, ...], now_ms: int) -> None:
        """Remember ``peer`` and its addresses (most recent first on overflow)."""
        if peer == self.self_id or self.is_banned(peer, now_ms):
            return
        if addrs or peer not in self._known:
            self._known[peer] = addrs or self._known.get(peer, ())
        self._known.move_to_end(peer)
        self._seen_ms[peer] = now_ms
        while len(self._known) > KNOWN_PEERS_MAX:
            gone, _ = self._known.popitem(last=False)
            self._seen_ms.pop(gone, None)

    def saw(self, peers: Iterable[ID], now_ms: int) -> None:
        """``peers`` are connected now: they are alive."""
        for peer in peers:
            if peer in self._known:
                self._seen_ms[peer] = now_ms

    def known(self) -> dict[ID, tuple[str, ...]]:
        """Known peers and their addresses, least recently heard of first."""
        return dict(self._known)

    def live(self, now_ms: int, live_ms: int) -> set[ID]:
        """Known peers seen (connected, or reported by a peer) in the last ``live_ms``."""
        return {p for p, seen in self._seen_ms.items() if now_ms - seen <= live_ms}
