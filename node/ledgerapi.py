"""The ledger's control routes: balances, history, and orders signed and certified.

Orders are signed here with an account of the node's keystore (the passphrase comes with
the call), given the account's next sequence number, and sent to the validators; the
route answers once the certificate is formed and applied here. ``order.submit`` takes an
order signed elsewhere.
"""

import base64
from collections.abc import Callable
from typing import Any

from node.control import ControlError, ControlServer, account_param, limit_param, unlock_param
from node.daemon import Node
from node.gossip import wall_ms
from node.ledgerclient import LedgerError
from node.ledgerview import balance_json, history_json, parse_amount, resolve_token, tokens_json
from node.offerapi import install_offer_routes
from protocol.accounts import AccountKey, InvalidAccount, account_from_text, account_to_text
from protocol.errors import DecodeError, Ignore, Reject
from protocol.orders import (
    CreateToken,
    Leg,
    Order,
    SignedOrder,
    Swap,
    Transfer,
    cosign,
    open_proposal,
    propose_swap,
    sign_order,
    validate_order,
    verify_order,
)

HISTORY_LIMIT_MAX = 1000


def install_ledger_routes(server: ControlServer, node: Node) -> None:
    """Register the ledger routes (when the node keeps a ledger)."""
    if node.ledger is None or node.ledger_client is None:
        return
    ledger = node.ledger
    client = node.ledger_client
    network = ledger.committee.network

    def token_param(params: dict[str, Any], name: str = "token") -> bytes:
        return resolve_token(ledger.store, str(params.get(name) or ""), name)

    async def balance(params: dict[str, Any]) -> dict[str, Any]:
        return balance_json(ledger.store, account_param(node.stores, params))

    async def history(params: dict[str, Any]) -> dict[str, Any]:
        limit = limit_param(params, 50, HISTORY_LIMIT_MAX)
        return history_json(ledger.store, account_param(node.stores, params), limit)

    async def tokens(params: dict[str, Any]) -> dict[str, Any]:
        return tokens_json(ledger.store)

    async def certify(signed: SignedOrder) -> dict[str, Any]:
        try:
            cert = await client.submit(signed)
        except LedgerError as exc:
            raise ControlError(str(exc)) from exc
        return {"order_id": cert.order_id.hex(), "kind": cert.kind, "certificate": len(cert.raw)}

    async def sign_and_certify(
        params: dict[str, Any], build: Callable[[AccountKey, int], Order]
    ) -> dict[str, Any]:
        key = unlock_param(node.stores, params)
        async with client.account_lock(key.public_key):
            try:
                await client.finish(key.public_key)
            except LedgerError as exc:
                raise ControlError(str(exc)) from exc
            order = build(key, client.next_seq(key.public_key))
            try:
                signed = sign_order(order, [key])
            except DecodeError as exc:
                raise ControlError(str(exc)) from exc
            _check(order)
            return await certify(signed)

    async def transfer(params: dict[str, Any]) -> dict[str, Any]:
        recipient = _account(params, "to")
        token = token_param(params)
        amount = parse_amount(params.get("amount"))
        memo = bytes.fromhex(str(params.get("memo_hex") or ""))

        def build(key: AccountKey, seq: int) -> Order:
            return Transfer(network, wall_ms(), key.public_key, seq, token, recipient, amount, memo)

        return await sign_and_certify(params, build)

    async def tip(params: dict[str, Any]) -> dict[str, Any]:
        try:
            mid = node.stores.manifests.resolve(str(params.get("manifest", "")))
        except KeyError as exc:
            raise ControlError(exc.args[0], status=404) from exc
        stored = node.stores.manifests.get(mid)
        if stored is None:
            raise ControlError(f"video {mid.hex()} is not known here", status=404)
        token = token_param(params)
        amount = parse_amount(params.get("amount"))
        creator = stored.manifest.author

        def build(key: AccountKey, seq: int) -> Order:
            return Transfer(network, wall_ms(), key.public_key, seq, token, creator, amount, mid)

        result = await sign_and_certify(params, build)
        return {**result, "creator": account_to_text(creator)}

    async def create_token(params: dict[str, Any]) -> dict[str, Any]:
        def build(key: AccountKey, seq: int) -> Order:
            return CreateToken(
                network,
                wall_ms(),
                key.public_key,
                seq,
                str(params.get("symbol", "")),
                str(params.get("token_name", "")),
                parse_amount(params.get("supply")),
                _int(params, "decimals", 0),
                str(params.get("metadata", "")),
            )

        result = await sign_and_certify(params, build)
        return {**result, "token": result["order_id"]}

    async def swap_propose(params: dict[str, Any]) -> dict[str, Any]:
        """Sign our leg of a swap; the other party co-signs it with ``swap_accept``."""
        key = unlock_param(node.stores, params)
        other = _account(params, "with")
        give = Leg(
            key.public_key,
            client.next_seq(key.public_key),
            token_param(params, "give_token"),
            parse_amount(params.get("give_amount")),
        )
        get = Leg(
            other,
            client.next_seq(other),
            token_param(params, "get_token"),
            parse_amount(params.get("get_amount")),
        )
        order = Swap(network, wall_ms(), give, get, b"")
        _check(order)
        try:
            signed = propose_swap(order, key)
        except DecodeError as exc:
            raise ControlError(str(exc)) from exc
        return {"proposal": base64.b64encode(signed.raw).decode("ascii")}

    async def swap_accept(params: dict[str, Any]) -> dict[str, Any]:
        key = unlock_param(node.stores, params)
        try:
            raw = base64.b64decode(str(params.get("proposal", "")), validate=True)
            partial = open_proposal(raw, network, wall_ms())
        except (ValueError, Reject, Ignore) as exc:
            raise ControlError(f"proposal: {exc}") from exc
        async with client.account_lock(key.public_key):
            try:
                signed = cosign(partial, key)
            except ValueError as exc:
                raise ControlError(str(exc)) from exc
            return await certify(signed)

    async def submit_order(params: dict[str, Any]) -> dict[str, Any]:
        try:
            raw = base64.b64decode(str(params.get("order", "")), validate=True)
            signed = verify_order(raw, network, wall_ms())
        except (ValueError, Reject, Ignore) as exc:
            raise ControlError(f"order: {exc}") from exc
        return await certify(signed)

    for name, fn in (
        ("balance", balance),
        ("history", history),
        ("tokens", tokens),
        ("transfer", transfer),
        ("tip", tip),
        ("token.create", create_token),
        ("swap.propose", swap_propose),
        ("swap.accept", swap_accept),
        ("order.submit", submit_order),
    ):
        server.route(name, fn)
    install_offer_routes(server, node)


def _account(params: dict[str, Any], name: str) -> bytes:
    try:
        return account_from_text(str(params.get(name, "")))
    except InvalidAccount as exc:
        raise ControlError(f"{name}: {exc}") from exc


def _int(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError(f"{name}: an integer is required")
    return value


def _check(order: Order) -> None:
    """Refuse, with the rule's words, an order the validators would call invalid."""
    try:
        validate_order(order)
    except Reject as exc:
        raise ControlError(str(exc)) from exc
