"""The ``toktok`` commands that run a node or talk to the running one.

While a node runs it holds the home's store, so commands that change or read it go
through the node's control interface (:mod:`node.controlclient`); with no node running,
``publish``, ``follow`` and ``videos`` work on the store directly (node/cli.py).
"""

import argparse
import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from node.config import ConfigError, NodeConfig, load_config
from node.controlclient import ControlCallError, ControlClient, NodeNotRunning
from node.home import PASSPHRASE_ENV, Home, HomeError, default_account, unlock_account
from node.ledgerconfig import load_genesis, load_validator_key
from node.run import Ready, run_node
from protocol.accounts import AccountKey
from storage.errors import WrongPassphrase
from storage.keyfile import KeyFileError


class RemoteError(Exception):
    """A command the running node refused, with its reason."""


def running_node(home: Path) -> ControlClient | None:
    """A client of the node running over ``home``, or None when none runs."""
    try:
        return ControlClient.from_home(home.expanduser())
    except NodeNotRunning:
        return None


def require_node(home: Path) -> ControlClient:
    client = running_node(home)
    if client is None:
        raise RemoteError(f"no node is running over {home}: start one with 'toktok node run'")
    return client


def call(client: ControlClient, name: str, **params: Any) -> dict[str, Any]:
    try:
        return client.call(name, **params)
    except ControlCallError as exc:
        raise RemoteError(str(exc)) from exc


def stream(
    client: ControlClient, name: str, update: Callable[[str, float], None], **params: Any
) -> dict[str, Any]:
    """Run a streaming call, feeding progress to ``update``; return its result."""
    try:
        # An {"error": ...} line arrives as ControlCallError (node/controlclient.py).
        for item in client.stream(name, **params):
            if "result" in item:
                result: dict[str, Any] = item["result"]
                return result
            update(str(item.get("phase", "")), float(item.get("fraction", 0.0)))
    except ControlCallError as exc:
        raise RemoteError(str(exc)) from exc
    raise RemoteError(f"the node ended '{name}' without a result")


def node_config(args: argparse.Namespace) -> NodeConfig:
    home = Path(args.home).expanduser()
    try:
        config = load_config(home)
        return config.override(
            listen=tuple(args.listen) if args.listen else None,
            bootstrap=tuple(args.bootstrap) if args.bootstrap else None,
            control_port=args.control_port,
            metrics_port=args.metrics_port,
            upload_kib_per_s=args.upload_kib_per_s,
            web=None if args.http is None else dataclasses.replace(config.web, http=args.http),
        )
    except ConfigError as exc:
        raise RemoteError(str(exc)) from exc


def cmd_node_run(
    args: argparse.Namespace, adjust: Callable[[NodeConfig], NodeConfig] | None = None
) -> int:
    """Run a node with the home's config, the flags, then ``adjust`` (a role's settings)."""
    home = Home(args.home)
    if running_node(home.path) is not None:
        raise RemoteError(f"a node is already running over {home.path}")
    config = node_config(args)
    if adjust is not None:
        try:
            config = adjust(config)
        except ConfigError as exc:
            raise RemoteError(str(exc)) from exc

    try:
        genesis = load_genesis(config, home.path)
        passphrase = os.environ.get(PASSPHRASE_ENV, "")
        if config.validator_key and not passphrase:
            if not sys.stdin.isatty():
                raise RemoteError(
                    f"no terminal to ask for the validator key's passphrase: set {PASSPHRASE_ENV}"
                )
            passphrase = getpass.getpass("passphrase of the validator key: ")
        validator_key = load_validator_key(config, home.path, passphrase)
    except (ConfigError, KeyFileError) as exc:
        raise RemoteError(str(exc)) from exc

    web_owner = _web_owner(home, config) if config.web.http else None

    def ready(started: Ready) -> None:
        # One JSON line on stdout: scripts (and devnet) read the node's addresses here.
        node = started.node
        line = {"peer_id": str(node.peer_id), "addrs": node.addrs(), "web": started.web}
        # The web app's sign-in address is the owner's key to it: here on stdout, never in
        # the logs (stderr).
        print(json.dumps(line), flush=True)

    trio.run(
        lambda: run_node(
            home,
            config,
            on_ready=ready,
            genesis=genesis,
            validator_key=validator_key,
            web_owner=web_owner,
        )
    )
    return 0


def _web_owner(home: Home, config: NodeConfig) -> AccountKey | None:
    """The home's default account, unlocked for the web app's owner: passphrase from
    TOKTOK_PASSPHRASE or the terminal. None (a read-only app) without either, or in a
    home without accounts. Raises RemoteError for a wrong passphrase."""
    stores = home.open(quota_bytes=config.quota_mb * 1024 * 1024)
    try:
        try:
            default_account(stores)
        except HomeError as exc:
            print(f"web app: read-only ({exc})", file=sys.stderr)
            return None
        passphrase = os.environ.get(PASSPHRASE_ENV, "")
        if not passphrase:
            if not sys.stdin.isatty():
                print(
                    f"web app: read-only (set {PASSPHRASE_ENV} to let the owner act from it)",
                    file=sys.stderr,
                )
                return None
            passphrase = getpass.getpass("passphrase of the node's account (for the web app): ")
        return unlock_account(stores, passphrase)
    except (HomeError, WrongPassphrase) as exc:
        raise RemoteError(f"web app: {exc}") from exc
    finally:
        stores.close()


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", action="append", default=[], metavar="MULTIADDR")
    p.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR")
    p.add_argument("--control-port", type=int, default=None)
    p.add_argument("--metrics-port", type=int, default=None)
    p.add_argument("--upload-kib-per-s", type=int, default=None, help="cap on bytes served")
    p.add_argument(
        "--http", default=None, metavar="HOST:PORT", help="serve the web app (127.0.0.1:8080)"
    )
