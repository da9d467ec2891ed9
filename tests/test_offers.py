"""Standing offers: the offer's rules, the fill protocol's wire and checks, the fan's side
as a pure machine against an in-memory shop, the offer store, and real node processes where
a creator's node fills fans' buys unattended."""

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.certs import CERTIFICATE_BYTES_MAX, VerifiedRoots
from protocol.chunkwire import FrameDecoder
from protocol.envelope import SignedMessage, seal
from protocol.errors import DecodeError, Reject
from protocol.kinds import OFFER_AMOUNT_MAX, Offer, offer_cost
from protocol.offers import (
    FILL_TRIES_MAX,
    FillRefused,
    Purchase,
    PurchaseFailed,
    ShopView,
    check_fill,
)
from protocol.offerwire import (
    CLOSED,
    EXPIRED,
    FAN_FUNDS,
    FILL,
    INVALID,
    OK,
    OVER_AMOUNT_MAX,
    PRICE_TOO_LOW,
    QUOTE,
    REQUEST_BODY_BYTES_MAX,
    RESPONSE_BODY_BYTES_MAX,
    SOLD_OUT,
    STALE_SEQUENCE,
    OfferRequest,
    OfferResponse,
    check_request,
    check_response,
    encode_frame,
)
from protocol.orders import (
    AMOUNT_MAX,
    PLATFORM_TOKEN,
    SIGNED_ORDER_BYTES_MAX,
    Leg,
    Swap,
    cosign,
    open_proposal,
)
from protocol.validate import validate_message
from storage.stores import Stores
from tests.cli_helpers import PASSPHRASE, toktok
from tests.ledger_helpers import ALICE, BOB, CAROL, NOW_MS, Net, key
from tests.ledgernet import balance, ledger_network
from tests.netharness import NodeProc, wait_for
from tests.vectors import invalid_cases
from tests.vectors.samples import NOW_MS as SAMPLE_NOW_MS
from tests.vectors.samples import key_of, sample_offer, sealed, validation_rules

# ---------------------------------------------------------------------------------------
# The offer's validation rules (protocol/validate.py): a case per rule.

OFFER_RULES = [
    invalid_cases.R_OFFER_SHOP,
    invalid_cases.R_OFFER_TOKENS,
    invalid_cases.R_OFFER_EXPIRY,
    invalid_cases.R_OFFER_COST,
    invalid_cases.R_OFFER_PEER,
]
OFFER_CASES = [m for m in invalid_cases.INVALID_MESSAGES if m.rule in OFFER_RULES]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in OFFER_CASES])
def test_invalid_offer(case: invalid_cases.InvalidMessage) -> None:
    with pytest.raises(Reject, match=case.match):
        validate_message(case.raw, SAMPLE_NOW_MS)


def test_invalid_offer_cases_cover_every_offer_rule() -> None:
    rules = {text for _, text in validation_rules()}
    assert set(OFFER_RULES) <= rules
    assert {case.rule for case in OFFER_CASES} == set(OFFER_RULES)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"peer": bytes.fromhex("1220") + bytes(32)},
        {"price_num": 1, "price_den": AMOUNT_MAX, "amount_max": AMOUNT_MAX},
        {"expires_ms": sample_offer().created_ms + 1},
        {"price_token": bytes(range(32)), "token": bytes(32)},
    ],
    ids=["sample", "sha256 peer", "cheapest", "one ms", "sells the platform token"],
)
def test_valid_offer(changes: dict[str, Any]) -> None:
    offer = sample_offer(**changes)
    assert validate_message(sealed(offer), SAMPLE_NOW_MS).record == offer


def test_an_expired_offer_is_still_valid() -> None:
    """Expiry stops fills, not the message: it stays in every node's sync set."""
    offer = sample_offer(created_ms=SAMPLE_NOW_MS - 20_000, expires_ms=SAMPLE_NOW_MS - 10_000)
    assert validate_message(sealed(offer), SAMPLE_NOW_MS).record == offer


def test_offer_amount_limit_is_the_ledgers() -> None:
    assert OFFER_AMOUNT_MAX == AMOUNT_MAX


