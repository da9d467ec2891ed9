"""SocialStore: follow state per pair of accounts, likes and views per video, and profiles.

Follows and reactions are last-write-wins registers: for each (author, target) pair the
message with the greatest ``(created_ms, message id)`` decides the state, whatever order
messages arrive in, so every node that has seen the same messages agrees. The winning
message is kept verbatim, so it can be served to peers that lack it.

The social graph's indexes (storage/keys.py 0x80 to 0x83, read by storage/socialgraph.py)
follow from the registers alone: a register that changes stages, in its own batch, the
removal of the index entries its previous state put there (their times are in the previous
register's stamp) and the entries of its new state. So the indexes always equal what
:meth:`SocialStore.rebuild_indexes` computes from the registers, whatever order messages arrived in.

View receipts are events, not registers: every receipt counts, once. Each one is kept as a
VIEW entry keyed by (viewer, video, message id), whose presence is how a receipt that
arrives again is known (a key per message id, placed so that one prefix scan lists a
viewer's receipts of a video). Their sum per (viewer, video) is the VIEW_TOTAL register
(views, total watched_ms, last_ms) with its VIEWED_BY_ACCOUNT entry; both are derived, so a
rebuild recomputes them from the VIEW entries, and sums and maxima do not depend on the
order receipts arrive in.
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from protocol.accounts import PUBLIC_KEY_LEN
from protocol.envelope import SignedMessage
from protocol.kinds import (
    DURATION_MS_MAX,
    MESSAGE_ID_LEN,
    Follow,
    Profile,
    Reaction,
    Unfollow,
    View,
)
from storage.errors import DamagedRecord, StoreError
from storage.keys import U64_MAX, Prefix, desc_ms, u64
from storage.keys import key as _key
from storage.kv import KV, Batch, read_through
from storage.records import check_before_write, read_back

_PAIR_LEN = PUBLIC_KEY_LEN + MESSAGE_ID_LEN
"""A (viewer, video) pair in VIEW and VIEW_TOTAL keys."""
REBUILD_OPS_MAX = 10_000
"""Operations per batch while rebuilding the indexes, so a rebuild of millions of entries
holds a bounded batch in memory."""

INDEX_PREFIXES = (
    Prefix.SOCIAL_REVERSE,
    Prefix.FOLLOWING_BY_TIME,
    Prefix.LIKES_BY_ACCOUNT,
    Prefix.LIKERS_BY_TIME,
    Prefix.LIKE_COUNT,
    Prefix.VIEW_TOTAL,
    Prefix.VIEWED_BY_ACCOUNT,
)
"""Every prefix whose entries follow from the SOCIAL_EDGE and REACTION registers and the
VIEW entries."""


@dataclass(frozen=True, order=True)
class _Stamp:
    created_ms: int
    message_id: bytes


@dataclass(frozen=True)
class _Register:
    """The stored value of one pair: its state, the stamp that set it, the message."""

    active: bool
    stamp: _Stamp
    raw: bytes

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.active, self.stamp.created_ms, self.stamp.message_id, self.raw]
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> "_Register":
        try:
            active, created_ms, message_id, raw = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DamagedRecord(f"damaged social register: {exc}") from exc
        # Its time goes into index keys: check it is one.
        if type(created_ms) is not int or not 0 <= created_ms <= U64_MAX:
            raise DamagedRecord(f"damaged social register: created_ms {created_ms!r}")
        return cls(bool(active), _Stamp(created_ms, message_id), raw)


@dataclass(frozen=True)
class ViewTotal:
    """What one viewer watched of one video: the VIEW_TOTAL register."""

    views: int
    """Receipts counted."""
    watched_ms: int
    """Their ``watched_ms`` added up."""
    last_ms: int
    """The greatest ``created_ms`` among them: when the viewer last watched."""

    def add(self, created_ms: int, watched_ms: int) -> "ViewTotal":
        return ViewTotal(
            self.views + 1, self.watched_ms + watched_ms, max(self.last_ms, created_ms)
        )

    def encode(self) -> bytes:
        return u64(self.views) + u64(self.watched_ms) + u64(self.last_ms)

    @classmethod
    def decode(cls, data: bytes) -> "ViewTotal":
        """Raises DamagedRecord unless ``data`` is three u64 with at least one view."""
        if len(data) != 24:
            raise DamagedRecord(f"damaged view total: {len(data)} bytes, not 24")
        views, watched_ms, last_ms = (int.from_bytes(data[i : i + 8], "big") for i in (0, 8, 16))
        if views < 1 or not views <= watched_ms <= views * DURATION_MS_MAX:
            raise DamagedRecord(f"damaged view total: {views} views of {watched_ms} ms")
        return cls(views, watched_ms, last_ms)


_NO_VIEWS = ViewTotal(0, 0, 0)


def _decode_view(data: bytes) -> tuple[int, int]:
    """(created_ms, watched_ms) of a VIEW entry. Raises DamagedRecord unless it is two u64
    with watched_ms within the record's limits."""
    if len(data) != 16:
        raise DamagedRecord(f"damaged view entry: {len(data)} bytes, not 16")
    created_ms, watched_ms = int.from_bytes(data[:8], "big"), int.from_bytes(data[8:], "big")
    if not 1 <= watched_ms <= DURATION_MS_MAX:
        raise DamagedRecord(f"damaged view entry: watched_ms {watched_ms}")
    return created_ms, watched_ms


