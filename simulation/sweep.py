"""Parameter sweeps: one scenario run over a grid of overrides times a range of seeds.

Every cell (one combination of parameter values, one seed) runs in its own process, or
as a Ray task when a cluster address is given, and writes its files (see
:mod:`simulation.report`) into ``OUT/cells/<label>/seed-<S>/``. Then the aggregate,
written from the outcomes in cell order so that it does not depend on which cell
finished first:

- ``sweep.csv``: one row per cell: the parameter values, seed, status (``ok``,
  ``failed`` for a run whose checks failed, ``error`` for a cell that raised) and every
  numeric figure of its summary, nested names joined with dots;
- ``sweep_summary.json``: per combination of values, the mean, min and max over seeds of
  each figure, and the cells that raised or failed their checks;
- ``sweep_<figure>.png``: each headline figure (:data:`simulation.report.HEADLINES`)
  found in the summaries against the first parameter, mean with min-max error bars, one
  line per combination of the other parameters' values (no plots without parameters).

A cell that raises does not stop the sweep: its error is recorded, with the traceback
in its folder as ``error.txt``.
"""

import hashlib
import importlib
import itertools
import multiprocessing
import re
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from simulation.metrics import Result
from simulation.report import (
    HEADLINES,
    csv_text,
    json_text,
    number_text,
    save_plot,
    write_outputs,
)
from simulation.scenario import Scenario, load_scenario

BASE_LABEL = "base"
LABEL_JOIN = "+"
# Cell labels name folders: anything but these characters becomes "_".
LABEL_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._=+-]")
# Well under the 255 bytes most file systems allow in a name.
LABEL_LEN_MAX = 120
LABEL_HASH_LEN = 12
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_ERROR = "error"
RAY_MISSING = "--ray needs the ray package: pip install 'toktok-node[ray]'"

Progress = Callable[[int, int], None]


