"""``toktok node run``: a node until SIGINT or SIGTERM, with its control endpoints.

On start the node writes ``HOME/run/control.json`` (control port, metrics port, pid, peer
id, addresses) once everything listens, so a client that finds the file finds a node
ready to answer; it removes the file on the way out. The store is closed after every
service has stopped, so a signal loses nothing that was acknowledged.
"""

import logging
import os
import signal
from collections.abc import Callable
from functools import partial

import trio

from node.api import install_routes
from node.config import NodeConfig
from node.control import (
    ControlServer,
    load_or_create_token,
    metrics_handler,
    remove_run_file,
    write_run_file,
)
from node.daemon import Node
from node.home import Home
from node.httpserver import serve_http
from node.nodemetrics import node_registry
from protocol.accounts import AccountKey

log = logging.getLogger("toktok.node")


async def run_node(
    home: Home,
    config: NodeConfig,
    *,
    on_ready: Callable[[Node], None] | None = None,
    genesis: bytes | None = None,
    validator_key: AccountKey | None = None,
) -> None:
    """Run a node over ``home`` until SIGINT or SIGTERM (or cancellation); with
    ``genesis`` it keeps that network's ledger, with ``validator_key`` it votes."""
    stores = home.open(quota_bytes=config.quota_mb * 1024 * 1024)
    try:
        node = Node(home, config, stores, genesis=genesis, validator_key=validator_key)
        registry = node_registry(node)
        control = ControlServer(load_or_create_token(home.path), registry=registry)
        install_routes(control, node)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                port = await nursery.start(
                    partial(serve_http, control.handler, port=config.control_port)
                )
                metrics_port = port
                if config.metrics_port:
                    metrics_port = await nursery.start(
                        partial(serve_http, metrics_handler(registry), port=config.metrics_port)
                    )
                write_run_file(
                    home.path,
                    port=port,
                    metrics_port=metrics_port,
                    pid=os.getpid(),
                    peer_id=str(node.peer_id),
                    addrs=node.addrs(),
                )
                if on_ready is not None:
                    on_ready(node)
                async for signum in signals:
                    log.info("stopping", extra={"signal": signal.Signals(signum).name})
                    nursery.cancel_scope.cancel()
                    break
    finally:
        remove_run_file(home.path)
        stores.close()
