"""The typed records every signed message carries, one per kind.

Each record is a frozen dataclass whose fields carry their limits; the canonical encoding
of a record is a msgpack map from field name to value with keys sorted (protocol/codec.py).
Every record names its ``author`` (the signing account's public key) and ``created_ms``
(milliseconds since the Unix epoch, as the author's clock read it).

docs/protocol.md specifies each kind byte by byte.
"""

from dataclasses import dataclass
from typing import ClassVar

from protocol.accounts import PUBLIC_KEY_LEN
from protocol.cid import CID_LEN
from protocol.codec import fld

CHUNK_BYTES_MAX = 4 * 1024 * 1024
"""The largest chunk (init segment, media segment or thumbnail) a manifest may name."""
MESSAGE_ID_LEN = 32
SEGMENTS_MAX = 320
"""Media segments per rendition: ten minutes of ~2 s segments, with room to spare."""
RENDITIONS_MAX = 4
TAGS_MAX = 10
TAG_BYTES_MAX = 32
TITLE_BYTES_MAX = 150
DESCRIPTION_BYTES_MAX = 2000
NAME_BYTES_MAX = 64
BIO_BYTES_MAX = 500
REASON_BYTES_MAX = 200
DURATION_MS_MAX = 600_000
"""The longest video (10 minutes): this is a short-video network."""
DIMENSION_MAX = 4096
TOKEN_ID_LEN = 32
NETWORK_ID_LEN = 32
PEER_ID_BYTES_MAX = 64
"""The longest libp2p peer id (a multihash) a record may name."""
OFFER_AMOUNT_MAX = 2**63 - 1
"""The ledger's AMOUNT_MAX, which protocol/orders.py defines: it imports protocol.validate,
which imports this module, so the value is repeated here (tests/test_offers.py checks)."""

_ACCOUNT = {"len_min": PUBLIC_KEY_LEN, "len_max": PUBLIC_KEY_LEN}
_CID = {"len_min": CID_LEN, "len_max": CID_LEN}
_MESSAGE_ID = {"len_min": MESSAGE_ID_LEN, "len_max": MESSAGE_ID_LEN}
_TOKEN = {"len_min": TOKEN_ID_LEN, "len_max": TOKEN_ID_LEN}
_OFFER_AMOUNT = {"value_min": 1, "value_max": OFFER_AMOUNT_MAX}


@dataclass(frozen=True)
class ChunkRef:
    """A chunk named by content id, with its exact size in bytes."""

    cid: bytes = fld(**_CID)
    size: int = fld(value_min=1, value_max=CHUNK_BYTES_MAX)


@dataclass(frozen=True)
class SegmentRef:
    """One media segment of a rendition: a chunk that starts with a keyframe."""

    cid: bytes = fld(**_CID)
    size: int = fld(value_min=1, value_max=CHUNK_BYTES_MAX)
    duration_ms: int = fld(value_min=1, value_max=60_000)


@dataclass(frozen=True)
class Rendition:
    """One encoding of a video: an init chunk and its media segments, in play order."""

    name: str = fld(len_min=1, len_max=16)
    width: int = fld(value_min=1, value_max=DIMENSION_MAX)
    height: int = fld(value_min=1, value_max=DIMENSION_MAX)
    bandwidth: int = fld(value_min=1, value_max=100_000_000)
    codecs: str = fld(len_min=1, len_max=64)
    init: ChunkRef = fld()
    segments: tuple[SegmentRef, ...] = fld(items_min=1, items_max=SEGMENTS_MAX)


@dataclass(frozen=True)
class VideoManifest:
    """A published video: what to fetch, how to play it, and where it came from."""

    KIND: ClassVar[str] = "manifest"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    title: str = fld(len_min=1, len_max=TITLE_BYTES_MAX)
    description: str = fld(len_max=DESCRIPTION_BYTES_MAX)
    tags: tuple[str, ...] = fld(items_max=TAGS_MAX, item_len_max=TAG_BYTES_MAX)
    license: str = fld(len_max=64)
    remix_of: bytes = fld(len_max=MESSAGE_ID_LEN)
    """The message id of the manifest this video remixes, or empty."""
    duration_ms: int = fld(value_min=1, value_max=DURATION_MS_MAX)
    source_sha256: bytes = fld(len_min=32, len_max=32)
    source_size: int = fld(value_min=1)
    thumbnail: ChunkRef = fld()
    renditions: tuple[Rendition, ...] = fld(items_min=1, items_max=RENDITIONS_MAX)


