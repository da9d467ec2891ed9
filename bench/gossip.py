"""Gossip propagation: how long a manifest takes to reach every node of a local network.

Run from the repository root: ``.venv/bin/python bench/gossip.py [--nodes 20]
[--messages 100] [--interval-ms 50] [--source all|one] [--kind manifest|follow]``.

It starts ``--nodes`` node processes on 127.0.0.1 (tests/netharness.py), the first the
others' bootstrap node, and waits until every node has at least min(N-1, 4) peers and a
warm-up manifest has reached every node (GossipSub grafts its mesh on heartbeats, so
connected is not yet meshed). It then submits ``--messages`` signed manifests (the
``submit`` route: stored and gossiped, as a client publishing from its own key would),
one every ``--interval-ms``, each to the next node in turn (``--source all``, many
publishers) or all to the first node (``--source one``). A publisher's node holds its
video: each manifest's few small chunks are put in the store of the node it is submitted
to before the nodes start, so the placement seeders that fetch it find them, as they
would in a real network. ``--kind follow`` gossips follows instead, which no node
fetches anything for: the cost of gossip alone.

Every node keeps the wall-clock time at which it applied each message (the ``arrivals``
route). The propagation time of a message to a node is its arrival there minus its
arrival at the node it was submitted to: one machine, one clock. A pair (message, node)
that has no arrival ``--deadline-s`` after the last submission is lost. Figures are over
every pair but the submitting node's own; arrivals include whatever sync delivered
(every ``sync_interval_s``), which is how a message lost by gossip would still come.

All the nodes share this machine's cores with each other, so the figures include their
contention: ``cores_used`` says how much CPU the nodes burnt from the first submission to
the last arrival, ``cpu_ms_per_message_per_node`` the same per message and node, and
``others_cores`` what everything else on the machine used meanwhile (this script's calls
included).
Every process is stopped at the end, on errors and on Ctrl-C too. The last line printed
is one JSON object with every figure.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node``, ``storage`` and ``tests`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import base64
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.progress import Progress

from bench.idle import (
    cpu_seconds,
    machine_cpu_s,
    measured,
    start_into,
    stop_all,
)
from node.controlclient import ControlClient
from node.home import Home
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal
from protocol.kinds import Follow
from tests.factories import account, fake_video, sealed_manifest
from tests.netharness import NodeProc, init_home, wait_for

P50_GOAL_MS = 50.0
P99_GOAL_MS = 150.0
PEERS_WANTED = 4
ARRIVALS_IDS_MAX = 1000
"""The ``arrivals`` route answers for at most this many ids per call."""
POLL_S = 0.5
WARMUP_INTERVAL_S = 0.2
WARMUP_DEADLINE_S = 60.0


@contextmanager
def running(homes: Sequence[Path], bar: Progress) -> Iterator[list[NodeProc]]:
    """A node over each home, the first the others' bootstrap node; all stopped at the end."""
    nodes: list[NodeProc] = []
    task = bar.add_task("start nodes", total=len(homes))
    try:
        for i, home in enumerate(homes):
            start_into(nodes, home, [nodes[0].addr] if i else [])
            bar.advance(task)
        yield nodes
    finally:
        stop_all(nodes)


def nodes_cpu_s(nodes: Sequence[NodeProc]) -> float:
    """CPU seconds the node processes have used so far, together."""
    return sum(cpu_seconds(node.proc.pid) for node in nodes)


def make_messages(count: int, tag: str, kind: str) -> list[tuple[SignedMessage, list[bytes]]]:
    """``count`` messages created now by twenty accounts: manifests, each with its small
    chunks, or follows (no chunks)."""
    created_ms = time.time_ns() // 1_000_000
    salt = os.urandom(8).hex()  # distinct messages in every run
    out: list[tuple[SignedMessage, list[bytes]]] = []
    for i in range(count):
        key = account(i % 20)
        if kind == "follow":
            target = account(1000 + i).public_key
            follow = Follow(author=key.public_key, created_ms=created_ms + i, target=target)
            out.append((seal(key, follow), []))
            continue
        chunks = fake_video(f"{tag}-{i}-{salt}".encode())
        message = sealed_manifest(key, chunks, created_ms=created_ms + i, title=f"{tag} {i}")
        out.append((message, chunks))
    return out


