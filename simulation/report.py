"""Writing one run's :class:`~simulation.metrics.Result` as files: JSON, CSV and PNG.

Every file is a pure function of the result, so the same run gives the same bytes:
floats are written with 6 significant digits, keys and columns are sorted, and the PNG
files carry no software version or date and are drawn with matplotlib's default style
whatever the user's ``matplotlibrc`` says.

Files written into the output folder:

- ``summary.json``: scenario, seed, ok, failures, every summary figure, and under
  ``samples`` the p50/p90/p99/max/count of every sample list;
- ``<group>.csv``: one per series group, ``time_s`` then the columns, sorted;
- ``per_node.csv``: ``node`` then one column per per-node figure, sorted;
- plots, each only when its data exist (never an empty file):

  - ``propagation_cdf.png``: CDF of samples ``propagation_ms`` and of every
    ``propagation_ms_<topic>``, on the same axes;
  - ``duplicates.png``: histogram of samples ``duplicates_per_message``;
  - ``bandwidth_per_node.png``: per-node ``bytes_up`` and ``bytes_down`` in KiB/s over
    summary ``duration_s``, each sorted (needs ``duration_s`` > 0);
  - ``availability.png``: series group ``swarm``, columns ``availability`` and
    ``online_fraction``, against time;
  - ``startup_delay_cdf.png``: CDF of samples ``startup_ms``;
  - ``finality_cdf.png``: CDF of samples ``finality_ms``, with summary
    ``ledger.safety_violations`` in the title when present;
  - ``feed_overlap.png``: histogram of samples ``feed_overlap``;
  - ``series_<group>.png``: one line plot per other series group (``swarm`` too when it
    has neither availability column).
"""

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from simulation.metrics import Result, Series, percentile

FIGURE_SIZE_IN = (6.4, 4.0)
FIGURE_DPI = 100
SIGNIFICANT_DIGITS = 6
PERCENTILES = (50, 90, 99)
# PNG text chunks matplotlib would otherwise write; "Software" names its version.
PNG_METADATA: dict[str, str | None] = {"Software": None}
RESERVED_KEYS = ("scenario", "seed", "ok", "failures", "samples")
PER_NODE = "per_node"
SWARM_GROUP = "swarm"
AVAILABILITY_COLUMNS = ("availability", "online_fraction")
PROPAGATION = "propagation_ms"
HIST_BINS = 30
BYTES_PER_KIB = 1024
# Group and figure names become file names: nothing that could leave the folder.
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# The headline figures of a run: (name, dotted summary key, axis label with unit).
HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("propagation_ms_p50", "gossip.propagation_ms_p50", "propagation p50 (ms)"),
    ("propagation_ms_p90", "gossip.propagation_ms_p90", "propagation p90 (ms)"),
    ("duplicates_mean", "gossip.duplicates_mean", "duplicates per message, mean"),
    ("startup_ms_p50", "swarm.startup_ms_p50", "startup delay p50 (ms)"),
    ("availability_mean", "swarm.availability_mean", "availability, mean (fraction)"),
    ("finality_ms_p50", "ledger.finality_ms_p50", "finality p50 (ms)"),
)


class ReportError(ValueError):
    """A result that cannot be written as it is (a model's bug, not the user's)."""


# ------------------------------------------------------------------------------ numbers


def stable_float(value: float) -> float | None:
    """``value`` rounded to 6 significant digits; None for NaN and infinities."""
    if not math.isfinite(value):
        return None
    return float(format(value, f".{SIGNIFICANT_DIGITS}g"))


def stable(value: Any) -> Any:
    """A JSON-able value with every float rounded by :func:`stable_float`."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return stable_float(value)
    if isinstance(value, Mapping):
        return {str(key): stable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [stable(item) for item in value]
    raise ReportError(f"not a JSON value: {type(value).__name__} {value!r}")


def json_text(value: Any) -> str:
    """``value`` as stable JSON text: rounded floats, sorted keys, a final newline."""
    return json.dumps(stable(value), sort_keys=True, indent=2, allow_nan=False) + "\n"


def number_text(value: float) -> str:
    """A CSV cell: whole numbers in full (byte counts), others with 6 significant digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, f".{SIGNIFICANT_DIGITS}g")


