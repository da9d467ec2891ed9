"""The replica's apply rule: any delivery order, gaps, credits that come later, swaps,
new tokens, conflicting certificates, and the bounded waiting room."""

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import (
    Certificate,
    certify,
)
from protocol.ledger import (
    Replica,
)
from protocol.orders import (
    PLATFORM_TOKEN,
    SignedOrder,
)
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    GENESIS_AMOUNT,
    Net,
    replay,
)

# ---------------------------------------------------------------------------------------
# Replicas: the apply rule.


def story() -> tuple[Net, list[Certificate]]:
    """Certificates that depend on each other: gaps, credits, a new token, a swap."""
    net = Net()
    certs = [net.settle(net.transfer(ALICE, DAVE, 300))]
    certs.append(net.settle(net.transfer(DAVE, BOB, 250)))  # spends ALICE's credit
    certs.append(net.settle(net.create_token(CAROL, supply=50)))
    fan = certs[-1].order_id
    certs.append(net.settle(net.transfer(CAROL, DAVE, 20, seq=1, token=fan)))
    certs.append(net.settle(net.transfer(ALICE, CAROL, 5, seq=1)))
    certs.append(net.settle(net.swap((DAVE, 1, fan, 15), (BOB, 0, PLATFORM_TOKEN, 40))))
    certs.append(net.settle(net.transfer(BOB, ALICE, 1, seq=1, token=fan)))  # from the swap
    certs.append(net.settle(net.transfer(DAVE, ALICE, 90, seq=2)))
    return net, certs


STORY_NET, STORY = story()
STORY_STATE = STORY_NET.ledgers[0].snapshot()


def test_the_story_applies_in_order_everywhere() -> None:
    ledger, replica, overlay = replay(STORY_NET, STORY)
    assert overlay.applied == STORY and replica.pending == 0 and not overlay.conflicts
    assert ledger.snapshot() == STORY_STATE
    assert all(lg.snapshot() == STORY_STATE for lg in STORY_NET.ledgers)
    assert ledger.balance(DAVE.public_key, PLATFORM_TOKEN) == 300 - 250 + 40 - 90
    assert ledger.negative_balances() == [] and ledger.supply_errors() == []


def test_reverse_delivery_reaches_the_same_state() -> None:
    ledger, replica, overlay = replay(STORY_NET, reversed(STORY))
    assert replica.pending == 0 and len(overlay.applied) == len(STORY)
    assert ledger.snapshot() == STORY_STATE


@settings(max_examples=80, deadline=None)
@given(st.permutations(STORY), st.data())
def test_any_delivery_order_reaches_the_same_state(
    order: list[Certificate], data: st.DataObject
) -> None:
    """In any order, in several calls, with duplicates: the same state in the end."""
    extra = data.draw(st.lists(st.sampled_from(STORY), max_size=4), label="duplicates")
    stream = order + extra
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=3), label="cuts"))
    ledger, replica = STORY_NET.ledger(), Replica()
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        overlay = replica.apply(ledger, stream[start:end])
        assert not overlay.conflicts
        ledger.commit(overlay)
        assert ledger.negative_balances() == [] and ledger.supply_errors() == []
    assert replica.pending == 0 and ledger.applied == {c.order_id for c in STORY}
    assert ledger.snapshot() == STORY_STATE


def test_a_spend_waits_for_its_credit() -> None:
    net = Net()
    credit = net.settle(net.transfer(ALICE, DAVE, 100))
    spend = net.settle(net.transfer(DAVE, BOB, 60))
    ledger, replica = net.ledger(), Replica()
    first = replica.apply(ledger, [spend])
    ledger.commit(first)
    assert (
        first.applied == [] and replica.pending == 1 and replica.pending_ids() == {spend.order_id}
    )
    assert ledger.next_seq(DAVE.public_key) == 0
    second = replica.apply(ledger, [credit])
    ledger.commit(second)
    assert second.applied == [credit, spend] and replica.pending == 0
    assert ledger.balance(DAVE.public_key, PLATFORM_TOKEN) == 40
    assert ledger.balance(BOB.public_key, PLATFORM_TOKEN) == GENESIS_AMOUNT + 60


def test_a_gap_waits_for_the_missing_sequence_number() -> None:
    net = Net()
    certs = [net.settle(net.transfer(ALICE, BOB, 1, seq=s)) for s in range(3)]
    ledger, replica = net.ledger(), Replica()
    overlay = replica.apply(ledger, [certs[2], certs[1]])
    assert overlay.applied == [] and replica.pending == 2
    ledger.commit(overlay)
    overlay = replica.apply(ledger, [certs[0]])
    assert overlay.applied == certs and ledger.next_seq(ALICE.public_key) == 0
    ledger.commit(overlay)
    assert ledger.next_seq(ALICE.public_key) == 3


def test_a_swap_applies_both_legs_at_once() -> None:
    net = Net()
    fan_cert = net.settle(net.create_token(BOB, supply=10))
    fan = fan_cert.order_id
    deal = net.settle(net.swap((ALICE, 0, PLATFORM_TOKEN, 30), (BOB, 1, fan, 4)))
    ledger, replica = net.ledger(), Replica()
    overlay = replica.apply(ledger, [deal])
    assert overlay.applied == [] and replica.pending == 1, "leg b waits for BOB's seq 0"
    assert overlay.balances == {} and overlay.seqs == {}, "and leg a did not apply alone"
    overlay = replica.apply(ledger, [fan_cert])
    ledger.commit(overlay)
    assert overlay.applied == [fan_cert, deal]
    assert ledger.balance(ALICE.public_key, fan) == 4 and ledger.balance(BOB.public_key, fan) == 6
    assert ledger.balance(ALICE.public_key, PLATFORM_TOKEN) == GENESIS_AMOUNT - 30
    assert ledger.balance(BOB.public_key, PLATFORM_TOKEN) == GENESIS_AMOUNT + 30
    assert ledger.next_seq(ALICE.public_key) == 1 and ledger.next_seq(BOB.public_key) == 2
    assert (
        ledger.certified(ALICE.public_key, 0)
        == ledger.certified(BOB.public_key, 1)
        == deal.order_id
    )
    assert ledger.supply_errors() == []


