"""The wire format of set reconciliation: messages of ranges, their limits and their rules.

A :class:`Message` is the canonical msgpack encoding (protocol/codec.py) of a record holding
a version and a list of :class:`Range` records. The ranges cut the item space (see
protocol/itemset.py) into consecutive pieces: each names only its upper bound, and starts
where the previous one ended (the first at ``BOUND_MIN``); whatever lies past the last
range is skipped. Each range carries a mode saying what the sender states about it.

:func:`decode_message` refuses, with :class:`ReconcileError`, anything but a message that
follows every rule of :func:`check_message`; docs/sync.md specifies the bytes.
"""

import dataclasses
from dataclasses import dataclass

from protocol.codec import (
    U64_MAX,
    array_header_bytes,
    bin_bytes,
    decode_record,
    encode_record,
    fld,
    uint_bytes,
)
from protocol.errors import DecodeError
from protocol.itemset import BOUND_MIN, FINGERPRINT_LEN, ID_LEN, Bound

VERSION = 1

# Modes. Plain ints, not an IntEnum: the canonical encoder packs exact types only.
SKIP = 0
"""Nothing to do in this range: it matched, or it is settled."""
FINGERPRINT = 1
"""``fp`` is the sender's fingerprint of the range: compare it with yours."""
ID_LIST = 2
"""``ids`` are all the sender's ids in the range: answer with the difference."""
ID_DIFF = 3
"""``ids`` are the ids in the range that exactly one side holds (at least one): the
receiver holds the ones it finds in its set, the sender the others. Settles the range."""
MODE_MAX = ID_DIFF
MODE_NAMES = {SKIP: "Skip", FINGERPRINT: "Fingerprint", ID_LIST: "IdList", ID_DIFF: "IdDiff"}
ASKING_MODES = (FINGERPRINT, ID_LIST)
"""Modes that ask the receiver for an answer; a message without them is final."""

PREFIX_LEN_MAX = ID_LEN
RANGES_MAX = 4096
"""Ranges in one message."""
IDS_MAX = 7168
"""Ids in one message, all ranges together: 7168 ids take 243,712 bytes."""
ID_LIST_IDS_MAX = 64
"""Ids in one IdList range. Bounding it bounds the diff that answers it, so the answer to
any single range always fits a message (see ReconcileLimits)."""
MESSAGE_BYTES_MAX = 256 * 1024
"""Encoded bytes of one message."""


class ReconcileError(DecodeError):
    """A reconciliation message that breaks a rule, or one that came when none may."""


@dataclass(frozen=True)
class Range:
    """One range of a message: its upper bound ``(ts, prefix)`` and what the sender says.

    ``fp`` is set only with mode FINGERPRINT, ``ids`` only with ID_LIST and ID_DIFF.
    """

    ts: int = fld()
    prefix: bytes = fld(len_max=PREFIX_LEN_MAX)
    mode: int = fld(value_max=MODE_MAX)
    fp: bytes = fld(len_max=FINGERPRINT_LEN)
    ids: tuple[bytes, ...] = fld(items_max=IDS_MAX, item_len_max=ID_LEN)

    @property
    def upper(self) -> Bound:
        return (self.ts, self.prefix)

    @classmethod
    def skip(cls, upper: Bound) -> "Range":
        return cls(ts=upper[0], prefix=upper[1], mode=SKIP, fp=b"", ids=())

    @classmethod
    def fingerprint(cls, upper: Bound, fp: bytes) -> "Range":
        return cls(ts=upper[0], prefix=upper[1], mode=FINGERPRINT, fp=fp, ids=())

    @classmethod
    def id_list(cls, upper: Bound, ids: tuple[bytes, ...]) -> "Range":
        return cls(ts=upper[0], prefix=upper[1], mode=ID_LIST, fp=b"", ids=ids)

    @classmethod
    def id_diff(cls, upper: Bound, ids: tuple[bytes, ...]) -> "Range":
        return cls(ts=upper[0], prefix=upper[1], mode=ID_DIFF, fp=b"", ids=ids)


@dataclass(frozen=True)
class Message:
    """One reconciliation message: the protocol version and the ranges, in order."""

    ranges: tuple[Range, ...] = fld(items_max=RANGES_MAX)
    version: int = fld(value_min=1, value_max=255)


def encode_message(message: Message) -> bytes:
    """The canonical bytes of ``message``."""
    return encode_record(message)


def decode_message(data: bytes) -> Message:
    """Decode and check a message from a peer.

    Raises :class:`~protocol.errors.DecodeError` (:class:`ReconcileError` for the rules of
    :func:`check_message`) for anything but the canonical encoding of a valid message.
    """
    message = decode_record(Message, data, bytes_max=MESSAGE_BYTES_MAX)
    check_message(message)
    return message


