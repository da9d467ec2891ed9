"""A Byzantine validator for the ledger tests, in its own process.

    python -m tests.evil_validator --key FILE --genesis FILE --mode sign-anything \\
        --connect MULTIADDR [--connect MULTIADDR ...] [--listen MULTIADDR]

It holds a real seat of the committee (the key file ``toktok network init`` wrote,
opened with $TOKTOK_PASSPHRASE) and serves ``/toktok/ledger/1.0.0`` in the real wire
format (protocol/ledgerwire.py), with a valid peer proof in its hello, but it breaks the
voting rule:

- ``sign-anything``: every submitted order that decodes gets a vote, whatever its sequence
  number or funds, and even when it already voted for another order of the same (account,
  sequence number): it equivocates. Confirmations are answered OK with ``applied`` 0 and
  applied nowhere.
- ``withhold``: hellos and confirmations are answered, a submit never is: the stream is
  held open, and nothing more is answered on it, until the client gives up.

It dials every ``--connect`` address, so the nodes' ledger clients find it (they say hello
to their connected peers), then prints one JSON line ``{"event": "connected", "connected":
N, "peer_id": ..., "addrs": [...]}``, and in ``withhold`` mode ``{"event": "withheld",
"orders": N}`` for every submit it leaves unanswered. It runs until killed or
``--lifetime-s`` is over.
"""

import argparse
import json
import os
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr

from node.streams import read_some
from protocol.accounts import AccountKey
from protocol.certs import Committee, sign_votes
from protocol.chunkwire import FrameDecoder
from protocol.errors import Reject
from protocol.genesis import committee_of, decode_genesis
from protocol.ledgerwire import (
    HELLO,
    INVALID,
    OK,
    PROTOCOL_ID,
    REQUEST_BODY_BYTES_MAX,
    SUBMIT,
    VOTED,
    LedgerRequest,
    LedgerResponse,
    Result,
    check_request,
    encode_frame,
    peer_proof,
)
from protocol.orders import decode_signed_order, order_id
from storage.keyfile import read_key_file

SIGN_ANYTHING = "sign-anything"
WITHHOLD = "withhold"
MODES = (SIGN_ANYTHING, WITHHOLD)
READ_BYTES = 65536
DIAL_TIMEOUT_S = 10


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class EvilValidator:
    """The answers of a validator that signs anything or withholds (see module doc)."""

    def __init__(self, committee: Committee, key: AccountKey, mode: str, peer_id: bytes) -> None:
        index = committee.index_of(key.public_key)
        if index is None:
            raise SystemExit("the key holds no seat of the genesis committee")
        self.committee = committee
        self.index = index
        self.mode = mode
        self._key = key
        self._peer_id = peer_id

    def answer(self, request: LedgerRequest) -> LedgerResponse | None:
        """The response to ``request``; None for a submit withheld."""
        if request.op == HELLO:
            proof = peer_proof(self._key, self.committee.network, self._peer_id)
            return _response(request.id, validator=self.index, proof=proof)
        if request.op == SUBMIT:
            if self.mode == WITHHOLD:
                say(event="withheld", orders=len(request.items))
                return None
            return _response(request.id, results=self.vote_all(request.items))
        return _response(request.id)  # confirm: "applied" nothing, and keeps nothing

    def vote_all(self, raws: tuple[bytes, ...]) -> tuple[Result, ...]:
        """A vote for every order that decodes, under one signature: no rule checked."""
        ids: list[bytes] = []
        refusals: dict[int, Result] = {}
        for i, raw in enumerate(raws):
            try:
                wire = decode_signed_order(raw)
            except Reject as exc:
                refusals[i] = Result(code=INVALID, reason=str(exc)[:100], votes=())
                continue
            ids.append(order_id(wire.kind, wire.order))
        votes = iter(sign_votes(self.committee, self.index, self._key, ids) if ids else [])
        return tuple(
            refusals[i] if i in refusals else Result(code=VOTED, reason="", votes=(next(votes),))
            for i in range(len(raws))
        )

    async def serve(self, stream: INetStream) -> None:
        """Answer one client's stream until it ends; after a withheld submit, stay silent."""
        decoder: FrameDecoder[LedgerRequest] = FrameDecoder(
            LedgerRequest, REQUEST_BODY_BYTES_MAX, check_request
        )
        silent = False
        try:
            while data := await read_some(stream, READ_BYTES):
                for request in decoder.feed(data):
                    response = None if silent else self.answer(request)
                    if response is None:
                        silent = True  # answers are in order: nothing after the withheld one
                        continue
                    await stream.write(encode_frame(response))
        except Exception:  # the client gave up on us or broke the stream: that is the point
            return


def _response(
    request_id: int,
    *,
    validator: int = 0,
    proof: bytes = b"",
    results: tuple[Result, ...] = (),
) -> LedgerResponse:
    return LedgerResponse(
        id=request_id,
        status=OK,
        reason="",
        validator=validator,
        proof=proof,
        results=results,
        applied=0,
    )


async def main(args: argparse.Namespace) -> None:
    committee = committee_of(decode_genesis(Path(args.genesis).read_bytes()))
    key = read_key_file(Path(args.key), os.environ["TOKTOK_PASSPHRASE"])
    listen = [multiaddr.Multiaddr(args.listen)]
    host = new_host(
        key_pair=create_new_key_pair(os.urandom(32)),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=listen,
    )
    validator = EvilValidator(committee, key, args.mode, host.get_id().to_bytes())
    host.set_stream_handler(TProtocol(PROTOCOL_ID), validator.serve)
    with trio.move_on_after(args.lifetime_s):
        async with host.run(listen):
            for addr in args.connect:
                with trio.fail_after(DIAL_TIMEOUT_S):
                    await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
            say(
                event="connected",
                connected=len(host.get_connected_peers()),
                peer_id=str(host.get_id()),
                addrs=[str(a) for a in host.get_addrs()],
            )
            await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True, help="a validator key file of the genesis")
    parser.add_argument("--genesis", required=True, help="the network's genesis.bin")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--connect", action="append", default=[], help="a node to dial")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--lifetime-s", type=float, default=300)
    trio.run(main, parser.parse_args())
