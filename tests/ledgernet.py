"""A ledger network of real node processes on 127.0.0.1, for tests and benches.

:func:`ledger_network` makes a home per node, runs ``toktok network init`` with a platform
token allocation for every node's account, points every node.toml at the genesis and the
first ``validators`` nodes at a validator key each, and starts them all (node 0 is the
bootstrap node). It waits until every node has a link to every running validator.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from node.config import CONFIG_FILE, NodeConfig, write_config
from node.home import Home, default_account
from protocol.accounts import account_to_text
from tests.cli_helpers import PASSPHRASE, toktok
from tests.netharness import NodeProc, init_home, start_node, stop_all, wait_for

ALLOCATION = 1_000_000_000


def account_of(home: Path) -> str:
    """The text id of the default account of ``home`` (no node may run over it)."""
    with Home(home).open() as stores:
        return account_to_text(default_account(stores)[1])


def prepare_ledger_homes(
    root: Path,
    count: int,
    validators: int,
    *,
    committee: int | None = None,
    extra_allocs: Sequence[tuple[str, int]] = (),
    **settings: Any,
) -> list[Path]:
    """Homes n0..n<count-1> with a shared genesis; the first ``validators`` vote.

    The genesis (in ``root/net``, with every validator key) has a committee of
    ``committee`` seats (default ``validators``): the seats past ``validators`` are for
    processes other than nodes. ``extra_allocs`` (account text, amount) fund accounts that
    no node holds, besides every node's ``ALLOCATION``.
    """
    seats = validators if committee is None else committee
    assert 1 <= validators <= seats, "the validating nodes hold seats of the committee"
    homes = [init_home(root / f"n{i}") for i in range(count)]
    allocs = []
    for home in homes:
        allocs += ["--alloc", f"{account_of(home)}={ALLOCATION}"]
    for account, amount in extra_allocs:
        allocs += ["--alloc", f"{account}={amount}"]
    net = network_dir(root)
    toktok(homes[0], "network", "init", "--validators", str(seats), "--out", str(net), *allocs)
    for i, home in enumerate(homes):
        key = str(net / "validators" / f"validator-{i + 1}.key") if i < validators else ""
        config = NodeConfig().override(genesis=str(net / "genesis.bin"), validator_key=key)
        (home / CONFIG_FILE).unlink()  # init_home wrote the defaults
        write_config(home, config.override(**settings))
    return homes


def network_dir(root: Path) -> Path:
    """Where :func:`prepare_ledger_homes` writes the genesis and the validator keys."""
    return root / "net"


def start_ledger_node(home: Path, bootstrap: list[str], role: str = "node") -> NodeProc:
    return start_node(home, bootstrap=bootstrap, role=role)


def linked(node: NodeProc, count: int) -> bool:
    return int(node.call("status")["ledger"]["validators_linked"]) >= count


@contextmanager
def ledger_network(
    root: Path,
    count: int,
    validators: int,
    *,
    committee: int | None = None,
    extra_allocs: Sequence[tuple[str, int]] = (),
    **settings: Any,
) -> Iterator[list[NodeProc]]:
    """``count`` running nodes sharing a genesis of ``validators`` validators (of a
    committee of ``committee`` seats, see :func:`prepare_ledger_homes`); it yields them once
    every node links to every validating node."""
    homes = prepare_ledger_homes(
        root, count, validators, committee=committee, extra_allocs=extra_allocs, **settings
    )
    nodes: list[NodeProc] = []
    try:
        nodes.append(start_ledger_node(homes[0], [], role="bootstrap"))
        for home in homes[1:]:
            nodes.append(start_ledger_node(home, [nodes[0].addr]))
        for i, node in enumerate(nodes):
            others = validators - 1 if i < validators else validators
            wait_for(
                partial(linked, node, others),
                timeout_s=30,
                what=f"{node.home.name} linked to the validators",
            )
        yield nodes
    finally:
        stop_all(nodes)


def transfer(node: NodeProc, to: str, amount: int, **params: Any) -> dict[str, Any]:
    return node.call("transfer", passphrase=PASSPHRASE, to=to, amount=amount, **params)


def balance(node: NodeProc, account: str, symbol: str = "TOK") -> int:
    rows = node.call("balance", account=account)["balances"]
    return sum(int(r["amount"]) for r in rows if r["symbol"] == symbol)