def check_message(message: Message) -> None:
    """Check the rules of a message beyond its record's field types.

    It repeats the field limits too, so a message built in memory (as the simulator passes
    them) gets the verdict its bytes would. Raises :class:`ReconcileError`.
    """
    # [REJECT] The version is one this implementation speaks.
    if message.version != VERSION:
        raise ReconcileError(f"version {message.version} is not {VERSION}")
    # [REJECT] A message holds at most RANGES_MAX ranges.
    if len(message.ranges) > RANGES_MAX:
        raise ReconcileError(f"{len(message.ranges)} ranges exceeds {RANGES_MAX}")
    lower = BOUND_MIN
    ids_total = 0
    previous_mode = -1
    for index, range_ in enumerate(message.ranges):
        where = f"range {index}"
        _check_bound(range_, where)
        # [REJECT] Upper bounds strictly increase, the first above BOUND_MIN: no range is empty.
        if range_.upper <= lower:
            raise ReconcileError(f"{where}: upper bound does not increase")
        _check_mode(range_, where)
        # [REJECT] A Skip range does not follow a Skip range (they would be one).
        if range_.mode == SKIP and previous_mode == SKIP:
            raise ReconcileError(f"{where}: Skip after Skip")
        ids_total += len(range_.ids)
        lower = range_.upper
        previous_mode = range_.mode
    # [REJECT] The last range is not a Skip (what follows the last range is skipped anyway).
    if previous_mode == SKIP:
        raise ReconcileError("the last range is a Skip")
    # [REJECT] A message holds at most IDS_MAX ids, all ranges together.
    if ids_total > IDS_MAX:
        raise ReconcileError(f"{ids_total} ids exceeds {IDS_MAX}")


def _check_bound(range_: Range, where: str) -> None:
    # [REJECT] A bound's timestamp is a 64-bit unsigned integer.
    if not 0 <= range_.ts <= U64_MAX:
        raise ReconcileError(f"{where}: timestamp {range_.ts} outside [0, {U64_MAX}]")
    # [REJECT] A bound's id prefix is at most 32 bytes and does not end with a zero byte.
    if len(range_.prefix) > PREFIX_LEN_MAX or range_.prefix.endswith(b"\0"):
        raise ReconcileError(f"{where}: id prefix longer than {PREFIX_LEN_MAX} or ending in 00")
    # [REJECT] A bound at the largest timestamp has an empty prefix (nothing lies beyond).
    if range_.ts == U64_MAX and range_.prefix:
        raise ReconcileError(f"{where}: bound past the end of the item space")


def _check_mode(range_: Range, where: str) -> None:
    mode = range_.mode
    # [REJECT] The mode is Skip, Fingerprint, IdList or IdDiff.
    if mode not in MODE_NAMES:
        raise ReconcileError(f"{where}: unknown mode {mode}")
    name = MODE_NAMES[mode]
    # [REJECT] A Fingerprint range carries a 16-byte fingerprint, any other mode none.
    if len(range_.fp) != (FINGERPRINT_LEN if mode == FINGERPRINT else 0):
        raise ReconcileError(f"{where}: {name} with a fingerprint of {len(range_.fp)} bytes")
    # [REJECT] Only IdList and IdDiff ranges carry ids.
    if range_.ids and mode not in (ID_LIST, ID_DIFF):
        raise ReconcileError(f"{where}: {name} with ids")
    # [REJECT] An IdList range carries at most ID_LIST_IDS_MAX ids.
    if mode == ID_LIST and len(range_.ids) > ID_LIST_IDS_MAX:
        raise ReconcileError(f"{where}: IdList of {len(range_.ids)} ids exceeds {ID_LIST_IDS_MAX}")
    # [REJECT] An IdDiff range carries at least one id (an empty one is a Skip).
    if mode == ID_DIFF and not range_.ids:
        raise ReconcileError(f"{where}: IdDiff without ids")
    previous = b""
    for id_ in range_.ids:
        # [REJECT] Every id is 32 bytes.
        if len(id_) != ID_LEN:
            raise ReconcileError(f"{where}: id of {len(id_)} bytes, expected {ID_LEN}")
        # [REJECT] Ids within a range strictly increase: sorted, without duplicates.
        if id_ <= previous:
            raise ReconcileError(f"{where}: ids not in strictly increasing order")
        previous = id_


# ---------------------------------------------------------------------------------------
# Encoded sizes, computed without encoding: a sender sizes its reply range by range.


def _map_keys_bytes(cls: type) -> int:
    # A fixmap (records have under 16 fields) and each key as a fixstr (ASCII, under 32).
    return 1 + sum(1 + len(field.name) for field in dataclasses.fields(cls))


_RANGE_KEYS_BYTES = _map_keys_bytes(Range)
_MESSAGE_KEYS_BYTES = _map_keys_bytes(Message)


def range_bytes(range_: Range) -> int:
    """The encoded size of ``range_``."""
    return (
        _RANGE_KEYS_BYTES
        + uint_bytes(range_.ts)
        + bin_bytes(len(range_.prefix))
        + uint_bytes(range_.mode)
        + bin_bytes(len(range_.fp))
        + array_header_bytes(len(range_.ids))
        + len(range_.ids) * bin_bytes(ID_LEN)
    )


def range_bytes_max(ids: int) -> int:
    """The largest encoded size of a range carrying ``ids`` ids."""
    fixed = _RANGE_KEYS_BYTES + uint_bytes(U64_MAX) + bin_bytes(PREFIX_LEN_MAX)
    fixed += uint_bytes(MODE_MAX) + bin_bytes(FINGERPRINT_LEN)
    return fixed + array_header_bytes(ids) + ids * bin_bytes(ID_LEN)


def message_overhead_bytes_max(ranges: int) -> int:
    """The encoded size of a message of up to ``ranges`` ranges, less the ranges'."""
    return _MESSAGE_KEYS_BYTES + uint_bytes(VERSION) + array_header_bytes(ranges)


def message_bytes(message: Message) -> int:
    """The encoded size of ``message``, as :func:`encode_message` would give it."""
    overhead = _MESSAGE_KEYS_BYTES + uint_bytes(message.version)
    overhead += array_header_bytes(len(message.ranges))
    return overhead + sum(range_bytes(range_) for range_ in message.ranges)
