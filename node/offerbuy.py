"""Standing offers, the fan's side: buy from a shop over ``/toktok/offer/1.0.0``.

:func:`buy` finds the offer in the store, reaches the node it names (connected, or dialled
at an address the peer book knows), and runs :class:`protocol.offers.Purchase` over one
stream while it holds the fan account's lock: quote, propose, fill, and again after a
stale quote (another fan was served first), a bounded number of times. The shop's node
co-signs and submits; the certificate it returns is checked and applied here.

The shop decides every term (price, amount_max, expiry by its clock, stock): this side
only builds the swap, so one authority judges and its refusal comes back word for word.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from node.daemon import Node
from node.gossip import wall_ms
from node.ledgerclient import LedgerError
from node.streams import read_some
from protocol.accounts import AccountKey
from protocol.certs import Certificate
from protocol.chunkwire import FrameDecoder
from protocol.errors import DecodeError
from protocol.kinds import Offer, offer_cost
from protocol.offers import Purchase, PurchaseFailed
from protocol.offerwire import (
    OK,
    PROTOCOL_ID,
    QUOTE,
    RESPONSE_BODY_BYTES_MAX,
    STATUS_NAMES,
    OfferRequest,
    OfferResponse,
    check_response,
    encode_frame,
)
from protocol.orders import AMOUNT_MAX
from storage.errors import StoreError

BUY_TIMEOUT_S = 25.0
"""A whole buy, dial included (within the control call's 30 s)."""
DIAL_TIMEOUT_S = 10.0

Exchange = Callable[[OfferRequest], Awaitable[OfferResponse]]


class BuyError(Exception):
    """A buy that did not happen; the message says why (the shop's words when it refused)."""


@dataclass(frozen=True)
class Bought:
    """A buy that happened: the fill's certificate (applied here) and the proposals made."""

    certificate: Certificate
    tries: int


@dataclass(frozen=True)
class Quote:
    """The shop's answer to a quote: its next sequence number and its stock."""

    seq: int
    stock: int


async def buy(
    node: Node,
    key: AccountKey,
    offer_id: bytes,
    amount: int,
    *,
    pay: int | None = None,
    shop_seq: int | None = None,
) -> Bought:
    """Buy ``amount`` base units from offer ``offer_id`` as ``key``'s account, paying
    ``pay`` base units of its price token (default: the offer's price for the amount);
    ``shop_seq``, from a quote the caller holds, saves the first quote.

    Returns the fill's certificate (applied here) and how many proposals it took. Raises
    :class:`BuyError`.
    """
    ledger, client = node.ledger, node.ledger_client
    assert ledger is not None and client is not None, "a ledger node"
    offer = _offer(node, offer_id)
    cost = offer_cost(offer, amount) if pay is None else pay
    if not 1 <= cost <= AMOUNT_MAX:
        raise BuyError(f"{amount} base units cost {cost}: outside 1 to {AMOUNT_MAX}")
    async with client.account_lock(key.public_key):
        try:
            await client.finish(key.public_key)
        except LedgerError as exc:
            raise BuyError(str(exc)) from exc
        purchase = Purchase(
            offer=offer,
            offer_id=offer_id,
            key=key,
            fan_seq=client.next_seq(key.public_key),
            amount=amount,
            pay=cost,
            committee=ledger.committee,
            roots=ledger.roots,
            shop_seq=shop_seq,
        )
        async with _session(node, ID(offer.peer)) as exchange:
            request: OfferRequest | None = _started(purchase)
            while request is not None:
                response = await exchange(request)
                request = _received(purchase, response)
        assert purchase.certificate is not None, "a purchase that ends holds its certificate"
        client.adopt(purchase.certificate)
    return Bought(purchase.certificate, purchase.tries)


async def quote(node: Node, offer_id: bytes) -> Quote:
    """Ask the offer's node for its shop's next sequence number and stock.

    Raises :class:`BuyError` when it cannot be reached or refuses (with its reason)."""
    request = OfferRequest(id=1, op=QUOTE, offer=offer_id, proposal=b"")
    async with _session(node, ID(_offer(node, offer_id).peer)) as exchange:
        response = await exchange(request)
    if response.id != request.id or response.status != OK:
        raise BuyError(f"the shop refused: {STATUS_NAMES[response.status]}: {response.reason}")
    return Quote(response.seq, response.stock)


def _offer(node: Node, offer_id: bytes) -> Offer:
    assert node.ledger is not None, "a ledger node"
    try:
        offer = node.stores.offers.get(offer_id)
    except StoreError as exc:
        raise BuyError(str(exc)) from exc
    if offer is None or offer.network != node.ledger.committee.network:
        raise BuyError(f"no offer {offer_id.hex()} is known here")
    return offer


def _started(purchase: Purchase) -> OfferRequest:
    try:
        return purchase.start(wall_ms())
    except PurchaseFailed as exc:
        raise BuyError(f"cannot buy: {exc}") from exc


def _received(purchase: Purchase, response: OfferResponse) -> OfferRequest | None:
    try:
        return purchase.receive(response, wall_ms())
    except PurchaseFailed as exc:
        raise BuyError(f"the shop refused: {exc}") from exc


@asynccontextmanager
async def _session(node: Node, peer: ID) -> AsyncIterator[Exchange]:
    """Exchanges with the offer's node ``peer`` (this node itself: no stream), all within
    BUY_TIMEOUT_S. Raises :class:`BuyError`."""
    assert node.offers is not None, "a ledger node"
    try:
        with trio.fail_after(BUY_TIMEOUT_S):
            if peer == node.peer_id:
                yield node.offers.answer
                return
            stream = await _open(node, peer)
            try:
                yield _Link(stream).exchange
            finally:
                with trio.move_on_after(1):
                    await stream.close()
    except trio.TooSlowError as exc:
        raise BuyError(f"the offer's node did not answer within {BUY_TIMEOUT_S:g} s") from exc


async def _open(node: Node, peer: ID) -> INetStream:
    """A stream of the offer protocol to ``peer``, dialled first when not connected."""
    if peer not in node.host.get_connected_peers():
        addrs = node.peers.known().get(peer, ())
        if not addrs:
            raise BuyError(f"the offer's node {peer} is not connected and no address is known")
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                await node.host.connect(PeerInfo(peer, [multiaddr.Multiaddr(a) for a in addrs]))
        except Exception as exc:  # a dial fails in many ways; the user needs the text
            raise BuyError(f"cannot reach the offer's node {peer}: {exc!r}") from exc
    try:
        with trio.fail_after(DIAL_TIMEOUT_S):
            return await node.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
    except Exception as exc:  # no such protocol there, or gone
        raise BuyError(f"the offer's node {peer} does not answer offers: {exc!r}") from exc


class _Link:
    """One stream to a shop's node: a request out, its answer back."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._decoder: FrameDecoder[OfferResponse] = FrameDecoder(
            OfferResponse, RESPONSE_BODY_BYTES_MAX, check_response
        )

    async def exchange(self, request: OfferRequest) -> OfferResponse:
        """Send ``request`` and read one answer. Raises :class:`BuyError`."""
        try:
            await self._stream.write(encode_frame(request))
            while True:
                data = await read_some(self._stream, 65536)
                if not data:
                    raise BuyError("the offer's node closed the stream")
                responses = self._decoder.feed(data)
                if len(responses) > 1:
                    raise BuyError("the offer's node answered what was not asked")
                if responses:
                    return responses[0]
        except DecodeError as exc:
            raise BuyError(f"the offer's node broke the protocol: {exc}") from exc
        except BaseLibp2pError as exc:
            raise BuyError(f"the stream to the offer's node broke: {exc!r}") from exc
