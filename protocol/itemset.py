"""Sorted sets of (timestamp, id) items, with the range queries set reconciliation needs.

An item is a message as anti-entropy sync sees it: ``(timestamp_ms, id)``, where ``id`` is
the 32-byte message id. Items are ordered by timestamp, then by id (bytes compared as
unsigned numbers), so recent messages sit together at the end of the order, where two
nodes' sets most often differ.

A *bound* ``(timestamp_ms, prefix)`` marks a position in that order: an item is below the
bound when ``(timestamp_ms, id) < (bound_ms, prefix)`` compares as Python tuples, ids and
prefixes compared as byte strings. A prefix is at most 32 bytes and never ends with a zero
byte, so the bound sits exactly where ``prefix`` padded with zeros to 32 bytes would, and
every position has one bound. A range ``[lower, upper)`` holds the items ``i`` with
``lower <= i < upper``.

:class:`ItemSet` is the interface the reconciler reads through (storage will provide a
LevelDB-backed one); :class:`MemoryItemSet` is the in-memory implementation. The
fingerprint of a range is specified here, byte by byte, and in docs/sync.md.
"""

import bisect
import hashlib
import itertools
from collections.abc import Iterable
from typing import Protocol

from protocol.codec import U64_MAX

ID_LEN = 32
FINGERPRINT_LEN = 16
TIMESTAMP_MS_MAX = U64_MAX - 1
"""Items stay below :data:`BOUND_MAX`, whose timestamp is the largest 64-bit value."""
SUM_MODULUS = 2**256

Item = tuple[int, bytes]
"""``(timestamp_ms, id)``."""
Bound = tuple[int, bytes]
"""``(timestamp_ms, id prefix)``: a position in the item order (see module doc)."""

BOUND_MIN: Bound = (0, b"")
"""Below every item: the lower bound of the first range of a message."""
BOUND_MAX: Bound = (U64_MAX, b"")
"""Above every item: the end of the item space."""


def check_item(item: Item) -> Item:
    """Return ``item`` if it is a valid item. Raises :class:`ValueError` otherwise."""
    timestamp_ms, id_ = item
    if not 0 <= timestamp_ms <= TIMESTAMP_MS_MAX:
        raise ValueError(f"item timestamp {timestamp_ms} outside [0, {TIMESTAMP_MS_MAX}]")
    if len(id_) != ID_LEN:
        raise ValueError(f"item id of {len(id_)} bytes, expected {ID_LEN}")
    return item


def item_hash(item: Item) -> int:
    """SHA-256(timestamp_ms as 8 bytes big-endian || id), read as a big-endian integer.

    Hashing the timestamp in ties the fingerprint to the item's position, not only its id.
    """
    timestamp_ms, id_ = item
    digest = hashlib.sha256(timestamp_ms.to_bytes(8, "big") + id_).digest()
    return int.from_bytes(digest, "big")


def fingerprint(hash_sum: int, count: int) -> bytes:
    """The 16-byte fingerprint of a range whose items' :func:`item_hash` values add up to
    ``hash_sum`` and number ``count``:

    ``SHA-256((hash_sum mod 2**256) as 32 bytes big-endian || count as 8 bytes big-endian)``,
    first 16 bytes. The sum makes it independent of order and cheap to update; hashing it
    with the count means two ranges of different sizes never share a fingerprint by accident.
    """
    data = (hash_sum % SUM_MODULUS).to_bytes(32, "big") + count.to_bytes(8, "big")
    return hashlib.sha256(data).digest()[:FINGERPRINT_LEN]


def separating_bound(below: Item, above: Item) -> Bound:
    """The shortest bound ``b`` with ``below < b <= above``, for items ``below < above``.

    Different timestamps need no id at all; equal ones need the ids' common prefix plus the
    first byte where they differ, which is never zero since it exceeds ``below``'s byte.
    """
    if below[0] != above[0]:
        return (above[0], b"")
    common = 0
    for x, y in zip(below[1], above[1], strict=True):
        if x != y:
            break
        common += 1
    return (above[0], above[1][: common + 1])


