"""Simulator fidelity: the same gossip workload on real node processes and in the simulator.

Run from the repository root: ``.venv/bin/python bench/sim_fidelity.py [--nodes 20]
[--messages 40] [--interval-ms 500] [--seeds 10] [--save FILE | --load FILE]``.

**The real run** is bench/gossip.py's workload, through its own functions: ``--nodes``
node processes on 127.0.0.1, a warm-up, then ``--messages`` signed manifests submitted
one every ``--interval-ms``, each to the next node in turn. Every node reports when it
applied each message (the ``arrivals`` route); a pair's propagation time is its arrival
at the node minus its arrival at the node it was submitted to, and a pair with no
arrival ``--deadline-s`` after the last submission is lost. This script also reads
every node's connections (the ``peers`` route) before and after the submissions: the
peer graph the simulator is given (links present both times; ``links_changed`` counts
the others). It samples the node processes' scheduler statistics
(/proc/PID/task/TID/schedstat: time on a core, time waiting for one) over ``--idle-s``
of idleness before the submissions and over the measured window.

**The per-hop delay** is the one figure the simulator takes from the real run: the
median propagation time to the publisher's direct neighbours (the nodes connected to it,
most of them in its mesh, as in the model). In the model (simulation/gossip.py) a
published message waits ``batch_delay_ms``, costs its publisher one processing time,
crosses one link, and costs the receiver one processing time before the receiver applies
and relays it; each further hop adds a link and a processing time. The real figure holds
everything a hop costs on this machine: reading, decrypting and decoding the RPC,
py-libp2p's signature check, the node's validator (decoding the batch, checking and
storing the manifest), the trio scheduler's wait, and the wait for a core. The loopback
latency is measured apart, while the nodes idle (median TCP round trip of one byte on
127.0.0.1, halved), and given to every simulated link, with 10 Gbit/s of bandwidth.

**The simulated run** builds the same world by hand: a :class:`Network` with the real
peer graph, GossipSub with the node's mesh values (node/config.py; py-libp2p's defaults
for the rest), and the same count of manifests (each the size of the real one's gossip
batch) published at the same interval by the same nodes in turn, from 10 virtual seconds
(meshes built by then). The nodes share the real machine's cores (``SharedCores``), as
the node processes do, and each processing time is drawn from an exponential; its mean
is found by bisection so that the simulated one-hop median is the real one. ``--seeds``
seeds are run (meshes, heartbeat phases and processing times differ by seed) and their
samples pooled. For context, the simplest calibration is run too: a core per node and a
constant per-hop time, ``(one-hop median - batch_delay_ms - loopback) / 2``. The
model's propagation time of a pair runs from the publish call to the end of the
receiving node's validation, which is what the real figure measures: the submitting
node records its arrival when the ``submit`` route stores the manifest, just before
queueing it for gossip, and any other node when its validator stores it, just before it
relays the batch. Real arrivals are whole milliseconds; no offset is applied.

**Printed**: the distributions (p10, p50, p90, p99, max, count, lost), the median at
each hop distance from the publisher in the peer graph, and sim / real for p50 and p90
with whether each is within 25%. Besides, as context that the simulator does not take:
``cpu_ms_per_pair``, the CPU the nodes used per (message, node) beyond their idle cost;
``cpu_load``, that CPU per message over the interval and the machine's cores (above 1 the
real network could not keep up, and messages queued for the cores: the model, first come
first served on the shared cores, then keeps the median but not the tail, since the
kernel shares time among the processes more finely); ``wait_per_run``, how long the
nodes' threads waited for a core per second they ran.

``--save FILE`` writes the real run's raw data (JSON); ``--load FILE`` takes it from there
instead of starting nodes, to rerun the simulated side alone. Every node process is
stopped at the end, on errors and on Ctrl-C too. The last line printed is one JSON
object with every figure.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node``, ``simulation`` and ``tests`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import socket
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.progress import Progress

from bench.gossip import (
    await_mesh,
    collect,
    make_messages,
    nodes_cpu_s,
    percentile,
    prepare_homes,
    propagation_pairs,
    running,
    submit_paced,
)
from bench.idle import machine_cpu_s, measured, progress
from node.config import NodeConfig
from node.controlclient import ControlClient
from protocol.gossipwire import encode_batch
from simulation.dists import Exponential
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.gossip import GossipSub, MeshParams, Message, SharedCores
from simulation.network import Latency, Network
from simulation.run import HEARTBEAT_START_US
from simulation.world import sampler_us
from tests.netharness import NodeProc

TOLERANCE = 0.25
"""The simulator's p50 and p90 should be within this fraction of the real ones."""
LINK_MBPS = 10_000.0
SIM_START_US = 10 * US_PER_S
LOOPBACK_PINGS = 200
QUANTILES = (10, 50, 90, 99)
CALIBRATION_SEEDS = 3
CALIBRATION_STEP_US = 20
"""The bisection stops when the mean is known to this many microseconds."""

