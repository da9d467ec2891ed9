"""The key-value seam under every store: LevelDB on disk, a sorted dict in memory.

Both backends have the same semantics, checked by one test suite run against each: keys and
values are ``bytes``, keys sort bytewise, a :class:`Batch` is written atomically, and an
iteration sees the store as it was when :meth:`KV.iterate` was called (LevelDB's implicit
snapshot), whatever is written while it runs.

Stores compose several logical writes into one atomic write by staging them into one
:class:`Batch`; :func:`read_through` lets a store see what is already staged, and
:meth:`Batch.on_write` lets it update in-memory state only once the batch is on disk.
"""

from __future__ import annotations

import bisect
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import plyvel

from storage.errors import StoreClosed, StoreCorrupt, StoreError, StoreLocked

# LevelDB options for a store whose bulk is 256 KiB - 1 MiB chunks beside small records.
# A large write buffer means fewer, larger level-0 tables, hence fewer compactions of big
# values; video is already compressed, so Snappy would only spend CPU; the bloom filter makes
# a get for an absent key (has(), idempotent puts) skip reading data blocks.
WRITE_BUFFER_BYTES = 64 * 2**20
TABLE_FILE_BYTES_MAX = 64 * 2**20
BLOCK_BYTES = 16 * 2**10
BLOCK_CACHE_BYTES = 32 * 2**20
BLOOM_FILTER_BITS = 10
OPEN_FILES_MAX = 1000

LEVELDB_OPTIONS: dict[str, Any] = {
    "write_buffer_size": WRITE_BUFFER_BYTES,
    "max_file_size": TABLE_FILE_BYTES_MAX,
    "block_size": BLOCK_BYTES,
    "lru_cache_size": BLOCK_CACHE_BYTES,
    "bloom_filter_bits": BLOOM_FILTER_BITS,
    "max_open_files": OPEN_FILES_MAX,
    "compression": None,
}


