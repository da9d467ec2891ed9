"""Content-addressed chunk storage within a byte quota, with pins and LRU eviction.

A chunk is stored under its CID (SHA-256) exactly as received. Its hash is checked before it
is written and again on every read, so damaged bytes are reported, never served. The byte
counters are written in the same atomic batch as the data they count, so they always match
it, across crashes too. Layout (see storage/keys.py): CHUNK_DATA holds the bytes, CHUNK_META
msgpack [size, lru_tick, pin_mask], CHUNK_LRU the eviction order of the unpinned chunks,
CHUNK_PIN an index of pins by reason, META_CHUNK_COUNTERS msgpack [used, count, pinned].

Composition: ``put``, ``delete``, ``pin`` and ``unpin`` accept a caller's :class:`Batch` and
then only stage their writes in it; the in-memory counters follow once the batch is written.
Until then that batch is the only one the store accepts, because a second one would compute
its counters and eviction plan from the same state and one of them would be wrong.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from enum import IntEnum, unique

import msgpack

from protocol.cid import check_cid, chunk_id, cid_to_text, matches
from protocol.kinds import CHUNK_BYTES_MAX
from storage.errors import (
    BatchConflict,
    ChunkCorrupt,
    ChunkIdMismatch,
    ChunkMissing,
    ChunkTooLarge,
    QuotaExceeded,
    StoreCorrupt,
)
from storage.keys import (
    META_CHUNK_COUNTERS,
    Prefix,
    chunk_data_key,
    chunk_lru_key,
    chunk_meta_key,
    chunk_pin_key,
    chunk_pin_prefix,
    meta_key,
    prefix,
    split_chunk_lru_key,
)
from storage.kv import KV, Batch, read_through

# Reads are recorded in memory and written to the LRU index in batches of this many, so a
# read costs no write. A crash loses the unwritten ones: eviction order is then a little
# stale, which only changes which unpinned chunk goes first, never the byte accounting.
TOUCH_BUFFER_MAX = 4096

_COUNTERS_KEY = meta_key(META_CHUNK_COUNTERS)


@unique
class PinReason(IntEnum):
    """Why a chunk must be kept. A chunk with any pin is never evicted."""

    OWN = 1  # published by an account hosted on this node
    FOLLOWED = 2  # from a creator the node's owner follows
    WATCHED = 3  # watched by the node's owner
    SEEDING = 4  # this node is one of the R seeders that rendezvous hashing picked


_PIN_MASK_ALL = sum(1 << r for r in PinReason)


@dataclass(frozen=True, slots=True)
class _Meta:
    size: int
    tick: int
    pin_mask: int

    def encode(self) -> bytes:
        return bytes(msgpack.packb([self.size, self.tick, self.pin_mask]))


@dataclass(frozen=True, slots=True)
class _Counters:
    used_bytes: int = 0
    count: int = 0
    pinned_bytes: int = 0

    def plus(self, other: _Counters) -> _Counters:
        return _Counters(
            self.used_bytes + other.used_bytes,
            self.count + other.count,
            self.pinned_bytes + other.pinned_bytes,
        )

    def encode(self) -> bytes:
        return bytes(msgpack.packb([self.used_bytes, self.count, self.pinned_bytes]))


class ChunkStore:
    """Chunks by CID in a KV, within ``quota_bytes`` (None: unlimited). Thread-safe.

    One ChunkStore per KV: the counters and the eviction clock live in this object.
    Raises StoreCorrupt if the stored counters cannot be read.
    """

    def __init__(self, kv: KV, *, quota_bytes: int | None = None) -> None:
        if quota_bytes is not None and quota_bytes < 0:
            raise ValueError(f"quota_bytes must be >= 0, not {quota_bytes}")
        self._kv = kv
        self.quota_bytes = quota_bytes
        # Reentrant because KV.write runs on_write callbacks that take it again.
        self._lock = threading.RLock()
        self._committed = _load_counters(kv)
        self._pending: weakref.ref[Batch] | None = None
        self._pending_seq = 0
        self._delta = _Counters()
        self._tick = _next_tick(kv)
        # cid -> tick of its latest read, not yet in the LRU index.
        self._touched: dict[bytes, int] = {}

    @property
    def used_bytes(self) -> int:
        """Bytes of chunk data stored (written batches only)."""
        return self._committed.used_bytes

    @property
    def count(self) -> int:
        """Number of chunks stored (written batches only)."""
        return self._committed.count

    @property
    def pinned_bytes(self) -> int:
        """Bytes of the chunks that have at least one pin (written batches only)."""
        return self._committed.pinned_bytes

    def put(
        self,
        cid: bytes,
        data: bytes,
        *,
        pin: PinReason | None = None,
        batch: Batch | None = None,
    ) -> bool:
        """Store ``data`` under ``cid``, evicting LRU unpinned chunks if the quota needs it.

        Idempotent: storing a chunk again only adds ``pin``. With ``batch``, the writes are
        staged there for the caller to write (chunks that batch adds are not evicted to make
        room for each other); otherwise they are written at once, atomically.
        Returns True if the chunk was not stored before.
        Raises InvalidCid for a malformed id, ChunkTooLarge, ChunkIdMismatch if ``data`` does
        not hash to ``cid``, QuotaExceeded if it does not fit even after evicting every
        unpinned chunk, BatchConflict; on any of these nothing is stored or staged.
        """
        _check_chunk(cid, data)
        return self._put_checked(cid, data, pin, batch)

    def exclusive(self) -> AbstractContextManager[bool]:
        """Hold the chunk store while staging chunk changes into a batch and writing it.

        Another thread's chunk write then waits instead of meeting the unwritten batch
        (BatchConflict). Reentrant: the staging calls inside take the same lock.
        """
        return self._lock

    def put_verified(
        self,
        cid: bytes,
        data: bytes,
        *,
        pin: PinReason | None = None,
        batch: Batch | None = None,
    ) -> bool:
        """:meth:`put` for bytes the caller has already hashed to ``cid``: the download
        scheduler checks every chunk it accepts, and a second SHA-256 of each would cost a
        download a tenth of its time. Raises as :meth:`put` does, less ChunkIdMismatch.
        """
        check_cid(cid)
        _check_size(cid, data)
        return self._put_checked(cid, data, pin, batch)

    def _put_checked(
        self, cid: bytes, data: bytes, pin: PinReason | None, batch: Batch | None
    ) -> bool:
        with self._lock, self._staging(batch) as b:
            meta = self._read_meta(cid, b)
            if meta is not None:
                # The bytes offered hash to cid; if the stored ones differ they are damaged,
                # and storing the chunk again is how it gets repaired (same size, so the
                # counters stand).
                if read_through(self._kv, chunk_data_key(cid), b) != data:
                    b.put(chunk_data_key(cid), data)
                if pin is not None:
                    self._stage_pin(cid, meta, pin, b)
                return False
            victims, stale = self._plan_room(cid, len(data), b)
            for key in stale:
                b.delete(key)
            for victim, victim_meta in victims:
                self._stage_delete(victim, victim_meta, b)
            self._stage_new(cid, data, pin, b)
            return True

    def get(self, cid: bytes) -> bytes:
        """The bytes of chunk ``cid``, checked against its hash on this read.

        Raises InvalidCid, ChunkMissing if not stored, ChunkCorrupt if the stored bytes do not
        hash to ``cid`` (delete it and fetch it again).
        """
        check_cid(cid)
        data = self._kv.get(chunk_data_key(cid), cache=False)
        if data is None:
            raise ChunkMissing(f"chunk {cid_to_text(cid)} is not stored", cid)
        if not matches(cid, data):
            raise ChunkCorrupt(
                f"chunk {cid_to_text(cid)} is damaged: its {len(data)} stored bytes hash to "
                f"{cid_to_text(chunk_id(data))}; delete it and fetch it again",
                cid,
            )
        with self._lock:
            self._touched[cid] = self._next_tick()
            if len(self._touched) >= TOUCH_BUFFER_MAX:
                self._flush_touches()
        return data

    def has(self, cid: bytes) -> bool:
        """True if chunk ``cid`` is stored (not checking its bytes). Raises InvalidCid."""
        check_cid(cid)
        return self._kv.get(chunk_meta_key(cid)) is not None

    def size_of(self, cid: bytes) -> int:
        """Size in bytes of chunk ``cid``. Raises InvalidCid, ChunkMissing."""
        return self._meta_or_missing(cid).size

    def pins(self, cid: bytes) -> set[PinReason]:
        """The reasons chunk ``cid`` is pinned for. Raises InvalidCid, ChunkMissing."""
        mask = self._meta_or_missing(cid).pin_mask
        return {r for r in PinReason if mask & (1 << r)}

    def delete(self, cid: bytes, *, batch: Batch | None = None) -> bool:
        """Remove chunk ``cid`` whatever its pins. Returns False if it was not stored.

        Raises InvalidCid, BatchConflict.
        """
        check_cid(cid)
        with self._lock, self._staging(batch) as b:
            meta = self._read_meta(cid, b)
            if meta is not None:
                self._stage_delete(cid, meta, b)
            return meta is not None

    def pin(self, cid: bytes, reason: PinReason, *, batch: Batch | None = None) -> bool:
        """Pin chunk ``cid`` for ``reason``. Returns False if it already was.

        Raises InvalidCid, ChunkMissing, BatchConflict.
        """
        check_cid(cid)
        with self._lock, self._staging(batch) as b:
            meta = self._read_meta(cid, b)
            if meta is None:
                raise ChunkMissing(f"cannot pin chunk {cid_to_text(cid)}: not stored", cid)
            return self._stage_pin(cid, meta, reason, b)

    def unpin(self, cid: bytes, reason: PinReason, *, batch: Batch | None = None) -> bool:
        """Remove pin ``reason`` from chunk ``cid``; without pins it becomes evictable as if
        just read. Returns False if it was not pinned for ``reason`` or is not stored.

        Raises InvalidCid, BatchConflict.
        """
        check_cid(cid)
        with self._lock, self._staging(batch) as b:
            meta = self._read_meta(cid, b)
            return meta is not None and self._stage_unpin(cid, meta, reason, b)

    def pinned(self, reason: PinReason) -> Iterator[bytes]:
        """The ids of the chunks pinned for ``reason``, in id order."""
        start = len(chunk_pin_prefix(reason))
        for key, _ in self._kv.iterate(chunk_pin_prefix(reason), include_value=False):
            yield key[start:]

    def ids(self) -> Iterator[bytes]:
        """The ids of every stored chunk, in id order."""
        for key, _ in self._kv.iterate(prefix(Prefix.CHUNK_META), include_value=False):
            yield key[1:]

    def verify(self) -> Iterator[tuple[bytes, bool]]:
        """(cid, intact) for every stored chunk, re-hashing each one (``toktok verify``)."""
        for cid in self.ids():
            data = self._kv.get(chunk_data_key(cid), cache=False)
            yield cid, data is not None and matches(cid, data)

    def damaged(self) -> list[bytes]:
        """The ids of the stored chunks whose bytes are missing or do not match their hash."""
        return [cid for cid, intact in self.verify() if not intact]

    def audit(self) -> list[str]:
        """Check the bookkeeping against the chunks: the byte counters, the pin index and
        the metadata of each chunk. Returns the problems found, one line each (empty when
        all is well); re-hashing is :meth:`verify`'s job.
        """
        problems: list[str] = []
        used = count = pinned = 0
        with self._lock:
            self._flush_touches()
            counters = self._committed
            for key, raw in self._kv.iterate(prefix(Prefix.CHUNK_META)):
                cid = key[1:]
                try:
                    meta = _decode_meta(cid, raw)
                except StoreCorrupt as exc:
                    problems.append(str(exc))
                    continue
                used, count = used + meta.size, count + 1
                pinned += meta.size if meta.pin_mask else 0
                if self._kv.get(chunk_data_key(cid), cache=False) is None:
                    problems.append(f"chunk {cid_to_text(cid)} has metadata but no bytes")
                for reason in PinReason:
                    indexed = self._kv.get(chunk_pin_key(reason, cid)) is not None
                    if indexed != bool(meta.pin_mask & (1 << reason)):
                        problems.append(
                            f"pin index of chunk {cid_to_text(cid)} disagrees for {reason.name}"
                        )
        actual = _Counters(used, count, pinned)
        if actual != counters:
            problems.append(f"chunk counters say {counters}, the chunks add up to {actual}")
        return problems

    def flush(self) -> None:
        """Write the buffered read recency to the LRU index. Raises StoreError."""
        with self._lock:
            self._flush_touches()

    def close(self) -> None:
        """Flush before shutting down; the KV stays open (its owner closes it)."""
        self.flush()

    # Staging. Everything below runs with self._lock held.

    @contextmanager
    def _staging(self, batch: Batch | None) -> Iterator[Batch]:
        """Yield the batch to stage into: the caller's, or one written here on success."""
        pending = self._pending() if self._pending is not None else None
        if pending is None and self._pending is not None:
            # The caller dropped a batch without writing it: nothing of it happened.
            self._pending, self._delta = None, _Counters()
        if pending is not None and pending is not batch:
            raise BatchConflict(
                "a batch with chunk store writes has not been written yet; write it (or drop "
                "it) before any other chunk store write"
            )
        b = Batch() if batch is None else batch
        if pending is None:
            self._pending_seq += 1
            self._pending = weakref.ref(b)
            seq = self._pending_seq
            b.on_write(lambda: self._on_written(seq))
        if batch is not None:
            yield b
            return
        try:
            yield b
            self._kv.write(b)  # runs _on_written, which folds the delta into the counters
        finally:
            self._pending, self._delta = None, _Counters()

    def _on_written(self, seq: int) -> None:
        with self._lock:
            if self._pending is not None and seq == self._pending_seq:
                self._committed = self._committed.plus(self._delta)
                self._pending, self._delta = None, _Counters()

    def _count(self, b: Batch, used: int, count: int, pinned: int) -> None:
        self._delta = self._delta.plus(_Counters(used, count, pinned))
        b.put(_COUNTERS_KEY, self._committed.plus(self._delta).encode())

    def _stage_new(self, cid: bytes, data: bytes, pin: PinReason | None, b: Batch) -> None:
        meta = _Meta(len(data), self._next_tick(), 0 if pin is None else 1 << pin)
        b.put(chunk_data_key(cid), data)
        b.put(chunk_meta_key(cid), meta.encode())
        if pin is None:
            b.put(chunk_lru_key(meta.tick, cid), b"")
        else:
            b.put(chunk_pin_key(pin, cid), b"")
        self._count(b, meta.size, 1, 0 if pin is None else meta.size)

    def _stage_delete(self, cid: bytes, meta: _Meta, b: Batch) -> None:
        b.delete(chunk_data_key(cid))
        b.delete(chunk_meta_key(cid))
        if meta.pin_mask:
            for reason in PinReason:
                if meta.pin_mask & (1 << reason):
                    b.delete(chunk_pin_key(reason, cid))
        else:
            b.delete(chunk_lru_key(meta.tick, cid))
        self._count(b, -meta.size, -1, -meta.size if meta.pin_mask else 0)

    def _stage_pin(self, cid: bytes, meta: _Meta, reason: PinReason, b: Batch) -> bool:
        if meta.pin_mask & (1 << reason):
            return False
        b.put(chunk_meta_key(cid), replace(meta, pin_mask=meta.pin_mask | 1 << reason).encode())
        b.put(chunk_pin_key(reason, cid), b"")
        if not meta.pin_mask:
            b.delete(chunk_lru_key(meta.tick, cid))
            self._count(b, 0, 0, meta.size)
        return True

    def _stage_unpin(self, cid: bytes, meta: _Meta, reason: PinReason, b: Batch) -> bool:
        if not meta.pin_mask & (1 << reason):
            return False
        mask = meta.pin_mask & ~(1 << reason)
        b.delete(chunk_pin_key(reason, cid))
        if mask:
            b.put(chunk_meta_key(cid), replace(meta, pin_mask=mask).encode())
        else:
            tick = self._next_tick()
            b.put(chunk_meta_key(cid), _Meta(meta.size, tick, 0).encode())
            b.put(chunk_lru_key(tick, cid), b"")
            self._count(b, 0, 0, -meta.size)
        return True

    def _plan_room(
        self, cid: bytes, size: int, b: Batch
    ) -> tuple[list[tuple[bytes, _Meta]], list[bytes]]:
        """Return the chunks to evict, oldest first, so that ``size`` more bytes fit, and the
        stale LRU entries met on the way. Raises QuotaExceeded, having staged nothing.
        """
        if self.quota_bytes is None:
            return [], []
        now = self._committed.plus(self._delta)
        need = now.used_bytes + size - self.quota_bytes
        if need <= 0:
            return [], []
        if now.used_bytes - now.pinned_bytes >= need:
            self._flush_touches()
            victims: list[tuple[bytes, _Meta]] = []
            stale: list[bytes] = []
            for key, _ in self._kv.iterate(prefix(Prefix.CHUNK_LRU), include_value=False):
                if key in b:
                    continue  # this batch already moved or deleted it
                tick, victim = split_chunk_lru_key(key)
                meta = self._read_meta(victim, b)
                # An entry that disagrees with the chunk's metadata points nowhere: skip it.
                if meta is None or meta.pin_mask or meta.tick != tick:
                    stale.append(key)
                    continue
                victims.append((victim, meta))
                need -= meta.size
                if need <= 0:
                    return victims, stale
        raise QuotaExceeded(
            f"chunk {cid_to_text(cid)} ({size} bytes) does not fit in the quota of "
            f"{self.quota_bytes} bytes: {now.used_bytes} bytes are stored or being added, "
            f"{now.pinned_bytes} of them pinned; unpin chunks or raise the quota",
            cid,
        )

    def _flush_touches(self) -> None:
        if not self._touched:
            return
        pending = self._pending() if self._pending is not None else None
        b = Batch()
        kept: dict[bytes, int] = {}
        for cid, tick in self._touched.items():
            key = chunk_meta_key(cid)
            if pending is not None and key in pending:
                kept[cid] = tick  # an unwritten batch changes this chunk: try again later
                continue
            meta = self._read_meta(cid, None)
            # Skip a chunk that is gone, pinned (outside the eviction order), or placed later
            # than this read by an unpin or a new put.
            if meta is None or meta.pin_mask or meta.tick >= tick:
                continue
            b.delete(chunk_lru_key(meta.tick, cid))
            b.put(chunk_lru_key(tick, cid), b"")
            b.put(key, replace(meta, tick=tick).encode())
        self._kv.write(b)
        self._touched = kept

    def _next_tick(self) -> int:
        tick = self._tick
        self._tick += 1
        return tick

    def _read_meta(self, cid: bytes, b: Batch | None) -> _Meta | None:
        raw = read_through(self._kv, chunk_meta_key(cid), b)
        return None if raw is None else _decode_meta(cid, raw)

    def _meta_or_missing(self, cid: bytes) -> _Meta:
        check_cid(cid)
        meta = self._read_meta(cid, None)
        if meta is None:
            raise ChunkMissing(f"chunk {cid_to_text(cid)} is not stored", cid)
        return meta


