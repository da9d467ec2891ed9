"""The simulator's sync and feed models: the real Reconciler catches a node up after it
missed gossip, and the real ranking shows what missing messages cost a feed."""

import random
from collections.abc import Sequence

import pytest

from node.sync import encode_frame, end_frame, envelopes_frame, reconcile_frame
from protocol.itemset import BOUND_MAX, BOUND_MIN, MemoryItemSet, item_hash
from protocol.reconcile import Reconciler
from simulation.dists import Constant
from simulation.engine import US_PER_S, Sim
from simulation.feed import FeedModel
from simulation.gossip import GossipSub, MeshParams
from simulation.metrics import Result
from simulation.network import Latency, Network
from simulation.scenario import FeedConfig, SyncConfig
from simulation.sync import (
    HeldItems,
    SyncModel,
    item_id,
    push_bytes,
    reconcile_frame_bytes,
)

NEVER_S = 10_000.0  # a sync interval longer than any run here


def build(n: int, seed: int) -> tuple[Sim, Network, GossipSub]:
    sim = Sim(seed)
    net = Network(sim, n, Latency(n, lambda a, b: 20_000), [50.0] * n, [50.0] * n, 0.0)
    topology = sim.rng("topology")
    for node in range(n):
        net.dial_random(node, 6, topology)
    gossip = GossipSub(sim, net, "manifests", MeshParams(), lambda: 2500)
    gossip.start(100_000)
    return sim, net, gossip


def publish(sim: Sim, gossip: GossipSub, count: int, start_s: float, avoid: Sequence[int]) -> None:
    """``count`` manifests, one every 50 ms from ``start_s``, by nodes not in ``avoid``."""
    publishers = [node for node in range(gossip.net.n) if node not in set(avoid)]
    for k in range(count):
        node = publishers[k % len(publishers)]
        sim.at(int((start_s + 0.05 * k) * US_PER_S), gossip.publish, node, k, 1500)


def away(sim: Sim, net: Network, node: int, leave_s: float, back_s: float) -> None:
    """Take ``node`` offline from ``leave_s`` to ``back_s``; it dials 6 peers on return."""
    rng = sim.rng("test.dial")

    def back() -> None:
        net.set_online(node, True)
        net.dial_random(node, 6, rng)

    sim.at(int(leave_s * US_PER_S), net.set_online, node, False)
    sim.at(int(back_s * US_PER_S), back)


def missing(gossip: GossipSub, node: int) -> int:
    return sum(1 for m in gossip.messages if m.valid and m.done[node] <= 0)


# -- sync ------------------------------------------------------------------------------


@pytest.mark.parametrize("synced", [False, True])
def test_rejoin_sync_brings_a_node_that_missed_messages_to_the_full_set(synced: bool) -> None:
    sim, net, gossip = build(40, seed=3)
    late = 7
    away(sim, net, late, leave_s=0.5, back_s=10.0)
    publish(sim, gossip, 60, start_s=1.0, avoid=[late])
    sync = SyncModel(sim, net, gossip, SyncConfig(interval_s=NEVER_S, on_rejoin=synced))
    sync.start()
    sim.run(9 * US_PER_S)
    assert missing(gossip, late) == 60  # offline while all of them were gossiped
    sim.run(20 * US_PER_S)
    result = Result(scenario="test", seed=3)
    sync.finish(result)
    summary = result.summary["sync"]
    if not synced:
        # Gossip never resends old messages: without sync the gap stays.
        assert missing(gossip, late) == 60
        assert summary["sessions"] == 0
        return
    assert missing(gossip, late) == 0
    assert summary["rejoin_sessions"] == 1
    assert summary["completed"] == 1
    assert summary["items_recovered"] == 60
    assert summary["rounds_mean"] > 0
    assert summary["bytes"] > 60 * 1500  # the envelopes, plus the reconciliation
    assert summary["reconcile_bytes"] > 0
    assert result.samples["sync_ms"][0] > 2 * 20  # at least a round trip of 20 ms links
    assert gossip.synced == 60
    assert result.ok, result.failures


def test_a_gap_among_many_items_takes_several_rounds() -> None:
    # The node holds the first 80 of 120 manifests: too many for one id list, so the
    # reconciler narrows the difference down with fingerprints first.
    sim, net, gossip = build(40, seed=6)
    late = 9
    away(sim, net, late, leave_s=6.0, back_s=12.0)
    publish(sim, gossip, 80, start_s=1.0, avoid=[late])
    publish(sim, gossip, 40, start_s=7.0, avoid=[late])
    sync = SyncModel(sim, net, gossip, SyncConfig(interval_s=NEVER_S, on_rejoin=True))
    sync.start()
    sim.run(11 * US_PER_S)
    assert missing(gossip, late) == 40
    sim.run(20 * US_PER_S)
    result = Result(scenario="test", seed=6)
    sync.finish(result)
    assert missing(gossip, late) == 0
    assert result.summary["sync"]["items_recovered"] == 40
    assert result.summary["sync"]["rounds_max"] >= 2
    assert result.ok, result.failures


