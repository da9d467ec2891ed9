"""The ledger's commands: ``toktok balance``, ``history``, ``tokens``, ``transfer``, ``tip``,
``token create``, ``swap``, and standing offers: ``offer``, ``offers``, ``buy`` and
``offer-close``.

Orders need the network, so they go through the running node, which signs them with an
account of its keystore (the passphrase as for ``publish``) and waits for the certificate.
Balances and history are read from the node's replica, or from the store when no node
runs. Amounts are given in base units; what is printed places the token's decimals.
"""

import argparse
import json
import time
from typing import Any

from rich.table import Table

from node.cli import CliError, out, read_passphrase, say
from node.clinode import call, require_node, running_node
from node.home import Home, default_account
from node.ledgerview import balance_json, format_amount, history_json, tokens_json
from protocol.accounts import InvalidAccount, account_from_text


def register(sub: Any) -> None:
    """Add the ledger commands to the ``toktok`` sub-command parsers."""
    p = sub.add_parser("balance", help="an account's token balances")
    p.add_argument("account", nargs="?", help="default: the home's default account")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("history", help="an account's certified orders, newest first")
    p.add_argument("account", nargs="?", help="default: the home's default account")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("tokens", help="every token the ledger knows")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser("transfer", help="send tokens to an account (node running)")
    p.add_argument("account")
    p.add_argument("amount", type=int, help="in base units")
    p.add_argument("--token", default="", help="symbol or id; default: the platform token")
    p.add_argument("--memo-hex", default="")
    _signing_flags(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("tip", help="send tokens to a video's creator (node running)")
    p.add_argument("manifest", help="the video's id (or a unique prefix)")
    p.add_argument("amount", type=int, help="in base units")
    p.add_argument("--token", default="", help="symbol or id; default: the platform token")
    _signing_flags(p)
    p.set_defaults(func=cmd_tip)

    p = sub.add_parser("token", help="creator tokens")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("create", help="mint a token with a fixed supply (node running)")
    c.add_argument("symbol", help="A-Z then up to 11 of A-Z0-9")
    c.add_argument("--supply", type=int, required=True, help="in base units; 1 makes a collectible")
    c.add_argument("--decimals", type=int, default=0)
    c.add_argument("--name", default="")
    c.add_argument("--metadata", default="")
    _signing_flags(c)
    c.set_defaults(func=cmd_token_create)

    p = sub.add_parser("swap", help="exchange tokens with another account, atomically")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("propose", help="sign your leg; prints a proposal to hand over")
    s.add_argument("--with", dest="other", required=True, metavar="ACCOUNT")
    s.add_argument("--give", type=int, required=True, help="base units you give")
    s.add_argument("--give-token", default="")
    s.add_argument("--get", type=int, required=True, help="base units you get")
    s.add_argument("--get-token", default="")
    _signing_flags(s)
    s.set_defaults(func=cmd_swap_propose)
    a = actions.add_parser("accept", help="co-sign a proposal and get it certified")
    a.add_argument("proposal")
    _signing_flags(a)
    a.set_defaults(func=cmd_swap_accept)
    _register_offers(sub)


def _register_offers(sub: Any) -> None:
    p = sub.add_parser("offer", help="sell a token at a fixed price, filled by this node")
    p.add_argument("token", help="symbol or id of the token for sale")
    p.add_argument("--price", required=True, help="NUM/DEN base units paid per base unit sold")
    p.add_argument("--amount", type=int, required=True, help="base units moved into the shop")
    p.add_argument("--max-per-fill", type=int, default=None, help="default: --amount")
    p.add_argument("--expires-s", type=int, default=7 * 24 * 3600, help="default: a week")
    p.add_argument("--price-token", default="", help="default: the platform token")
    _signing_flags(p)
    p.set_defaults(func=cmd_offer)

    p = sub.add_parser("offers", help="the standing offers this node knows")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_offers)

    p = sub.add_parser("buy", help="buy from a standing offer (node running)")
    p.add_argument("offer", help="the offer's id (or a unique prefix of 8+ digits)")
    p.add_argument("amount", type=int, help="base units to buy")
    p.add_argument("--pay", type=int, default=None, help="base units to pay; default: the price")
    _signing_flags(p)
    p.set_defaults(func=cmd_buy)

    p = sub.add_parser("offer-close", help="stop an offer; its shop's tokens go back to you")
    p.add_argument("offer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_offer_close)


def _signing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as", dest="as_account", default=None, help="account name in the keystore")
    p.add_argument("--json", action="store_true")


def _sign_call(args: argparse.Namespace, route: str, **params: Any) -> dict[str, Any]:
    client = require_node(args.home)
    return call(
        client,
        route,
        passphrase=read_passphrase(confirm=False),
        as_account=args.as_account,
        **params,
    )


def _print_result(args: argparse.Namespace, result: dict[str, Any], line: str) -> int:
    if args.json:
        out.print_json(json.dumps(result))
    else:
        say(line)
        say(result["order_id"])
    return 0


def _check_account(text: str | None) -> None:
    if text:
        try:
            account_from_text(text)
        except InvalidAccount as exc:
            raise CliError(str(exc)) from exc


def cmd_transfer(args: argparse.Namespace) -> int:
    _check_account(args.account)
    result = _sign_call(
        args,
        "transfer",
        to=args.account,
        amount=args.amount,
        token=args.token,
        memo_hex=args.memo_hex,
    )
    return _print_result(args, result, f"sent {args.amount} base units to {args.account}")


def cmd_tip(args: argparse.Namespace) -> int:
    result = _sign_call(args, "tip", manifest=args.manifest, amount=args.amount, token=args.token)
    return _print_result(args, result, f"tipped {args.amount} base units to {result['creator']}")


def cmd_token_create(args: argparse.Namespace) -> int:
    result = _sign_call(
        args,
        "token.create",
        symbol=args.symbol,
        supply=args.supply,
        decimals=args.decimals,
        token_name=args.name,
        metadata=args.metadata,
    )
    return _print_result(args, result, f"created {args.symbol}: token id {result['token']}")


def cmd_swap_propose(args: argparse.Namespace) -> int:
    _check_account(args.other)
    result = _sign_call(
        args,
        "swap.propose",
        **{"with": args.other},
        give_amount=args.give,
        give_token=args.give_token,
        get_amount=args.get,
        get_token=args.get_token,
    )
    if args.json:
        out.print_json(json.dumps(result))
    else:
        say(f"give this proposal to {args.other}; they run 'toktok swap accept PROPOSAL':")
        say(result["proposal"])
    return 0


def cmd_swap_accept(args: argparse.Namespace) -> int:
    result = _sign_call(args, "swap.accept", proposal=args.proposal)
    return _print_result(args, result, "swap certified")


def _ledger_query(args: argparse.Namespace, route: str, **params: Any) -> dict[str, Any]:
    """Ask the running node, or read the home's store when none runs."""
    _check_account(params.get("account"))
    client = running_node(args.home)
    if client is not None:
        return call(client, route, **params)
    with Home(args.home).open() as stores:
        store = stores.ledger
        if store.genesis() is None:
            raise CliError("this home keeps no ledger: set 'genesis' in node.toml and run the node")
        account = (
            account_from_text(params["account"])
            if params.get("account")
            else default_account(stores)[1]
        )
        if route == "tokens":
            return tokens_json(store)
        if route == "history":
            return history_json(store, account, params["limit"])
        return balance_json(store, account)


def cmd_balance(args: argparse.Namespace) -> int:
    result = _ledger_query(args, "balance", account=args.account)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    table = Table(title=result["account"], title_justify="left")
    for column in ("symbol", "amount", "token"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for row in result["balances"]:
        amount = format_amount(row["amount"], row["decimals"])
        token = "platform" if row["platform"] else row["token"][:16]
        table.add_row(row["symbol"], amount, token)
    out.print(table)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit: 1 to 1000")
    result = _ledger_query(args, "history", account=args.account, limit=args.limit)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    for entry in result["history"]:
        for change in entry["changes"]:
            other = change["counterpart"] or "(minted)"
            sign = "+" if change["amount"] > 0 else ""
            amount = f"{sign}{change['text']} {change['symbol']}"
            say(f"{entry['kind']:<12} {amount}  {other}  {entry['order_id'][:16]}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    result = _ledger_query(args, "tokens")
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    for token in result["tokens"]:
        supply = format_amount(token["supply"], token["decimals"])
        say(f"{token['symbol']:<12} supply {supply}  {token['token'][:16]}  {token['name']}")
    return 0


def parse_price(text: str) -> tuple[int, int]:
    """``NUM/DEN`` (or ``NUM``) as two whole numbers of at least 1. Raises CliError."""
    num, _, den = text.partition("/")
    try:
        price = (int(num), int(den or "1"))
    except ValueError as exc:
        raise CliError(f"--price: NUM/DEN in whole numbers, not {text!r}") from exc
    if min(price) < 1:
        raise CliError(f"--price: NUM and DEN are at least 1, not {text!r}")
    return price


def cmd_offer(args: argparse.Namespace) -> int:
    num, den = parse_price(args.price)
    result = _sign_call(
        args,
        "offer.create",
        token=args.token,
        price_token=args.price_token,
        price_num=num,
        price_den=den,
        amount=args.amount,
        amount_max=args.max_per_fill if args.max_per_fill is not None else args.amount,
        expires_s=args.expires_s,
    )
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    say(
        f"offering {args.amount} {result['token']['symbol']} at {num}/{den} "
        f"{result['price_token']['symbol']} each, from shop {result['shop']}"
    )
    say(result["offer"])
    return 0


def cmd_offers(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise CliError("--limit: 1 to 1000")
    result = call(require_node(args.home), "offers", limit=args.limit)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    for offer in result["offers"]:
        price = f"{offer['price_num']}/{offer['price_den']} {offer['price_token']['symbol']}"
        left_s = max(0, (offer["expires_ms"] - int(time.time() * 1000)) // 1000)
        flags = " (closed)" if offer["closed"] else ""
        say(
            f"{offer['offer'][:16]}  {offer['token']['symbol']:<12} at {price}  "
            f"stock {offer['stock']}  max {offer['amount_max']}  {left_s} s left{flags}"
        )
    return 0


def cmd_buy(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"offer": args.offer, "amount": args.amount}
    if args.pay is not None:
        params["pay"] = args.pay
    result = _sign_call(args, "buy", **params)
    return _print_result(args, result, f"bought {result['amount']} for {result['paid']}")


def cmd_offer_close(args: argparse.Namespace) -> int:
    result = call(require_node(args.home), "offer.close", offer=args.offer)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    say(f"closed; {len(result['returned'])} transfers sent the shop's tokens back")
    say(result["offer"])
    return 0
