"""The bootstrap-node role: an ordinary node that newcomers dial first.

A bootstrap node runs the same services as any node, with settings for its job: it
always serves the DHT (newcomers fill their routing tables from it), keeps many more
connections, and answers peer exchange with the peers it has heard of as well as those
it is connected to, so a node that knows only the seed list learns the network. It does
not seed videos by placement (``replicas`` stays, but a bootstrap node's disk is for
others' records, not video): its quota is the operator's to set.
"""

from node.config import NodeConfig

PEERS_TARGET_MIN = 64


def bootstrap_config(config: NodeConfig) -> NodeConfig:
    """``config`` with the bootstrap role's settings on top."""
    return config.override(
        bootstrap_role=True,
        dht_server=True,
        peers_target=max(config.peers_target, PEERS_TARGET_MIN),
    )
