"""The node's ledger replica, and the validator service when the node holds a committee key.

Every node applies certificates (from gossip, sync, its own submissions and, on a
validator, from clients' confirmations) through :meth:`LedgerService.offer`: the quorum
is checked, :class:`~protocol.ledger.Replica` orders them per account, and what applies is
written in one atomic batch with the message log that sync reconciles. A node killed at
any moment restarts with the state of the certificates it stored.

A validator also answers ``/toktok/ledger/1.0.0`` (protocol/ledgerwire.py): it checks each
submitted order's signatures, asks :class:`~protocol.ledger.Validator` which it may vote
for, writes the new locks with ``sync=True`` and only then sends the votes, so a crash
never lets it vote twice for one (account, sequence number).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio
from libp2p.abc import INetStream

from node.ingest import Outcome, Verdict
from node.streams import read_some
from node.sync import NodeItemSet
from protocol.accounts import AccountKey
from protocol.certs import Certificate, Committee, VerifiedRoots, item_id, verify_certificate
from protocol.chunkwire import FrameDecoder
from protocol.errors import DecodeError, Ignore, Reject
from protocol.ledger import (
    ConflictingOrder,
    InsufficientFunds,
    OrderRefused,
    Replica,
    UnknownToken,
    Validator,
    WrongSequence,
)
from protocol.ledgerwire import (
    BAD_REQUEST,
    CONFIRM,
    CONFLICT,
    HELLO,
    INSUFFICIENT_FUNDS,
    INVALID,
    NOT_VALIDATOR,
    OK,
    REQUEST_BODY_BYTES_MAX,
    SUBMIT,
    UNKNOWN_TOKEN,
    VOTED,
    WRONG_SEQUENCE,
    LedgerRequest,
    LedgerResponse,
    Result,
    check_request,
    encode_frame,
    peer_proof,
    reason_text,
)
from protocol.orders import SignedOrder, verify_order
from storage.kv import Batch
from storage.stores import Stores

log = logging.getLogger("toktok.ledger")

READ_BYTES = 65536

_CODES: dict[type[OrderRefused], int] = {
    WrongSequence: WRONG_SEQUENCE,
    ConflictingOrder: CONFLICT,
    InsufficientFunds: INSUFFICIENT_FUNDS,
    UnknownToken: UNKNOWN_TOKEN,
}

AppliedListener = Callable[[Certificate], None]


@dataclass
class LedgerStats:
    applied: int = 0
    pending: int = 0
    conflicts: int = 0
    votes: int = 0
    refusals: int = 0


class LedgerService:
    """The replica (every node) and the validator (committee members); see module doc."""

    def __init__(
        self,
        stores: Stores,
        items: NodeItemSet,
        committee: Committee,
        clock: Callable[[], int],
        validator_key: AccountKey | None = None,
    ) -> None:
        self.stores = stores
        self.store = stores.ledger
        self.committee = committee
        self.items = items
        self._clock = clock
        self.replica = Replica()
        self.roots = VerifiedRoots()
        self.validator = None if validator_key is None else Validator(committee, validator_key)
        self._validator_key = validator_key
        self.stats = LedgerStats()
        self._listeners: list[AppliedListener] = []
        self.peer_id = b""
        """This node's libp2p peer id (bytes), which a validator's hello vouches for."""

    def listen(self, listener: AppliedListener) -> None:
        """Call ``listener`` with every certificate once it is applied and stored."""
        self._listeners.append(listener)

    # -- every node ------------------------------------------------------------------

    def offer(self, raw: bytes, now_ms: int) -> Outcome:
        """Check a certificate from anywhere and apply it (or let it wait). Never raises
        for bad input: a broken quorum is REJECTED, a known certificate a DUPLICATE."""
        checked = self._check(raw, now_ms)
        if isinstance(checked, Outcome):
            return checked
        self.apply([checked])
        return Outcome(Verdict.NEW)

    def offer_many(self, raws: Sequence[bytes], now_ms: int) -> tuple[int, str | None]:
        """Check certificates pushed by a peer and apply the new ones in one write.

        Returns how many were new here, and the reason the first invalid one was refused
        (nothing is applied then): the pusher broke the protocol.
        """
        certs: dict[bytes, Certificate] = {}
        for raw in raws:
            checked = self._check(raw, now_ms)
            if isinstance(checked, Certificate):
                certs.setdefault(checked.order_id, checked)
            elif checked.verdict is Verdict.REJECTED:
                return 0, checked.reason
            # A duplicate is skipped; one dated in the future here comes again by sync.
        if certs:
            self.apply(list(certs.values()))
        return len(certs), None

    def _check(self, raw: bytes, now_ms: int) -> Certificate | Outcome:
        """The certificate ``raw`` if it is valid and new here, else the verdict on it."""
        try:
            oid = item_id(raw)
        except DecodeError as exc:
            return Outcome(Verdict.REJECTED, reason=f"malformed certificate: {exc}")
        if self.replica.is_pending(oid) or self.store.applied(oid):
            return Outcome(Verdict.DUPLICATE)
        try:
            return verify_certificate(raw, self.committee, self.roots, now_ms)
        except Reject as exc:
            return Outcome(Verdict.REJECTED, reason=str(exc))
        except Ignore as exc:
            return Outcome(Verdict.IGNORED, reason=str(exc))

    def apply(self, certs: Sequence[Certificate]) -> int:
        """Apply checked certificates (and any they unblock); return how many applied."""
        overlay = self.replica.apply(self.store, certs)
        for reason in overlay.conflicts:
            self.stats.conflicts += 1
            log.error("conflicting certificate", extra={"reason": reason})
        if overlay.applied:
            batch = Batch()
            self.store.stage(batch, overlay)
            self.stores.kv.write(batch)
        for cert in overlay.applied:
            self.items.add(cert.created_ms, cert.order_id)
        self.stats.applied += len(overlay.applied)
        self.stats.pending = self.replica.pending
        for cert in overlay.applied:
            for listener in self._listeners:
                listener(cert)
        return len(overlay.applied)

    # -- validators ------------------------------------------------------------------

    def vote(self, raws: Sequence[bytes]) -> list[Result]:
        """Vote for what may be voted for among the signed orders ``raws``.

        The new locks are on disk (synced) when this returns.
        """
        assert self.validator is not None
        now_ms = self._clock()
        results: list[Result | None] = [None] * len(raws)
        checked: list[tuple[int, SignedOrder]] = []
        for i, raw in enumerate(raws):
            try:
                checked.append((i, verify_order(raw, self.committee.network, now_ms)))
            except (Reject, Ignore) as exc:
                results[i] = Result(code=INVALID, reason=reason_text(str(exc)), votes=())
        answers, locks = self.validator.vote(
            self.store, self.store, [signed for _, signed in checked]
        )
        if locks:
            batch = Batch()
            self.store.stage_locks(batch, locks)
            self.stores.kv.write(batch, sync=True)
        for (i, _), answer in zip(checked, answers, strict=True):
            if isinstance(answer, OrderRefused):
                self.stats.refusals += 1
                code = _CODES.get(type(answer), INVALID)
                results[i] = Result(code=code, reason=reason_text(str(answer)), votes=())
            else:
                self.stats.votes += 1
                results[i] = Result(code=VOTED, reason="", votes=(answer,))
        return [r for r in results if r is not None]

    async def serve(self, stream: INetStream) -> None:
        """Answer one client's stream of ledger requests, in order, until it closes.

        A node that is not a validator answers every request NOT_VALIDATOR, so clients
        learn that at once rather than from a failed protocol negotiation."""
        peer = stream.muxed_conn.peer_id
        decoder: FrameDecoder[LedgerRequest] = FrameDecoder(
            LedgerRequest, REQUEST_BODY_BYTES_MAX, check_request
        )
        try:
            while data := await read_some(stream, READ_BYTES):
                try:
                    requests = decoder.feed(data)
                except DecodeError as exc:
                    await stream.write(encode_frame(_refusal(0, BAD_REQUEST, str(exc))))
                    break
                for request in requests:
                    response = self._answer(request)
                    await stream.write(encode_frame(response))
                    if response.status == BAD_REQUEST:
                        return  # out of step with this client: the stream closes
                    await trio.sleep(0)
        except Exception as exc:  # the client left or broke the stream: its loss
            log.debug("ledger stream ended", extra={"peer": str(peer), "error": repr(exc)})
        finally:
            with trio.move_on_after(1):
                await stream.close()

    def _answer(self, request: LedgerRequest) -> LedgerResponse:
        if request.op == CONFIRM:  # any node takes certificates pushed to it
            new, error = self.offer_many(request.items, self._clock())
            if error is not None:
                return _refusal(request.id, BAD_REQUEST, f"certificate: {error}")
            return _response(request.id, applied=new)
        if self.validator is None or self._validator_key is None:
            return _refusal(request.id, NOT_VALIDATOR, "this node is not a validator")
        if request.op == HELLO:
            proof = peer_proof(self._validator_key, self.committee.network, self.peer_id)
            return _response(request.id, validator=self.validator.index, proof=proof)
        assert request.op == SUBMIT
        return _response(request.id, results=tuple(self.vote(request.items)))


def _response(
    request_id: int,
    *,
    validator: int = 0,
    proof: bytes = b"",
    results: tuple[Result, ...] = (),
    applied: int = 0,
) -> LedgerResponse:
    return LedgerResponse(
        id=request_id,
        status=OK,
        reason="",
        validator=validator,
        proof=proof,
        results=results,
        applied=applied,
    )


def _refusal(request_id: int, status: int, reason: str) -> LedgerResponse:
    return LedgerResponse(
        id=request_id,
        status=status,
        reason=reason_text(reason),
        validator=0,
        proof=b"",
        results=(),
        applied=0,
    )
