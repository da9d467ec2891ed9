"""What travels on the GossipSub topics: batches of signed envelopes.

One py-libp2p receiver handles only a few hundred gossip messages a second, so a gossip
message carries a *batch*: the canonical msgpack array of 1 to :data:`BATCH_ITEMS_MAX`
byte strings, each one envelope's exact bytes (protocol/envelope.py) or, on the ledger
topic, one certificate's (protocol/certs.py), at most
:data:`BATCH_BYTES_MAX` in all. The GossipSub message id is SHA-256 of the batch bytes.

Kinds are split between two topics so that a node may relay social events without the
larger manifests, and each topic's validator knows which kinds it may carry. Names carry
the protocol version; docs/protocol.md ("Gossip") specifies all of this byte by byte.
"""

import hashlib
from collections.abc import Sequence

from protocol.codec import array_header_bytes, bin_bytes, decode, encode
from protocol.errors import DecodeError
from protocol.kinds import (
    Follow,
    Offer,
    Profile,
    Reaction,
    Tombstone,
    Unfollow,
    VideoManifest,
    View,
)

MANIFEST_TOPIC = "/toktok/v1/manifests"
SOCIAL_TOPIC = "/toktok/v1/social"
LEDGER_TOPIC = "/toktok/v1/ledger"
CERTIFICATE = "certificate"
"""The kind name of a ledger certificate (protocol/certs.py), which is not an envelope."""
TOPIC_KINDS: dict[str, frozenset[str]] = {
    MANIFEST_TOPIC: frozenset({VideoManifest.KIND}),
    SOCIAL_TOPIC: frozenset(
        {
            Follow.KIND,
            Unfollow.KIND,
            Reaction.KIND,
            View.KIND,
            Tombstone.KIND,
            Profile.KIND,
            Offer.KIND,
        }
    ),
    LEDGER_TOPIC: frozenset({CERTIFICATE}),
}
TOPICS = tuple(TOPIC_KINDS)

BATCH_ITEMS_MAX = 64
BATCH_BYTES_MAX = 1024 * 1024 - 1024
"""py-libp2p refuses pubsub frames over 1 MiB; the rest is room for the frame's fields."""


def topic_for(kind: str) -> str:
    """The topic a message of ``kind`` is published on. Raises KeyError for other kinds."""
    for topic, kinds in TOPIC_KINDS.items():
        if kind in kinds:
            return topic
    raise KeyError(f"no gossip topic carries {kind!r}")


def gossip_message_id(data: bytes) -> bytes:
    """The GossipSub message id of a batch: SHA-256 of its bytes."""
    return hashlib.sha256(data).digest()


def encode_batch(envelopes: Sequence[bytes]) -> bytes:
    """The batch of ``envelopes``. Raises ValueError when it breaks a batch limit."""
    if not 1 <= len(envelopes) <= BATCH_ITEMS_MAX:
        raise ValueError(f"a batch holds 1 to {BATCH_ITEMS_MAX} envelopes, not {len(envelopes)}")
    data = encode(list(envelopes))
    if len(data) > BATCH_BYTES_MAX:
        raise ValueError(f"a batch of {len(data)} bytes exceeds {BATCH_BYTES_MAX}")
    return data


def batch_bytes(envelope_sizes: Sequence[int]) -> int:
    """The size of a batch of envelopes of these sizes, without building it."""
    return array_header_bytes(len(envelope_sizes)) + sum(map(bin_bytes, envelope_sizes))


def decode_batch(data: bytes) -> list[bytes]:
    """The envelopes of a batch, each still to be verified.

    Raises :class:`DecodeError` unless ``data`` is the canonical encoding of an array of
    1 to BATCH_ITEMS_MAX byte strings, at most BATCH_BYTES_MAX bytes in all.
    """
    # [REJECT] The batch is at most BATCH_BYTES_MAX bytes of canonical msgpack.
    value = decode(data, bytes_max=BATCH_BYTES_MAX)
    # [REJECT] The batch is an array of 1 to BATCH_ITEMS_MAX byte strings.
    if not isinstance(value, tuple) or not 1 <= len(value) <= BATCH_ITEMS_MAX:
        raise DecodeError(f"a batch is an array of 1 to {BATCH_ITEMS_MAX} envelopes")
    if not all(isinstance(item, bytes) for item in value):
        raise DecodeError("every item of a batch is a byte string")
    return list(value)
