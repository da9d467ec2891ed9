"""The ledger's safety and liveness under Byzantine validators and lying clients.

A Hypothesis state machine drives the pure machines of protocol/ledger.py: four validators of
weight 1 (f = 1, quorum 3), of which validator 3 is Byzantine: it signs whatever it is sent,
conflicting orders for one slot included, and withholds its vote when that hurts. Three
honest clients sign one order at a time, within their balance, and swap only with each other;
two lying clients sign anything (any sequence number, more than they hold, unknown tokens) and
equivocate, sending different orders for one sequence number to different validators.
Certificates are formed from whatever votes exist and reach replicas and validators in any
order, with duplicates. An oracle replica applies every certificate as it forms.

After every step:
- no two certificates (each one passing ``verify_certificate``) take one (account, seq);
- an honest validator never votes for two orders of one slot;
- no balance is below zero on any replica, and every token's balances add up to its supply;
- two ledgers that applied the same certificates hold the same state;
- the oracle applied every certificate: nothing certified ever waits forever.
The ``honest_client_finishes`` rule checks liveness: with the Byzantine validator withholding,
an honest client's order, sent to the three honest validators, is certified.
"""

import dataclasses
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.accounts import AccountKey
from protocol.certs import Certificate, Vote, certify, sign_votes, verify_certificate
from protocol.ledger import OrderRefused, Replica, Slot
from protocol.orders import (
    PLATFORM_TOKEN,
    CreateToken,
    Leg,
    SignedOrder,
    Swap,
    Transfer,
    sign_order,
    spends,
)
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    CREATED_MS,
    MALLORY,
    NOW_MS,
    MemoryLedger,
    Net,
    key,
    make_genesis,
)

