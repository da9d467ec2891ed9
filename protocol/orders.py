"""Ledger orders: what an account owner signs to move tokens.

Three kinds of order, each naming the next sequence number of every account it spends from
(docs/protocol.md section 13):

- :class:`Transfer`: ``amount`` base units of ``token`` from ``sender`` to ``recipient``;
  a tip is a transfer whose ``memo`` is the id of the tipped video's manifest.
- :class:`CreateToken`: a creator mints a token with a fixed supply, all credited to them;
  supply 1 and decimals 0 make a collectible. The token's id is the order's id.
- :class:`Swap`: two legs, each an account giving an amount of a token to the other;
  both apply or neither.

A signed order travels as :class:`SignedOrder`: the kind, the exact canonical bytes of the
order record, and one Ed25519 signature per owner (:func:`owners` order) over::

    b"toktok/v1/" + kind (ASCII) + b"\\x00" + order bytes

The order id is ``SHA-256`` of those same signing-input bytes: it names the order and not
its signatures, so votes and certificates refer to it. ``network`` (the genesis id) keeps
an order from being replayed on another network.
"""

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar

from protocol.accounts import PUBLIC_KEY_LEN, SIGNATURE_LEN, AccountKey, verify
from protocol.codec import decode_record, encode_record, fld
from protocol.errors import DecodeError, Reject
from protocol.validate import CONTROL_CHARS, validate_created

ORDER_VERSION = 1
ORDER_DOMAIN = b"toktok/v1/"
NETWORK_ID_LEN = 32
TOKEN_ID_LEN = 32
ORDER_ID_LEN = 32
AMOUNT_MAX = 2**63 - 1
"""The largest amount or supply, in base units: every balance fits a signed 64-bit integer."""
SEQ_MAX = 2**63 - 1
MEMO_BYTES_MAX = 64
SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9]{0,11}")
"""A token symbol: an upper-case letter, then up to 11 upper-case letters or digits."""
TOKEN_NAME_BYTES_MAX = 64
METADATA_BYTES_MAX = 512
DECIMALS_MAX = 18
ORDER_BYTES_MAX = 1024
"""The largest canonical order record."""
PLATFORM_TOKEN = bytes(TOKEN_ID_LEN)
"""The id of the platform token, whose allocations the genesis makes."""

_KEY = {"len_min": PUBLIC_KEY_LEN, "len_max": PUBLIC_KEY_LEN}
_NETWORK = {"len_min": NETWORK_ID_LEN, "len_max": NETWORK_ID_LEN}
_TOKEN = {"len_min": TOKEN_ID_LEN, "len_max": TOKEN_ID_LEN}
_AMOUNT = {"value_min": 1, "value_max": AMOUNT_MAX}
_SEQ = {"value_max": SEQ_MAX}


@dataclass(frozen=True)
class Transfer:
    """``sender`` gives ``amount`` of ``token`` to ``recipient``."""

    KIND: ClassVar[str] = "transfer"
    network: bytes = fld(**_NETWORK)
    created_ms: int = fld()
    sender: bytes = fld(**_KEY)
    seq: int = fld(**_SEQ)
    token: bytes = fld(**_TOKEN)
    recipient: bytes = fld(**_KEY)
    amount: int = fld(**_AMOUNT)
    memo: bytes = fld(len_max=MEMO_BYTES_MAX)
    """Free bytes for the recipient; a tip carries the tipped manifest's id."""


@dataclass(frozen=True)
class CreateToken:
    """``creator`` mints ``supply`` base units of a new token, credited to themselves."""

    KIND: ClassVar[str] = "create_token"
    network: bytes = fld(**_NETWORK)
    created_ms: int = fld()
    creator: bytes = fld(**_KEY)
    seq: int = fld(**_SEQ)
    symbol: str = fld(len_min=1, len_max=12)
    name: str = fld(len_max=TOKEN_NAME_BYTES_MAX)
    supply: int = fld(**_AMOUNT)
    decimals: int = fld(value_max=DECIMALS_MAX)
    metadata: str = fld(len_max=METADATA_BYTES_MAX)


@dataclass(frozen=True)
class Leg:
    """One side of a swap: ``account`` gives ``amount`` of ``token`` to the other side."""

    account: bytes = fld(**_KEY)
    seq: int = fld(**_SEQ)
    token: bytes = fld(**_TOKEN)
    amount: int = fld(**_AMOUNT)


@dataclass(frozen=True)
class Swap:
    """Two accounts exchange tokens atomically: ``a`` gives its leg to ``b`` and back."""

    KIND: ClassVar[str] = "swap"
    network: bytes = fld(**_NETWORK)
    created_ms: int = fld()
    a: Leg = fld()
    b: Leg = fld()
    offer: bytes = fld(len_max=32)
    """The id of the standing offer this swap fills, or empty."""


