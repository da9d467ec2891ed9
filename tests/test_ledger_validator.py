"""The validator's voting rule (every refusal), the genesis, and the quorum arithmetic."""

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.certs import (
    VALIDATORS_MAX,
    CertificateWire,
    Committee,
    Member,
    Vote,
    root_from_path,
)
from protocol.errors import Reject
from protocol.genesis import (
    GENESIS_DOMAIN,
    PLATFORM_CREATOR,
    Allocation,
    check_genesis,
    committee_of,
    decode_genesis,
    encode_genesis,
    network_id,
)
from protocol.ledger import (
    ConflictingOrder,
    InsufficientFunds,
    OrderRefused,
    UnknownToken,
    Validator,
    WrongSequence,
)
from protocol.orders import (
    AMOUNT_MAX,
    PLATFORM_TOKEN,
    SignedOrder,
    spends,
)
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    GENESIS_AMOUNT,
    MALLORY,
    MemoryLedger,
    Net,
    key,
    make_genesis,
)

FAN = hashlib.sha256(b"a fan token").digest()
"""A token id no order created."""


# ---------------------------------------------------------------------------------------
# Validators: every refusal, and what a refusal leaves behind.


def refusal(net: Net, validator: int, order: SignedOrder) -> OrderRefused:
    (result,) = net.vote(validator, [order])
    assert isinstance(result, OrderRefused), f"validator {validator} voted for it"
    return result


def test_invalid_order_ahead_of_the_sequence() -> None:
    net = Net()
    refused = refusal(net, 0, net.transfer(ALICE, BOB, 10, seq=1))
    assert type(refused) is WrongSequence
    assert "is at sequence number 0, not 1" in str(refused)
    assert net.ledgers[0].locks == {}


def test_invalid_order_behind_the_sequence() -> None:
    net = Net()
    net.settle(net.transfer(ALICE, BOB, 10))
    refused = refusal(net, 0, net.transfer(ALICE, BOB, 11))
    assert type(refused) is WrongSequence and "is at sequence number 1, not 0" in str(refused)


def test_invalid_replayed_order() -> None:
    net = Net()
    order = net.transfer(ALICE, BOB, 10)
    net.settle(order)
    for validator in range(4):
        refused = refusal(net, validator, order)
        assert type(refused) is WrongSequence
        assert "already certified at sequence number 0" in str(refused)
    assert net.ledgers[0].balance(BOB.public_key, PLATFORM_TOKEN) == GENESIS_AMOUNT + 10


def test_invalid_swap_with_one_leg_out_of_sequence() -> None:
    net = Net()
    refused = refusal(net, 0, net.swap((ALICE, 0, PLATFORM_TOKEN, 5), (BOB, 3, FAN, 1)))
    assert type(refused) is WrongSequence and "not 3" in str(refused)


def test_invalid_conflicting_order_in_one_batch() -> None:
    net = Net()
    first, second = net.transfer(ALICE, BOB, 10), net.transfer(ALICE, CAROL, 10)
    results = net.vote(0, [first, second])
    assert isinstance(results[0], Vote)
    assert type(results[1]) is ConflictingOrder
    assert "already signed another order for sequence number 0" in str(results[1])
    assert net.ledgers[0].locks == {(ALICE.public_key, 0): first.id}


def test_invalid_conflicting_order_after_a_vote() -> None:
    net = Net()
    first, second = net.transfer(ALICE, BOB, 10), net.transfer(ALICE, BOB, 10, memo=b"again")
    assert isinstance(net.vote(0, [first])[0], Vote)
    assert type(refusal(net, 0, second)) is ConflictingOrder
    again = net.vote(0, [first])[0]
    assert isinstance(again, Vote), "the same order again gets the same vote"


def test_invalid_conflicting_swap_leg() -> None:
    net = Net()
    net.settle(net.create_token(BOB))
    assert isinstance(net.vote(0, [net.transfer(BOB, CAROL, 1, seq=1)])[0], Vote)
    fan = net.ledgers[0].slots[(BOB.public_key, 0)]
    refused = refusal(net, 0, net.swap((ALICE, 0, PLATFORM_TOKEN, 5), (BOB, 1, fan, 1)))
    assert type(refused) is ConflictingOrder and str(refused).startswith(
        f"account {BOB.public_key.hex()[:16]}"
    )
    assert (ALICE.public_key, 0) not in net.ledgers[0].locks, "a refused swap locks neither leg"


def _swap_leg_b_short(net: Net) -> SignedOrder:
    """ALICE's leg is covered; DAVE's, in CAROL's new token, is not."""
    fan = net.settle(net.create_token(CAROL)).order_id
    return net.swap((ALICE, 0, PLATFORM_TOKEN, 5), (DAVE, 0, fan, 1))


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda net: net.transfer(ALICE, BOB, GENESIS_AMOUNT + 1), id="one-over"),
        pytest.param(lambda net: net.transfer(DAVE, BOB, 1), id="no-allocation"),
        pytest.param(_swap_leg_b_short, id="swap-leg-b"),
    ],
)
def test_invalid_insufficient_funds(build: Callable[[Net], SignedOrder]) -> None:
    net = Net()
    order = build(net)
    refused = refusal(net, 0, order)
    assert type(refused) is InsufficientFunds and "the order spends" in str(refused)
    assert not set(net.ledgers[0].locks) & set(spends(order.order)), "a refusal takes no lock"
    assert isinstance(net.vote(0, [net.transfer(ALICE, BOB, GENESIS_AMOUNT)])[0], Vote)