def _register_of(message: SignedMessage) -> tuple[bytes, _Register]:
    """The key of the register a follow, unfollow, reaction or profile message sets, and the
    value it would set. Raises StoreError for another kind."""
    record = message.record
    stamp = _Stamp(record.created_ms, message.id)
    if isinstance(record, Follow | Unfollow):
        key = _key(Prefix.SOCIAL_EDGE, record.author, record.target)
        return key, _Register(isinstance(record, Follow), stamp, message.raw)
    if isinstance(record, Reaction):
        key = _key(Prefix.REACTION, record.manifest, record.author)
        return key, _Register(record.reaction == "like", stamp, message.raw)
    if isinstance(record, Profile):
        return _key(Prefix.PROFILE, record.author), _Register(True, stamp, message.raw)
    raise StoreError(f"the social store does not hold {message.kind} messages")


class SocialStore:
    """Follows, reactions and profiles over a :class:`KV`, with the graph's indexes."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        # A register change reads the register and a like count, then writes: two threads
        # applying at once would lose one's index changes.
        self._lock = threading.Lock()

    def apply(self, message: SignedMessage, batch: Batch | None = None) -> bool:
        """Apply a validated follow, unfollow, reaction, view or profile message.

        Returns True when it changed what the store holds, False when a newer message for
        the same pair (or this very message) was already applied; a view counts unless this
        very message was applied. The register and the indexes it implies are written in one
        batch: ``batch``, when given, for the caller to write with its own changes (before
        any other message is applied), else one of its own. Raises :class:`StoreError` for
        another kind or bytes that do not check, :class:`DamagedRecord` when the stored
        register cannot be read; nothing is written then.
        """
        record = message.record
        register = None if isinstance(record, View) else _register_of(message)
        check_before_write(message, StoreError)
        staged = Batch() if batch is None else batch
        with self._lock:
            if register is None:
                assert isinstance(record, View)
                changed = self._apply_view(record, message.id, staged)
            else:
                changed = self._apply_register(message, *register, staged)
            if changed and batch is None:
                self._kv.write(staged)
        return changed

    def _apply_register(
        self, message: SignedMessage, key: bytes, new: _Register, staged: Batch
    ) -> bool:
        """Stage the register at ``key`` becoming ``new`` with its index changes, unless it
        holds a newer (or this very) message; return whether it changed. Holds the lock."""
        stored = self._kv.get(key)
        old = None if stored is None else _Register.decode(stored)
        if old is not None and old.stamp >= new.stamp:
            return False
        staged.put(key, new.encode())
        record = message.record
        if isinstance(record, Follow | Unfollow):
            _stage_follow(staged, record.author, record.target, old, new)
        elif isinstance(record, Reaction):
            delta = _stage_reaction(staged, record.manifest, record.author, old, new)
            _stage_count(self._kv, staged, record.manifest, delta)
        return True

    def _apply_view(self, view: View, message_id: bytes, batch: Batch) -> bool:
        seen = _key(Prefix.VIEW, view.author, view.manifest, message_id)
        if self._kv.get(seen) is not None:
            return False
        total_key = _key(Prefix.VIEW_TOTAL, view.author, view.manifest)
        stored = self._kv.get(total_key)
        old = None if stored is None else ViewTotal.decode(stored)
        new = (old or _NO_VIEWS).add(view.created_ms, view.watched_ms)
        batch.put(seen, u64(view.created_ms) + u64(view.watched_ms))
        batch.put(total_key, new.encode())
        _stage_viewed(batch, view.author, view.manifest, old, new)
        return True

    def watched(self, viewer: bytes, manifest_id: bytes) -> ViewTotal | None:
        """What ``viewer`` watched of the video, or None when no receipt of it is here."""
        raw = self._kv.get(_key(Prefix.VIEW_TOTAL, viewer, manifest_id))
        return None if raw is None else ViewTotal.decode(raw)

    def rebuild_indexes(self) -> None:
        """Recompute every index of :data:`INDEX_PREFIXES` from the registers.

        Writes in batches of at most :data:`REBUILD_OPS_MAX` operations, so a crash half way
        leaves half-built indexes: the caller records completion only after this returns
        (storage/socialgraph.py). Applying messages waits until it is done. Raises
        :class:`DamagedRecord` for a register or key that cannot be read, StoreError if a
        write fails.
        """
        with self._lock:
            writer = ChunkedWriter(self._kv)
            for p in INDEX_PREFIXES:
                for key, _ in self._kv.iterate(_key(p), include_value=False):
                    writer.delete(key)
            for (author, target), register in _registers(
                self._kv, Prefix.SOCIAL_EDGE, PUBLIC_KEY_LEN
            ):
                _stage_follow(writer.batch, author, target, None, register)
                writer.flush_if_full()
            counted: bytes | None = None
            count = 0
            for (manifest, author), register in _registers(
                self._kv, Prefix.REACTION, MESSAGE_ID_LEN
            ):
                if manifest != counted:
                    _put_count(writer.batch, counted, count)
                    counted, count = manifest, 0
                count += _stage_reaction(writer.batch, manifest, author, None, register)
                writer.flush_if_full()
            _put_count(writer.batch, counted, count)
            _rebuild_views(self._kv, writer)
            writer.flush()

    def follow_stamp_ms(self, author: bytes, target: bytes, now_ms: int) -> int:
        """The ``created_ms`` for a follow or unfollow ``author`` makes of ``target`` now:
        ``now_ms``, or one past what the store holds for the pair when that is not older,
        so two changes made within one millisecond apply in the order they were made."""
        return self._stamp_after(_key(Prefix.SOCIAL_EDGE, author, target), now_ms)

    def reaction_stamp_ms(self, account: bytes, video: bytes, now_ms: int) -> int:
        """The ``created_ms`` for a like or unlike ``account`` makes of ``video`` now; as
        :meth:`follow_stamp_ms`."""
        return self._stamp_after(_key(Prefix.REACTION, video, account), now_ms)

    def _stamp_after(self, key: bytes, now_ms: int) -> int:
        raw = self._kv.get(key)
        return now_ms if raw is None else max(now_ms, _Register.decode(raw).stamp.created_ms + 1)

    def is_following(self, author: bytes, target: bytes) -> bool:
        raw = self._kv.get(_key(Prefix.SOCIAL_EDGE, author, target))
        return raw is not None and _Register.decode(raw).active

    def is_liking(self, account: bytes, video: bytes) -> bool:
        """Whether ``account``'s latest reaction to ``video`` is a like: one read of the
        reaction register, whatever the number of likes. Raises DamagedRecord when the
        register cannot be read."""
        raw = self._kv.get(_key(Prefix.REACTION, video, account))
        return raw is not None and _Register.decode(raw).active

    def following(self, author: bytes) -> list[bytes]:
        """Accounts ``author`` follows, in id order."""
        prefix = _key(Prefix.SOCIAL_EDGE, author)
        return [
            key[len(prefix) :]
            for key, value in self._kv.iterate(prefix)
            if _Register.decode(value).active
        ]

    def followers(self, target: bytes) -> list[bytes]:
        """Accounts following ``target``, in id order."""
        prefix = _key(Prefix.SOCIAL_REVERSE, target)
        return [key[len(prefix) :] for key, _ in self._kv.iterate(prefix, include_value=False)]

    def likes(self, manifest_id: bytes) -> list[bytes]:
        """Accounts whose latest reaction to the video is a like."""
        prefix = _key(Prefix.REACTION, manifest_id)
        return [
            key[len(prefix) :]
            for key, value in self._kv.iterate(prefix)
            if _Register.decode(value).active
        ]

    def profile(self, author: bytes) -> Profile | None:
        """The newest profile of ``author``, re-checked on read."""
        raw = self._kv.get(_key(Prefix.PROFILE, author))
        if raw is None:
            return None
        record = read_back(_Register.decode(raw).raw, Profile, "profile").record
        assert isinstance(record, Profile)
        return record


def _stage_follow(
    batch: Batch, author: bytes, target: bytes, old: _Register | None, new: _Register
) -> None:
    """Stage the index changes of the follow register (author, target) going from ``old``
    (None: no register) to ``new``."""
    if old is not None and old.active:
        ms = desc_ms(old.stamp.created_ms)
        batch.delete(_key(Prefix.FOLLOWING_BY_TIME, author, ms, target))
    reverse = _key(Prefix.SOCIAL_REVERSE, target, author)
    if new.active:
        ms = desc_ms(new.stamp.created_ms)
        batch.put(_key(Prefix.FOLLOWING_BY_TIME, author, ms, target), b"")
        batch.put(reverse, b"")
    else:
        batch.delete(reverse)


def _stage_reaction(
    batch: Batch, manifest: bytes, author: bytes, old: _Register | None, new: _Register
) -> int:
    """Stage the like index changes of the reaction register (manifest, author) going from
    ``old`` to ``new``; return the change in the video's like count (-1, 0 or 1)."""
    was = old is not None and old.active
    if old is not None and was:
        ms = desc_ms(old.stamp.created_ms)
        batch.delete(_key(Prefix.LIKES_BY_ACCOUNT, author, ms, manifest))
        batch.delete(_key(Prefix.LIKERS_BY_TIME, manifest, ms, author))
    if new.active:
        ms = desc_ms(new.stamp.created_ms)
        batch.put(_key(Prefix.LIKES_BY_ACCOUNT, author, ms, manifest), b"")
        batch.put(_key(Prefix.LIKERS_BY_TIME, manifest, ms, author), b"")
    return int(new.active) - int(was)


