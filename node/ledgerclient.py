"""Getting orders certified: the client side of ``/toktok/ledger/1.0.0``.

:class:`LedgerClient` finds the validators among the node's peers (a ``hello`` whose
proof shows the peer holds a committee key), keeps one stream to each, and sends every
order to all of them. Each :class:`ValidatorLink` has one request in flight at a time and
batches whatever queued meanwhile into the next, so under load a vote signature covers
many orders. Once votes of a quorum's weight are in, the certificate is applied here,
confirmed to every validator (they need it before the account's next order) and gossiped.

A validator that refuses an order for its sequence number may simply lag behind: the
client then sends it the account's recent certificates and asks once more.
"""

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.peer.id import ID

from node.ledger import LedgerService
from node.streams import read_some
from protocol.certs import Certificate, Vote, certify, check_vote
from protocol.chunkwire import FrameDecoder
from protocol.errors import DecodeError, Reject
from protocol.ledgerwire import (
    CODE_NAMES,
    CONFIRM,
    HELLO,
    ITEMS_MAX,
    NOT_VALIDATOR,
    OK,
    PROTOCOL_ID,
    RESPONSE_BODY_BYTES_MAX,
    SUBMIT,
    VOTED,
    WRONG_SEQUENCE,
    LedgerRequest,
    LedgerResponse,
    Result,
    check_peer_proof,
    check_response,
    encode_frame,
)
from protocol.orders import SignedOrder, spends

log = logging.getLogger("toktok.ledger")

SUBMIT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
CATCH_UP_MAX = 16
"""Certificates sent to a lagging validator before asking it again."""
NOT_VALIDATOR_RETRY_S = 60.0
REPLICA = -1
"""The index of a link to a peer that does not vote."""


class LedgerError(Exception):
    """An order that did not get certified; the message says why."""


@dataclass
class _Pending:
    """One order on its way to a certificate."""

    signed: SignedOrder
    votes: dict[int, Vote] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    retried: set[int] = field(default_factory=set)
    done: trio.Event = field(default_factory=trio.Event)
    cert: Certificate | None = None


class ValidatorLink:
    """One stream to one validator (see module doc), or to a replica (index REPLICA),
    which only takes the certificates pushed to it."""

    def __init__(self, client: "LedgerClient", peer: ID, index: int, stream: INetStream) -> None:
        self.peer = peer
        self.index = index
        self._client = client
        self._stream = stream
        self._decoder: FrameDecoder[LedgerResponse] = FrameDecoder(
            LedgerResponse, RESPONSE_BODY_BYTES_MAX, check_response
        )
        self._ids = itertools.count(1)
        self._early: list[LedgerResponse] = []
        self._orders: list[_Pending] = []
        self._certs: list[bytes] = []
        self._wake = trio.Event()
        self.closed = False

    def submit(self, pending: _Pending) -> None:
        self._orders.append(pending)
        self._wake.set()

    def confirm(self, raws: list[bytes]) -> None:
        self._certs.extend(raws)
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._certs or self._orders:
                    await self._exchange()
        except Exception as exc:  # the validator left or misbehaved: drop the link
            log.info("validator link lost", extra={"peer": str(self.peer), "error": repr(exc)})
        finally:
            self.closed = True
            for pending in self._orders:
                pending.refused[self.index] = "validator unreachable"
                self._client.check_done(pending)
            with trio.move_on_after(1):
                await self._stream.reset()
            self._client.forget(self)

    async def _exchange(self) -> None:
        """Send what is queued (confirmations first: a submitted order may need them) in
        one write, then read the answers, which come in the same order."""
        certs, self._certs = self._certs[:ITEMS_MAX], self._certs[ITEMS_MAX:]
        orders, self._orders = self._orders[:ITEMS_MAX], self._orders[ITEMS_MAX:]
        requests = []
        if certs:
            requests.append(LedgerRequest(id=next(self._ids), op=CONFIRM, items=tuple(certs)))
        if orders:
            raws = tuple(p.signed.raw for p in orders)
            requests.append(LedgerRequest(id=next(self._ids), op=SUBMIT, items=raws))
        await self._stream.write(b"".join(encode_frame(r) for r in requests))
        for request in requests:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                response = await _read_response(self._stream, self._decoder, self._early)
            if response.id != request.id:
                raise DecodeError(f"answer to request {response.id}, expected {request.id}")
            if response.status != OK:
                raise DecodeError(f"validator refused the request: {response.reason}")
            if request.op != SUBMIT:
                continue
            if len(response.results) != len(orders):
                raise DecodeError("a submit answer with the wrong number of results")
            for pending, result in zip(orders, response.results, strict=True):
                self._client.on_result(self.index, pending, result, self)


