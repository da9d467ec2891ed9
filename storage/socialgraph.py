"""SocialGraph: the follow, like and view graph as the feed reads it, plus the local block
list.

The feed ranking (protocol/ranking.py) reads the graph through a small interface,
``SocialView``; this class implements it (structurally) over the indexes that
storage/social.py and storage/manifests.py stage with every register, view receipt and
manifest change (storage/keys.py, 0x80 to 0x84, 0x86 and 0x87). Every read is bounded: one
prefix scan that stops at its ``limit``, or one point get, and none decodes an envelope, so
ranking one viewer's feed costs a few hundred small reads whatever the size of the graph.

The indexes are derived data. :meth:`SocialGraph.rebuild` recomputes them all from the
registers, the view receipts and the manifest indexes; a marker (META ``social_graph``)
written after a complete rebuild tells a store that has them from one that predates them or
crashed half way, and :class:`storage.stores.Stores` rebuilds on open when it is missing.

The block list is local: which accounts a viewer hosted on this node does not want to see.
It is never gossiped nor synced; the feed leaves those accounts out.
"""

import itertools
import threading

from protocol.accounts import PUBLIC_KEY_LEN
from protocol.kinds import MESSAGE_ID_LEN
from protocol.ranking import VideoInfo
from storage.errors import DamagedRecord, StoreError
from storage.keys import META_SOCIAL_GRAPH, Prefix, desc_ms, meta_key, undesc_ms
from storage.keys import key as _key
from storage.kv import KV, Batch
from storage.social import ChunkedWriter, SocialStore, ViewTotal, read_count

GRAPH_VERSION = 1
"""The layout of the graph's indexes; a store whose marker holds another is rebuilt."""
ID_LEN = PUBLIC_KEY_LEN
"""Accounts and manifest ids are both this long; every key field is checked against it."""
assert MESSAGE_ID_LEN == ID_LEN, "the graph's key fields assume accounts and ids alike"
BLOCKS_MAX = 10_000
"""Accounts one viewer may block."""
SELF_BLOCK = "an account does not block itself"
_MS_LEN = len(desc_ms(0))
"""A time in an index key: a u64, as storage/keys.py encodes it."""
_TIMED_LEN = _MS_LEN + ID_LEN
"""An index key's rest after its owner: a descending time and an id."""


