"""The node's Prometheus metrics: read from the services' own counters at scrape time."""

from collections.abc import Callable

from node.daemon import Node
from node.ingest import Verdict
from node.metrics import Registry


def node_registry(node: Node) -> Registry:
    """A registry whose every value is read from ``node`` when scraped."""
    registry = Registry()

    def gauge(name: str, help: str, fn: Callable[[], float]) -> None:
        registry.gauge(name, help).set_function(fn)

    def counter(name: str, help: str, fn: Callable[[], float]) -> None:
        registry.counter(name, help).set_function(fn)

    gauge("toktok_peers", "Connected peers.", lambda: len(node.host.get_connected_peers()))
    gauge("toktok_known_peers", "Peers known with an address.", lambda: len(node.peers.known()))
    gauge("toktok_messages", "Signed messages held (the sync set).", lambda: len(node.items))
    gauge(
        "toktok_store_bytes", "Bytes of chunks in the store.", lambda: node.stores.chunks.used_bytes
    )
    gauge("toktok_store_chunks", "Chunks in the store.", lambda: node.stores.chunks.count)
    counter("toktok_gossip_in", "Gossip batches received.", lambda: node.gossip.batches_in)
    counter("toktok_gossip_out", "Gossip batches published.", lambda: node.gossip.batches_out)
    for verdict in Verdict:
        counter(
            f"toktok_messages_{verdict.value}",
            f"Messages offered and found {verdict.value}.",
            lambda v=verdict: node.ingest.counts[v],  # type: ignore[misc]
        )
    stats = node.swarm_stats
    counter("toktok_chunks_served", "Chunks served to peers.", lambda: stats.chunks_served)
    counter("toktok_chunks_fetched", "Chunks fetched from peers.", lambda: stats.chunks_fetched)
    counter(
        "toktok_bytes_out",
        "Payload bytes sent: chunks served and gossip published.",
        lambda: stats.bytes_served + node.gossip.bytes_out,
    )
    counter(
        "toktok_bytes_in",
        "Payload bytes received: chunks fetched and gossip received.",
        lambda: stats.bytes_fetched + node.gossip.bytes_in,
    )
    counter("toktok_sync_runs", "Completed sync sessions started here.", lambda: node.sync_runs)
    counter("toktok_peer_bans", "Peers banned for invalid messages.", lambda: node.peers.bans)
    return registry
