"""Idle cost of a node: its memory and CPU while connected, with nothing to do.

Run from the repository root: ``.venv/bin/python bench/idle.py [--seconds 60]``.

It starts two node processes on 127.0.0.1, the second bootstrapping to the first so that
the first is not alone (it keeps a connection, gossip heartbeats, periodic sync, peer
exchange and the DHT going, as a node at home would), waits until they are connected,
lets them settle ``--settle-s`` seconds, then samples the first node every
``--interval-s`` over ``--seconds``: its resident memory (VmRSS in /proc/PID/status) and
its CPU time (user plus system, all threads, from /proc/PID/stat). It reports the largest
and the mean RSS, the kernel's high-water mark (VmHWM, which also counts start-up), and
the CPU used as a percentage of one core over the window, with the busiest interval.
Goals: at most 150 MB resident, under 2% of a core. MB is 10**6 bytes. Both processes are
stopped at the end, on errors and on Ctrl-C too. The last line printed is one JSON object.

This module also holds the process helpers the other node benches (bench/gossip.py,
bench/swarm.py) share: reading /proc, stopping nodes, the progress display.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node``, ``storage`` and ``tests`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tests.netharness import NodeProc, init_home, start_node, wait_for

RSS_GOAL_MB = 150.0
CPU_GOAL_PCT = 2.0
MB = 10**6
STOP_TIMEOUT_S = 10.0

err = Console(stderr=True, highlight=False)


def progress() -> Progress:
    """A rich progress display on stderr (silent when stderr is not a terminal)."""
    return Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that ``finally`` blocks stop the nodes."""

    def terminate(signum: int, frame: object) -> NoReturn:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them.

    A node being started is not known to the caller until ``start_node`` returns; an
    interruption inside it would leave that process running, nobody to stop it.
    """
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught and caught[0] == signal.SIGINT:
            raise KeyboardInterrupt
        if caught:
            raise SystemExit(128 + caught[0])


def start_into(nodes: list[NodeProc], home: Path, bootstrap: Sequence[str] = ()) -> NodeProc:
    """Start a node over ``home`` (tests/netharness.py) and add it to ``nodes`` (to be
    stopped by the caller), with no interruption between the two."""
    with signals_held():
        node = start_node(home, bootstrap=list(bootstrap))
        nodes.append(node)
    return node


def measured(
    name: str,
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace, Path, Progress], dict[str, Any]],
) -> dict[str, Any]:
    """``measure(args, folder, bar)`` in a fresh temporary folder (gone afterwards) with a
    progress display, SIGTERM unwinding like Ctrl-C so that its nodes are stopped."""
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix=f"toktok-bench-{name}-") as tmp, progress() as bar:
        return measure(args, Path(tmp), bar)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        # The fields after the command name, which is in parentheses and may hold spaces:
        # utime and stime are fields 14 and 15 of the line.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float:
    """CPU seconds all the machine's cores have been busy so far (/proc/stat): compared
    with the benchmarked processes' own, it shows how much else ran meanwhile."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    busy = sum(int(v) for i, v in enumerate(fields[1:9]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the most ever resident) of process ``pid``."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024  # the kernel writes kB (KiB)
    return out


def stop_all(nodes: Sequence[NodeProc]) -> None:
    """Signal every node at once, then wait for each; kill what does not stop.

    One SIGTERM each: a second one, arriving while a node shuts down, would kill it
    before it closes its store.
    """
    for node in nodes:
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.proc.wait(timeout=STOP_TIMEOUT_S)
            node.stop()  # it has exited: this only closes its pipes
        except subprocess.TimeoutExpired:
            node.kill()


def sample(pid: int, seconds: float, interval_s: float, bar: Progress) -> dict[str, Any]:
    """RSS and CPU figures of process ``pid`` over ``seconds``, read every ``interval_s``."""
    steps = max(1, round(seconds / interval_s))
    task = bar.add_task("sampling", total=steps)
    rss = [memory_bytes(pid)["VmRSS"]]
    cpu = [cpu_seconds(pid)]
    wall = [time.monotonic()]
    machine_before = machine_cpu_s()
    for step in range(1, steps + 1):
        # A fixed schedule: the time taken to read /proc does not stretch the window.
        time.sleep(max(0.0, wall[0] + step * interval_s - time.monotonic()))
        rss.append(memory_bytes(pid)["VmRSS"])
        cpu.append(cpu_seconds(pid))
        wall.append(time.monotonic())
        bar.advance(task)
    busiest = max((cpu[i] - cpu[i - 1]) / (wall[i] - wall[i - 1]) for i in range(1, len(cpu)))
    cpu_s, wall_s = cpu[-1] - cpu[0], wall[-1] - wall[0]
    others_s = machine_cpu_s() - machine_before - cpu_s
    return {
        "rss_max_mb": round(max(rss) / MB, 1),
        "rss_mean_mb": round(statistics.mean(rss) / MB, 1),
        "hwm_mb": round(memory_bytes(pid)["VmHWM"] / MB, 1),
        "cpu_pct": round(100 * cpu_s / wall_s, 2),
        "cpu_pct_busiest": round(100 * busiest, 1),
        "cpu_s": round(cpu_s, 3),
        "window_s": round(wall_s, 1),
        "samples": len(rss),
        "others_cores": round(others_s / wall_s, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait before sampling")
    parser.add_argument("--interval-s", type=float, default=1.0, help="between samples")
    args = parser.parse_args(argv)
    if args.seconds < args.interval_s or args.interval_s <= 0:
        parser.error("--seconds at least --interval-s, which is above 0")
    exit_on_sigterm()
    nodes: list[NodeProc] = []
    with tempfile.TemporaryDirectory(prefix="toktok-bench-") as tmp, progress() as bar:
        try:
            measured = start_into(nodes, init_home(Path(tmp) / "measured"))
            start_into(nodes, init_home(Path(tmp) / "peer"), [measured.addr])
            wait_for(lambda: measured.status()["peers"] >= 1, timeout_s=30, what="a peer")
            settle = bar.add_task("settling", total=None)
            time.sleep(args.settle_s)
            bar.remove_task(settle)
            result = sample(measured.proc.pid, args.seconds, args.interval_s, bar)
            status = measured.status()
        finally:
            stop_all(nodes)
    result = {"bench": "idle", "peers": status["peers"], **result, "cpus": os.cpu_count()}
    print(
        f"one idle node with {result['peers']} peer, sampled {result['samples']} times over "
        f"{result['window_s']} s after {args.settle_s:g} s settling",
        flush=True,
    )
    print(
        f"RSS max {result['rss_max_mb']} MB, mean {result['rss_mean_mb']} MB, high-water "
        f"{result['hwm_mb']} MB (goal {RSS_GOAL_MB:g} MB)",
        flush=True,
    )
    print(
        f"CPU {result['cpu_pct']}% of one core over the window ({result['cpu_s']} s), "
        f"busiest {args.interval_s:g} s interval {result['cpu_pct_busiest']}% "
        f"(goal under {CPU_GOAL_PCT:g}%); everything else on the machine used "
        f"{result['others_cores']} of {result['cpus']} cores meanwhile",
        flush=True,
    )
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
