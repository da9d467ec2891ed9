"""The ledger model: the real validator and replica machines on the simulated network.

Each test builds the world by hand (a Sim, a Network with 20 ms links, a "ledger"
GossipSub) and runs the model from a seed. A failing seed reproduces with
``run_ledger(seed=...)`` and the same arguments.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from simulation.dists import Exponential
from simulation.engine import US_PER_S, Sim
from simulation.gossip import GossipSub, MeshParams
from simulation.ledger import ALLOCATION, NO_BYZANTINE, LedgerModel
from simulation.metrics import Result
from simulation.network import Latency, Network
from simulation.scenario import ByzantineConfig, ChurnConfig, LedgerConfig
from simulation.world import Churn

LINK_US = 20_000
HEARTBEAT_START_US = 100_000


@dataclass
class Run:
    sim: Sim
    net: Network
    model: LedgerModel
    result: Result

    @property
    def summary(self) -> dict[str, float]:
        return self.result.summary["ledger"]  # type: ignore[no-any-return]


def network(sim: Sim, nodes: int) -> Network:
    """``nodes`` nodes, 20 ms apart, 20 Mbit/s up and 50 down, no loss."""
    return Network(
        sim, nodes, Latency(nodes, lambda a, b: LINK_US), [20.0] * nodes, [50.0] * nodes, 0.0
    )


def run_ledger(
    seed: int,
    *,
    nodes: int = 20,
    validators: int = 4,
    accounts: int = 12,
    transfers: int = 40,
    byzantine: ByzantineConfig = NO_BYZANTINE,
    gossip: bool = True,
    duration_s: float = 20.0,
    churn: float = 0.0,
    setup: Callable[[Sim, Network, LedgerModel], None] | None = None,
) -> Run:
    """One run of the ledger model alone, built as simulation/run.py builds the world."""
    sim = Sim(seed)
    net = network(sim, nodes)
    topology = sim.rng("topology")
    for node in range(nodes):
        net.dial_random(node, 4, topology)
    topic = GossipSub(sim, net, "ledger", MeshParams(), lambda: 500) if gossip else None
    cfg = LedgerConfig(
        validators=validators, accounts=accounts, transfers=transfers, rate_per_s=20.0, start_s=1.0
    )
    model = LedgerModel(sim, net, cfg, byzantine, gossip=topic)
    churner = None
    if churn:
        sessions = ChurnConfig(
            fraction=churn, session_s=Exponential(10.0), downtime_s=Exponential(3.0)
        )
        churner = Churn(sim, net, sessions, 4)
    if setup is not None:
        setup(sim, net, model)
    if topic is not None:
        topic.start(HEARTBEAT_START_US)
    model.start()
    if churner is not None:
        churner.start()
    sim.run(int(duration_s * US_PER_S))
    result = Result(scenario="test", seed=seed)
    model.finish(result)
    return Run(sim, net, model, result)


def reproduce(seed: int, how: str) -> str:
    return f"seed {seed}; reproduce with run_ledger(seed={seed}, {how}) in {__file__}"


def test_honest_run_certifies_every_transfer_and_replicas_agree() -> None:
    run = run_ledger(1, nodes=30, transfers=60)
    s = run.summary
    assert run.result.failures == []
    assert s["honest_transfers"] == s["honest_certified"] == s["certified"] == 60
    assert s["safety_violations"] == s["conflicts_refused"] == 0
    assert s["replicas"] == 30  # a small network: every node is a replica
    assert s["replica_coverage"] == 1.0
    ledgers = [rn.ledger for rn in run.model.replicas.values()]
    assert {len(ledger.applied) for ledger in ledgers} == {60}
    assert all(ledger.snapshot() == ledgers[0].snapshot() for ledger in ledgers)
    assert sum(ledgers[0].balances.values()) == 12 * ALLOCATION
    finality = run.result.samples["finality_ms"]
    assert len(finality) == 60
    # An order and its votes cross one link each way: 40 ms at least.
    assert min(finality) >= 2 * LINK_US / 1000
    assert s["finality_ms_p50"] < 100
    assert len(run.result.samples["replica_apply_ms"]) == 30 * 60


def test_equivocators_never_break_safety_over_20_seeds() -> None:
    byzantine = ByzantineConfig(validators=1, clients=2)
    totals = {"equivocations": 0, "equivocations_certified": 0, "conflicts_refused": 0}
    for seed in range(20):
        run = run_ledger(seed, nodes=16, transfers=30, byzantine=byzantine)
        s = run.summary
        how = "byzantine=ByzantineConfig(validators=1, clients=2), nodes=16, transfers=30"
        assert run.result.failures == [], reproduce(seed, how) + f": {run.result.failures}"
        assert s["safety_violations"] == s["replica_conflicts"] == 0, reproduce(seed, how)
        # Liveness with f Byzantine validators: every honest transfer is certified.
        assert s["honest_certified"] == 30, reproduce(seed, how)
        for name in totals:
            totals[name] += int(s[name])
    # The runs did exercise the attack: equivocations refused by honest validators, and
    # certified (one of each pair) with the Byzantine validator's vote.
    assert totals["equivocations"] > 20
    assert totals["conflicts_refused"] > 0
    assert totals["equivocations_certified"] > 0


def test_equivocating_clients_block_only_their_own_accounts() -> None:
    # With four honest validators, two halves of two votes never make a quorum of three.
    run = run_ledger(3, byzantine=ByzantineConfig(clients=2))
    s = run.summary
    assert run.result.failures == []
    assert s["byzantine_accounts_blocked"] == 2
    assert s["equivocations_certified"] == 0
    assert s["honest_certified"] == s["honest_transfers"] == 40


def test_more_than_f_liars_are_caught() -> None:
    """The checks themselves: two Byzantine validators of four break safety, and the
    failures name the account and sequence number."""

    def second_liar(sim: Sim, net: Network, model: LedgerModel) -> None:
        honest = [seat for seat in model.seats if seat.validator is not None]
        honest[0].validator = None

    caught = []
    for seed in range(6):
        run = run_ledger(
            seed, byzantine=ByzantineConfig(validators=1, clients=2), setup=second_liar
        )
        caught += [line for line in run.result.failures if "two certificates for account" in line]
        if run.summary["safety_violations"]:
            assert any("seq" in line for line in run.result.failures)
    assert caught, "no seed made two certificates for one slot with 2 liars of 4"


def _hosts_nobody(model: LedgerModel) -> int:
    """An honest validator's node that hosts no client."""
    for seat in model.seats:
        if seat.validator is not None and seat.node not in model.account_nodes:
            return seat.node
    raise AssertionError("every validator node hosts a client: pick another seed")