@pytest.mark.parametrize("leg", ["transfer", "swap-a", "swap-b"])
def test_invalid_unknown_token(leg: str) -> None:
    net = Net()
    unknown = hashlib.sha256(b"never created").digest()
    order = {
        "transfer": lambda: net.transfer(ALICE, BOB, 1, token=unknown),
        "swap-a": lambda: net.swap((ALICE, 0, unknown, 1), (BOB, 0, PLATFORM_TOKEN, 1)),
        "swap-b": lambda: net.swap((ALICE, 0, PLATFORM_TOKEN, 1), (BOB, 0, unknown, 1)),
    }[leg]()
    refused = refusal(net, 0, order)
    assert type(refused) is UnknownToken and unknown.hex() in str(refused)


def test_a_validator_must_be_a_committee_member() -> None:
    with pytest.raises(ValueError, match="not a member"):
        Validator(Net().committee, MALLORY)


def test_a_batch_votes_under_one_root_with_a_path_each() -> None:
    net = Net()
    orders = [net.transfer(k, DAVE, 1) for k in (ALICE, BOB, CAROL, MALLORY)]
    orders.insert(2, net.transfer(DAVE, ALICE, 1))  # refused: no funds
    results = net.vote(0, orders)
    votes = [r for r in results if isinstance(r, Vote)]
    assert len(votes) == 4 and isinstance(results[2], InsufficientFunds)
    assert len({(v.root, v.sig) for v in votes}) == 1
    assert [(v.index, v.count) for v in votes] == [(i, 4) for i in range(4)]
    for order, v in zip([o for i, o in enumerate(orders) if i != 2], votes, strict=True):
        assert root_from_path(order.id, v.index, v.count, v.path) == v.root


def test_an_equivocating_swap_partner_blocks_the_other_account() -> None:
    """A limit of the design, pinned so that a change to it is seen: BOB cosigns a swap with
    ALICE but sends two validators a transfer of his own for the same sequence number. Neither
    order reaches a quorum, and ALICE's sequence number 0 stays locked by the swap at the
    validators that voted for it, so no other order of hers can be certified."""
    net = Net()
    net.settle(net.create_token(BOB))
    fan = net.ledgers[0].slots[(BOB.public_key, 0)]
    deal = net.swap((ALICE, 0, PLATFORM_TOKEN, 5), (BOB, 1, fan, 1))
    other = net.transfer(BOB, CAROL, 1, seq=1, token=fan)
    net.votes_for(deal, [0, 1])
    net.votes_for(other, [2, 3])
    alice_next = net.transfer(ALICE, CAROL, 1)
    results = [net.vote(i, [alice_next])[0] for i in range(4)]
    assert [type(r) for r in results] == [ConflictingOrder, ConflictingOrder, Vote, Vote]
    weight = sum(net.committee.members[i].weight for i in (2, 3))
    assert weight < net.committee.quorum


# ---------------------------------------------------------------------------------------
# The genesis and the quorum arithmetic.


def test_genesis_round_trip_and_network_id() -> None:
    genesis = make_genesis()
    raw = encode_genesis(genesis)
    assert decode_genesis(raw) == genesis
    assert network_id(raw) == hashlib.sha256(GENESIS_DOMAIN + raw).digest()
    assert committee_of(genesis).network == network_id(raw)
    assert network_id(encode_genesis(make_genesis(name="other"))) != network_id(raw)


def test_the_genesis_state_holds_the_allocations() -> None:
    genesis = make_genesis(
        allocations=(Allocation(ALICE.public_key, 7), Allocation(BOB.public_key, 5))
    )
    ledger = MemoryLedger.from_genesis(genesis)
    token = ledger.token(PLATFORM_TOKEN)
    assert token is not None and token.supply == 12 and token.creator == PLATFORM_CREATOR
    assert (token.symbol, token.name, token.decimals) == ("TOK", "Toktok", 2)
    assert ledger.balance(ALICE.public_key, PLATFORM_TOKEN) == 7
    assert ledger.next_seq(ALICE.public_key) == 0 and ledger.supply_errors() == []


def _allocations(*amounts: int) -> tuple[Allocation, ...]:
    return tuple(Allocation(key(f"holder {i}").public_key, a) for i, a in enumerate(amounts))


