"""The node's Prometheus metrics: read from the services' own counters at scrape time."""

from node.daemon import Node
from node.ingest import Verdict
from node.metrics import Registry


def node_registry(node: Node) -> Registry:
    """A registry whose every value is read from ``node`` when scraped."""
    registry = Registry()

    gauge, counter = registry.gauge, registry.counter  # each read at scrape time (fn=)
    gauge("toktok_peers", "Connected peers.", fn=lambda: len(node.host.get_connected_peers()))
    gauge("toktok_known_peers", "Peers known with an address.", fn=lambda: len(node.peers.known()))
    gauge("toktok_messages", "Signed messages held (the sync set).", fn=lambda: len(node.items))
    gauge(
        "toktok_store_bytes",
        "Bytes of chunks in the store.",
        fn=lambda: node.stores.chunks.used_bytes,
    )
    gauge("toktok_store_chunks", "Chunks in the store.", fn=lambda: node.stores.chunks.count)
    counter("toktok_gossip_in", "Gossip batches received.", fn=lambda: node.gossip.batches_in)
    counter("toktok_gossip_out", "Gossip batches published.", fn=lambda: node.gossip.batches_out)
    for verdict in Verdict:
        counter(
            f"toktok_messages_{verdict.value}",
            f"Messages offered and found {verdict.value}.",
            fn=lambda v=verdict: node.ingest.counts[v],  # type: ignore[misc]
        )
    stats = node.swarm_stats
    counter("toktok_chunks_served", "Chunks served to peers.", fn=lambda: stats.chunks_served)
    counter("toktok_chunks_fetched", "Chunks fetched from peers.", fn=lambda: stats.chunks_fetched)
    counter(
        "toktok_bytes_out",
        "Payload bytes sent: chunks served and gossip published.",
        fn=lambda: stats.bytes_served + node.gossip.bytes_out,
    )
    counter(
        "toktok_bytes_in",
        "Payload bytes received: chunks fetched and gossip received.",
        fn=lambda: stats.bytes_fetched + node.gossip.bytes_in,
    )
    counter("toktok_sync_runs", "Completed sync sessions started here.", fn=lambda: node.sync_runs)
    counter("toktok_peer_bans", "Peers banned for invalid messages.", fn=lambda: node.peers.bans)
    return registry