@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 10**6))
def test_offer_cost_rounds_up_never_below_the_price(amount: int, num: int, den: int) -> None:
    cost = offer_cost(sample_offer(price_num=num, price_den=den), amount)
    assert cost * den >= amount * num > (cost - 1) * den


# ---------------------------------------------------------------------------------------
# The wire (protocol/offerwire.py).


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (OfferRequest(id=1, op="sell", offer=bytes(32), proposal=b""), "unknown offer operation"),
        (OfferRequest(id=1, op=QUOTE, offer=bytes(32), proposal=b"x"), "a quote request with"),
        (OfferRequest(id=1, op=FILL, offer=bytes(32), proposal=b""), "a fill request with"),
    ],
    ids=["unknown op", "quote with proposal", "fill without proposal"],
)
def test_invalid_request(request_: OfferRequest, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        FrameDecoder(OfferRequest, REQUEST_BODY_BYTES_MAX, check_request).feed(
            encode_frame(request_)
        )


def test_invalid_response_certificate_with_a_refusal() -> None:
    response = OfferResponse(id=1, status=SOLD_OUT, reason="", seq=0, stock=0, certificate=b"c")
    with pytest.raises(DecodeError, match="a refusal carries a certificate"):
        check_response(response)


REQUESTS = st.builds(
    OfferRequest,
    id=st.integers(0, 2**64 - 1),
    op=st.sampled_from([QUOTE, FILL]),
    offer=st.binary(min_size=32, max_size=32),
    proposal=st.binary(max_size=SIGNED_ORDER_BYTES_MAX),
).filter(lambda r: (r.op == FILL) == bool(r.proposal))
RESPONSES = st.builds(
    OfferResponse,
    id=st.integers(0, 2**64 - 1),
    status=st.integers(0, STALE_SEQUENCE),
    reason=st.text(max_size=50),
    seq=st.integers(0, 2**63 - 1),
    stock=st.integers(0, AMOUNT_MAX),
    certificate=st.binary(max_size=2000),
).filter(lambda r: r.status == OK or not r.certificate)


@given(st.lists(REQUESTS, min_size=1, max_size=3), st.integers(1, 700))
def test_request_frames_round_trip_in_any_pieces(requests: list[OfferRequest], piece: int) -> None:
    data = b"".join(encode_frame(r) for r in requests)
    decoder = FrameDecoder(OfferRequest, REQUEST_BODY_BYTES_MAX, check_request)
    got = [r for i in range(0, len(data), piece) for r in decoder.feed(data[i : i + piece])]
    assert got == requests and decoder.at_boundary


@given(RESPONSES)
def test_response_frames_round_trip(response: OfferResponse) -> None:
    decoder = FrameDecoder(OfferResponse, RESPONSE_BODY_BYTES_MAX, check_response)
    assert decoder.feed(encode_frame(response)) == [response]


def test_frames_round_trip_at_their_largest() -> None:
    proposal = bytes(SIGNED_ORDER_BYTES_MAX)
    request = OfferRequest(id=2**64 - 1, op=FILL, offer=bytes(32), proposal=proposal)
    got = FrameDecoder(OfferRequest, REQUEST_BODY_BYTES_MAX, check_request).feed(
        encode_frame(request)
    )
    assert got == [request]
    response = OfferResponse(
        id=2**64 - 1,
        status=OK,
        reason="é" * 100,
        seq=2**63 - 1,
        stock=AMOUNT_MAX,
        certificate=bytes(CERTIFICATE_BYTES_MAX),
    )
    decoder = FrameDecoder(OfferResponse, RESPONSE_BODY_BYTES_MAX, check_response)
    assert decoder.feed(encode_frame(response)) == [response]


# ---------------------------------------------------------------------------------------
# A ledger in memory with a creator token, a funded shop and its offer.

SHOP = key("shop")
PEER = bytes.fromhex("002408011220") + bytes(32)


@dataclasses.dataclass
class Market:
    net: Net
    offer: Offer
    offer_id: bytes
    fills: int = 0

    @property
    def ledger(self) -> Any:
        return self.net.ledgers[0]

    def view(self, fan: bytes) -> ShopView:
        return ShopView(
            next_seq=self.ledger.next_seq(SHOP.public_key),
            stock=self.ledger.balance(SHOP.public_key, self.offer.token),
            fan_funds=self.ledger.balance(fan, self.offer.price_token),
        )

    def swap(self, amount: int = 4, pay: int | None = None) -> Swap:
        """BOB buys ``amount`` at the price (or for ``pay``), at the shop's next seq."""
        cost = offer_cost(self.offer, amount) if pay is None else pay
        return Swap(
            self.net.network,
            NOW_MS,
            Leg(BOB.public_key, 0, PLATFORM_TOKEN, cost),
            Leg(SHOP.public_key, 0, self.offer.token, amount),
            self.offer_id,
        )

    def answer(self, request: OfferRequest) -> OfferResponse:
        """The shop's node, in memory: quotes and fills as node/offers.py does."""
        if request.op == QUOTE:
            view = self.view(b"")
            return reply(request.id, seq=view.next_seq, stock=view.stock)
        proposal = open_proposal(request.proposal, self.net.network, NOW_MS)
        assert isinstance(proposal.order, Swap)
        try:
            check_fill(self.offer, self.offer_id, proposal.order, self.view(BOB.public_key), NOW_MS)
        except FillRefused as exc:
            return reply(request.id, exc.status, reason=str(exc))
        cert = self.net.settle(cosign(proposal, SHOP))
        self.fills += 1
        return reply(request.id, certificate=cert.raw)


def reply(
    request_id: int,
    status: int = OK,
    *,
    reason: str = "",
    seq: int = 0,
    stock: int = 0,
    certificate: bytes = b"",
) -> OfferResponse:
    return OfferResponse(
        id=request_id, status=status, reason=reason, seq=seq, stock=stock, certificate=certificate
    )


@pytest.fixture
def market() -> Market:
    net = Net()
    token = net.settle(net.create_token(ALICE, seq=0, supply=1000, symbol="ART")).order_id
    net.settle(net.transfer(ALICE, SHOP, 100, seq=1, token=token))
    offer = Offer(
        author=ALICE.public_key,
        created_ms=NOW_MS - 1000,
        network=net.network,
        shop=SHOP.public_key,
        token=token,
        price_token=PLATFORM_TOKEN,
        price_num=5,
        price_den=2,
        amount_max=10,
        expires_ms=NOW_MS + 60_000,
        peer=PEER,
    )
    return Market(net, offer, seal(ALICE, offer).id)


# ---------------------------------------------------------------------------------------
# The shop's checks (protocol.offers.check_fill): a case per term.


def test_valid_fill(market: Market) -> None:
    check_fill(market.offer, market.offer_id, market.swap(), market.view(BOB.public_key), NOW_MS)


def _swap(**changes: Any) -> Callable[[Market], Swap]:
    return lambda m: dataclasses.replace(m.swap(), **changes)


def _leg(leg: str, **changes: Any) -> Callable[[Market], Swap]:
    def build(m: Market) -> Swap:
        swap = m.swap()
        return dataclasses.replace(
            swap, **{leg: dataclasses.replace(getattr(swap, leg), **changes)}
        )

    return build


OTHER = bytes(range(32))
FILL_CASES = [
    ("closed", _swap(), {"closed": True}, NOW_MS, CLOSED, "closed"),
    ("expired", _swap(), {}, NOW_MS + 60_000, EXPIRED, "expired 0 ms ago"),
    ("another offer", _swap(offer=OTHER), {}, NOW_MS, INVALID, "another offer"),
    ("another network", _swap(network=OTHER), {}, NOW_MS, INVALID, "or network"),
    ("another shop", _leg("b", account=CAROL.public_key), {}, NOW_MS, INVALID, "not the shop"),
    ("another token", _leg("b", token=OTHER), {}, NOW_MS, INVALID, "not the shop"),
    ("paid in another token", _leg("a", token=OTHER), {}, NOW_MS, INVALID, "price token"),
    ("over amount_max", lambda m: m.swap(11), {}, NOW_MS, OVER_AMOUNT_MAX, "at most 10, not 11"),
    ("below the price", lambda m: m.swap(4, 9), {}, NOW_MS, PRICE_TOO_LOW, "the swap pays 9"),
    ("stale sequence", _leg("b", seq=1), {}, NOW_MS, STALE_SEQUENCE, "is 0, not 1"),
    ("sold out", _swap(), {"stock": 3}, NOW_MS, SOLD_OUT, "holds 3, less than 4"),
    ("fan short", _swap(), {"fan_funds": 9}, NOW_MS, FAN_FUNDS, "buyer holds 9"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "view_changes", "now_ms", "status", "match"),
    [pytest.param(*case[1:], id=case[0]) for case in FILL_CASES],
)
def test_invalid_fill(
    market: Market,
    build: Callable[[Market], Swap],
    view_changes: dict[str, Any],
    now_ms: int,
    status: int,
    match: str,
) -> None:
    view = dataclasses.replace(market.view(BOB.public_key), **view_changes)
    with pytest.raises(FillRefused, match=re.escape(match)) as caught:
        check_fill(market.offer, market.offer_id, build(market), view, now_ms)
    assert caught.value.status == status


def test_paying_more_than_the_price_is_a_valid_fill(market: Market) -> None:
    swap = market.swap(pay=11)
    check_fill(market.offer, market.offer_id, swap, market.view(BOB.public_key), NOW_MS)


# ---------------------------------------------------------------------------------------
# The fan's side (protocol.offers.Purchase) against the in-memory shop.


def purchase(
    market: Market,
    fan: Any = BOB,
    amount: int = 4,
    pay: int | None = None,
    shop_seq: int | None = None,
) -> Purchase:
    return Purchase(
        offer=market.offer,
        offer_id=market.offer_id,
        key=fan,
        fan_seq=market.ledger.next_seq(fan.public_key),
        amount=amount,
        pay=offer_cost(market.offer, amount) if pay is None else pay,
        committee=market.net.committee,
        roots=VerifiedRoots(),
        shop_seq=shop_seq,
    )


def run(buy: Purchase, answer: Callable[[OfferRequest], OfferResponse]) -> None:
    request: OfferRequest | None = buy.start(NOW_MS)
    while request is not None:
        request = buy.receive(answer(request), NOW_MS)


def test_a_purchase_quotes_proposes_and_gets_its_certificate(market: Market) -> None:
    buy = purchase(market)
    run(buy, market.answer)
    assert buy.certificate is not None and buy.tries == 1
    swap = buy.certificate.order
    assert isinstance(swap, Swap) and swap.offer == market.offer_id
    assert market.ledger.balance(BOB.public_key, market.offer.token) == 4
    assert market.ledger.balance(SHOP.public_key, PLATFORM_TOKEN) == 10


def test_two_buyers_interleaved_the_second_quotes_again(market: Market) -> None:
    """Both quote before either fills: the second fill is stale, and its buyer starts over."""
    first, second = purchase(market, BOB, 4), purchase(market, CAROL, 6)
    quote_1, quote_2 = first.start(NOW_MS), second.start(NOW_MS)
    fill_1 = first.receive(market.answer(quote_1), NOW_MS)
    fill_2 = second.receive(market.answer(quote_2), NOW_MS)
    assert fill_1 is not None and fill_2 is not None
    assert first.receive(market.answer(fill_1), NOW_MS) is None
    requote = second.receive(market.answer(fill_2), NOW_MS)
    assert requote is not None and requote.op == QUOTE
    run_from(second, requote, market.answer)
    assert (first.tries, second.tries) == (1, 2)
    assert market.ledger.balance(SHOP.public_key, market.offer.token) == 100 - 10
    assert market.ledger.next_seq(SHOP.public_key) == 2


def run_from(buy: Purchase, request: OfferRequest, answer: Any) -> None:
    next_request: OfferRequest | None = request
    while next_request is not None:
        next_request = buy.receive(answer(next_request), NOW_MS)


def test_a_purchase_holding_a_quote_proposes_at_once(market: Market) -> None:
    buy = purchase(market, shop_seq=0)
    first = buy.start(NOW_MS)
    assert first.op == FILL and buy.tries == 1
    assert buy.receive(market.answer(first), NOW_MS) is None and buy.certificate is not None


def test_a_purchase_gives_up_after_fill_tries_max_stale_quotes(market: Market) -> None:
    def always_stale(request: OfferRequest) -> OfferResponse:
        if request.op == QUOTE:
            return market.answer(request)
        return reply(request.id, STALE_SEQUENCE, reason="another fan was first")

    buy = purchase(market)
    with pytest.raises(PurchaseFailed, match=f"stale_sequence: still stale after {FILL_TRIES_MAX}"):
        run(buy, always_stale)
    assert buy.tries == FILL_TRIES_MAX and market.fills == 0


def test_a_refusal_ends_the_purchase_with_the_shops_reason(market: Market) -> None:
    buy = purchase(market, amount=11)
    with pytest.raises(PurchaseFailed, match="over_amount_max: a fill buys at most 10") as caught:
        run(buy, market.answer)
    assert caught.value.status == OVER_AMOUNT_MAX and market.fills == 0


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda r: dataclasses.replace(r, id=r.id + 1), "out of turn"),
        (lambda r: dataclasses.replace(r, certificate=b"junk"), "the shop's certificate"),
    ],
    ids=["wrong id", "junk certificate"],
)
def test_invalid_answer_from_the_shop(market: Market, tamper: Any, match: str) -> None:
    buy = purchase(market)
    fill = buy.receive(market.answer(buy.start(NOW_MS)), NOW_MS)
    assert fill is not None
    with pytest.raises(PurchaseFailed, match=match):
        buy.receive(tamper(market.answer(fill)), NOW_MS)


