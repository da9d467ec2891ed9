"""One run of a scenario from one seed: build the world, run the clock, gather figures.

``run_scenario`` is a pure function of its arguments: it reads no clock and no global
randomness, so the same scenario and seed give the same :class:`Result`, and the same
files once written (simulation/report.py).
"""

import gc
from collections.abc import Callable

from simulation.engine import US_PER_S, Sim
from simulation.feed import FeedModel
from simulation.gossip import GossipSub, SharedCores
from simulation.ledger import LedgerModel
from simulation.metrics import Result, Series
from simulation.model import Model
from simulation.scenario import Scenario
from simulation.swarm import Swarm
from simulation.sync import SyncModel
from simulation.world import (
    Churn,
    ManifestGossip,
    Partitions,
    build_network,
    mesh_params,
    processing_us,
)

Progress = Callable[[float, float], None]
# GossipSub's first heartbeat comes this long after start (py-libp2p's initial delay).
HEARTBEAT_START_US = 100_000


def run_scenario(scenario: Scenario, seed: int, *, progress: Progress | None = None) -> Result:
    """Run ``scenario`` from ``seed``; ``progress(done_s, total_s)`` as virtual time passes."""
    sim = Sim(seed)
    net = build_network(sim, scenario)
    duration_us = int(scenario.run.duration_s * US_PER_S)
    n = scenario.run.nodes
    byz = scenario.byzantine
    roles = sim.rng("roles")
    forgers = sorted(roles.sample(range(n), byz.forgers))
    swarm = Swarm(sim, net, scenario.videos, byz.bad_seeders) if scenario.videos.count else None
    churn = Churn(sim, net, scenario.churn, scenario.topology.peers, protected=forgers)
    params = mesh_params(scenario.mesh)
    # Both topics' processing runs on the same cores when the nodes share a machine.
    cores = SharedCores(scenario.mesh.shared_cores) if scenario.mesh.shared_cores else None
    manifests = GossipSub(
        sim,
        net,
        "manifests",
        params,
        processing_us(scenario.mesh.processing_ms, sim),
        cores=cores,
    )
    expect_all = (
        scenario.loss.rate == 0 and not scenario.partitions and scenario.churn.fraction == 0
    )
    models: list[Model] = [
        churn,
        Partitions(sim, net, scenario.partitions, scenario.topology.peers),
        ManifestGossip(
            sim,
            net,
            manifests,
            scenario.manifests,
            forgers,
            churners=churn.churners,
            duration_us=duration_us,
            expect_all=expect_all,
        ),
    ]
    models.append(SyncModel(sim, net, manifests, scenario.sync))
    models.append(FeedModel(sim, net, manifests, scenario.feed))
    if swarm is not None:
        models.append(swarm)
    manifests.start(HEARTBEAT_START_US)
    if scenario.ledger.validators:
        ledger_topic = GossipSub(
            sim,
            net,
            "ledger",
            params,
            processing_us(scenario.mesh.processing_ms, sim),
            cores=cores,
        )
        models.append(LedgerModel(sim, net, scenario.ledger, byz, gossip=ledger_topic))
        ledger_topic.start(HEARTBEAT_START_US)
    for model in models:
        model.start()
    result = Result(scenario=scenario.name, seed=seed)
    interval_us = max(1, int(scenario.run.sample_interval_s * US_PER_S))
    series = {model.name: Series(interval_s=scenario.run.sample_interval_s) for model in models}
    total_s = scenario.run.duration_s

    def on_step(now_us: int) -> None:
        time_s = now_us / US_PER_S
        for model in models:
            row = model.sample()
            if row:
                series[model.name].sample(time_s, row)
        if progress is not None:
            progress(min(time_s, total_s), total_s)

    # The loop allocates an event tuple per message copy and keeps millions of objects
    # alive: the cyclic collector's passes over them took a fifth of a large run. What
    # the models leave behind is freed by reference counting, so it sleeps until the end.
    collecting = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        sim.run(duration_us, on_step=on_step, step_us=interval_us)
    finally:
        if collecting:
            gc.enable()
        gc.unfreeze()
    for model in models:
        model.finish(result)
    result.series = {name: s for name, s in series.items() if s.times_s}
    result.per_node = {
        "bytes_up": [float(b) for b in net.bytes_up],
        "bytes_down": [float(b) for b in net.bytes_down],
    }
    result.summary["run"] = {
        "nodes": n,
        "duration_s": scenario.run.duration_s,
        "events": sim.events,
        "events_dispatched": sim.dispatched,
        "events_resolved": sim.resolved_events,
        "bytes_up_total": sum(net.bytes_up),
    }
    result.summary["duration_s"] = scenario.run.duration_s
    result.summary["scenario_config"] = scenario.to_dict()
    return result
