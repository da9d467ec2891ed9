"""The ledger with f Byzantine validators of 3f+1 and an equivocating client, as real
processes on 127.0.0.1.

The committee has 4 seats (f = 1): three validator nodes and tests/evil_validator.py,
which holds the fourth key and signs anything (equivocating) or withholds its votes.
tests/evil_client.py sends conflicting orders for one sequence number to different
validators at once, some of them overspending, while the nodes keep transferring. Safety:
never two certificates for one (account, sequence number), no certificate dropped as
conflicting anywhere, every replica ends with the same balances, none below zero, and the
platform token's supply is conserved. Liveness: the nodes' transfers certify all along.
"""

import hashlib
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from protocol.accounts import AccountKey
from tests.cli_helpers import toktok_env
from tests.ledgernet import ALLOCATION, ledger_network, network_dir, transfer
from tests.netharness import NodeProc, wait_for

VALIDATING_NODES = 3
COMMITTEE = 4
EVIL_SEAT_KEY = "validator-4.key"
CLIENT_SEED = hashlib.sha256(b"toktok tests: the equivocating client").digest()
CLIENT_ALLOCATION = 10_000
ROUNDS = 6
HONEST_TRANSFERS_MIN = 6
HONEST_TRANSFERS_MAX = 40
"""Transfers the nodes make while the client plays: at least the first, at most the last."""
START_TIMEOUT_S = 30


@dataclass
class Proc:
    """A test process whose stdout lines (JSON) and stderr lines are collected as they come."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def finished(self) -> bool:
        return self.proc.poll() is not None


def _collect(stream: IO[str], lines: list[str]) -> None:
    with stream:
        for line in stream:
            lines.append(line)


@contextmanager
def spawn(module: str, *args: str) -> Iterator[Proc]:
    """``python -m module args``; killed, waited for and its pipes closed at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=toktok_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    running = Proc(proc)
    for stream, lines in ((proc.stdout, running.lines), (proc.stderr, running.errors)):
        reader = threading.Thread(target=_collect, args=(stream, lines), daemon=True)
        reader.start()
        running.readers.append(reader)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for reader in running.readers:
            reader.join(timeout=10)


@contextmanager
def evil_validator(root: Path, mode: str, nodes: list[NodeProc]) -> Iterator[tuple[Proc, str]]:
    """tests/evil_validator.py on the committee's last seat, dialled into every node;
    yields the process and its address."""
    net = network_dir(root)
    args = ["--key", str(net / "validators" / EVIL_SEAT_KEY), "--genesis", str(net / "genesis.bin")]
    args += ["--mode", mode]
    for node in nodes:
        args += ["--connect", node.addr]
    with spawn("tests.evil_validator", *args) as evil:
        up = wait_for(
            lambda: [e for e in evil.events() if e.get("event") == "connected"] or evil.finished(),
            timeout_s=START_TIMEOUT_S,
            what="the evil validator to connect",
        )
        assert not evil.finished(), "".join(evil.errors)
        yield evil, str(up[0]["addrs"][0])


def all_linked(nodes: list[NodeProc]) -> bool:
    """Every node links to every seat but its own."""
    for i, node in enumerate(nodes):
        seats = COMMITTEE - 1 if i < VALIDATING_NODES else COMMITTEE
        if int(node.status()["ledger"]["validators_linked"]) < seats:
            return False
    return True


def account(node: NodeProc) -> str:
    return str(node.call("balance")["account"])


def ledger_state(node: NodeProc, accounts: list[str]) -> list[tuple[int, int]]:
    """(next sequence number, platform token balance) of each account, at ``node``."""
    state = []
    for text in accounts:
        answer = node.call("balance", account=text)
        held = sum(int(r["amount"]) for r in answer["balances"] if r["platform"])
        state.append((int(answer["next_seq"]), held))
    return state


def converged(nodes: list[NodeProc], accounts: list[str]) -> list[tuple[int, int]] | None:
    states = [ledger_state(node, accounts) for node in nodes]
    return states[0] if all(s == states[0] for s in states) else None


def honest_transfers(nodes: list[NodeProc], accounts: list[str], client: Proc) -> Counter[str]:
    """Transfers between the nodes' accounts, from every node in turn, until the client is
    done (and at least a few); each one returns only once certified. Returns the balance
    changes they make."""
    changes: Counter[str] = Counter()
    count = 0
    while count < HONEST_TRANSFERS_MIN or (not client.finished() and count < HONEST_TRANSFERS_MAX):
        sender, recipient = count % len(nodes), (count + 2) % len(nodes)
        amount = 10 + count
        transfer(nodes[sender], accounts[recipient], amount)
        changes[accounts[sender]] -= amount
        changes[accounts[recipient]] += amount
        count += 1
    return changes


