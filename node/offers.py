"""Standing offers, the shop's side: open an offer, fill it unattended, close it.

A creator never fills offers from their own account: a swap locks both parties' sequence
numbers, and a fan who equivocates can leave a swap uncertifiable and so block the other
party's next sequence number for good. :meth:`OfferService.open` therefore makes a shop
account per offer (a fresh key, kept in the clear in the store so this node can sign
while its owner is away: storage/offers.py says what that risks), funds it from the
creator's account with a certified transfer whose memo is the offer's id, and only then
publishes the signed :class:`~protocol.kinds.Offer`. Only the shop can be blocked.

The node answers ``/toktok/offer/1.0.0`` (protocol/offerwire.py) for its shops: a quote
gives the shop's next sequence number and stock; a fill is checked term by term
(protocol.offers.check_fill), co-signed under the shop account's lock and submitted to
the validators by this node, so the shop's sequence number is never left signed and
unsubmitted. The fan's side is node/offerbuy.py.
"""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import trio
from libp2p.abc import INetStream

from node.ledger import LedgerService
from node.ledgerclient import LedgerClient, LedgerError
from node.streams import read_some
from protocol.accounts import SEED_LEN, AccountKey
from protocol.certs import Certificate
from protocol.chunkwire import FrameDecoder
from protocol.envelope import SignedMessage, seal
from protocol.errors import DecodeError, Ignore, ProtocolError, Reject
from protocol.kinds import Offer
from protocol.offers import FillRefused, ShopView, check_fill
from protocol.offerwire import (
    BAD_REQUEST,
    BUSY,
    CLOSED,
    EXPIRED,
    FILL,
    INVALID,
    LEDGER_REFUSED,
    OK,
    REQUEST_BODY_BYTES_MAX,
    UNKNOWN_OFFER,
    OfferRequest,
    OfferResponse,
    check_request,
    encode_frame,
    reason_text,
)
from protocol.orders import SignedOrder, Swap, Transfer, cosign, open_proposal, sign_order
from protocol.validate import validate_offer
from storage.stores import Stores

log = logging.getLogger("toktok.offers")

STREAMS_MAX = 64
"""Offer streams served at once; more are reset."""
STREAMS_PER_PEER_MAX = 4
"""Offer streams one peer may have open at once (a buy needs one)."""
REQUESTS_PER_STREAM_MAX = 16
"""Requests one stream may make: a buy needs two per try, FILL_TRIES_MAX tries at most."""
LOCK_WAIT_S = 20.0
"""How long a fill waits for the shop's other fills before answering BUSY."""
READ_BYTES = 65536


class OfferError(Exception):
    """An offer that cannot be opened, closed or found; the message says why."""


@dataclass(frozen=True)
class OfferTerms:
    """What a creator asks for when opening an offer (amounts in base units)."""

    token: bytes
    price_token: bytes
    price_num: int
    price_den: int
    amount: int
    """What the creator moves into the shop."""
    amount_max: int
    expires_s: int


