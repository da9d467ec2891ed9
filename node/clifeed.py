"""The feed's commands: ``toktok feed``, ``like``, ``unlike``, ``view``, ``block``,
``unblock``, ``blocked`` and ``followers``.

With a node running over the home they go through its control interface; without one,
``feed``, ``followers`` and the block list read and write the home's store directly (the
ranking is the same pure function either way). Likes and view receipts are signed messages
for the network: without a running node they are stored and logged, and sync spreads them
later.
"""

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

from node.cli import CliError, now_ms, out, read_passphrase, say
from node.clinode import call, running_node
from node.feedview import (
    FEED_LIMIT_MAX,
    FOLLOWERS_LIMIT_MAX,
    block_json,
    blocked_json,
    feed_json,
    followers_json,
)
from node.home import Home, default_account, unlock_account
from node.publish import reaction_message, view_message
from protocol.accounts import AccountKey, InvalidAccount, account_from_text
from protocol.envelope import SignedMessage
from protocol.kinds import DURATION_MS_MAX
from storage.stores import Stores


def register(sub: Any) -> None:
    """Add the feed commands to the ``toktok`` sub-command parsers."""
    p = sub.add_parser("feed", help="your ranked feed, with why each video is there")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--explain", action="store_true", help="print every reason and score part")
    p.add_argument("--json", action="store_true")
    p.add_argument("--account", default=None, help="rank for another account (default: yours)")
    p.set_defaults(func=cmd_feed)

    for name, like, text in (("like", True, "like a video"), ("unlike", False, "take a like back")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id", help="the video's id (or a unique prefix)")
        p.add_argument("--as", dest="as_account", default=None)
        p.set_defaults(func=cmd_like, like=like)

    p = sub.add_parser(
        "view",
        help="send a view receipt: tells the network you watched it (public)",
        description="Send a signed view receipt for a video: it tells the network you watched "
        "it. Once gossiped it is PUBLIC: anyone can see that your account watched the video, "
        "when, and for how long. Your feed then favours the video's creator a little.",
    )
    p.add_argument("id", help="the video's id (or a unique prefix)")
    p.add_argument(
        "--watched-s",
        type=float,
        required=True,
        help=f"how long you watched it, in seconds (at most {DURATION_MS_MAX // 1000})",
    )
    p.add_argument("--as", dest="as_account", default=None)
    p.set_defaults(func=cmd_view)

    for name, blocking, text in (
        ("block", True, "never show this account's videos in your feed"),
        ("unblock", False, "show this account's videos again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("account")
        p.set_defaults(func=cmd_block, blocking=blocking)

    p = sub.add_parser("blocked", help="the accounts you blocked")
    p.set_defaults(func=cmd_blocked)

    p = sub.add_parser("followers", help="accounts that follow you (or ACCOUNT)")
    p.add_argument("account", nargs="?")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=cmd_followers)


def age_text(ms: int) -> str:
    """A short age for people: "40 s", "12 min", "5 h", "3 d"."""
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _account(text: str) -> bytes:
    try:
        return account_from_text(text)
    except InvalidAccount as exc:
        raise CliError(str(exc)) from exc


def cmd_feed(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= FEED_LIMIT_MAX:
        raise CliError(f"--limit: 1 to {FEED_LIMIT_MAX}")
    account = _account(args.account) if args.account else None
    client = running_node(args.home)
    if client is not None:
        result = call(client, "feed", limit=args.limit, account=args.account)
    else:
        with Home(args.home).open() as stores:
            viewer = account or default_account(stores)[1]
            result = feed_json(stores, viewer, now_ms(), args.limit)
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    if not result["feed"]:
        say("nothing to show yet: follow accounts ('toktok follow ACCOUNT') or like videos")
    for rank, item in enumerate(result["feed"], 1):
        age = age_text(max(0, result["now_ms"] - item["created_ms"]))
        say(f"{rank:>3}. {item['id'][:16]}  {item['title'][:60]}  ({age} ago)")
        reasons = item["reasons"] if args.explain else item["reasons"][:2]
        say("     " + "; ".join(r["text"] for r in reasons))
        if args.explain:
            parts = ", ".join(f"{k} {v:.3g}" for k, v in sorted(item["parts"].items()))
            say(f"     score {item['score']:.4g} = {parts}; by {item['creator']}")
    return 0


def cmd_like(args: argparse.Namespace) -> int:
    route = "like" if args.like else "unlike"
    passphrase = read_passphrase(confirm=False)
    client = running_node(args.home)
    if client is not None:
        result = call(client, route, id=args.id, passphrase=passphrase, as_account=args.as_account)
        say(f"{'liked' if args.like else 'no longer liked'} {result['id']}")
        return 0
    mid = _store_offline(
        args,
        passphrase,
        lambda stores, key, mid: reaction_message(
            key,
            mid,
            like=args.like,
            now_ms=stores.social.reaction_stamp_ms(key.public_key, mid, now_ms()),
        ),
    )
    say(f"{'liked' if args.like else 'no longer liked'} {mid.hex()}")
    return 0


def _store_offline(
    args: argparse.Namespace,
    passphrase: str,
    make: Callable[[Stores, AccountKey, bytes], SignedMessage],
) -> bytes:
    """With no node running: sign ``make(stores, key, video id)`` about the video ``args.id``,
    store it and log it (sync spreads it once a node runs). Returns the video id."""
    with Home(args.home).open() as stores:
        try:
            mid = stores.manifests.resolve(args.id)
        except KeyError as exc:
            raise CliError(exc.args[0]) from exc
        key = unlock_account(stores, passphrase, args.as_account)
        message = make(stores, key, mid)
        stores.apply_social(message)
    return mid


def cmd_view(args: argparse.Namespace) -> int:
    watched_ms = round(args.watched_s * 1000) if math.isfinite(args.watched_s) else 0
    if not 1 <= watched_ms <= DURATION_MS_MAX:
        raise CliError(f"--watched-s: more than 0 and at most {DURATION_MS_MAX // 1000}")
    passphrase = read_passphrase(confirm=False)
    client = running_node(args.home)
    if client is not None:
        result = call(
            client,
            "view",
            id=args.id,
            watched_ms=watched_ms,
            passphrase=passphrase,
            as_account=args.as_account,
        )
        say(f"told the network you watched {result['id']} for {watched_ms / 1000:g} s")
        return 0
    mid = _store_offline(
        args, passphrase, lambda stores, key, mid: view_message(key, mid, watched_ms, now_ms())
    )
    say(f"told the network you watched {mid.hex()} for {watched_ms / 1000:g} s")
    return 0


def cmd_block(args: argparse.Namespace) -> int:
    target = _account(args.account)
    client = running_node(args.home)
    if client is not None:
        call(client, "block" if args.blocking else "unblock", target=args.account)
    else:
        with Home(args.home).open() as stores:
            viewer = default_account(stores)[1]
            try:
                block_json(stores, viewer, target, blocking=args.blocking)
            except ValueError as exc:  # the viewer itself: storage/socialgraph.py's SELF_BLOCK
                raise CliError(str(exc)) from exc
    say(f"{'blocked' if args.blocking else 'unblocked'} {args.account}")
    return 0


def cmd_blocked(args: argparse.Namespace) -> int:
    client = running_node(args.home)
    if client is not None:
        listing = call(client, "blocked")["blocked"]
    else:
        with Home(args.home).open() as stores:
            listing = blocked_json(stores, default_account(stores)[1])["blocked"]
    for account in listing:
        say(account)
    return 0


def cmd_followers(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= FOLLOWERS_LIMIT_MAX:
        raise CliError(f"--limit: 1 to {FOLLOWERS_LIMIT_MAX}")
    account = _account(args.account) if args.account else None
    client = running_node(args.home)
    if client is not None:
        listing = call(client, "followers", account=args.account, limit=args.limit)["followers"]
    else:
        with Home(args.home).open() as stores:
            target = account or default_account(stores)[1]
            listing = followers_json(stores, target, args.limit)["followers"]
    for account in listing:
        say(account)
    return 0
