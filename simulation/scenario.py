"""Scenarios: what a simulated run models, read from TOML and checked before it starts.

A scenario file has one table per part of the model (``[run]``, ``[mesh]``, ``[latency]``,
...); every key but ``run.nodes`` and ``run.duration_s`` has a default, the node's own
value where the node has one. Unknown sections and keys, values of the wrong type and
values out of range are refused with the dotted key's name, so a typo never passes
silently. Overrides (``mesh.D=8``) change the raw TOML before it is checked, so they
obey the same rules as the file. Distributions are described in :mod:`simulation.dists`.
"""

import copy
import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from simulation.dists import (
    Constant,
    Dist,
    Exponential,
    Lognormal,
    ScenarioError,
    parse_dist,
    read_number,
    show,
)

__all__ = [
    "SCENARIO_DIR",
    "BandwidthConfig",
    "ByzantineConfig",
    "ChurnConfig",
    "FeedConfig",
    "LatencyConfig",
    "LedgerConfig",
    "LossConfig",
    "ManifestsConfig",
    "MeshConfig",
    "PartitionConfig",
    "RegionsConfig",
    "RunConfig",
    "Scenario",
    "ScenarioError",
    "SyncConfig",
    "TopologyConfig",
    "VideosConfig",
    "apply_override",
    "bundled_scenarios",
    "load_scenario",
    "override_values",
    "parse_scenario",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
NODES_MAX = 1_000_000
FRACTION_SUM_TOLERANCE = 1e-9
if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


# --- how one key is read -------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """The range a number (or a distribution's draws) must stay in."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    def holds(self, value: float) -> bool:
        return not (
            (self.at_least is not None and value < self.at_least)
            or (self.above is not None and value <= self.above)
            or (self.at_most is not None and value > self.at_most)
            or (self.below is not None and value >= self.below)
        )

    def describe(self) -> str:
        parts = [f">= {_num(self.at_least)}"] if self.at_least is not None else []
        parts += [f"> {_num(self.above)}"] if self.above is not None else []
        parts += [f"<= {_num(self.at_most)}"] if self.at_most is not None else []
        parts += [f"< {_num(self.below)}"] if self.below is not None else []
        return " and ".join(parts)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def limits(**bounds: float) -> dict[str, Bounds]:
    """The metadata of a key whose values must stay within ``bounds``."""
    return {"bounds": Bounds(**bounds)}


def key(default: Any = dataclasses.MISSING, **bounds: float) -> Any:
    """A number or flag: its default (none: the key is required) and its bounds.

    Keys whose default is an object (a distribution) use ``field(default=...,
    metadata=limits(...))`` instead, since ruff (RUF009) allows no other call there."""
    return field(default=default, metadata=limits(**bounds))


def custom(read: Callable[[object, str], Any]) -> dict[str, Any]:
    """The metadata of a key read by ``read(raw, where)`` (lists, sub-tables)."""
    return {"read": read}


def _read_value(f: dataclasses.Field[Any], raw: object, where: str) -> Any:
    read = f.metadata.get("read")
    if read is not None:
        return read(raw, where)
    bounds: Bounds = f.metadata.get("bounds", Bounds())
    if f.type is Dist:
        return _bounded_dist(parse_dist(raw, where), bounds, where)
    if f.type is bool:
        if not isinstance(raw, bool):
            raise ScenarioError(f"{where}: must be true or false, got {show(raw)}")
        return raw
    value = _read_int(raw, where) if f.type is int else read_number(raw, where)
    if not bounds.holds(value):
        raise ScenarioError(f"{where}: must be {bounds.describe()}, got {_num(value)}")
    return value


def _read_int(raw: object, where: str) -> int:
    if isinstance(raw, bool):
        raise ScenarioError(f"{where}: must be an integer, got {show(raw)} (a boolean)")
    if not isinstance(raw, int):
        raise ScenarioError(f"{where}: must be an integer, got {show(raw)}")
    return raw


def _bounded_dist(dist: Dist, bounds: Bounds, where: str) -> Dist:
    """``at_least``: no draw below it; ``above``: no draw below it, and a mean above it."""
    floor = bounds.at_least if bounds.at_least is not None else bounds.above
    if floor is not None and dist.lowest < floor:
        hint = "" if isinstance(dist, Constant) else f" (clamp it: min = {_num(floor)})"
        raise ScenarioError(
            f"{where}: must not draw below {_num(floor)}, but can draw {_num(dist.lowest)}{hint}"
        )
    if bounds.above is not None and not dist.mean > bounds.above:
        raise ScenarioError(f"{where}: its mean must be > {_num(bounds.above)}, got {dist.mean}")
    return dist


def _table(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a table ([{where}]), got {show(raw)}")
    return raw


def _refuse_unknown(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for name in table:
        if name not in known:
            what = f'{where}: unknown key "{name}"' if where else f'unknown section "{name}"'
            raise ScenarioError(f"{what} (known: {', '.join(sorted(known))})")


def _read_section(cls: type[T], raw: object, where: str) -> T:
    table = _table(raw, where)
    names = [f.name for f in dataclasses.fields(cls)]
    _refuse_unknown(table, names, where)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            values[f.name] = _read_value(f, table[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING:
            raise ScenarioError(f"{where}.{f.name}: missing (this key has no default)")
    return cls(**values)


def _read_list(raw: object, where: str, minimum: int) -> list[Any]:
    if not isinstance(raw, list) or len(raw) < minimum:
        raise ScenarioError(f"{where}: must be a list of at least {minimum}, got {show(raw)}")
    return raw


def _read_names(raw: object, where: str) -> tuple[str, ...]:
    names = _read_list(raw, where, 1)
    if not all(isinstance(name, str) and name for name in names):
        raise ScenarioError(f"{where}: must be non-empty strings, got {show(names)}")
    if len(set(names)) != len(names):
        raise ScenarioError(f"{where}: names must be unique, got {show(names)}")
    return tuple(names)


def _read_weights(raw: object, where: str) -> tuple[float, ...]:
    items = _read_list(raw, where, 1)
    weights = tuple(read_number(w, f"{where}[{i}]") for i, w in enumerate(items))
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ScenarioError(f"{where}: must be >= 0 and not all 0, got {show(items)}")
    return weights


def _read_matrix(raw: object, where: str) -> tuple[tuple[float, ...], ...]:
    matrix = []
    for i, raw_row in enumerate(_read_list(raw, where, 1)):
        row = _read_list(raw_row, f"{where}[{i}]", 1)
        matrix.append(tuple(_read_latency(v, f"{where}[{i}][{j}]") for j, v in enumerate(row)))
    return tuple(matrix)


def _read_latency(raw: object, where: str) -> float:
    value = read_number(raw, where)
    if value < 0:
        raise ScenarioError(f"{where}: must be >= 0, got {_num(value)}")
    return value


def _read_fractions(raw: object, where: str) -> tuple[float, ...]:
    items = _read_list(raw, where, 2)
    fractions = tuple(read_number(f, f"{where}[{i}]") for i, f in enumerate(items))
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > FRACTION_SUM_TOLERANCE:
        raise ScenarioError(f"{where}: each must be > 0 and they must sum to 1, got {show(items)}")
    return fractions


# --- the sections ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """How big and how long: the nodes, the virtual time, how often series are sampled."""

    nodes: int = key(at_least=2, at_most=NODES_MAX)
    duration_s: float = key(above=0)
    sample_interval_s: float = key(1.0, above=0)


@dataclass(frozen=True)
class TopologyConfig:
    """The overlay at start: each node dials ``peers`` others chosen at random."""

    peers: int = key(8, at_least=1)


@dataclass(frozen=True)
class MeshConfig:
    """GossipSub: mesh degrees, gossip to lazy peers, heartbeats, batching, validation time."""

    D: int = key(6, at_least=1)
    D_lo: int = key(4, at_least=1)
    D_hi: int = key(12, at_least=1)
    D_lazy: int = key(6, at_least=0)
    gossip_factor: float = key(0.25, at_least=0, at_most=1)
    heartbeat_ms: int = key(1000, at_least=1)
    gossip_window: int = key(3, at_least=1)
    gossip_history: int = key(5, at_least=1)
    batch_delay_ms: int = key(5, at_least=0)
    processing_ms: Dist = field(default=Constant(2.5), metadata=limits(at_least=0))
    """Time one hop takes to validate a message before relaying it."""
    shared_cores: int = key(0, at_least=0)
    """0: each node has a core of its own. N: every node's processing shares N cores, as
    node processes on one machine do (a test bed), so messages also wait for a core."""


def _read_regions(raw: object, where: str) -> "RegionsConfig":
    regions = _read_section(RegionsConfig, raw, where)
    size = len(regions.names)
    weights = regions.weights or (1.0,) * size
    if len(weights) != size:
        raise ScenarioError(f"{where}.weights: {len(weights)} weights for {size} names")
    if len(regions.one_way_ms) != size or any(len(r) != size for r in regions.one_way_ms):
        raise ScenarioError(f"{where}.one_way_ms: must be {size} rows of {size} (one per name)")
    return dataclasses.replace(regions, weights=weights)


@dataclass(frozen=True)
class RegionsConfig:
    """Nodes spread over named regions; one-way latency from region i to j is
    ``one_way_ms[i][j]`` plus a ``jitter_ms`` draw. ``weights`` (default: equal) share
    the nodes out."""

    names: tuple[str, ...] = field(metadata=custom(_read_names))
    one_way_ms: tuple[tuple[float, ...], ...] = field(metadata=custom(_read_matrix))
    weights: tuple[float, ...] = field(default=(), metadata=custom(_read_weights))
    jitter_ms: Dist = field(default=Constant(0.0), metadata=limits(at_least=0))


@dataclass(frozen=True)
class LatencyConfig:
    """One-way delay of a message between two nodes, before bandwidth and loss.

    Exactly one form applies: ``regions`` when given, else ``one_way_ms`` (a draw per
    message); ``one_way_ms`` keeps its default, unused, when ``regions`` is given."""

    one_way_ms: Dist = field(default=Lognormal(median=20.0, sigma=0.5), metadata=limits(at_least=0))
    regions: RegionsConfig | None = field(default=None, metadata=custom(_read_regions))


@dataclass(frozen=True)
class BandwidthConfig:
    """Each node's link capacity, drawn once per node."""

    up_mbps: Dist = field(default=Constant(20.0), metadata=limits(above=0))
    down_mbps: Dist = field(default=Constant(50.0), metadata=limits(above=0))


@dataclass(frozen=True)
class LossConfig:
    """Each message is lost independently with probability ``rate``."""

    rate: float = key(0.0, at_least=0, below=1)


@dataclass(frozen=True)
class PartitionConfig:
    """From ``start_s`` until ``heal_s`` the nodes are split into groups (``fractions`` of
    all nodes) that cannot reach one another."""

    start_s: float = key(at_least=0)
    heal_s: float = key(above=0)
    fractions: tuple[float, ...] = field(default=(0.5, 0.5), metadata=custom(_read_fractions))


@dataclass(frozen=True)
class ChurnConfig:
    """A ``fraction`` of nodes leave after a ``session_s`` draw and rejoin after a
    ``downtime_s`` draw, again and again."""

    fraction: float = key(0.0, at_least=0, at_most=1)
    session_s: Dist = field(default=Exponential(scale=60.0), metadata=limits(above=0))
    downtime_s: Dist = field(default=Exponential(scale=30.0), metadata=limits(above=0))


@dataclass(frozen=True)
class ByzantineConfig:
    """Nodes that break the rules: ``forgers`` gossip forged manifests, ``bad_seeders``
    serve corrupt chunks, ``validators`` and ``clients`` equivocate on the ledger."""

    forgers: int = key(0, at_least=0)
    bad_seeders: int = key(0, at_least=0)
    validators: int = key(0, at_least=0)
    clients: int = key(0, at_least=0)


@dataclass(frozen=True)
class ManifestsConfig:
    """Video manifests published by random nodes from ``start_s``, ``rate_per_s`` a second."""

    count: int = key(0, at_least=0)
    start_s: float = key(1.0, at_least=0)
    rate_per_s: float = key(10.0, above=0)
    bytes: Dist = field(default=Constant(1500.0), metadata=limits(above=0))


@dataclass(frozen=True)
class VideosConfig:
    """Videos seeded by ``seeders`` nodes each and watched segment by segment: a
    ``popular_viewers_fraction`` of views go to the top video, the rest by Zipf(zipf_s)."""

    count: int = key(0, at_least=0)
    zipf_s: float = key(1.0, at_least=0)
    viewers: int = key(0, at_least=0)
    start_s: float = key(5.0, at_least=0)
    views_per_s: float = key(10.0, above=0)
    segments: int = key(10, at_least=1)
    segment_bytes: Dist = field(default=Constant(250_000.0), metadata=limits(above=0))
    segment_ms: int = key(2000, at_least=1)
    seeders: int = key(3, at_least=1)
    popular_viewers_fraction: float = key(1.0, at_least=0, at_most=1)


@dataclass(frozen=True)
class LedgerConfig:
    """The creator-token ledger: a committee of ``validators`` certifying ``transfers``
    between ``accounts``, ``rate_per_s`` a second from ``start_s``."""

    validators: int = key(0, at_least=0)
    accounts: int = key(100, at_least=1)
    transfers: int = key(0, at_least=0)
    rate_per_s: float = key(10.0, above=0)
    start_s: float = key(1.0, at_least=0)
    processing_ms: Dist = field(default=Constant(0.5), metadata=limits(at_least=0))


@dataclass(frozen=True)
class SyncConfig:
    """Log reconciliation with a random peer every ``interval_s``, and on rejoining."""

    interval_s: float = key(30.0, above=0)
    on_rejoin: bool = key(True)


@dataclass(frozen=True)
class FeedConfig:
    """Feeds ranked at ``sample_nodes`` nodes over a follow graph drawn by Zipf(zipf_s)."""

    sample_nodes: int = key(0, at_least=0)
    follows_per_account: Dist = field(default=Constant(20.0), metadata=limits(at_least=0))
    zipf_s: float = key(1.0, at_least=0)
    limit: int = key(20, at_least=1)


SECTIONS: dict[str, type] = {
    "run": RunConfig,
    "topology": TopologyConfig,
    "mesh": MeshConfig,
    "latency": LatencyConfig,
    "bandwidth": BandwidthConfig,
    "loss": LossConfig,
    "churn": ChurnConfig,
    "byzantine": ByzantineConfig,
    "manifests": ManifestsConfig,
    "videos": VideosConfig,
    "ledger": LedgerConfig,
    "sync": SyncConfig,
    "feed": FeedConfig,
}
PARTITION = "partition"
TOP_KEYS = ("name", PARTITION, *SECTIONS)


@dataclass(frozen=True)
class Scenario:
    """One validated scenario; see the section classes for what each part models."""

    name: str
    run: RunConfig
    topology: TopologyConfig = TopologyConfig()
    mesh: MeshConfig = MeshConfig()
    latency: LatencyConfig = LatencyConfig()
    bandwidth: BandwidthConfig = BandwidthConfig()
    loss: LossConfig = LossConfig()
    churn: ChurnConfig = ChurnConfig()
    byzantine: ByzantineConfig = ByzantineConfig()
    manifests: ManifestsConfig = ManifestsConfig()
    videos: VideosConfig = VideosConfig()
    ledger: LedgerConfig = LedgerConfig()
    sync: SyncConfig = SyncConfig()
    feed: FeedConfig = FeedConfig()
    partitions: tuple[PartitionConfig, ...] = ()
    """The ``[[partition]]`` tables, in the order written (they may not overlap)."""

    def to_dict(self) -> dict[str, Any]:
        """The validated values as plain JSON-able data, in the shape of the TOML file
        (distributions as their tables; ``latency.one_way_ms`` left out under regions)."""
        data: dict[str, Any] = {"name": self.name}
        data.update({name: _plain(getattr(self, name)) for name in SECTIONS})
        data[PARTITION] = [_plain(p) for p in self.partitions]
        if self.latency.regions is not None:
            del data["latency"]["one_way_ms"]
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, Dist):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# --- the whole scenario ------------------------------------------------------------------


def parse_scenario(data: dict[str, Any], name: str) -> Scenario:
    """The scenario in ``data`` (parsed TOML); ``name`` unless the data names itself.

    Raises :class:`ScenarioError` naming the first key that is unknown, missing, of the
    wrong type, out of range, or in conflict with another."""
    _refuse_unknown(data, TOP_KEYS, "")
    latency = data.get("latency")
    if isinstance(latency, dict) and "one_way_ms" in latency and "regions" in latency:
        raise ScenarioError(
            "latency: give one_way_ms or [latency.regions], not both (one_way_ms would be ignored)"
        )
    title = data.get("name", name)
    if not isinstance(title, str) or not title.strip():
        raise ScenarioError(f"name: must be a non-empty string, got {show(title)}")
    sections: dict[str, Any] = {
        key: _read_section(cls, data.get(key, {}), key) for key, cls in SECTIONS.items()
    }
    raw_partitions = data.get(PARTITION, [])
    if not isinstance(raw_partitions, list):
        raise ScenarioError(f"{PARTITION}: must be an array of tables ([[{PARTITION}]])")
    partitions = tuple(
        _read_section(PartitionConfig, raw, f"{PARTITION}[{i}]")
        for i, raw in enumerate(raw_partitions)
    )
    scenario = Scenario(name=title, partitions=partitions, **sections)
    for rule in RULES:
        rule(scenario)
    return scenario


def load_scenario(path: Path, overrides: Sequence[str] = ()) -> Scenario:
    """The scenario in the TOML file ``path``, named after the file unless it says
    otherwise, with ``overrides`` (``section.key=VALUE``) applied first.

    Raises :class:`ScenarioError` for a missing or malformed file, a bad override or an
    invalid scenario."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ScenarioError(f"{path}: no such scenario file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    for spec in overrides:
        data = apply_override(data, spec)
    return parse_scenario(data, path.stem)


def bundled_scenarios() -> list[Path]:
    """The scenario files that ship with the simulator, by name."""
    return sorted(SCENARIO_DIR.glob("*.toml"))


# --- rules across keys -------------------------------------------------------------------


def _check_topology(s: Scenario) -> None:
    if s.topology.peers >= s.run.nodes:
        raise ScenarioError(
            f"topology.peers: must be < run.nodes ({s.run.nodes}), got {s.topology.peers}"
        )
    if s.feed.sample_nodes > s.run.nodes:
        raise ScenarioError(
            f"feed.sample_nodes: must be <= run.nodes ({s.run.nodes}), got {s.feed.sample_nodes}"
        )


def _check_mesh(s: Scenario) -> None:
    m = s.mesh
    if m.D_lo > m.D:
        raise ScenarioError(f"mesh.D_lo: must be <= mesh.D ({m.D}), got {m.D_lo}")
    if m.D_hi < m.D:
        raise ScenarioError(f"mesh.D: must be <= mesh.D_hi ({m.D_hi}), got {m.D}")
    if m.gossip_history < m.gossip_window:
        raise ScenarioError(
            f"mesh.gossip_history: must be >= gossip_window ({m.gossip_window}), "
            f"got {m.gossip_history}"
        )


def _check_partitions(s: Scenario) -> None:
    previous: PartitionConfig | None = None
    for i, p in enumerate(s.partitions):
        where = f"{PARTITION}[{i}]"
        if p.heal_s <= p.start_s:
            raise ScenarioError(
                f"{where}.heal_s: must be > start_s ({_num(p.start_s)}), got {_num(p.heal_s)}"
            )
        if p.start_s >= s.run.duration_s:
            raise ScenarioError(
                f"{where}.start_s: {_num(p.start_s)} is not before the run ends "
                f"(run.duration_s = {_num(s.run.duration_s)})"
            )
        if len(p.fractions) > s.run.nodes:
            raise ScenarioError(f"{where}.fractions: more groups than run.nodes")
        if previous is not None and p.start_s < previous.heal_s:
            raise ScenarioError(
                f"{where}.start_s: must be >= the heal_s of {PARTITION}[{i - 1}] "
                f"({_num(previous.heal_s)}): partitions run one at a time, in order"
            )
        previous = p


def _check_byzantine(s: Scenario) -> None:
    b, validators = s.byzantine, s.ledger.validators
    if b.forgers + b.bad_seeders >= s.run.nodes:
        raise ScenarioError(
            f"byzantine: forgers + bad_seeders must be < run.nodes ({s.run.nodes}), "
            f"got {b.forgers + b.bad_seeders}"
        )
    if (b.validators or b.clients) and validators == 0:
        raise ScenarioError(
            "byzantine: equivocating validators or clients need a ledger (ledger.validators > 0)"
        )
    # Beyond f = (ledger.validators - 1) // 3 safety is not guaranteed: allowed, so that
    # a run can show it break (the ledger's checks then fail the run).
    if validators and b.validators > validators:
        raise ScenarioError(
            f"byzantine.validators: at most ledger.validators = {validators}, got {b.validators}"
        )
    if b.clients > s.ledger.accounts:
        raise ScenarioError(
            f"byzantine.clients: must be <= ledger.accounts ({s.ledger.accounts}), got {b.clients}"
        )
    if b.bad_seeders and s.videos.count == 0:
        raise ScenarioError("byzantine.bad_seeders: bad seeders need videos (videos.count > 0)")


def _check_work(s: Scenario) -> None:
    if s.ledger.validators > s.run.nodes:
        raise ScenarioError(
            f"ledger.validators: must be <= run.nodes ({s.run.nodes}), got {s.ledger.validators}"
        )
    if s.ledger.transfers and s.ledger.validators == 0:
        raise ScenarioError("ledger.transfers: transfers need a ledger (ledger.validators > 0)")
    if s.ledger.transfers and s.ledger.accounts < 2:
        raise ScenarioError("ledger.accounts: transfers need at least 2 accounts")
    if s.videos.viewers and s.videos.count == 0:
        raise ScenarioError("videos.viewers: viewers need videos (videos.count > 0)")
    if s.videos.count and s.videos.seeders >= s.run.nodes:
        raise ScenarioError(
            f"videos.seeders: must be < run.nodes ({s.run.nodes}), got {s.videos.seeders}"
        )


RULES: tuple[Callable[[Scenario], None], ...] = (
    _check_topology,
    _check_mesh,
    _check_partitions,
    _check_byzantine,
    _check_work,
)


# --- overrides -----------------------------------------------------------------------------


def _split_assignment(spec: str) -> tuple[str, str]:
    path, sep, value = spec.partition("=")
    path, value = path.strip(), value.strip()
    if not sep or not path or not value:
        raise ScenarioError(f'override "{spec}": expected section.key=VALUE, e.g. mesh.D=8')
    return path, value


def override_values(spec: str) -> tuple[str, list[str]]:
    """A sweep spec ``mesh.D=4,6,8`` as ``("mesh.D", ["4", "6", "8"])``; commas inside
    ``{}``, ``[]`` or quotes do not split. Raises :class:`ScenarioError` for a spec
    without ``=``, an empty value or unbalanced brackets."""
    path, text = _split_assignment(spec)
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
        if depth < 0:
            break
    values.append(text[start:].strip())
    if depth != 0 or quote:
        raise ScenarioError(f'override "{spec}": unbalanced brackets or quotes')
    if not all(values):
        raise ScenarioError(f'override "{spec}": an empty value between commas')
    return path, values


def _toml_value(text: str, spec: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(
            f'override "{spec}": {text} is not a TOML value ({exc}); '
            'strings need quotes, e.g. name="x"'
        ) from exc


def _path_segments(path: str, spec: str) -> list[str]:
    segments = re.sub(r"\[(\d+)\]", r".\1", path).split(".")
    if not all(segments):
        raise ScenarioError(f'override "{spec}": an empty key in {path}')
    return segments


def _check_path(segments: list[str], spec: str) -> None:
    """Raises :class:`ScenarioError` unless ``segments`` name a key of the schema."""
    head, rest = segments[0], segments[1:]
    if head not in TOP_KEYS:
        known = ", ".join(sorted(TOP_KEYS))
        raise ScenarioError(f'override "{spec}": unknown section "{head}" (known: {known})')
    if head == "name" and not rest:
        return
    cls: type | None = SECTIONS.get(head)
    if head == PARTITION:
        if not rest:
            return
        if not rest[0].isdigit():
            raise ScenarioError(f'override "{spec}": write {PARTITION}.<index>.<key>')
        cls, rest = PartitionConfig, rest[1:]
    done = ".".join(segments[: len(segments) - len(rest)])
    for i, name in enumerate(rest):
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none: it is not a table"
            raise ScenarioError(f'override "{spec}": unknown key {done}.{name} (known: {known})')
        done = f"{done}.{name}"
        is_last = i == len(rest) - 1
        if fields[name].type is Dist and not is_last:
            raise ScenarioError(
                f'override "{spec}": {done} is a distribution; override it whole, e.g. '
                f'{done}={{dist="lognormal",median=20,sigma=0.5}}'
            )
        cls = RegionsConfig if (cls, name) == (LatencyConfig, "regions") else None


def apply_override(data: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """A copy of the raw scenario ``data`` with ``section.key=VALUE`` set (VALUE in TOML;
    ``partition.0.heal_s=30`` for the array). ``data`` itself is left as it is.

    Raises :class:`ScenarioError` for a malformed spec, a VALUE that is not TOML, or a
    key the schema does not have."""
    path, text = _split_assignment(spec)
    value = _toml_value(text, spec)
    segments = _path_segments(path, spec)
    _check_path(segments, spec)
    result = copy.deepcopy(dict(data))
    container: Any = result
    for depth, segment in enumerate(segments[:-1]):
        where = ".".join(segments[: depth + 1])
        if isinstance(container, list):
            index = int(segment)
            if index > len(container):
                raise ScenarioError(
                    f'override "{spec}": {where}: there are {len(container)} '
                    f"{PARTITION} tables; the next one is index {len(container)}"
                )
            if index == len(container):
                container.append({})
            container = container[index]
        else:
            default: Any = [] if segment == PARTITION else {}
            container = container.setdefault(segment, default)
        if not isinstance(container, dict | list):
            raise ScenarioError(f'override "{spec}": {where} is {show(container)}, not a table')
    _set_last(container, segments[-1], value, spec)
    return result


def _set_last(container: Any, segment: str, value: Any, spec: str) -> None:
    if not isinstance(container, list):
        container[segment] = value
    elif int(segment) < len(container):
        container[int(segment)] = value
    elif int(segment) == len(container):
        container.append(value)
    else:
        raise ScenarioError(
            f'override "{spec}": there are {len(container)} {PARTITION} tables; '
            f"the next one is index {len(container)}"
        )