def _check_chunk(cid: bytes, data: bytes) -> None:
    """Raise InvalidCid, ChunkTooLarge or ChunkIdMismatch unless ``data`` may be stored."""
    check_cid(cid)
    _check_size(cid, data)
    # Called outside the store's lock: hashlib releases the GIL, so puts from several threads
    # hash in parallel on a machine with the cores for it.
    if not matches(cid, data):
        raise ChunkIdMismatch(
            f"data offered as chunk {cid_to_text(cid)} hashes to "
            f"{cid_to_text(chunk_id(data))}; nothing stored",
            cid,
        )


def _three_counts(raw: bytes) -> list[int] | None:
    """The msgpack list of three non-negative integers in ``raw``, or None if it is not one."""
    try:
        fields = msgpack.unpackb(raw)
    except ValueError:
        return None
    if (
        isinstance(fields, list)
        and len(fields) == 3
        and all(type(f) is int and f >= 0 for f in fields)
    ):
        return fields
    return None


def _decode_meta(cid: bytes, raw: bytes) -> _Meta:
    fields = _three_counts(raw)
    if fields is None or fields[0] > CHUNK_BYTES_MAX or fields[2] & ~_PIN_MASK_ALL:
        raise StoreCorrupt(f"metadata of chunk {cid_to_text(cid)} is damaged: {raw[:32].hex()}")
    return _Meta(*fields)


def _load_counters(kv: KV) -> _Counters:
    raw = kv.get(_COUNTERS_KEY)
    if raw is None:
        return _Counters()
    fields = _three_counts(raw)
    if fields is None:
        raise StoreCorrupt(f"chunk store counters are damaged: {raw[:32].hex()}")
    return _Counters(*fields)


def _next_tick(kv: KV) -> int:
    """One past the newest tick in the LRU index, so new entries sort after existing ones."""
    for key, _ in kv.iterate(prefix(Prefix.CHUNK_LRU), reverse=True, include_value=False):
        return split_chunk_lru_key(key)[0] + 1
    return 0


def _check_size(cid: bytes, data: bytes) -> None:
    if len(data) > CHUNK_BYTES_MAX:
        raise ChunkTooLarge(
            f"chunk {cid_to_text(cid)} is {len(data)} bytes; the limit is {CHUNK_BYTES_MAX}",
            cid,
        )