class SweepError(ValueError):
    """A sweep that cannot start: a bad grid, or Ray asked for but not installed."""


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: the overrides ("mesh.D=4",...) of its combination and a seed."""

    overrides: tuple[str, ...]
    seed: int
    label: str

    @property
    def values(self) -> dict[str, str]:
        """Parameter -> value, from the overrides."""
        return {key: value for key, _, value in (o.partition("=") for o in self.overrides)}


@dataclass(frozen=True)
class CellFailed:
    """The outcome of a cell that raised: one line, and the traceback for error.txt."""

    error: str
    traceback: str = ""


Outcome = Result | CellFailed


@dataclass
class SweepResult:
    """Every cell with its outcome, in grid order, and the aggregate files written."""

    cells: list[Cell]
    outcomes: list[Outcome]
    paths: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[tuple[Cell, CellFailed]]:
        """Cells that raised."""
        return [
            (c, o)
            for c, o in zip(self.cells, self.outcomes, strict=True)
            if isinstance(o, CellFailed)
        ]

    @property
    def failed_checks(self) -> list[tuple[Cell, Result]]:
        """Cells that ran to the end but failed one of their checks."""
        return [
            (c, o)
            for c, o in zip(self.cells, self.outcomes, strict=True)
            if isinstance(o, Result) and not o.ok
        ]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failed_checks


# ------------------------------------------------------------------------------ the grid


def cell_label(overrides: Sequence[str]) -> str:
    """A folder name for a combination: "mesh.D=4+churn.rate=0.1", "base" for none; a
    long one is cut and ends with a hash of the whole."""
    if not overrides:
        return BASE_LABEL
    joined = LABEL_JOIN.join(overrides)
    label = LABEL_UNSAFE_RE.sub("_", joined)
    if len(label) > LABEL_LEN_MAX:
        digest = hashlib.sha256(joined.encode()).hexdigest()[:LABEL_HASH_LEN]
        label = f"{label[: LABEL_LEN_MAX - LABEL_HASH_LEN - 1]}-{digest}"
    return label


def expand_grid(params: Sequence[tuple[str, list[str]]], seeds: int, first_seed: int) -> list[Cell]:
    """Every combination of ``params`` values (the first parameter varies slowest), each
    with seeds ``first_seed`` .. ``first_seed + seeds - 1``.

    Raises SweepError for fewer than one seed, a parameter given twice or without values,
    or two combinations whose labels would name the same folder."""
    if seeds < 1:
        raise SweepError(f"a sweep needs at least 1 seed, not {seeds}")
    keys = [key for key, _ in params]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise SweepError(f"parameters given more than once: {', '.join(twice)}")
    for key, values in params:
        if not values:
            raise SweepError(f"parameter {key} has no values")
    cells: list[Cell] = []
    labels: dict[str, tuple[str, ...]] = {}
    for combination in itertools.product(*(values for _, values in params)):
        overrides = tuple(f"{key}={value}" for key, value in zip(keys, combination, strict=True))
        label = cell_label(overrides)
        if labels.setdefault(label, overrides) != overrides:
            raise SweepError(f"{labels[label]} and {overrides} would share the folder {label}")
        cells.extend(Cell(overrides, first_seed + i, label) for i in range(seeds))
    return cells


def cell_dir(out_dir: Path, cell: Cell) -> Path:
    return out_dir / "cells" / cell.label / f"seed-{cell.seed}"


# ------------------------------------------------------------------------------ running


def run_cell(scenario: Scenario, seed: int, out_dir: str | None) -> Outcome:
    """Run one cell (in a worker process or a Ray task).

    With ``out_dir`` its files are written there and only the summary and failures come
    back; without, the whole result comes back for the caller to write."""
    try:
        # Imported here, in the worker: the grid and the aggregate need none of the models.
        from simulation.run import run_scenario

        result = run_scenario(scenario, seed)
        if out_dir is None:
            return result
        write_outputs(result, Path(out_dir))
        return Result(result.scenario, result.seed, result.summary, failures=result.failures)
    except Exception as exc:
        # The top of a cell's task: the failure is recorded and the sweep goes on.
        return CellFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def future_outcome(future: "Future[Outcome]") -> Outcome:
    try:
        return future.result()
    except Exception as exc:
        # A worker that died (killed for memory: BrokenProcessPool) or an unpicklable result.
        return CellFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def run_in_processes(
    jobs: Sequence[tuple[Scenario, Cell]], out_dir: Path, workers: int, progress: Progress | None
) -> list[Outcome]:
    outcomes: list[Outcome] = [CellFailed("not run")] * len(jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(run_cell, scenario, cell.seed, str(cell_dir(out_dir, cell))): i
            for i, (scenario, cell) in enumerate(jobs)
        }
        try:
            for done, future in enumerate(as_completed(futures), 1):
                outcomes[futures[future]] = future_outcome(future)
                if progress is not None:
                    progress(done, len(jobs))
        except BaseException:
            # Interrupted: the cells not started yet never start.
            for future in futures:
                future.cancel()
            raise
    return outcomes


def run_on_ray(
    jobs: Sequence[tuple[Scenario, Cell]], out_dir: Path, address: str, progress: Progress | None
) -> list[Outcome]:
    """Run the cells as Ray tasks; their results come back and are written here, since
    the cluster's machines may not share this folder.

    Raises SweepError when ray is not installed."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError as exc:
        raise SweepError(RAY_MISSING) from exc
    ray.init(address=address)
    try:
        task = ray.remote(run_cell)
        refs = [task.remote(scenario, cell.seed, None) for scenario, cell in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[Outcome] = [CellFailed("not run")] * len(jobs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = index[ref]
                outcomes[i] = ray_outcome(ray, ref, cell_dir(out_dir, jobs[i][1]))
                if progress is not None:
                    progress(len(refs) - len(pending), len(refs))
        return outcomes
    finally:
        ray.shutdown()


def ray_outcome(ray: Any, ref: Any, folder: Path) -> Outcome:
    try:
        outcome: Outcome = ray.get(ref)
        if isinstance(outcome, Result):
            write_outputs(outcome, folder)
        return outcome
    except Exception as exc:
        # A task that Ray lost (its node died), or files that could not be written.
        return CellFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def run_sweep(
    scenario_path: Path,
    params: Sequence[tuple[str, list[str]]],
    seeds: int,
    out_dir: Path,
    *,
    first_seed: int = 0,
    workers: int,
    ray_address: str | None,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every cell of the grid and write each one's files and the aggregate.

    Every combination's scenario is loaded before any cell runs. Raises SweepError for a
    bad grid or a missing ray, ScenarioError for a scenario or override that does not
    load, OSError when ``out_dir`` cannot be written."""
    if workers < 1:
        raise SweepError(f"a sweep needs at least 1 worker, not {workers}")
    cells = expand_grid(params, seeds, first_seed)
    scenarios: dict[tuple[str, ...], Scenario] = {}
    for cell in cells:
        if cell.overrides not in scenarios:
            scenarios[cell.overrides] = load_scenario(scenario_path, cell.overrides)
    jobs = [(scenarios[cell.overrides], cell) for cell in cells]
    out_dir.mkdir(parents=True, exist_ok=True)
    if ray_address is not None:
        outcomes = run_on_ray(jobs, out_dir, ray_address, progress)
    else:
        outcomes = run_in_processes(jobs, out_dir, min(workers, len(jobs)), progress)
    pairs = list(zip(cells, outcomes, strict=True))
    return SweepResult(cells, outcomes, aggregate(pairs, out_dir))


# ------------------------------------------------------------------------------ aggregate


def numeric_leaves(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number in a nested summary, by dotted name (booleans and lists left out)."""
    found: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(numeric_leaves(value, name + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = value
    return found


def status_of(outcome: Outcome) -> str:
    if isinstance(outcome, CellFailed):
        return STATUS_ERROR
    return STATUS_OK if outcome.ok else STATUS_FAILED


def parameter_keys(cells: Sequence[Cell]) -> list[str]:
    return list(cells[0].values) if cells else []


def sweep_csv(pairs: Sequence[tuple[Cell, Outcome]]) -> str:
    keys = parameter_keys([cell for cell, _ in pairs])
    leaves = [numeric_leaves(o.summary) if isinstance(o, Result) else {} for _, o in pairs]
    figures = sorted({name for found in leaves for name in found})
    rows = (
        [*(cell.values[key] for key in keys), str(cell.seed), status_of(outcome)]
        + [number_text(found[name]) if name in found else "" for name in figures]
        for (cell, outcome), found in zip(pairs, leaves, strict=True)
    )
    return csv_text([*keys, "seed", "status", *figures], rows)


def figure_stats(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, min and max over ``summaries`` of each figure, over those that have it."""
    values: dict[str, list[float]] = {}
    for summary in summaries:
        for name, value in numeric_leaves(summary).items():
            values.setdefault(name, []).append(value)
    return {
        name: {"mean": sum(found) / len(found), "min": min(found), "max": max(found)}
        for name, found in sorted(values.items())
    }


def combinations(pairs: Sequence[tuple[Cell, Outcome]]) -> list[dict[str, Any]]:
    """One entry per combination of values, in grid order, with its figures' stats."""
    grouped: dict[tuple[str, ...], list[tuple[Cell, Outcome]]] = {}
    for cell, outcome in pairs:
        grouped.setdefault(cell.overrides, []).append((cell, outcome))
    entries = []
    for overrides, members in grouped.items():
        summaries = [o.summary for _, o in members if isinstance(o, Result)]
        entries.append(
            {
                "label": members[0][0].label,
                "overrides": list(overrides),
                "values": members[0][0].values,
                "runs": len(summaries),
                "figures": figure_stats(summaries),
            }
        )
    return entries


def cell_json(cell: Cell) -> dict[str, Any]:
    return {"label": cell.label, "seed": cell.seed, "overrides": list(cell.overrides)}


def sweep_summary(pairs: Sequence[tuple[Cell, Outcome]]) -> dict[str, Any]:
    results = [o for _, o in pairs if isinstance(o, Result)]
    errors = [{**cell_json(c), "error": o.error} for c, o in pairs if isinstance(o, CellFailed)]
    failed = [
        {**cell_json(c), "failures": list(o.failures)}
        for c, o in pairs
        if isinstance(o, Result) and not o.ok
    ]
    return {
        "scenario": results[0].scenario if results else "",
        "parameters": parameter_keys([cell for cell, _ in pairs]),
        "seeds": sorted({cell.seed for cell, _ in pairs}),
        "cells": len(pairs),
        "ok": not errors and not failed,
        "combinations": combinations(pairs),
        "failed_cells": errors,
        "failed_checks": failed,
    }


def draw_headline(
    axes: Axes, entries: Sequence[dict[str, Any]], keys: Sequence[str], dotted: str, ylabel: str
) -> None:
    """Mean with min-max bars of ``dotted`` against ``keys[0]``, a line per other values."""
    xs = list(dict.fromkeys(entry["values"][keys[0]] for entry in entries))
    numeric = all(is_number(x) for x in xs)
    lines: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for entry in entries:
        if dotted in entry["figures"]:
            rest = ", ".join(f"{key}={entry['values'][key]}" for key in keys[1:])
            lines.setdefault(rest, []).append((entry["values"][keys[0]], entry["figures"][dotted]))
    for rest, points in lines.items():
        position = [float(x) if numeric else float(xs.index(x)) for x, _ in points]
        mean = [stats["mean"] for _, stats in points]
        below = [stats["mean"] - stats["min"] for _, stats in points]
        above = [stats["max"] - stats["mean"] for _, stats in points]
        axes.errorbar(
            position, mean, yerr=[below, above], marker="o", capsize=3, label=rest or None
        )
    # A tick on each swept value, and only there.
    axes.set_xticks([float(x) if numeric else float(i) for i, x in enumerate(xs)], xs)
    axes.set_xlabel(keys[0])
    axes.set_ylabel(ylabel)
    if len(lines) > 1:
        axes.legend(loc="best")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def headline_plots(entries: Sequence[dict[str, Any]], keys: list[str], out_dir: Path) -> list[Path]:
    """sweep_<figure>.png for each headline figure some combination has; none without
    parameters to plot against."""
    paths: list[Path] = []
    if not keys:
        return paths
    for name, dotted, ylabel in HEADLINES:
        if any(dotted in entry["figures"] for entry in entries):
            path = out_dir / f"sweep_{name}.png"
            draw = partial(draw_headline, entries=entries, keys=keys, dotted=dotted, ylabel=ylabel)
            save_plot(path, draw, title=f"{ylabel}: mean, min-max over seeds")
            paths.append(path)
    return paths


def aggregate(pairs: Sequence[tuple[Cell, Outcome]], out_dir: Path) -> list[Path]:
    """Write sweep.csv, sweep_summary.json, the headline plots and each raised cell's
    error.txt from the cells' outcomes, in the order given; the aggregate's paths, sorted.

    Raises OSError when ``out_dir`` cannot be written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = sweep_summary(pairs)
    paths = [out_dir / "sweep.csv", out_dir / "sweep_summary.json"]
    paths[0].write_text(sweep_csv(pairs), encoding="utf-8")
    paths[1].write_text(json_text(summary), encoding="utf-8")
    paths.extend(headline_plots(summary["combinations"], summary["parameters"], out_dir))
    for cell, outcome in pairs:
        if isinstance(outcome, CellFailed):
            folder = cell_dir(out_dir, cell)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(outcome.traceback or outcome.error + "\n")
    return sorted(paths)
