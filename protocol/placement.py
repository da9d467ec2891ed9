"""Which nodes seed a video: rendezvous (highest random weight) hashing.

Every node that knows the same peers computes the same ranking for a video, so each video
gets ``r`` seeders without any coordination, and when a peer joins or leaves only the videos
for which it ranks in the top ``r`` change hands (about ``r/n`` of them, one seat each).

The score of peer ``p`` for video ``v`` is::

    SHA-256(v || p)

read as a 256-bit big-endian unsigned integer, where ``v`` is the video's 32-byte message id
(the id of its signed manifest) and ``p`` is the peer id in its binary libp2p form (the
multihash of the node's public key), concatenated with nothing in between. Because ``v``
always has 32 bytes, the split of the hashed bytes is unambiguous even though peer ids vary
in length. Peers are ranked by score, highest first; equal scores (which would need a
SHA-256 collision) fall back to the peer id bytes, highest first, so the order is total.

A node that can choose its peer id can grind ids that rank high for a chosen video; the
placement rule gives copies without coordination, not protection against such an attacker.
"""

import hashlib
import heapq
from collections.abc import Iterable

from protocol.kinds import MESSAGE_ID_LEN

SEEDERS_DEFAULT = 3
"""``r``: how many nodes seed each video by placement."""


def score(video_id: bytes, peer: bytes) -> bytes:
    """The 32-byte score of ``peer`` for ``video_id``; compare scores as bytes.

    Raises :class:`ValueError` when ``video_id`` is not a 32-byte message id.
    """
    _check_video_id(video_id)
    return hashlib.sha256(video_id + peer).digest()


def _check_video_id(video_id: bytes) -> None:
    # The fixed length is what makes video_id || peer unambiguous.
    if len(video_id) != MESSAGE_ID_LEN:
        raise ValueError(f"video id must have {MESSAGE_ID_LEN} bytes, got {len(video_id)}")


def _keyed(video_id: bytes, peers: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
    # Digests have one length, so comparing them as bytes compares them as integers.
    _check_video_id(video_id)
    return [(hashlib.sha256(video_id + peer).digest(), peer) for peer in set(peers)]


def rank(video_id: bytes, peers: Iterable[bytes]) -> list[bytes]:
    """All distinct ``peers`` in placement order for ``video_id``, best first.

    Raises :class:`ValueError` when ``video_id`` is not a 32-byte message id.
    """
    return [peer for _, peer in sorted(_keyed(video_id, peers), reverse=True)]


def seeders(video_id: bytes, peers: Iterable[bytes], r: int = SEEDERS_DEFAULT) -> list[bytes]:
    """The ``r`` best-ranked distinct ``peers`` for ``video_id`` (fewer when fewer are known).

    Raises :class:`ValueError` when ``r`` is negative or ``video_id`` is not 32 bytes.
    """
    if r < 0:
        raise ValueError(f"r must be at least 0, got {r}")
    return [peer for _, peer in heapq.nlargest(r, _keyed(video_id, peers))]


def should_seed(
    self_id: bytes, video_id: bytes, known_peers: Iterable[bytes], r: int = SEEDERS_DEFAULT
) -> bool:
    """True when this node ranks among the ``r`` seeders of ``video_id``.

    The candidates are ``known_peers`` plus this node itself (whether or not the caller
    listed it). Raises :class:`ValueError` as :func:`seeders` does.
    """
    candidates = set(known_peers)
    candidates.add(self_id)
    return self_id in seeders(video_id, candidates, r)
