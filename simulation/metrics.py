"""What a run measures, in one value that the report turns into files.

``Result`` holds only JSON-able numbers and strings, so that writing it is a pure
function of it: the same run gives the same bytes.
"""

from dataclasses import dataclass, field
from typing import Any

SERIES_DIGITS = 6


@dataclass
class Series:
    """Time series sampled every ``interval_s`` of virtual time, one column per name."""

    interval_s: float
    columns: dict[str, list[float]] = field(default_factory=dict)
    times_s: list[float] = field(default_factory=list)

    def sample(self, time_s: float, values: dict[str, float]) -> None:
        """Add one row; a column first seen now is filled with 0 for the earlier rows."""
        for name in values:
            if name not in self.columns:
                self.columns[name] = [0.0] * len(self.times_s)
        self.times_s.append(time_s)
        for name, column in self.columns.items():
            column.append(round(float(values.get(name, 0.0)), SERIES_DIGITS))


@dataclass
class Result:
    """Everything one run of a scenario produced.

    - ``summary``: headline figures, nested dicts of numbers and strings (summary.json);
    - ``series``: one :class:`Series` per group (a CSV file each, ``<group>.csv``);
    - ``samples``: raw samples per name (propagation delays in ms, startup delays...),
      the source of CDF plots and percentiles;
    - ``per_node``: one value per node per name (bytes sent, bytes received...).
    """

    scenario: str
    seed: int
    summary: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    per_node: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check of the run failed (``failures`` names those that did)."""
        return not self.failures


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]
