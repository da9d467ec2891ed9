"""The distributions and samplers that scenarios are written with.

In a scenario file a distribution is a bare number (a constant) or an inline table that
names it, with optional ``min``/``max`` clamps::

    one_way_ms = {dist = "lognormal", median = 20, sigma = 0.5, max = 500}

Every draw takes the ``random.Random`` to draw from and uses only its methods, so the
numbers of a run follow from its seed alone (see :meth:`simulation.engine.Sim.rng`).
"""

import bisect
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

CLAMP_KEYS = ("min", "max")


class ScenarioError(ValueError):
    """A scenario, override or distribution that cannot be run; the message names the key."""


def show(value: object) -> str:
    """``value`` as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True, kw_only=True)
class Dist(ABC):
    """A distribution of floats, its draws clamped to ``[clamp_min, clamp_max]`` if given.

    Subclasses list their TOML keys in ``keys``, in the order of their fields."""

    kind: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]
    clamp_min: float | None = None
    clamp_max: float | None = None

    def sample(self, rng: random.Random) -> float:
        """One draw from ``rng``, clamped."""
        value = self._draw(rng)
        if self.clamp_min is not None and value < self.clamp_min:
            value = self.clamp_min
        if self.clamp_max is not None and value > self.clamp_max:
            value = self.clamp_max
        return value

    @property
    @abstractmethod
    def mean(self) -> float:
        """The mean of the unclamped distribution (clamps are ignored here); may be inf."""

    @property
    def lowest(self) -> float:
        """The infimum of :meth:`sample`, clamps included (it may be approached, not drawn)."""
        low = self._infimum()
        if self.clamp_min is not None:
            low = max(low, self.clamp_min)
        if self.clamp_max is not None:
            low = min(low, self.clamp_max)
        return low

    def to_dict(self) -> dict[str, Any]:
        """The inline table this distribution is written as."""
        params = [getattr(self, f.name) for f in fields(self) if not f.name.startswith("clamp")]
        table: dict[str, Any] = {"dist": self.kind, **dict(zip(self.keys, params, strict=True))}
        if self.clamp_min is not None:
            table["min"] = self.clamp_min
        if self.clamp_max is not None:
            table["max"] = self.clamp_max
        return table

    def check(self, where: str) -> None:
        """Raises :class:`ScenarioError` for parameters the distribution cannot have.

        Subclasses with rules of their own call this too."""
        low, high = self.clamp_min, self.clamp_max
        if low is not None and high is not None and low > high:
            raise ScenarioError(f"{where}: min ({low}) must be <= max ({high})")

    @abstractmethod
    def _draw(self, rng: random.Random) -> float: ...

    @abstractmethod
    def _infimum(self) -> float: ...


@dataclass(frozen=True)
class Constant(Dist):
    """Always ``value``; draws nothing from the stream."""

    kind = "constant"
    keys = ("value",)
    value: float

    @property
    def mean(self) -> float:
        return self.value

    def _draw(self, rng: random.Random) -> float:
        return self.value

    def _infimum(self) -> float:
        return self.value


@dataclass(frozen=True)
class Uniform(Dist):
    """Uniform over ``[low, high]``."""

    kind = "uniform"
    keys = ("low", "high")
    low: float
    high: float

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def check(self, where: str) -> None:
        super().check(where)
        if self.low > self.high:
            raise ScenarioError(f"{where}: low ({self.low}) must be <= high ({self.high})")

    def _draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def _infimum(self) -> float:
        return self.low


@dataclass(frozen=True)
class Lognormal(Dist):
    """``median * exp(sigma * Z)`` with Z standard normal: half the draws below ``median``."""

    kind = "lognormal"
    keys = ("median", "sigma")
    median: float
    sigma: float

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def check(self, where: str) -> None:
        super().check(where)
        _require(where, "median", self.median, self.median > 0, "> 0")
        _require(where, "sigma", self.sigma, self.sigma >= 0, ">= 0")

    def _draw(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))

    def _infimum(self) -> float:
        return self.median if self.sigma == 0 else 0.0


@dataclass(frozen=True)
class Exponential(Dist):
    """Exponential with mean ``scale`` (written ``mean`` in TOML): memoryless waits."""

    kind = "exponential"
    keys = ("mean",)
    scale: float

    @property
    def mean(self) -> float:
        return self.scale

    def check(self, where: str) -> None:
        super().check(where)
        _require(where, "mean", self.scale, self.scale > 0, "> 0")

    def _draw(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.scale)

    def _infimum(self) -> float:
        return 0.0


@dataclass(frozen=True)
class Pareto(Dist):
    """Classic Pareto: draws >= ``scale``, P(X > x) = (scale/x)^alpha; heavy-tailed."""

    kind = "pareto"
    keys = ("scale", "alpha")
    scale: float
    alpha: float

    @property
    def mean(self) -> float:
        """``alpha * scale / (alpha - 1)``; inf when ``alpha <= 1``."""
        return math.inf if self.alpha <= 1 else self.alpha * self.scale / (self.alpha - 1)

    def check(self, where: str) -> None:
        super().check(where)
        _require(where, "scale", self.scale, self.scale > 0, "> 0")
        _require(where, "alpha", self.alpha, self.alpha > 0, "> 0")

    def _draw(self, rng: random.Random) -> float:
        return self.scale * rng.paretovariate(self.alpha)

    def _infimum(self) -> float:
        return self.scale


KINDS: dict[str, type[Dist]] = {
    cls.kind: cls for cls in (Constant, Exponential, Lognormal, Pareto, Uniform)
}


def _require(where: str, key: str, value: float, ok: bool, rule: str) -> None:
    if not ok:
        raise ScenarioError(f"{where}.{key}: must be {rule}, got {value}")


def read_number(value: object, where: str) -> float:
    """``value`` as a finite float; raises :class:`ScenarioError` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: must be a number, got {show(value)}")
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: must be a finite number, got {value}")
    return float(value)


