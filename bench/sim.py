"""The simulator at scale: wall time, simulated events per second, peak memory.

Run from the repository root: ``.venv/bin/python bench/sim.py [--scenario bench]
[--seed 1] [--param KEY=VALUE ...] [--out DIR] [--profile]``.

It runs one scenario (by default ``simulation/scenarios/bench.toml``: 10,000 nodes,
1,000 manifests gossiped, one popular video swarmed to 1,000 viewers, 10% of the nodes
churning) in this process, with a progress bar of virtual seconds, and reports:

- ``wall_s``: the run's wall time, building the world included, writing files not;
- ``events`` and ``events_per_s``: simulated events (messages delivered to nodes, data
  or control, and timers firing) per wall second; ``dispatched`` counts those taken
  from the event queue, ``resolved`` the deliveries settled when sent (see
  simulation/engine.py), each with its rate;
- ``peak_rss_mb``: the process's peak resident memory (ru_maxrss);
- ``compiled``: whether the hot modules ran compiled (simulation/native.py);
- the run's headline figures (propagation delay, duplicates, startup delay...).

``--out DIR`` also writes the run's files (summary, CSV, plots) there, outside the
timing. ``--profile`` prints the 25 costliest functions on stderr. The last line printed
is one JSON object with every figure.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import cProfile
import json
import os
import pstats
import resource
import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import simulation
from simulation.cli import scenario_path
from simulation.report import write_outputs
from simulation.run import run_scenario
from simulation.scenario import load_scenario

KIB = 1024


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of the run worth a line each, where the scenario produced them."""
    picks = {
        "propagation_ms_p50": ("gossip", "propagation_ms_p50"),
        "propagation_ms_p90": ("gossip", "propagation_ms_p90"),
        "propagation_ms_p99": ("gossip", "propagation_ms_p99"),
        "duplicates_mean": ("gossip", "duplicates_mean"),
        "coverage_steady_nodes": ("gossip", "coverage_steady_nodes"),
        "startup_ms_p50": ("swarm", "startup_ms_p50"),
        "startup_ms_p90": ("swarm", "startup_ms_p90"),
        "views": ("swarm", "views"),
        "views_completed": ("swarm", "completed"),
        "availability_mean": ("swarm", "availability_mean"),
        "finality_ms_p50": ("ledger", "finality_ms_p50"),
        "safety_violations": ("ledger", "safety_violations"),
    }
    found = {}
    for name, (group, key) in picks.items():
        value = summary.get(group, {}).get(key)
        if value is not None:
            found[name] = value
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", default="bench", help="a bundled name or a TOML path")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE override")
    parser.add_argument("--out", type=Path, help="also write the run's files here")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    path = scenario_path(args.scenario)
    scenario = load_scenario(path, args.param)
    profiler = cProfile.Profile() if args.profile else None
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("run", total=scenario.run.duration_s)

        def progress(done_s: float, total_s: float) -> None:
            bar.update(task, completed=done_s)

        started = time.perf_counter()
        cpu_started = time.process_time()
        if profiler:
            profiler.enable()
        result = run_scenario(scenario, args.seed, progress=progress)
        if profiler:
            profiler.disable()
        wall_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    run = result.summary["run"]
    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": args.seed,
        "nodes": run["nodes"],
        "virtual_s": run["duration_s"],
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "events": run["events"],
        "events_per_s": round(run["events"] / wall_s),
        "dispatched": run["events_dispatched"],
        "dispatched_per_s": round(run["events_dispatched"] / wall_s),
        "resolved": run["events_resolved"],
        "resolved_per_s": round(run["events_resolved"] / wall_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB, 1),
        "ok": result.ok,
        "failures": result.failures,
        "cpus": os.cpu_count(),
        "compiled": simulation.NATIVE,
        **headline(result.summary),
    }
    if args.out:
        write_outputs(result, args.out)
    if profiler:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    for name, value in figures.items():
        print(f"{name:>24}: {value}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