def _stage_viewed(
    batch: Batch, viewer: bytes, manifest: bytes, old: ViewTotal | None, new: ViewTotal
) -> None:
    """Stage the VIEWED_BY_ACCOUNT entry of (viewer, manifest) moving from ``old``'s time
    (None: no views yet) to ``new``'s."""
    if old is not None and old.last_ms != new.last_ms:
        batch.delete(_key(Prefix.VIEWED_BY_ACCOUNT, viewer, desc_ms(old.last_ms), manifest))
    batch.put(_key(Prefix.VIEWED_BY_ACCOUNT, viewer, desc_ms(new.last_ms), manifest), b"")


def _rebuild_views(kv: KV, writer: "ChunkedWriter") -> None:
    """Stage VIEW_TOTAL and VIEWED_BY_ACCOUNT from the VIEW entries, which come in key
    order, so each (viewer, video) pair's receipts are adjacent. Raises DamagedRecord for a
    key not of a viewer, a video id and a message id, or a bad value."""
    pair: bytes | None = None
    total = _NO_VIEWS
    pair_end = 1 + _PAIR_LEN
    for key, value in kv.iterate(_key(Prefix.VIEW)):
        if len(key) != pair_end + MESSAGE_ID_LEN:
            raise DamagedRecord(f"view entry key of {len(key)} bytes: {key[:16].hex()}")
        if key[1:pair_end] != pair:
            _put_view_total(writer.batch, pair, total)
            pair, total = key[1:pair_end], _NO_VIEWS
        total = total.add(*_decode_view(value))
        writer.flush_if_full()
    _put_view_total(writer.batch, pair, total)