def test_periodic_sync_catches_up_a_partition_side() -> None:
    sim, net, gossip = build(40, seed=5)
    side = [1 if node < 20 else 0 for node in range(40)]
    sim.at(int(0.5 * US_PER_S), net.set_groups, side)
    publish(sim, gossip, 40, start_s=1.0, avoid=range(20))  # only the other side publishes

    def heal() -> None:
        net.set_groups([0] * 40)
        rng = sim.rng("test.heal")
        for node in range(40):
            net.dial_random(node, 3, rng)

    sim.at(6 * US_PER_S, heal)
    sync = SyncModel(sim, net, gossip, SyncConfig(interval_s=2.0, on_rejoin=True))
    sync.start()
    sim.run(5 * US_PER_S)
    assert all(missing(gossip, node) == 40 for node in range(20))
    sim.run(30 * US_PER_S)
    assert all(missing(gossip, node) == 0 for node in range(40))
    result = Result(scenario="test", seed=5)
    sync.finish(result)
    assert result.summary["sync"]["items_recovered"] > 0
    assert result.ok, result.failures


def test_sync_of_equal_sets_is_one_round() -> None:
    sim, net, gossip = build(30, seed=4)
    publish(sim, gossip, 50, start_s=1.0, avoid=[])
    sim.run(10 * US_PER_S)
    assert all(missing(gossip, node) == 0 for node in range(30))
    sync = SyncModel(sim, net, gossip, SyncConfig(interval_s=2.0, on_rejoin=True))
    sync.start()
    sim.run(15 * US_PER_S)
    result = Result(scenario="test", seed=4)
    sync.finish(result)
    summary = result.summary["sync"]
    assert summary["completed"] >= 30
    assert summary["rounds_max"] == 1
    assert summary["items_recovered"] == 0
    assert summary["item_sets_built"] == 1  # every node holds the same set: one shared


def test_held_items_answer_as_memory_item_set() -> None:
    rng = random.Random(1)
    items = sorted({(rng.randrange(50), item_id(rng.randrange(1000), 0)) for _ in range(300)})
    held = HeldItems(items, [item_hash(item) for item in items], frozenset())
    reference = MemoryItemSet(items)
    bounds = [BOUND_MIN, BOUND_MAX, *((t, bytes([p])) for t in range(0, 52, 3) for p in (1, 200))]
    for lower in bounds:
        for upper in bounds:
            if lower > upper:
                continue
            assert held.count(lower, upper) == reference.count(lower, upper)
            assert held.fingerprint(lower, upper) == reference.fingerprint(lower, upper)
            assert held.ids(lower, upper) == reference.ids(lower, upper)
            assert held.split(lower, upper, 16) == reference.split(lower, upper, 16)


def test_frame_sizes_are_node_sync_frames() -> None:
    small = MemoryItemSet([(5, item_id(1, 0))])
    large = MemoryItemSet((t, item_id(t, 0)) for t in range(200))
    for items in (small, large, MemoryItemSet()):
        message = Reconciler(items).initiate()
        assert reconcile_frame_bytes(message) == len(encode_frame(reconcile_frame(message)))
    assert push_bytes([]) == len(encode_frame(end_frame()))
    for sizes in ([1500], [100] * 15, [100] * 16, [300] * 300, [70_000, 12]):
        frames = [sizes[i : i + 256] for i in range(0, len(sizes), 256)]
        expected = sum(len(encode_frame(envelopes_frame([b"x" * s for s in f]))) for f in frames)
        assert push_bytes(sizes) == expected + len(encode_frame(end_frame()))


# -- feed ------------------------------------------------------------------------------


def feed_run(seed: int, *, late: int | None, synced: bool) -> Result:
    """30 nodes, 90 manifests; every node's feed ranked; ``late`` offline while they spread."""
    n = 30
    sim, net, gossip = build(n, seed)
    if late is not None:
        away(sim, net, late, leave_s=0.5, back_s=10.0)
    publish(sim, gossip, 90, start_s=1.0, avoid=[] if late is None else [late])
    cfg = FeedConfig(sample_nodes=n, follows_per_account=Constant(8.0), zipf_s=1.0, limit=10)
    sync = SyncModel(sim, net, gossip, SyncConfig(interval_s=NEVER_S, on_rejoin=synced))
    feed = FeedModel(sim, net, gossip, cfg)
    for model in (sync, feed):
        model.start()
    sim.run(20 * US_PER_S)
    result = Result(scenario="test", seed=seed)
    sync.finish(result)
    feed.finish(result)
    return result


def test_feed_overlap_is_one_when_every_node_holds_everything() -> None:
    result = feed_run(2, late=None, synced=False)
    summary = result.summary["feed"]
    assert summary["sampled"] == 30
    assert summary["held_fraction_mean"] == 1.0
    assert result.samples["feed_overlap"] == [1.0] * 30
    assert summary["feed_items_mean"] > 5
    # Every item says why it is there: the age at least, and a social reason.
    assert summary["reasons_per_item_min"] >= 2
    assert summary["reason_codes"]["you_follow"] > 0
    assert summary["reason_codes"]["posted"] == summary["feed_items_mean"] * 30


def test_feed_overlap_drops_at_a_node_that_missed_items_and_sync_restores_it() -> None:
    late = 11
    unsynced = feed_run(2, late=late, synced=False)
    overlaps = unsynced.samples["feed_overlap"]
    assert overlaps[late] < 0.5
    assert unsynced.summary["feed"]["overlap_min"] == overlaps[late]
    assert unsynced.summary["feed"]["churned_sampled"] == 1
    assert unsynced.summary["feed"]["overlap_mean_steady"] == 1.0
    synced = feed_run(2, late=late, synced=True)
    assert synced.samples["feed_overlap"][late] == 1.0


def test_runs_are_deterministic() -> None:
    first = feed_run(7, late=3, synced=True)
    again = feed_run(7, late=3, synced=True)
    assert first.summary == again.summary
    assert first.samples == again.samples
    other = feed_run(8, late=3, synced=True)
    assert other.summary["feed"] != first.summary["feed"]
