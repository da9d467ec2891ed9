"""Whole simulated runs: determinism, the gossip model's guarantees, the compiled build.

Each run here is a small network in virtual time (a second or two of wall time); the
figures come from the model, never from the wall clock.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulation import native
from simulation.metrics import Result
from simulation.report import write_outputs
from simulation.run import run_scenario
from simulation.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent


def scenario(**sections: Any) -> Scenario:
    data: dict[str, Any] = {"run": {"nodes": 150, "duration_s": 15.0}}
    data["manifests"] = {"count": 40, "rate_per_s": 10.0}
    data["latency"] = {"one_way_ms": {"dist": "uniform", "low": 5.0, "high": 40.0}}
    data.update(sections)
    return parse_scenario(data, "test")


def summary_text(result: Result, out: Path) -> str:
    write_outputs(result, out)
    return (out / "summary.json").read_text()


def test_same_seed_same_files_byte_for_byte(tmp_path: Path) -> None:
    s = scenario(churn={"fraction": 0.2, "session_s": 5.0, "downtime_s": 3.0})
    first = run_scenario(s, 7)
    second = run_scenario(s, 7)
    a, b = tmp_path / "a", tmp_path / "b"
    paths = write_outputs(first, a)
    write_outputs(second, b)
    assert len(paths) > 3
    for path in paths:
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name


def test_different_seeds_differ(tmp_path: Path) -> None:
    s = scenario()
    assert summary_text(run_scenario(s, 1), tmp_path / "a") != summary_text(
        run_scenario(s, 2), tmp_path / "b"
    )


def test_without_loss_every_message_reaches_every_node() -> None:
    result = run_scenario(scenario(), 3)
    gossip = result.summary["gossip"]
    assert result.ok, result.failures
    assert gossip["coverage_steady_nodes"] == 1.0
    # Every node but the publisher accepted every manifest once.
    assert gossip["deliveries"] == 40 * 149
    assert gossip["duplicates_mean"] > 0


def test_loss_is_repaired_by_gossip() -> None:
    """IHAVE/IWANT brings back what the mesh lost: coverage stays near complete."""
    result = run_scenario(scenario(loss={"rate": 0.2}), 3)
    gossip = result.summary["gossip"]
    assert gossip["iwant_served"] > 0
    assert gossip["coverage_steady_nodes"] > 0.98


def test_latency_shows_in_propagation() -> None:
    near = run_scenario(scenario(latency={"one_way_ms": 5.0}), 4).summary["gossip"]
    far = run_scenario(scenario(latency={"one_way_ms": 50.0}), 4).summary["gossip"]
    assert far["propagation_ms_p50"] > 3 * near["propagation_ms_p50"]


def test_nodes_sharing_a_machine_wait_for_its_cores() -> None:
    """150 nodes on 2 shared cores: a message takes 190 ms of both cores (150 x 2.5 ms
    over 2) and one comes every 100 ms, so messages queue for the cores and propagation
    takes far longer; nothing is lost."""
    own = run_scenario(scenario(), 4).summary["gossip"]
    shared = run_scenario(scenario(mesh={"shared_cores": 2}), 4).summary["gossip"]
    assert shared["propagation_ms_p50"] > 2 * own["propagation_ms_p50"]
    assert shared["coverage_steady_nodes"] == own["coverage_steady_nodes"] == 1.0


def test_forgeries_are_rejected_and_their_senders_banned() -> None:
    result = run_scenario(scenario(byzantine={"forgers": 2}), 5)
    gossip = result.summary["gossip"]
    assert gossip["forged"] > 0
    assert gossip["forged_rejected"] > 0
    assert gossip["forger_bans"] > 0
    # A forgery is never relayed: only the forgers' own connections ever see one.
    assert gossip["forged_rejected"] <= gossip["forged"] * 40


@pytest.mark.skipif(
    not native.compiled_files("gossip"), reason="no compiled build here (no C compiler)"
)
def test_compiled_and_pure_modules_give_the_same_run(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        "[run]\nnodes = 120\nduration_s = 10.0\n[manifests]\ncount = 30\n"
        "[churn]\nfraction = 0.2\nsession_s = 4.0\ndowntime_s = 2.0\n"
    )
    outs = []
    for pure in ("0", "1"):
        out = tmp_path / f"out{pure}"
        env = dict(os.environ, TOKTOK_SIM_PURE=pure)
        code = (
            "import sys, simulation.gossip as g; "
            "print('native' if g.__file__.endswith('.so') else 'pure'); "
            "from node.cli import main; "
            f"sys.exit(main(['sim', 'run', {str(toml)!r}, '--seed', '3', '--out', {str(out)!r}]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("pure" if pure == "1" else "native")
        outs.append(json.loads((out / "summary.json").read_text()))
    assert outs[0] == outs[1]


def test_a_partition_delays_but_loses_nothing_after_healing() -> None:
    s = scenario(
        partition=[{"start_s": 1.0, "heal_s": 8.0, "fractions": [0.5, 0.5]}],
        sync={"interval_s": 3.0},
        run={"nodes": 150, "duration_s": 25.0},
    )
    gossip = run_scenario(s, 6).summary["gossip"]
    assert gossip["coverage_steady_nodes"] == 1.0
    # The manifests published during the split crossed only after the heal.
    assert gossip["propagation_ms_max"] > 2_000


def test_a_failing_run_prints_its_seed_and_reruns_the_same(tmp_path: Path) -> None:
    """Two liars among four validators: safety breaks for some seed, the command says
    how to run it again, and that run fails the same way."""
    toml = tmp_path / "liars.toml"
    toml.write_text(
        "[run]\nnodes = 40\nduration_s = 20.0\n"
        "[ledger]\nvalidators = 4\naccounts = 20\ntransfers = 40\nrate_per_s = 10.0\n"
        "[byzantine]\nvalidators = 2\nclients = 3\n"
    )
    for seed in range(8):
        out = tmp_path / f"run{seed}"
        args = ["sim", "run", str(toml), "--seed", str(seed), "--out", str(out)]
        first = subprocess.run(
            [sys.executable, "-m", "node.cli", *args], cwd=ROOT, capture_output=True, text=True
        )
        if first.returncode == 1:
            break
    else:
        pytest.fail("no seed of 8 broke safety with 2 liars of 4")
    assert f"--seed {seed}" in first.stderr
    command = first.stderr.split("reproduce with: ", 1)[1].splitlines()[0]
    again = subprocess.run(
        [sys.executable, "-m", "node.cli", *command.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1
    assert json.loads((out / "summary.json").read_text())["failures"]