def sample_stats(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank), max and count of ``values``; zeros when empty."""
    stats: dict[str, float] = {f"p{p}": percentile(list(values), p) for p in PERCENTILES}
    stats["max"] = max(values, default=0.0)
    stats["count"] = len(values)
    return stats


def summary_value(summary: Mapping[str, Any], dotted: str) -> float | None:
    """The number at ``dotted`` ("gossip.propagation_ms_p50") in ``summary``, or None."""
    value: Any = summary
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# ------------------------------------------------------------------------------ JSON, CSV


def summary_json(result: Result) -> dict[str, Any]:
    """The content of summary.json.

    Raises ReportError when the summary uses one of :data:`RESERVED_KEYS`."""
    clash = sorted(set(result.summary) & set(RESERVED_KEYS))
    if clash:
        raise ReportError(f"summary keys {clash} are reserved for summary.json itself")
    samples = {name: sample_stats(values) for name, values in result.samples.items()}
    return {
        "scenario": result.scenario,
        "seed": result.seed,
        "ok": result.ok,
        "failures": list(result.failures),
        **result.summary,
        "samples": samples,
    }


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [",".join(header), *(",".join(row) for row in rows)]
    return "\n".join(lines) + "\n"


def check_file_name(name: str, what: str) -> None:
    """Raises ReportError unless ``name`` is safe as part of a file name."""
    if not FILE_NAME_RE.match(name):
        raise ReportError(f"{what} {name!r} cannot name a file (letters, digits, _ . -)")


def series_csv(group: str, series: Series) -> str:
    """``time_s`` then the columns in name order, one row per sample.

    Raises ReportError when a column's length differs from the times'."""
    names = sorted(series.columns)
    for name in names:
        if len(series.columns[name]) != len(series.times_s):
            raise ReportError(f"series {group}: column {name} is not as long as times_s")
    rows = (
        [number_text(time_s)] + [number_text(series.columns[name][i]) for name in names]
        for i, time_s in enumerate(series.times_s)
    )
    return csv_text(["time_s", *names], rows)


def per_node_csv(per_node: Mapping[str, Sequence[float]]) -> str:
    """``node`` (its index) then one column per figure in name order.

    Raises ReportError when the figures do not all have one value per node."""
    names = sorted(per_node)
    counts = {len(per_node[name]) for name in names}
    if len(counts) > 1:
        raise ReportError(f"per_node figures differ in length: {sorted(counts)}")
    nodes = counts.pop() if counts else 0
    rows = ([str(i)] + [number_text(per_node[name][i]) for name in names] for i in range(nodes))
    return csv_text(["node", *names], rows)


# ------------------------------------------------------------------------------ plots

PlotFn = Callable[[Axes], None]


def save_plot(path: Path, draw: PlotFn, *, title: str = "") -> None:
    """Draw one figure with ``draw(axes)`` and write it as a PNG without variable metadata."""
    with style.context("default"):
        figure = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="tight")
        axes = figure.subplots()
        draw(axes)
        if title:
            axes.set_title(title)
        axes.set_axisbelow(True)
        axes.grid(True, alpha=0.3)
        figure.savefig(path, format="png", dpi=FIGURE_DPI, metadata=PNG_METADATA)


def draw_cdf(axes: Axes, curves: Mapping[str, Sequence[float]], xlabel: str) -> None:
    for label, values in curves.items():
        ordered = sorted(values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fractions, where="post", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("fraction of samples")
    axes.set_ylim(0.0, 1.02)
    if len(curves) > 1:
        axes.legend(loc="lower right")


def draw_histogram(axes: Axes, values: Sequence[float], xlabel: str, ylabel: str) -> None:
    # Whole-number samples (duplicate counts) get one bar per value, centred on it.
    if all(float(v).is_integer() for v in values) and max(values) - min(values) <= 100:
        low, high = int(min(values)), int(max(values))
        bins: Any = [k - 0.5 for k in range(low, high + 2)]
    else:
        bins = HIST_BINS
    axes.hist(list(values), bins=bins, rwidth=0.9)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)


def draw_lines(axes: Axes, series: Series, names: Sequence[str], ylabel: str) -> None:
    for name in names:
        axes.plot(series.times_s, series.columns[name], label=name)
    axes.set_xlabel("virtual time (s)")
    axes.set_ylabel(ylabel)
    axes.legend(loc="best")


def draw_bandwidth(axes: Axes, rates: Mapping[str, list[float]]) -> None:
    for name, values in rates.items():
        axes.plot(range(len(values)), sorted(values), label=name)
    axes.set_xlabel("node (sorted by rate)")
    axes.set_ylabel("rate (KiB/s)")
    axes.legend(loc="best")


def propagation_curves(samples: Mapping[str, list[float]]) -> dict[str, list[float]]:
    curves = {"all": samples[PROPAGATION]} if samples.get(PROPAGATION) else {}
    prefix = PROPAGATION + "_"
    for name in sorted(samples):
        if name.startswith(prefix) and samples[name]:
            curves[name.removeprefix(prefix)] = samples[name]
    return curves


def bandwidth_rates(result: Result) -> dict[str, list[float]]:
    duration_s = summary_value(result.summary, "duration_s")
    if duration_s is None or duration_s <= 0:
        return {}
    scale = 1.0 / (BYTES_PER_KIB * duration_s)
    return {
        name.removeprefix("bytes_"): [v * scale for v in result.per_node[name]]
        for name in ("bytes_up", "bytes_down")
        if result.per_node.get(name)
    }


def safety_title(summary: Mapping[str, Any]) -> str:
    violations = summary_value(summary, "ledger.safety_violations")
    if violations is None:
        return ""
    verdict = "safe" if violations == 0 else "SAFETY VIOLATED"
    return f"{verdict}: {int(violations)} safety violations"


def plots(result: Result) -> dict[str, tuple[PlotFn, str]]:
    """Every plot whose data exist: file name -> (draw function, title)."""
    samples = result.samples
    found: dict[str, tuple[PlotFn, str]] = {}
    curves = propagation_curves(samples)
    if curves:
        found["propagation_cdf.png"] = (
            partial(draw_cdf, curves=curves, xlabel="propagation delay (ms)"),
            "message propagation",
        )
    if samples.get("duplicates_per_message"):
        found["duplicates.png"] = (
            partial(
                draw_histogram,
                values=samples["duplicates_per_message"],
                xlabel="duplicates per message (count)",
                ylabel="messages",
            ),
            "duplicate deliveries",
        )
    rates = bandwidth_rates(result)
    if rates:
        found["bandwidth_per_node.png"] = (partial(draw_bandwidth, rates=rates), "bandwidth")
    for name, sample, xlabel, title in (
        ("startup_delay_cdf.png", "startup_ms", "startup delay (ms)", "playback startup"),
        ("finality_cdf.png", "finality_ms", "finality (ms)", safety_title(result.summary)),
    ):
        if samples.get(sample):
            curve = {sample: samples[sample]}
            found[name] = (partial(draw_cdf, curves=curve, xlabel=xlabel), title)
    if samples.get("feed_overlap"):
        found["feed_overlap.png"] = (
            partial(
                draw_histogram,
                values=samples["feed_overlap"],
                xlabel="feed overlap (fraction)",
                ylabel="pairs of feeds",
            ),
            "feed overlap",
        )
    found.update(series_plots(result.series))
    return found


def series_plots(groups: Mapping[str, Series]) -> dict[str, tuple[PlotFn, str]]:
    found: dict[str, tuple[PlotFn, str]] = {}
    for group in sorted(groups):
        series = groups[group]
        if not series.times_s or not series.columns:
            continue
        wanted = [c for c in AVAILABILITY_COLUMNS if c in series.columns]
        if group == SWARM_GROUP and wanted:
            found["availability.png"] = (
                partial(draw_lines, series=series, names=wanted, ylabel="fraction"),
                "availability",
            )
        else:
            names = sorted(series.columns)
            found[f"series_{group}.png"] = (
                partial(draw_lines, series=series, names=names, ylabel=group),
                group,
            )
    return found


# ------------------------------------------------------------------------------ files


def write_outputs(result: Result, out_dir: Path) -> list[Path]:
    """Write every file of ``result`` into ``out_dir`` (made if missing); the paths, sorted.

    Raises ReportError for a result that cannot be written (a reserved summary key, a
    group name unfit for a file name, columns of unequal length), OSError when the
    folder cannot be written."""
    texts = {"summary.json": json_text(summary_json(result))}
    for group in sorted(result.series):
        check_file_name(group, "series group")
        if group == PER_NODE and result.per_node:
            raise ReportError(f"series group {PER_NODE!r} would overwrite {PER_NODE}.csv")
        texts[f"{group}.csv"] = series_csv(group, result.series[group])
    if result.per_node:
        texts[f"{PER_NODE}.csv"] = per_node_csv(result.per_node)
    drawings = plots(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    for name, (draw, title) in drawings.items():
        save_plot(out_dir / name, draw, title=title)
    return sorted(out_dir / name for name in [*texts, *drawings])