Edge = tuple[int, int]
Pair = tuple[int, int, float]
"""(message index, receiving node, propagation ms)."""


# -- the real run ----------------------------------------------------------------------


def peer_graph(clients: Sequence[ControlClient], peer_ids: Sequence[str]) -> set[Edge]:
    """The connections among the nodes, as (low, high) index pairs."""
    index = {pid: i for i, pid in enumerate(peer_ids)}
    edges: set[Edge] = set()
    for i, client in enumerate(clients):
        for peer in client.call("peers")["peers"]:
            j = index.get(peer["peer_id"])
            if j is not None and j != i:
                edges.add((min(i, j), max(i, j)))
    return edges


def sched_s(nodes: Sequence[NodeProc]) -> tuple[float, float]:
    """Seconds the node processes have run on a core and waited in the run queue for
    one, together, all threads (/proc/PID/task/TID/schedstat)."""
    run_ns = wait_ns = 0
    for node in nodes:
        for task in Path(f"/proc/{node.proc.pid}/task").iterdir():
            try:
                run, wait, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue  # a thread that just ended
            run_ns += int(run)
            wait_ns += int(wait)
    return run_ns / 1e9, wait_ns / 1e9


def measure_real(args: argparse.Namespace, root: Path, bar: Progress) -> dict[str, Any]:
    """bench/gossip.py's workload with the peer graph read around it: the raw data."""
    count = args.nodes
    warmup = make_messages(args.warmup, "warm-up", "manifest")
    measured_msgs = make_messages(args.messages, "fidelity", "manifest")
    warm_sources = [i % count for i in range(len(warmup))]
    sources = [i % count for i in range(len(measured_msgs))]
    homes = prepare_homes(root, count, [*warmup, *measured_msgs], [*warm_sources, *sources])
    with running(homes, bar) as nodes:
        clients = [node.client() for node in nodes]
        peer_ids = [node.peer_id for node in nodes]
        await_mesh(clients, [m for m, _ in warmup], warm_sources, bar)
        before = peer_graph(clients, peer_ids)
        idle_started, idle_before = time.monotonic(), sched_s(nodes)
        time.sleep(args.idle_s)
        idle_after = sched_s(nodes)
        idle_cores = (idle_after[0] - idle_before[0]) / (time.monotonic() - idle_started)
        loopback_us = loopback_one_way_us()
        ids = [m.id.hex() for m, _ in measured_msgs]
        cpu_before, machine_before = nodes_cpu_s(nodes), machine_cpu_s()
        sched_before = sched_s(nodes)
        started = time.monotonic()
        submit_paced(
            clients, [m for m, _ in measured_msgs], sources, args.interval_ms / 1000, bar, "submit"
        )
        seen_all = collect(clients, ids, args.deadline_s, bar)
        cpu_s = nodes_cpu_s(nodes) - cpu_before
        sched_after = sched_s(nodes)
        others_s = machine_cpu_s() - machine_before - cpu_s
        window_s = time.monotonic() - started
        after = peer_graph(clients, peer_ids)
    pairs, lost = propagation_pairs(seen_all, ids, sources)
    return {
        "nodes": count,
        "interval_ms": args.interval_ms,
        "deadline_s": args.deadline_s,
        "loopback_us": loopback_us,
        "sources": sources,
        "batch_bytes": [len(encode_batch([m.raw])) for m, _ in measured_msgs],
        "pairs": pairs,
        "lost": lost,
        "edges": sorted(before & after),
        "links_changed": len(before ^ after),
        "cpus": os.cpu_count() or 1,
        "window_s": round(window_s, 2),
        "cores_used": round(cpu_s / window_s, 2),
        "others_cores": round(others_s / window_s, 2),
        "run_s": round(sched_after[0] - sched_before[0], 3),
        "wait_s": round(sched_after[1] - sched_before[1], 3),
        "idle_cores": round(idle_cores, 4),
    }