def test_one_validator_offline_still_certifies() -> None:
    def take_one_down(sim: Sim, net: Network, model: LedgerModel) -> None:
        net.set_online(_hosts_nobody(model), False)

    run = run_ledger(2, setup=take_one_down)
    s = run.summary
    assert run.result.failures == []
    assert s["honest_certified"] == 40
    assert s["votes"] == 3 * 40  # the three online validators, once each


def test_a_validator_back_online_is_caught_up() -> None:
    """A validator offline while an account moved on refuses its next order as out of
    sequence; the client hands it the account's certificates and it votes."""

    def down_for_a_while(sim: Sim, net: Network, model: LedgerModel) -> None:
        node = _hosts_nobody(model)
        net.set_online(node, False)
        sim.at(2 * US_PER_S, net.set_online, node, True)

    # No gossip: pushes and catch-up are the validator's only way to hear of certificates.
    run = run_ledger(2, accounts=4, gossip=False, setup=down_for_a_while)
    s = run.summary
    assert run.result.failures == []
    assert s["catch_ups"] > 0
    assert s["honest_certified"] == 40


def test_an_offline_client_sends_when_back() -> None:
    def client_leaves(sim: Sim, net: Network, model: LedgerModel) -> None:
        node = next(n for n in model.account_nodes if n not in model.validator_nodes)
        sim.at(US_PER_S + 1, net.set_online, node, False)
        sim.at(4 * US_PER_S, net.set_online, node, True)

    run = run_ledger(4, setup=client_leaves)
    s = run.summary
    assert run.result.failures == []
    assert s["honest_certified"] == 40


def test_churn_reports_liveness_and_stays_safe() -> None:
    run = run_ledger(5, nodes=30, churn=0.5, byzantine=ByzantineConfig(validators=1, clients=2))
    s = run.summary
    assert run.result.failures == [], reproduce(5, "nodes=30, churn=0.5, ...")
    assert s["safety_violations"] == 0
    assert s["honest_certified"] + s["liveness_excused"] == s["honest_transfers"]
    assert 0.0 < s["liveness"] <= 1.0


def test_same_seed_same_result() -> None:
    byzantine = ByzantineConfig(validators=1, clients=2)
    first, second = (run_ledger(7, byzantine=byzantine, churn=0.3) for _ in range(2))
    assert first.result == second.result
    assert first.sim.events == second.sim.events
    other = run_ledger(8, byzantine=byzantine, churn=0.3)
    assert other.result.samples != first.result.samples


def test_sample_counts_certified_and_pending() -> None:
    run = run_ledger(1, transfers=10)
    assert run.model.sample() == {"certified": 10, "pending": 0}


@pytest.mark.parametrize(
    ("validators", "byzantine", "accounts"),
    [
        (4, ByzantineConfig(validators=5), 10),  # more liars than validators
        (4, ByzantineConfig(clients=11), 10),
        (4, ByzantineConfig(), 1),
        (21, ByzantineConfig(), 10),  # more validators than nodes
    ],
)
def test_invalid_committee_or_byzantine_counts(
    validators: int, byzantine: ByzantineConfig, accounts: int
) -> None:
    sim = Sim(0)
    net = network(sim, 20)
    cfg = LedgerConfig(validators=validators, accounts=accounts, transfers=1)
    with pytest.raises(ValueError):
        LedgerModel(sim, net, cfg, byzantine)