def test_a_certificate_for_another_order_is_refused(market: Market) -> None:
    buy = purchase(market)
    fill = buy.receive(market.answer(buy.start(NOW_MS)), NOW_MS)
    assert fill is not None
    other = market.net.settle(market.net.transfer(CAROL, BOB, 1))
    response = reply(fill.id, certificate=other.raw)
    with pytest.raises(PurchaseFailed, match="certificate is for another order"):
        buy.receive(response, NOW_MS)


def test_invalid_purchase_paying_beyond_the_ledgers_largest_amount(market: Market) -> None:
    buy = purchase(market, pay=AMOUNT_MAX + 1)
    with pytest.raises(PurchaseFailed, match="invalid: cannot propose this swap") as caught:
        run(buy, market.answer)
    assert caught.value.status == INVALID and buy.tries == 0


# ---------------------------------------------------------------------------------------
# The offer store and ingest.


def signed_offer(**changes: Any) -> SignedMessage:
    offer = sample_offer(**changes)
    return seal(key_of(offer), offer)


def test_offer_store_lists_standing_offers_and_resolves_ids() -> None:
    stores = Stores.memory()
    soon = signed_offer(expires_ms=SAMPLE_NOW_MS + 1000)
    later = signed_offer(expires_ms=SAMPLE_NOW_MS + 5000)
    gone = signed_offer(expires_ms=SAMPLE_NOW_MS)
    for message in (later, gone, soon):
        assert stores.offers.put(message)
    assert not stores.offers.put(soon)
    active = [oid for oid, _ in stores.offers.active(SAMPLE_NOW_MS)]
    assert active == [soon.id, later.id]
    assert [oid for oid, _ in stores.offers.active(SAMPLE_NOW_MS, limit=1)] == [soon.id]
    assert stores.offers.resolve(later.id.hex()[:10]) == later.id
    with pytest.raises(KeyError, match="8 to 64 hex digits"):
        stores.offers.resolve("abc")
    with pytest.raises(KeyError, match="no known offer"):
        stores.offers.resolve("ff" * 32)
    assert stores.offers.get(gone.id) == gone.record


