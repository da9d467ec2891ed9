"""The control routes of standing offers: ``offer.create``, ``offers``, ``offer.quote``,
``buy`` and ``offer.close``.

``offer.create`` needs the creator's passphrase (it funds the shop from their account);
``buy`` the fan's. Filling needs nobody: the node signs fills with the shop's key
(node/offers.py). ``offer.close`` needs only the control token, as it sends the shop's
tokens back to the offer's author and nowhere else.
"""

from collections.abc import Callable
from typing import Any

from libp2p.peer.id import ID

from node.control import ControlError, ControlServer, unlock_param
from node.daemon import Node
from node.gossip import wall_ms
from node.ledgerview import parse_amount, resolve_token, token_json
from node.offerbuy import BuyError, buy, quote
from node.offers import OfferError, OfferTerms
from protocol.accounts import account_to_text
from protocol.kinds import Offer, offer_cost
from protocol.ledger import TokenInfo
from protocol.orders import AMOUNT_MAX, Swap
from storage.errors import StoreError

OFFERS_LIMIT_MAX = 1000
EXPIRES_S_DEFAULT = 7 * 24 * 3600


def install_offer_routes(server: ControlServer, node: Node) -> None:
    """Register the offer routes (when the node keeps a ledger)."""
    ledger, service = node.ledger, node.offers
    if ledger is None or service is None:
        return

    def offer_param(params: dict[str, Any]) -> bytes:
        try:
            return node.stores.offers.resolve(str(params.get("offer", "")))
        except KeyError as exc:
            raise ControlError(exc.args[0], status=404) from exc

    def offer_json(offer_id: bytes, offer: Offer) -> dict[str, Any]:
        token_of = ledger.store.token
        return {
            "offer": offer_id.hex(),
            "creator": account_to_text(offer.author),
            "shop": account_to_text(offer.shop),
            "token": _token(offer.token, token_of),
            "price_token": _token(offer.price_token, token_of),
            "price_num": offer.price_num,
            "price_den": offer.price_den,
            "amount_max": offer.amount_max,
            "stock": ledger.store.balance(offer.shop, offer.token),
            "expires_ms": offer.expires_ms,
            "peer": str(ID(offer.peer)),
            "mine": node.stores.offers.shop_key(offer.shop) is not None,
            "closed": node.stores.offers.closed(offer_id),
        }

    async def create(params: dict[str, Any]) -> dict[str, Any]:
        terms = OfferTerms(
            token=resolve_token(ledger.store, str(params.get("token") or ""), "token"),
            price_token=resolve_token(
                ledger.store, str(params.get("price_token") or ""), "price_token"
            ),
            price_num=_positive(params, "price_num"),
            price_den=_positive(params, "price_den"),
            amount=parse_amount(params.get("amount")),
            amount_max=_positive(params, "amount_max", params.get("amount")),
            expires_s=_positive(params, "expires_s", EXPIRES_S_DEFAULT),
        )
        creator = unlock_param(node.stores, params)
        try:
            message, funding = await service.open(creator, terms)
        except OfferError as exc:
            raise ControlError(str(exc)) from exc
        assert isinstance(message.record, Offer)
        return {**offer_json(message.id, message.record), "funding": funding.hex()}

    async def offers(params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("limit", 100)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= OFFERS_LIMIT_MAX
        ):
            raise ControlError(f"limit: 1 to {OFFERS_LIMIT_MAX}")
        try:
            found = list(node.stores.offers.active(wall_ms(), limit=limit))
        except StoreError as exc:
            raise ControlError(f"the offer store: {exc}", status=500) from exc
        network = ledger.committee.network
        return {"offers": [offer_json(i, o) for i, o in found if o.network == network]}

    async def buy_route(params: dict[str, Any]) -> dict[str, Any]:
        offer_id = offer_param(params)
        amount = parse_amount(params.get("amount"))
        pay = None if params.get("pay") is None else _positive(params, "pay")
        seq = None if params.get("seq") is None else _natural(params, "seq")
        fan = unlock_param(node.stores, params)
        try:
            bought = await buy(node, fan, offer_id, amount, pay=pay, shop_seq=seq)
        except BuyError as exc:
            raise ControlError(str(exc)) from exc
        cert = bought.certificate
        assert isinstance(cert.order, Swap), "a fill is a swap"
        return {
            "order_id": cert.order_id.hex(),
            "offer": offer_id.hex(),
            "amount": cert.order.b.amount,
            "paid": cert.order.a.amount,
            "tries": bought.tries,
        }

    async def quote_route(params: dict[str, Any]) -> dict[str, Any]:
        """The shop's live sequence number and stock, from the offer's node; with
        ``amount``, also what that many base units cost at the offer's price."""
        offer_id = offer_param(params)
        priced: dict[str, int] = {}
        if params.get("amount") is not None:
            amount = parse_amount(params.get("amount"))
            offer = node.stores.offers.get(offer_id)
            if offer is None:
                raise ControlError(f"no offer {offer_id.hex()} is known here", status=404)
            priced = {"amount": amount, "cost": offer_cost(offer, amount)}
        try:
            answer = await quote(node, offer_id)
        except BuyError as exc:
            raise ControlError(str(exc)) from exc
        return {"offer": offer_id.hex(), "seq": answer.seq, "stock": answer.stock, **priced}

    async def close(params: dict[str, Any]) -> dict[str, Any]:
        offer_id = offer_param(params)
        try:
            certs = await service.close(offer_id)
        except OfferError as exc:
            raise ControlError(str(exc)) from exc
        return {"offer": offer_id.hex(), "returned": [c.order_id.hex() for c in certs]}

    server.route("offer.create", create)
    server.route("offers", offers)
    server.route("offer.quote", quote_route)
    server.route("buy", buy_route)
    server.route("offer.close", close)


def _positive(params: dict[str, Any], name: str, default: object = None) -> int:
    """A whole number from 1 to AMOUNT_MAX. Raises :class:`ControlError`."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= AMOUNT_MAX:
        raise ControlError(f"{name}: a whole number from 1 to {AMOUNT_MAX}")
    return value


def _natural(params: dict[str, Any], name: str) -> int:
    """A whole number from 0 to AMOUNT_MAX. Raises :class:`ControlError`."""
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= AMOUNT_MAX:
        raise ControlError(f"{name}: a whole number from 0 to {AMOUNT_MAX}")
    return value


def _token(token: bytes, token_of: Callable[[bytes], TokenInfo | None]) -> dict[str, Any]:
    info = token_of(token)
    if info is None:
        return {"token": token.hex(), "symbol": "?", "decimals": 0}
    return token_json(token, info)