def parse_dist(value: object, where: str) -> Dist:
    """The distribution written as ``value`` at the dotted TOML path ``where``.

    Raises :class:`ScenarioError` for an unknown ``dist``, unknown or missing keys,
    values that are not numbers, parameters out of range and ``min`` > ``max``."""
    if not isinstance(value, dict):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Constant(read_number(value, where))
        raise ScenarioError(
            f"{where}: must be a number or a table such as "
            f'{{dist = "lognormal", median = 20, sigma = 0.5}}, got {show(value)}'
        )
    kind = value.get("dist")
    if kind is None:
        raise ScenarioError(f'{where}: missing key "dist" (known: {", ".join(KINDS)})')
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ScenarioError(f"{where}: unknown dist {show(kind)} (known: {', '.join(KINDS)})")
    allowed = ("dist", *cls.keys, *CLAMP_KEYS)
    for key in value:
        if key not in allowed:
            raise ScenarioError(
                f'{where}: unknown key "{key}" in a {kind} dist (known: {", ".join(allowed)})'
            )
    missing = [key for key in cls.keys if key not in value]
    if missing:
        raise ScenarioError(f"{where}: a {kind} dist needs {', '.join(missing)}")
    params = [read_number(value[key], f"{where}.{key}") for key in cls.keys]
    clamps = {
        f"clamp_{key}": read_number(value[key], f"{where}.{key}")
        for key in CLAMP_KEYS
        if key in value
    }
    dist = cls(*params, **clamps)
    dist.check(where)
    return dist


class Zipf:
    """Ranks ``0..n-1`` with P(k) proportional to ``1 / (k + 1) ** s`` (rank 0 the likeliest).

    The cumulative table is built once (O(n)); each draw is one ``rng.random()`` and a
    binary search (O(log n))."""

    __slots__ = ("_cumulative", "_total", "n", "s")

    def __init__(self, n: int, s: float) -> None:
        """Raises ValueError for ``n < 1`` or an ``s`` that is negative or not finite."""
        if n < 1:
            raise ValueError(f"Zipf needs at least one rank, got n = {n}")
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"Zipf exponent must be finite and >= 0, got s = {s}")
        self.n = n
        self.s = s
        self._cumulative: list[float] = []
        total = 0.0
        for k in range(n):
            total += math.pow(k + 1, -s)
            self._cumulative.append(total)
        self._total = total

    def sample(self, rng: random.Random) -> int:
        """One rank, drawn from ``rng``."""
        rank = bisect.bisect_right(self._cumulative, rng.random() * self._total)
        return min(rank, self.n - 1)

    def probability(self, k: int) -> float:
        """P(rank = k); 0.0 for a ``k`` outside ``0..n-1``."""
        if not 0 <= k < self.n:
            return 0.0
        return math.pow(k + 1, -self.s) / self._total


def assign(weights: Sequence[float], count: int, rng: random.Random) -> list[int]:
    """An index into ``weights`` (a region, a partition side) for each of ``count`` items.

    Index i goes to ``count * weights[i] / sum(weights)`` items, rounded by largest
    remainder (ties to the lower index), so shares are as exact as whole numbers allow;
    which item gets which index is shuffled with ``rng``. Raises ValueError for no
    weights, a weight that is negative or not finite, a zero sum or a negative count."""
    if not weights:
        raise ValueError("assign needs at least one weight")
    if any(not (math.isfinite(w) and w >= 0) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    total = sum(weights)
    quotas = [count * w / total for w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    assert sum(counts) == count, (counts, count)
    indexes = [i for i, n in enumerate(counts) for _ in range(n)]
    rng.shuffle(indexes)
    return indexes