def put_chunks(home: Path, chunk_lists: Sequence[list[bytes]]) -> None:
    """Store chunks in a home that no node runs on yet (as its publisher's node holds them)."""
    with Home(home).open() as stores:
        for chunks in chunk_lists:
            for data in chunks:
                stores.chunks.put(chunk_id(data), data)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def arrivals(client: ControlClient, ids: Sequence[str]) -> dict[str, int | None]:
    """Wall-clock ms at which the node applied each message id (None: not yet)."""
    out: dict[str, int | None] = {}
    for start in range(0, len(ids), ARRIVALS_IDS_MAX):
        part = list(ids[start : start + ARRIVALS_IDS_MAX])
        out.update(client.call("arrivals", ids=part)["arrivals"])
    return out


def submit_paced(
    clients: Sequence[ControlClient],
    messages: Sequence[SignedMessage],
    sources: Sequence[int],
    interval_s: float,
    bar: Progress,
    what: str,
) -> None:
    """Submit each message to its source node, one every ``interval_s``, on a fixed schedule."""
    task = bar.add_task(what, total=len(messages))
    started = time.monotonic()
    for i, (message, source) in enumerate(zip(messages, sources, strict=True)):
        delay = started + i * interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        envelope = base64.b64encode(message.raw).decode("ascii")
        verdict = clients[source].call("submit", envelope=envelope)["verdict"]
        if verdict != "new":
            raise RuntimeError(f"submit of message {i} answered {verdict!r}, not 'new'")
        bar.advance(task)


def collect(
    clients: Sequence[ControlClient], ids: Sequence[str], deadline_s: float, bar: Progress
) -> list[dict[str, int | None]]:
    """Each node's arrivals of ``ids``, polled until all arrived or ``deadline_s`` passed."""
    task = bar.add_task("arrivals", total=len(clients) * len(ids))
    deadline = time.monotonic() + deadline_s
    seen: list[dict[str, int | None]] = [{} for _ in clients]
    while True:
        for i, client in enumerate(clients):
            if len(seen[i]) < len(ids) or None in seen[i].values():
                seen[i] = arrivals(client, ids)
        held = sum(v is not None for node in seen for v in node.values())
        bar.update(task, completed=held)
        if held == len(clients) * len(ids) or time.monotonic() >= deadline:
            return seen
        time.sleep(POLL_S)


def prepare_homes(
    root: Path,
    count: int,
    messages: Sequence[tuple[SignedMessage, list[bytes]]],
    sources: Sequence[int],
) -> list[Path]:
    """``count`` fresh homes, each holding the chunks of the messages submitted to it."""
    homes = [init_home(root / f"n{i}") for i in range(count)]
    for i, home in enumerate(homes):
        put_chunks(home, [c for (_, c), s in zip(messages, sources, strict=True) if s == i])
    return homes


def await_mesh(
    clients: Sequence[ControlClient],
    warmup: Sequence[SignedMessage],
    sources: Sequence[int],
    bar: Progress,
) -> None:
    """Wait until every node has its peers, then until the warm-up reached every node."""
    wanted = min(len(clients) - 1, PEERS_WANTED)
    task = bar.add_task("peers", total=len(clients))

    def enough_peers() -> bool:
        ready = sum(int(c.call("status")["peers"]) >= wanted for c in clients)
        bar.update(task, completed=ready)
        return ready == len(clients)

    wait_for(enough_peers, timeout_s=120, what=f"every node to have {wanted} peers")
    submit_paced(clients, warmup, sources, WARMUP_INTERVAL_S, bar, "warm-up")
    ids = [m.id.hex() for m in warmup]
    for i, seen in enumerate(collect(clients, ids, WARMUP_DEADLINE_S, bar)):
        if None in seen.values():
            raise RuntimeError(f"node {i} lacks warm-up messages after {WARMUP_DEADLINE_S} s")


def propagation(
    seen_all: Sequence[dict[str, int | None]], ids: Sequence[str], sources: Sequence[int]
) -> tuple[list[float], int]:
    """Propagation times in ms of every (message, other node) pair that arrived, and how
    many pairs did not."""
    pairs, lost = propagation_pairs(seen_all, ids, sources)
    return [delay for _, _, delay in pairs], lost


def propagation_pairs(
    seen_all: Sequence[dict[str, int | None]], ids: Sequence[str], sources: Sequence[int]
) -> tuple[list[tuple[int, int, float]], int]:
    """(message index, node, propagation ms) of every pair that arrived, and how many
    pairs did not."""
    pairs: list[tuple[int, int, float]] = []
    lost = 0
    for k, (mid, source) in enumerate(zip(ids, sources, strict=True)):
        origin = seen_all[source][mid]
        if origin is None:
            raise RuntimeError(f"message {mid} has no arrival at the node it was submitted to")
        for i, seen in enumerate(seen_all):
            arrived = seen.get(mid)
            if i == source:
                continue
            if arrived is None:
                lost += 1
            else:
                pairs.append((k, i, float(arrived - origin)))
    return pairs, lost


