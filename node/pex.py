"""Peer exchange, ``/toktok/pex/1.0.0``: ask a peer whom it knows.

The asker opens a stream and closes its side at once; the answerer writes one canonical
msgpack array of at most :data:`PEERS_MAX` entries ``[peer id bytes, [multiaddr, ...]]``
(at most :data:`ADDRS_MAX` addresses each) and closes. A newcomer asks its bootstrap
nodes, and so learns more of the network than its seed list.
"""

from collections.abc import Iterable

import multiaddr
from libp2p.peer.id import ID

from protocol.codec import decode, encode
from protocol.errors import DecodeError

PEX_PROTOCOL = "/toktok/pex/1.0.0"
PEERS_MAX = 32
ADDRS_MAX = 4
ADDR_BYTES_MAX = 128
ANSWER_BYTES_MAX = 64 * 1024
PEER_ID_BYTES_MAX = 64


def encode_peers(peers: Iterable[tuple[ID, Iterable[str]]]) -> bytes:
    """The answer listing ``peers`` (the first PEERS_MAX with an address)."""
    entries: list[list[object]] = []
    for peer, addrs in peers:
        kept = [a for a in addrs if len(a.encode()) <= ADDR_BYTES_MAX][:ADDRS_MAX]
        if kept:
            entries.append([peer.to_bytes(), kept])
        if len(entries) >= PEERS_MAX:
            break
    return encode(entries)


def decode_peers(data: bytes) -> list[tuple[ID, tuple[str, ...]]]:
    """The peers of an answer. Raises :class:`DecodeError` for anything malformed."""
    value = decode(data, bytes_max=ANSWER_BYTES_MAX)
    if not isinstance(value, tuple) or len(value) > PEERS_MAX:
        raise DecodeError(f"a peer list is an array of at most {PEERS_MAX} entries")
    out = []
    for entry in value:
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise DecodeError("a peer entry is [peer id, addresses]")
        raw_id, addrs = entry
        if not isinstance(raw_id, bytes) or not 0 < len(raw_id) <= PEER_ID_BYTES_MAX:
            raise DecodeError("a peer id is a byte string")
        if not isinstance(addrs, tuple) or not 0 < len(addrs) <= ADDRS_MAX:
            raise DecodeError(f"a peer has 1 to {ADDRS_MAX} addresses")
        for addr in addrs:
            if not isinstance(addr, str) or len(addr.encode()) > ADDR_BYTES_MAX:
                raise DecodeError("an address is a short string")
            try:
                multiaddr.Multiaddr(addr)
            except Exception as exc:  # the multiaddr package raises assorted types
                raise DecodeError(f"not a multiaddr: {addr!r}") from exc
        out.append((ID(raw_id), addrs))
    return out
