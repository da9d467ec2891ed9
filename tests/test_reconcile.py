"""Set reconciliation: item sets and fingerprints, the wire format, and the machine.

Two :class:`Reconciler` objects are driven against each other through the real encoding
(every message is encoded, size-checked and decoded on the way), and must each learn
exactly the symmetric difference of their sets. Run with ``-s`` to see the figures of the
large cases.
"""

import contextlib
import dataclasses
import hashlib
import math
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.reconcilewire
from protocol.codec import U64_MAX, encode_record
from protocol.errors import DecodeError
from protocol.itemset import (
    BOUND_MAX,
    BOUND_MIN,
    Bound,
    Item,
    MemoryItemSet,
    fingerprint,
    item_hash,
    separating_bound,
)
from protocol.reconcile import DEFAULT_LIMITS, Outcome, ReconcileLimits, Reconciler
from protocol.reconcilewire import (
    FINGERPRINT,
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
    decode_message,
    encode_message,
    message_bytes,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sync.md"
DAY_MS = 86_400_000
BASE_MS = 1_700_000_000_000


# ---------------------------------------------------------------------------------------
# Building item sets.


def make_items(rng: random.Random, count: int, ts_span: int, families: int = 0) -> list[Item]:
    """``count`` random items with timestamps in ``[BASE_MS, BASE_MS + ts_span)``.

    With ``families``, ids share long prefixes, so separating bounds need long prefixes.
    Ids are distinct, as content hashes are: at least 8 random bytes each.
    """
    roots = [rng.randbytes(32) for _ in range(families)]
    items = []
    for _ in range(count):
        if roots:
            keep = rng.randrange(25)
            id_ = rng.choice(roots)[:keep] + rng.randbytes(32 - keep)
        else:
            id_ = rng.randbytes(32)
        items.append((BASE_MS + rng.randrange(ts_span), id_))
    return items


def ids_of(items: Iterable[Item]) -> set[bytes]:
    return {id_ for _, id_ in items}


@dataclasses.dataclass
class Side:
    """One party of a driven session and what it learned."""

    machine: Reconciler
    limits: ReconcileLimits
    have: list[bytes] = dataclasses.field(default_factory=list)
    need: list[bytes] = dataclasses.field(default_factory=list)

    def take(self, outcome: Outcome) -> None:
        self.have.extend(outcome.have)
        self.need.extend(outcome.need)


@dataclasses.dataclass
class Session:
    a: Side
    b: Side
    sizes: list[int]
    """Encoded size of every message, in order."""

    @property
    def messages(self) -> int:
        return len(self.sizes)


def drive(
    a_set: MemoryItemSet,
    b_set: MemoryItemSet,
    a_limits: ReconcileLimits = DEFAULT_LIMITS,
    b_limits: ReconcileLimits = DEFAULT_LIMITS,
    on_outcome: Callable[[Side, Outcome], None] | None = None,
) -> Session:
    """Run a session, ``a`` initiating, through the encoding; return what each learned."""
    a = Side(Reconciler(a_set, limits=a_limits), a_limits)
    b = Side(Reconciler(b_set, limits=b_limits), b_limits)
    session = Session(a, b, [])
    message: Message | None = a.machine.initiate()
    sender, receiver = a, b
    while message is not None:
        data = encode_message(message)
        assert len(data) == message_bytes(message)
        assert len(data) <= sender.limits.message_bytes_max
        assert len(message.ranges) <= sender.limits.ranges_max
        assert sum(len(r.ids) for r in message.ranges) <= sender.limits.ids_max
        session.sizes.append(len(data))
        decoded = decode_message(data)
        assert decoded == message
        outcome = receiver.machine.receive(decoded)
        receiver.take(outcome)
        if on_outcome is not None:
            on_outcome(receiver, outcome)
        if outcome.reply is not None:
            assert not sender.machine.done, "a reply went to a side that had finished"
        assert outcome.done == receiver.machine.done
        message = outcome.reply
        sender, receiver = receiver, sender
    assert a.machine.done and b.machine.done
    return session


def assert_exact(session: Session, a_items: Iterable[Item], b_items: Iterable[Item]) -> None:
    """Each side learned exactly the symmetric difference, each id once."""
    a_ids, b_ids = ids_of(a_items), ids_of(b_items)
    for side, ours, theirs in ((session.a, a_ids, b_ids), (session.b, b_ids, a_ids)):
        assert not side.machine.exhausted
        assert len(side.have) == len(set(side.have)), "an id reported twice in have"
        assert len(side.need) == len(set(side.need)), "an id reported twice in need"
        assert set(side.have) == ours - theirs
        assert set(side.need) == theirs - ours


# ---------------------------------------------------------------------------------------
# Item sets and fingerprints.


def test_fingerprint_bytes() -> None:
    """The exact bytes of docs/sync.md section 3."""
    assert fingerprint(0, 0) == hashlib.sha256(bytes(40)).digest()[:16]
    item = (1, bytes(32))
    expected = hashlib.sha256((1).to_bytes(8, "big") + bytes(32)).digest()
    assert item_hash(item) == int.from_bytes(expected, "big")
    data = expected + (1).to_bytes(8, "big")
    assert (
        MemoryItemSet([item]).fingerprint(BOUND_MIN, BOUND_MAX)
        == (hashlib.sha256(data).digest()[:16])
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32), count=st.integers(0, 60), ts_span=st.sampled_from([1, 5, DAY_MS])
)
def test_fingerprint_is_order_independent_and_incremental(
    seed: int, count: int, ts_span: int
) -> None:
    rng = random.Random(seed)
    items = make_items(rng, count, ts_span, families=2)
    whole = MemoryItemSet(items)
    grown = MemoryItemSet()
    shuffled = list(items)
    rng.shuffle(shuffled)
    for item in shuffled:
        grown.add(item)
        grown.fingerprint(BOUND_MIN, BOUND_MAX)  # forces prefix-sum rebuilds in between
    assert grown.fingerprint(BOUND_MIN, BOUND_MAX) == whole.fingerprint(BOUND_MIN, BOUND_MAX)
    expected = fingerprint(sum(item_hash(item) for item in set(items)), len(set(items)))
    assert whole.fingerprint(BOUND_MIN, BOUND_MAX) == expected


