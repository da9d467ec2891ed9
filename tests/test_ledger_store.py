"""LedgerStore: the durable ledger replica, on both KV backends, and its crash safety."""

import dataclasses
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from protocol.accounts import AccountKey
from protocol.certs import Certificate, VerifiedRoots, Vote, certify, verify_certificate
from protocol.genesis import encode_genesis, platform_token
from protocol.ledger import ConflictingOrder, OrderRefused, Overlay, Replica
from protocol.orders import PLATFORM_TOKEN, SignedOrder
from storage.errors import DamagedRecord, LedgerError, StoreError, WrongNetwork
from storage.keys import META_LEDGER_GENESIS, Prefix, key, meta_key, u64
from storage.kv import KV, Batch, LevelDBKV, MemoryKV
from storage.ledger import HISTORY_LIMIT_MAX, LedgerStore
from storage.messages import MessageLog
from storage.stores import Stores
from tests import ledger_crash_worker as crash_worker
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    Net,
    make_genesis,
)
from tests.ledger_helpers import (
    key as account_key,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelDBKV(str(tmp_path / "db"))
    yield store
    store.close()


def open_ledger(kv: KV) -> LedgerStore:
    return LedgerStore(kv, MessageLog(kv))


def started(kv: KV, net: Net) -> LedgerStore:
    ledger = open_ledger(kv)
    ledger.init_genesis(encode_genesis(net.genesis))
    return ledger


def apply(ledger: LedgerStore, certs: list[Certificate], replica: Replica | None = None) -> Overlay:
    overlay = (replica or Replica()).apply(ledger, certs)
    ledger.commit(overlay)
    return overlay


def dump(kv: KV) -> dict[bytes, bytes]:
    """Every key and value the KV holds."""
    return dict(kv.iterate(b""))


def snapshot(kv: KV) -> tuple[Any, ...]:
    """The ledger state in the shape of :meth:`MemoryLedger.snapshot`, read from the keys."""

    def entries(p: Prefix) -> list[tuple[bytes, bytes]]:
        return [(k[1:], v) for k, v in kv.iterate(key(p))]

    def number(raw: bytes) -> int:
        return int.from_bytes(raw, "big")

    return (
        sorted((k, number(v)) for k, v in entries(Prefix.LEDGER_SEQ)),
        sorted(((k[:32], k[32:]), number(v)) for k, v in entries(Prefix.LEDGER_BALANCE)),
        sorted(entries(Prefix.LEDGER_TOKEN)),
        sorted(((k[:32], number(k[32:])), v) for k, v in entries(Prefix.LEDGER_SLOT)),
    )


def scenario(net: Net) -> list[Certificate]:
    """A transfer, a tip, a new token, a swap and a token transfer, in the order they apply."""
    transfer = net.settle(net.transfer(ALICE, BOB, 10))
    tip = net.settle(net.transfer(ALICE, CAROL, 5, seq=1, memo=b"\x07" * 32))
    fan = net.settle(net.create_token(BOB, 0, supply=100))
    traded = net.settle(net.swap((ALICE, 2, PLATFORM_TOKEN, 50), (BOB, 1, fan.order_id, 20)))
    gift = net.settle(net.transfer(ALICE, CAROL, 3, seq=3, token=fan.order_id))
    return [transfer, tip, fan, traded, gift]


# Genesis


def test_init_genesis_writes_the_genesis_state(kv: KV) -> None:
    net = Net()
    ledger = open_ledger(kv)
    assert ledger.genesis() is None and ledger.network() is None
    raw = encode_genesis(net.genesis)
    ledger.init_genesis(raw)
    assert ledger.genesis() == raw
    assert ledger.network() == net.network
    assert snapshot(kv) == net.ledger().snapshot()
    assert ledger.balances(ALICE.public_key) == {PLATFORM_TOKEN: 1000}
    assert ledger.tokens() == [(PLATFORM_TOKEN, platform_token(net.genesis))]
    assert ledger.next_seq(ALICE.public_key) == 0
    assert list(ledger.certificates()) == []
    assert open_ledger(kv).network() == net.network  # read back by another handle


def test_init_genesis_again_changes_nothing(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    apply(ledger, [net.settle(net.transfer(ALICE, BOB, 10))])
    before = dump(kv)
    ledger.init_genesis(encode_genesis(net.genesis))
    open_ledger(kv).init_genesis(encode_genesis(net.genesis))
    assert dump(kv) == before


def test_invalid_genesis_of_another_network(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    before = dump(kv)
    other = encode_genesis(make_genesis(name="othernet"))
    with pytest.raises(WrongNetwork, match=f"belongs to network {net.network.hex()}, not"):
        open_ledger(kv).init_genesis(other)
    assert dump(kv) == before
    assert ledger.network() == net.network


def test_invalid_genesis_bytes(kv: KV) -> None:
    with pytest.raises(LedgerError, match="not a genesis"):
        open_ledger(kv).init_genesis(b"\x80")
    assert dump(kv) == {}


def test_invalid_state_without_genesis(kv: KV) -> None:
    batch = Batch()
    batch.put(key(Prefix.LEDGER_BALANCE, ALICE.public_key, PLATFORM_TOKEN), u64(5))
    kv.write(batch)
    with pytest.raises(DamagedRecord, match="no genesis"):
        open_ledger(kv).init_genesis(encode_genesis(Net().genesis))
    assert open_ledger(kv).genesis() is None


# Applying certificates


def test_apply_certificates(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    certs = scenario(net)
    overlay = apply(ledger, list(reversed(certs)))  # a replica buffers the early ones
    assert {c.order_id for c in overlay.applied} == {c.order_id for c in certs}
    assert snapshot(kv) == net.ledgers[0].snapshot()
    fan = certs[2].order_id
    assert ledger.balances(ALICE.public_key) == {PLATFORM_TOKEN: 1000 - 10 - 5 - 50, fan: 17}
    assert ledger.balances(BOB.public_key) == {PLATFORM_TOKEN: 1060, fan: 80}
    assert ledger.balances(CAROL.public_key) == {PLATFORM_TOKEN: 1005, fan: 3}
    assert ledger.next_seq(ALICE.public_key) == 4
    assert ledger.next_seq(BOB.public_key) == 2
    assert ledger.certified(BOB.public_key, 1) == certs[3].order_id
    info = ledger.token(fan)
    assert info is not None and info.creator == BOB.public_key and info.supply == 100
    assert [t for t, _ in ledger.tokens()] == sorted([PLATFORM_TOKEN, fan])
    for cert in certs:
        assert ledger.applied(cert.order_id)
        assert ledger.certificate(cert.order_id) == cert.raw
    assert ledger.certificate(b"\x01" * 32) is None
    assert list(ledger.certificates()) == [c.raw for c in overlay.applied]


def test_history_newest_first_with_paging(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    certs = scenario(net)
    apply(ledger, certs)
    raws = [c.raw for c in certs]
    assert ledger.history(ALICE.public_key) == raws[::-1][0:2] + raws[::-1][3:]
    assert ledger.history(BOB.public_key) == [raws[3], raws[2], raws[0]]  # sent, created, got
    assert ledger.history(CAROL.public_key) == [raws[4], raws[1]]
    assert ledger.history(ALICE.public_key, limit=2) == [raws[4], raws[3]]
    assert ledger.history(ALICE.public_key, limit=2, before=certs[3].order_id) == [
        raws[1],
        raws[0],
    ]
    assert ledger.history(ALICE.public_key, before=certs[0].order_id) == []
    assert ledger.history(account_key("nobody").public_key) == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda ledger: ledger.history(ALICE.public_key, limit=0), ValueError),
        (lambda ledger: ledger.history(ALICE.public_key, limit=HISTORY_LIMIT_MAX + 1), ValueError),
        (lambda ledger: ledger.history(ALICE.public_key[:31]), ValueError),
        (lambda ledger: ledger.history(ALICE.public_key, before=b"\x01" * 32), LedgerError),
        (lambda ledger: ledger.balances(ALICE.public_key + b"\x00"), ValueError),
    ],
)
def test_invalid_queries(call: Callable[[LedgerStore], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        call(started(MemoryKV(), Net()))


def test_reopened_leveldb_holds_the_same_ledger(tmp_path: Path) -> None:
    net = Net()
    certs = scenario(net)
    with LevelDBKV(str(tmp_path / "db")) as kv:
        apply(started(kv, net), certs)
        before = dump(kv)
    with LevelDBKV(str(tmp_path / "db")) as kv:
        ledger = open_ledger(kv)
        assert dump(kv) == before
        assert snapshot(kv) == net.ledgers[0].snapshot()
        assert ledger.network() == net.network
        assert list(ledger.certificates()) == [c.raw for c in certs]
        assert ledger.history(CAROL.public_key) == [certs[4].raw, certs[1].raw]


def test_stage_joins_the_callers_batch(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    cert = net.settle(net.transfer(ALICE, BOB, 10))
    overlay = Replica().apply(ledger, [cert])
    batch = Batch()
    batch.put(key(Prefix.CONFIG, b"other"), b"change")
    ledger.stage(batch, overlay)
    assert ledger.balance(BOB.public_key, PLATFORM_TOKEN) == 1000  # not written yet
    assert not ledger.applied(cert.order_id)
    kv.write(batch)
    assert ledger.balance(BOB.public_key, PLATFORM_TOKEN) == 1010
    assert ledger.certificate(cert.order_id) == cert.raw
    assert kv.get(key(Prefix.CONFIG, b"other")) == b"change"


def test_a_spent_balance_is_deleted(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    apply(ledger, [net.settle(net.transfer(ALICE, BOB, 1000))])
    assert ledger.balances(ALICE.public_key) == {}
    assert kv.get(key(Prefix.LEDGER_BALANCE, ALICE.public_key, PLATFORM_TOKEN)) is None
    assert ledger.balance(ALICE.public_key, PLATFORM_TOKEN) == 0


def test_invalid_stale_overlay_is_refused(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    overlay = Replica().apply(ledger, [net.settle(net.transfer(ALICE, BOB, 10))])
    ledger.commit(overlay)
    before = dump(kv)
    batch = Batch()
    with pytest.raises(LedgerError, match="already applied"):
        ledger.stage(batch, overlay)
    assert len(batch) == 0 and dump(kv) == before


def test_invalid_overlay_values_stage_nothing(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    cert = net.settle(net.transfer(ALICE, BOB, 10))
    cases: list[Callable[[Overlay], None]] = [
        lambda o: o.balances.__setitem__((ALICE.public_key, PLATFORM_TOKEN), -1),
        lambda o: o.balances.__setitem__((ALICE.public_key, PLATFORM_TOKEN), 2**63),
        lambda o: o.seqs.__setitem__(ALICE.public_key[:31], 1),
        lambda o: o.applied.append(dataclasses.replace(cert, raw=b"not a certificate")),
    ]
    for spoil in cases:
        overlay = Replica().apply(ledger, [cert])
        spoil(overlay)
        batch = Batch()
        with pytest.raises(LedgerError):
            ledger.stage(batch, overlay)
        assert len(batch) == 0


# Validator locks


def test_locks_are_stored_before_votes_and_dropped_when_applied(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    validator = net.validators[0]
    first = net.transfer(ALICE, BOB, 10)
    results, locks = validator.vote(ledger, ledger, [first])
    assert not isinstance(results[0], OrderRefused)
    batch = Batch()
    ledger.stage_locks(batch, locks)
    kv.write(batch, sync=True)
    assert ledger.lock(ALICE.public_key, 0) == first.id
    again = open_ledger(kv)  # what a restarted validator reads
    other = net.transfer(ALICE, CAROL, 10)
    (refused,), _ = validator.vote(again, again, [other])
    assert isinstance(refused, ConflictingOrder)
    apply(ledger, [net.settle(first)])
    assert ledger.lock(ALICE.public_key, 0) is None


def test_invalid_lock_for_another_order(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    batch = Batch()
    ledger.stage_locks(batch, {(ALICE.public_key, 0): b"\x01" * 32})
    kv.write(batch, sync=True)
    batch = Batch()
    with pytest.raises(LedgerError, match="is locked for order"):
        ledger.stage_locks(
            batch, {(BOB.public_key, 0): b"\x03" * 32, (ALICE.public_key, 0): b"\x02" * 32}
        )
    assert len(batch) == 0
    ledger.stage_locks(batch, {(ALICE.public_key, 0): b"\x01" * 32})  # the same lock again
    assert len(batch) == 1


def test_locks_below_the_next_sequence_number_are_skipped(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    apply(ledger, [net.settle(net.transfer(ALICE, BOB, 10))])
    batch = Batch()
    ledger.stage_locks(batch, {(ALICE.public_key, 0): b"\x01" * 32})
    assert len(batch) == 0


# Certificates in the message log


def test_certificates_are_sync_items(kv: KV) -> None:
    net = Net()
    ledger = started(kv, net)
    certs = scenario(net)
    apply(ledger, certs)
    log = MessageLog(kv)
    assert sorted(log.items()) == sorted((c.created_ms, c.order_id) for c in certs)
    for cert in certs:
        assert log.get(cert.order_id) == cert.raw
        assert log.created_ms(cert.order_id) == cert.created_ms
    batch = Batch()
    assert not log.stage_certificate(batch, certs[0])  # already held
    assert len(batch) == 0


def test_invalid_certificate_bytes_are_not_logged(kv: KV) -> None:
    net = Net()
    cert = net.settle(net.transfer(ALICE, BOB, 10))
    batch = Batch()
    with pytest.raises(StoreError, match="not certificate bytes"):
        MessageLog(kv).stage_certificate(batch, dataclasses.replace(cert, raw=b"\x85\xa4body"))
    assert len(batch) == 0


# Damaged records


A, P = ALICE.public_key, PLATFORM_TOKEN
Certs = list[Certificate]


@dataclasses.dataclass(frozen=True)
class Damage:
    """The entry at ``where`` becomes ``spoil(its value, the certificates, kv.get)`` (None:
    deleted), then ``read`` must raise :class:`DamagedRecord`."""

    name: str
    where: Callable[[Certs], bytes]
    spoil: Callable[[bytes | None, Certs, Callable[[bytes], bytes | None]], bytes | None]
    read: Callable[[LedgerStore, Certs], object]


def _message(n: int) -> Callable[[Certs], bytes]:
    return lambda c: key(Prefix.MESSAGE, c[n].order_id)


DAMAGES = [
    Damage(
        "short balance",
        lambda c: key(Prefix.LEDGER_BALANCE, A, P),
        lambda old, c, get: b"\x00" * 7,
        lambda s, c: s.balance(A, P),
    ),
    Damage(
        "balance above the supply limit",
        lambda c: key(Prefix.LEDGER_BALANCE, A, P),
        lambda old, c, get: b"\xff" * 8,
        lambda s, c: s.balances(A),
    ),
    Damage(
        "token junk",
        lambda c: key(Prefix.LEDGER_TOKEN, P),
        lambda old, c, get: b"junk",
        lambda s, c: s.token(P),
    ),
    Damage(
        "token with a trailing byte",
        lambda c: key(Prefix.LEDGER_TOKEN, c[2].order_id),
        lambda old, c, get: (old or b"") + b"\x00",
        lambda s, c: s.tokens(),
    ),
    Damage(
        "short sequence number",
        lambda c: key(Prefix.LEDGER_SEQ, A),
        lambda old, c, get: b"\x01",
        lambda s, c: s.next_seq(A),
    ),
    Damage(
        "short slot",
        lambda c: key(Prefix.LEDGER_SLOT, A, u64(0)),
        lambda old, c, get: b"\x01" * 31,
        lambda s, c: s.certified(A, 0),
    ),
    Damage(
        "short lock",
        lambda c: key(Prefix.LEDGER_LOCK, A, u64(9)),
        lambda old, c, get: b"\x01",
        lambda s, c: s.lock(A, 9),
    ),
    Damage(
        "genesis junk",
        lambda c: meta_key(META_LEDGER_GENESIS),
        lambda old, c, get: b"junk",
        lambda s, c: s.network(),
    ),
    Damage(
        "certificate of another order",
        _message(0),
        lambda old, c, get: get(key(Prefix.MESSAGE, c[1].order_id)),
        lambda s, c: s.certificate(c[0].order_id),
    ),
    Damage(
        "certificate cut short",
        _message(1),
        lambda old, c, get: (old or b"")[:-1],
        lambda s, c: s.history(CAROL.public_key),
    ),
    Damage(
        "certificate gone",
        _message(1),
        lambda old, c, get: None,
        lambda s, c: list(s.certificates()),
    ),
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.name for d in DAMAGES])
def test_damaged_record_raises_on_read(kv: KV, damage: Damage) -> None:
    net = Net()
    certs = scenario(net)
    apply(started(kv, net), certs)
    where = damage.where(certs)
    value = damage.spoil(kv.get(where), certs, kv.get)
    batch = Batch()
    if value is None:
        batch.delete(where)
    else:
        batch.put(where, value)
    kv.write(batch)
    with pytest.raises(DamagedRecord):
        damage.read(open_ledger(kv), certs)


# Stores


def test_stores_has_the_ledger(tmp_path: Path) -> None:
    net = Net()
    with Stores.open(tmp_path / "db") as stores:
        stores.ledger.init_genesis(encode_genesis(net.genesis))
        apply(stores.ledger, scenario(net))
    with Stores.open(tmp_path / "db") as stores:
        assert stores.ledger.network() == net.network
        assert snapshot(stores.kv) == net.ledgers[0].snapshot()
        assert stores.messages.count() == 5


# A long stream, delivered in any order; and crash recovery.

STREAM_ACCOUNTS = [account_key(f"stream account {i}") for i in range(8)]


def stream_net() -> Net:
    return Net(make_genesis(holders=[(k, 1_000_000) for k in STREAM_ACCOUNTS]))


def random_order(net: Net, rng: random.Random, free: list[AccountKey], serial: int) -> SignedOrder:
    """An order the validators accept, from an account of ``free`` (taken out of it)."""
    state = net.ledgers[0]
    sender = free.pop()
    seq = state.next_seq(sender.public_key)

    def held(k: AccountKey) -> list[tuple[bytes, int]]:
        return sorted((t, v) for (a, t), v in state.balances.items() if a == k.public_key and v > 0)

    mine = held(sender)
    roll = rng.random()
    if not mine or roll < 0.1:
        return net.create_token(sender, seq, supply=rng.randint(1, 10**6), symbol=f"T{serial}")
    token, balance = rng.choice(mine)
    amount = rng.randint(1, max(1, balance // 4))
    if roll < 0.3 and free:
        other = free[-1]
        theirs = [(t, v) for t, v in held(other) if t != token]
        if theirs:
            free.pop()
            their_token, their_balance = rng.choice(theirs)
            their_amount = rng.randint(1, max(1, their_balance // 4))
            other_seq = state.next_seq(other.public_key)
            theirs_side = (other, other_seq, their_token, their_amount)
            return net.swap((sender, seq, token, amount), theirs_side)
    recipient = rng.choice([k for k in STREAM_ACCOUNTS if k is not sender])
    return net.transfer(
        sender, recipient, amount, seq=seq, token=token, memo=rng.randbytes(rng.randint(0, 8))
    )


def build_stream(net: Net, count: int, seed: int) -> list[Certificate]:
    """``count`` or more certificates, in an order they apply in, voted for in batches (one
    signature per validator per batch) of orders from distinct accounts."""
    rng = random.Random(seed)
    serial = itertools.count()
    certs: list[Certificate] = []
    while len(certs) < count:
        free = list(STREAM_ACCOUNTS)
        rng.shuffle(free)
        batch = [
            random_order(net, rng, free, next(serial)) for _ in range(rng.randint(1, 4)) if free
        ]
        results = [net.vote(index, batch) for index in (0, 1, 2)]
        made = []
        for i, signed in enumerate(batch):
            votes = [vote for r in results if isinstance(vote := r[i], Vote)]
            assert len(votes) == len(results), [r[i] for r in results]
            made.append(net.check(certify(net.committee, signed, votes).raw))
        net.apply_all(made)
        certs.extend(made)
    return certs


def test_a_stream_in_any_order_gives_the_same_ledger(kv: KV) -> None:
    net = stream_net()
    certs = build_stream(net, 120, seed=1)
    ledger = started(kv, net)
    rng = random.Random(2)
    shuffled = list(certs)
    rng.shuffle(shuffled)
    replica = Replica()
    while shuffled:
        count = rng.randint(1, 30)
        group, shuffled = shuffled[:count], shuffled[count:]
        apply(ledger, group, replica)
    assert replica.pending == 0
    assert snapshot(kv) == net.ledgers[0].snapshot()
    assert sorted(ledger.certificates()) == sorted(c.raw for c in certs)


KILLS_MIN = 20
RUNS_MAX = 80
STREAM_CERTIFICATES = 300
EARLY_KILLS = 1 / 3
"""The share of kills timed from the worker's start (many land while it opens the store);
the others land during its commits."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """A full run of the worker over an empty store: seconds to its first commit, in all."""

    first_commit_s: float
    total_s: float


def assert_replays(kv: KV, roots: VerifiedRoots, net: Net) -> int:
    """Assert that the ledger in ``kv`` equals the replay of its own certificates from its
    genesis into a fresh memory store, key for key; return how many it holds."""
    stored = open_ledger(kv)
    held = dump(kv)
    genesis = stored.genesis()
    if genesis is None:
        assert held == {}, "ledger state without a genesis"
        return 0
    fresh_kv = MemoryKV()
    fresh = open_ledger(fresh_kv)
    fresh.init_genesis(genesis)
    certs = [verify_certificate(raw, net.committee, roots) for raw in stored.certificates()]
    overlay = apply(fresh, certs)
    assert len(overlay.applied) == len(certs) and not overlay.conflicts
    assert dump(fresh_kv) == held
    return len(certs)


def replayed_equals_stored(db: Path, roots: VerifiedRoots, net: Net) -> int:
    """:func:`assert_replays` on the LevelDB at ``db``."""
    with LevelDBKV(str(db)) as kv:
        return assert_replays(kv, roots, net)


class Crash(Exception):
    """The simulated end of a process, between two writes."""


class CrashingKV(MemoryKV):
    """A MemoryKV whose process "dies" (:class:`Crash`, nothing written) once
    ``writes_left`` more writes were made; None: never."""

    writes_left: int | None = None

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        if self.writes_left is not None:
            if self.writes_left == 0:
                raise Crash
            self.writes_left -= 1
        super().write(batch, sync=sync)


def test_a_crash_between_any_two_writes_leaves_a_replayable_ledger() -> None:
    """The crash worker's loop, in process, stopped after a seeded number of writes: unlike
    a SIGKILL, this lands between every two writes, so a change staged in two batches
    would show."""
    net = stream_net()
    certs = build_stream(net, 120, seed=4)
    genesis, raws = encode_genesis(net.genesis), [c.raw for c in certs]
    kv, roots, rng = CrashingKV(), VerifiedRoots(), random.Random(5)
    held = crashes = 0
    while True:
        kv.writes_left = rng.randint(0, 3)
        try:
            assert crash_worker.run(open_ledger(kv), genesis, raws, rng) == 0
            break
        except Crash:
            crashes += 1
        now_held = assert_replays(kv, roots, net)
        assert now_held >= held
        held = now_held
    assert crashes >= KILLS_MIN
    assert assert_replays(kv, roots, net) == len(certs)
    assert snapshot(kv) == net.ledgers[0].snapshot()


def start_worker(db: Path, stream: Path, seed: int) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_crash_worker", str(db), str(stream), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def time_full_run(db: Path, stream: Path) -> Timing:
    started_s = time.monotonic()
    proc = start_worker(db, stream, 0)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_commit_s = time.monotonic() - started_s
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and first.startswith("applied"), err
    return Timing(first_commit_s, time.monotonic() - started_s)


def kill_at_random(proc: "subprocess.Popen[str]", rng: random.Random, timing: Timing) -> bool:
    """SIGKILL ``proc`` at a random moment of its run (see EARLY_KILLS); return whether the
    kill landed before it exited."""
    assert proc.stdout is not None
    if rng.random() < EARLY_KILLS:
        time.sleep(rng.uniform(0.0, timing.total_s))
    else:
        proc.stdout.readline()  # its first commit (or its end)
        time.sleep(rng.uniform(0.0, timing.total_s - timing.first_commit_s))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


@pytest.mark.slow
def test_sigkill_while_applying_leaves_a_replayable_ledger(tmp_path: Path) -> None:
    """The worker is killed and started again over one store until it has applied the whole
    stream, then over a fresh store, until KILLS_MIN kills landed; after every run the store
    must equal the replay of the certificates it holds, and never hold fewer."""
    seed = int(os.environ.get("TOKTOK_CRASH_SEED", "0")) or random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    print(f"reproduce with TOKTOK_CRASH_SEED={seed}")
    net = stream_net()
    certs = build_stream(net, STREAM_CERTIFICATES, seed=3)
    stream = tmp_path / "stream"
    stream.write_bytes(msgpack.packb([encode_genesis(net.genesis), [c.raw for c in certs]]))
    timing = time_full_run(tmp_path / "timing", stream)
    roots = VerifiedRoots()
    kills = held = stores = 0
    db = tmp_path / "db-0"
    for _ in range(RUNS_MAX):
        if kills >= KILLS_MIN and held == len(certs):
            break
        if held == len(certs):
            stores += 1
            db, held = tmp_path / f"db-{stores}", 0
        proc = start_worker(db, stream, rng.randrange(2**32))
        kills += kill_at_random(proc, rng, timing) if kills < KILLS_MIN else 0
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), f"worker failed (seed {seed}): {err}"
        now_held = replayed_equals_stored(db, roots, net)
        assert now_held >= held, f"the store lost certificates (seed {seed})"
        assert proc.returncode != 0 or now_held == len(certs), f"worker quit early (seed {seed})"
        held = now_held
    assert kills >= KILLS_MIN, f"only {kills} kills landed (seed {seed})"
    assert held == len(certs), f"the last store is incomplete (seed {seed})"
    print(f"{kills} kills over {stores + 1} stores")
    with LevelDBKV(str(db)) as kv:
        assert snapshot(kv) == net.ledgers[0].snapshot()
