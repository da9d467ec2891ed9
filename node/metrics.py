"""A small Prometheus registry: counters and gauges in the text exposition format 0.0.4.

Only what the node needs: no histograms, no timestamps. Each metric holds at most
LABEL_SETS_MAX label combinations, so a label whose values come from the network cannot
grow without end; label values should come from a small fixed set (a message kind, never
a peer id). Metrics may be updated from worker threads: each one guards its values with a
lock.
"""

import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

log = logging.getLogger("toktok.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABEL_SETS_MAX = 1_000
NAME_PATTERN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
COUNTER_SUFFIX = "_total"

LabelKey = tuple[str, ...]
ValueFunction = Callable[[], float]


class MetricError(ValueError):
    """A bad metric or label name, wrong labels, a bad value, or a metric out of label sets."""


class _Metric:
    kind: ClassVar[str]

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not NAME_PATTERN.fullmatch(name):
            raise MetricError(f"bad metric name {name!r}: must match {NAME_PATTERN.pattern}")
        for label in labelnames:
            # Names starting with __ are reserved for Prometheus itself.
            if not LABEL_NAME_PATTERN.fullmatch(label) or label.startswith("__"):
                raise MetricError(f"bad label name {label!r} for {name}")
        if len(set(labelnames)) != len(labelnames):
            raise MetricError(f"repeated label name in {list(labelnames)} for {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._values: dict[LabelKey, float] = {} if labelnames else {(): 0.0}
        self._functions: dict[LabelKey, ValueFunction] = {}

    def _key(self, values: dict[str, str]) -> LabelKey:
        """The label set ``values`` as a key, created at zero if new.

        Raises MetricError for the wrong label names, a value that is not a string, or a
        label set past LABEL_SETS_MAX.
        """
        if sorted(values) != sorted(self.labelnames):
            raise MetricError(
                f"{self.name} takes labels {list(self.labelnames)}, not {sorted(values)}"
            )
        key = tuple(values[label] for label in self.labelnames)
        if not all(isinstance(value, str) for value in key):
            raise MetricError(f"label values of {self.name} must be strings: {key!r}")
        with self._lock:
            if key not in self._values:
                if len(self._values) >= LABEL_SETS_MAX:
                    raise MetricError(f"{self.name} already has {LABEL_SETS_MAX} label sets")
                self._values[key] = 0.0
        return key

    def _unlabelled(self) -> LabelKey:
        if self.labelnames:
            raise MetricError(f"{self.name} has labels {list(self.labelnames)}: use .labels()")
        return ()

    def _set_function(self, key: LabelKey, fn: ValueFunction) -> None:
        with self._lock:
            self._functions[key] = fn

    def samples(self) -> list[tuple[LabelKey, float]]:
        """The current values, sorted by label values. Functions are called now, outside
        the lock; one that fails leaves its label set out (and logs)."""
        with self._lock:
            values = dict(self._values)
            functions = dict(self._functions)
        for key, fn in functions.items():
            try:
                values[key] = float(fn())
            except Exception as exc:
                # One broken reading must not cost the scrape every other metric.
                extra = {"metric": self.name, "error": repr(exc)}
                log.warning("metric function failed", extra=extra)
                del values[key]
        return sorted(values.items())


class Counter(_Metric):
    """A count that only goes up, or a function read at each render (for a count another
    object keeps). Its name always ends in ``_total`` (added if missing)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith(COUNTER_SUFFIX):
            name += COUNTER_SUFFIX
        super().__init__(name, help, labelnames)

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``. Raises MetricError if it is negative or not finite, or if the
        counter has labels (use ``labels(...).inc()``)."""
        self._add(self._unlabelled(), amount)

    def set_function(self, fn: ValueFunction) -> None:
        """Read the count from ``fn()`` at each render; it must never go down."""
        self._set_function(self._unlabelled(), fn)

    def labels(self, **values: str) -> "CounterChild":
        """The counter of one label set (raises MetricError, see ``_key``)."""
        return CounterChild(self, self._key(values))

    def _add(self, key: LabelKey, amount: float) -> None:
        if not (math.isfinite(amount) and amount >= 0):
            raise MetricError(f"{self.name} can only go up by a finite amount, not {amount}")
        with self._lock:
            if key in self._functions:
                raise MetricError(f"{self.name} reads its count from a function")
            self._values[key] += amount


class CounterChild:
    """One label set of a counter."""

    def __init__(self, counter: Counter, key: LabelKey) -> None:
        self._counter = counter
        self._key = key

    def inc(self, amount: float = 1) -> None:
        self._counter._add(self._key, amount)

    def set_function(self, fn: ValueFunction) -> None:
        self._counter._set_function(self._key, fn)


class Gauge(_Metric):
    """A value that goes up and down, or a function read at each render."""

    kind = "gauge"

    def set(self, value: float) -> None:
        self._set(self._unlabelled(), value)

    def inc(self, amount: float = 1) -> None:
        self._add(self._unlabelled(), amount)

    def dec(self, amount: float = 1) -> None:
        self._add(self._unlabelled(), -amount)

    def set_function(self, fn: ValueFunction) -> None:
        """Read the value from ``fn()`` at each render (it runs in the rendering thread)."""
        self._set_function(self._unlabelled(), fn)

    def labels(self, **values: str) -> "GaugeChild":
        """The gauge of one label set (raises MetricError, see ``_key``)."""
        return GaugeChild(self, self._key(values))

    def _set(self, key: LabelKey, value: float) -> None:
        with self._lock:
            self._functions.pop(key, None)
            self._values[key] = float(value)

    def _add(self, key: LabelKey, amount: float) -> None:
        with self._lock:
            self._functions.pop(key, None)
            self._values[key] += amount


class GaugeChild:
    """One label set of a gauge."""

    def __init__(self, gauge: Gauge, key: LabelKey) -> None:
        self._gauge = gauge
        self._key = key

    def set(self, value: float) -> None:
        self._gauge._set(self._key, value)

    def inc(self, amount: float = 1) -> None:
        self._gauge._add(self._key, amount)

    def dec(self, amount: float = 1) -> None:
        self._gauge._add(self._key, -amount)

    def set_function(self, fn: ValueFunction) -> None:
        self._gauge._set_function(self._key, fn)


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """The metrics of one node, rendered in the order they were made."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def counter(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        fn: ValueFunction | None = None,
    ) -> Counter:
        """A new counter named ``name`` (``_total`` added if missing); with ``fn`` (and no
        labels) its count is ``fn()`` at each render.

        Raises MetricError for a bad or taken name or bad label names.
        """
        counter = Counter(name, help, labelnames)
        if fn is not None:
            counter.set_function(fn)
        return self._add(counter)

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        fn: ValueFunction | None = None,
    ) -> Gauge:
        """A new gauge; with ``fn`` (and no labels) its value is ``fn()`` at each render.

        Raises MetricError for a bad or taken name or bad label names.
        """
        gauge = Gauge(name, help, labelnames)
        if fn is not None:
            gauge.set_function(fn)
        return self._add(gauge)

    def _add(self, metric: _M) -> _M:
        with self._lock:
            if metric.name in self._metrics:
                raise MetricError(f"a metric named {metric.name} exists already")
            self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        """All metrics in the Prometheus text format 0.0.4."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for key, value in metric.samples():
                labels = _label_text(metric.labelnames, key)
                lines.append(f"{metric.name}{labels} {_format_value(value)}")
        return "".join(line + "\n" for line in lines)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: tuple[str, ...], values: LabelKey) -> str:
    if not names:
        return ""
    pairs = (f'{name}="{_escape_label(value)}"' for name, value in zip(names, values, strict=True))
    return "{" + ",".join(pairs) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