def measure(args: argparse.Namespace, root: Path, bar: Progress) -> dict[str, Any]:
    """Set up the network, warm it up, submit the measured messages; return the figures."""
    count = args.nodes
    warmup = make_messages(args.warmup, "warm-up", args.kind)
    measured = make_messages(args.messages, "gossip bench", args.kind)
    warm_sources = [i % count for i in range(len(warmup))]
    sources = [i % count if args.source == "all" else 0 for i in range(len(measured))]
    homes = prepare_homes(root, count, [*warmup, *measured], [*warm_sources, *sources])
    setup_started = time.monotonic()
    with running(homes, bar) as nodes:
        clients = [node.client() for node in nodes]
        await_mesh(clients, [m for m, _ in warmup], warm_sources, bar)
        setup_s = time.monotonic() - setup_started
        ids = [m.id.hex() for m, _ in measured]
        cpu_before, machine_before = nodes_cpu_s(nodes), machine_cpu_s()
        started = time.monotonic()
        interval_s = args.interval_ms / 1000
        submit_paced(clients, [m for m, _ in measured], sources, interval_s, bar, "submit")
        submit_s = time.monotonic() - started
        seen_all = collect(clients, ids, args.deadline_s, bar)
        cpu_s = nodes_cpu_s(nodes) - cpu_before
        others_s = machine_cpu_s() - machine_before - cpu_s
        window_s = time.monotonic() - started
        statuses = [c.call("status") for c in clients]
    delays, lost = propagation(seen_all, ids, sources)
    if not delays:
        raise RuntimeError("no message reached any other node")
    return {
        "bench": "gossip",
        "nodes": count,
        "messages": len(ids),
        "kind": args.kind,
        "source": args.source,
        "interval_ms": args.interval_ms,
        "pairs": len(ids) * (count - 1),
        "p50_ms": percentile(delays, 50),
        "p90_ms": percentile(delays, 90),
        "p99_ms": percentile(delays, 99),
        "max_ms": max(delays),
        "lost": lost,
        "over_1s": sum(d > 1000 for d in delays),
        "deadline_s": args.deadline_s,
        "submit_s": round(submit_s, 2),
        "setup_s": round(setup_s, 1),
        "cores_used": round(cpu_s / window_s, 2),
        "cpu_ms_per_message_per_node": round(1000 * cpu_s / (len(ids) * count), 1),
        "others_cores": round(others_s / window_s, 2),
        "cpus": os.cpu_count(),
        "seeded": sum(int(s["seeded"]) for s in statuses),
        "rejected": sum(int(s["ingest"]["rejected"]) for s in statuses),
    }


def report(r: dict[str, Any]) -> None:
    where = "each to the next node in turn" if r["source"] == "all" else "all to node 0"
    print(
        f"{r['nodes']} nodes; {r['messages']} {r['kind']}s submitted {where}, one every "
        f"{r['interval_ms']} ms ({r['submit_s']} s); network ready in {r['setup_s']} s",
        flush=True,
    )
    print(
        f"propagation over {r['pairs']} (message, node) pairs: p50 {r['p50_ms']:.0f} ms "
        f"(goal {P50_GOAL_MS:.0f}), p90 {r['p90_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms "
        f"(goal {P99_GOAL_MS:.0f}), max {r['max_ms']:.0f} ms; {r['over_1s']} over 1 s",
        flush=True,
    )
    print(
        f"lost: {r['lost']} pairs had no arrival {r['deadline_s']:g} s after the last "
        f"submission (goal 0); nodes burnt {r['cores_used']} of {r['cpus']} cores meanwhile "
        f"({r['cpu_ms_per_message_per_node']} ms CPU per message and node), everything "
        f"else {r['others_cores']}; "
        f"{r['seeded']} placement downloads done",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=20, help="node processes (at least 2)")
    parser.add_argument("--messages", type=int, default=100, help="manifests measured")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="between submissions")
    parser.add_argument(
        "--source",
        choices=("all", "one"),
        default="all",
        help="submit to every node in turn, or all to the first node",
    )
    parser.add_argument(
        "--kind",
        choices=("manifest", "follow"),
        default="manifest",
        help="what is gossiped: manifests (placement seeders then fetch them) or follows",
    )
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured manifests first")
    parser.add_argument(
        "--deadline-s", type=float, default=20.0, help="after the last submission: lost"
    )
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.messages < 1 or args.warmup < 1:
        parser.error("--nodes at least 2, --messages and --warmup at least 1")
    result = measured("gossip", args, measure)
    report(result)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
