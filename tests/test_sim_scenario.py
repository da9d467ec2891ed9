"""Scenario files, overrides and the distributions they are written with."""

import copy
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from simulation.dists import (
    Constant,
    Exponential,
    Lognormal,
    Pareto,
    Uniform,
    Zipf,
    assign,
    parse_dist,
)
from simulation.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    apply_override,
    bundled_scenarios,
    load_scenario,
    override_values,
    parse_scenario,
)

BASE: dict[str, Any] = {"run": {"nodes": 10, "duration_s": 5.0}, "topology": {"peers": 3}}
REGIONS = {"names": ["a", "b"], "one_way_ms": [[1.0, 2.0], [2.0, 1.0]]}


def scenario_with(**sections: Any) -> dict[str, Any]:
    """BASE with ``sections`` merged in, one level deep (a section given as a non-dict
    replaces the section)."""
    data = copy.deepcopy(BASE)
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name].update(value)
        else:
            data[name] = value
    return data


# --- bundled scenarios ---------------------------------------------------------------


def test_every_bundled_scenario_loads() -> None:
    names = {path.stem for path in bundled_scenarios()}
    assert {"small", "bench", "partition", "byzantine", "regions"} <= names
    for path in bundled_scenarios():
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert parse_scenario(json.loads(json.dumps(scenario.to_dict())), "x") == scenario


def test_bundled_scenarios_hold_what_they_say() -> None:
    small = load_scenario(SCENARIO_DIR / "small.toml")
    assert (small.run.nodes, small.manifests.count, small.videos.viewers) == (200, 100, 50)
    assert (small.ledger.validators, small.ledger.transfers, small.feed.sample_nodes) == (
        4,
        200,
        20,
    )
    bench = load_scenario(SCENARIO_DIR / "bench.toml")
    assert (bench.run.nodes, bench.manifests.count, bench.videos.viewers) == (10_000, 1_000, 1_000)
    assert bench.ledger.validators == 0
    partition = load_scenario(SCENARIO_DIR / "partition.toml")
    (split,) = partition.partitions
    assert (split.start_s, split.heal_s, split.fractions) == (5.0, 20.0, (0.5, 0.5))
    regions = load_scenario(SCENARIO_DIR / "regions.toml").latency.regions
    assert regions is not None and len(regions.names) == 3


def test_defaults_are_the_nodes() -> None:
    scenario = parse_scenario(copy.deepcopy(BASE), "base")
    assert scenario.name == "base"
    assert (scenario.mesh.D, scenario.mesh.D_lo, scenario.mesh.D_hi) == (6, 4, 12)
    assert scenario.mesh.heartbeat_ms == 1000 and scenario.mesh.batch_delay_ms == 5
    assert scenario.latency.one_way_ms == Lognormal(median=20.0, sigma=0.5)
    assert scenario.bandwidth.up_mbps == Constant(20.0)
    assert scenario.churn.session_s == Exponential(scale=60.0)
    assert scenario.sync.interval_s == 30.0 and scenario.sync.on_rejoin is True
    assert scenario.partitions == ()


