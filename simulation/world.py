"""The simulated world a scenario describes: nodes, links, churn, partitions, gossip.

``build_network`` turns the scenario's latency, bandwidth and topology into a
:class:`~simulation.network.Network`; :class:`Churn` and :class:`Partitions` change it
as the run goes; :class:`ManifestGossip` publishes the manifest workload (and the
forgers' forgeries) on the manifests topic and reports how it spread.
"""

import math
from collections.abc import Callable, Sequence

from simulation.dists import Constant, Dist, assign
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.gossip import GossipSub, MeshParams, Message
from simulation.metrics import Result
from simulation.network import Latency, Network
from simulation.scenario import (
    ChurnConfig,
    LatencyConfig,
    ManifestsConfig,
    MeshConfig,
    PartitionConfig,
    Scenario,
)

# A drawn bandwidth is never below this: a zero rate would make a queue infinite.
MBPS_MIN = 0.01
# Manifests published this close to the end are left out of the coverage check: they
# cannot have reached everyone yet.
COVERAGE_GRACE_US = 10 * US_PER_S
FORGERY_BYTES = 1500
SAMPLES_MAX = 20_000
QUANTILES = 10_000
FORGERY_INTERVAL_US = 2 * US_PER_S


def sampler_us(dist: Dist, sim: Sim, name: str) -> Callable[[], int]:
    """A function drawing ``dist`` (milliseconds) in whole microseconds."""
    if isinstance(dist, Constant):
        value = int(dist.value * US_PER_MS)
        return lambda: value
    rng = sim.rng(name)
    return lambda: int(dist.sample(rng) * US_PER_MS)


def processing_us(dist: Dist, sim: Sim) -> int | Callable[[], int]:
    """A gossip topic's per-message processing time: whole microseconds when constant
    (at least 1), else a function drawing ``dist`` from the ``processing`` stream."""
    if isinstance(dist, Constant):
        return max(1, int(dist.value * US_PER_MS))
    return sampler_us(dist, sim, "processing")


def build_latency(sim: Sim, n: int, cfg: LatencyConfig) -> Latency:
    """Per-link one-way latency: drawn per link, or the region matrix plus jitter."""
    rng = sim.rng("latency")
    if cfg.regions is None:
        dist = cfg.one_way_ms
        return Latency(n, lambda a, b: int(dist.sample(rng) * US_PER_MS))
    regions = cfg.regions
    weights = regions.weights or tuple(1.0 for _ in regions.names)
    region = assign(weights, n, sim.rng("latency.regions"))
    matrix = regions.one_way_ms
    jitter = regions.jitter_ms

    def sample(a: int, b: int) -> int:
        return int((matrix[region[a]][region[b]] + jitter.sample(rng)) * US_PER_MS)

    return Latency(n, sample)


def build_network(sim: Sim, scenario: Scenario) -> Network:
    """The network at time 0: every node online, each having dialled ``peers`` others."""
    n = scenario.run.nodes
    rng = sim.rng("bandwidth")
    up = [max(MBPS_MIN, scenario.bandwidth.up_mbps.sample(rng)) for _ in range(n)]
    down = [max(MBPS_MIN, scenario.bandwidth.down_mbps.sample(rng)) for _ in range(n)]
    net = Network(sim, n, build_latency(sim, n, scenario.latency), up, down, scenario.loss.rate)
    topology = sim.rng("topology")
    for node in range(n):
        net.dial_random(node, scenario.topology.peers, topology)
    return net


def mesh_params(cfg: MeshConfig) -> MeshParams:
    return MeshParams(
        D=cfg.D,
        D_lo=cfg.D_lo,
        D_hi=cfg.D_hi,
        D_lazy=cfg.D_lazy,
        gossip_factor=cfg.gossip_factor,
        heartbeat_us=cfg.heartbeat_ms * US_PER_MS,
        gossip_window=cfg.gossip_window,
        gossip_history=cfg.gossip_history,
        batch_delay_us=cfg.batch_delay_ms * US_PER_MS,
    )