def loopback_one_way_us(pings: int = LOOPBACK_PINGS) -> int:
    """Half the median round trip of one byte over TCP on 127.0.0.1, in microseconds."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def echo() -> None:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(1):
                    conn.sendall(data)

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        rtts: list[float] = []
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(pings):
                t0 = time.perf_counter_ns()
                client.sendall(b"x")
                client.recv(1)
                rtts.append((time.perf_counter_ns() - t0) / 1000)
        thread.join(timeout=5)
    return max(1, round(statistics.median(rtts) / 2))


# -- analysis ----------------------------------------------------------------------------


def hops(n: int, edges: Iterable[Edge]) -> list[list[int]]:
    """Hop distance between every two nodes of the graph (-1: unreachable)."""
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        adjacent[a].append(b)
        adjacent[b].append(a)
    out = []
    for start in range(n):
        dist = [-1] * n
        dist[start] = 0
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for peer in adjacent[node]:
                if dist[peer] < 0:
                    dist[peer] = dist[node] + 1
                    queue.append(peer)
        out.append(dist)
    return out


def per_hop_us(
    real: dict[str, Any], distance: list[list[int]], latency_us: int
) -> tuple[int, float]:
    """The calibrated per-hop delay (us) and the real one-hop median (ms) it comes from."""
    sources = real["sources"]
    one_hop = [d for k, node, d in real["pairs"] if distance[sources[k]][node] == 1]
    if not one_hop:
        raise RuntimeError("no pair at one hop from its publisher")
    median_ms = statistics.median(one_hop)
    batch_ms = NodeConfig().gossip.batch_delay_ms
    hop_us = round((median_ms - batch_ms) * US_PER_MS - latency_us) // 2
    if hop_us <= 0:
        raise RuntimeError(f"one-hop median {median_ms} ms leaves no processing time")
    return hop_us, median_ms


def cpu_figures(real: dict[str, Any]) -> dict[str, float]:
    """The nodes' CPU beyond their idle cost: per (message, node), as a load on the
    machine's cores while messages came, and their threads' wait for a core per second run.
    """
    pairs = len(real["sources"]) * real["nodes"]
    busy_s = real["run_s"] - real["idle_cores"] * real["window_s"]
    span_s = len(real["sources"]) * real["interval_ms"] / 1000
    return {
        "cpu_ms_per_pair": round(1000 * busy_s / pairs, 2),
        "cpu_load": round(busy_s / span_s / real["cpus"], 2),
        "wait_per_run": round(real["wait_s"] / real["run_s"], 2),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    """p10, p50, p90, p99 (nearest rank), max and count."""
    out: dict[str, float] = {f"p{q}_ms": round(percentile(values, q), 1) for q in QUANTILES}
    out["max_ms"] = round(max(values), 1)
    out["count"] = len(values)
    return out


def by_distance(
    pairs: Sequence[Pair], sources: Sequence[int], distance: list[list[int]]
) -> dict[int, float]:
    """The median propagation time at each hop distance from the publisher."""
    groups: dict[int, list[float]] = {}
    for k, node, d in pairs:
        groups.setdefault(distance[sources[k]][node], []).append(d)
    return {hop: round(statistics.median(ds), 1) for hop, ds in sorted(groups.items())}


# -- the simulated run -------------------------------------------------------------------


def node_mesh_params() -> MeshParams:
    """The node's GossipSub values (node/config.py); py-libp2p's defaults for the rest."""
    g = NodeConfig().gossip
    return MeshParams(
        D=g.degree,
        D_lo=g.degree_low,
        D_hi=g.degree_high,
        heartbeat_us=g.heartbeat_ms * US_PER_MS,
        batch_delay_us=g.batch_delay_ms * US_PER_MS,
    )


@dataclass(frozen=True)
class Processing:
    """How the simulated nodes spend a message's processing time before relaying it."""

    mean_us: int
    exponential: bool = False
    """Drawn per message from an exponential of that mean, else constant."""
    cores: int | None = None
    """The cores all nodes share (the real run's machine), else a core per node."""


