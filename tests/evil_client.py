"""An equivocating ledger client for the ledger tests, in its own process.

    python -m tests.evil_client --genesis FILE --seed HEX --connect MULTIADDR... \\
        --rounds N [--to ACCOUNT ...]

It holds the account of the 32-byte Ed25519 seed ``--seed`` (the test funds it in the
genesis), dials every ``--connect`` address and says hello over ``/toktok/ledger/1.0.0``
to learn which committee seat each peer holds (checking the peer proof). Every round it
signs two conflicting transfers, A and B, for its account's next sequence number (other
recipients and amounts; in some rounds one or both spend more than the balance):

1. at once: A to validators 0 and 1, B to validator 2, both to every other seat (the
   Byzantine one, which votes for anything);
2. at once: each order to the honest seats that have not seen it (A to 2, B to 0 and 1),
   which an honest validator refuses once it voted for the other order;
3. every certificate the votes make (:func:`protocol.certs.certify`; those short of a
   quorum are skipped) is confirmed to every validator, which applies it.

It prints one JSON line per round: ``{"round", "kind", "seq", "certificates", "certified":
[{"order", "to", "amount"}], "votes": {"A": [seats], "B": [seats]}}``, and moves to the
next sequence number only when an order certified (an honest client could only block its
own account). A last line ``{"event": "done", "seq", "balance"}`` ends a run whose every
round was answered; anything else exits 1 with ``{"event": "error", "error"}``.
"""

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.streams import read_some
from protocol.accounts import AccountKey, account_from_text, account_to_text
from protocol.certs import Certificate, Committee, VerifiedRoots, Vote, certify, check_vote
from protocol.chunkwire import FrameDecoder
from protocol.errors import Reject
from protocol.genesis import Genesis, committee_of, decode_genesis
from protocol.ledgerwire import (
    CODE_NAMES,
    CONFIRM,
    HELLO,
    OK,
    PROTOCOL_ID,
    RESPONSE_BODY_BYTES_MAX,
    SUBMIT,
    VOTED,
    LedgerRequest,
    LedgerResponse,
    check_peer_proof,
    check_response,
    encode_frame,
)
from protocol.orders import PLATFORM_TOKEN, SignedOrder, Transfer, sign_order

REQUEST_TIMEOUT_S = 10.0
DIAL_TIMEOUT_S = 10.0
READ_BYTES = 65536
FRESH_RECIPIENTS = 2
"""Accounts made up from the seed that receive too, besides the ``--to`` ones."""
NORMAL, OVERSPEND_A, OVERSPEND_BOTH = "normal", "overspend_a", "overspend_both"
KINDS = (NORMAL, OVERSPEND_A, OVERSPEND_BOTH)
"""What each round signs, in turn: A and B both fundable; A overspends (so only B can
certify); both overspend (nothing certifies, the next round takes the same slot)."""


class ClientError(Exception):
    """A validator that did not answer as the protocol says."""


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


@dataclass
class Link:
    """One stream to one validator, one request at a time."""

    index: int
    stream: INetStream
    decoder: FrameDecoder[LedgerResponse] = field(
        default_factory=lambda: FrameDecoder(
            LedgerResponse, RESPONSE_BODY_BYTES_MAX, check_response
        )
    )
    ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))

    async def request(self, op: str, items: list[bytes]) -> LedgerResponse:
        """Send one request and read its answer. Raises :class:`ClientError`."""
        request_id = next(self.ids)
        await self.stream.write(
            encode_frame(LedgerRequest(id=request_id, op=op, items=tuple(items)))
        )
        with trio.fail_after(REQUEST_TIMEOUT_S):
            response = await read_response(self.stream, self.decoder)
        if response.id != request_id or response.status != OK:
            raise ClientError(f"validator {self.index}: {response.reason or 'wrong answer'}")
        return response


async def read_response(
    stream: INetStream, decoder: FrameDecoder[LedgerResponse]
) -> LedgerResponse:
    while True:
        data = await read_some(stream, READ_BYTES)
        if not data:
            raise ClientError("the validator closed the stream")
        responses = decoder.feed(data)
        if responses:
            return responses[0]


async def hello(host: IHost, committee: Committee, peer: ID) -> Link:
    stream = await host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
    link = Link(index=-1, stream=stream)
    response = await link.request(HELLO, [])
    if not check_peer_proof(committee, response.validator, peer.to_bytes(), response.proof):
        raise ClientError(f"peer {peer} claims seat {response.validator} without proof")
    link.index = response.validator
    return link


@dataclass
class Round:
    """One round's two orders and the votes gathered for each."""

    orders: dict[str, SignedOrder]
    votes: dict[str, dict[int, Vote]]
    refusals: list[str] = field(default_factory=list)