class Batch:
    """Puts and deletes to be written atomically by :meth:`KV.write`.

    Only the last operation on each key is kept, which is what applying them in order would
    leave. Write a batch once; callbacks registered with :meth:`on_write` run after that write.
    """

    __slots__ = ("__weakref__", "_on_write", "_ops")

    def __init__(self) -> None:
        self._ops: dict[bytes, bytes | None] = {}
        self._on_write: list[Callable[[], None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Stage ``key`` -> ``value``. Raises TypeError unless both are bytes."""
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError("keys and values must be bytes")
        self._ops[key] = value

    def delete(self, key: bytes) -> None:
        """Stage the removal of ``key`` (a no-op when absent). Raises TypeError unless bytes."""
        if type(key) is not bytes:
            raise TypeError("keys must be bytes")
        self._ops[key] = None

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, key: object) -> bool:
        """True when an operation on ``key`` is staged."""
        return key in self._ops

    def pending(self, key: bytes) -> bytes | None:
        """The staged value of ``key``, or None for a staged delete. Raises KeyError if none."""
        return self._ops[key]

    def ops(self) -> list[tuple[bytes, bytes | None]]:
        """The staged operations: (key, value) for a put, (key, None) for a delete."""
        return list(self._ops.items())

    def on_write(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, right after this batch has been written."""
        self._on_write.append(callback)

    def _written(self) -> None:
        callbacks, self._on_write = self._on_write, []
        for callback in callbacks:
            callback()


def read_through(kv: KV, key: bytes, batch: Batch | None) -> bytes | None:
    """The value ``key`` will have once ``batch`` is written (the stored one if not staged)."""
    if batch is not None and key in batch:
        return batch.pending(key)
    return kv.get(key)


def key_range(
    prefix: bytes, start: bytes | None, reverse: bool
) -> tuple[bytes, bytes | None, bool]:
    """Return (low, high, high_inclusive) bounding an iteration; low is always inclusive.

    Forward, ``start`` raises the low bound; in reverse it is the first key returned, so it
    lowers the high bound. ``high`` None means no upper bound.
    """
    low, high, high_inclusive = prefix, _prefix_end(prefix), False
    if start is not None:
        if not reverse:
            low = max(low, start)
        elif high is None or start < high:
            high, high_inclusive = start, True
    return low, high, high_inclusive


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with ``prefix`` (None if unbounded)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class KV(ABC):
    """A sorted, atomic key-value store. Usable as a context manager that closes it."""

    def __init__(self) -> None:
        self._closed = False

    @abstractmethod
    def get(self, key: bytes, *, cache: bool = True) -> bytes | None:
        """The value of ``key``, or None. ``cache=False`` hints that the value is large and
        read once, so it should not push small records out of a cache.

        Raises StoreClosed after close(), StoreCorrupt if the database cannot be read.
        """

    @abstractmethod
    def iterate(
        self,
        prefix: bytes,
        *,
        start: bytes | None = None,
        reverse: bool = False,
        include_value: bool = True,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs of the keys that start with ``prefix``, in key order.

        ``start``, for paging, is the first key considered (forward: keys >= start; reverse:
        keys <= start). With ``include_value=False`` values are b"". The iteration sees the
        store as it was at this call. Raises StoreClosed after close().
        """

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        """Apply every operation of ``batch`` atomically, then run its on_write callbacks.

        ``sync=True`` waits until the write is on disk. Raises StoreClosed after close(),
        StoreError if the write fails (nothing of the batch is applied then).
        """
        self._check_open()
        if len(batch):
            self._apply(batch, sync)
        batch._written()

    @abstractmethod
    def _apply(self, batch: Batch, sync: bool) -> None: ...

    def close(self) -> None:
        """Release the store; later calls raise StoreClosed. Closing twice is harmless."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the key-value store is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemoryKV(KV):
    """An in-memory KV with LevelDB's semantics, for tests and the simulator. Thread-safe.

    Writes cost O(n) in the number of keys (a sorted list); iterating copies the selected
    range at the call, which gives the same snapshot semantics as LevelDB.
    """

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        # Guards the list and the dict together, so threads see whole batches, as in LevelDB.
        self._lock = threading.Lock()

    def get(self, key: bytes, *, cache: bool = True) -> bytes | None:
        self._check_open()
        if type(key) is not bytes:
            raise TypeError("keys must be bytes")
        with self._lock:
            return self._data.get(key)

    def iterate(
        self,
        prefix: bytes,
        *,
        start: bytes | None = None,
        reverse: bool = False,
        include_value: bool = True,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        low, high, high_inclusive = key_range(prefix, start, reverse)
        with self._lock:
            lo = bisect.bisect_left(self._keys, low)
            if high is None:
                hi = len(self._keys)
            elif high_inclusive:
                hi = bisect.bisect_right(self._keys, high)
            else:
                hi = bisect.bisect_left(self._keys, high)
            keys = self._keys[lo:hi]
            items = [(k, self._data[k] if include_value else b"") for k in keys]
        if reverse:
            items.reverse()
        return iter(items)

    def _apply(self, batch: Batch, sync: bool) -> None:
        with self._lock:
            for key, value in batch.ops():
                if value is None:
                    if self._data.pop(key, None) is not None:
                        del self._keys[bisect.bisect_left(self._keys, key)]
                else:
                    if key not in self._data:
                        bisect.insort(self._keys, key)
                    self._data[key] = value

    def close(self) -> None:
        super().close()
        self._data.clear()
        self._keys.clear()


class LevelDBKV(KV):
    """A KV on a LevelDB directory (plyvel). Safe to share between threads.

    Raises StoreLocked if another handle holds the database, StoreCorrupt if it cannot be
    read, StoreError if it is missing and ``create`` is False or the path is unusable.
    """

    def __init__(self, path: str, *, create: bool = True) -> None:
        super().__init__()
        self.path = path
        try:
            self._db = plyvel.DB(path, create_if_missing=create, **LEVELDB_OPTIONS)
        except plyvel.CorruptionError as exc:
            raise StoreCorrupt(f"database {path} is damaged: {_reason(exc)}") from exc
        except plyvel.Error as exc:
            reason = _reason(exc)
            # LevelDB words a held lock "lock <path>: ..." (env_posix.cc LockFile).
            if "IO error: lock " in reason:
                raise StoreLocked(
                    f"database {path} is in use by another process (or another handle in "
                    f"this one); stop it or choose another path: {reason}"
                ) from exc
            raise StoreError(f"cannot open database {path}: {reason}") from exc

    def get(self, key: bytes, *, cache: bool = True) -> bytes | None:
        self._check_open()
        if type(key) is not bytes:
            raise TypeError("keys must be bytes")
        try:
            value: bytes | None = self._db.get(key, fill_cache=cache)
        except plyvel.CorruptionError as exc:
            raise StoreCorrupt(f"database {self.path} is damaged: {_reason(exc)}") from exc
        except plyvel.Error as exc:
            raise StoreError(f"read from database {self.path} failed: {_reason(exc)}") from exc
        return value

    def iterate(
        self,
        prefix: bytes,
        *,
        start: bytes | None = None,
        reverse: bool = False,
        include_value: bool = True,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        low, high, high_inclusive = key_range(prefix, start, reverse)
        # Created here, not inside the generator, so the snapshot is taken at this call.
        # In reverse the low bound is checked by _drain: plyvel 1.5 skips the key equal to
        # ``start`` when it is the first key of the whole database.
        it = self._db.iterator(
            start=None if reverse else low,
            stop=high,
            include_stop=high_inclusive,
            reverse=reverse,
            include_value=include_value,
        )
        return _drain(it, include_value, low if reverse else None, self.path)

    def _apply(self, batch: Batch, sync: bool) -> None:
        try:
            wb = self._db.write_batch(sync=sync)
            for key, value in batch.ops():
                if value is None:
                    wb.delete(key)
                else:
                    wb.put(key, value)
            wb.write()
        except plyvel.Error as exc:
            raise StoreError(f"write to database {self.path} failed: {_reason(exc)}") from exc

    def close(self) -> None:
        if not self._closed:
            self._db.close()
        super().close()


def _drain(
    it: Any, include_value: bool, low: bytes | None, path: str
) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) pairs from a plyvel iterator, stopping below ``low`` if given."""
    try:
        for item in it:
            key, value = item if include_value else (item, b"")
            if low is not None and key < low:
                return
            yield key, value
    except plyvel.CorruptionError as exc:
        raise StoreCorrupt(f"database {path} is damaged: {_reason(exc)}") from exc
    except plyvel.Error as exc:
        raise StoreError(f"read from database {path} failed: {_reason(exc)}") from exc
    finally:
        it.close()


def _reason(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
