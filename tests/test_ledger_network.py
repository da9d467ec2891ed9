"""The ledger across real node processes on 127.0.0.1: 4 validators and replicas."""

import json
from pathlib import Path

import pytest

from tests.cli_helpers import PASSPHRASE, toktok
from tests.ledgernet import ALLOCATION, balance, ledger_network, linked, transfer
from tests.netharness import NodeProc, start_node, wait_for


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "sample.mp4"
    toktok(path.parent / "unused", "sample", str(path), "--seconds", "4", "--height", "360")
    return path


def account(node: NodeProc) -> str:
    return str(node.call("balance")["account"])


def ledger_state(node: NodeProc, accounts: list[str]) -> list[object]:
    return [node.call("balance", account=a)["balances"] for a in accounts]


def converged(nodes: list[NodeProc], accounts: list[str]) -> bool:
    states = [json.dumps(ledger_state(n, accounts), sort_keys=True) for n in nodes]
    return len(set(states)) == 1


def test_transfers_certify_and_every_replica_converges(tmp_path: Path) -> None:
    with ledger_network(tmp_path, 6, 4) as nodes:
        accounts = [account(n) for n in nodes]
        transfer(nodes[4], accounts[5], 1_000)
        transfer(nodes[5], accounts[0], 300)
        transfer(nodes[0], accounts[4], 7)
        wait_for(lambda: converged(nodes, accounts), timeout_s=20, what="replicas to agree")
        assert balance(nodes[1], accounts[4]) == ALLOCATION - 1_000 + 7
        assert balance(nodes[2], accounts[5]) == ALLOCATION + 1_000 - 300
        assert balance(nodes[3], accounts[0]) == ALLOCATION + 300 - 7
        history = nodes[5].call("history", account=accounts[5])["history"]
        assert [h["changes"][0]["amount"] for h in history] == [-300, 1_000]


def test_refused_orders_say_why_and_change_nothing(tmp_path: Path) -> None:
    with ledger_network(tmp_path, 5, 4) as nodes:
        accounts = [account(n) for n in nodes]
        before = ledger_state(nodes[4], accounts)
        with pytest.raises(Exception, match="insufficient_funds"):
            transfer(nodes[4], accounts[1], ALLOCATION + 1)
        with pytest.raises(Exception, match="no token has the symbol"):
            transfer(nodes[4], accounts[1], 5, token="NOPE")
        with pytest.raises(Exception, match="a transfer to oneself"):
            transfer(nodes[4], accounts[4], 5)
        with pytest.raises(Exception, match="passphrase"):
            nodes[4].call("transfer", passphrase="wrong horse", to=accounts[1], amount=5)
        assert ledger_state(nodes[4], accounts) == before
        assert nodes[4].call("balance")["next_seq"] == 0
        # The account is not blocked by what was refused.
        transfer(nodes[4], accounts[1], 5)
        assert balance(nodes[4], accounts[4]) == ALLOCATION - 5


def test_with_one_validator_down_transfers_still_certify(tmp_path: Path) -> None:
    with ledger_network(tmp_path, 5, 4) as nodes:
        accounts = [account(n) for n in nodes]
        assert nodes[3].stop() == 0  # f = 1 of 3f+1 = 4
        for _ in range(3):
            transfer(nodes[4], accounts[1], 10)
        live = [nodes[i] for i in (0, 1, 2, 4)]
        wait_for(lambda: converged(live, accounts), timeout_s=20, what="live replicas to agree")
        assert balance(nodes[0], accounts[4]) == ALLOCATION - 30


def test_a_replica_offline_converges_through_sync_and_a_killed_one_recovers(
    tmp_path: Path,
) -> None:
    with ledger_network(tmp_path, 6, 4, sync_interval_s=2) as nodes:
        accounts = [account(n) for n in nodes]
        offline, killed = nodes[5], nodes[4]
        assert offline.stop() == 0
        for i in range(5):
            transfer(nodes[1], accounts[5], 100 + i)
            transfer(killed, accounts[0], 1)
        killed.kill()  # SIGKILL
        transfer(nodes[2], accounts[4], 50)
        for i, node in ((4, killed), (5, offline)):
            nodes[i] = start_node(node.home, bootstrap=[nodes[0].addr])
        wait_for(lambda: converged(nodes, accounts), timeout_s=30, what="every replica to agree")
        assert balance(nodes[5], accounts[5]) == ALLOCATION + sum(100 + i for i in range(5))
        assert balance(nodes[4], accounts[4]) == ALLOCATION - 5 + 50