def test_offer_store_keeps_shop_keys_and_closed_offers() -> None:
    stores = Stores.memory()
    assert stores.offers.shop_key(SHOP.public_key) is None
    stores.offers.add_shop_key(SHOP)
    found = stores.offers.shop_key(SHOP.public_key)
    assert found is not None and found.seed == SHOP.seed
    oid = signed_offer().id
    assert not stores.offers.closed(oid)
    stores.offers.close(oid, SAMPLE_NOW_MS)
    assert stores.offers.closed(oid)


def test_an_offer_is_ingested_into_the_offer_store() -> None:
    from node.ingest import Ingest, Verdict
    from node.sync import NodeItemSet

    stores = Stores.memory()
    ingest = Ingest(stores, stores.messages, NodeItemSet.from_log(stores.messages))
    raw = sealed(sample_offer())
    outcome = ingest.offer(raw, SAMPLE_NOW_MS)
    assert outcome.verdict is Verdict.NEW and outcome.message is not None
    assert stores.offers.get(outcome.message.id) == sample_offer()
    assert stores.messages.get(outcome.message.id) == raw
    assert ingest.offer(raw, SAMPLE_NOW_MS).verdict is Verdict.DUPLICATE


# ---------------------------------------------------------------------------------------
# Real node processes: 4 validators, a creator, two fans.

