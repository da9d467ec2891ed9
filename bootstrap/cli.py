"""``toktok bootstrap run`` and ``toktok network init``: registered with the ``toktok``
command as plugins.

node/ sits below bootstrap/ and never imports it; the command finds this module through
the ``toktok.commands`` entry point group that pyproject.toml declares.
"""

import argparse
from pathlib import Path
from typing import Any

from bootstrap.genesis import (
    DEFAULT_DECIMALS,
    DEFAULT_NAME,
    DEFAULT_SYMBOL,
    cmd_network_init,
)
from bootstrap.role import bootstrap_config
from node.clinode import add_run_flags, cmd_node_run


def register(commands: Any) -> None:
    """Add the ``bootstrap`` command to the ``toktok`` sub-command parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bootstrap", help="run a bootstrap node until interrupted"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run a bootstrap node until interrupted")
    add_run_flags(run)
    run.set_defaults(func=cmd_bootstrap_run)


def cmd_bootstrap_run(args: argparse.Namespace) -> int:
    return cmd_node_run(args, adjust=bootstrap_config)


def register_network(commands: Any) -> None:
    """Add the ``network`` command to the ``toktok`` sub-command parsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "network", help="start a new network: its genesis and validator keys"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="write a new genesis and its validators' encrypted keys",
        description="Make fresh validator keys and write DIR/genesis.bin, DIR/genesis.json "
        "and DIR/validators/validator-<i>.key (encrypted with $TOKTOK_PASSPHRASE, or a "
        "passphrase asked for). Prints the network id last.",
    )
    init.add_argument("--validators", type=int, required=True, metavar="N", help="committee size")
    init.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    init.add_argument(
        "--alloc",
        action="append",
        default=[],
        metavar="ACCOUNT=AMOUNT",
        help="platform tokens (base units) an account starts with; repeat, at least one",
    )
    init.add_argument(
        "--name", default=DEFAULT_NAME, metavar="NAME", help=f"network name ({DEFAULT_NAME})"
    )
    init.add_argument(
        "--symbol",
        default=DEFAULT_SYMBOL,
        metavar="TOK",
        help=f"platform token symbol ({DEFAULT_SYMBOL})",
    )
    init.add_argument("--token-name", default="", metavar="TEXT", help="platform token's full name")
    init.add_argument(
        "--decimals",
        type=int,
        default=DEFAULT_DECIMALS,
        metavar="D",
        help=f"platform token decimals ({DEFAULT_DECIMALS})",
    )
    init.add_argument(
        "--weight", type=int, default=1, metavar="W", help="each validator's weight (1)"
    )
    init.add_argument("--json", action="store_true", help="print a JSON summary")
    init.set_defaults(func=cmd_network_init)
