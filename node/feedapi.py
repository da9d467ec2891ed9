"""The feed's control routes: the ranked feed with its reasons, likes, views, blocks,
followers.

The ranking is protocol/ranking.py's pure function, read through the store's social graph
(storage/socialgraph.py); this module only adds what people see beside it (titles) and
the actions that change the graph. Likes and view receipts are signed messages, stored and
gossiped like follows (so a view receipt is public: it tells the network you watched the
video); blocks are the viewer's local choice and never leave the node.
"""

from typing import Any

from node.control import (
    ControlError,
    ControlServer,
    account_param,
    limit_param,
    unlock_param,
    video_param,
)
from node.daemon import Node
from node.feedview import (
    FEED_LIMIT_MAX,
    FOLLOWERS_LIMIT_MAX,
    block_json,
    blocked_json,
    feed_json,
    followers_json,
)
from node.gossip import wall_ms
from node.publish import reaction_message, view_message
from protocol.accounts import InvalidAccount, account_from_text
from protocol.errors import ProtocolError
from storage.stores import Stores


def install_feed_routes(server: ControlServer, node: Node) -> None:
    """Register feed, like, unlike, view, block, unblock, blocked and followers."""
    stores = node.stores

    async def feed(params: dict[str, Any]) -> dict[str, Any]:
        viewer = account_param(stores, params)
        limit = limit_param(params, 50, FEED_LIMIT_MAX)
        return feed_json(stores, viewer, wall_ms(), limit)

    async def react(params: dict[str, Any], like: bool) -> dict[str, Any]:
        mid = video_param(stores, params)
        key = unlock_param(stores, params)
        try:
            stamp = stores.social.reaction_stamp_ms(key.public_key, mid, wall_ms())
            message = reaction_message(key, mid, like=like, now_ms=stamp)
        except ProtocolError as exc:
            raise ControlError(str(exc)) from exc
        node.share(message)
        return {"id": mid.hex(), "liked": like, "message": message.id.hex()}

    async def like(params: dict[str, Any]) -> dict[str, Any]:
        return await react(params, True)

    async def unlike(params: dict[str, Any]) -> dict[str, Any]:
        return await react(params, False)

    async def view(params: dict[str, Any]) -> dict[str, Any]:
        """Send a view receipt: {id, watched_ms, passphrase, as_account?}. Public once
        gossiped: it tells the network the account watched the video."""
        watched_ms = params.get("watched_ms")
        if isinstance(watched_ms, bool) or not isinstance(watched_ms, int):
            raise ControlError("watched_ms: an integer number of milliseconds")
        mid = video_param(stores, params)
        key = unlock_param(stores, params)
        try:
            message = view_message(key, mid, watched_ms, wall_ms())
        except ProtocolError as exc:
            raise ControlError(str(exc)) from exc
        node.share(message)
        return {"id": mid.hex(), "watched_ms": watched_ms, "message": message.id.hex()}

    async def block(params: dict[str, Any]) -> dict[str, Any]:
        return _block(stores, params, blocking=True)

    async def unblock(params: dict[str, Any]) -> dict[str, Any]:
        return _block(stores, params, blocking=False)

    async def blocked(params: dict[str, Any]) -> dict[str, Any]:
        return blocked_json(stores, account_param(stores, {}))

    async def followers(params: dict[str, Any]) -> dict[str, Any]:
        account = account_param(stores, params)
        limit = limit_param(params, 1000, FOLLOWERS_LIMIT_MAX)
        return followers_json(stores, account, limit)

    for name, fn in (
        ("feed", feed),
        ("like", like),
        ("unlike", unlike),
        ("view", view),
        ("block", block),
        ("unblock", unblock),
        ("blocked", blocked),
        ("followers", followers),
    ):
        server.route(name, fn)


def _block(stores: Stores, params: dict[str, Any], *, blocking: bool) -> dict[str, Any]:
    viewer = account_param(stores, {})
    try:
        target = account_from_text(str(params.get("target", "")))
    except InvalidAccount as exc:
        raise ControlError(f"target: {exc}") from exc
    try:
        return block_json(stores, viewer, target, blocking=blocking)
    except ValueError as exc:  # the viewer itself: storage/socialgraph.py's SELF_BLOCK
        raise ControlError(str(exc)) from exc
