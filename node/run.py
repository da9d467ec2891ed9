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
from dataclasses import dataclass
from functools import partial

import trio

from node.api import install_routes
from node.config import NodeConfig, split_host_port
from node.control import (
    ControlServer,
    load_or_create_token,
    metrics_handler,
    remove_run_file,
    write_run_file,
)
from node.daemon import Node
from node.gateway.api import Gateway
from node.gateway.bridge import Bridge
from node.gateway.rtc import RtcLimits, RtcService
from node.gateway.segments import SegmentSource
from node.home import Home
from node.httpserver import HttpLimits, serve_http
from node.nodemetrics import node_registry
from protocol.accounts import AccountKey

log = logging.getLogger("toktok.node")

UPLOADS_DIR = "uploads"
"""Under the home: files that browsers are uploading, until ingest has read them."""
WEB_BODY_BYTES_MAX = 4 * 1024 * 1024 + 64 * 1024
"""The largest request body of the web gateway: an upload piece (4 MiB) and some room."""


@dataclass(frozen=True)
class Ready:
    """What a started node tells whoever started it."""

    node: Node
    web: str | None
    """The web app's sign-in address (with the token in its fragment), or None."""


async def run_node(
    home: Home,
    config: NodeConfig,
    *,
    on_ready: Callable[[Ready], None] | None = None,
    genesis: bytes | None = None,
    validator_key: AccountKey | None = None,
    web_owner: AccountKey | None = None,
) -> None:
    """Run a node over ``home`` until SIGINT or SIGTERM (or cancellation); with
    ``genesis`` it keeps that network's ledger, with ``validator_key`` it votes. With
    ``config.web.http`` it serves the web app, whose signed-in owner acts as ``web_owner``
    (None: the app can sign nobody's messages)."""
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
                web = None
                if config.web.http:
                    web = await _start_web(nursery, home, config, node, control, web_owner)
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
                    on_ready(Ready(node, web))
                async for signum in signals:
                    log.info("stopping", extra={"signal": signal.Signals(signum).name})
                    nursery.cancel_scope.cancel()
                    break
    finally:
        remove_run_file(home.path)
        stores.close()


async def _start_web(
    nursery: trio.Nursery,
    home: Home,
    config: NodeConfig,
    node: Node,
    control: ControlServer,
    owner: AccountKey | None,
) -> str:
    """Start the bridge, the WebRTC service and the web gateway; their sign-in address."""
    web = config.web
    host, port = split_host_port(web.http)
    bridge = Bridge()
    await nursery.start(bridge.run)
    source = SegmentSource(node)
    rtc = RtcService(
        bridge,
        source,
        limits=RtcLimits(
            connections_max=web.peer_connections_max,
            per_client_max=web.peer_connections_per_client_max,
            requests_in_flight_max=web.requests_in_flight_max,
        ),
        ice_addresses=(host,),
    )
    gateway = Gateway(
        node,
        control,
        rtc=rtc,
        source=source,
        owner=owner,
        config=web,
        uploads_dir=home.path / UPLOADS_DIR,
    )
    limits = HttpLimits(body_bytes_max=WEB_BODY_BYTES_MAX)
    bound = await nursery.start(
        partial(serve_http, gateway.handler, host=host, port=port, limits=limits)
    )
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{bound}/#signin={gateway.signin_token}"
