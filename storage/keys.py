"""Every key in the node's LevelDB, in one place.

A key is one :class:`Prefix` byte followed by fields that each store defines below. Integers
inside keys are big-endian and fixed-width, so LevelDB's bytewise order is numeric order and a
range scan over a prefix pages through entries by time or sequence.

A prefix value is never reused: when an entity is retired its line stays here, commented
out, with the version that retired it, so an old database is never misread by new code.
"""

from enum import IntEnum, unique

from protocol.cid import CID_LEN


@unique  # a reused value would silently become an alias of the older name
class Prefix(IntEnum):
    """The first byte of every key in the node's LevelDB."""

    # Store metadata: META + name -> value. Names are listed below (META_*); the schema version
    # lives here and so do the chunk store's byte counters.
    META = 0x01

    # Chunk bytes exactly as received, no envelope, so a read is one LevelDB get and one hash:
    # CHUNK_DATA + cid (36 bytes) -> raw bytes.
    CHUNK_DATA = 0x10
    # Chunk metadata: CHUNK_META + cid -> msgpack [size, lru_tick, pin_mask].
    CHUNK_META = 0x11
    # Eviction order of the unpinned chunks, least recently used first:
    # CHUNK_LRU + tick (u64) + cid -> b"". Pinned chunks have no entry.
    CHUNK_LRU = 0x12
    # Pins by reason, so a service can list what it pinned: CHUNK_PIN + reason (u8) + cid -> b"".
    CHUNK_PIN = 0x13

    # Video manifests by message id: MANIFEST + message id -> signed envelope bytes.
    MANIFEST = 0x20
    # Manifests of one creator, oldest first:
    # MANIFEST_BY_CREATOR + creator key (32) + created_ms (u64) + message id -> b"".
    MANIFEST_BY_CREATOR = 0x21
    # Manifests in time order: MANIFEST_BY_TIME + created_ms (u64) + message id -> b"".
    MANIFEST_BY_TIME = 0x22
    # Tombstones: TOMBSTONE + manifest message id + tombstone author -> signed envelope.
    # Keyed by author too, so a tombstone forged by someone else never hides a video.
    TOMBSTONE = 0x23
    # Which stored manifests name a chunk: MANIFEST_BY_CHUNK + cid + message id -> b"".
    # A withdrawn video's chunks are unpinned only when no other manifest names them.
    MANIFEST_BY_CHUNK = 0x24
    # Publishes under way: MANIFEST_PENDING + message id -> msgpack [cid, ...]. Written
    # before the first chunk, removed with the manifest's batch; an entry found on open is
    # a publish that crashed, and its chunks are unpinned (and dropped if nothing else pins
    # or names them).
    MANIFEST_PENDING = 0x25
    # Every message the node holds for anti-entropy sync (storage/messages.py), any kind:
    # MESSAGE + message id -> created_ms (u64) + signed envelope bytes. A withdrawn video's
    # manifest keeps its entry with the created_ms alone (8 bytes): a placeholder that stays
    # in the sync set but is never served. A ledger certificate is an item too:
    # MESSAGE + order id -> the order's created_ms (u64) + the certificate's bytes.
    MESSAGE = 0x26
    # The sync set in item order: MESSAGE_BY_TIME + created_ms (u64) + message id -> b"".
    MESSAGE_BY_TIME = 0x27

    # Follow state per (author, target), last write wins:
    # SOCIAL_EDGE + author key + target key -> msgpack [following, created_ms, id, envelope].
    SOCIAL_EDGE = 0x30
    # Followers index, present while the author follows: SOCIAL_REVERSE + target + author -> b"".
    SOCIAL_REVERSE = 0x31
    # Latest reaction per (video, author), last write wins:
    # REACTION + manifest message id + author key -> msgpack [liked, created_ms, id, envelope].
    REACTION = 0x32
    # Latest profile per account: PROFILE + account key -> msgpack [True, created_ms, id,
    # envelope] (the same register layout as above).
    PROFILE = 0x33
    # View receipts, one entry per message: VIEW + viewer key + manifest message id + view
    # message id -> created_ms (u64) + watched_ms (u64). Views are events, not registers:
    # every receipt counts, once, and its entry is how a receipt that arrives again is known.
    # The envelope itself is in the message log (MESSAGE + id), which serves it to peers.
    VIEW = 0x34

    # Encrypted account secrets: KEYSTORE + entry name (UTF-8) -> msgpack record.
    KEYSTORE = 0x40

    # Node settings set at run time: CONFIG + name (UTF-8) -> value (UTF-8).
    CONFIG = 0x50

    # The token ledger replica (storage/ledger.py). Accounts, tokens and order ids are 32
    # bytes; an absent entry means sequence 0, a zero balance, no token, no lock.
    # Next sequence number per account: LEDGER_SEQ + account -> u64.
    LEDGER_SEQ = 0x60
    # Balance per (account, token), never zero (a zero balance is deleted):
    # LEDGER_BALANCE + account + token id -> u64.
    LEDGER_BALANCE = 0x61
    # Tokens: LEDGER_TOKEN + token id -> canonical bytes of protocol.ledger.TokenInfo.
    LEDGER_TOKEN = 0x62
    # The order applied at each (account, seq): LEDGER_SLOT + account + seq (u64) -> order id.
    LEDGER_SLOT = 0x63
    # A validator's votes: LEDGER_LOCK + account + seq (u64) -> order id. Written (synced)
    # before a vote leaves the node; deleted when the slot is applied.
    LEDGER_LOCK = 0x64
    # Orders that move an account's tokens (it sends, receives, swaps or creates), in apply
    # order: LEDGER_HISTORY + account + position (u64) -> order id.
    LEDGER_HISTORY = 0x65
    # Every applied certificate in apply order: LEDGER_LOG + position (u64) -> order id. The
    # certificate's bytes are in the message log (MESSAGE + order id), a sync item.
    LEDGER_LOG = 0x66
    # Where each applied order lies in LEDGER_LOG: LEDGER_POSITION + order id -> u64.
    LEDGER_POSITION = 0x67

    # Standing offers (storage/offers.py). Offers by id (their message id):
    # OFFER + offer id -> signed envelope bytes.
    OFFER = 0x70
    # Offers by the time they expire, for listing those that stand:
    # OFFER_BY_EXPIRY + expires_ms (u64) + offer id -> b"".
    OFFER_BY_EXPIRY = 0x71
    # Offers this node's creator closed (their shop fills no more): OFFER_CLOSED + offer id
    # -> closed_ms (u64).
    OFFER_CLOSED = 0x72
    # The keys of this node's shop accounts, one per offer it fills, kept PLAIN (like the
    # node key) so the node signs fills unattended: SHOP_KEY + shop account -> 32-byte seed.
    # Written (synced) before the shop is funded, so a crash never strands its tokens.
    SHOP_KEY = 0x73

    # The social graph the feed reads (storage/socialgraph.py), added in schema 2. Every
    # entry is derived: staged in the same batch as the register or manifest it follows
    # from, and recomputed from those by SocialGraph.rebuild. A time inside these keys is
    # DESCENDING, stored as u64(U64_MAX - ms) (see desc_ms), so a forward scan of one
    # account or video lists the newest first and stops at its limit.
    # Accounts an author follows, newest follow first, present while the author follows:
    # FOLLOWING_BY_TIME + author + desc(followed_ms) + target -> b"". followed_ms is the
    # created_ms of the follow that set the SOCIAL_EDGE register.
    FOLLOWING_BY_TIME = 0x80
    # Videos an account likes, newest like first, present while its latest reaction is a
    # like: LIKES_BY_ACCOUNT + account + desc(liked_ms) + manifest id -> b"".
    LIKES_BY_ACCOUNT = 0x81
    # Accounts that like a video, newest like first, under the same condition:
    # LIKERS_BY_TIME + manifest id + desc(liked_ms) + account -> b"".
    LIKERS_BY_TIME = 0x82
    # How many accounts like a video (LIKERS_BY_TIME entries), never zero (a video no one
    # likes has no entry): LIKE_COUNT + manifest id -> u64.
    LIKE_COUNT = 0x83
    # A stored manifest's creator and time, for point lookups that need no envelope:
    # MANIFEST_INFO + message id -> creator key (32) + created_ms (u64). Staged with
    # MANIFEST_BY_CREATOR by storage/manifests.py, so a withdrawn video has none.
    MANIFEST_INFO = 0x84
    # This node's block list, LOCAL ONLY (never gossiped nor synced): a viewer hosted here
    # does not want ``account`` in its feed: SOCIAL_BLOCK + viewer + account -> b"".
    SOCIAL_BLOCK = 0x85
    # What a viewer watched, per video, from its VIEW entries: VIEW_TOTAL + viewer + manifest
    # id -> views (u64) + total watched_ms (u64) + last_ms (u64), where last_ms is the
    # greatest created_ms of those receipts. A rewatch adds up. Derived, like 0x80 to 0x84.
    VIEW_TOTAL = 0x86
    # Videos an account watched, most recently watched first, one entry per VIEW_TOTAL:
    # VIEWED_BY_ACCOUNT + viewer + desc(last_ms) + manifest id -> b"". Derived.
    VIEWED_BY_ACCOUNT = 0x87

    # Retired values go here, commented out, with the schema version that retired them and
    # why (``# NAME = 0x.. retired in schema N: ...``); none yet.


