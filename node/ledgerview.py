"""How the ledger looks to people: amounts with decimals, tokens and history entries.

Amounts are integers in base units everywhere in the protocol and the control interface;
only what is printed for people places the decimal point.
"""

from collections.abc import Callable
from typing import Any

from node.control import ControlError
from protocol.accounts import account_to_text
from protocol.certs import CERTIFICATE_BYTES_MAX, CertificateWire
from protocol.codec import decode_record
from protocol.ledger import TokenInfo
from protocol.orders import (
    AMOUNT_MAX,
    ORDER_BYTES_MAX,
    ORDER_TYPES,
    PLATFORM_TOKEN,
    CreateToken,
    Swap,
    Transfer,
    order_id,
)
from storage.ledger import LedgerStore


def parse_amount(value: object) -> int:
    """An amount in base units from a control call. Raises :class:`ControlError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError("amount: a whole number of base units is required")
    if not 1 <= value <= AMOUNT_MAX:
        raise ControlError(f"amount: 1 to {AMOUNT_MAX} base units")
    return value


def resolve_token(store: LedgerStore, text: str, name: str = "token") -> bytes:
    """The token a control call names by ``text``: a symbol, a 64-digit hex id, or empty for
    the platform token. Raises :class:`ControlError` naming the parameter ``name``."""
    if not text:
        return PLATFORM_TOKEN
    if len(text) == 64:
        try:
            token = bytes.fromhex(text)
        except ValueError as exc:
            raise ControlError(f"{name}: a symbol or a 64-digit hex token id") from exc
        if store.token(token) is None:
            raise ControlError(f"unknown token {text}")
        return token
    matches = [tid for tid, info in store.tokens() if info.symbol == text]
    if not matches:
        raise ControlError(f"no token has the symbol {text!r}")
    if len(matches) > 1 and PLATFORM_TOKEN not in matches:
        listing = ", ".join(m.hex() for m in matches)
        raise ControlError(f"several tokens have the symbol {text!r}: give its id ({listing})")
    return PLATFORM_TOKEN if PLATFORM_TOKEN in matches else matches[0]


def format_amount(amount: int, decimals: int) -> str:
    """``amount`` base units as a decimal number: 1234 with 2 decimals is "12.34"."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    if not decimals:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}"


def token_json(token: bytes, info: TokenInfo) -> dict[str, Any]:
    return {
        "token": token.hex(),
        "symbol": info.symbol,
        "name": info.name,
        "decimals": info.decimals,
        "supply": info.supply,
        "platform": token == PLATFORM_TOKEN,
        "creator": None if token == PLATFORM_TOKEN else account_to_text(info.creator),
    }


def entry_json(
    raw: bytes, account: bytes, token_of: Callable[[bytes], TokenInfo | None]
) -> dict[str, Any]:
    """One history entry of ``account``: the certified order ``raw`` seen from its side.

    ``raw`` comes from the store, which checked it before writing; a damaged one raises
    :class:`protocol.errors.DecodeError`.
    """
    wire = decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
    order = decode_record(ORDER_TYPES[wire.kind], wire.order, bytes_max=ORDER_BYTES_MAX)
    oid = order_id(wire.kind, wire.order)
    entry: dict[str, Any] = {
        "order_id": oid.hex(),
        "kind": wire.kind,
        "created_ms": order.created_ms,
        "changes": [],
    }

    def change(token: bytes, amount: int, counterpart: bytes | None) -> None:
        info = token_of(token)
        decimals = info.decimals if info is not None else 0
        entry["changes"].append(
            {
                "token": token.hex(),
                "symbol": info.symbol if info is not None else "?",
                "amount": amount,
                "text": format_amount(amount, decimals),
                "counterpart": None if counterpart is None else account_to_text(counterpart),
            }
        )

    if isinstance(order, Transfer):
        entry["memo"] = order.memo.hex()
        if order.sender == account:
            change(order.token, -order.amount, order.recipient)
        if order.recipient == account:
            change(order.token, order.amount, order.sender)
    elif isinstance(order, CreateToken):
        change(oid, order.supply, None)
    elif isinstance(order, Swap):
        for mine, theirs in ((order.a, order.b), (order.b, order.a)):
            if mine.account == account:
                change(mine.token, -mine.amount, theirs.account)
                change(theirs.token, theirs.amount, theirs.account)
    return entry


def balance_json(store: LedgerStore, account: bytes) -> dict[str, Any]:
    """The account's non-zero balances, each with its token, and its next sequence number."""
    rows = []
    for token, amount in sorted(store.balances(account).items()):
        info = store.token(token)
        assert info is not None, "a balance is of a known token"
        rows.append({**token_json(token, info), "amount": amount})
    return {
        "account": account_to_text(account),
        "next_seq": store.next_seq(account),
        "balances": rows,
    }


def history_json(store: LedgerStore, account: bytes, limit: int) -> dict[str, Any]:
    """The account's ``limit`` latest certified orders, seen from its side."""
    entries = [entry_json(raw, account, store.token) for raw in store.history(account, limit)]
    return {"account": account_to_text(account), "history": entries}


def tokens_json(store: LedgerStore) -> dict[str, Any]:
    return {"tokens": [token_json(token, info) for token, info in store.tokens()]}