class ItemSet(Protocol):
    """The read side of a node's set of items, as the reconciler uses it.

    Every method takes a range ``[lower, upper)`` with ``lower <= upper``. The set may grow
    between calls (a driver stores fetched messages while a session runs); the reconciler
    keeps no counts or fingerprints from one message to the next.
    """

    def count(self, lower: Bound, upper: Bound) -> int:
        """The number of items in the range."""
        ...

    def fingerprint(self, lower: Bound, upper: Bound) -> bytes:
        """The :func:`fingerprint` of the items in the range."""
        ...

    def split(self, lower: Bound, upper: Bound, parts: int) -> list[Bound]:
        """Cut the range into ``min(parts, count)`` sub-ranges of about equal count (at
        least one), returning their upper bounds in order; the last is ``upper``. Inner
        bounds are :func:`separating_bound` of the items either side of each cut."""
        ...

    def ids(self, lower: Bound, upper: Bound) -> list[bytes]:
        """The ids of the items in the range, in item order."""
        ...


class MemoryItemSet:
    """An :class:`ItemSet` in memory: a sorted list searched with bisect.

    Costs, for ``n`` items and a range of ``k`` items: ``count`` O(log n); ``fingerprint``
    O(log n), from prefix sums of the item hashes, rebuilt in O(n) at the first
    fingerprint after the set changed; ``split`` O(parts · log n); ``ids`` O(log n + k);
    ``add`` O(n) for the list insertion (a memory move, fast in practice). Memory: about
    300 bytes per item, the item itself included. A reconciliation round queries disjoint
    ranges, so one message costs O(n) at worst however many ranges it holds.
    """

    def __init__(self, items: Iterable[Item] = ()) -> None:
        """Hold ``items`` (duplicates collapse). Raises :class:`ValueError` for an item
        that :func:`check_item` refuses."""
        self._items: list[Item] = sorted({check_item(item) for item in items})
        self._hashes: list[int] = [item_hash(item) for item in self._items]
        self._sums: list[int] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        if not (isinstance(item, tuple) and len(item) == 2):
            return False
        if not (isinstance(item[0], int) and isinstance(item[1], bytes)):
            return False
        index = bisect.bisect_left(self._items, (item[0], item[1]))
        return index < len(self._items) and self._items[index] == item

    def add(self, item: Item) -> bool:
        """Insert ``item``; return whether it was new. Raises :class:`ValueError` for an
        item that :func:`check_item` refuses."""
        check_item(item)
        index = bisect.bisect_left(self._items, item)
        if index < len(self._items) and self._items[index] == item:
            return False
        self._items.insert(index, item)
        self._hashes.insert(index, item_hash(item))
        self._sums = None  # every prefix sum after ``index`` moved
        return True

    def _span(self, lower: Bound, upper: Bound) -> tuple[int, int]:
        start = bisect.bisect_left(self._items, lower)
        return start, max(start, bisect.bisect_left(self._items, upper))

    def count(self, lower: Bound, upper: Bound) -> int:
        start, stop = self._span(lower, upper)
        return stop - start

    def fingerprint(self, lower: Bound, upper: Bound) -> bytes:
        if self._sums is None:
            # Unreduced sums: Python integers grow past 2**256 harmlessly, and one modulo
            # at the end gives the same result as reducing at every step.
            self._sums = list(itertools.accumulate(self._hashes, initial=0))
        start, stop = self._span(lower, upper)
        return fingerprint(self._sums[stop] - self._sums[start], stop - start)

    def split(self, lower: Bound, upper: Bound, parts: int) -> list[Bound]:
        start, stop = self._span(lower, upper)
        count = stop - start
        parts = max(1, min(parts, count))
        bounds = []
        for part in range(1, parts):
            cut = start + count * part // parts
            bounds.append(separating_bound(self._items[cut - 1], self._items[cut]))
        bounds.append(upper)
        return bounds

    def ids(self, lower: Bound, upper: Bound) -> list[bytes]:
        start, stop = self._span(lower, upper)
        return [id_ for _, id_ in self._items[start:stop]]