def test_regions_weights_default_to_equal() -> None:
    scenario = parse_scenario(scenario_with(latency={"regions": REGIONS}), "r")
    assert scenario.latency.regions is not None
    assert scenario.latency.regions.weights == (1.0, 1.0)
    assert "one_way_ms" not in scenario.to_dict()["latency"]


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_key", scenario_with(mesh={"DD": 8}), 'mesh: unknown key "DD"'),
    ("unknown_section", scenario_with(mash={"D": 8}), 'unknown section "mash"'),
    ("missing_nodes", {"run": {"duration_s": 5.0}}, "run.nodes: missing"),
    ("missing_duration", {"run": {"nodes": 10}}, "run.duration_s: missing"),
    ("section_not_table", scenario_with(mesh=5), "mesh: must be a table"),
    ("wrong_type", scenario_with(mesh={"D": "six"}), 'mesh.D: must be an integer, got "six"'),
    ("float_for_int", scenario_with(mesh={"D": 6.5}), "mesh.D: must be an integer, got 6.5"),
    ("bool_for_int", scenario_with(mesh={"D": True}), "mesh.D: must be an integer, got true"),
    ("bool_for_float", scenario_with(loss={"rate": False}), "loss.rate: must be a number"),
    ("bool_wanted", scenario_with(sync={"on_rejoin": 1}), "sync.on_rejoin: must be true or false"),
    ("name_not_text", scenario_with(name=5), "name: must be a non-empty string"),
    ("nodes_too_few", scenario_with(run={"nodes": 1}), "run.nodes: must be >= 2"),
    ("duration_zero", scenario_with(run={"duration_s": 0}), "run.duration_s: must be > 0"),
    ("loss_one", scenario_with(loss={"rate": 1.0}), "loss.rate: must be >= 0 and < 1, got 1"),
    ("churn_over_one", scenario_with(churn={"fraction": 1.5}), "churn.fraction: must be"),
    ("negative_count", scenario_with(manifests={"count": -1}), "manifests.count: must be >= 0"),
    ("peers_too_many", scenario_with(topology={"peers": 10}), "topology.peers: must be < run"),
    ("D_lo_above_D", scenario_with(mesh={"D_lo": 7}), "mesh.D_lo: must be <= mesh.D (6), got 7"),
    ("D_above_D_hi", scenario_with(mesh={"D": 13}), "mesh.D: must be <= mesh.D_hi (12)"),
    ("history_short", scenario_with(mesh={"gossip_history": 2}), "mesh.gossip_history: must be"),
    (
        "both_latency_forms",
        scenario_with(latency={"one_way_ms": 5, "regions": REGIONS}),
        "not both",
    ),
    (
        "regions_not_square",
        scenario_with(latency={"regions": {**REGIONS, "one_way_ms": [[1.0, 2.0]]}}),
        "latency.regions.one_way_ms: must be 2 rows of 2",
    ),
    (
        "regions_weights_count",
        scenario_with(latency={"regions": {**REGIONS, "weights": [1.0]}}),
        "latency.regions.weights: 1 weights for 2 names",
    ),
    (
        "regions_negative_latency",
        scenario_with(latency={"regions": {**REGIONS, "one_way_ms": [[1, -2], [2, 1]]}}),
        "latency.regions.one_way_ms[0][1]: must be >= 0",
    ),
    ("latency_negative", scenario_with(latency={"one_way_ms": -1}), "latency.one_way_ms: must not"),
    (
        "bandwidth_below_zero",
        scenario_with(bandwidth={"up_mbps": {"dist": "uniform", "low": -1, "high": 5}}),
        "bandwidth.up_mbps: must not draw below 0, but can draw -1 (clamp it: min = 0)",
    ),
    ("bandwidth_zero", scenario_with(bandwidth={"down_mbps": 0}), "bandwidth.down_mbps: its mean"),
    (
        "dist_unknown",
        scenario_with(latency={"one_way_ms": {"dist": "gaussian"}}),
        'latency.one_way_ms: unknown dist "gaussian" '
        "(known: constant, exponential, lognormal, pareto, uniform)",
    ),
    (
        "partition_fractions_sum",
        scenario_with(partition=[{"start_s": 1, "heal_s": 2, "fractions": [0.5, 0.4]}]),
        "partition[0].fractions: each must be > 0 and they must sum to 1",
    ),
    (
        "partition_one_part",
        scenario_with(partition=[{"start_s": 1, "heal_s": 2, "fractions": [1.0]}]),
        "partition[0].fractions: must be a list of at least 2",
    ),
    (
        "partition_zero_part",
        scenario_with(partition=[{"start_s": 1, "heal_s": 2, "fractions": [1.0, 0.0]}]),
        "partition[0].fractions: each must be > 0",
    ),
    (
        "partition_heals_first",
        scenario_with(partition=[{"start_s": 3, "heal_s": 2}]),
        "partition[0].heal_s: must be > start_s",
    ),
    (
        "partition_after_run",
        scenario_with(partition=[{"start_s": 6, "heal_s": 8}]),
        "partition[0].start_s: 6 is not before the run ends",
    ),
    (
        "partitions_overlap",
        scenario_with(partition=[{"start_s": 1, "heal_s": 3}, {"start_s": 2, "heal_s": 4}]),
        "partition[1].start_s: must be >= the heal_s of partition[0]",
    ),
    ("partition_missing_start", scenario_with(partition=[{"heal_s": 2}]), "partition[0].start_s"),
    ("partition_single_table", scenario_with(partition={"start_s": 1}), "array of tables"),
    (
        "too_many_byzantine_validators",
        scenario_with(ledger={"validators": 4}, byzantine={"validators": 5}),
        "byzantine.validators: at most ledger.validators = 4, got 5",
    ),
    (
        "byzantine_validators_without_ledger",
        scenario_with(byzantine={"validators": 1}),
        "need a ledger",
    ),
    (
        "too_many_forgers",
        scenario_with(byzantine={"forgers": 5, "bad_seeders": 5}),
        "byzantine: forgers + bad_seeders must be < run.nodes (10), got 10",
    ),
    ("bad_seeders_without_videos", scenario_with(byzantine={"bad_seeders": 1}), "need videos"),
    ("transfers_without_ledger", scenario_with(ledger={"transfers": 5}), "ledger.transfers"),
    ("viewers_without_videos", scenario_with(videos={"viewers": 5}), "videos.viewers"),
    ("feed_sample_too_big", scenario_with(feed={"sample_nodes": 11}), "feed.sample_nodes"),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_scenario(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "bad")
    assert message in str(caught.value)