class Churn:
    """A ``fraction`` of the nodes alternate online sessions and downtimes.

    Each churning node starts online with a session drawn from ``session_s`` and then
    alternates downtimes and sessions. A node that comes back dials ``peers`` nodes
    anew. ``protected`` nodes (say, a video's first seeders) never churn."""

    name = "churn"

    def __init__(
        self, sim: Sim, net: Network, cfg: ChurnConfig, peers: int, protected: Sequence[int] = ()
    ) -> None:
        self.sim = sim
        self.net = net
        self.cfg = cfg
        self.peers = peers
        self._rng = sim.rng("churn")
        self._dial = sim.rng("churn.dial")
        candidates = [node for node in range(net.n) if node not in set(protected)]
        count = min(len(candidates), round(cfg.fraction * net.n))
        self.churners = sorted(self._rng.sample(candidates, count))
        self.ever_offline: set[int] = set()
        self.departures = 0
        self.returns = 0

    def start(self) -> None:
        for node in self.churners:
            self.sim.after(self._draw_us(self.cfg.session_s), self._leave, node)

    def _draw_us(self, dist: Dist) -> int:
        return max(1, int(dist.sample(self._rng) * US_PER_S))

    def _leave(self, node: int) -> None:
        self.departures += 1
        self.ever_offline.add(node)
        self.net.set_online(node, False)
        self.sim.after(self._draw_us(self.cfg.downtime_s), self._return, node)

    def _return(self, node: int) -> None:
        self.returns += 1
        self.net.set_online(node, True)
        self.net.dial_random(node, self.peers, self._dial)
        self.sim.after(self._draw_us(self.cfg.session_s), self._leave, node)

    def sample(self) -> dict[str, float]:
        online = sum(self.net.online)
        return {"online_fraction": online / self.net.n, "departures": self.departures}

    def finish(self, result: Result) -> None:
        result.summary["churn"] = {
            "churning_nodes": len(self.churners),
            "departures": self.departures,
            "returns": self.returns,
        }


class Partitions:
    """Splits the network into groups for a while, then heals it.

    At the start every connection across groups closes; at the heal each online node
    dials until it has ``peers`` connections again, as peer exchange would have it."""

    name = "partitions"

    def __init__(
        self, sim: Sim, net: Network, parts: Sequence[PartitionConfig], peers: int
    ) -> None:
        self.sim = sim
        self.net = net
        self.parts = list(parts)
        self.peers = peers
        self._rng = sim.rng("partitions")
        self.active = 0
        self._cut: list[tuple[int, int]] = []

    def start(self) -> None:
        for part in self.parts:
            self.sim.at(int(part.start_s * US_PER_S), self._split, part.fractions)
            self.sim.at(int(part.heal_s * US_PER_S), self._heal)

    def _split(self, fractions: Sequence[float]) -> None:
        self.active = 1
        group = assign(list(fractions), self.net.n, self._rng)
        peers = self.net.peers
        self._cut = [
            (a, b)
            for a in range(self.net.n)
            for b in sorted(peers[a])
            if a < b and group[a] != group[b]
        ]
        self.net.set_groups(group)

    def _heal(self) -> None:
        """Join the groups again: nodes redial the peers they lost at the split (their
        peer books remember them), then top up to ``peers`` connections."""
        self.active = 0
        self.net.set_groups([0] * self.net.n)
        for a, b in self._cut:
            self.net.connect(a, b)
        self._cut = []
        for node in range(self.net.n):
            missing = self.peers - len(self.net.peers[node])
            if missing > 0 and self.net.online[node]:
                self.net.dial_random(node, missing, self._rng)

    def sample(self) -> dict[str, float]:
        return {"partitioned": self.active} if self.parts else {}

    def finish(self, result: Result) -> None:
        if self.parts:
            result.summary["partitions"] = {"count": len(self.parts)}


