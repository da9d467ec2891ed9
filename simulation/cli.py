"""``toktok sim run`` and ``toktok sim sweep``: registered with the ``toktok`` command as a
plugin, through the ``toktok.commands`` entry point group (node/ never imports this).

Every ``toktok`` command loads this module to build its parser, so the simulator itself
(models, matplotlib) is imported only when a ``sim`` command runs.

Exit status: 0 when every run passed its checks, 1 when one failed (with the command
that reproduces it), 2 for input that cannot be used (one line on stderr).
"""

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

SCENARIO_SUFFIX = ".toml"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class ScenarioNotFound(Exception):
    """A SCENARIO argument that is neither a file nor a bundled scenario's name."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(commands: Any) -> None:
    """Add the ``sim`` command to the ``toktok`` sub-command parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "sim", help="simulate a network: deterministic runs and parameter sweeps"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run one scenario with one seed",
        description="Run SCENARIO with seed S and write its summary, CSV files and plots "
        "into DIR. Exits 1 when a check of the run fails, printing the command that "
        "reproduces it.",
    )
    add_scenario_argument(run)
    run.add_argument("--seed", type=int, required=True, metavar="S", help="the run's seed")
    run.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one scenario setting (mesh.D=6); repeat for more",
    )
    run.set_defaults(func=cmd_sim_run)
    add_sweep_parser(actions)


def add_scenario_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="a scenario file, or the name of a bundled one (small, ...)",
    )


def add_sweep_parser(actions: Any) -> None:
    sweep: argparse.ArgumentParser = actions.add_parser(
        "sweep",
        help="run a scenario over a grid of settings and seeds",
        description="Run SCENARIO for every combination of the --param values and every "
        "seed, in parallel; write each run's files under DIR/cells/ and the aggregate "
        "(sweep.csv, sweep_summary.json, sweep_*.png) into DIR.",
    )
    add_scenario_argument(sweep)
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a setting and the values to sweep (mesh.D=4,6,8); repeat for more",
    )
    sweep.add_argument("--seeds", type=positive_int, required=True, metavar="N")
    sweep.add_argument(
        "--first-seed", type=int, default=0, metavar="S", help="seeds S .. S+N-1 (0)"
    )
    sweep.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write")
    sweep.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes running cells at once (default: one per CPU)",
    )
    sweep.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="run the cells on this Ray cluster"
    )
    sweep.set_defaults(func=cmd_sim_sweep)


# ------------------------------------------------------------------------------ helpers


def scenario_path(text: str) -> Path:
    """The file SCENARIO names: a path, else a bundled scenario's name ("small").

    Raises ScenarioNotFound when it is neither."""
    from simulation.scenario import SCENARIO_DIR, bundled_scenarios

    path = Path(text)
    if path.is_file():
        return path
    name = text.removesuffix(SCENARIO_SUFFIX)
    if name and "/" not in name and name not in (".", ".."):
        bundled = SCENARIO_DIR / f"{name}{SCENARIO_SUFFIX}"
        if bundled.is_file():
            return bundled
    names = ", ".join(path.stem for path in bundled_scenarios()) or "none"
    raise ScenarioNotFound(f"{text}: no such file, nor a bundled scenario (bundled: {names})")


def fail(message: str) -> int:
    """Report input that cannot be used as one line on stderr; exit status 2."""
    # One line, never wrapped to the terminal's width: scripts read it.
    print(f"error: {message}", file=sys.stderr)
    return 2


def os_error_text(exc: OSError) -> str:
    if exc.strerror is None or exc.filename is None:
        return " ".join(str(exc).split())
    return f"{exc.filename}: {exc.strerror}"


def reproduce_command(scenario: str, seed: int, out_dir: Path, params: Sequence[str]) -> str:
    """The ``toktok sim run`` command line that repeats one run exactly."""
    words = ["toktok", "sim", "run", scenario, "--seed", str(seed), "--out", str(out_dir)]
    for param in params:
        words += ["--param", param]
    return shlex.join(words)


def report_failure(failures: Sequence[str], command: str) -> None:
    err.print(Text(f"FAILED: {'; '.join(failures)}", style="bold red"))
    err.print(Text(f"reproduce with: {command}"))


@contextmanager
def progress_bar(unit: str) -> Iterator[Callable[[float, float], None]]:
    """A bar on stderr (terminals only); yields ``update(done, total)`` in ``unit``."""
    with Progress(
        BarColumn(),
        TextColumn(f"{{task.completed:.0f}}/{{task.total:.0f}} {unit}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(unit, total=1.0)

        def update(done: float, total: float) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def print_paths(paths: Sequence[Path]) -> None:
    for path in paths:
        out.print(Text(str(path)))


def headline_table(summary: dict[str, Any]) -> Table | None:
    """The run's headline figures that its summary has; None when it has none."""
    from simulation.report import HEADLINES, number_text, summary_value

    table = Table("figure", "value", box=None)
    for _, dotted, label in (*HEADLINES, ("", "ledger.safety_violations", "safety violations")):
        value = summary_value(summary, dotted)
        if value is not None:
            table.add_row(label, number_text(value))
    return table if table.row_count else None


# ------------------------------------------------------------------------------ commands


def cmd_sim_run(args: argparse.Namespace) -> int:
    from simulation.engine import SimError
    from simulation.report import write_outputs
    from simulation.run import run_scenario
    from simulation.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(scenario_path(args.scenario), args.param)
    except (ScenarioNotFound, ScenarioError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(os_error_text(exc))
    command = reproduce_command(args.scenario, args.seed, args.out, args.param)
    try:
        with progress_bar("virtual s") as update:
            result = run_scenario(scenario, args.seed, progress=update)
    except SimError as exc:
        report_failure([f"SimError: {exc}"], command)
        return 1
    except Exception:
        # A bug in a model: its traceback follows, and the way to get it again.
        err.print(Text(f"reproduce with: {command}"))
        raise
    try:
        paths = write_outputs(result, args.out)
    except OSError as exc:
        return fail(os_error_text(exc))
    print_paths(paths)
    table = headline_table(result.summary)
    if table is not None:
        out.print(table)
    if not result.ok:
        report_failure(result.failures, command)
        return 1
    return 0


def cmd_sim_sweep(args: argparse.Namespace) -> int:
    from simulation.scenario import ScenarioError, override_values
    from simulation.sweep import SweepError, cell_dir, run_sweep

    try:
        path = scenario_path(args.scenario)
        params = [override_values(spec) for spec in args.param]
        with progress_bar("cells") as update:
            result = run_sweep(
                path,
                params,
                args.seeds,
                args.out,
                first_seed=args.first_seed,
                workers=args.workers,
                ray_address=args.ray,
                progress=update,
            )
    except (ScenarioNotFound, ScenarioError, SweepError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(os_error_text(exc))
    print_paths(result.paths)
    errors, failed = result.errors, result.failed_checks
    counts = f"cells: {len(result.cells)}, raised: {len(errors)}, failed checks: {len(failed)}"
    out.print(Text(counts))
    problems = [(cell, [o.error]) for cell, o in errors] + [(c, o.failures) for c, o in failed]
    for cell, failures in problems:
        folder = cell_dir(args.out, cell)
        report_failure(
            failures, reproduce_command(args.scenario, cell.seed, folder, cell.overrides)
        )
    return 0 if result.ok else 1