async def _read_response(
    stream: INetStream,
    decoder: FrameDecoder[LedgerResponse],
    early: list[LedgerResponse] | None = None,
) -> LedgerResponse:
    """The next answer on ``stream``; answers that arrive together wait in ``early``."""
    if early:
        return early.pop(0)
    while True:
        data = await read_some(stream, 65536)
        if not data:
            raise DecodeError("the validator closed the stream")
        responses = decoder.feed(data)
        if responses:
            if early is None and len(responses) > 1:
                raise DecodeError("an answer nobody asked for")
            if early is not None:
                early.extend(responses[1:])
            return responses[0]


class LedgerClient:
    """Sends orders to every validator and assembles their votes into certificates."""

    def __init__(
        self,
        host: BasicHost,
        service: LedgerService,
        publish: Callable[[bytes], None],
    ) -> None:
        self._host = host
        self._service = service
        self._committee = service.committee
        self._publish = publish
        self.links: dict[int, ValidatorLink] = {}
        """Validator index -> the link to it."""
        self.replicas: dict[ID, ValidatorLink] = {}
        """Peers that keep the ledger without voting: certificates are pushed to them."""
        self._not_validators: dict[ID, float] = {}
        self._nursery: trio.Nursery | None = None
        self._next_seq: dict[bytes, int] = {}
        self._account_locks: dict[bytes, trio.Lock] = {}
        self.unfinished: dict[bytes, SignedOrder] = {}
        """Per account, an order some validators voted for that did not certify."""
        self.certified = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await self.discover()
                await trio.sleep(2.0)

    async def discover(self) -> None:
        """Say hello to connected peers not yet known to be validators or not."""
        known = {link.peer for link in self.links.values()} | set(self.replicas)
        now = trio.current_time()
        for peer in self._host.get_connected_peers():
            if peer in known or now < self._not_validators.get(peer, 0.0):
                continue
            await self._hello(peer)

    async def _hello(self, peer: ID) -> None:
        try:
            with trio.fail_after(5):
                stream = await self._host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
                await stream.write(encode_frame(LedgerRequest(id=0, op=HELLO, items=())))
                decoder: FrameDecoder[LedgerResponse] = FrameDecoder(
                    LedgerResponse, RESPONSE_BODY_BYTES_MAX, check_response
                )
                response = await _read_response(stream, decoder)
        except Exception as exc:  # no such protocol here, or gone: not a validator for now
            log.debug("not a validator", extra={"peer": str(peer), "error": repr(exc)})
            self._not_validators[peer] = trio.current_time() + NOT_VALIDATOR_RETRY_S
            return
        if response.status == NOT_VALIDATOR:
            # A replica: certificates formed here are pushed to it straight away (gossip
            # reaches the rest of the network, in larger batches).
            self.replicas[peer] = ValidatorLink(self, peer, REPLICA, stream)
            assert self._nursery is not None
            self._nursery.start_soon(self.replicas[peer].run)
            return
        if response.status != OK or not check_peer_proof(
            self._committee, response.validator, peer.to_bytes(), response.proof
        ):
            self._not_validators[peer] = trio.current_time() + NOT_VALIDATOR_RETRY_S
            with trio.move_on_after(1):
                await stream.reset()
            return
        old = self.links.get(response.validator)
        if old is not None and not old.closed:
            with trio.move_on_after(1):
                await stream.reset()
            return
        link = ValidatorLink(self, peer, response.validator, stream)
        self.links[response.validator] = link
        assert self._nursery is not None
        self._nursery.start_soon(link.run)
        log.info("validator found", extra={"peer": str(peer), "index": response.validator})

    def forget(self, link: ValidatorLink) -> None:
        if self.links.get(link.index) is link:
            del self.links[link.index]
        if self.replicas.get(link.peer) is link:
            del self.replicas[link.peer]

    def account_lock(self, account: bytes) -> trio.Lock:
        """Held while an account's next order is signed and certified: one at a time."""
        return self._account_locks.setdefault(account, trio.Lock())

    def next_seq(self, account: bytes) -> int:
        """The account's next sequence number, counting certificates formed here that
        wait for a credit before they apply."""
        return max(self._service.store.next_seq(account), self._next_seq.get(account, 0))

    async def submit(self, signed: SignedOrder, timeout_s: float = SUBMIT_TIMEOUT_S) -> Certificate:
        """Get ``signed`` certified; return the certificate, applied here and gossiped.

        Raises :class:`LedgerError` when validators refuse it (with their reason) or no
        quorum answers within ``timeout_s``.
        """
        pending = _Pending(signed)
        for link in list(self.links.values()):
            link.submit(pending)
        validator = self._service.validator
        if validator is not None:  # this node votes too, without a stream
            self.on_result(validator.index, pending, self._service.vote([signed.raw])[0])
        self.check_done(pending)
        with trio.move_on_after(timeout_s):
            await pending.done.wait()
        if pending.cert is None:
            if pending.votes:  # some validators hold a lock for it: it must be finished
                for account, _ in spends(signed.order):
                    self.unfinished[account] = signed
            raise LedgerError(self._failure(pending, timeout_s))
        return pending.cert

    async def finish(self, account: bytes) -> None:
        """Certify the account's order that some validators voted for but no quorum did.

        Until it certifies, those validators refuse any other order for its sequence
        number, so a new order must wait for it. Raises :class:`LedgerError` when it still
        does not certify.
        """
        signed = self.unfinished.get(account)
        if signed is None:
            return
        if any(self.next_seq(a) > seq for a, seq in spends(signed.order)):
            del self.unfinished[account]  # it (or, with a lying quorum, another) certified
            return
        try:
            await self.submit(signed)
        except LedgerError as exc:
            raise LedgerError(f"an earlier order of this account is unfinished: {exc}") from exc

    def _failure(self, pending: _Pending, timeout_s: float) -> str:
        if pending.refused:
            reasons = sorted(set(pending.refused.values()))
            return "validators refused the order: " + "; ".join(reasons)
        return (
            f"no quorum within {timeout_s:g} s: votes from {len(pending.votes)} of"
            f" {len(self._committee.members)} validators ({len(self.links)} reachable)"
        )

    def on_result(
        self, index: int, pending: _Pending, result: Result, link: ValidatorLink | None = None
    ) -> None:
        """Take validator ``index``'s answer (over ``link``, or from this node itself)."""
        if pending.done.is_set():
            return
        if result.code == VOTED:
            vote = result.votes[0]
            try:
                if vote.validator != index:
                    raise Reject(f"validator {index} sent a vote of {vote.validator}")
                check_vote(self._committee, pending.signed.id, vote, self._service.roots)
            except Reject as exc:
                pending.refused[index] = f"bad vote: {exc}"
            else:
                pending.votes[index] = vote
                pending.refused.pop(index, None)
        elif result.code == WRONG_SEQUENCE and link is not None and index not in pending.retried:
            # It may lag behind: hand it the account's recent certificates, then ask again.
            pending.retried.add(index)
            link.confirm(self._recent_certificates(pending.signed))
            link.submit(pending)
            return
        else:
            pending.refused[index] = f"{CODE_NAMES[result.code]}: {result.reason}"
        self.check_done(pending)

    def _recent_certificates(self, signed: SignedOrder) -> list[bytes]:
        store = self._service.store
        raws = []
        for account, seq in spends(signed.order):
            for earlier in range(max(0, seq - CATCH_UP_MAX), seq):
                oid = store.certified(account, earlier)
                raw = None if oid is None else store.certificate(oid)
                if raw is not None:
                    raws.append(raw)
        return raws

    def check_done(self, pending: _Pending) -> None:
        """Finish ``pending`` when its votes make a quorum, or fail it when they cannot."""
        if pending.done.is_set():
            return
        members = self._committee.members
        weight = sum(members[i].weight for i in pending.votes)
        if weight >= self._committee.quorum:
            cert = certify(self._committee, pending.signed, list(pending.votes.values()))
            pending.cert = cert
            pending.done.set()
            self._certified(cert)
            return
        refused = sum(members[i].weight for i in pending.refused)
        if self._committee.total - refused < self._committee.quorum:
            pending.done.set()

    def adopt(self, cert: Certificate) -> None:
        """Apply a checked certificate of an order this node signed, and count its
        sequence numbers: one formed here, or a standing offer's fill that the shop's node
        formed (which confirms it to the validators and gossips it)."""
        for account, seq in spends(cert.order):
            self._next_seq[account] = max(self._next_seq.get(account, 0), seq + 1)
            held = self.unfinished.get(account)
            if held is not None and held.id == cert.order_id:
                del self.unfinished[account]
        self._service.apply([cert])

    def _certified(self, cert: Certificate) -> None:
        self.certified += 1
        self.adopt(cert)
        for link in (*self.links.values(), *self.replicas.values()):
            link.confirm([cert.raw])
        try:
            self._publish(cert.raw)
        except OverflowError:
            log.warning("gossip outbox full: the certificate spreads by sync")
