"""``toktok bootstrap run``: registered with the ``toktok`` command as a plugin.

node/ sits below bootstrap/ and never imports it; the command finds this module through
the ``toktok.commands`` entry point group that pyproject.toml declares.
"""

import argparse
from typing import Any

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
