"""The GossipSub model's processing: a core per node, or the cores of one machine that
all node processes share (what bench/sim_fidelity.py compares with real nodes)."""

import pytest

from simulation.engine import US_PER_MS, Sim
from simulation.gossip import GossipSub, MeshParams, SharedCores
from simulation.network import Latency, Network

LEAVES = 8
PROCESSING_US = 1000
BATCH_US = MeshParams().batch_delay_us


def star(cores: SharedCores | None) -> GossipSub:
    """A publisher (node 0) whose mesh is 8 leaves, on links with no latency and 10 Gbit/s:
    one message published at time 0, run to the end."""
    n = LEAVES + 1
    sim = Sim(1)
    net = Network(sim, n, Latency(n, lambda a, b: 0), [10_000.0] * n, [10_000.0] * n, 0.0)
    gossip = GossipSub(sim, net, "t", MeshParams(), PROCESSING_US, cores=cores)
    for leaf in range(1, n):
        net.connect(0, leaf)
        gossip.mesh[0].add(leaf)
        gossip.mesh[leaf].add(0)
    sim.at(0, gossip.publish, 0, "item", 100)
    sim.run(10**6)
    return gossip


def leaf_delays_us(gossip: GossipSub) -> list[int]:
    """When each leaf accepted the message, after the publish call, rounded to 10 us (the
    copies' transfer times are a few us)."""
    return sorted(round(ms * US_PER_MS / 10) * 10 for ms in gossip.delays_ms)


def test_a_core_per_node_processes_every_copy_at_once() -> None:
    # The batch delay, the publisher's processing, then each leaf's, all in parallel.
    assert leaf_delays_us(star(None)) == [BATCH_US + 2 * PROCESSING_US] * LEAVES


def test_nodes_sharing_two_cores_take_turns() -> None:
    cores = SharedCores(2)
    delays = leaf_delays_us(star(cores))
    # Two leaves at a time: the k-th pair finishes k processing times after the first.
    first = BATCH_US + 2 * PROCESSING_US
    assert delays == [first + (i // 2) * PROCESSING_US for i in range(LEAVES)]
    assert cores.busy_us == (LEAVES + 1) * PROCESSING_US


def test_drawn_processing_times_are_drawn_per_message() -> None:
    sim = Sim(1)
    net = Network(sim, 2, Latency(2, lambda a, b: 0), [10.0, 10.0], [10.0, 10.0], 0.0)
    draws = iter(range(100, 200))
    gossip = GossipSub(sim, net, "t", MeshParams(), lambda: next(draws))
    assert next(draws) == 100  # nothing was drawn to build it
    del gossip


def test_invalid_shared_cores() -> None:
    with pytest.raises(ValueError, match="at least one core"):
        SharedCores(0)


def test_invalid_constant_processing_time() -> None:
    sim = Sim(1)
    net = Network(sim, 2, Latency(2, lambda a, b: 0), [10.0, 10.0], [10.0, 10.0], 0.0)
    with pytest.raises(ValueError, match="processing time above 0"):
        GossipSub(sim, net, "t", MeshParams(), 0)