class OfferService:
    """The offers this node fills: opening, the fill protocol, closing (module doc)."""

    def __init__(
        self,
        stores: Stores,
        ledger: LedgerService,
        client: LedgerClient,
        share: Callable[[SignedMessage], None],
        clock: Callable[[], int],
    ) -> None:
        """``share`` keeps and gossips an offer made here (Node.share)."""
        self.stores = stores
        self.ledger = ledger
        self.client = client
        self._share = share
        self._clock = clock
        self.network = ledger.committee.network
        self.peer_id = b""
        """This node's libp2p peer id (bytes), which its offers name; set when it runs."""
        self._streams: dict[str, int] = {}
        """Open streams per peer."""
        self.fills = 0

    # -- opening and closing ----------------------------------------------------------

    async def open(self, creator: AccountKey, terms: OfferTerms) -> tuple[SignedMessage, bytes]:
        """Make a shop, fund it from ``creator`` and publish the offer; return the offer
        message and the funding order's id.

        Raises :class:`OfferError` for terms that break an offer rule (nothing happens) or a
        funding transfer the validators refuse (the shop is left empty).
        """
        shop = AccountKey(os.urandom(SEED_LEN))
        now_ms = self._clock()
        offer = Offer(
            author=creator.public_key,
            created_ms=now_ms,
            network=self.network,
            shop=shop.public_key,
            token=terms.token,
            price_token=terms.price_token,
            price_num=terms.price_num,
            price_den=terms.price_den,
            amount_max=terms.amount_max,
            expires_ms=now_ms + terms.expires_s * 1000,
            peer=self.peer_id,
        )
        try:
            validate_offer(offer, now_ms)
            message = seal(creator, offer)
        except ProtocolError as exc:
            raise OfferError(str(exc)) from exc
        self.stores.offers.add_shop_key(shop)  # before any token can reach the shop
        funding = await self._fund(creator, offer, terms.amount, message.id)
        self.stores.offers.put(message)
        self._share(message)
        return message, funding

    async def _fund(self, creator: AccountKey, offer: Offer, amount: int, memo: bytes) -> bytes:
        account = creator.public_key
        async with self.client.account_lock(account):
            try:
                await self.client.finish(account)
            except LedgerError as exc:
                raise OfferError(str(exc)) from exc
            order = Transfer(
                self.network,
                self._clock(),
                account,
                self.client.next_seq(account),
                offer.token,
                offer.shop,
                amount,
                memo,
            )
            try:
                cert = await self.client.submit(sign_order(order, [creator]))
            except (LedgerError, DecodeError) as exc:
                raise OfferError(f"funding the shop failed: {exc}") from exc
        return cert.order_id

    async def close(self, offer_id: bytes) -> list[Certificate]:
        """Stop filling an offer of this node and send all the shop holds (unsold tokens
        and proceeds) back to the offer's author; return the transfers' certificates.

        Raises :class:`OfferError` for an offer this node does not fill, or a transfer the
        validators refuse (the offer stays closed; closing again retries).
        """
        offer, shop = self._own(offer_id)
        self.stores.offers.close(offer_id, self._clock())
        certs = []
        async with self.client.account_lock(shop.public_key):
            try:
                await self.client.finish(shop.public_key)
            except LedgerError as exc:
                raise OfferError(str(exc)) from exc
            for token, amount in sorted(self.ledger.store.balances(shop.public_key).items()):
                order = Transfer(
                    self.network,
                    self._clock(),
                    shop.public_key,
                    self.client.next_seq(shop.public_key),
                    token,
                    offer.author,
                    amount,
                    offer_id,
                )
                try:
                    certs.append(await self.client.submit(sign_order(order, [shop])))
                except LedgerError as exc:
                    raise OfferError(f"returning the shop's tokens failed: {exc}") from exc
        return certs

    def _own(self, offer_id: bytes) -> tuple[Offer, AccountKey]:
        """The offer and its shop's key, when this node fills it; raises OfferError."""
        offer = self.stores.offers.get(offer_id)
        key = None if offer is None else self.stores.offers.shop_key(offer.shop)
        if offer is None or key is None or offer.network != self.network:
            raise OfferError(f"this node fills no offer {offer_id.hex()}")
        return offer, key

    # -- the fill protocol -------------------------------------------------------------

    async def serve(self, stream: INetStream) -> None:
        """Answer one fan's stream of requests, in order, until it closes or breaks a rule."""
        peer = str(stream.muxed_conn.peer_id)
        held = self._streams.get(peer, 0)
        if held >= STREAMS_PER_PEER_MAX or sum(self._streams.values()) >= STREAMS_MAX:
            with trio.move_on_after(1):
                await stream.reset()
            return
        self._streams[peer] = held + 1
        decoder: FrameDecoder[OfferRequest] = FrameDecoder(
            OfferRequest, REQUEST_BODY_BYTES_MAX, check_request
        )
        answered = 0
        try:
            while answered < REQUESTS_PER_STREAM_MAX and (
                data := await read_some(stream, READ_BYTES)
            ):
                try:
                    requests = decoder.feed(data)
                except DecodeError as exc:
                    await stream.write(encode_frame(_refusal(0, BAD_REQUEST, str(exc))))
                    break
                for request in requests[: REQUESTS_PER_STREAM_MAX - answered]:
                    await stream.write(encode_frame(await self.answer(request)))
                    answered += 1
        except Exception as exc:  # the fan left or broke the stream: its loss
            log.debug("offer stream ended", extra={"peer": peer, "error": repr(exc)})
        finally:
            self._streams[peer] -= 1
            if not self._streams[peer]:
                del self._streams[peer]
            with trio.move_on_after(1):
                await stream.close()

    async def answer(self, request: OfferRequest) -> OfferResponse:
        """The answer to one request (also used when a node buys from its own shop).

        Raises :class:`storage.errors.StoreError` when the offer or its shop key stored
        here is damaged."""
        try:
            offer, shop = self._own(request.offer)
        except OfferError as exc:
            return _refusal(request.id, UNKNOWN_OFFER, str(exc))
        if self.stores.offers.closed(request.offer):
            return _refusal(request.id, CLOSED, "the creator closed this offer")
        now_ms = self._clock()
        if now_ms >= offer.expires_ms:
            return _refusal(request.id, EXPIRED, f"the offer expired at {offer.expires_ms} ms")
        if request.op == FILL:
            return await self._fill(request, offer, shop)
        return _response(
            request.id,
            seq=self.client.next_seq(offer.shop),
            stock=self.ledger.store.balance(offer.shop, offer.token),
        )

    async def _fill(self, request: OfferRequest, offer: Offer, shop: AccountKey) -> OfferResponse:
        try:
            partial = open_proposal(request.proposal, self.network, self._clock())
        except (Reject, Ignore) as exc:
            return _refusal(request.id, INVALID, f"proposal: {exc}")
        lock = self.client.account_lock(offer.shop)
        with trio.move_on_after(LOCK_WAIT_S):
            await lock.acquire()
        if lock.statistics().owner is not trio.lowlevel.current_task():
            return _refusal(request.id, BUSY, "the shop is busy with other fills: try again")
        try:
            return await self._fill_locked(request, offer, shop, partial)
        finally:
            lock.release()

    async def _fill_locked(
        self, request: OfferRequest, offer: Offer, shop: AccountKey, partial: SignedOrder
    ) -> OfferResponse:
        swap = partial.order
        assert isinstance(swap, Swap), "open_proposal opens swaps only"
        try:
            await self.client.finish(offer.shop)  # a fill some validators voted for
        except LedgerError as exc:
            return _refusal(request.id, LEDGER_REFUSED, str(exc))
        store = self.ledger.store
        view = ShopView(
            next_seq=self.client.next_seq(offer.shop),
            stock=store.balance(offer.shop, offer.token),
            fan_funds=store.balance(swap.a.account, offer.price_token),
            closed=self.stores.offers.closed(request.offer),
        )
        try:
            check_fill(offer, request.offer, swap, view, self._clock())
        except FillRefused as exc:
            return _refusal(request.id, exc.status, str(exc))
        signed = cosign(partial, shop)
        try:
            cert = await self.client.submit(signed)
        except LedgerError as exc:
            return _refusal(request.id, LEDGER_REFUSED, str(exc))
        self.fills += 1
        log.info("offer filled", extra={"offer": request.offer.hex(), "amount": swap.b.amount})
        return _response(request.id, certificate=cert.raw)


def _response(
    request_id: int, *, seq: int = 0, stock: int = 0, certificate: bytes = b""
) -> OfferResponse:
    return OfferResponse(
        id=request_id, status=OK, reason="", seq=seq, stock=stock, certificate=certificate
    )


def _refusal(request_id: int, status: int, reason: str) -> OfferResponse:
    return OfferResponse(
        id=request_id, status=status, reason=reason_text(reason), seq=0, stock=0, certificate=b""
    )
