"""The Prometheus registry: exact text, names, labels and their bound."""

import logging

import pytest

from node.metrics import LABEL_SETS_MAX, Counter, Gauge, MetricError, Registry


def test_render_exact_text() -> None:
    registry = Registry()
    chunks = registry.counter("toktok_chunks_served", "Chunks served to peers.")
    messages = registry.counter(
        "toktok_gossip_messages_total", "Gossip messages by kind.", labelnames=("kind", "verdict")
    )
    peers = registry.gauge("toktok_peers", "Connected peers.")
    registry.gauge("toktok_store_bytes", "Bytes held.\nBy the store \\ all of it.", fn=lambda: 1.5)
    registry.gauge("toktok_idle", "A labelled gauge with no label set yet.", labelnames=("x",))
    chunks.inc()
    chunks.inc(2)
    messages.labels(kind="video", verdict="accept").inc()
    messages.labels(kind='say "hi"\\\n', verdict="reject").inc(3)
    peers.set(7)
    peers.dec()
    assert registry.render() == (
        "# HELP toktok_chunks_served_total Chunks served to peers.\n"
        "# TYPE toktok_chunks_served_total counter\n"
        "toktok_chunks_served_total 3\n"
        "# HELP toktok_gossip_messages_total Gossip messages by kind.\n"
        "# TYPE toktok_gossip_messages_total counter\n"
        'toktok_gossip_messages_total{kind="say \\"hi\\"\\\\\\n",verdict="reject"} 3\n'
        'toktok_gossip_messages_total{kind="video",verdict="accept"} 1\n'
        "# HELP toktok_peers Connected peers.\n"
        "# TYPE toktok_peers gauge\n"
        "toktok_peers 6\n"
        "# HELP toktok_store_bytes Bytes held.\\nBy the store \\\\ all of it.\n"
        "# TYPE toktok_store_bytes gauge\n"
        "toktok_store_bytes 1.5\n"
        "# HELP toktok_idle A labelled gauge with no label set yet.\n"
        "# TYPE toktok_idle gauge\n"
    )


def test_empty_registry_renders_nothing() -> None:
    assert Registry().render() == ""


@pytest.mark.parametrize(
    "value,text",
    [(0, "0"), (-2, "-2"), (0.25, "0.25"), (float("inf"), "+Inf"), (float("-inf"), "-Inf")],
)
def test_gauge_values(value: float, text: str) -> None:
    registry = Registry()
    registry.gauge("g", "h").set(value)
    assert registry.render().splitlines()[-1] == f"g {text}"


def test_gauge_nan() -> None:
    registry = Registry()
    registry.gauge("g", "h").set(float("nan"))
    assert registry.render().splitlines()[-1] == "g NaN"


def test_gauge_function_read_at_render_and_labelled() -> None:
    registry = Registry()
    depth = [1]
    gauge = registry.gauge("queue_depth", "h", labelnames=("queue",))
    gauge.labels(queue="fetch").set_function(lambda: depth[0])
    gauge.labels(queue="ingest").inc(4)
    assert 'queue_depth{queue="fetch"} 1\n' in registry.render()
    depth[0] = 9
    assert 'queue_depth{queue="fetch"} 9\n' in registry.render()
    gauge.labels(queue="fetch").set(2)  # a set value replaces the function
    depth[0] = 100
    assert 'queue_depth{queue="fetch"} 2\n' in registry.render()
    assert 'queue_depth{queue="ingest"} 4\n' in registry.render()


def test_failing_gauge_function_leaves_its_sample_out(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()

    def broken() -> float:
        raise RuntimeError("sensor gone")

    registry.gauge("broken", "h", fn=broken)
    registry.gauge("fine", "h").set(1)
    with caplog.at_level(logging.WARNING, logger="toktok.metrics"):
        text = registry.render()
    assert "\nbroken " not in text
    assert "fine 1\n" in text
    assert [r.getMessage() for r in caplog.records] == ["metric function failed"]


def test_counter_read_from_a_function() -> None:
    registry = Registry()
    served = [3]
    registry.counter("served", "h", fn=lambda: served[0])
    counter = registry.counter("by_kind", "h", labelnames=("kind",))
    counter.labels(kind="a").set_function(lambda: served[0] * 2)
    served[0] = 5
    assert registry.render().splitlines()[2::3] == ["served_total 5", 'by_kind_total{kind="a"} 10']
    with pytest.raises(MetricError, match="reads its count from a function"):
        counter.labels(kind="a").inc()


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a.b"])
def test_invalid_metric_name(name: str) -> None:
    with pytest.raises(MetricError, match="bad metric name"):
        Registry().gauge(name, "h")


@pytest.mark.parametrize("label", ["", "1a", "a:b", "__reserved", "a-b"])
def test_invalid_label_name(label: str) -> None:
    with pytest.raises(MetricError, match="bad label name"):
        Registry().counter("c", "h", labelnames=(label,))


def test_invalid_repeated_label_name() -> None:
    with pytest.raises(MetricError, match="repeated"):
        Gauge("g", "h", labelnames=("a", "a"))


def test_invalid_taken_name() -> None:
    registry = Registry()
    registry.counter("events", "h")
    with pytest.raises(MetricError, match="exists already"):
        registry.gauge("events_total", "h")


def test_invalid_wrong_labels() -> None:
    counter = Counter("c", "h", labelnames=("kind",))
    with pytest.raises(MetricError, match="takes labels"):
        counter.labels(other="x")
    with pytest.raises(MetricError, match="takes labels"):
        counter.labels()
    with pytest.raises(MetricError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(MetricError, match="must be strings"):
        counter.labels(kind=3)  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="takes labels"):
        Gauge("g", "h").labels(kind="x")


@pytest.mark.parametrize("amount", [-1, float("nan"), float("inf")])
def test_invalid_counter_amount(amount: float) -> None:
    counter = Counter("c", "h")
    with pytest.raises(MetricError, match="only go up"):
        counter.inc(amount)
    assert counter.samples() == [((), 0.0)]


def test_invalid_label_set_past_the_limit() -> None:
    counter = Counter("c", "h", labelnames=("n",))
    for n in range(LABEL_SETS_MAX):
        counter.labels(n=str(n)).inc()
    counter.labels(n="0").inc()  # an existing label set is still fine
    with pytest.raises(MetricError, match=f"already has {LABEL_SETS_MAX} label sets"):
        counter.labels(n="one too many")
    assert len(counter.samples()) == LABEL_SETS_MAX