PRICE = (5, 2)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProc]]:
    """Nodes 0 to 3 validate; node 4, the creator, has made ART; 5 (and 3) are fans."""
    with ledger_network(tmp_path_factory.mktemp("offers"), 6, 4) as nodes:
        nodes[4].call("token.create", passphrase=PASSPHRASE, symbol="ART", supply=10_000)
        wait_for(
            lambda: all(
                any(t["symbol"] == "ART" for t in n.call("tokens")["tokens"]) for n in nodes
            ),
            timeout_s=20,
            what="the ART token everywhere",
        )
        yield nodes


def account(node: NodeProc) -> str:
    return str(node.call("balance")["account"])


def open_offer(creator: NodeProc, fans: list[NodeProc], *args: str) -> dict[str, Any]:
    """Open an ART offer with the CLI; wait until every fan's node knows it."""
    made = toktok(creator.home, "offer", "ART", "--price", "5/2", *args, "--json")
    offer: dict[str, Any] = json.loads(made.stdout)
    for fan in fans:
        wait_for(
            partial(held, fan, offer["offer"]), timeout_s=20, what=f"the offer at {fan.home.name}"
        )
    return offer


def held(node: NodeProc, message_id: str) -> bool:
    return bool(node.call("message", id=message_id)["held"])


