"""Ledger throughput and finality: certified transfers per second on a local committee.

Run from the repository root: ``.venv/bin/python bench/ledger.py [--validators 4]
[--clients 2] [--accounts 200] [--transfers 10]``.

It writes a genesis (``toktok network init``) with ``--validators`` validators and
``--accounts`` funded bench accounts, starts the validators as node processes on
127.0.0.1 plus one node that is not a validator (the replica where finality is measured),
then ``--clients`` load-generating client processes (bench/ledger_load.py: each a real
node with its own store), which share the accounts. Every account sends ``--transfers``
transfers, one after the other (an account's orders are sequential by design); all
accounts run at once.

Figures:
- ``certified_per_s``: certificates formed, over the time from the first submission to
  the last certificate;
- ``certify_ms``: submission to certificate at the client (p50, p99);
- ``finality_ms``: submission to the certificate applied on the replica (p50, p99): the
  replica learns of it by gossip (or sync), checks its quorum and applies it;
- ``verify_per_s_per_core``: bare Ed25519 verifications per second on one core of this
  machine, measured in the same run; ``ceiling_per_s`` what it allows for the
  verifications each transfer needs: every validator checks the owner's signature, so
  ``cores * verify_per_s_per_core / validators``. A validator signs one vote per batch and
  a root once verified is cached, so votes add little per transfer under load.
  ``ratio_to_ceiling`` is ``certified_per_s / ceiling_per_s``.
- ``cores_used``: CPU the nodes and clients burnt during the run, in cores.

Every process is stopped at the end, on errors and on Ctrl-C too. The last line printed
is one JSON object with every figure.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import subprocess
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import nacl.bindings
from rich.progress import Progress

from bench.gossip import arrivals, percentile
from bench.idle import cpu_seconds, measured, start_into, stop_all
from protocol.accounts import AccountKey
from tests.cli_helpers import toktok_env
from tests.ledgernet import linked, network_dir, prepare_ledger_homes
from tests.netharness import NodeProc, init_home, wait_for

GOALS = {"certified_per_s": 1000, "finality_p50_ms": 50, "finality_p99_ms": 250, "ratio": 0.5}
ALLOCATION = 10**12
LOAD = Path(__file__).resolve().parent / "ledger_load.py"


def crypto_rates(seconds: float = 1.0) -> tuple[float, float]:
    """Bare Ed25519 verifications and signatures per second on one core (libsodium)."""
    key = AccountKey(os.urandom(32))
    message = os.urandom(200)
    signed = key.sign(message) + message
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            nacl.bindings.crypto_sign_open(signed, key.public_key)
        count += 100
    verify = count / (time.perf_counter() - start)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        for _ in range(100):
            key.sign(message)
        count += 100
    return verify, count / (time.perf_counter() - start)


def prepare(root: Path, validators: int, seeds: Sequence[bytes]) -> tuple[list[Path], Path]:
    """Homes of the validators and the replica, and the genesis funding ``seeds``' accounts."""
    allocs = [(AccountKey(seed).account_id, ALLOCATION) for seed in seeds]
    homes = prepare_ledger_homes(root, validators + 1, validators, extra_allocs=allocs)
    return homes, network_dir(root) / "genesis.bin"


def start_clients(
    root: Path,
    count: int,
    seeds: Sequence[bytes],
    args: argparse.Namespace,
    genesis: Path,
    bootstrap: str,
) -> list[tuple[subprocess.Popen[str], Path]]:
    clients = []
    for c in range(count):
        home = init_home(root / f"c{c}")
        mine = [s.hex() for i, s in enumerate(seeds) if i % count == c]
        seeds_file = root / f"c{c}.seeds.json"
        seeds_file.write_text(json.dumps(mine))
        out = root / f"c{c}.out.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                str(LOAD),
                "--home",
                str(home),
                "--genesis",
                str(genesis),
                "--bootstrap",
                bootstrap,
                "--seeds",
                str(seeds_file),
                "--transfers",
                str(args.transfers),
                "--validators",
                str(args.validators),
                "--out",
                str(out),
                *(["--profile", f"{args.profile}.{c}"] if args.profile and c == 0 else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=toktok_env(),
            start_new_session=True,
        )
        clients.append((proc, out))
    for proc, _ in clients:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if '"ready"' not in line:
            raise RuntimeError("a load client did not start")
    return clients