def simulate(
    real: dict[str, Any], processing: Processing, latency_us: int, seed: int
) -> list[Pair]:
    """The real run's workload in the simulator from ``seed``: its (message, node) pairs."""
    n = real["nodes"]
    sim = Sim(seed)
    net = Network(
        sim, n, Latency(n, lambda a, b: latency_us), [LINK_MBPS] * n, [LINK_MBPS] * n, 0.0
    )
    for a, b in real["edges"]:
        net.connect(a, b)
    pairs: list[Pair] = []

    def accepted(node: int, msg: Message, at_us: int) -> None:
        if node != msg.origin:
            for item, published_us in zip(msg.items, msg.item_times_us, strict=True):
                pairs.append((item, node, (at_us - published_us) / US_PER_MS))

    cores = None if processing.cores is None else SharedCores(processing.cores)
    hop_us: int | Callable[[], int] = processing.mean_us
    if processing.exponential:
        hop_us = sampler_us(Exponential(processing.mean_us / US_PER_MS), sim, "processing")
    gossip = GossipSub(
        sim, net, "manifests", node_mesh_params(), hop_us, on_accept=accepted, cores=cores
    )
    gossip.start(HEARTBEAT_START_US)
    interval_us = round(real["interval_ms"] * US_PER_MS)
    for k, (source, size) in enumerate(zip(real["sources"], real["batch_bytes"], strict=True)):
        sim.at(SIM_START_US + k * interval_us, gossip.publish, source, k, size)
    last_us = SIM_START_US + (len(real["sources"]) - 1) * interval_us
    sim.run(last_us + round(real["deadline_s"] * US_PER_S))
    return pairs


def one_hop_median_ms(
    pairs: Sequence[Pair], sources: Sequence[int], distance: list[list[int]]
) -> float:
    """The median propagation time to the nodes one hop from the publisher."""
    return statistics.median(d for k, node, d in pairs if distance[sources[k]][node] == 1)


def calibrate(
    real: dict[str, Any], distance: list[list[int]], latency_us: int, target_ms: float
) -> Processing:
    """The shared-cores model (exponential processing times on the real run's cores) with
    the mean whose simulated one-hop median is the real one: bisection, each step pooled
    over CALIBRATION_SEEDS seeds."""

    def model(mean_us: int) -> Processing:
        return Processing(mean_us, exponential=True, cores=real["cpus"])

    def median_at(mean_us: int) -> float:
        pairs: list[Pair] = []
        for seed in range(1, CALIBRATION_SEEDS + 1):
            pairs.extend(simulate(real, model(mean_us), latency_us, seed))
        return one_hop_median_ms(pairs, real["sources"], distance)

    # A one-hop delivery costs two processing times (the publisher's and the receiver's)
    # and the batch delay: the mean lies below the real one-hop median.
    lo, hi = 1, max(2, round(target_ms * US_PER_MS))
    if median_at(lo) >= target_ms:
        return model(lo)
    while hi - lo > CALIBRATION_STEP_US:
        mid = (lo + hi) // 2
        if median_at(mid) < target_ms:
            lo = mid
        else:
            hi = mid
    return model(hi)


# -- report ------------------------------------------------------------------------------