# Names under Prefix.META.
META_SCHEMA = b"schema"
# The chunk store's counters: msgpack [used_bytes, count, pinned_bytes].
META_CHUNK_COUNTERS = b"chunk_counters"
# The ledger's genesis: its exact canonical bytes (protocol/genesis.py); the network id is
# their hash. Written once, with the genesis state, by LedgerStore.init_genesis.
META_LEDGER_GENESIS = b"ledger_genesis"
# How many certificates the ledger has applied (u64): the next LEDGER_LOG position.
META_LEDGER_APPLIED = b"ledger_applied"
# The version of the social graph's indexes (0x80 to 0x84, 0x86, 0x87) this store holds,
# ASCII digits, written last by SocialGraph.rebuild: absent, the indexes are missing or half
# built, and Stores rebuilds them on open. The view indexes (0x86, 0x87) came without a new
# version: a store from before them holds no VIEW entry, so its empty view indexes are whole.
META_SOCIAL_GRAPH = b"social_graph"

U64_MAX = 2**64 - 1
TICK_BYTES = 8


def u64(value: int) -> bytes:
    """Encode ``value`` as 8 big-endian bytes. Raises ValueError when out of range."""
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{value} does not fit in an unsigned 64-bit key field")
    return value.to_bytes(8, "big")