def stop_clients(clients: Sequence[tuple[subprocess.Popen[str], Path]]) -> None:
    for proc, _ in clients:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def measure(args: argparse.Namespace, root: Path, bar: Progress) -> dict[str, Any]:
    verify_per_s, sign_per_s = crypto_rates()
    seeds = [os.urandom(32) for _ in range(args.accounts)]
    homes, genesis = prepare(root, args.validators, seeds)
    nodes: list[NodeProc] = []
    clients: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        task = bar.add_task("nodes", total=len(homes))
        for home in homes:
            start_into(nodes, home, [nodes[0].addr] if nodes else [])
            bar.advance(task)
        for i, node in enumerate(nodes):
            others = args.validators - 1 if i < args.validators else args.validators
            wait_for(partial(linked, node, others), timeout_s=60, what="validator links")
        clients = start_clients(root, args.clients, seeds, args, genesis, nodes[0].addr)
        cpu_before = sum(cpu_seconds(n.proc.pid) for n in nodes)
        wall_before = time.monotonic()
        for proc, _ in clients:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        total = args.accounts * args.transfers
        task = bar.add_task("transfers", total=args.clients)
        for proc, _ in clients:
            proc.wait(timeout=args.deadline_s)
            bar.advance(task)
        nodes_cpu_s = sum(cpu_seconds(n.proc.pid) for n in nodes) - cpu_before
        wall = time.monotonic() - wall_before
        outputs = [json.loads(out.read_text()) for _, out in clients]
        clients_cpu_s = sum(float(output["cpu_s"]) for output in outputs)
        orders = [tuple(o) for output in outputs for o in output["orders"]]
        failures = [f for output in outputs for f in output["failures"]]
        replica = nodes[args.validators].client()
        ids = [str(o[0]) for o in orders]
        applied: dict[str, int | None] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            applied = arrivals(replica, ids)
            if all(v is not None for v in applied.values()):
                break
            time.sleep(0.5)
    finally:
        stop_clients(clients)
        stop_all(nodes)
    submitted = [int(o[1]) for o in orders]
    certified = [int(o[2]) for o in orders]
    span_s = (max(certified) - min(submitted)) / 1000 if orders else float("nan")
    finality = []
    for oid, sent, _ in orders:
        done = applied.get(str(oid))
        if done is not None:
            finality.append(done - int(sent))
    rate = len(orders) / span_s if orders else 0.0
    cores = os.cpu_count() or 1
    ceiling = cores * verify_per_s / args.validators
    return {
        "validators": args.validators,
        "clients": args.clients,
        "accounts": args.accounts,
        "transfers_asked": total,
        "certified": len(orders),
        "failures": len(failures),
        "failure_sample": failures[:3],
        "certified_per_s": round(rate, 1),
        "certify_p50_ms": percentile([c - s for _, s, c in orders], 50) if orders else None,
        "certify_p99_ms": percentile([c - s for _, s, c in orders], 99) if orders else None,
        "finality_p50_ms": percentile(finality, 50) if finality else None,
        "finality_p99_ms": percentile(finality, 99) if finality else None,
        "not_applied_at_replica": len(orders) - len(finality),
        "verify_per_s_per_core": round(verify_per_s),
        "sign_per_s_per_core": round(sign_per_s),
        "cores": cores,
        "verifications_per_transfer": args.validators,
        "ceiling_per_s": round(ceiling),
        "ratio_to_ceiling": round(rate / ceiling, 3),
        "nodes_cores_used": round(nodes_cpu_s / wall, 2),
        "clients_cores_used": round(clients_cpu_s / wall, 2),
        "cpu_ms_per_transfer": round(1000 * (nodes_cpu_s + clients_cpu_s) / max(1, len(orders)), 2),
        "goals": GOALS,
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['certified']} of {r['transfers_asked']} transfers certified ({r['failures']} failed)"
        f" by {r['validators']} validators, {r['clients']} clients, {r['accounts']} accounts"
    )
    print(
        f"certified/s {r['certified_per_s']} (goal >= {GOALS['certified_per_s']});"
        f" certify p50 {r['certify_p50_ms']} ms p99 {r['certify_p99_ms']} ms"
    )
    print(
        f"finality at a replica p50 {r['finality_p50_ms']} ms (goal <= 50),"
        f" p99 {r['finality_p99_ms']} ms (goal <= 250); not applied {r['not_applied_at_replica']}"
    )
    print(
        f"Ed25519 verify/s per core {r['verify_per_s_per_core']}; ceiling {r['ceiling_per_s']}/s"
        f" for {r['verifications_per_transfer']} verifications per transfer on {r['cores']} cores;"
        f" ratio {r['ratio_to_ceiling']} (goal >= 0.5)"
    )
    print(
        f"cores used: nodes {r['nodes_cores_used']}, clients {r['clients_cores_used']};"
        f" CPU per transfer {r['cpu_ms_per_transfer']} ms, all processes"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--transfers", type=int, default=10, help="per account")
    parser.add_argument("--deadline-s", type=float, default=300)
    parser.add_argument("--profile", default="", help="cProfile the first client into FILE.0")
    args = parser.parse_args(argv)
    if args.accounts < 2 * args.clients:
        parser.error("--accounts: at least 2 per client (each sends to the others)")
    result = measured("ledger", args, measure)
    report(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