class ManifestGossip:
    """The manifest workload on the manifests topic, and how it spread.

    ``count`` manifests are published from ``start_s`` with exponential gaps at
    ``rate_per_s``, each by a random online honest node; each forger publishes a forged
    manifest every two seconds from the same start."""

    name = "gossip"

    def __init__(
        self,
        sim: Sim,
        net: Network,
        gossip: GossipSub,
        cfg: ManifestsConfig,
        forgers: Sequence[int],
        *,
        churners: Sequence[int],
        duration_us: int,
        expect_all: bool,
    ) -> None:
        self.sim = sim
        self.net = net
        self.gossip = gossip
        self.cfg = cfg
        self.forgers = list(forgers)
        self._honest = [node for node in range(net.n) if node not in set(forgers)]
        self._steady = sorted(set(range(net.n)) - set(churners) - set(forgers))
        self._rng = sim.rng("manifests")
        self._size_rng = sim.rng("manifests.size")
        self.duration_us = duration_us
        self.expect_all = expect_all
        self.published = 0
        self.forged = 0
        self._last_sent = 0

    def start(self) -> None:
        if self.cfg.count:
            self.sim.at(int(self.cfg.start_s * US_PER_S), self._publish)
        for forger in self.forgers:
            self.sim.at(int(self.cfg.start_s * US_PER_S), self._forge, forger)

    def _publish(self) -> None:
        node = self._pick_online()
        if node is not None:
            size = max(1, int(self.cfg.bytes.sample(self._size_rng)))
            self.gossip.publish(node, self.published, size)
            self.published += 1
        if self.published < self.cfg.count:
            gap = self._rng.expovariate(self.cfg.rate_per_s)
            self.sim.after(max(1, int(gap * US_PER_S)), self._publish)

    def _pick_online(self) -> int | None:
        for _ in range(64):
            node = self._honest[self._rng.randrange(len(self._honest))]
            if self.net.online[node]:
                return node
        return None

    def _forge(self, forger: int) -> None:
        if self.net.online[forger]:
            self.gossip.publish(forger, ("forged", self.forged), FORGERY_BYTES, valid=False)
            self.forged += 1
        if self.sim.now + FORGERY_INTERVAL_US < self.duration_us:
            self.sim.after(FORGERY_INTERVAL_US, self._forge, forger)

    def sample(self) -> dict[str, float]:
        g = self.gossip
        sent = g.sent_data
        row: dict[str, float] = {
            "published": self.published,
            "deliveries": len(g.delays_ms),
            "data_messages_per_s": sent - self._last_sent,
        }
        self._last_sent = sent
        return row

    def finish(self, result: Result) -> None:
        g = self.gossip
        valid = [m for m in g.messages if m.valid]
        ordered = sorted(g.delays_ms)
        dups = [m.duplicates / m.accepted for m in valid if m.accepted]
        settled = [m for m in valid if m.published_us <= self.duration_us - COVERAGE_GRACE_US]
        coverage = _coverage(g, settled, self._steady)
        result.samples["propagation_ms"] = quantiles(ordered)
        result.samples["duplicates_per_message"] = dups
        result.summary["gossip"] = {
            "manifests": self.published,
            "messages": len(valid),
            "deliveries": len(ordered),
            "propagation_ms_p50": rank(ordered, 50),
            "propagation_ms_p90": rank(ordered, 90),
            "propagation_ms_p99": rank(ordered, 99),
            "propagation_ms_max": ordered[-1] if ordered else 0.0,
            "duplicates_mean": sum(dups) / len(dups) if dups else 0.0,
            "coverage_steady_nodes": coverage,
            "data_copies_sent": g.sent_data,
            "control_messages_sent": g.sent_control,
            "iwant_served": g.iwant_served,
            "synced": g.synced,
            "forged": self.forged,
            "forged_rejected": g.rejected,
            "forger_bans": g.bans,
        }
        if self.expect_all and coverage < 1.0:
            missing = _first_missing(settled, self._steady)
            result.failures.append(
                f"gossip: coverage {coverage:.6f} < 1 with no loss and no partition "
                f"(first miss: message {missing[0]} at node {missing[1]})"
            )


def rank(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, by nearest rank."""
    if not ordered:
        return 0.0
    return float(ordered[max(1, min(len(ordered), math.ceil(p * len(ordered) / 100))) - 1])


def quantiles(ordered: Sequence[float]) -> list[float]:
    """Sorted samples as they go into a Result: all of them up to ``SAMPLES_MAX``, else
    their ``QUANTILES`` + 1 evenly spaced quantiles (min and max included), which keep
    CDF plots and percentiles to 1/QUANTILES without millions of values."""
    if len(ordered) <= SAMPLES_MAX:
        return list(ordered)
    last = len(ordered) - 1
    return [ordered[round(i * last / QUANTILES)] for i in range(QUANTILES + 1)]


def _coverage(gossip: GossipSub, messages: Sequence[Message], nodes: Sequence[int]) -> float:
    """The fraction of (valid message, node) pairs where the node accepted it."""
    if not messages or not nodes:
        return 1.0
    mids = {m.mid for m in messages}
    lacking = sum(len(mids & gossip.missing[node]) for node in nodes)
    pairs = len(messages) * len(nodes)
    return (pairs - lacking) / pairs


def _first_missing(messages: Sequence[Message], nodes: Sequence[int]) -> tuple[int, int]:
    for m in messages:
        for node in nodes:
            if m.done[node] <= 0:
                return m.mid, node
    return -1, -1
