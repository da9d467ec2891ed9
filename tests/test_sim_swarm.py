"""The simulated swarm: views complete, bad seeders are caught, seeders may leave, and a
seed gives one run. Every test waits on simulated time only."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.cid import cid_digest
from protocol.fetch import Action, FetchScheduler
from simulation.dists import Constant, ScenarioError
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.metrics import Result
from simulation.network import Latency, Network
from simulation.scenario import VideosConfig
from simulation.swarm import Swarm

ROOT = Path(__file__).resolve().parent.parent


def videos(**overrides: Any) -> VideosConfig:
    values: dict[str, Any] = {
        "count": 2,
        "viewers": 20,
        "start_s": 1.0,
        "views_per_s": 5.0,
        "segments": 5,
        "segment_bytes": Constant(100_000.0),
        "seeders": 2,
        "popular_viewers_fraction": 0.5,
    }
    values.update(overrides)
    return VideosConfig(**values)


def build(
    cfg: VideosConfig,
    *,
    nodes: int = 40,
    seed: int = 1,
    latency_us: int = 20_000,
    up_mbps: float = 20.0,
    bad_seeders: int = 0,
    **kwargs: Any,
) -> tuple[Sim, Network, Swarm]:
    sim = Sim(seed)
    latency = Latency(nodes, lambda a, b: latency_us)
    net = Network(sim, nodes, latency, [up_mbps] * nodes, [50.0] * nodes, 0.0)
    return sim, net, Swarm(sim, net, cfg, bad_seeders, **kwargs)


def run(sim: Sim, swarm: Swarm, until_s: float) -> Result:
    rows: list[dict[str, float]] = []
    swarm.start()
    sim.run(int(until_s * US_PER_S), on_step=lambda now: rows.append(swarm.sample()))
    assert len(rows) == int(until_s)
    result = Result(scenario="test", seed=sim.seed)
    swarm.finish(result)
    return result


def test_every_view_completes_without_churn() -> None:
    sim, _, swarm = build(videos())
    result = run(sim, swarm, 60)
    summary = result.summary["swarm"]
    assert result.failures == []
    assert summary["views"] == summary["completed"] == 20
    assert summary["abandoned"] == summary["gave_up"] == summary["unfinished"] == 0
    assert len(result.samples["startup_ms"]) == 20
    assert 0 < summary["startup_ms_p50"] <= summary["startup_ms_p90"]
    assert summary["availability_mean"] == 1.0
    # Each view stores thumbnail, init and every segment, once.
    assert summary["chunks_transferred"] == 20 * (5 + 2)
    assert summary["bad_chunks_caught"] == 0


def test_seeders_are_placed_by_rendezvous_ranking() -> None:
    from protocol.placement import rank

    _, _, swarm = build(videos(seeders=3))
    for video in swarm.videos:
        best = rank(video.video_id, swarm.peer_ids)[:3]
        assert sorted(swarm.peer_ids.index(p) for p in best) == video.seeders


def test_popular_fraction_sends_every_view_to_video_zero() -> None:
    sim, _, swarm = build(videos(count=5, popular_viewers_fraction=1.0))
    run(sim, swarm, 30)
    assert {view.video.index for view in swarm.views} == {0}


def summary_of(seed: int) -> tuple[dict[str, Any], list[float]]:
    sim, _, swarm = build(videos(count=3, viewers=30, segment_bytes=Constant(400_000.0)), seed=seed)
    result = run(sim, swarm, 40)
    return result.summary["swarm"], result.samples["startup_ms"]


def test_same_seed_same_run_other_seed_other_run() -> None:
    first = summary_of(7)
    assert summary_of(7) == first
    assert summary_of(8) != first


def test_same_seed_same_run_across_processes() -> None:
    """Hash randomisation (sets of bytes) must not leak into the order of events."""
    code = (
        "import json, sys; sys.path.insert(0, '.'); "
        "from tests.test_sim_swarm import summary_of; "
        "print(json.dumps(summary_of(7), sort_keys=True))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]


def test_bad_seeders_are_caught_and_no_bad_chunk_is_accepted() -> None:
    sim, _, swarm = build(videos(count=1, viewers=10), bad_seeders=2)
    result = run(sim, swarm, 60)
    summary = result.summary["swarm"]
    assert set(swarm.bad_seeder_nodes).isdisjoint(swarm.seeder_nodes)
    assert summary["bad_seeders"] == 2
    assert summary["bad_chunks_caught"] >= 1
    assert summary["bad_chunks_accepted"] == 0
    assert summary["completed"] == 10
    assert result.failures == []


def test_a_bad_chunk_accepted_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler that trusted any bytes (here: told the right digest) is caught."""
    received = FetchScheduler.received

    def trusting(
        self: FetchScheduler, peer: bytes, request_id: int, data: bytes, now_ms: int, **_: Any
    ) -> list[Action]:
        pending = self._requests.get(request_id)
        digest = cid_digest(pending.cid) if pending else None
        return received(self, peer, request_id, data, now_ms, sha256=digest)

    monkeypatch.setattr(FetchScheduler, "received", trusting)
    sim, _, swarm = build(videos(count=1, viewers=5, seeders=1), nodes=10, bad_seeders=3)
    result = run(sim, swarm, 60)
    assert result.summary["swarm"]["bad_chunks_accepted"] > 0
    assert any("stored a corrupt chunk" in line for line in result.failures)


