"""The ledger's state machines: what a validator signs and how every node applies.

Both are sans-IO. They read the ledger through :class:`LedgerState` (the node passes its
LevelDB store, the simulator and tests an in-memory one) and write into an
:class:`Overlay`, which the caller commits in one atomic batch.

- :class:`Validator` votes for an order only when each account it spends from is at the
  order's sequence number, no other order holds that (account, sequence number), and the
  balances cover it. Its new locks must be stored before its votes leave the node.
- :class:`Replica` applies certificates per account in sequence order. A certificate that
  comes early (a gap in the sequence, or a credit it spends not yet applied here) waits
  in a bounded buffer and applies as soon as it can. Balances only add up, so the state
  after applying a set of certificates does not depend on the order they came in.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol.accounts import PUBLIC_KEY_LEN, AccountKey
from protocol.certs import Certificate, Committee, Vote, sign_votes
from protocol.codec import fld
from protocol.errors import ProtocolError
from protocol.orders import (
    AMOUNT_MAX,
    DECIMALS_MAX,
    METADATA_BYTES_MAX,
    TOKEN_NAME_BYTES_MAX,
    CreateToken,
    Order,
    SignedOrder,
    Swap,
    Transfer,
    spends,
)

PENDING_MAX = 100_000
"""Certificates a replica holds while they wait for a gap or a credit."""

Slot = tuple[bytes, int]
"""(account, sequence number)."""


class OrderRefused(ProtocolError):
    """A validator will not vote for an order; the message says why."""


class WrongSequence(OrderRefused):
    """The order's sequence number is not the account's next one."""


class ConflictingOrder(OrderRefused):
    """Another order already holds this (account, sequence number)."""


class InsufficientFunds(OrderRefused):
    """The balance does not cover the amount."""


class UnknownToken(OrderRefused):
    """The token named was never created (here, yet)."""


class ConflictingCertificate(ProtocolError):
    """Two certificates for one (account, sequence number): more than f validators lied."""


@dataclass(frozen=True)
class TokenInfo:
    """A token as its create-token order made it (the platform token's comes from genesis)."""

    creator: bytes = fld(len_min=PUBLIC_KEY_LEN, len_max=PUBLIC_KEY_LEN)
    symbol: str = fld(len_min=1, len_max=12)
    name: str = fld(len_max=TOKEN_NAME_BYTES_MAX)
    supply: int = fld(value_min=1, value_max=AMOUNT_MAX)
    decimals: int = fld(value_max=DECIMALS_MAX)
    metadata: str = fld(len_max=METADATA_BYTES_MAX)


class LedgerState(Protocol):
    """What the machines read. Unknown accounts are at sequence 0 with empty balances."""

    def next_seq(self, account: bytes) -> int: ...

    def balance(self, account: bytes, token: bytes) -> int: ...

    def token(self, token_id: bytes) -> TokenInfo | None: ...

    def certified(self, account: bytes, seq: int) -> bytes | None:
        """The order id certified and applied at this slot, if any."""
        ...


class LockState(Protocol):
    """A validator's votes so far: which order holds each slot it voted on."""

    def lock(self, account: bytes, seq: int) -> bytes | None: ...


@dataclass
class Overlay:
    """Changes over a :class:`LedgerState`, read through; committed by the caller at once."""

    base: LedgerState
    seqs: dict[bytes, int] = field(default_factory=dict)
    balances: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    tokens: dict[bytes, TokenInfo] = field(default_factory=dict)
    slots: dict[Slot, bytes] = field(default_factory=dict)
    applied: list[Certificate] = field(default_factory=list)
    """Certificates applied, in the order they applied."""
    conflicts: list[str] = field(default_factory=list)
    """Why certificates were dropped as conflicting with applied ones (see
    :class:`ConflictingCertificate`): an alarm, since only a Byzantine quorum causes it."""

    def next_seq(self, account: bytes) -> int:
        seq = self.seqs.get(account)
        return self.base.next_seq(account) if seq is None else seq

    def balance(self, account: bytes, token: bytes) -> int:
        value = self.balances.get((account, token))
        return self.base.balance(account, token) if value is None else value

    def token(self, token_id: bytes) -> TokenInfo | None:
        info = self.tokens.get(token_id)
        return self.base.token(token_id) if info is None else info

    def certified(self, account: bytes, seq: int) -> bytes | None:
        oid = self.slots.get((account, seq))
        return self.base.certified(account, seq) if oid is None else oid

    def add(self, account: bytes, token: bytes, amount: int) -> None:
        self.balances[(account, token)] = self.balance(account, token) + amount


def token_of_order(order: CreateToken) -> TokenInfo:
    return TokenInfo(
        creator=order.creator,
        symbol=order.symbol,
        name=order.name,
        supply=order.supply,
        decimals=order.decimals,
        metadata=order.metadata,
    )


def debits(order: Order) -> list[tuple[bytes, bytes, int]]:
    """(account, token, amount) taken from each spending account."""
    if isinstance(order, Transfer):
        return [(order.sender, order.token, order.amount)]
    if isinstance(order, Swap):
        return [
            (order.a.account, order.a.token, order.a.amount),
            (order.b.account, order.b.token, order.b.amount),
        ]
    return []


def credits(order: Order, oid: bytes) -> list[tuple[bytes, bytes, int]]:
    """(account, token, amount) given to each receiving account."""
    if isinstance(order, Transfer):
        return [(order.recipient, order.token, order.amount)]
    if isinstance(order, Swap):
        return [
            (order.b.account, order.a.token, order.a.amount),
            (order.a.account, order.b.token, order.b.amount),
        ]
    return [(order.creator, oid, order.supply)]


def check_funds(state: LedgerState, order: Order) -> None:
    """Raise :class:`UnknownToken` or :class:`InsufficientFunds` unless ``state`` covers
    every debit of ``order``."""
    for account, token, amount in debits(order):
        if state.token(token) is None:
            raise UnknownToken(f"token {token.hex()} does not exist")
        held = state.balance(account, token)
        if held < amount:
            raise InsufficientFunds(
                f"account {account.hex()[:16]} holds {held} of token {token.hex()[:16]},"
                f" the order spends {amount}"
            )


def check_sequence(state: LedgerState, order: Order, oid: bytes) -> None:
    """Raise :class:`WrongSequence` unless every slot ``order`` takes is its account's next."""
    for account, seq in spends(order):
        expected = state.next_seq(account)
        if seq == expected:
            continue
        if seq < expected and state.certified(account, seq) == oid:
            raise WrongSequence(f"order already certified at sequence number {seq}")
        raise WrongSequence(
            f"account {account.hex()[:16]} is at sequence number {expected}, not {seq}"
        )


def apply_order(state: Overlay, order: Order, oid: bytes) -> None:
    """Apply a certified order whose slots are next and whose funds are present."""
    for account, seq in spends(order):
        state.seqs[account] = seq + 1
        state.slots[(account, seq)] = oid
    for account, token, amount in debits(order):
        state.add(account, token, -amount)
    for account, token, amount in credits(order, oid):
        state.add(account, token, amount)
    if isinstance(order, CreateToken):
        state.tokens[oid] = token_of_order(order)


class Validator:
    """One committee member's voting rule (see module doc)."""

    def __init__(self, committee: Committee, key: AccountKey) -> None:
        index = committee.index_of(key.public_key)
        if index is None:
            raise ValueError("the key is not a member of the committee")
        self.committee = committee
        self.index = index
        self._key = key

    def check(
        self, state: LedgerState, locks: LockState, signed: SignedOrder, new: dict[Slot, bytes]
    ) -> None:
        """Raise :class:`OrderRefused` unless this validator may vote for ``signed``.

        ``new`` holds the locks taken earlier in the same batch; on success the order's
        slots are added to it.
        """
        order, oid = signed.order, signed.id
        check_sequence(state, order, oid)
        for slot in spends(order):
            held = new.get(slot) or locks.lock(*slot)
            if held is not None and held != oid:
                raise ConflictingOrder(
                    f"account {slot[0].hex()[:16]} already signed another order"
                    f" for sequence number {slot[1]}"
                )
        check_funds(state, order)
        for slot in spends(order):
            new[slot] = oid

    def vote(
        self, state: LedgerState, locks: LockState, batch: Sequence[SignedOrder]
    ) -> tuple[list[Vote | OrderRefused], dict[Slot, bytes]]:
        """Vote for what it may in ``batch``: one result per order, and the new locks.

        The caller stores the locks (durably) before sending any vote.
        """
        new: dict[Slot, bytes] = {}
        refused: dict[int, OrderRefused] = {}
        accepted: list[int] = []
        for i, signed in enumerate(batch):
            try:
                self.check(state, locks, signed, new)
            except OrderRefused as exc:
                refused[i] = exc
            else:
                accepted.append(i)
        votes: dict[int, Vote] = {}
        if accepted:
            ids = [batch[i].id for i in accepted]
            signed_votes = sign_votes(self.committee, self.index, self._key, ids)
            votes = dict(zip(accepted, signed_votes, strict=True))
        return [votes[i] if i in votes else refused[i] for i in range(len(batch))], new


class Replica:
    """Applies certificates in per-account sequence order, buffering early ones."""

    def __init__(self, pending_max: int = PENDING_MAX) -> None:
        self._pending_max = pending_max
        self._waiting: dict[Slot, Certificate] = {}
        """Early certificates by each slot they take (a swap is listed under both). One
        that waits for a credit is its account's next slot, so looking at each account's
        next slot when it changes or is credited finds everything that may apply."""
        self._ids: set[bytes] = set()
        """The order ids of the certificates in ``_waiting``."""

    @property
    def pending(self) -> int:
        return len(self._ids)

    def pending_ids(self) -> set[bytes]:
        """The order ids of the certificates waiting here."""
        return set(self._ids)

    def is_pending(self, order_id: bytes) -> bool:
        """Whether the certificate of ``order_id`` waits here."""
        return order_id in self._ids

    def apply(self, state: LedgerState, certificates: Iterable[Certificate]) -> Overlay:
        """Apply what can be applied of ``certificates`` (and of those they unblock).

        Returns the overlay to commit; its ``applied`` lists what applied. Certificates
        already applied are skipped; early ones wait. One that names a slot taken by
        another order (which only more than f Byzantine validators can cause) is dropped
        and reported in ``conflicts``.
        """
        overlay = Overlay(state)
        for cert in certificates:
            try:
                if self._known(overlay, cert):
                    continue
            except ConflictingCertificate as exc:
                overlay.conflicts.append(str(exc))
                continue
            if not self._try(overlay, cert):
                self._wait(cert)
        return overlay

    def _known(self, state: LedgerState, cert: Certificate) -> bool:
        known = False
        for account, seq in spends(cert.order):
            if seq < state.next_seq(account):
                held = state.certified(account, seq)
                if held != cert.order_id:
                    raise ConflictingCertificate(
                        f"account {account.hex()[:16]} sequence number {seq} is certified"
                        f" for order {(held or b'').hex()[:16]}, and now for"
                        f" {cert.order_id.hex()[:16]}"
                    )
                known = True
            elif self._waiting.get((account, seq), cert).order_id != cert.order_id:
                raise ConflictingCertificate(
                    f"two certificates for account {account.hex()[:16]} sequence number {seq}"
                )
        return known

    def _ready(self, state: LedgerState, cert: Certificate) -> bool:
        for account, seq in spends(cert.order):
            if state.next_seq(account) != seq:
                return False
        try:
            check_funds(state, cert.order)
        except OrderRefused:
            return False
        return True

    def _try(self, overlay: Overlay, cert: Certificate) -> bool:
        """Apply ``cert`` if it is ready, then whatever waited on it; return whether it was.

        What it unblocks applies in an order fixed by the certificates alone (the accounts
        touched, in the order the order names them), so every node lists the same
        ``applied`` for the same arrivals.
        """
        if not self._ready(overlay, cert):
            return False
        queue = [cert]
        while queue:
            current = queue.pop(0)
            if current is not cert and not self._ready(overlay, current):
                continue
            self._unwait(current)
            apply_order(overlay, current.order, current.order_id)
            overlay.applied.append(current)
            touched = [account for account, _ in spends(current.order)]
            touched += [account for account, _, _ in credits(current.order, current.order_id)]
            for account in dict.fromkeys(touched):
                head = self._waiting.get((account, overlay.next_seq(account)))
                if head is not None and head not in queue and self._ready(overlay, head):
                    queue.append(head)
        return True

    def _wait(self, cert: Certificate) -> None:
        if (spends(cert.order)[0]) in self._waiting:
            return
        if len(self._waiting) >= self._pending_max:
            return  # dropped: it comes again by sync
        for slot in spends(cert.order):
            self._waiting[slot] = cert
        self._ids.add(cert.order_id)

    def _unwait(self, cert: Certificate) -> None:
        for slot in spends(cert.order):
            self._waiting.pop(slot, None)
        self._ids.discard(cert.order_id)