def test_equivocation_and_a_byzantine_validator_break_no_ledger_invariant(
    tmp_path: Path,
) -> None:
    client_account = AccountKey(CLIENT_SEED).account_id
    with (
        ledger_network(
            tmp_path,
            5,
            VALIDATING_NODES,
            committee=COMMITTEE,
            extra_allocs=[(client_account, CLIENT_ALLOCATION)],
            sync_interval_s=1,
        ) as nodes,
        evil_validator(tmp_path, "sign-anything", nodes) as (_, evil_addr),
    ):
        wait_for(lambda: all_linked(nodes), timeout_s=20, what="every node to link every seat")
        accounts = [account(n) for n in nodes]
        args = ["--genesis", str(network_dir(tmp_path) / "genesis.bin")]
        args += ["--seed", CLIENT_SEED.hex(), "--rounds", str(ROUNDS)]
        args += ["--to", accounts[0], "--to", accounts[4]]
        for addr in [n.addr for n in nodes[:VALIDATING_NODES]] + [evil_addr]:
            args += ["--connect", addr]
        with spawn("tests.evil_client", *args) as client:
            changes = honest_transfers(nodes, accounts, client)
            wait_for(client.finished, timeout_s=30, what="the equivocating client's rounds")
            assert client.proc.returncode == 0, "".join(client.lines + client.errors)
        events = client.events()

        rounds = [e for e in events if "round" in e]
        assert [r["certificates"] for r in rounds] == [1, 1, 0] * (ROUNDS // 3)
        # Order A had seats 0 and 1 first, B seat 2: A certifies unless it overspends.
        assert [c["order"] for r in rounds for c in r["certified"]] == ["A", "B"] * (ROUNDS // 3)
        # The Byzantine seat voted for both orders of every slot, and yet no slot has two.
        assert all(3 in r["votes"]["A"] and 3 in r["votes"]["B"] for r in rounds)
        certified = [c for r in rounds for c in r["certified"]]
        changes[client_account] -= sum(c["amount"] for c in certified)
        for c in certified:
            changes[c["to"]] += c["amount"]

        involved = sorted({*accounts, client_account, *changes})
        agreed = wait_for(
            lambda: converged(nodes, involved), timeout_s=30, what="every replica to agree"
        )
        genesis = {a: ALLOCATION for a in accounts} | {client_account: CLIENT_ALLOCATION}
        held = {a: amount for a, (_, amount) in zip(involved, agreed, strict=True)}
        assert held == {a: genesis.get(a, 0) + changes[a] for a in involved}
        assert min(held.values()) >= 0
        supply = sum(genesis.values())
        assert sum(held.values()) == supply
        for node in nodes:
            (platform,) = [t for t in node.call("tokens")["tokens"] if t["platform"]]
            assert platform["supply"] == supply
            assert node.status()["ledger"]["conflicts"] == 0
        seqs = dict(zip(involved, (seq for seq, _ in agreed), strict=True))
        assert seqs[client_account] == len(certified) == events[-1]["seq"]


def test_transfers_certify_while_a_byzantine_validator_withholds_its_votes(
    tmp_path: Path,
) -> None:
    with (
        ledger_network(tmp_path, 4, VALIDATING_NODES, committee=COMMITTEE) as nodes,
        evil_validator(tmp_path, "withhold", nodes) as (evil, _),
    ):
        wait_for(lambda: all_linked(nodes), timeout_s=20, what="every node to link every seat")
        accounts = [account(n) for n in nodes]
        for sender, recipient in ((3, 0), (0, 3), (1, 2)):
            transfer(nodes[sender], accounts[recipient], 100)
        # Each node's link to the Byzantine seat carried a submit that it never answered.
        wait_for(
            lambda: any(e.get("event") == "withheld" for e in evil.events()),
            timeout_s=10,
            what="the evil validator to withhold a vote",
        )
        expected = [(1, ALLOCATION), (1, ALLOCATION - 100), (0, ALLOCATION + 100), (1, ALLOCATION)]
        wait_for(
            lambda: converged(nodes, accounts) == expected,
            timeout_s=20,
            what="every replica to agree",
        )
        for node in nodes:
            assert node.status()["ledger"]["conflicts"] == 0