def holdings(nodes: list[NodeProc], accounts: list[str]) -> list[list[int]]:
    """Every replica's view of each account's (ART, TOK)."""
    return [[balance(n, a, s) for a in accounts for s in ("ART", "TOK")] for n in nodes]


def settled(nodes: list[NodeProc], accounts: list[str]) -> list[int]:
    """The accounts' holdings once every replica agrees on them (earlier tests' fills
    may still be on their way)."""
    rows: list[list[int]] = []

    def agree() -> bool:
        rows[:] = holdings(nodes, accounts)
        return all(row == rows[0] for row in rows)

    wait_for(agree, timeout_s=20, what="the replicas to agree")
    return rows[0]


def test_a_creators_node_fills_a_fans_buy_unattended(network: list[NodeProc]) -> None:
    nodes = network
    creator, fan = nodes[4], nodes[5]
    offer = open_offer(creator, [fan], "--amount", "200", "--max-per-fill", "50")
    shop, fan_account = offer["shop"], account(fan)
    before = settled(nodes, [fan_account, shop])
    listed = fan.call("offers")["offers"]
    assert [o["offer"] for o in listed if o["shop"] == shop] == [offer["offer"]]
    assert offer["offer"][:16] in toktok(fan.home, "offers").stdout
    # The creator's home is not touched from here on: its node signs the fill alone.
    bought = toktok(fan.home, "buy", offer["offer"][:12], "40")
    assert bought.stdout.strip().splitlines()[-1] == latest_order(fan, fan_account)
    cost = -(-40 * PRICE[0] // PRICE[1])
    expected = [before[0] + 40, before[1] - cost, 200 - 40, cost]
    wait_for(
        lambda: all(row == expected for row in holdings(nodes, [fan_account, shop])),
        timeout_s=20,
        what="the fill on every replica",
    )


def latest_order(node: NodeProc, account_text: str) -> str:
    """The order id of the account's latest history entry."""
    return str(node.call("history", account=account_text)["history"][0]["order_id"])


def test_refused_buys_say_why_and_change_nothing(network: list[NodeProc]) -> None:
    nodes = network
    creator, fan = nodes[4], nodes[5]
    offer = open_offer(creator, [fan], "--amount", "30", "--max-per-fill", "20")
    brief = open_offer(creator, [fan], "--amount", "10", "--expires-s", "1")
    accounts = [account(fan), offer["shop"], brief["shop"]]
    before = settled([fan], accounts)

    def buy(of: dict[str, Any], amount: int, **params: Any) -> None:
        fan.call("buy", passphrase=PASSPHRASE, offer=of["offer"], amount=amount, **params)

    with pytest.raises(Exception, match="price_too_low: 10 base units cost 25; the swap pays 24"):
        buy(offer, 10, pay=24)
    with pytest.raises(Exception, match="over_amount_max: a fill buys at most 20, not 21"):
        buy(offer, 21)
    buy(offer, 20)
    with pytest.raises(Exception, match="sold_out: the shop holds 10, less than 11"):
        buy(offer, 11)
    wait_for(
        lambda: brief["offer"] not in {o["offer"] for o in creator.call("offers")["offers"]},
        timeout_s=10,
        what="the brief offer to expire",
    )
    with pytest.raises(Exception, match="expired"):
        buy(brief, 1)
    cli = toktok(fan.home, "buy", offer["offer"], "11", check=False)
    assert cli.returncode == 2 and "sold_out" in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    art, tok, shop_art, shop_tok, brief_art, brief_tok = before
    expected = [art + 20, tok - 50, shop_art - 20, shop_tok + 50, brief_art, brief_tok]
    assert settled([fan], accounts) == expected


def test_two_fans_buying_at_once_both_get_their_tokens(network: list[NodeProc]) -> None:
    nodes = network
    creator, fans = nodes[4], [nodes[5], nodes[3]]
    offer = open_offer(creator, fans, "--amount", "1000", "--max-per-fill", "100")
    accounts = [account(f) for f in fans]
    before = settled(nodes, [*accounts, offer["shop"]])
    # At once: the shop serves one fill at a time; a fan whose quote went stale meanwhile
    # quotes again (whether the two collide depends on the timing).
    assert all(r["amount"] == 10 for r in buy_at_once(fans, offer["offer"], 10))
    # Interleaved on purpose: both fans hold a quote of the same sequence number, so the
    # second fan's first proposal is stale, and its node quotes again.
    quotes = [fan.call("offer.quote", offer=offer["offer"]) for fan in fans]
    assert quotes[0]["seq"] == quotes[1]["seq"] == 2 and quotes[0]["stock"] == 1000 - 20
    results = [
        fan.call("buy", passphrase=PASSPHRASE, offer=offer["offer"], amount=10, seq=q["seq"])
        for fan, q in zip(fans, quotes, strict=True)
    ]
    assert [r["tries"] for r in results] == [1, 2]
    expected = [
        before[0] + 20,
        before[1] - 50,
        before[2] + 20,
        before[3] - 50,
        1000 - 40,
        100,
    ]
    wait_for(
        lambda: all(row == expected for row in holdings(nodes, [*accounts, offer["shop"]])),
        timeout_s=20,
        what="both fans' fills on every replica",
    )


def buy_at_once(fans: list[NodeProc], offer_id: str, amount: int) -> list[dict[str, Any]]:
    """Each fan buys ``amount`` from its own node, all at the same moment."""
    start = threading.Barrier(len(fans))
    results: list[dict[str, Any]] = [{} for _ in fans]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        client = fans[i].client()
        start.wait()
        try:
            results[i] = client.call("buy", passphrase=PASSPHRASE, offer=offer_id, amount=amount)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(fans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_closing_an_offer_returns_stock_and_proceeds_to_the_creator(
    network: list[NodeProc],
) -> None:
    nodes = network
    creator, fan = nodes[4], nodes[5]
    creator_account = account(creator)
    offer = open_offer(creator, [fan], "--amount", "100", "--max-per-fill", "100")
    fan.call("buy", passphrase=PASSPHRASE, offer=offer["offer"], amount=30)
    wait_for(
        lambda: balance(creator, offer["shop"]) == 75,
        timeout_s=20,
        what="the proceeds at the creator's node",
    )
    art, tok = balance(creator, creator_account, "ART"), balance(creator, creator_account)
    closed = toktok(creator.home, "offer-close", offer["offer"])
    assert closed.stdout.strip().splitlines()[-1] == offer["offer"]
    assert holdings([creator], [creator_account, offer["shop"]]) == [[art + 70, tok + 75, 0, 0]]
    with pytest.raises(Exception, match="closed: the creator closed this offer"):
        fan.call("buy", passphrase=PASSPHRASE, offer=offer["offer"], amount=1)
