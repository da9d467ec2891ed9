"""Standing offers: the checks a shop makes on a fill, and the fan's side of a buy.

A creator's node sells a creator token from a dedicated shop account at the price of an
:class:`~protocol.kinds.Offer` and signs each fill unattended (docs/protocol.md section
14). Both sides live here as pure code: :func:`check_fill` is what the shop's node asks
of a fan's proposal before it co-signs, and :class:`Purchase` is the fan's conversation
(quote, propose, fill; a stale quote starts again), fed the shop's answers and returning
the next request. node/offers.py drives them over ``/toktok/offer/1.0.0``.
"""

import itertools
from dataclasses import dataclass

from protocol.accounts import AccountKey
from protocol.certs import Certificate, Committee, VerifiedRoots, verify_certificate
from protocol.errors import DecodeError, Ignore, Reject
from protocol.kinds import Offer, offer_cost
from protocol.offerwire import (
    BAD_REQUEST,
    CLOSED,
    EXPIRED,
    FAN_FUNDS,
    FILL,
    INVALID,
    OK,
    OVER_AMOUNT_MAX,
    PRICE_TOO_LOW,
    QUOTE,
    SOLD_OUT,
    STALE_SEQUENCE,
    STATUS_NAMES,
    OfferRequest,
    OfferResponse,
)
from protocol.orders import Leg, SignedOrder, Swap, propose_swap

FILL_TRIES_MAX = 8
"""Proposals one buy makes: each stale quote (another fan was served first) costs one.
With n fans buying at once each round serves at least one, so n tries serve them all."""


class FillRefused(Exception):
    """A fill the shop will not sign: ``status`` is its protocol/offerwire.py code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class ShopView:
    """What the shop's node knows of the ledger when it judges a fill."""

    next_seq: int
    """The shop account's next sequence number."""
    stock: int
    """The shop's balance of the offer's token."""
    fan_funds: int
    """The fan's balance of the price token, as the shop's replica has it."""
    closed: bool = False
    """Whether the creator closed the offer on this node."""


def check_fill(offer: Offer, offer_id: bytes, swap: Swap, view: ShopView, now_ms: int) -> None:
    """Check a fan's proposed ``swap`` against the offer it names and the shop's state.

    The swap's own rules and the fan's signature were checked when it was opened
    (protocol.orders.open_proposal). Raises :class:`FillRefused` with the first term broken.
    """
    if view.closed:
        raise FillRefused(CLOSED, "the creator closed this offer")
    if now_ms >= offer.expires_ms:
        raise FillRefused(EXPIRED, f"the offer expired {now_ms - offer.expires_ms} ms ago")
    fan, shop = swap.a, swap.b
    if swap.offer != offer_id or swap.network != offer.network:
        raise FillRefused(INVALID, "the swap names another offer or network")
    if shop.account != offer.shop or shop.token != offer.token:
        raise FillRefused(INVALID, "the swap's b leg is not the shop giving the offer's token")
    if fan.token != offer.price_token:
        raise FillRefused(INVALID, "the swap's a leg does not pay in the offer's price token")
    if shop.amount > offer.amount_max:
        raise FillRefused(
            OVER_AMOUNT_MAX, f"a fill buys at most {offer.amount_max}, not {shop.amount}"
        )
    cost = offer_cost(offer, shop.amount)
    if fan.amount < cost:
        raise FillRefused(
            PRICE_TOO_LOW, f"{shop.amount} base units cost {cost}; the swap pays {fan.amount}"
        )
    if shop.seq != view.next_seq:
        raise FillRefused(
            STALE_SEQUENCE, f"the shop's next sequence number is {view.next_seq}, not {shop.seq}"
        )
    if shop.amount > view.stock:
        raise FillRefused(SOLD_OUT, f"the shop holds {view.stock}, less than {shop.amount}")
    if fan.amount > view.fan_funds:
        raise FillRefused(
            FAN_FUNDS,
            f"the buyer holds {view.fan_funds} of the price token here, less than {fan.amount}",
        )