def compare(real: dict[str, Any], args: argparse.Namespace, bar: Progress) -> dict[str, Any]:
    """Calibrate, simulate every seed, and gather the figures."""
    n = real["nodes"]
    distance = hops(n, real["edges"])
    if any(d < 0 for row in distance for d in row):
        raise RuntimeError("the real peer graph is not connected")
    latency_us = real["loopback_us"]
    hop_us, one_hop_ms = per_hop_us(real, distance, latency_us)
    own_core = Processing(hop_us)
    shared = calibrate(real, distance, latency_us, one_hop_ms)
    task = bar.add_task("simulate", total=2 * args.seeds)
    own_pairs: list[Pair] = []
    sim_pairs: list[Pair] = []
    for seed in range(1, args.seeds + 1):
        own_pairs.extend(simulate(real, own_core, latency_us, seed))
        bar.advance(task)
        sim_pairs.extend(simulate(real, shared, latency_us, seed))
        bar.advance(task)
    real_delays = [d for _, _, d in real["pairs"]]
    sim_delays = [d for _, _, d in sim_pairs]
    real_sum, sim_sum = summary(real_delays), summary(sim_delays)
    own_sum = summary([d for _, _, d in own_pairs])
    out: dict[str, Any] = {
        "bench": "sim_fidelity",
        "nodes": n,
        "messages": len(real["sources"]),
        "interval_ms": real["interval_ms"],
        "links": len(real["edges"]),
        "links_changed": real["links_changed"],
        "degree_mean": round(2 * len(real["edges"]) / n, 2),
        "loopback_one_way_ms": latency_us / US_PER_MS,
        "one_hop_real_p50_ms": one_hop_ms,
        "per_hop_ms": hop_us / US_PER_MS,
        "shared_per_hop_mean_ms": shared.mean_us / US_PER_MS,
        "cpus": real["cpus"],
        "cores_used": real["cores_used"],
        "others_cores": real["others_cores"],
        **cpu_figures(real),
        "seeds": args.seeds,
        "real_lost": real["lost"],
        "sim_lost": args.seeds * len(real["sources"]) * (n - 1) - len(sim_delays),
        "own_core_sim_lost": args.seeds * len(real["sources"]) * (n - 1) - len(own_pairs),
    }
    out |= {f"real_{k}": v for k, v in real_sum.items()}
    out |= {f"sim_{k}": v for k, v in sim_sum.items()}
    out |= {f"own_core_sim_{k}": v for k, v in own_sum.items()}
    out["real_p50_by_hops_ms"] = by_distance(real["pairs"], real["sources"], distance)
    out["sim_p50_by_hops_ms"] = by_distance(sim_pairs, real["sources"], distance)
    out["own_core_sim_p50_by_hops_ms"] = by_distance(own_pairs, real["sources"], distance)
    for q in (50, 90):
        ratio = sim_sum[f"p{q}_ms"] / real_sum[f"p{q}_ms"]
        out[f"p{q}_ratio"] = round(ratio, 3)
        out[f"p{q}_within"] = abs(ratio - 1) <= TOLERANCE
    return out


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['nodes']} nodes, {r['links']} links (mean degree {r['degree_mean']}, "
        f"{r['links_changed']} changed during the run); {r['messages']} manifests, one every "
        f"{r['interval_ms']:g} ms, each from the next node in turn",
        flush=True,
    )
    print(
        f"real nodes' CPU beyond idle: {r['cpu_ms_per_pair']:g} ms per (message, node), "
        f"a load of {r['cpu_load']:g} on {r['cpus']} cores; threads waited "
        f"{r['wait_per_run']:g} s for a core per s run; {r['cores_used']} cores busy, "
        f"everything else {r['others_cores']}",
        flush=True,
    )
    if r["cpu_load"] >= 1:
        print(
            "the real run was CPU-bound: messages queued for the machine's cores, which "
            "the kernel shares more finely than the model's first come, first served",
            flush=True,
        )
    print(
        f"calibration: real median to the publisher's neighbours "
        f"{r['one_hop_real_p50_ms']:g} ms, loopback {r['loopback_one_way_ms']:g} ms one way",
        flush=True,
    )
    print(
        f"  sim: the nodes share {r['cpus']} cores, as the real ones do; per-hop processing "
        f"times exponential with mean {r['shared_per_hop_mean_ms']:g} ms give that median",
        flush=True,
    )
    print(
        f"  own-core sim (context): a core per node, a constant {r['per_hop_ms']:g} ms per "
        f"hop (half of the median less the batch delay and the loopback)",
        flush=True,
    )
    names = [f"p{q}_ms" for q in QUANTILES] + ["max_ms", "count"]
    print(f"{'':<14}" + "".join(f"{n.removesuffix('_ms'):>9}" for n in names), flush=True)
    for side in ("real", "sim", "own_core_sim"):
        row = "".join(f"{r[f'{side}_{n}']:>9g}" for n in names)
        print(f"{side:<14}{row}   lost {r[f'{side}_lost']}", flush=True)
    print(
        f"median by hops from the publisher: real {r['real_p50_by_hops_ms']}, "
        f"sim {r['sim_p50_by_hops_ms']}, own-core sim {r['own_core_sim_p50_by_hops_ms']}",
        flush=True,
    )
    for q in (50, 90):
        verdict = "within" if r[f"p{q}_within"] else "NOT within"
        print(
            f"p{q}: sim/real {r[f'p{q}_ratio']:.2f} ({verdict} {TOLERANCE:.0%})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=20, help="node processes (at least 3)")
    parser.add_argument("--messages", type=int, default=40, help="manifests measured")
    parser.add_argument("--interval-ms", type=float, default=500.0, help="between submissions")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured manifests first")
    parser.add_argument(
        "--deadline-s", type=float, default=20.0, help="after the last submission: lost"
    )
    parser.add_argument(
        "--idle-s", type=float, default=5.0, help="idle CPU sampled before submitting"
    )
    parser.add_argument("--seeds", type=int, default=10, help="simulated runs, pooled")
    parser.add_argument("--save", type=Path, help="write the real run's raw data here")
    parser.add_argument("--load", type=Path, help="take the real run from here (no nodes)")
    args = parser.parse_args(argv)
    if args.nodes < 3 or args.messages < 1 or args.warmup < 1 or args.seeds < 1:
        parser.error("--nodes at least 3, --messages, --warmup and --seeds at least 1")
    if args.load is not None:
        real = json.loads(args.load.read_text())
    else:
        real = measured("sim-fidelity", args, measure_real)
    if args.save is not None:
        args.save.write_text(json.dumps(real))
    with progress() as bar:
        result = compare(real, args, bar)
    report(result)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