Order = Transfer | CreateToken | Swap

ORDER_TYPES: dict[str, type[Order]] = {cls.KIND: cls for cls in (Transfer, CreateToken, Swap)}


def owners(order: Order) -> tuple[bytes, ...]:
    """The accounts that must sign ``order``, in the order their signatures are listed."""
    if isinstance(order, Transfer):
        return (order.sender,)
    if isinstance(order, CreateToken):
        return (order.creator,)
    return (order.a.account, order.b.account)


def spends(order: Order) -> tuple[tuple[bytes, int], ...]:
    """The ``(account, sequence number)`` slots ``order`` takes, one per owner."""
    if isinstance(order, Transfer):
        return ((order.sender, order.seq),)
    if isinstance(order, CreateToken):
        return ((order.creator, order.seq),)
    return ((order.a.account, order.a.seq), (order.b.account, order.b.seq))


@dataclass(frozen=True)
class SignedOrderWire:
    """The wire form of a signed order (see module doc)."""

    v: int = fld(value_min=0, value_max=255)
    kind: str = fld(len_min=1, len_max=16)
    order: bytes = fld(len_min=1, len_max=ORDER_BYTES_MAX)
    sigs: tuple[bytes, ...] = fld(items_min=1, items_max=2, item_len_max=SIGNATURE_LEN)


SIGNED_ORDER_BYTES_MAX = ORDER_BYTES_MAX + 2 * (SIGNATURE_LEN + 2) + 64


@dataclass(frozen=True)
class SignedOrder:
    """An order whose owners' signatures checked, with its exact bytes and id."""

    kind: str
    order_bytes: bytes
    sigs: tuple[bytes, ...]
    order: Order

    @functools.cached_property
    def id(self) -> bytes:
        return order_id(self.kind, self.order_bytes)

    @functools.cached_property
    def raw(self) -> bytes:
        """The wire bytes: the canonical :class:`SignedOrderWire`."""
        wire = SignedOrderWire(
            v=ORDER_VERSION, kind=self.kind, order=self.order_bytes, sigs=self.sigs
        )
        return encode_record(wire)


def order_signing_input(kind: str, order_bytes: bytes) -> bytes:
    """The bytes each owner signs, and whose SHA-256 is the order id."""
    return ORDER_DOMAIN + kind.encode("ascii") + b"\x00" + order_bytes


def order_id(kind: str, order_bytes: bytes) -> bytes:
    return hashlib.sha256(order_signing_input(kind, order_bytes)).digest()


def encode_order(order: Order) -> bytes:
    """The canonical bytes of ``order``. Raises :class:`DecodeError` past a field limit."""
    body = encode_record(order)
    decode_record(type(order), body, bytes_max=ORDER_BYTES_MAX)
    return body


def sign_order(order: Order, keys: list[AccountKey]) -> SignedOrder:
    """Encode ``order`` and sign it with ``keys``, one per owner, in :func:`owners` order.

    Raises :class:`ValueError` when the keys are not the owners'; :class:`DecodeError` when
    the order breaks a field limit.
    """
    if tuple(key.public_key for key in keys) != owners(order):
        raise ValueError("an order is signed by exactly its owners, in owners() order")
    body = encode_order(order)
    message = order_signing_input(order.KIND, body)
    sigs = tuple(key.sign(message) for key in keys)
    return SignedOrder(order.KIND, body, sigs, order)


def propose_swap(swap: Swap, key: AccountKey) -> SignedOrder:
    """Sign the ``a`` leg's half of ``swap``: a proposal the ``b`` account may co-sign.

    Raises :class:`ValueError` when ``key`` is not the ``a`` leg's account;
    :class:`DecodeError` when the swap breaks a field limit.
    """
    if key.public_key != swap.a.account:
        raise ValueError("a swap is proposed by its a leg's account")
    body = encode_order(swap)
    return SignedOrder(swap.KIND, body, (key.sign(order_signing_input(swap.KIND, body)),), swap)


def open_proposal(raw: bytes, network: bytes, now_ms: int) -> SignedOrder:
    """Decode a swap proposal and check its rules and its one signature, the ``a`` leg's.

    Raises :class:`Reject` (or :class:`protocol.errors.Ignore` for one dated in the future).
    """
    wire = decode_signed_order(raw)
    order, _ = open_order(wire.kind, wire.order, network, now_ms)
    # [REJECT] A proposal is a swap signed by its a leg's account alone.
    if not isinstance(order, Swap) or len(wire.sigs) != 1:
        raise Reject("a swap proposal is a swap with one signature")
    message = order_signing_input(wire.kind, wire.order)
    if not verify(order.a.account, message, wire.sigs[0]):
        raise Reject("the proposal's signature does not verify")
    return SignedOrder(wire.kind, wire.order, wire.sigs, order)


