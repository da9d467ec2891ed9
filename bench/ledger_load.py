"""A load-generating ledger client for bench/ledger.py: one process, many accounts.

Run by bench/ledger.py, not by hand: ``python bench/ledger_load.py --home H --genesis G
--bootstrap ADDR --seeds FILE --transfers N --validators V --out FILE``.

It runs a real node (node/daemon.py, its own home and LevelDB store, no validator key),
joins the network, and waits until its ledger client has a link to every validator. It
signs every order before the run (account ``k`` sends ``N`` transfers of 1 base unit, with
sequence numbers 0..N-1, to other bench accounts), prints ``{"ready": true}`` and waits
for a line on stdin. Then each account submits its orders one after the other, all
accounts at once, through :meth:`node.ledgerclient.LedgerClient.submit`, exactly as the
node's own control routes do. It writes to ``--out`` one JSON object: per order, its id,
the wall-clock ms of submission and of certification here, and the failures.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import random
import time
from typing import Any

import trio

from node.config import NodeConfig
from node.daemon import Node
from node.gossip import wall_ms
from node.home import Home
from node.ledgerclient import LedgerError
from protocol.accounts import AccountKey
from protocol.genesis import committee_of, decode_genesis
from protocol.orders import PLATFORM_TOKEN, SignedOrder, Transfer, sign_order

READY_TIMEOUT_S = 60.0


def presign(
    keys: list[AccountKey], network: bytes, transfers: int, rng: random.Random
) -> list[list[SignedOrder]]:
    """Each account's transfers, in sequence order, to random other bench accounts."""
    now = wall_ms()
    chains = []
    for i, key in enumerate(keys):
        chain = []
        for seq in range(transfers):
            other = keys[(i + 1 + rng.randrange(len(keys) - 1)) % len(keys)].public_key
            order = Transfer(network, now, key.public_key, seq, PLATFORM_TOKEN, other, 1, b"")
            chain.append(sign_order(order, [key]))
        chains.append(chain)
    return chains


async def run(args: argparse.Namespace) -> dict[str, Any]:
    genesis = Path(args.genesis).read_bytes()
    network = committee_of(decode_genesis(genesis)).network
    seeds = [bytes.fromhex(s) for s in json.loads(Path(args.seeds).read_text())]
    chains = presign([AccountKey(s) for s in seeds], network, args.transfers, random.Random(7))
    config = NodeConfig().override(
        listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=(args.bootstrap,), peers_target=16
    )
    home = Home(Path(args.home))
    results: list[tuple[str, int, int]] = []
    failures: list[str] = []
    with home.open() as stores:
        node = Node(home, config, stores, genesis=genesis)
        client = node.ledger_client
        assert client is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            with trio.fail_after(READY_TIMEOUT_S):
                while len(client.links) < args.validators:
                    await trio.sleep(0.1)
            print(json.dumps({"ready": True}), flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            started = time.monotonic()
            cpu_started = time.process_time()

            async def account(chain: list[SignedOrder]) -> None:
                for signed in chain:
                    submitted = wall_ms()
                    try:
                        await client.submit(signed)
                    except LedgerError as exc:
                        failures.append(str(exc))
                        return  # its later orders cannot certify without this one
                    results.append((signed.id.hex(), submitted, wall_ms()))

            async with trio.open_nursery() as accounts:
                for chain in chains:
                    accounts.start_soon(account, chain)
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu_started
            while node.gossip.queued:  # the last certificates still to be gossiped
                await trio.sleep(0.05)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    return {
        "orders": results,
        "failures": failures,
        "elapsed_s": elapsed,
        "cpu_s": cpu_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True)
    parser.add_argument("--genesis", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--transfers", type=int, required=True)
    parser.add_argument("--validators", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", default="", help="write cProfile stats of the run here")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(trio.run, run, args)
        profiler.dump_stats(args.profile)
    else:
        result = trio.run(run, args)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