HONEST = [ALICE, BOB, CAROL]
LIARS = [MALLORY, key("trent")]
LIAR_ACCOUNTS = {k.public_key for k in LIARS}
NOBODY = key("nobody")
"""An account that only receives."""
ACCOUNTS = [*HONEST, *LIARS, NOBODY]
ALLOCATION = 100
BYZANTINE = 3
HONEST_VALIDATORS = (0, 1, 2)
VALIDATORS = (*HONEST_VALIDATORS, BYZANTINE)
Terms = tuple[AccountKey, AccountKey, bytes, int, bytes, int]
UNKNOWN_TOKEN = bytes(range(32))
"""A token no order ever creates."""
REPLICAS = 3
LIAR_AMOUNTS = st.one_of(st.integers(1, 20), st.integers(1, ALLOCATION + 50))
OFFSETS = st.sampled_from([0, 0, 0, -1, 1])
"""How far a lying client's sequence number is from its next one."""
LEDGER_INDEXES = st.integers(0, REPLICAS + len(HONEST_VALIDATORS) - 1)
"""Where certificates go: a replica, or an honest validator's ledger."""


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        genesis = make_genesis(holders=[(k, ALLOCATION) for k in [*HONEST, *LIARS]])
        self.net = Net(genesis)
        self.replicas = [(self.net.ledger(), Replica()) for _ in range(REPLICAS)]
        self.oracle = (self.net.ledger(), Replica())
        self.orders: dict[bytes, SignedOrder] = {}
        self.votes: dict[bytes, dict[int, Vote]] = {}
        self.honest_votes: dict[tuple[int, Slot], bytes] = {}
        self.certs: list[Certificate] = []
        self.certified: dict[Slot, bytes] = {}
        self.pending: dict[bytes, SignedOrder] = {}
        """Honest clients' orders not certified yet: each signs no other until it is."""
        self.tokens = [PLATFORM_TOKEN]
        self.counter = 0

    # Helpers

    @property
    def truth(self) -> MemoryLedger:
        return self.oracle[0]

    def ledgers(self) -> list[MemoryLedger]:
        honest = [self.net.ledgers[i] for i in HONEST_VALIDATORS]
        return [self.truth, *(ledger for ledger, _ in self.replicas), *honest]

    def unique(self) -> int:
        self.counter += 1
        return self.counter

    def free_honest(self) -> list[AccountKey]:
        return [k for k in HONEST if k.public_key not in self.pending]

    def holdings(self, account: AccountKey) -> list[tuple[bytes, int]]:
        held = [(t, self.truth.balance(account.public_key, t)) for t in self.tokens]
        return [(t, amount) for t, amount in held if amount > 0]

    def add_order(self, order: SignedOrder) -> SignedOrder:
        self.orders.setdefault(order.id, order)
        return order

    def vote(self, validator: int, batch: list[SignedOrder]) -> list[Vote | OrderRefused]:
        if validator == BYZANTINE:
            ids = [order.id for order in batch]
            votes = sign_votes(self.net.committee, validator, self.net.keys[validator], ids)
            results: list[Vote | OrderRefused] = list(votes)
        else:
            results = self.net.vote(validator, batch)
        for order, result in zip(batch, results, strict=True):
            if not isinstance(result, Vote):
                event(f"refused: {type(result).__name__}")
                continue
            self.votes.setdefault(order.id, {})[validator] = result
            if validator != BYZANTINE:
                for slot in spends(order.order):
                    held = self.honest_votes.setdefault((validator, slot), order.id)
                    assert held == order.id, f"honest validator {validator} voted twice for {slot}"
        return results

    def record(self, cert: Certificate) -> None:
        """A certificate formed: check it is the only one of its slots, apply it at the oracle."""
        checked = verify_certificate(cert.raw, self.net.committee, self.net.roots, NOW_MS)
        assert checked.order_id == cert.order_id
        for slot in spends(cert.order):
            held = self.certified.setdefault(slot, cert.order_id)
            assert held == cert.order_id, f"two certificates for {slot}"
        if any(c.raw == cert.raw for c in self.certs):
            return
        self.certs.append(cert)
        liar = any(account in LIAR_ACCOUNTS for account, _ in spends(cert.order))
        event(f"certified {'a liar' if liar else 'an honest'} {cert.kind}")
        if BYZANTINE in cert.signers:
            event("certified with the Byzantine vote")
        ledger, replica = self.oracle
        overlay = replica.apply(ledger, [cert])
        ledger.commit(overlay)
        assert not overlay.conflicts
        if isinstance(cert.order, CreateToken) and cert.order_id not in self.tokens:
            self.tokens.append(cert.order_id)
        for account, order in list(self.pending.items()):
            if order.id == cert.order_id:
                del self.pending[account]

    def deliver(self, ledger: MemoryLedger, replica: Replica, certs: list[Certificate]) -> None:
        overlay = replica.apply(ledger, certs)
        assert not overlay.conflicts, overlay.conflicts
        ledger.commit(overlay)

    def target(self, index: int) -> tuple[MemoryLedger, Replica]:
        """Replicas first, then the honest validators."""
        if index < REPLICAS:
            return self.replicas[index]
        validator = HONEST_VALIDATORS[index - REPLICAS]
        return self.net.ledgers[validator], self.net.replicas[validator]

    def send(self, data: st.DataObject, order: SignedOrder) -> None:
        """Send a new order to some validators, one at a time, and certify it if it can be."""
        some = st.lists(st.sampled_from(VALIDATORS), unique=True)
        validators = data.draw(st.one_of(st.permutations(VALIDATORS), some))
        if data.draw(st.booleans(), label="client brings the certificates it knows"):
            for validator in HONEST_VALIDATORS:
                ledger, replica = self.net.ledgers[validator], self.net.replicas[validator]
                self.deliver(ledger, replica, self.certs)
        for validator in validators:
            self.vote(validator, [order])
        self.certify_if_possible(order)

    def certify_if_possible(self, order: SignedOrder) -> None:
        votes = list(self.votes.get(order.id, {}).values())
        if (
            sum(self.net.committee.members[v.validator].weight for v in votes)
            >= self.net.committee.quorum
        ):
            self.record(certify(self.net.committee, order, votes))

    # Honest clients

    @precondition(lambda self: self.free_honest())
    @rule(data=st.data())
    def honest_transfer(self, data: st.DataObject) -> None:
        sender = data.draw(st.sampled_from(self.free_honest()))
        held = self.holdings(sender)
        if not held:
            return
        token, balance = data.draw(st.sampled_from(held))
        recipient = data.draw(st.sampled_from([k for k in ACCOUNTS if k is not sender]))
        amount = data.draw(st.integers(1, balance))
        order = self.net.transfer(
            sender,
            recipient,
            amount,
            seq=self.truth.next_seq(sender.public_key),
            token=token,
            memo=b"%d" % self.unique(),
        )
        self.pending[sender.public_key] = self.add_order(order)
        self.send(data, order)

    @precondition(lambda self: self.free_honest())
    @rule(data=st.data(), supply=st.integers(1, 1000))
    def honest_create_token(self, data: st.DataObject, supply: int) -> None:
        creator = data.draw(st.sampled_from(self.free_honest()))
        seq = self.truth.next_seq(creator.public_key)
        order = self.net.create_token(creator, seq, supply, metadata=str(self.unique()))
        self.pending[creator.public_key] = self.add_order(order)
        self.send(data, order)

    def swap_terms(self, pairs: list[tuple[AccountKey, AccountKey]]) -> list[Terms]:
        """Every (a, b, token a gives, a's balance, token b gives, b's balance) they can."""
        return [
            (a, b, token_a, held_a, token_b, held_b)
            for a, b in pairs
            for token_a, held_a in self.holdings(a)
            for token_b, held_b in self.holdings(b)
            if token_a != token_b
        ]

    @precondition(lambda self: len(self.free_honest()) >= 2)
    @rule(data=st.data())
    def honest_swap(self, data: st.DataObject) -> None:
        free = self.free_honest()
        terms = self.swap_terms([(a, b) for a in free for b in free if a is not b])
        if not terms:
            return
        a, b, token_a, held_a, token_b, held_b = data.draw(st.sampled_from(terms))
        seq_a, seq_b = (self.truth.next_seq(k.public_key) for k in (a, b))
        order = self.net.swap(
            (a, seq_a, token_a, data.draw(st.integers(1, held_a))),
            (b, seq_b, token_b, data.draw(st.integers(1, held_b))),
            offer=self.unique().to_bytes(32, "big"),
        )
        self.pending[a.public_key] = self.pending[b.public_key] = self.add_order(order)
        self.send(data, order)

    # Lying clients: any sequence number, any amount, many orders per slot.

    def liar_seq(self, data: st.DataObject, liar: AccountKey) -> int:
        return max(0, self.truth.next_seq(liar.public_key) + data.draw(OFFSETS))

    def any_token(self, data: st.DataObject, but: bytes = b"") -> bytes:
        return data.draw(st.sampled_from([t for t in [*self.tokens, UNKNOWN_TOKEN] if t != but]))

    @rule(data=st.data())
    def liar_transfers(self, data: st.DataObject) -> None:
        liar = data.draw(st.sampled_from(LIARS))
        recipient = data.draw(st.sampled_from([k for k in ACCOUNTS if k is not liar]))
        order = Transfer(
            self.net.network,
            CREATED_MS,
            liar.public_key,
            self.liar_seq(data, liar),
            self.any_token(data),
            recipient.public_key,
            data.draw(LIAR_AMOUNTS),
            b"%d" % self.unique(),
        )
        self.send(data, self.add_order(sign_order(order, [liar])))

    @rule(data=st.data())
    def liar_creates_token(self, data: st.DataObject) -> None:
        liar = data.draw(st.sampled_from(LIARS))
        seq, supply = self.liar_seq(data, liar), data.draw(LIAR_AMOUNTS)
        order = CreateToken(
            self.net.network, CREATED_MS, liar.public_key, seq, "LIE", "", supply, 0, ""
        )
        order = dataclasses.replace(order, metadata=str(self.unique()))
        self.send(data, self.add_order(sign_order(order, [liar])))

    @rule(data=st.data())
    def liars_swap(self, data: st.DataObject) -> None:
        a, b = data.draw(st.permutations(LIARS))
        terms = self.swap_terms([(a, b)])
        sensible = data.draw(st.booleans(), label="tokens they hold")
        if terms and sensible:
            _, _, token_a, held_a, token_b, held_b = data.draw(st.sampled_from(terms))
            amount_a = data.draw(st.integers(1, held_a + 10))
            amount_b = data.draw(st.integers(1, held_b + 10))
        else:
            token_a = self.any_token(data)
            token_b = self.any_token(data, but=token_a)
            amount_a, amount_b = data.draw(LIAR_AMOUNTS), data.draw(LIAR_AMOUNTS)
        order = Swap(
            self.net.network,
            CREATED_MS,
            Leg(a.public_key, self.liar_seq(data, a), token_a, amount_a),
            Leg(b.public_key, self.liar_seq(data, b), token_b, amount_b),
            self.unique().to_bytes(32, "big"),
        )
        self.send(data, self.add_order(sign_order(order, [a, b])))

    @rule(data=st.data())
    def liar_equivocates(self, data: st.DataObject) -> None:
        """Two orders for one slot, sent at once to different validators, votes interleaved;
        the Byzantine validator votes for both."""
        liar = data.draw(st.sampled_from(LIARS))
        seq = self.truth.next_seq(liar.public_key)
        first, second = (
            self.add_order(self.net.transfer(liar, to, 1, seq, memo=b"%d" % self.unique()))
            for to in data.draw(st.permutations([k for k in ACCOUNTS if k is not liar]))[:2]
        )
        honest = data.draw(st.permutations(HONEST_VALIDATORS))
        cut = data.draw(st.integers(0, len(honest)))
        sends = [(v, first) for v in honest[:cut]] + [(v, second) for v in honest[cut:]]
        sends += [(BYZANTINE, first), (BYZANTINE, second)]
        for validator, order in data.draw(st.permutations(sends)):
            self.vote(validator, [order])
        for order in (first, second):
            self.certify_if_possible(order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def deliver_orders(self, data: st.DataObject) -> None:
        """A batch of any orders (honest, lying, already voted) reaches one validator."""
        validator = data.draw(st.sampled_from(VALIDATORS))
        batch = data.draw(
            st.lists(st.sampled_from(list(self.orders.values())), min_size=1, max_size=4)
        )
        self.vote(validator, batch)

    # Certificates

    @precondition(lambda self: self.votes)
    @rule(data=st.data())
    def form_certificate(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.votes)))
        votes = self.votes[order_id]
        voters = data.draw(st.sets(st.sampled_from(sorted(votes)), min_size=1))
        weight = sum(self.net.committee.members[i].weight for i in voters)
        try:
            cert = certify(self.net.committee, self.orders[order_id], [votes[i] for i in voters])
        except ValueError:
            assert weight < self.net.committee.quorum
            return
        self.record(cert)

    @precondition(lambda self: self.certs)
    @rule(data=st.data(), where=LEDGER_INDEXES)
    def deliver_certificates(self, data: st.DataObject, where: int) -> None:
        """Some certificates, in any order, duplicates included, in one or two batches."""
        picked = data.draw(st.lists(st.sampled_from(self.certs), min_size=1, max_size=8))
        cut = data.draw(st.integers(0, len(picked)))
        ledger, replica = self.target(where)
        self.deliver(ledger, replica, picked[:cut])
        self.deliver(ledger, replica, picked[cut:])

    @precondition(lambda self: self.certs)
    @rule(data=st.data(), where=LEDGER_INDEXES)
    def sync(self, data: st.DataObject, where: int) -> None:
        """Every certificate reaches a ledger, in any order: it catches up with the oracle."""
        ledger, replica = self.target(where)
        self.deliver(ledger, replica, data.draw(st.permutations(self.certs)))
        assert replica.pending == 0
        assert ledger.applied == self.truth.applied
        assert ledger.snapshot() == self.truth.snapshot()

    # Liveness

    @rule(data=st.data())
    def honest_client_finishes(self, data: st.DataObject) -> None:
        """With the Byzantine validator silent, an honest client's order is certified once
        the honest validators have caught up."""
        client = data.draw(st.sampled_from(HONEST))
        order = self.pending.get(client.public_key)
        if order is None:
            held = self.holdings(client)
            seq = self.truth.next_seq(client.public_key)
            if held:
                token, balance = held[0]
                order = self.net.transfer(
                    client, NOBODY, balance, seq, token, b"%d" % self.unique()
                )
            else:
                order = self.net.create_token(client, seq, 1, metadata=str(self.unique()))
            self.add_order(order)
        for validator in HONEST_VALIDATORS:
            ledger, replica = self.net.ledgers[validator], self.net.replicas[validator]
            self.deliver(ledger, replica, self.certs)
        votes = [self.vote(validator, [order])[0] for validator in HONEST_VALIDATORS]
        assert all(isinstance(v, Vote) for v in votes), votes
        self.record(certify(self.net.committee, order, [v for v in votes if isinstance(v, Vote)]))
        assert order.id in self.truth.applied

    # Invariants

    @invariant()
    def balances_are_never_negative(self) -> None:
        for ledger in self.ledgers():
            assert ledger.negative_balances() == []

    @invariant()
    def supply_is_conserved(self) -> None:
        for ledger in self.ledgers():
            assert ledger.supply_errors() == []

    @invariant()
    def the_same_certificates_give_the_same_state(self) -> None:
        states: dict[frozenset[bytes], Any] = {}
        for ledger in self.ledgers():
            snapshot = states.setdefault(frozenset(ledger.applied), ledger.snapshot())
            assert ledger.snapshot() == snapshot

    @invariant()
    def the_oracle_applied_every_certificate(self) -> None:
        assert self.oracle[1].pending == 0
        assert self.truth.applied == {cert.order_id for cert in self.certs}


LedgerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestLedger = LedgerMachine.TestCase