def cosign(partial: SignedOrder, key: AccountKey) -> SignedOrder:
    """Add ``key``'s signature to a swap that holds only the first owner's.

    Raises :class:`ValueError` when ``key`` is not the swap's second owner or the swap
    already has both signatures.
    """
    order = partial.order
    if not isinstance(order, Swap) or len(partial.sigs) != 1:
        raise ValueError("only a swap signed by its first owner takes a second signature")
    if key.public_key != order.b.account:
        raise ValueError("the second signature is the b leg's account's")
    sig = key.sign(order_signing_input(partial.kind, partial.order_bytes))
    return SignedOrder(partial.kind, partial.order_bytes, (*partial.sigs, sig), order)


def decode_signed_order(raw: bytes) -> SignedOrderWire:
    """Decode the wire form and check its version, not its signatures. Raises
    :class:`Reject`."""
    # [REJECT] The signed order is the canonical encoding of a SignedOrderWire.
    try:
        wire = decode_record(SignedOrderWire, raw, bytes_max=SIGNED_ORDER_BYTES_MAX)
    except DecodeError as exc:
        raise Reject(f"malformed signed order: {exc}") from exc
    # [REJECT] The version is one this node speaks.
    if wire.v != ORDER_VERSION:
        raise Reject(f"signed order version {wire.v} is not {ORDER_VERSION}")
    return wire


def open_order(kind: str, order_bytes: bytes, network: bytes, now_ms: int) -> tuple[Order, bytes]:
    """Decode and check an order's record; return it and its id (signatures unchecked).

    Raises :class:`Reject` for a rule broken, :class:`protocol.errors.Ignore` for an order
    dated too far in the future.
    """
    # [REJECT] The kind is an order kind.
    cls = ORDER_TYPES.get(kind)
    if cls is None:
        raise Reject(f"unknown order kind {kind[:16]!r}")
    # [REJECT] The order is the canonical encoding of its kind's record.
    try:
        order = decode_record(cls, order_bytes, bytes_max=ORDER_BYTES_MAX)
    except DecodeError as exc:
        raise Reject(f"malformed {kind} order: {exc}") from exc
    # [REJECT] The order is for this network.
    if order.network != network:
        raise Reject("order is for another network")
    validate_created(order.created_ms, now_ms)
    validate_order(order)
    return order, order_id(kind, order_bytes)


def validate_order(order: Order) -> None:
    """The rules of an order's fields beyond their types and limits. Raises :class:`Reject`."""
    if isinstance(order, Transfer):
        # [REJECT] A transfer does not send to its own sender.
        if order.recipient == order.sender:
            raise Reject("a transfer to oneself")
    elif isinstance(order, CreateToken):
        # [REJECT] The symbol is an upper-case letter then up to 11 letters or digits.
        if SYMBOL_RE.fullmatch(order.symbol) is None:
            raise Reject(f"token symbol {order.symbol[:16]!r} is not A-Z then A-Z0-9")
        # [REJECT] The name and metadata hold no control characters.
        for what, text in (("name", order.name), ("metadata", order.metadata)):
            # The same list as every other text of the protocol: C0, C1 and the
            # bidirectional overrides and isolates, which could disguise a token's name.
            if not CONTROL_CHARS.isdisjoint(text):
                raise Reject(f"token {what} holds control characters")
    else:
        # [REJECT] A swap's legs are two different accounts.
        if order.a.account == order.b.account:
            raise Reject("a swap between an account and itself")
        # [REJECT] A swap's legs give two different tokens.
        if order.a.token == order.b.token:
            raise Reject("a swap of a token for itself")
        # [REJECT] A swap's offer field is empty or an offer id.
        if order.offer and len(order.offer) != 32:
            raise Reject("a swap's offer is empty or 32 bytes")


def verify_order(raw: bytes, network: bytes, now_ms: int) -> SignedOrder:
    """Decode a signed order, check its rules and every owner's signature.

    This is what a validator runs on every order a client submits. Raises :class:`Reject`
    (or :class:`protocol.errors.Ignore` for an order dated in the future).
    """
    wire = decode_signed_order(raw)
    order, _ = open_order(wire.kind, wire.order, network, now_ms)
    keys = owners(order)
    # [REJECT] There is one signature per owner.
    if len(wire.sigs) != len(keys):
        raise Reject(f"{wire.kind} needs {len(keys)} signatures, has {len(wire.sigs)}")
    message = order_signing_input(wire.kind, wire.order)
    for key, sig in zip(keys, wire.sigs, strict=True):
        # [REJECT] Every owner's signature verifies over the order's signing input.
        if not verify(key, message, sig):
            raise Reject(f"{wire.kind} order: an owner's signature does not verify")
    return SignedOrder(wire.kind, wire.order, wire.sigs, order)