def random_bound(rng: random.Random, items: list[Item]) -> Bound:
    if items and rng.random() < 0.7:
        ts, id_ = rng.choice(items)
        prefix = id_[: rng.randrange(33)].rstrip(b"\0")
        return (ts + rng.choice([-1, 0, 0, 1]), prefix)
    return rng.choice([BOUND_MIN, BOUND_MAX, (BASE_MS + 2, b"\x80")])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(0, 80), parts=st.integers(1, 20))
def test_range_queries_match_brute_force(seed: int, count: int, parts: int) -> None:
    rng = random.Random(seed)
    items = sorted(set(make_items(rng, count, rng.choice([3, 50, DAY_MS]), families=3)))
    store = MemoryItemSet(items)
    lower, upper = sorted([random_bound(rng, items), random_bound(rng, items)])
    inside = [item for item in items if lower <= item < upper]
    assert store.count(lower, upper) == len(inside)
    assert store.ids(lower, upper) == [id_ for _, id_ in inside]
    assert store.fingerprint(lower, upper) == fingerprint(
        sum(item_hash(item) for item in inside), len(inside)
    )
    bounds = store.split(lower, upper, parts)
    assert bounds[-1] == upper
    assert len(bounds) == max(1, min(parts, len(inside)))
    counts = []
    previous = lower
    for bound in bounds:
        assert previous < bound or (previous == bound == upper and not inside)
        assert not bound[1].endswith(b"\0")
        counts.append(store.count(previous, bound))
        previous = bound
    assert sum(counts) == len(inside)
    assert max(counts) - min(counts) <= 1, "sub-ranges of about equal count"


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(0, 3),
    a=st.binary(min_size=32, max_size=32),
    b=st.binary(min_size=32, max_size=32),
)
def test_separating_bound_is_the_shortest(ts: int, a: bytes, b: bytes) -> None:
    below, above = sorted({(ts, a), (ts + (a == b), b)})
    if below == above:
        return
    bound = separating_bound(below, above)
    assert below < bound <= above
    assert not bound[1].endswith(b"\0")
    shorter = (bound[0], bound[1][:-1])
    assert not bound[1] or not below < shorter, "a shorter prefix would also separate"