@pytest.mark.parametrize(
    ("name", "changes", "match"),
    [
        ("symbol-lower-case", {"symbol": "tok"}, "platform symbol 'tok'"),
        ("symbol-digit-first", {"symbol": "1TOK"}, "is not A-Z then A-Z0-9"),
        (
            "validator-twice",
            {"validators": (Member(ALICE.public_key, 1), Member(ALICE.public_key, 2))},
            "a validator key appears twice",
        ),
        (
            "account-allocated-twice",
            {"allocations": (Allocation(ALICE.public_key, 1), Allocation(ALICE.public_key, 2))},
            "an account has two allocations",
        ),
        (
            "allocations-over-amount-max",
            {"allocations": _allocations(AMOUNT_MAX, 1)},
            f"allocations add up to more than {AMOUNT_MAX}",
        ),
    ],
)
def test_invalid_genesis(name: str, changes: dict[str, Any], match: str) -> None:
    genesis = dataclasses.replace(make_genesis(), **changes)
    with pytest.raises(ValueError, match=re.escape(match)):
        check_genesis(genesis)
    with pytest.raises(ValueError, match=re.escape(match)):
        encode_genesis(genesis)
    with pytest.raises(ValueError, match=re.escape(match)):
        decode_genesis(codec.encode_record(genesis))


def test_a_genesis_at_the_amount_limit_is_valid() -> None:
    check_genesis(make_genesis(allocations=_allocations(AMOUNT_MAX - 1, 1)))


@pytest.mark.parametrize(
    ("name", "raw", "match"),
    [
        ("empty", b"", "malformed msgpack"),
        ("no-validators", codec.encode_record(make_genesis(validators=())), "validators: 0 items"),
        (
            "no-allocations",
            codec.encode_record(make_genesis(allocations=())),
            "allocations: 0 items",
        ),
        ("weight-0", codec.encode_record(make_genesis(weights=[0, 1, 1, 1])), "weight: 0 outside"),
        ("trailing-byte", encode_genesis(make_genesis()) + b"\x00", "trailing bytes"),
    ],
)
def test_invalid_genesis_bytes(name: str, raw: bytes, match: str) -> None:
    with pytest.raises(ValueError, match="not a genesis: .*" + match):
        decode_genesis(raw)


@pytest.mark.parametrize(
    ("weights", "total", "faulty_max", "quorum"),
    [
        ([1], 1, 0, 1),
        ([1, 1], 2, 0, 2),
        ([1, 1, 1], 3, 0, 3),
        ([1, 1, 1, 1], 4, 1, 3),
        ([1] * 5, 5, 1, 4),
        ([1] * 6, 6, 1, 5),
        ([1] * 7, 7, 2, 5),
        ([1] * 10, 10, 3, 7),
        ([1, 1, 1, 2], 5, 1, 4),
        ([5, 1, 1, 1], 8, 2, 6),
        ([2**32] * 64, 2**38, (2**38 - 1) // 3, 2**38 - (2**38 - 1) // 3),
    ],
)
def test_quorum_arithmetic(weights: list[int], total: int, faulty_max: int, quorum: int) -> None:
    members = [Member(key(f"member {i}").public_key, w) for i, w in enumerate(weights)]
    committee = Committee(bytes(32), members)
    assert (committee.total, committee.faulty_max, committee.quorum) == (total, faulty_max, quorum)


@given(st.lists(st.integers(1, 2**32), min_size=1, max_size=VALIDATORS_MAX))
def test_two_quorums_share_more_than_f_weight(weights: list[int]) -> None:
    """Any two quorums overlap in more weight than f, so in an honest validator."""
    members = [Member(i.to_bytes(32, "big"), w) for i, w in enumerate(weights)]
    committee = Committee(bytes(32), members)
    assert 3 * committee.faulty_max < committee.total
    assert 2 * committee.quorum - committee.total > committee.faulty_max
    assert committee.quorum <= committee.total and 3 * committee.quorum > 2 * committee.total


def test_a_weighted_certificate_needs_the_quorums_weight() -> None:
    net = Net(make_genesis(weights=[1, 1, 1, 2]))
    order = net.transfer(ALICE, BOB, 1)
    votes = net.votes_for(order, range(4))
    for voters, ok in [((0, 1, 2), False), ((0, 3), False), ((0, 1, 3), True), ((2, 3, 1), True)]:
        raw = certify_unchecked(net.committee, order, [votes[i] for i in voters])
        if ok:
            assert net.check(raw).signers == set(voters)
        else:
            with pytest.raises(Reject, match="the quorum is 4"):
                net.check(raw)


def certify_unchecked(committee: Committee, order: SignedOrder, votes: list[Vote]) -> bytes:
    """Certificate bytes with ``votes`` sorted, whatever their weight."""
    wire_ = CertificateWire(
        order.kind,
        order.order_bytes,
        order.sigs,
        1,
        tuple(sorted(votes, key=lambda v: v.validator)),
    )
    return codec.encode_record(wire_)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([], "1 to 64 members"),
        ([Member(i.to_bytes(32, "big"), 1) for i in range(65)], "1 to 64 members"),
        ([Member(bytes(32), 1), Member(bytes(32), 1)], "appears twice"),
    ],
)
def test_invalid_committee(members: list[Member], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Committee(bytes(32), members)