def test_a_seeder_leaving_mid_view_is_replaced() -> None:
    cfg = videos(count=1, viewers=1, segments=10, segment_bytes=Constant(1_000_000.0))
    sim, net, swarm = build(cfg, nodes=10, up_mbps=8.0)
    gone, other = swarm.videos[0].seeders
    sim.at(int(3 * US_PER_S), net.set_online, gone, False)
    result = run(sim, swarm, 60)
    summary = result.summary["swarm"]
    assert summary["completed"] == 1
    assert swarm.bytes_served[gone] > 0  # it served before it left...
    assert swarm.bytes_served[other] > swarm.bytes_served[gone]  # ...and the other took over
    assert summary["availability_min"] == 1.0


def test_a_viewer_going_offline_abandons_and_keeps_what_it_has() -> None:
    cfg = videos(count=1, viewers=1, segments=10, segment_bytes=Constant(1_000_000.0))
    sim, net, swarm = build(cfg, nodes=10, up_mbps=8.0)
    swarm.start()
    sim.run(int(3 * US_PER_S))
    (view,) = swarm.views
    net.set_online(view.node, False)
    sim.run(int(30 * US_PER_S))
    result = Result(scenario="test", seed=1)
    swarm.finish(result)
    assert result.summary["swarm"]["abandoned"] == 1
    assert swarm.videos[0].holding[view.node] == view.held != set()


def test_a_video_with_no_holder_online_is_unavailable_and_the_view_gives_up() -> None:
    cfg = videos(count=1, viewers=1, seeders=1)
    sim, net, swarm = build(cfg, nodes=10)
    (seeder,) = swarm.seeder_nodes
    net.set_online(seeder, False)
    result = run(sim, swarm, 30)
    summary = result.summary["swarm"]
    assert summary["availability_mean"] == 0.0
    assert summary["gave_up"] == 1
    assert summary["started_playing"] == 0


def startup_p50(latency_us: int) -> float:
    sim, _, swarm = build(videos(), latency_us=latency_us)
    return float(run(sim, swarm, 60).summary["swarm"]["startup_ms_p50"])


def test_startup_delay_grows_with_latency() -> None:
    near, far = startup_p50(5 * US_PER_MS), startup_p50(100 * US_PER_MS)
    # Init and the first segment are asked at once: one round trip (2 x 95 ms) apart.
    assert far - near >= 2 * 95


def test_shedding_load_with_busy_keeps_an_overloaded_swarm_moving() -> None:
    cfg = videos(count=1, viewers=60, views_per_s=30.0, segments=8, seeders=1)
    sim, _, swarm = build(cfg, nodes=80, up_mbps=4.0, busy_backlog_ms=500)
    result = run(sim, swarm, 60)
    summary = result.summary["swarm"]
    assert summary["busy"] > 0
    assert summary["completed"] == 60


def test_videos_no_manifest_can_describe_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"videos\.segments"):
        build(videos(segments=321))
    with pytest.raises(ScenarioError, match="bad_seeders"):
        build(videos(seeders=3), nodes=5, bad_seeders=2)