class SocialGraph:
    """The :class:`~protocol.ranking.SocialView` over a :class:`KV`, and the block list.

    ``social`` is the store whose register changes a :meth:`rebuild` must not interleave
    with (the node's own).
    Every method raises :class:`ValueError` for an account or id that is not 32 bytes,
    :class:`DamagedRecord` for an index entry of the wrong shape, and StoreError (from the
    KV) when the database cannot be read.
    """

    def __init__(self, kv: KV, social: SocialStore) -> None:
        self._kv = kv
        self._social = social
        self._block_lock = threading.Lock()

    # ------------------------------------------------------------------ SocialView

    def following(self, account: bytes, limit: int) -> list[bytes]:
        """Accounts ``account`` follows now, most recently followed first, at most
        ``limit``."""
        return [
            s[_MS_LEN:] for s in self._scan(Prefix.FOLLOWING_BY_TIME, account, limit, _TIMED_LEN)
        ]

    def liked(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        """(manifest id, liked_ms) of the videos ``account`` likes now, newest like first,
        at most ``limit``. A liked video need not be stored here (see :meth:`video`)."""
        return [
            (s[_MS_LEN:], undesc_ms(s[:_MS_LEN]))
            for s in self._scan(Prefix.LIKES_BY_ACCOUNT, account, limit, _TIMED_LEN)
        ]

    def viewed(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        """(manifest id, last viewed ms) of the videos ``account`` sent view receipts of,
        most recently watched first, at most ``limit``; a rewatched video is listed once, at
        its latest receipt's ``created_ms``."""
        return [
            (s[_MS_LEN:], undesc_ms(s[:_MS_LEN]))
            for s in self._scan(Prefix.VIEWED_BY_ACCOUNT, account, limit, _TIMED_LEN)
        ]

    def likers(self, video: bytes, limit: int) -> list[bytes]:
        """Accounts whose latest reaction to ``video`` is a like, newest like first, at
        most ``limit``."""
        return [s[_MS_LEN:] for s in self._scan(Prefix.LIKERS_BY_TIME, video, limit, _TIMED_LEN)]

    def like_count(self, video: bytes) -> int:
        """How many accounts like ``video`` now."""
        _check_id("video", video)
        return read_count(video, self._kv.get(_key(Prefix.LIKE_COUNT, video)))

    def videos_by(self, creator: bytes, limit: int) -> list[VideoInfo]:
        """The creator's stored videos, newest first, at most ``limit``. A withdrawn video
        has no index entry (storage/manifests.py drops them with the manifest)."""
        _check_id("creator", creator)
        if limit <= 0:
            return []
        p = _key(Prefix.MANIFEST_BY_CREATOR, creator)
        out = []
        keys = self._kv.iterate(p, reverse=True, include_value=False)
        for key, _ in itertools.islice(keys, limit):
            rest = _suffix(key, len(p), _MS_LEN + ID_LEN)
            created_ms = int.from_bytes(rest[:_MS_LEN], "big")
            out.append(VideoInfo(rest[_MS_LEN:], creator, created_ms))
        return out

    def video(self, video: bytes) -> VideoInfo | None:
        """The stored video ``video``; None when unknown here or withdrawn."""
        _check_id("video", video)
        raw = self._kv.get(_key(Prefix.MANIFEST_INFO, video))
        if raw is None:
            return None
        if len(raw) != ID_LEN + _MS_LEN:
            raise DamagedRecord(f"the info of video {video.hex()} is {len(raw)} bytes")
        return VideoInfo(video, raw[:ID_LEN], int.from_bytes(raw[ID_LEN:], "big"))

    # ------------------------------------------------------------------ listings

    def followers(self, account: bytes, limit: int) -> list[bytes]:
        """Accounts following ``account`` now, in id order, at most ``limit``."""
        return self._scan(Prefix.SOCIAL_REVERSE, account, limit, ID_LEN)

    def watched(self, account: bytes, video: bytes) -> ViewTotal | None:
        """What ``account`` watched of ``video`` (views, total watched_ms, last_ms), or
        None when no receipt of it is here."""
        _check_id("account", account)
        _check_id("video", video)
        return self._social.watched(account, video)

    # ------------------------------------------------------------------ block list

    def block(self, viewer: bytes, account: bytes) -> bool:
        """Keep ``account`` out of ``viewer``'s feed; return False if it already was.

        Local only: nothing is gossiped. Raises :class:`StoreError` when ``viewer`` already
        blocks :data:`BLOCKS_MAX` accounts, ValueError for an id not of 32 bytes or for
        ``account`` being ``viewer`` (:data:`SELF_BLOCK`).
        """
        key = _block_key(viewer, account)
        with self._block_lock:
            if self._kv.get(key) is not None:
                return False
            if len(self._blocked(viewer)) >= BLOCKS_MAX:
                raise StoreError(f"an account blocks at most {BLOCKS_MAX} accounts")
            batch = Batch()
            batch.put(key, b"")
            self._kv.write(batch, sync=True)
        return True

    def unblock(self, viewer: bytes, account: bytes) -> bool:
        """Let ``account`` back into ``viewer``'s feed; return False if it was not blocked.

        Raises ValueError for an id not of 32 bytes or for ``account`` being ``viewer``
        (:data:`SELF_BLOCK`), as :meth:`block` does.
        """
        key = _block_key(viewer, account)
        with self._block_lock:
            if self._kv.get(key) is None:
                return False
            batch = Batch()
            batch.delete(key)
            self._kv.write(batch, sync=True)
        return True

    def blocked(self, viewer: bytes) -> frozenset[bytes]:
        """The accounts ``viewer`` blocks (at most :data:`BLOCKS_MAX`)."""
        return frozenset(self._blocked(viewer))

    def _blocked(self, viewer: bytes) -> list[bytes]:
        return self._scan(Prefix.SOCIAL_BLOCK, viewer, BLOCKS_MAX, ID_LEN)

    # ------------------------------------------------------------------ upkeep

    def indexed(self) -> bool:
        """Whether this store holds complete indexes of the current :data:`GRAPH_VERSION`."""
        return self._kv.get(meta_key(META_SOCIAL_GRAPH)) == str(GRAPH_VERSION).encode()

    def rebuild(self) -> None:
        """Recompute every index of the graph from the registers, view receipts and
        manifest indexes.

        The upgrade path of a store written before the indexes existed, and the repair of
        damaged ones. The marker, if any, is removed first and written (synced) last, so a crash
        half way leaves a store that is rebuilt again when next opened. Messages applied
        to ``social`` wait until its part is done. Raises :class:`DamagedRecord` for a
        register or index key that cannot be read, StoreError if a write fails.
        """
        marker = meta_key(META_SOCIAL_GRAPH)
        if self._kv.get(marker) is not None:
            batch = Batch()
            batch.delete(marker)
            self._kv.write(batch, sync=True)
        self._social.rebuild_indexes()
        self._rebuild_manifest_info()
        batch = Batch()
        batch.put(marker, str(GRAPH_VERSION).encode("ascii"))
        self._kv.write(batch, sync=True)

    def _rebuild_manifest_info(self) -> None:
        """MANIFEST_INFO from MANIFEST_BY_CREATOR, whose keys hold the same facts."""
        writer = ChunkedWriter(self._kv)
        for key, _ in self._kv.iterate(_key(Prefix.MANIFEST_INFO), include_value=False):
            writer.delete(key)
        p = _key(Prefix.MANIFEST_BY_CREATOR)
        for key, _ in self._kv.iterate(p, include_value=False):
            rest = _suffix(key, len(p), ID_LEN + _MS_LEN + ID_LEN)
            creator, ms, mid = rest[:ID_LEN], rest[ID_LEN : ID_LEN + _MS_LEN], rest[-ID_LEN:]
            writer.batch.put(_key(Prefix.MANIFEST_INFO, mid), creator + ms)
            writer.flush_if_full()
        writer.flush()

    def _scan(self, p: Prefix, owner: bytes, limit: int, rest_len: int) -> list[bytes]:
        """What follows ``p + owner`` in the first ``limit`` keys under it (each
        ``rest_len`` bytes)."""
        _check_id("account or video", owner)
        if limit <= 0:
            return []
        head = _key(p, owner)
        keys = self._kv.iterate(head, include_value=False)
        return [_suffix(key, len(head), rest_len) for key, _ in itertools.islice(keys, limit)]


def _suffix(key: bytes, head_len: int, rest_len: int) -> bytes:
    """The ``rest_len`` bytes of ``key`` after its ``head_len``-byte head. Raises
    DamagedRecord when the key is not that long."""
    if len(key) != head_len + rest_len:
        raise DamagedRecord(f"index key of {len(key)} bytes under {key[:1].hex()}")
    return key[head_len:]


def _block_key(viewer: bytes, account: bytes) -> bytes:
    """The SOCIAL_BLOCK key of the pair. Raises ValueError for an id not of 32 bytes or an
    account blocking itself."""
    _check_id("viewer", viewer)
    _check_id("account", account)
    if viewer == account:
        raise ValueError(SELF_BLOCK)
    return _key(Prefix.SOCIAL_BLOCK, viewer, account)


def _check_id(what: str, value: bytes) -> None:
    """Raise ValueError unless ``value`` is 32 bytes (a shorter one would prefix-match
    others' keys)."""
    if type(value) is not bytes or len(value) != ID_LEN:
        size = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ValueError(f"a {what} is {ID_LEN} bytes, not {size}")
