"""simulation.report and the aggregate of simulation.sweep, on hand-made results."""

import json
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from node.cli import main
from simulation.cli import ScenarioNotFound, reproduce_command, scenario_path
from simulation.metrics import Result, Series
from simulation.report import ReportError, sample_stats, write_outputs
from simulation.scenario import SCENARIO_DIR, Scenario
from simulation.sweep import (
    Cell,
    CellFailed,
    Outcome,
    SweepError,
    aggregate,
    cell_dir,
    expand_grid,
    run_on_ray,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = [
    "availability.png",
    "bandwidth_per_node.png",
    "duplicates.png",
    "feed_overlap.png",
    "finality_cdf.png",
    "propagation_cdf.png",
    "series_gossip.png",
    "startup_delay_cdf.png",
]


def full_result() -> Result:
    gossip = Series(interval_s=1.0)
    swarm = Series(interval_s=1.0)
    for t in range(10):
        gossip.sample(float(t), {"peers": 8.0 + t % 3, "inflight": t * 0.5})
        swarm.sample(float(t), {"availability": 1.0 - t / 100, "online_fraction": 0.9})
    return Result(
        scenario="small",
        seed=7,
        summary={
            "duration_s": 10.0,
            "gossip": {"propagation_ms_p50": 12.3456789, "delivered": 1000},
            "ledger": {"safety_violations": 0},
        },
        series={"gossip": gossip, "swarm": swarm},
        samples={
            "propagation_ms": [float(v) for v in range(1, 101)],
            "propagation_ms_video": [float(v) for v in range(50, 60)],
            "duplicates_per_message": [0, 1, 1, 2, 3, 3, 3],
            "startup_ms": [100.0, 200.0, 300.0],
            "finality_ms": [400.0, 500.0],
            "feed_overlap": [0.1, 0.5, 0.25],
        },
        per_node={"bytes_up": [2048, 1024, 4096], "bytes_down": [1024.0, 3072.5, 0.0]},
    )


def test_write_outputs_writes_every_file(tmp_path: Path) -> None:
    paths = write_outputs(full_result(), tmp_path)
    names = ["gossip.csv", "per_node.csv", "summary.json", "swarm.csv", *ALL_PLOTS]
    assert paths == sorted(tmp_path / name for name in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_csv_headers_and_rows(tmp_path: Path) -> None:
    write_outputs(full_result(), tmp_path)
    gossip = (tmp_path / "gossip.csv").read_text().splitlines()
    assert gossip[0] == "time_s,inflight,peers"
    assert gossip[1:4] == ["0,0,8", "1,0.5,9", "2,1,10"]
    assert len(gossip) == 11
    swarm = (tmp_path / "swarm.csv").read_text().splitlines()
    assert swarm[0] == "time_s,availability,online_fraction"
    assert swarm[2] == "1,0.99,0.9"
    per_node = (tmp_path / "per_node.csv").read_text().splitlines()
    assert per_node == ["node,bytes_down,bytes_up", "0,1024,2048", "1,3072.5,1024", "2,0,4096"]


def test_summary_json(tmp_path: Path) -> None:
    write_outputs(full_result(), tmp_path)
    text = (tmp_path / "summary.json").read_text()
    assert text.endswith("}\n")
    summary = json.loads(text)
    assert summary["scenario"] == "small"
    assert summary["seed"] == 7
    assert summary["ok"] is True
    assert summary["failures"] == []
    assert summary["duration_s"] == 10.0
    assert summary["gossip"] == {"propagation_ms_p50": 12.3457, "delivered": 1000}
    assert summary["samples"]["propagation_ms"] == {
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
        "count": 100,
    }
    assert summary["samples"]["finality_ms"] == {
        "p50": 400.0,
        "p90": 500.0,
        "p99": 500.0,
        "max": 500.0,
        "count": 2,
    }
    assert list(summary) == sorted(summary)


def test_summary_of_failed_run_and_odd_numbers(tmp_path: Path) -> None:
    result = Result("s", 1, summary={"x": math.nan, "y": [1 / 3, 2]}, failures=["safety: 2 forks"])
    write_outputs(result, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["failures"] == ["safety: 2 forks"]
    assert summary["x"] is None
    assert summary["y"] == [0.333333, 2]


def test_sample_stats_of_nothing() -> None:
    assert sample_stats([]) == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "count": 0}


def test_outputs_are_byte_identical(tmp_path: Path) -> None:
    first = write_outputs(full_result(), tmp_path / "a")
    second = write_outputs(full_result(), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert data == b.read_bytes(), a.name
        if a.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE)
            assert len(data) > 1000
            assert b"Software" not in data
            assert b"matplotlib" not in data


def test_plots_skipped_without_data(tmp_path: Path) -> None:
    result = Result(
        "s",
        1,
        summary={"ledger": {"safety_violations": 0}},
        series={"empty": Series(interval_s=1.0)},
        samples={"propagation_ms": [], "startup_ms": []},
        per_node={"bytes_up": [1.0, 2.0]},
    )
    paths = write_outputs(result, tmp_path)
    # No duration_s: no rates to plot, but the per-node numbers are still written.
    assert [p.name for p in paths] == ["empty.csv", "per_node.csv", "summary.json"]
    assert (tmp_path / "empty.csv").read_text() == "time_s\n"


def test_swarm_without_availability_is_a_plain_series(tmp_path: Path) -> None:
    swarm = Series(interval_s=1.0)
    swarm.sample(0.0, {"seeders": 3.0})
    paths = write_outputs(Result("s", 1, series={"swarm": swarm}), tmp_path)
    assert [p.name for p in paths] == ["series_swarm.png", "summary.json", "swarm.csv"]


def test_availability_plot_takes_one_column(tmp_path: Path) -> None:
    swarm = Series(interval_s=1.0)
    swarm.sample(0.0, {"online_fraction": 1.0, "seeders": 3.0})
    paths = write_outputs(Result("s", 1, series={"swarm": swarm}), tmp_path)
    assert "availability.png" in [p.name for p in paths]


def test_invalid_reserved_summary_key(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="reserved"):
        write_outputs(Result("s", 1, summary={"samples": 3}), tmp_path)
    assert not tmp_path.joinpath("summary.json").exists()


@pytest.mark.parametrize("group", ["../up", "a b", "", ".hidden"])
def test_invalid_series_group_name(tmp_path: Path, group: str) -> None:
    with pytest.raises(ReportError, match="cannot name a file"):
        write_outputs(Result("s", 1, series={group: Series(interval_s=1.0)}), tmp_path)


def test_invalid_ragged_series(tmp_path: Path) -> None:
    series = Series(interval_s=1.0, columns={"a": [1.0, 2.0]}, times_s=[0.0])
    with pytest.raises(ReportError, match="not as long"):
        write_outputs(Result("s", 1, series={"g": series}), tmp_path)


def test_invalid_ragged_per_node(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="differ in length"):
        write_outputs(Result("s", 1, per_node={"a": [1.0], "b": [1.0, 2.0]}), tmp_path)


def test_invalid_series_named_per_node(tmp_path: Path) -> None:
    result = Result("s", 1, series={"per_node": Series(1.0)}, per_node={"a": [1.0]})
    with pytest.raises(ReportError, match="overwrite"):
        write_outputs(result, tmp_path)


# ------------------------------------------------------------------------------ sweep


def test_expand_grid_order_and_labels() -> None:
    cells = expand_grid([("mesh.D", ["4", "6"]), ("churn.rate", ["0.1"])], seeds=2, first_seed=5)
    assert [(c.overrides, c.seed) for c in cells] == [
        (("mesh.D=4", "churn.rate=0.1"), 5),
        (("mesh.D=4", "churn.rate=0.1"), 6),
        (("mesh.D=6", "churn.rate=0.1"), 5),
        (("mesh.D=6", "churn.rate=0.1"), 6),
    ]
    assert cells[0].label == "mesh.D=4+churn.rate=0.1"
    assert cells[0].values == {"mesh.D": "4", "churn.rate": "0.1"}
    assert cell_dir(Path("out"), cells[3]) == Path("out/cells/mesh.D=6+churn.rate=0.1/seed-6")


def test_expand_grid_without_parameters() -> None:
    assert expand_grid([], seeds=2, first_seed=0) == [Cell((), 0, "base"), Cell((), 1, "base")]


def test_expand_grid_makes_safe_labels() -> None:
    cells = expand_grid([("latency.one_way_ms", ['{dist="constant",value=5}'])], 1, 0)
    assert cells[0].label == "latency.one_way_ms=_dist=_constant__value=5_"
    long = expand_grid([("run.name", ["x" * 300])], 1, 0)[0].label
    assert len(long) == 120


@pytest.mark.parametrize(
    ("params", "seeds", "match"),
    [
        ([("mesh.D", ["4"])], 0, "at least 1 seed"),
        ([("mesh.D", ["4"]), ("mesh.D", ["6"])], 1, "more than once"),
        ([("mesh.D", [])], 1, "no values"),
        ([("run.name", ['"a/b"', '"a_b"'])], 1, "share the folder"),
    ],
)
def test_invalid_grid(params: list[tuple[str, list[str]]], seeds: int, match: str) -> None:
    with pytest.raises(SweepError, match=match):
        expand_grid(params, seeds, 0)


def cell_result(cell: Cell, p50: float, *, failures: tuple[str, ...] = ()) -> Result:
    summary = {
        "duration_s": 60,
        "gossip": {"propagation_ms_p50": p50, "duplicates_mean": 1.5, "ok": True},
        "swarm": {"availability_mean": 0.5 + cell.seed / 10},
    }
    return Result("small", cell.seed, summary, failures=list(failures))


def sweep_outcomes() -> list[tuple[Cell, Outcome]]:
    cells = expand_grid([("mesh.D", ["4", "6"]), ("loss.rate", ["0", "0.1"])], 2, 1)
    outcomes: list[Outcome] = [cell_result(c, 10.0 * (i + 1)) for i, c in enumerate(cells)]
    outcomes[1] = CellFailed("SimError: boom", "Traceback...\nSimError: boom\n")
    outcomes[2] = cell_result(cells[2], 30.0, failures=("safety: fork",))
    return list(zip(cells, outcomes, strict=True))


def test_aggregate_csv(tmp_path: Path) -> None:
    aggregate(sweep_outcomes(), tmp_path)
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert rows[0] == (
        "mesh.D,loss.rate,seed,status,duration_s,gossip.duplicates_mean,"
        "gossip.propagation_ms_p50,swarm.availability_mean"
    )
    assert rows[1] == "4,0,1,ok,60,1.5,10,0.6"
    assert rows[2] == "4,0,2,error,,,,"
    assert rows[3] == "4,0.1,1,failed,60,1.5,30,0.6"
    assert len(rows) == 9


def test_aggregate_summary(tmp_path: Path) -> None:
    aggregate(sweep_outcomes(), tmp_path)
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert summary["scenario"] == "small"
    assert summary["parameters"] == ["mesh.D", "loss.rate"]
    assert summary["seeds"] == [1, 2]
    assert summary["cells"] == 8
    assert summary["ok"] is False
    combos = summary["combinations"]
    assert [c["label"] for c in combos] == [
        "mesh.D=4+loss.rate=0",
        "mesh.D=4+loss.rate=0.1",
        "mesh.D=6+loss.rate=0",
        "mesh.D=6+loss.rate=0.1",
    ]
    assert combos[0]["runs"] == 1
    assert combos[1]["runs"] == 2
    assert combos[1]["values"] == {"mesh.D": "4", "loss.rate": "0.1"}
    assert combos[1]["figures"]["gossip.propagation_ms_p50"] == {
        "mean": 35.0,
        "min": 30.0,
        "max": 40.0,
    }
    assert combos[1]["figures"]["swarm.availability_mean"] == {
        "mean": 0.65,
        "min": 0.6,
        "max": 0.7,
    }
    assert "gossip.ok" not in combos[1]["figures"]
    assert summary["failed_cells"] == [
        {
            "label": "mesh.D=4+loss.rate=0",
            "seed": 2,
            "overrides": ["mesh.D=4", "loss.rate=0"],
            "error": "SimError: boom",
        }
    ]
    assert summary["failed_checks"] == [
        {
            "label": "mesh.D=4+loss.rate=0.1",
            "seed": 1,
            "overrides": ["mesh.D=4", "loss.rate=0.1"],
            "failures": ["safety: fork"],
        }
    ]


def test_aggregate_files_plots_and_errors(tmp_path: Path) -> None:
    pairs = sweep_outcomes()
    paths = aggregate(pairs, tmp_path / "a")
    assert [p.name for p in paths] == [
        "sweep.csv",
        "sweep_availability_mean.png",
        "sweep_duplicates_mean.png",
        "sweep_propagation_ms_p50.png",
        "sweep_summary.json",
    ]
    error = cell_dir(tmp_path / "a", pairs[1][0]) / "error.txt"
    assert error.read_text() == "Traceback...\nSimError: boom\n"
    again = aggregate(pairs, tmp_path / "b")
    for a, b in zip(paths, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.stat().st_size > 0


def test_aggregate_with_words_for_values(tmp_path: Path) -> None:
    cells = expand_grid([("topology.kind", ['"ring"', '"random"'])], 1, 0)
    pairs: list[tuple[Cell, Outcome]] = [(c, cell_result(c, 5.0)) for c in cells]
    names = [p.name for p in aggregate(pairs, tmp_path)]
    assert "sweep_propagation_ms_p50.png" in names


def test_aggregate_without_parameters_has_no_plots(tmp_path: Path) -> None:
    pairs: list[tuple[Cell, Outcome]] = [(c, cell_result(c, 5.0)) for c in expand_grid([], 2, 0)]
    names = [p.name for p in aggregate(pairs, tmp_path)]
    assert names == ["sweep.csv", "sweep_summary.json"]
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert rows[1].startswith("0,ok,")


def test_reproduce_command_quotes() -> None:
    command = reproduce_command("small", 3, Path("out dir"), ['run.name="a b"', "mesh.D=4"])
    assert command == (
        "toktok sim run small --seed 3 --out 'out dir' --param 'run.name=\"a b\"' --param mesh.D=4"
    )


def test_ray_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(SweepError, match=r"pip install 'toktok-node\[ray\]'"):
        run_on_ray([], Path("out"), "ray://nowhere:10001", None)


def test_scenario_argument_names_a_file_or_a_bundled_scenario(tmp_path: Path) -> None:
    own = tmp_path / "mine.toml"
    own.write_text("")
    assert scenario_path(str(own)) == own
    assert scenario_path("small") == SCENARIO_DIR / "small.toml"
    assert scenario_path("small.toml") == SCENARIO_DIR / "small.toml"
    with pytest.raises(ScenarioNotFound, match="no such file, nor a bundled scenario"):
        scenario_path("no-such-scenario")
    with pytest.raises(ScenarioNotFound):
        scenario_path("../scenarios/small")


# ------------------------------------------------------------------------------ sim run


def fake_run_module(result: Result) -> types.ModuleType:
    """A stand-in for simulation.run: the CLI's handling of a result, not the models."""
    module = types.ModuleType("simulation.run")

    def run_scenario(
        scenario: Scenario, seed: int, *, progress: Callable[[float, float], None] | None = None
    ) -> Result:
        assert scenario.mesh.D == 6
        if progress is not None:
            progress(60.0, 60.0)
        return Result(scenario.name, seed, result.summary, result.series, failures=result.failures)

    module.run_scenario = run_scenario  # type: ignore[attr-defined]
    return module


def sim_run(tmp_path: Path, *extra: str) -> int:
    args = ["sim", "run", "small", "--seed", "3", "--out", str(tmp_path / "out"), *extra]
    return main(["--home", str(tmp_path / "home"), *args])


def test_sim_run_writes_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "simulation.run", fake_run_module(full_result()))
    assert sim_run(tmp_path, "--param", "mesh.D=6") == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "out" / "summary.json") in printed
    assert "propagation p50 (ms)" in printed
    assert "12.3457" in printed
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["seed"] == 3


def test_sim_run_failure_prints_how_to_reproduce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = Result("small", 0, failures=["safety: fork at height 3"])
    monkeypatch.setitem(sys.modules, "simulation.run", fake_run_module(failed))
    assert sim_run(tmp_path, "--param", "mesh.D=6") == 1
    printed = " ".join(capsys.readouterr().err.split())
    assert "FAILED: safety: fork at height 3" in printed
    out_dir = tmp_path / "out"
    assert f"reproduce with: toktok sim run small --seed 3 --out {out_dir} --param mesh.D=6" in (
        printed
    )


@pytest.mark.parametrize(
    ("scenario", "param", "message"),
    [
        ("no-such-scenario", "mesh.D=6", "error: no-such-scenario: no such file"),
        ("small", "mesh.Q=6", 'error: override "mesh.Q=6": unknown key mesh.Q'),
    ],
)
def test_invalid_sim_run_input_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    scenario: str,
    param: str,
    message: str,
) -> None:
    monkeypatch.setitem(sys.modules, "simulation.run", fake_run_module(full_result()))
    args = ["sim", "run", scenario, "--seed", "1", "--out", str(tmp_path), "--param", param]
    assert main(["--home", str(tmp_path / "home"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1
