"""Range-based set reconciliation of (timestamp, id) items: the sans-IO machine.

Two nodes find the symmetric difference of their item sets (protocol/itemset.py) by
exchanging messages (protocol/reconcilewire.py), as in Aljoscha Meyer's "Range-Based Set
Reconciliation" (2023) and the negentropy protocol. A message cuts the item space into
ranges; for each, the receiver compares the sender's fingerprint with its own, answers a
difference with its ids (few items) or with fingerprints of sub-ranges (many), and answers
a list of ids with the difference itself. Matching ranges drop out at once, so the work
follows the differences: for d differences spread among n items, O(log n) rounds and
O(d · log n) bytes.

Both sides run the same :class:`Reconciler`, and both learn the whole difference: what
they hold that the peer lacks (``have``) and what the peer holds that they lack (``need``).
The machine reads the set through :class:`~protocol.itemset.ItemSet`, keeps no state per
range between messages, and performs no I/O: the node and the simulator feed it messages
and send what it returns. docs/sync.md specifies the protocol.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.itemset import BOUND_MAX, BOUND_MIN, Bound, ItemSet
from protocol.reconcilewire import (
    ASKING_MODES,
    ID_DIFF,
    ID_LIST,
    ID_LIST_IDS_MAX,
    IDS_MAX,
    MESSAGE_BYTES_MAX,
    RANGES_MAX,
    SKIP,
    VERSION,
    Message,
    Range,
    ReconcileError,
    check_message,
    message_overhead_bytes_max,
    range_bytes,
    range_bytes_max,
)

AFTER_END = "a reconciliation message arrived after the session ended"

# Room every reply keeps free while it grows: one Skip that may follow the last work, and
# one Fingerprint that defers the work left over (see _Writer).
_RESERVE_RANGES = 2
_RESERVE_BYTES = 2 * range_bytes_max(0)


@dataclass(frozen=True)
class ReconcileLimits:
    """How one side shapes the messages it sends, and how long it keeps a session going.

    A receiver accepts any message within the protocol's own limits (reconcilewire's
    ``RANGES_MAX``, ``IDS_MAX``, ``MESSAGE_BYTES_MAX``); these are a sender's, at most those.
    ``rounds_max`` counts the messages this side receives in one session, so it bounds
    what a peer can make it compute and send.
    """

    branching: int = 16
    """Sub-ranges a differing range of many items is cut into."""
    id_list_threshold: int = 32
    """A differing range of at most this many items is sent as its ids."""
    ranges_max: int = RANGES_MAX
    ids_max: int = IDS_MAX
    message_bytes_max: int = MESSAGE_BYTES_MAX
    rounds_max: int = 256
    differences_max: int = 100_000
    """Ids one session may report (have plus need). A peer inventing ids could otherwise
    fill memory with rounds_max * IDS_MAX of them; past this the session ends exhausted,
    and a driver resumes later, from what it has since fetched."""

    def __post_init__(self) -> None:
        """Raises :class:`ValueError` for limits the protocol cannot make progress within."""
        if not 1 <= self.id_list_threshold <= ID_LIST_IDS_MAX:
            raise ValueError(f"id_list_threshold must be in [1, {ID_LIST_IDS_MAX}]")
        if not 2 <= self.branching <= self.ranges_max - _RESERVE_RANGES - 1:
            raise ValueError("branching must be in [2, ranges_max - 3]")
        if self.ranges_max > RANGES_MAX or self.ids_max > IDS_MAX:
            raise ValueError(f"at most {RANGES_MAX} ranges and {IDS_MAX} ids per message")
        if self.message_bytes_max > MESSAGE_BYTES_MAX:
            raise ValueError(f"at most {MESSAGE_BYTES_MAX} bytes per message")
        if self.rounds_max < 1:
            raise ValueError("rounds_max must be at least 1")
        if self.differences_max < 1:
            raise ValueError("differences_max must be at least 1")
        # The largest answer to one range must fit a reply that holds nothing else (but a
        # Skip before it), or a session could stall: a diff of our id_list_threshold ids
        # against a full IdList from the peer, or the fingerprints of one split.
        diff_ids = self.id_list_threshold + ID_LIST_IDS_MAX
        if not _fits_alone(self, 1, diff_ids, range_bytes_max(diff_ids)):
            raise ValueError(f"a diff of {diff_ids} ids must fit one message: raise ids_max")
        if not _fits_alone(self, self.branching, 0, self.branching * range_bytes_max(0)):
            raise ValueError("the fingerprints of one split must fit one message")


def _fits_alone(limits: ReconcileLimits, ranges: int, ids: int, size: int) -> bool:
    """Whether ranges of ``ids`` ids and ``size`` bytes fit a reply holding only a Skip."""
    return _fits(limits, 1, 0, range_bytes_max(0), ranges, ids, size)


def _fits(
    limits: ReconcileLimits,
    ranges: int,
    ids: int,
    size: int,
    more_ranges: int,
    more_ids: int,
    more_bytes: int,
) -> bool:
    """Whether a message of ``ranges``/``ids``/``size`` bytes (ranges only) can take more,
    keeping the reserve."""
    return (
        ranges + more_ranges + _RESERVE_RANGES <= limits.ranges_max
        and ids + more_ids <= limits.ids_max
        and message_overhead_bytes_max(limits.ranges_max) + size + more_bytes + _RESERVE_BYTES
        <= limits.message_bytes_max
    )


DEFAULT_LIMITS = ReconcileLimits()


class _Writer:
    """One reply under construction, within the sender's limits.

    Work is admitted only while room stays for one more Skip (the one that may follow it;
    consecutive Skips merge) and one Fingerprint, which :meth:`defer` spends to hand back
    the work that did not fit.
    """

    def __init__(self, limits: ReconcileLimits) -> None:
        self._limits = limits
        self._ranges: list[Range] = []
        self._ids = 0
        self._bytes = 0

    def skip(self, upper: Bound) -> None:
        if self._ranges and self._ranges[-1].mode == SKIP:
            self._bytes -= range_bytes(self._ranges.pop())
        self._append(Range.skip(upper))

    def add(self, ranges: Sequence[Range]) -> bool:
        """Append ``ranges`` if they fit; return whether they did."""
        more_ids = sum(len(range_.ids) for range_ in ranges)
        more_bytes = sum(range_bytes(range_) for range_ in ranges)
        now = (len(self._ranges), self._ids, self._bytes)
        if not _fits(self._limits, *now, len(ranges), more_ids, more_bytes):
            return False
        for range_ in ranges:
            self._append(range_)
        return True

    def fits_alone(self, ranges: Sequence[Range]) -> bool:
        """Whether ``ranges`` would fit a reply holding nothing else but a Skip."""
        more_ids = sum(len(range_.ids) for range_ in ranges)
        more_bytes = sum(range_bytes(range_) for range_ in ranges)
        return _fits_alone(self._limits, len(ranges), more_ids, more_bytes)

    def fingerprints_room(self) -> int:
        """How many fingerprint ranges still fit, the reserve included (at least one)."""
        lim = self._limits
        size = message_overhead_bytes_max(lim.ranges_max) + self._bytes
        room = min(
            lim.ranges_max - len(self._ranges),
            (lim.message_bytes_max - size) // range_bytes_max(0),
        )
        assert room >= 1, "the reserve keeps room for one"
        return room

    def defer(self, upper: Bound, fp: bytes) -> None:
        """Append a fingerprint within :meth:`fingerprints_room`."""
        self._append(Range.fingerprint(upper, fp))

    def message(self) -> Message:
        ranges = self._ranges
        if ranges and ranges[-1].mode == SKIP:
            ranges = ranges[:-1]  # the receiver skips whatever follows the last range
        return Message(ranges=tuple(ranges), version=VERSION)

    def _append(self, range_: Range) -> None:
        self._ranges.append(range_)
        self._ids += len(range_.ids)
        self._bytes += range_bytes(range_)


@dataclass(frozen=True)
class Outcome:
    """What one received message leads to.

    ``reply`` is the message to send back, or None when nothing is to be sent. ``have``
    lists ids we hold that the peer lacks, ``need`` ids the peer holds that we lack, each
    id reported once per session. ``done`` says the session is over once ``reply`` (if
    any) is sent: no further message is expected from the peer.
    """

    reply: Message | None
    have: list[bytes]
    need: list[bytes]
    done: bool


class Reconciler:
    """One side of one reconciliation session, initiator or responder.

    The initiator calls :meth:`initiate` and sends the message; each side then feeds every
    message it receives to :meth:`receive` and sends the reply, until an outcome says
    ``done``. Each side learns the whole difference; a driver should move each item once,
    for example by requesting what ``need`` lists (the receiver of data keeps control of
    its budget) and treating ``have`` as information.
    """

    def __init__(self, items: ItemSet, *, limits: ReconcileLimits = DEFAULT_LIMITS) -> None:
        self._items = items
        self._limits = limits
        self._started = False
        self._done = False
        self._exhausted = False
        self._rounds = 0
        # Ids already reported: a deferred range is examined again later, and must not
        # report the same difference twice. The session ends once they hold
        # differences_max ids between them (plus at most one message's worth).
        self._have_seen: set[bytes] = set()
        self._need_seen: set[bytes] = set()

    @property
    def done(self) -> bool:
        """The session is over: it settled, or it ran out of rounds (see ``exhausted``)."""
        return self._done

    @property
    def exhausted(self) -> bool:
        """The session ended before it settled: at ``rounds_max`` received messages, or once
        it had reported ``differences_max`` ids."""
        return self._exhausted

    @property
    def rounds(self) -> int:
        """Messages received so far."""
        return self._rounds

    def initiate(self) -> Message:
        """The first message of a session: our ids if few, else one fingerprint of all.

        Raises :class:`RuntimeError` unless called once, before any :meth:`receive`.
        """
        if self._started:
            raise RuntimeError("initiate() starts a session: call it once, before receive()")
        self._started = True
        writer = _Writer(self._limits)
        fitted = self._describe(BOUND_MIN, BOUND_MAX, writer, split=False)
        assert fitted, "one id list or fingerprint always fits an empty message"
        return writer.message()

    def receive(self, message: Message) -> Outcome:
        """Process one message from the peer and say what to send, have and need.

        Raises :class:`~protocol.reconcilewire.ReconcileError` (a
        :class:`~protocol.errors.DecodeError`) if the message breaks a rule of
        :func:`~protocol.reconcilewire.check_message` or arrives after the session ended;
        the machine is then unchanged.
        """
        if self._done:
            raise ReconcileError(AFTER_END)
        check_message(message)
        self._started = True
        self._rounds += 1
        have: list[bytes] = []
        need: list[bytes] = []
        reply = self._answer(message, have, need)
        if not _asks(message):
            # A final message settles every range it names: there is nothing to answer.
            self._done = True
            return Outcome(None, have, need, done=True)
        if not _asks(reply):
            self._done = True  # our reply settles the rest: it is the last message
            return Outcome(reply, have, need, done=True)
        over_budget = len(self._have_seen) + len(self._need_seen) >= self._limits.differences_max
        if self._rounds >= self._limits.rounds_max or over_budget:
            self._done = self._exhausted = True
            return Outcome(None, have, need, done=True)
        return Outcome(reply, have, need, done=False)

    def _answer(self, message: Message, have: list[bytes], need: list[bytes]) -> Message:
        writer = _Writer(self._limits)
        # Asking ranges left unanswered once one did not fit: all later work waits, and
        # goes back to the peer merged into as many fingerprints as the reply can hold.
        pending: list[tuple[Bound, Bound]] = []
        lower = BOUND_MIN
        for range_ in message.ranges:
            upper = range_.upper
            if range_.mode == ID_DIFF:
                # An id diff settles its range whatever else happens: learn it now.
                self._settle(range_.ids, lower, upper, have, need)
            if range_.mode not in ASKING_MODES:
                if not pending:
                    writer.skip(upper)
            elif pending or not self._answer_or_echo(range_, lower, upper, writer, have, need):
                pending.append((lower, upper))
            lower = upper
        if pending:
            self._hand_back(pending, writer)
        return writer.message()

    def _answer_or_echo(
        self,
        range_: Range,
        lower: Bound,
        upper: Bound,
        writer: _Writer,
        have: list[bytes],
        need: list[bytes],
    ) -> bool:
        if self._answer_range(range_, lower, upper, writer, have, need):
            return True
        # Our answer does not fit what is left of the reply: hand the range back as our
        # fingerprint, so the peer retries it next round at this size.
        echo = Range.fingerprint(upper, self._items.fingerprint(lower, upper))
        return writer.add([echo])

    def _hand_back(self, pending: list[tuple[Bound, Bound]], writer: _Writer) -> None:
        """Cover the unanswered ranges with consecutive fingerprints, as many as fit."""
        groups = min(len(pending), writer.fingerprints_room())
        start = pending[0][0]
        for group in range(groups):
            end = pending[(group + 1) * len(pending) // groups - 1][1]
            writer.defer(end, self._items.fingerprint(start, end))
            start = end

    def _answer_range(
        self,
        range_: Range,
        lower: Bound,
        upper: Bound,
        writer: _Writer,
        have: list[bytes],
        need: list[bytes],
    ) -> bool:
        """Answer one asking range; return False if the answer does not fit the reply."""
        if range_.mode == ID_LIST:
            return self._diff(range_.ids, lower, upper, writer, have, need)
        if self._items.fingerprint(lower, upper) == range_.fp:
            writer.skip(upper)
            return True
        return self._describe(lower, upper, writer, split=True)

    def _describe(self, lower: Bound, upper: Bound, writer: _Writer, *, split: bool) -> bool:
        """Send our side of a differing range: its ids when few, else fingerprints of
        ``branching`` sub-ranges (or, with ``split`` False, of the whole range)."""
        count = self._items.count(lower, upper)
        if count <= self._limits.id_list_threshold:
            ids = tuple(sorted(self._items.ids(lower, upper)))
            return writer.add([Range.id_list(upper, ids)])
        bounds = self._items.split(lower, upper, self._limits.branching) if split else [upper]
        ranges = []
        for bound in bounds:
            ranges.append(Range.fingerprint(bound, self._items.fingerprint(lower, bound)))
            lower = bound
        return writer.add(ranges)

    def _diff(
        self,
        theirs: tuple[bytes, ...],
        lower: Bound,
        upper: Bound,
        writer: _Writer,
        have: list[bytes],
        need: list[bytes],
    ) -> bool:
        """Answer the peer's ids for a range with the difference, which settles it."""
        count = self._items.count(lower, upper)
        if count > len(theirs) + self._limits.ids_max:
            # At least count - len(theirs) of our ids would be in the diff: no message could
            # carry it, so narrow the range down first.
            return self._describe(lower, upper, writer, split=True)
        ours = set(self._items.ids(lower, upper))
        peer = set(theirs)
        mine = sorted(ours - peer)
        missing = sorted(peer - ours)
        if not mine and not missing:
            writer.skip(upper)
            return True
        diff = [Range.id_diff(upper, tuple(sorted(mine + missing)))]
        if writer.add(diff):
            self._learn(mine, missing, have, need)
            return True
        if writer.fits_alone(diff):
            return False  # it will fit a later reply: the peer sends its ids again
        # Larger than any message (our side holds many items; limits guarantee a diff of
        # a threshold's worth of ours fits): split our side.
        return self._describe(lower, upper, writer, split=True)

    def _settle(
        self,
        diff: tuple[bytes, ...],
        lower: Bound,
        upper: Bound,
        have: list[bytes],
        need: list[bytes],
    ) -> None:
        """Take in the peer's diff of a range: the ids we hold, it lacks; the rest we lack."""
        ours = set(self._items.ids(lower, upper))
        mine = [id_ for id_ in diff if id_ in ours]
        missing = [id_ for id_ in diff if id_ not in ours]
        self._learn(mine, missing, have, need)

    def _learn(
        self, mine: list[bytes], missing: list[bytes], have: list[bytes], need: list[bytes]
    ) -> None:
        for id_ in mine:
            if id_ not in self._have_seen:
                self._have_seen.add(id_)
                have.append(id_)
        for id_ in missing:
            if id_ not in self._need_seen:
                self._need_seen.add(id_)
                need.append(id_)


def _asks(message: Message) -> bool:
    """Whether ``message`` asks for an answer (holds a fingerprint or an id list)."""
    return any(range_.mode in ASKING_MODES for range_ in message.ranges)
