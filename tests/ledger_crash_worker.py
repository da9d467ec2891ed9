"""A ledger replica process for the crash test in tests/test_ledger_store.py.

Usage: ``python -m tests.ledger_crash_worker DB STREAM SEED``

Opens the LevelDB at DB, starts its ledger from the genesis in STREAM (a file holding
msgpack ``[genesis bytes, [certificate bytes, ...]]``) and applies every certificate the
store does not hold yet. It delivers them to a :class:`~protocol.ledger.Replica` shuffled
within small windows (so some wait for a predecessor or a credit) in groups of one to four,
and commits each group's overlay in one batch, printing ``applied N`` (N: certificates
stored) after each commit and ``done`` at the end. Killed at any moment, it is started
again and carries on from what the store holds.

Exit status: 0 when everything is applied; 2 when a certificate conflicts or does not
apply (which the test reports as a failure).
"""

import random
import sys
from pathlib import Path

import msgpack

from protocol.certs import (
    CERTIFICATE_BYTES_MAX,
    Certificate,
    CertificateWire,
    VerifiedRoots,
    verify_certificate,
)
from protocol.codec import decode_record
from protocol.genesis import committee_of, decode_genesis
from protocol.ledger import Replica
from protocol.orders import order_id
from storage.kv import LevelDBKV
from storage.ledger import LedgerStore
from storage.messages import MessageLog

GROUP_MAX = 4
"""The most certificates delivered to the replica at once."""
WINDOW = 6
"""Certificates are shuffled within consecutive windows of this many."""


def wire_order_id(raw: bytes) -> bytes:
    """The order id a certificate names, read without checking its votes."""
    wire = decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
    return order_id(wire.kind, wire.order)


def delivery_order(certs: list[Certificate], rng: random.Random) -> list[Certificate]:
    """``certs`` shuffled within consecutive windows of WINDOW."""
    out: list[Certificate] = []
    for start in range(0, len(certs), WINDOW):
        window = certs[start : start + WINDOW]
        rng.shuffle(window)
        out.extend(window)
    return out


def run(ledger: LedgerStore, genesis: bytes, raws: list[bytes], rng: random.Random) -> int:
    """Apply what ``ledger`` lacks of ``raws``; return the exit status."""
    ledger.init_genesis(genesis)
    committee = committee_of(decode_genesis(genesis))
    roots = VerifiedRoots()
    todo = [raw for raw in raws if not ledger.applied(wire_order_id(raw))]
    certs = [verify_certificate(raw, committee, roots) for raw in todo]
    stored = len(raws) - len(todo)
    replica = Replica()
    deliver = delivery_order(certs, rng)
    while deliver:
        count = rng.randint(1, GROUP_MAX)
        group, deliver = deliver[:count], deliver[count:]
        overlay = replica.apply(ledger, group)
        if overlay.conflicts:
            print(f"conflict: {overlay.conflicts[0]}", file=sys.stderr)
            return 2
        if overlay.applied:
            ledger.commit(overlay)
            stored += len(overlay.applied)
            print(f"applied {stored}", flush=True)
    if replica.pending:
        print(f"{replica.pending} certificates never applied", file=sys.stderr)
        return 2
    print("done", flush=True)
    return 0


def main(argv: list[str]) -> int:
    db, stream, seed = argv
    genesis, raws = msgpack.unpackb(Path(stream).read_bytes())
    with LevelDBKV(db) as kv:
        return run(LedgerStore(kv, MessageLog(kv)), genesis, raws, random.Random(int(seed)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