def test_create_token_tip_and_swap_through_the_cli(tmp_path: Path) -> None:
    with ledger_network(tmp_path, 6, 4) as nodes:
        creator, fan = nodes[4], nodes[5]
        creator_account, fan_account = account(creator), account(fan)
        made = toktok(
            creator.home,
            "token",
            "create",
            "ART",
            "--supply",
            "1000",
            "--decimals",
            "2",
            "--name",
            "Art shares",
            "--json",
        )
        token = json.loads(made.stdout)["token"]
        # A swap: the fan gives 500 TOK base units for 25 ART base units.
        proposal = toktok(
            fan.home,
            "swap",
            "propose",
            "--with",
            creator_account,
            "--give",
            "500",
            "--get",
            "25",
            "--get-token",
            token,
            "--json",
        )
        blob = json.loads(proposal.stdout)["proposal"]
        toktok(creator.home, "swap", "accept", blob)
        toktok(fan.home, "transfer", creator_account, "3", "--token", "ART")

        def holdings() -> tuple[int, int, int, int]:
            return (
                balance(fan, fan_account, "ART"),
                balance(fan, fan_account),
                balance(fan, creator_account, "ART"),
                balance(fan, creator_account),
            )

        wait_for(
            lambda: holdings() == (22, ALLOCATION - 500, 978, ALLOCATION + 500),
            timeout_s=20,
            what="the swap and transfer at the fan's node",
        )
        shown = toktok(fan.home, "balance").stdout
        assert "0.22" in shown and "ART" in shown
        assert "swap" in toktok(fan.home, "history").stdout
        # A replayed proposal is refused: its sequence numbers are spent.
        again = toktok(creator.home, "swap", "accept", blob, check=False)
        assert again.returncode == 2 and "sequence number" in again.stderr


def test_tip_pays_the_creator_of_a_video(tmp_path: Path, sample: Path) -> None:
    with ledger_network(tmp_path, 5, 4) as nodes:
        creator, fan = nodes[1], nodes[4]
        published = toktok(creator.home, "publish", str(sample), "--title", "tip me")
        video = published.stdout.strip().splitlines()[-1]
        wait_for(
            lambda: video in {v["id"] for v in fan.call("videos")["videos"]},
            timeout_s=20,
            what="the manifest at the fan",
        )
        result = fan.call("tip", passphrase=PASSPHRASE, manifest=video, amount=42)
        assert result["creator"] == account(creator)
        wait_for(
            lambda: balance(creator, account(creator)) == ALLOCATION + 42,
            timeout_s=20,
            what="the tip at the creator",
        )
        entry = creator.call("history")["history"][0]
        assert entry["memo"] == video


def test_an_order_short_of_a_quorum_is_finished_before_the_next(tmp_path: Path) -> None:
    with ledger_network(tmp_path, 5, 4) as nodes:
        accounts = [account(n) for n in nodes]
        for i in (2, 3):
            assert nodes[i].stop() == 0  # two of four: no quorum
        with pytest.raises(Exception, match="no quorum"):
            transfer(nodes[4], accounts[1], 11)
        assert nodes[4].call("balance")["next_seq"] == 0
        for i in (2, 3):
            nodes[i] = start_node(nodes[i].home, bootstrap=[nodes[0].addr])
        wait_for(lambda: linked(nodes[4], 4), timeout_s=30, what="the validators back")
        # Validators 0 and 1 hold a lock for the first order: it is certified first.
        transfer(nodes[4], accounts[1], 22)
        assert nodes[4].call("balance")["next_seq"] == 2
        wait_for(
            lambda: balance(nodes[1], accounts[4]) == ALLOCATION - 33,
            timeout_s=20,
            what="both transfers at another replica",
        )
