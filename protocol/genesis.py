"""The genesis: what a network starts from, and its id.

A genesis names the committee (validator keys and weights), the platform token and its
initial allocations. Its canonical bytes hash to the network id, which every order and
vote names, so two networks never accept each other's orders:

    network id = SHA-256(b"toktok/v1/genesis\\x00" + genesis bytes)
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from protocol.accounts import PUBLIC_KEY_LEN
from protocol.certs import VALIDATORS_MAX, Committee, Member
from protocol.codec import decode_record, encode_record, fld
from protocol.errors import DecodeError
from protocol.ledger import LedgerState, Overlay, TokenInfo
from protocol.orders import (
    AMOUNT_MAX,
    DECIMALS_MAX,
    METADATA_BYTES_MAX,
    PLATFORM_TOKEN,
    SYMBOL_RE,
    TOKEN_NAME_BYTES_MAX,
)

GENESIS_DOMAIN = b"toktok/v1/genesis\x00"
GENESIS_BYTES_MAX = 1024 * 1024
ALLOCATIONS_MAX = 10_000
PLATFORM_CREATOR = bytes(PUBLIC_KEY_LEN)
"""The platform token's ``creator``: no account, since the genesis made it."""


@dataclass(frozen=True)
class Allocation:
    account: bytes = fld(len_min=PUBLIC_KEY_LEN, len_max=PUBLIC_KEY_LEN)
    amount: int = fld(value_min=1, value_max=AMOUNT_MAX)


@dataclass(frozen=True)
class Genesis:
    """A network's starting point (see module doc)."""

    name: str = fld(len_min=1, len_max=64)
    created_ms: int = fld()
    validators: tuple[Member, ...] = fld(items_min=1, items_max=VALIDATORS_MAX)
    symbol: str = fld(len_min=1, len_max=12)
    """The platform token's symbol."""
    token_name: str = fld(len_max=TOKEN_NAME_BYTES_MAX)
    decimals: int = fld(value_max=DECIMALS_MAX)
    metadata: str = fld(len_max=METADATA_BYTES_MAX)
    allocations: tuple[Allocation, ...] = fld(items_min=1, items_max=ALLOCATIONS_MAX)


def encode_genesis(genesis: Genesis) -> bytes:
    """The canonical bytes of ``genesis``. Raises :class:`ValueError` for a bad genesis."""
    check_genesis(genesis)
    raw = encode_record(genesis)
    decode_genesis(raw)  # the field limits: nothing is written that a node would refuse
    return raw


def decode_genesis(raw: bytes) -> Genesis:
    """Decode and check a genesis. Raises :class:`ValueError` naming what is wrong."""
    try:
        genesis = decode_record(Genesis, raw, bytes_max=GENESIS_BYTES_MAX)
    except DecodeError as exc:
        raise ValueError(f"not a genesis: {exc}") from exc
    check_genesis(genesis)
    return genesis


def check_genesis(genesis: Genesis) -> None:
    """Raise :class:`ValueError` when the genesis breaks a rule beyond its field limits."""
    if SYMBOL_RE.fullmatch(genesis.symbol) is None:
        raise ValueError(f"platform symbol {genesis.symbol!r} is not A-Z then A-Z0-9")
    if len({m.key for m in genesis.validators}) != len(genesis.validators):
        raise ValueError("a validator key appears twice")
    accounts = [a.account for a in genesis.allocations]
    if len(set(accounts)) != len(accounts):
        raise ValueError("an account has two allocations")
    if sum(a.amount for a in genesis.allocations) > AMOUNT_MAX:
        raise ValueError(f"allocations add up to more than {AMOUNT_MAX}")


def network_id(raw: bytes) -> bytes:
    """The network id of the genesis whose canonical bytes are ``raw``."""
    return hashlib.sha256(GENESIS_DOMAIN + raw).digest()


def committee_of(genesis: Genesis) -> Committee:
    return Committee(network_id(encode_record(genesis)), genesis.validators)


def platform_token(genesis: Genesis) -> TokenInfo:
    return TokenInfo(
        creator=PLATFORM_CREATOR,
        symbol=genesis.symbol,
        name=genesis.token_name,
        supply=sum(a.amount for a in genesis.allocations),
        decimals=genesis.decimals,
        metadata=genesis.metadata,
    )


def genesis_overlay(genesis: Genesis, empty: LedgerState) -> Overlay:
    """The writes that turn an empty ledger into the genesis state."""
    overlay = Overlay(empty)
    overlay.tokens[PLATFORM_TOKEN] = platform_token(genesis)
    for allocation in genesis.allocations:
        overlay.balances[(allocation.account, PLATFORM_TOKEN)] = allocation.amount
    return overlay


def genesis_summary(genesis: Genesis) -> dict[str, Any]:
    """A JSON-ready description, for the CLI."""
    committee = committee_of(genesis)
    return {
        "name": genesis.name,
        "network": committee.network.hex(),
        "validators": len(genesis.validators),
        "quorum": committee.quorum,
        "faulty_max": committee.faulty_max,
        "symbol": genesis.symbol,
        "supply": sum(a.amount for a in genesis.allocations),
    }
