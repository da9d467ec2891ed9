"""Checking signed messages at the storage boundary, before writing and after reading.

Every store keeps messages as the exact envelope bytes that were validated. These two
helpers are the one place those bytes are checked again (decoded, signature verified, all
rules but the clock's), so a store never writes bytes that say something else than the
message it was handed, and never returns damaged bytes as a message.
"""

from collections import OrderedDict

from protocol.envelope import SignedMessage
from protocol.errors import Reject
from protocol.validate import reopen_message
from storage.errors import DamagedRecord, StoreError

REOPENED_MAX = 32
"""Recently checked envelopes remembered: one message is checked by each store it goes
into (its kind's store, then the message log) and read back soon after; the check depends
on the bytes alone, so it is done once for them."""


_checked: OrderedDict[bytes, SignedMessage] = OrderedDict()


def _reopen(raw: bytes) -> SignedMessage:
    # Raises Reject, which is not remembered: damaged bytes are checked each time.
    message = _checked.get(raw)
    if message is None:
        message = reopen_message(raw)
        _remember(raw, message)
    else:
        _checked.move_to_end(raw)
    return message


def _remember(raw: bytes, message: SignedMessage) -> None:
    _checked[raw] = message
    if len(_checked) > REOPENED_MAX:
        _checked.popitem(last=False)


def checked(message: SignedMessage) -> None:
    """Note that ``message`` was just made by ``protocol.validate.validate_message`` from
    its bytes (all rules checked, the clock's too), so that the stores it goes into do not
    verify the same bytes again. For the node's ingest path only."""
    _remember(message.raw, message)


def check_before_write(message: SignedMessage, error: type[StoreError]) -> None:
    """Raise ``error`` unless ``message.raw`` decodes and verifies to ``message.record``."""
    try:
        again = _reopen(message.raw)
    except Reject as exc:
        raise error(f"refusing to store an invalid {message.kind}: {exc}") from exc
    if again.record != message.record:
        raise error(f"refusing to store a {message.kind} whose bytes say otherwise")


def read_back(raw: bytes, kind: type, what: str) -> SignedMessage:
    """The message stored as ``raw``, which must hold a ``kind`` record.

    Raises :class:`DamagedRecord` naming ``what`` when the bytes no longer check.
    """
    try:
        message = _reopen(raw)
    except Reject as exc:
        raise DamagedRecord(f"stored {what} is damaged: {exc}") from exc
    if not isinstance(message.record, kind):
        raise DamagedRecord(f"stored {what} is not a {kind.__name__}")
    return message