@dataclass(frozen=True)
class Profile:
    """An account's public profile; the newest one wins."""

    KIND: ClassVar[str] = "profile"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    name: str = fld(len_max=NAME_BYTES_MAX)
    bio: str = fld(len_max=BIO_BYTES_MAX)
    avatar: bytes = fld(len_max=CID_LEN)
    """The content id of a JPEG avatar chunk, or empty."""


@dataclass(frozen=True)
class Tombstone:
    """The author withdraws one of their videos."""

    KIND: ClassVar[str] = "tombstone"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    manifest: bytes = fld(**_MESSAGE_ID)
    reason: str = fld(len_max=REASON_BYTES_MAX)


@dataclass(frozen=True)
class Follow:
    """The author follows the target account."""

    KIND: ClassVar[str] = "follow"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    target: bytes = fld(**_ACCOUNT)


@dataclass(frozen=True)
class Unfollow:
    """The author stops following the target account."""

    KIND: ClassVar[str] = "unfollow"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    target: bytes = fld(**_ACCOUNT)


REACTIONS = ("like", "unlike")


@dataclass(frozen=True)
class Reaction:
    """The author likes (or takes back a like of) a video."""

    KIND: ClassVar[str] = "reaction"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    manifest: bytes = fld(**_MESSAGE_ID)
    reaction: str = fld(len_min=1, len_max=16)


@dataclass(frozen=True)
class View:
    """A view receipt: the author watched a video for ``watched_ms``.

    Views are events, not a state: each receipt is one watch, and a viewer who watches the
    same video again sends another, which adds up (storage/social.py). Receipts are public
    once gossiped, like every message.
    """

    KIND: ClassVar[str] = "view"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    manifest: bytes = fld(**_MESSAGE_ID)
    """The message id of the video's manifest."""
    watched_ms: int = fld(value_min=1, value_max=DURATION_MS_MAX)
    """How long the author watched it, in ms: at most the longest video."""


@dataclass(frozen=True)
class Offer:
    """A standing offer: the author's node sells ``token`` from ``shop`` at a fixed price.

    A fan pays ``ceil(amount * price_num / price_den)`` base units of ``price_token`` for
    ``amount`` base units of ``token``, at most ``amount_max`` per fill, until
    ``expires_ms``; the node whose libp2p peer id is ``peer`` signs the fills for ``shop``
    (docs/protocol.md section 14). The offer's id is its message id.
    """

    KIND: ClassVar[str] = "offer"
    author: bytes = fld(**_ACCOUNT)
    created_ms: int = fld()
    network: bytes = fld(len_min=NETWORK_ID_LEN, len_max=NETWORK_ID_LEN)
    """The ledger's network id (its genesis hash): an offer is for one network."""
    shop: bytes = fld(**_ACCOUNT)
    """The account that holds the tokens for sale and signs each fill."""
    token: bytes = fld(**_TOKEN)
    price_token: bytes = fld(**_TOKEN)
    price_num: int = fld(**_OFFER_AMOUNT)
    price_den: int = fld(**_OFFER_AMOUNT)
    amount_max: int = fld(**_OFFER_AMOUNT)
    """The most base units of ``token`` one fill may buy."""
    expires_ms: int = fld()
    peer: bytes = fld(len_min=1, len_max=PEER_ID_BYTES_MAX)
    """The libp2p peer id (its bytes: a multihash) of the node that fills the offer."""


def offer_cost(offer: Offer, amount: int) -> int:
    """What ``amount`` base units of the offer's token cost in its price token: the price
    times the amount, rounded up, so a fill never pays less than the price."""
    return -(-amount * offer.price_num // offer.price_den)


Record = VideoManifest | Profile | Tombstone | Follow | Unfollow | Reaction | View | Offer

RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls
    for cls in (VideoManifest, Profile, Tombstone, Follow, Unfollow, Reaction, View, Offer)
}

BODY_BYTES_MAX: dict[str, int] = {
    "manifest": 128 * 1024,
    "profile": 1024,
    "tombstone": 512,
    "follow": 256,
    "unfollow": 256,
    "reaction": 256,
    "view": 256,
    "offer": 512,
}
"""The largest canonical body each kind may have."""