def test_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[run\nnodes = 3\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(broken)


# --- overrides -------------------------------------------------------------------------


def test_overrides_apply_before_validation() -> None:
    scenario = load_scenario(
        SCENARIO_DIR / "small.toml",
        [
            "mesh.D=8",
            "churn.fraction=0.2",
            'latency.one_way_ms={dist="constant",value=5}',
            'name="tweaked"',
            "partition.0.start_s=3",
            "partition[0].heal_s=9",
        ],
    )
    assert scenario.mesh.D == 8 and scenario.churn.fraction == 0.2
    assert scenario.latency.one_way_ms == Constant(5.0)
    assert scenario.name == "tweaked"
    assert scenario.partitions[0].start_s == 3.0 and scenario.partitions[0].heal_s == 9.0


def test_override_leaves_the_input_alone() -> None:
    data = copy.deepcopy(BASE)
    changed = apply_override(data, "run.nodes=20")
    assert changed["run"]["nodes"] == 20 and data == BASE
    regions = apply_override(data, "latency.regions.names=['x']")
    assert regions["latency"] == {"regions": {"names": ["x"]}}


def test_override_result_is_still_checked() -> None:
    with pytest.raises(ScenarioError, match=r"mesh\.D_lo: must be <= mesh\.D"):
        load_scenario(SCENARIO_DIR / "small.toml", ["mesh.D=3"])


INVALID_OVERRIDES: list[tuple[str, str, str]] = [
    ("no_equals", "mesh.D", "expected section.key=VALUE"),
    ("no_value", "mesh.D=", "expected section.key=VALUE"),
    ("no_key", "=8", "expected section.key=VALUE"),
    ("empty_segment", "mesh..D=8", "an empty key"),
    ("bare_string", "name=foo", "strings need quotes"),
    ("bad_toml", "mesh.D=[1,", "is not a TOML value"),
    ("unknown_key", "mesh.DD=8", "unknown key mesh.DD (known: D, D_hi, D_lazy, D_lo"),
    ("unknown_section", "mash.D=8", 'unknown section "mash"'),
    ("inside_a_value", "mesh.D.x=8", "unknown key mesh.D.x"),
    ("inside_a_dist", "latency.one_way_ms.median=5", "override it whole"),
    ("partition_no_index", "partition.start_s=1", "partition.<index>.<key>"),
    ("partition_gap", "partition.3.start_s=1", "the next one is index 0"),
    ("partition_unknown_key", "partition.0.begin_s=1", "unknown key partition.0.begin_s"),
]


@pytest.mark.parametrize(
    ("spec", "message"), [c[1:] for c in INVALID_OVERRIDES], ids=[c[0] for c in INVALID_OVERRIDES]
)
def test_invalid_override(spec: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        apply_override(copy.deepcopy(BASE), spec)
    assert message in str(caught.value)


SWEEPS: list[tuple[str, tuple[str, list[str]]]] = [
    ("mesh.D=4,6,8", ("mesh.D", ["4", "6", "8"])),
    ("mesh.D=6", ("mesh.D", ["6"])),
    (" churn.fraction = 0.1, 0.2 ", ("churn.fraction", ["0.1", "0.2"])),
    (
        'latency.one_way_ms={dist="constant",value=5},{dist="uniform",low=1,high=9}',
        (
            "latency.one_way_ms",
            ['{dist="constant",value=5}', '{dist="uniform",low=1,high=9}'],
        ),
    ),
    (
        "partition.0.fractions=[0.5,0.5],[0.2,0.8]",
        ("partition.0.fractions", ["[0.5,0.5]", "[0.2,0.8]"]),
    ),
    ('name="a,b","c"', ("name", ['"a,b"', '"c"'])),
]


@pytest.mark.parametrize(("spec", "expected"), SWEEPS)
def test_override_values_splits_at_top_level_commas(
    spec: str, expected: tuple[str, list[str]]
) -> None:
    assert override_values(spec) == expected


@pytest.mark.parametrize("spec", ["mesh.D", "mesh.D=4,,8", "mesh.D=[4,6", 'name="a,b'])
def test_invalid_override_values(spec: str) -> None:
    with pytest.raises(ScenarioError, match="override"):
        override_values(spec)


# --- distributions -------------------------------------------------------------------------

DISTS = [
    5,
    2.5,
    {"dist": "constant", "value": 3},
    {"dist": "uniform", "low": 1, "high": 4},
    {"dist": "lognormal", "median": 20, "sigma": 0.5},
    {"dist": "exponential", "mean": 3},
    {"dist": "pareto", "scale": 2, "alpha": 1.5},
    {"dist": "lognormal", "median": 20, "sigma": 1, "min": 5, "max": 40},
]


@pytest.mark.parametrize("raw", DISTS, ids=[json.dumps(d) for d in DISTS])
def test_dist_samples_follow_the_seed(raw: object) -> None:
    dist = parse_dist(raw, "x")
    first = [dist.sample(random.Random(7)) for _ in range(3)]
    a, b = random.Random(7), random.Random(7)
    assert [dist.sample(a) for _ in range(100)] == [dist.sample(b) for _ in range(100)]
    assert first == [first[0]] * 3
    assert parse_dist(dist.to_dict(), "x") == dist


def test_dist_sanity() -> None:
    rng = random.Random(1)
    uniform = parse_dist({"dist": "uniform", "low": 2, "high": 3}, "x")
    assert all(2 <= uniform.sample(rng) <= 3 for _ in range(10_000))
    assert uniform.mean == 2.5
    lognormal = parse_dist({"dist": "lognormal", "median": 20, "sigma": 0.5}, "x")
    median = statistics.median(lognormal.sample(rng) for _ in range(20_000))
    assert 19 < median < 21
    assert lognormal.mean == pytest.approx(20 * math.exp(0.125))
    exponential = parse_dist({"dist": "exponential", "mean": 3}, "x")
    assert statistics.fmean(exponential.sample(rng) for _ in range(20_000)) == pytest.approx(
        3, rel=0.05
    )
    pareto = Pareto(scale=2.0, alpha=3.0)
    assert min(pareto.sample(rng) for _ in range(1_000)) >= 2
    assert pareto.mean == 3.0 and Pareto(scale=1.0, alpha=1.0).mean == math.inf
    assert parse_dist(7, "x") == Constant(7.0) and Constant(7.0).sample(rng) == 7.0


def test_dist_clamps() -> None:
    rng = random.Random(2)
    clamped = parse_dist({"dist": "exponential", "mean": 10, "min": 1, "max": 12}, "x")
    draws = [clamped.sample(rng) for _ in range(5_000)]
    assert min(draws) == 1 and max(draws) == 12
    assert clamped.mean == 10  # clamps are ignored by mean
    assert clamped.lowest == 1
    assert Uniform(low=-5.0, high=5.0, clamp_min=0.0).lowest == 0
    assert Lognormal(median=3.0, sigma=1.0).lowest == 0


INVALID_DISTS: list[tuple[str, object, str]] = [
    ("bool", True, "x: must be a number or a table"),
    ("text", "5", "x: must be a number or a table"),
    ("no_dist_key", {"value": 5}, 'x: missing key "dist"'),
    ("unknown_dist", {"dist": "gaussian"}, 'x: unknown dist "gaussian"'),
    ("unknown_key", {"dist": "constant", "value": 1, "mu": 2}, 'unknown key "mu" in a constant'),
    ("missing_param", {"dist": "pareto", "scale": 1}, "x: a pareto dist needs alpha"),
    ("param_not_number", {"dist": "exponential", "mean": "3"}, "x.mean: must be a number"),
    ("param_bool", {"dist": "constant", "value": True}, "x.value: must be a number"),
    ("param_inf", {"dist": "constant", "value": math.inf}, "x.value: must be a finite number"),
    ("uniform_backwards", {"dist": "uniform", "low": 3, "high": 1}, "low (3.0) must be <= high"),
    ("median_zero", {"dist": "lognormal", "median": 0, "sigma": 1}, "x.median: must be > 0"),
    ("sigma_negative", {"dist": "lognormal", "median": 1, "sigma": -1}, "x.sigma: must be >= 0"),
    ("mean_zero", {"dist": "exponential", "mean": 0}, "x.mean: must be > 0"),
    ("alpha_zero", {"dist": "pareto", "scale": 1, "alpha": 0}, "x.alpha: must be > 0"),
    ("clamps_crossed", {"dist": "constant", "value": 1, "min": 3, "max": 2}, "min (3.0) must be"),
]


@pytest.mark.parametrize(
    ("raw", "message"), [c[1:] for c in INVALID_DISTS], ids=[c[0] for c in INVALID_DISTS]
)
def test_invalid_dist(raw: object, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_dist(raw, "x")
    assert message in str(caught.value)


# --- Zipf and assign ---------------------------------------------------------------------


def test_zipf_probabilities() -> None:
    zipf = Zipf(100, 1.0)
    assert math.fsum(zipf.probability(k) for k in range(100)) == pytest.approx(1.0)
    assert zipf.probability(0) / zipf.probability(1) == pytest.approx(2.0)
    assert zipf.probability(100) == 0.0 and zipf.probability(-1) == 0.0
    uniform = Zipf(4, 0.0)
    assert [uniform.probability(k) for k in range(4)] == [0.25] * 4


def test_zipf_samples() -> None:
    zipf, rng = Zipf(50, 1.2), random.Random(3)
    counts = [0] * 50
    for _ in range(20_000):
        counts[zipf.sample(rng)] += 1
    assert counts[0] == max(counts)
    assert counts[0] / 20_000 == pytest.approx(zipf.probability(0), rel=0.05)
    a, b = random.Random(9), random.Random(9)
    assert [zipf.sample(a) for _ in range(100)] == [zipf.sample(b) for _ in range(100)]


@pytest.mark.parametrize(("n", "s"), [(0, 1.0), (5, -1.0), (5, math.nan)])
def test_invalid_zipf(n: int, s: float) -> None:
    with pytest.raises(ValueError, match="Zipf"):
        Zipf(n, s)


def test_assign_shares_follow_the_weights() -> None:
    regions = assign([0.5, 0.3, 0.2], 1_000, random.Random(4))
    assert [regions.count(i) for i in range(3)] == [500, 300, 200]
    odd = assign([1, 1, 1], 10, random.Random(4))
    assert sorted(odd.count(i) for i in range(3)) == [3, 3, 4]
    assert assign([0, 1], 5, random.Random(4)) == [1] * 5
    assert assign([2, 1], 30, random.Random(5)) == assign([2, 1], 30, random.Random(5))
    assert assign([2, 1], 30, random.Random(5)) != assign([2, 1], 30, random.Random(6))


@pytest.mark.parametrize(
    ("weights", "count"), [([], 3), ([0, 0], 3), ([1, -1], 3), ([1, math.inf], 3), ([1], -1)]
)
def test_invalid_assign(weights: list[float], count: int) -> None:
    with pytest.raises(ValueError):
        assign(weights, count, random.Random(0))