class PurchaseFailed(Exception):
    """A buy that did not happen: ``status`` is the shop's code, the message its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{STATUS_NAMES.get(status, str(status))}: {reason}")
        self.status = status


class Purchase:
    """The fan's side of one buy, sans-IO: :meth:`start`, then :meth:`receive` each answer.

    The fan's node holds the fan account's lock throughout, so ``fan_seq`` stays its next
    sequence number. When :meth:`receive` returns None, :attr:`certificate` holds the
    fill's checked certificate.
    """

    def __init__(
        self,
        *,
        offer: Offer,
        offer_id: bytes,
        key: AccountKey,
        fan_seq: int,
        amount: int,
        pay: int,
        committee: Committee,
        roots: VerifiedRoots,
        shop_seq: int | None = None,
    ) -> None:
        """Buy ``amount`` base units of the offer's token for ``pay`` of its price token;
        with ``shop_seq`` (from a quote the caller holds) the first proposal needs none."""
        self.offer = offer
        self.offer_id = offer_id
        self.amount = amount
        self.pay = pay
        self.tries = 0
        self.certificate: Certificate | None = None
        self._key = key
        self._fan_seq = fan_seq
        self._committee = committee
        self._roots = roots
        self._ids = itertools.count(1)
        self._asked: OfferRequest | None = None
        self._proposal: SignedOrder | None = None
        self._shop_seq = shop_seq

    def start(self, now_ms: int) -> OfferRequest:
        """The first request: a quote, or a fill at the ``shop_seq`` given.

        Raises :class:`PurchaseFailed` when that fill's swap cannot be made."""
        if self._shop_seq is None:
            return self._request(QUOTE)
        return self._request(FILL, self._propose(self._shop_seq, now_ms).raw)

    def receive(self, response: OfferResponse, now_ms: int) -> OfferRequest | None:
        """Take the answer to the last request; return the next one, or None when done.

        Raises :class:`PurchaseFailed` when the shop refuses (after FILL_TRIES_MAX stale
        quotes for STALE_SEQUENCE) or answers out of turn or with a bad certificate.
        """
        asked = self._asked
        if asked is None or response.id != asked.id:
            raise PurchaseFailed(BAD_REQUEST, f"an answer to request {response.id} out of turn")
        self._asked = None
        if response.status == STALE_SEQUENCE and asked.op == FILL:
            if self.tries >= FILL_TRIES_MAX:
                raise PurchaseFailed(STALE_SEQUENCE, f"still stale after {self.tries} quotes")
            return self._request(QUOTE)
        if response.status != OK:
            raise PurchaseFailed(response.status, response.reason)
        if asked.op == QUOTE:
            return self._request(FILL, self._propose(response.seq, now_ms).raw)
        self.certificate = self._check_certificate(response.certificate, now_ms)
        return None

    def _request(self, op: str, proposal: bytes = b"") -> OfferRequest:
        self._asked = OfferRequest(
            id=next(self._ids), op=op, offer=self.offer_id, proposal=proposal
        )
        return self._asked

    def _propose(self, shop_seq: int, now_ms: int) -> SignedOrder:
        offer = self.offer
        swap = Swap(
            offer.network,
            now_ms,
            Leg(self._key.public_key, self._fan_seq, offer.price_token, self.pay),
            Leg(offer.shop, shop_seq, offer.token, self.amount),
            self.offer_id,
        )
        try:
            self._proposal = propose_swap(swap, self._key)
        except (DecodeError, ValueError) as exc:
            raise PurchaseFailed(INVALID, f"cannot propose this swap: {exc}") from exc
        self.tries += 1
        return self._proposal

    def _check_certificate(self, raw: bytes, now_ms: int) -> Certificate:
        assert self._proposal is not None, "a fill answers a proposal"
        try:
            cert = verify_certificate(raw, self._committee, self._roots, now_ms)
        except (Reject, Ignore) as exc:
            raise PurchaseFailed(INVALID, f"the shop's certificate: {exc}") from exc
        if cert.order_id != self._proposal.id:
            raise PurchaseFailed(INVALID, "the shop's certificate is for another order")
        return cert
