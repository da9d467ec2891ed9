"""Shared builders for the ledger tests: keys, a genesis, an in-memory ledger, a small network.

Everything is deterministic: keys come from labels (:func:`key`), times are fixed
(:data:`NOW_MS`), and Ed25519 signatures are deterministic, so two runs build the same bytes.

- :class:`MemoryLedger` is a :class:`protocol.ledger.LedgerState` and
  :class:`protocol.ledger.LockState` held in dicts: it commits an overlay as the node commits
  one batch, and offers the checks the invariants need (no negative balance, conserved supply).
- :class:`Net` is a committee of validators with their ledgers, which signs, votes and certifies
  the way a node does: bytes in (``verify_order``, ``verify_certificate``), votes out.
"""

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from protocol.accounts import AccountKey
from protocol.certs import (
    Certificate,
    Committee,
    Member,
    VerifiedRoots,
    Vote,
    certify,
    sign_votes,
    verify_certificate,
)
from protocol.codec import encode_record
from protocol.genesis import Allocation, Genesis, committee_of, genesis_overlay
from protocol.ledger import (
    OrderRefused,
    Overlay,
    Replica,
    Slot,
    TokenInfo,
    Validator,
)
from protocol.orders import (
    PLATFORM_TOKEN,
    CreateToken,
    Leg,
    SignedOrder,
    Swap,
    Transfer,
    sign_order,
    verify_order,
)

NOW_MS = 1_700_000_000_000
"""The clock of every machine in these tests."""
CREATED_MS = NOW_MS - 60_000


def key(label: str) -> AccountKey:
    """A deterministic key: its seed is SHA-256 of ``label``."""
    return AccountKey(hashlib.sha256(label.encode("utf-8")).digest())


VALIDATOR_KEYS = [key(f"validator {i}") for i in range(4)]
ALICE = key("alice")
BOB = key("bob")
CAROL = key("carol")
MALLORY = key("mallory")
DAVE = key("dave")
"""No allocation in the default genesis."""
GENESIS_AMOUNT = 1000


def make_genesis(
    validators: Sequence[AccountKey] = VALIDATOR_KEYS,
    weights: Sequence[int] | None = None,
    holders: Iterable[tuple[AccountKey, int]] = (
        (ALICE, GENESIS_AMOUNT),
        (BOB, GENESIS_AMOUNT),
        (CAROL, GENESIS_AMOUNT),
        (MALLORY, GENESIS_AMOUNT),
    ),
    **changes: Any,
) -> Genesis:
    """A test network's genesis: ``validators`` (weight 1 each by default), ``holders`` of
    platform tokens; ``changes`` replace any other field (``allocations`` too)."""
    weights = [1] * len(validators) if weights is None else weights
    genesis = Genesis(
        name="testnet",
        created_ms=CREATED_MS - 86_400_000,
        validators=tuple(Member(k.public_key, w) for k, w in zip(validators, weights, strict=True)),
        symbol="TOK",
        token_name="Toktok",
        decimals=2,
        metadata="",
        allocations=tuple(Allocation(k.public_key, amount) for k, amount in holders),
    )
    return dataclasses.replace(genesis, **changes)


class MemoryLedger:
    """A ledger (and a validator's locks) in dicts, committed one overlay at a time."""

    def __init__(self) -> None:
        self.seqs: dict[bytes, int] = {}
        self.balances: dict[tuple[bytes, bytes], int] = {}
        self.tokens: dict[bytes, TokenInfo] = {}
        self.slots: dict[Slot, bytes] = {}
        self.locks: dict[Slot, bytes] = {}
        self.applied: set[bytes] = set()
        """Ids of the certified orders applied here."""

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "MemoryLedger":
        ledger = cls()
        ledger.commit(genesis_overlay(genesis, ledger))
        return ledger

    # LedgerState and LockState

    def next_seq(self, account: bytes) -> int:
        return self.seqs.get(account, 0)

    def balance(self, account: bytes, token: bytes) -> int:
        return self.balances.get((account, token), 0)

    def token(self, token_id: bytes) -> TokenInfo | None:
        return self.tokens.get(token_id)

    def certified(self, account: bytes, seq: int) -> bytes | None:
        return self.slots.get((account, seq))

    def lock(self, account: bytes, seq: int) -> bytes | None:
        return self.locks.get((account, seq))

    # Writes

    def commit(self, overlay: Overlay) -> None:
        """Write ``overlay`` as one batch."""
        self.seqs.update(overlay.seqs)
        self.balances.update(overlay.balances)
        self.tokens.update(overlay.tokens)
        self.slots.update(overlay.slots)
        self.applied.update(cert.order_id for cert in overlay.applied)

    # Checks

    def negative_balances(self) -> list[tuple[bytes, bytes, int]]:
        return [(a, t, v) for (a, t), v in self.balances.items() if v < 0]

    def supply_errors(self) -> list[str]:
        """Tokens whose balances do not add up to their supply."""
        totals: dict[bytes, int] = {}
        for (_, token), value in self.balances.items():
            totals[token] = totals.get(token, 0) + value
        errors = [f"balances of unknown token {t.hex()[:16]}" for t in totals.keys() - self.tokens]
        for token, info in self.tokens.items():
            if totals.get(token, 0) != info.supply:
                errors.append(f"token {token.hex()[:16]}: {totals.get(token)} != {info.supply}")
        return errors

    def snapshot(self) -> tuple[Any, ...]:
        """The ledger's content, comparable between replicas (zero balances left out)."""
        return (
            sorted(self.seqs.items()),
            sorted((k, v) for k, v in self.balances.items() if v),
            sorted((k, encode_record(v)) for k, v in self.tokens.items()),
            sorted(self.slots.items()),
        )