def test_create_token_mints_to_the_creator_under_the_order_id() -> None:
    net = Net()
    signed_order = net.create_token(CAROL, supply=21, symbol="GOLD", decimals=3, metadata="{}")
    cert = net.settle(signed_order)
    ledger = net.ledgers[1]
    info = ledger.token(signed_order.id)
    assert cert.order_id == signed_order.id and info is not None
    assert (info.creator, info.symbol, info.supply, info.decimals, info.metadata) == (
        CAROL.public_key,
        "GOLD",
        21,
        3,
        "{}",
    )
    assert ledger.balance(CAROL.public_key, signed_order.id) == 21
    assert ledger.next_seq(CAROL.public_key) == 1


def test_a_transfer_of_a_token_waits_for_its_creation() -> None:
    net = Net()
    created = net.settle(net.create_token(CAROL))
    moved = net.settle(net.transfer(CAROL, ALICE, 5, seq=1, token=created.order_id))
    given_on = net.settle(net.transfer(ALICE, BOB, 5, token=created.order_id))
    ledger, replica, overlay = replay(net, [given_on, moved, created])
    assert overlay.applied == [created, moved, given_on] and replica.pending == 0
    assert ledger.balance(BOB.public_key, created.order_id) == 5


def byzantine_certificate(net: Net, order: SignedOrder, voters: Sequence[int]) -> Certificate:
    """A certificate made by validators that vote without checking: more than f lie."""
    votes = [net.byzantine_votes(i, [order.id])[0] for i in voters]
    return net.check(certify(net.committee, order, votes).raw)


def test_a_conflicting_certificate_is_dropped_and_reported() -> None:
    net = Net()
    x, y = net.transfer(ALICE, BOB, 10), net.transfer(ALICE, CAROL, 10)
    cert_x = byzantine_certificate(net, x, [0, 1, 3])
    cert_y = byzantine_certificate(net, y, [1, 2, 3])
    ledger, replica, overlay = replay(net, [cert_x])
    before = ledger.snapshot()
    overlay = replica.apply(ledger, [cert_y, cert_x])
    assert overlay.applied == [] and len(overlay.conflicts) == 1
    assert "sequence number 0 is certified for order" in overlay.conflicts[0]
    ledger.commit(overlay)
    assert ledger.snapshot() == before


def test_a_certificate_conflicting_with_a_waiting_one_is_dropped() -> None:
    net = Net()
    x, y = net.transfer(ALICE, BOB, 10, seq=1), net.transfer(ALICE, CAROL, 10, seq=1)
    cert_x = byzantine_certificate(net, x, [0, 1, 3])
    cert_y = byzantine_certificate(net, y, [1, 2, 3])
    ledger, replica = net.ledger(), Replica()
    overlay = replica.apply(ledger, [cert_x, cert_y, cert_x])
    assert overlay.applied == [] and replica.pending_ids() == {x.id}
    assert overlay.conflicts == [
        f"two certificates for account {ALICE.public_key.hex()[:16]} sequence number 1"
    ]


def test_a_certificate_with_other_votes_is_the_same_certificate() -> None:
    net = Net()
    order = net.transfer(ALICE, BOB, 10)
    one, other = net.certificate(order, (0, 1, 2)), net.certificate(order, (1, 2, 3))
    assert one.raw != other.raw and one.order_id == other.order_id
    _, replica, overlay = replay(net, [one, other, one])
    assert overlay.applied == [one] and not overlay.conflicts and replica.pending == 0


def test_the_waiting_room_is_bounded_and_what_it_drops_comes_again() -> None:
    net = Net()
    certs = [net.settle(net.transfer(ALICE, BOB, 1, seq=s)) for s in range(4)]
    ledger, replica = net.ledger(), Replica(pending_max=2)
    ledger.commit(replica.apply(ledger, [certs[3], certs[2], certs[1]]))
    assert replica.pending_ids() == {certs[3].order_id, certs[2].order_id}, "seq 1 was dropped"
    overlay = replica.apply(ledger, [certs[0]])
    ledger.commit(overlay)
    assert overlay.applied == [certs[0]] and replica.pending == 2
    overlay = replica.apply(ledger, certs)
    ledger.commit(overlay)
    assert overlay.applied == certs[1:] and ledger.next_seq(ALICE.public_key) == 4


def test_a_swap_waits_in_one_place() -> None:
    net = Net()
    net.settle(net.create_token(BOB))
    fan = net.ledgers[0].slots[(BOB.public_key, 0)]
    gap = net.settle(net.transfer(ALICE, CAROL, 1))
    deal = net.settle(net.swap((ALICE, 1, PLATFORM_TOKEN, 3), (BOB, 1, fan, 2)))
    replica = Replica()
    replica.apply(net.ledger(), [deal, deal])
    assert replica.pending == 1 and replica.pending_ids() == {deal.order_id}
    assert gap.order_id not in replica.pending_ids()