class EquivocatingClient:
    """The rounds of module doc, over links to every seat of the committee."""

    def __init__(
        self, genesis: Genesis, key: AccountKey, links: dict[int, Link], to: list[bytes]
    ) -> None:
        self.committee = committee_of(genesis)
        self.key = key
        self.links = links
        self.recipients = to
        self.roots = VerifiedRoots()
        self.seq = 0
        self.balance = sum(a.amount for a in genesis.allocations if a.account == key.public_key)

    def transfer(self, recipient: bytes, amount: int, memo: bytes) -> SignedOrder:
        order = Transfer(
            network=self.committee.network,
            created_ms=int(time.time() * 1000),
            sender=self.key.public_key,
            seq=self.seq,
            token=PLATFORM_TOKEN,
            recipient=recipient,
            amount=amount,
            memo=memo,
        )
        return sign_order(order, [self.key])

    def orders(self, number: int, kind: str) -> dict[str, SignedOrder]:
        over = self.balance + 1 + number
        a_amount = over if kind in (OVERSPEND_A, OVERSPEND_BOTH) else 1 + number
        b_amount = over + 1 if kind == OVERSPEND_BOTH else 2 + number
        count = len(self.recipients)
        return {
            "A": self.transfer(self.recipients[number % count], a_amount, b"A%d" % number),
            "B": self.transfer(self.recipients[(number + 1) % count], b_amount, b"B%d" % number),
        }

    async def play(self, number: int) -> None:
        kind = KINDS[number % len(KINDS)]
        state = Round(self.orders(number, kind), {"A": {}, "B": {}})
        honest_a, honest_b = {0, 1}, {2}
        first: dict[int, list[str]] = {i: ["A", "B"] for i in self.links}
        first.update({i: ["A"] for i in honest_a} | {i: ["B"] for i in honest_b})
        await self.submit_all(state, first)
        await self.submit_all(state, {i: ["B"] for i in honest_a} | {i: ["A"] for i in honest_b})
        certs: list[tuple[str, Certificate]] = []
        for name, signed in state.orders.items():
            try:
                certs.append(
                    (name, certify(self.committee, signed, list(state.votes[name].values())))
                )
            except ValueError:
                continue  # short of a quorum
        if certs:
            async with trio.open_nursery() as nursery:
                for link in self.links.values():
                    nursery.start_soon(link.request, CONFIRM, [c.raw for _, c in certs])
        certified = []
        for name, cert in certs:
            order = state.orders[name].order
            assert isinstance(order, Transfer)
            self.balance -= order.amount
            certified.append(
                {
                    "order": name,
                    "id": cert.order_id.hex(),
                    "to": account_to_text(order.recipient),
                    "amount": order.amount,
                }
            )
        say(
            round=number,
            kind=kind,
            seq=self.seq,
            certificates=len(certs),
            certified=certified,
            votes={name: sorted(votes) for name, votes in state.votes.items()},
            refusals=state.refusals,
        )
        if certs:
            self.seq += 1

    async def submit_all(self, state: Round, plan: dict[int, list[str]]) -> None:
        """Send each validator its orders of ``plan``, all at once; gather the votes."""

        async def submit(index: int, names: list[str]) -> None:
            link = self.links[index]
            response = await link.request(SUBMIT, [state.orders[n].raw for n in names])
            if len(response.results) != len(names):
                raise ClientError(f"validator {index}: {len(response.results)} results")
            for name, result in zip(names, response.results, strict=True):
                if result.code != VOTED:
                    state.refusals.append(f"{index} {name}: {CODE_NAMES[result.code]}")
                    continue
                vote = result.votes[0]
                try:
                    if vote.validator != index:
                        raise Reject(f"a vote of seat {vote.validator}")
                    check_vote(self.committee, state.orders[name].id, vote, self.roots)
                except Reject as exc:
                    raise ClientError(f"validator {index}: bad vote: {exc}") from exc
                state.votes[name][index] = vote

        async with trio.open_nursery() as nursery:
            for index, names in plan.items():
                if index in self.links:
                    nursery.start_soon(submit, index, names)


async def main(args: argparse.Namespace) -> None:
    genesis = decode_genesis(Path(args.genesis).read_bytes())
    committee = committee_of(genesis)
    key = AccountKey(bytes.fromhex(args.seed))
    recipients = [account_from_text(text) for text in args.to]
    recipients += [
        AccountKey(key.seed[:-1] + bytes([i])).public_key for i in range(FRESH_RECIPIENTS)
    ]
    host = new_host(
        key_pair=create_new_key_pair(os.urandom(32)),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        links: dict[int, Link] = {}
        for addr in args.connect:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            with trio.fail_after(DIAL_TIMEOUT_S):
                await host.connect(info)
                link = await hello(host, committee, info.peer_id)
            links[link.index] = link
        if len(links) != len(committee.members):
            raise ClientError(f"{len(links)} of {len(committee.members)} seats reached")
        client = EquivocatingClient(genesis, key, links, recipients)
        for number in range(args.rounds):
            await client.play(number)
        say(event="done", seq=client.seq, balance=client.balance)
        for link in links.values():
            with trio.move_on_after(1):
                await link.stream.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--genesis", required=True, help="the network's genesis.bin")
    parser.add_argument("--seed", required=True, help="the funded account's seed, 64 hex digits")
    parser.add_argument("--connect", action="append", default=[], help="a validator's address")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--to", action="append", default=[], help="an account to pay")
    try:
        trio.run(main, parser.parse_args())
    except Exception as exc:  # the top of the process: say what went wrong, exit 1
        say(event="error", error=repr(exc))
        sys.exit(1)