def _put_view_total(batch: Batch, pair: bytes | None, total: ViewTotal) -> None:
    if pair is None:
        return
    viewer, manifest = pair[:PUBLIC_KEY_LEN], pair[PUBLIC_KEY_LEN:]
    batch.put(_key(Prefix.VIEW_TOTAL, viewer, manifest), total.encode())
    _stage_viewed(batch, viewer, manifest, None, total)


def _stage_count(kv: KV, batch: Batch, manifest: bytes, delta: int) -> None:
    """Stage the like count of ``manifest`` moved by ``delta``. Raises DamagedRecord when
    the stored count cannot be read or would fall below zero."""
    if not delta:
        return
    key = _key(Prefix.LIKE_COUNT, manifest)
    raw = read_through(kv, key, batch)
    count = read_count(manifest, raw) + delta
    if count < 0:
        raise DamagedRecord(f"the like count of {manifest.hex()} would fall below zero")
    _put_count(batch, manifest, count)


def _put_count(batch: Batch, manifest: bytes | None, count: int) -> None:
    if manifest is None:
        return
    key = _key(Prefix.LIKE_COUNT, manifest)
    if count:
        batch.put(key, u64(count))
    else:
        batch.delete(key)


def read_count(manifest: bytes, raw: bytes | None) -> int:
    """The like count a LIKE_COUNT value holds (0 for None). Raises DamagedRecord unless it
    is 8 bytes."""
    if raw is None:
        return 0
    if len(raw) != 8:
        raise DamagedRecord(f"the like count of {manifest.hex()} is {len(raw)} bytes, not 8")
    return int.from_bytes(raw, "big")


def _registers(
    kv: KV, p: Prefix, first_len: int
) -> Iterator[tuple[tuple[bytes, bytes], _Register]]:
    """((first key field, account), register) of every register under ``p``, whose first
    key field is ``first_len`` bytes and whose second is an account, in key order. Raises
    DamagedRecord for a key of another length or a bad value."""
    end = 1 + first_len
    for key, value in kv.iterate(_key(p)):
        if len(key) != end + PUBLIC_KEY_LEN:
            raise DamagedRecord(f"social register key of {len(key)} bytes: {key[:16].hex()}")
        yield (key[1:end], key[end:]), _Register.decode(value)


class ChunkedWriter:
    """Writes a long run of operations in batches of about :data:`REBUILD_OPS_MAX`, for
    rebuilds: stage into :attr:`batch`, call :meth:`flush_if_full` after each staging and
    :meth:`flush` at the end. Not atomic as a whole."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv
        self.batch = Batch()

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)
        self.flush_if_full()

    def flush_if_full(self) -> None:
        if len(self.batch) >= REBUILD_OPS_MAX:
            self.flush()

    def flush(self) -> None:
        self._kv.write(self.batch)
        self.batch = Batch()