class Net:
    """A committee, one :class:`MemoryLedger` and :class:`Replica` per validator, and the
    steps a client and a node take: sign, verify, vote, certify, apply."""

    def __init__(self, genesis: Genesis | None = None, keys: Sequence[AccountKey] = VALIDATOR_KEYS):
        self.genesis = make_genesis() if genesis is None else genesis
        self.committee: Committee = committee_of(self.genesis)
        self.network = self.committee.network
        self.keys = list(keys)
        self.validators = [Validator(self.committee, k) for k in self.keys]
        self.ledgers = [self.ledger() for _ in self.keys]
        self.replicas = [Replica() for _ in self.keys]
        self.roots = VerifiedRoots()

    def ledger(self) -> MemoryLedger:
        """A fresh ledger at the genesis state."""
        return MemoryLedger.from_genesis(self.genesis)

    # Orders

    def transfer(
        self,
        sender: AccountKey,
        recipient: AccountKey | bytes,
        amount: int,
        seq: int = 0,
        token: bytes = PLATFORM_TOKEN,
        memo: bytes = b"",
        created_ms: int = CREATED_MS,
    ) -> SignedOrder:
        to = recipient if isinstance(recipient, bytes) else recipient.public_key
        order = Transfer(self.network, created_ms, sender.public_key, seq, token, to, amount, memo)
        return sign_order(order, [sender])

    def create_token(
        self,
        creator: AccountKey,
        seq: int = 0,
        supply: int = 100,
        symbol: str = "FAN",
        **changes: Any,
    ) -> SignedOrder:
        order = CreateToken(
            self.network, CREATED_MS, creator.public_key, seq, symbol, "Fan token", supply, 0, ""
        )
        return sign_order(dataclasses.replace(order, **changes), [creator])

    def swap(
        self,
        a: tuple[AccountKey, int, bytes, int],
        b: tuple[AccountKey, int, bytes, int],
        offer: bytes = b"",
    ) -> SignedOrder:
        """A swap signed by both sides: each side is (key, seq, token given, amount given)."""
        legs = [Leg(k.public_key, seq, token, amount) for k, seq, token, amount in (a, b)]
        order = Swap(self.network, CREATED_MS, legs[0], legs[1], offer)
        return sign_order(order, [a[0], b[0]])

    # Validators

    def vote(self, index: int, batch: Sequence[SignedOrder]) -> list[Vote | OrderRefused]:
        """Validator ``index`` checks ``batch`` as received bytes and votes; its locks are
        stored before the votes are returned."""
        received = [verify_order(s.raw, self.network, NOW_MS) for s in batch]
        results, locks = self.validators[index].vote(
            self.ledgers[index], self.ledgers[index], received
        )
        self.ledgers[index].locks.update(locks)
        return results

    def votes_for(self, signed: SignedOrder, voters: Iterable[int]) -> list[Vote]:
        """Votes of ``voters`` for ``signed`` alone; raises the refusal of one that refuses."""
        votes = []
        for index in voters:
            (result,) = self.vote(index, [signed])
            if isinstance(result, OrderRefused):
                raise result
            votes.append(result)
        return votes

    def byzantine_votes(self, index: int, order_ids: Sequence[bytes]) -> list[Vote]:
        """Validator ``index`` signs ``order_ids`` with no check at all."""
        return sign_votes(self.committee, index, self.keys[index], order_ids)

    def certificate(self, signed: SignedOrder, voters: Iterable[int] = (0, 1, 2)) -> Certificate:
        """Certify ``signed`` with the honest votes of ``voters``, through the bytes."""
        cert = certify(self.committee, signed, self.votes_for(signed, voters))
        return self.check(cert.raw)

    def check(self, raw: bytes) -> Certificate:
        return verify_certificate(raw, self.committee, self.roots, NOW_MS)

    def apply(self, index: int, certificates: Iterable[Certificate]) -> Overlay:
        """Validator ``index``'s replica applies ``certificates``; the overlay is committed."""
        overlay = self.replicas[index].apply(self.ledgers[index], certificates)
        self.ledgers[index].commit(overlay)
        return overlay

    def apply_all(self, certificates: Sequence[Certificate]) -> None:
        for index in range(len(self.keys)):
            self.apply(index, certificates)

    def settle(self, signed: SignedOrder, voters: Iterable[int] = (0, 1, 2)) -> Certificate:
        """Certify ``signed`` and apply it at every validator."""
        cert = self.certificate(signed, voters)
        self.apply_all([cert])
        return cert


def replay(net: Net, certificates: Iterable[Certificate]) -> tuple[MemoryLedger, Replica, Overlay]:
    """A fresh replica and ledger that applied ``certificates`` in one call."""
    ledger = net.ledger()
    replica = Replica()
    overlay = replica.apply(ledger, certificates)
    ledger.commit(overlay)
    return ledger, replica, overlay