def desc_ms(ms: int) -> bytes:
    """Encode the time ``ms`` so that later times sort first (8 bytes, U64_MAX - ms).

    Raises ValueError when ``ms`` is not a u64.
    """
    if not 0 <= ms <= U64_MAX:
        raise ValueError(f"{ms} does not fit in an unsigned 64-bit key field")
    return (U64_MAX - ms).to_bytes(8, "big")


def undesc_ms(field: bytes) -> int:
    """The time a :func:`desc_ms` field holds."""
    return U64_MAX - int.from_bytes(field, "big")


def prefix(p: Prefix) -> bytes:
    """Return the one-byte key prefix of ``p``, for range scans over a whole entity."""
    return bytes((p,))


def meta_key(name: bytes) -> bytes:
    """Key of the store metadata value ``name`` (one of the META_* names)."""
    return bytes((Prefix.META,)) + name


def chunk_data_key(cid: bytes) -> bytes:
    """Key of a chunk's bytes."""
    return bytes((Prefix.CHUNK_DATA,)) + cid


def chunk_meta_key(cid: bytes) -> bytes:
    """Key of a chunk's metadata."""
    return bytes((Prefix.CHUNK_META,)) + cid


def chunk_lru_key(tick: int, cid: bytes) -> bytes:
    """Key of a chunk's place in the eviction order."""
    return bytes((Prefix.CHUNK_LRU,)) + u64(tick) + cid


def split_chunk_lru_key(key: bytes) -> tuple[int, bytes]:
    """Return (tick, cid) of a CHUNK_LRU key. Raises ValueError on a malformed key."""
    if len(key) != 1 + TICK_BYTES + CID_LEN or key[0] != Prefix.CHUNK_LRU:
        raise ValueError(f"not a chunk LRU key: {key[:12].hex()}... ({len(key)} bytes)")
    return int.from_bytes(key[1 : 1 + TICK_BYTES], "big"), key[1 + TICK_BYTES :]


def chunk_pin_prefix(reason: int) -> bytes:
    """Prefix of every pin index key of one pin reason."""
    return bytes((Prefix.CHUNK_PIN, reason))


def chunk_pin_key(reason: int, cid: bytes) -> bytes:
    """Key recording that ``cid`` is pinned for ``reason``."""
    return chunk_pin_prefix(reason) + cid


def keystore_key(name: str) -> bytes:
    """Key of the keystore entry ``name``."""
    return bytes((Prefix.KEYSTORE,)) + name.encode("utf-8")


def key(p: Prefix, *parts: bytes) -> bytes:
    """A key of entity ``p``: its prefix byte followed by ``parts`` (fixed-width fields)."""
    return bytes((p,)) + b"".join(parts)