@pytest.mark.parametrize(
    "item", [(-1, bytes(32)), (U64_MAX, bytes(32)), (1, bytes(31)), (1, bytes(33))]
)
def test_invalid_item(item: Item) -> None:
    with pytest.raises(ValueError, match="item"):
        MemoryItemSet([item])
    with pytest.raises(ValueError, match="item"):
        MemoryItemSet().add(item)


def test_add_reports_new_items() -> None:
    store = MemoryItemSet([(5, bytes(32))])
    assert store.add((4, bytes(32)))
    assert not store.add((5, bytes(32)))
    assert (4, bytes(32)) in store and (6, bytes(32)) not in store and "x" not in store
    assert len(store) == 2


# ---------------------------------------------------------------------------------------
# The wire format.

ID = [bytes([i]) * 32 for i in range(256)]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Valid messages: increasing canonical bounds, modes with what they carry."""
    count = draw(st.integers(0, 12))
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, U64_MAX - 1), st.binary(max_size=32)),
            min_size=count,
            max_size=count,
        )
    )
    bounds = sorted({(ts, prefix.rstrip(b"\0")) for ts, prefix in raw} - {BOUND_MIN})
    if draw(st.booleans()) and bounds:
        bounds[-1] = BOUND_MAX
    ranges = []
    previous = -1
    for index, bound in enumerate(bounds):
        last = index == len(bounds) - 1
        choices = [FINGERPRINT, ID_LIST, ID_DIFF]
        if previous != SKIP and not last:
            choices.append(SKIP)
        mode = draw(st.sampled_from(choices))
        ids = st.lists(st.binary(min_size=32, max_size=32), unique=True, max_size=8)
        if mode == SKIP:
            ranges.append(Range.skip(bound))
        elif mode == FINGERPRINT:
            ranges.append(Range.fingerprint(bound, draw(st.binary(min_size=16, max_size=16))))
        elif mode == ID_LIST:
            ranges.append(Range.id_list(bound, tuple(sorted(draw(ids)))))
        else:
            diff = draw(ids.filter(bool))
            ranges.append(Range.id_diff(bound, tuple(sorted(diff))))
        previous = mode
    return Message(ranges=tuple(ranges), version=VERSION)


@settings(max_examples=200, deadline=None)
@given(message=messages())
def test_message_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert decode_message(data) == message
    assert len(data) == message_bytes(message)


@dataclasses.dataclass(frozen=True)
class Case:
    """One way to break one rule of check_message (``rule`` None: a codec rule)."""

    name: str
    rule: str | None
    match: str
    """A regular expression the error matches, from the codec or from check_message."""
    message: Message | None = None
    raw: bytes | None = None

    def data(self) -> bytes:
        if self.raw is not None:
            return self.raw
        assert self.message is not None
        return encode_record(self.message)


def msg(*ranges: Range, version: int = VERSION) -> Message:
    return Message(ranges=ranges, version=version)


def rng_(ts: int, prefix: bytes = b"", mode: int = SKIP, fp: bytes = b"", ids: int = 0) -> Range:
    return Range(ts=ts, prefix=prefix, mode=mode, fp=fp, ids=tuple(ID[:ids]))


FP = bytes(16)
END = Range.fingerprint(BOUND_MAX, FP)
OK_RANGE = {"fp": FP, "ids": [], "mode": FINGERPRINT, "prefix": b"", "ts": 5}

INVALID = [
    Case("version", "The version is one this implementation speaks.", "version", msg(version=2)),
    Case(
        "too_many_ranges",
        "A message holds at most RANGES_MAX ranges.",
        f"{RANGES_MAX + 1}",
        msg(*(Range.fingerprint((ts + 1, b""), FP) for ts in range(RANGES_MAX + 1))),
    ),
    Case(
        "bound_equal",
        "Upper bounds strictly increase, the first above BOUND_MIN: no range is empty.",
        "does not increase",
        msg(rng_(5, mode=FINGERPRINT, fp=FP), rng_(5, mode=FINGERPRINT, fp=FP)),
    ),
    Case(
        "bound_decreasing",
        "Upper bounds strictly increase, the first above BOUND_MIN: no range is empty.",
        "does not increase",
        msg(rng_(5, b"\x02", FINGERPRINT, FP), rng_(5, b"\x01", FINGERPRINT, FP)),
    ),
    Case(
        "first_bound_at_min",
        "Upper bounds strictly increase, the first above BOUND_MIN: no range is empty.",
        "does not increase",
        msg(rng_(0, mode=FINGERPRINT, fp=FP)),
    ),
    Case(
        "skip_after_skip",
        "A Skip range does not follow a Skip range (they would be one).",
        "Skip after Skip",
        msg(rng_(1), rng_(2), END),
    ),
    Case(
        "trailing_skip",
        "The last range is not a Skip (what follows the last range is skipped anyway).",
        "last range",
        msg(rng_(1)),
    ),
    Case(
        "too_many_ids",
        "A message holds at most IDS_MAX ids, all ranges together.",
        f"{IDS_MAX + 32} ids",
        msg(
            Range.id_diff((1, b""), tuple(i.to_bytes(32, "big") for i in range(3600))),
            Range.id_diff((2, b""), tuple(i.to_bytes(32, "big") for i in range(3600))),
        ),
    ),
    Case(
        "negative_ts",
        "A bound's timestamp is a 64-bit unsigned integer.",
        "-1 outside",
        msg(rng_(-1, mode=FINGERPRINT, fp=FP)),
    ),
    Case(
        "prefix_too_long",
        "A bound's id prefix is at most 32 bytes and does not end with a zero byte.",
        "prefix",
        msg(rng_(1, b"\x01" * 33, FINGERPRINT, FP)),
    ),
    Case(
        "prefix_trailing_zero",
        "A bound's id prefix is at most 32 bytes and does not end with a zero byte.",
        "prefix",
        msg(rng_(1, b"\x01\x00", FINGERPRINT, FP)),
    ),
    Case(
        "bound_past_end",
        "A bound at the largest timestamp has an empty prefix (nothing lies beyond).",
        "past the end",
        msg(rng_(U64_MAX, b"\x01", FINGERPRINT, FP)),
    ),
    Case(
        "unknown_mode",
        "The mode is Skip, Fingerprint, IdList or IdDiff.",
        "mode",
        msg(rng_(1, mode=4)),
    ),
    Case(
        "fingerprint_short",
        "A Fingerprint range carries a 16-byte fingerprint, any other mode none.",
        "15 bytes",
        msg(rng_(1, mode=FINGERPRINT, fp=bytes(15))),
    ),
    Case(
        "fingerprint_long",
        "A Fingerprint range carries a 16-byte fingerprint, any other mode none.",
        "17 bytes",
        msg(rng_(1, mode=FINGERPRINT, fp=bytes(17))),
    ),
    Case(
        "id_list_with_fingerprint",
        "A Fingerprint range carries a 16-byte fingerprint, any other mode none.",
        "IdList with a fingerprint",
        msg(rng_(1, mode=ID_LIST, fp=FP)),
    ),
    Case(
        "skip_with_ids",
        "Only IdList and IdDiff ranges carry ids.",
        "Skip with ids",
        msg(rng_(1, ids=1), END),
    ),
    Case(
        "fingerprint_with_ids",
        "Only IdList and IdDiff ranges carry ids.",
        "Fingerprint with ids",
        msg(rng_(1, mode=FINGERPRINT, fp=FP, ids=1)),
    ),
    Case(
        "id_list_too_long",
        "An IdList range carries at most ID_LIST_IDS_MAX ids.",
        f"{ID_LIST_IDS_MAX + 1} ids",
        msg(rng_(1, mode=ID_LIST, ids=ID_LIST_IDS_MAX + 1)),
    ),
    Case(
        "empty_id_diff",
        "An IdDiff range carries at least one id (an empty one is a Skip).",
        "without ids",
        msg(rng_(1, mode=ID_DIFF)),
    ),
    Case(
        "id_short",
        "Every id is 32 bytes.",
        "31 bytes",
        msg(Range.id_list((1, b""), (bytes(31),))),
    ),
    Case(
        "id_long",
        "Every id is 32 bytes.",
        "33 bytes",
        msg(Range.id_list((1, b""), (bytes(33),))),
    ),
    Case(
        "ids_unsorted",
        "Ids within a range strictly increase: sorted, without duplicates.",
        "increasing",
        msg(Range.id_list((1, b""), (ID[2], ID[1]))),
    ),
    Case(
        "ids_duplicate",
        "Ids within a range strictly increase: sorted, without duplicates.",
        "increasing",
        msg(Range.id_diff((1, b""), (ID[1], ID[1]))),
    ),
    # Codec rules: the bytes are not a Message record at all.
    Case("empty_input", None, "malformed", raw=b""),
    Case("not_msgpack", None, "malformed", raw=b"\xc1"),
    Case("trailing_bytes", None, "trailing", raw=encode_message(msg(END)) + b"\x00"),
    Case("not_a_map", None, "expected a map", raw=msgpack.packb([1, 2])),
    Case("nil", None, "expected an array", raw=msgpack.packb({"ranges": None, "version": 1})),
    Case("unknown_field", None, "unknown field", raw=msgpack.packb({"ranges": [], "v": 1})),
    Case(
        "range_extra_field",
        None,
        "unknown field",
        raw=msgpack.packb({"ranges": [{**OK_RANGE, "x": 1}], "version": 1}, use_bin_type=True),
    ),
    Case(
        "ids_not_array",
        None,
        "expected an array",
        raw=msgpack.packb({"ranges": [{**OK_RANGE, "ids": 3}], "version": 1}, use_bin_type=True),
    ),
    Case(
        "prefix_as_text",
        None,
        "expected bytes",
        raw=msgpack.packb({"ranges": [{**OK_RANGE, "prefix": "a"}], "version": 1}),
    ),
    Case(
        "non_canonical_int",
        None,
        "canonical",
        raw=encode_message(msg(Range.fingerprint((5, b""), FP))).replace(
            b"\xa2ts\x05", b"\xa2ts\xcc\x05"
        ),
    ),
    Case("too_large", None, "exceeds the limit", raw=bytes(MESSAGE_BYTES_MAX + 1)),
]


@pytest.mark.parametrize("case", INVALID, ids=[case.name for case in INVALID])
def test_invalid_message(case: Case) -> None:
    with pytest.raises(DecodeError, match=case.match):
        decode_message(case.data())
    if case.message is not None:
        # The same verdict for a message handed over in memory (as the simulator does), and
        # a machine that refuses it is left as it was.
        with pytest.raises(ReconcileError, match=case.match):
            check_message(case.message)
        machine = Reconciler(MemoryItemSet())
        with pytest.raises(ReconcileError, match=case.match):
            machine.receive(case.message)
        assert machine.rounds == 0 and not machine.done


def reject_rules() -> list[str]:
    source = Path(protocol.reconcilewire.__file__).read_text(encoding="utf-8")
    return re.findall(r"# \[REJECT\] (.+)", source)


def test_every_rule_has_a_case_and_is_documented() -> None:
    rules = reject_rules()
    assert len(rules) == 16
    cases = {case.rule for case in INVALID}
    assert not [rule for rule in rules if rule not in cases], "a rule without a test_invalid case"
    assert not [rule for rule in cases - {None} if rule not in rules], "a case of a lost rule"
    docs = DOCS.read_text(encoding="utf-8")
    assert not [rule for rule in rules if f"[REJECT] {rule}" not in docs], "rule not in docs"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)


@settings(max_examples=200, deadline=None)
@given(
    message=messages(), flips=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), max_size=3)
)
def test_mutated_messages_only_raise_decode_error(
    message: Message, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode_message(message))
    for where, value in flips:
        data[where % len(data)] = value
    with contextlib.suppress(DecodeError):
        decode_message(bytes(data))


# ---------------------------------------------------------------------------------------
# Limits.


@pytest.mark.parametrize(
    "changes",
    [
        {"id_list_threshold": 0},
        {"id_list_threshold": ID_LIST_IDS_MAX + 1},
        {"branching": 1},
        {"branching": 20, "ranges_max": 22},
        {"ranges_max": RANGES_MAX + 1},
        {"ids_max": IDS_MAX + 1},
        {"ids_max": 32 + ID_LIST_IDS_MAX - 1},
        {"message_bytes_max": MESSAGE_BYTES_MAX + 1},
        {"message_bytes_max": 3000},
        {"rounds_max": 0},
    ],
    ids=str,
)
def test_invalid_limits(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ReconcileLimits(**changes)


def smallest_bytes(**fields: int) -> int:
    """The smallest message_bytes_max the other limits allow."""
    low, high = 1, MESSAGE_BYTES_MAX
    while low < high:
        middle = (low + high) // 2
        try:
            ReconcileLimits(message_bytes_max=middle, **fields)
        except ValueError:
            low = middle + 1
        else:
            high = middle
    return low


@st.composite
def limits(draw: st.DrawFn) -> ReconcileLimits:
    """Default-sized limits, or tight ones that make replies defer work (with rounds
    enough: two replies of 5 ranges can take 500 rounds to settle 120 differences)."""
    branching = draw(st.integers(2, 16))
    threshold = draw(st.integers(1, 32))
    if not draw(st.booleans()):
        return ReconcileLimits(branching=branching, id_list_threshold=threshold)
    fields = {
        "branching": branching,
        "id_list_threshold": threshold,
        "ranges_max": branching + 3 + draw(st.integers(0, 20)),
        "ids_max": threshold + ID_LIST_IDS_MAX + draw(st.integers(0, 40)),
    }
    bytes_max = smallest_bytes(**fields) + draw(st.integers(0, 2000))
    return ReconcileLimits(message_bytes_max=bytes_max, rounds_max=4096, **fields)


# ---------------------------------------------------------------------------------------
# Two machines reconciling.


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    common=st.integers(0, 300),
    only_a=st.integers(0, 120),
    only_b=st.integers(0, 120),
    ts_span=st.sampled_from([1, 20, DAY_MS]),
    a_limits=limits(),
    b_limits=limits(),
)
def test_random_sets_learn_exactly_the_difference(
    seed: int,
    common: int,
    only_a: int,
    only_b: int,
    ts_span: int,
    a_limits: ReconcileLimits,
    b_limits: ReconcileLimits,
) -> None:
    rng = random.Random(seed)
    shared = make_items(rng, common, ts_span, families=2)
    a_items = shared + make_items(rng, only_a, ts_span, families=2)
    b_items = shared + make_items(rng, only_b, ts_span, families=2)
    session = drive(MemoryItemSet(a_items), MemoryItemSet(b_items), a_limits, b_limits)
    assert_exact(session, a_items, b_items)


def test_identical_sets_finish_in_one_round_trip() -> None:
    items = make_items(random.Random(1), 10_000, DAY_MS)
    session = drive(MemoryItemSet(items), MemoryItemSet(items))
    assert session.messages == 2
    assert session.sizes[0] <= 80, "one fingerprint of everything"
    assert session.sizes[1] <= 20, "an empty, final message"
    assert_exact(session, items, items)


@pytest.mark.parametrize("count", [0, 1, 32])
def test_small_identical_sets_finish_in_one_round_trip(count: int) -> None:
    items = make_items(random.Random(2), count, DAY_MS)
    session = drive(MemoryItemSet(items), MemoryItemSet(items))
    assert session.messages == 2
    assert_exact(session, items, items)


@pytest.mark.parametrize("empty_side", ["initiator", "responder"])
def test_empty_against_full(empty_side: str) -> None:
    items = make_items(random.Random(3), 20_000, DAY_MS)
    full, empty = MemoryItemSet(items), MemoryItemSet()
    if empty_side == "initiator":
        session = drive(empty, full)
        assert_exact(session, [], items)
    else:
        session = drive(full, empty)
        assert_exact(session, items, [])
    print(
        f"\nempty {empty_side} vs 20,000 items: {session.messages} messages, "
        f"{sum(session.sizes):,} bytes ({20_000 * 34:,} bytes of bare ids)"
    )


def large_case(count: int, differences: int, seed: int) -> tuple[list[Item], list[Item]]:
    rng = random.Random(seed)
    shared = make_items(rng, count - differences // 2, DAY_MS)
    only_a = make_items(rng, differences // 2, DAY_MS)
    only_b = make_items(rng, differences - differences // 2, DAY_MS)
    return shared + only_a, shared + only_b


def test_100k_items_100_differences_take_few_rounds_and_bytes() -> None:
    a_items, b_items = large_case(100_000, 100, seed=4)
    session = drive(MemoryItemSet(a_items), MemoryItemSet(b_items))
    assert_exact(session, a_items, b_items)
    # A differing range of n items becomes branching sub-ranges until one holds at most
    # id_list_threshold items: ceil(log_B(n / T)) messages of fingerprints after the
    # initial one, then one of id lists and one of diffs.
    limits = DEFAULT_LIMITS
    bound = math.ceil(math.log(100_000 / limits.id_list_threshold, limits.branching)) + 3
    all_ids_bytes = 100_000 * 34  # every id as a msgpack bin 8, the naive alternative
    total = sum(session.sizes)
    print(
        f"\n100,000 items, 100 differences: {session.messages} messages (bound {bound}), "
        f"{total:,} bytes = {total / all_ids_bytes:.1%} of sending all ids; "
        f"sizes {session.sizes}"
    )
    assert session.messages <= bound
    assert total < all_ids_bytes / 10


def test_interoperates_across_different_limits() -> None:
    a_items, b_items = large_case(20_000, 300, seed=5)
    narrow = ReconcileLimits(branching=4, id_list_threshold=8, ids_max=200, ranges_max=64)
    session = drive(MemoryItemSet(a_items), MemoryItemSet(b_items), narrow, DEFAULT_LIMITS)
    assert_exact(session, a_items, b_items)
    session = drive(MemoryItemSet(a_items), MemoryItemSet(b_items), DEFAULT_LIMITS, narrow)
    assert_exact(session, a_items, b_items)


def test_tight_limits_defer_work_and_still_settle() -> None:
    """Replies far too small for the difference hand work back, and the session settles."""
    a_items, b_items = large_case(3_000, 600, seed=6)
    tight = ReconcileLimits(
        branching=4,
        id_list_threshold=4,
        ranges_max=64,
        ids_max=80,
        message_bytes_max=4000,
        rounds_max=1000,
    )
    session = drive(MemoryItemSet(a_items), MemoryItemSet(b_items), tight, tight)
    assert_exact(session, a_items, b_items)
    assert max(session.sizes) <= 4000
    print(f"\n3,000 items, 600 differences, 4,000-byte replies: {session.messages} messages")


def test_sets_converge_when_the_driver_stores_fetched_items_mid_session() -> None:
    a_items, b_items = large_case(5_000, 400, seed=7)
    by_id = {id_: (ts, id_) for ts, id_ in a_items + b_items}
    a_set, b_set = MemoryItemSet(a_items), MemoryItemSet(b_items)
    a, b = Reconciler(a_set), Reconciler(b_set)
    message: Message | None = a.initiate()
    receiver, store, other, other_store = b, b_set, a, a_set
    while message is not None:
        outcome = receiver.receive(decode_message(encode_message(message)))
        # The receiver fetches what it needs at once, as a node would while a session runs.
        for id_ in outcome.need:
            store.add(by_id[id_])
        message = outcome.reply
        receiver, store, other, other_store = other, other_store, receiver, store
    assert a.done and b.done and not a.exhausted and not b.exhausted
    assert a_set.ids(BOUND_MIN, BOUND_MAX) == b_set.ids(BOUND_MIN, BOUND_MAX)
    assert len(a_set) == len(set(a_items) | set(b_items))


def test_messages_are_deterministic() -> None:
    a_items, b_items = large_case(2_000, 50, seed=8)

    def transcript() -> list[bytes]:
        out: list[bytes] = []
        drive(
            MemoryItemSet(a_items),
            MemoryItemSet(b_items),
            on_outcome=lambda _, o: out.append(b"" if o.reply is None else encode_message(o.reply)),
        )
        return out

    assert transcript() == transcript()


# ---------------------------------------------------------------------------------------
# The session's own rules, and peers that lie.


def test_initiate_only_once_and_first() -> None:
    machine = Reconciler(MemoryItemSet())
    machine.initiate()
    with pytest.raises(RuntimeError):
        machine.initiate()
    responder = Reconciler(MemoryItemSet())
    responder.receive(msg(END))
    with pytest.raises(RuntimeError):
        responder.initiate()


def test_invalid_message_after_the_session_ended() -> None:
    machine = Reconciler(MemoryItemSet())
    outcome = machine.receive(msg())  # a final message: nothing to answer
    assert outcome == Outcome(None, [], [], done=True)
    with pytest.raises(ReconcileError, match="after the session ended"):
        machine.receive(msg(END))


def test_a_lying_peer_is_cut_off_at_rounds_max() -> None:
    """A peer that claims a different fingerprint for everything, forever."""
    items = make_items(random.Random(9), 5_000, DAY_MS)
    machine = Reconciler(MemoryItemSet(items), limits=ReconcileLimits(rounds_max=7))
    replies = 0
    while not machine.done:
        outcome = machine.receive(msg(Range.fingerprint(BOUND_MAX, bytes(16))))
        replies += outcome.reply is not None
    assert machine.exhausted and machine.rounds == 7 and replies == 6


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    peer=st.lists(st.one_of(messages(), st.binary(max_size=120)), min_size=1, max_size=12),
)
def test_garbage_from_a_peer_raises_only_decode_error_and_ends(
    seed: int, peer: list[Message | bytes]
) -> None:
    items = make_items(random.Random(seed), 200, 20, families=2)
    rounds_max = 5
    machine = Reconciler(MemoryItemSet(items), limits=ReconcileLimits(rounds_max=rounds_max))
    for sent in peer:
        try:
            message = decode_message(sent) if isinstance(sent, bytes) else sent
            outcome = machine.receive(message)
        except DecodeError:
            continue
        assert len(outcome.have) == len(set(outcome.have))
        if outcome.reply is not None:
            check_message(outcome.reply)  # whatever it was told, it sends valid messages
    assert machine.rounds <= rounds_max


# ---------------------------------------------------------------------------------------
# docs/sync.md quotes today's bytes.


def test_docs_quote_current_bytes() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    item = (1_700_000_000_000, bytes(range(32)))
    fp = MemoryItemSet([item]).fingerprint(BOUND_MIN, BOUND_MAX)
    first = encode_message(msg(Range.fingerprint(BOUND_MAX, fp)))
    last = encode_message(msg())
    hex_text = re.sub(r"\s+", "", docs)
    for data in (fingerprint(0, 0), fp, first, last):
        assert data.hex() in hex_text, data.hex(" ")


def test_a_peer_inventing_ids_cannot_grow_a_session_without_bound() -> None:
    # Every round the peer lists 7,168 ids nobody has, and asks again so the session goes
    # on: the machine stops once it has reported differences_max ids.
    rng = random.Random(1)
    limits = ReconcileLimits(differences_max=20_000)
    reconciler = Reconciler(
        MemoryItemSet([(i, rng.randbytes(32)) for i in range(100)]), limits=limits
    )
    reported = 0
    while not reconciler.done:
        ids = tuple(sorted(rng.randbytes(32) for _ in range(IDS_MAX)))
        message = Message(
            ranges=(
                Range.id_diff((10**6, b""), ids),
                Range.fingerprint(BOUND_MAX, b"\0" * 16),
            ),
            version=VERSION,
        )
        reported += len(reconciler.receive(message).need)
    assert reconciler.exhausted
    assert reported < limits.differences_max + IDS_MAX
    assert reconciler.rounds <= limits.differences_max // IDS_MAX + 1
