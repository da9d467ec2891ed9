"""The feed's control routes: the ranked feed with its reasons, likes, views, blocks,
followers.

The ranking is protocol/ranking.py's pure function, read through the store's social graph
(storage/socialgraph.py); this module only adds what people see beside it (titles) and
the actions that change the graph. Likes and view receipts are signed messages, stored and
gossiped like follows (so a view receipt is public: it tells the network you watched the
video); blocks are the viewer's local choice and never leave the node.
"""

from typing import Any

from node.control import ControlError, ControlServer, account_param, limit_param, unlock_param
from node.daemon import Node
from node.feedview import feed_json
from node.gossip import wall_ms
from node.publish import reaction_message, view_message
from protocol.accounts import InvalidAccount, account_from_text, account_to_text
from protocol.errors import ProtocolError
from storage.stores import Stores

FEED_LIMIT_MAX = 200
FOLLOWERS_LIMIT_MAX = 10_000


def install_feed_routes(server: ControlServer, node: Node) -> None:
    """Register feed, like, unlike, view, block, unblock, blocked and followers."""
    stores = node.stores

    async def feed(params: dict[str, Any]) -> dict[str, Any]:
        viewer = account_param(stores, params)
        limit = limit_param(params, 50, FEED_LIMIT_MAX)
        return feed_json(stores, viewer, wall_ms(), limit)

    async def react(params: dict[str, Any], like: bool) -> dict[str, Any]:
        try:
            mid = stores.manifests.resolve(str(params.get("id", "")))
        except KeyError as exc:
            raise ControlError(exc.args[0], status=404) from exc
        key = unlock_param(stores, params)
        try:
            message = reaction_message(key, mid, like=like, now_ms=wall_ms())
        except ProtocolError as exc:
            raise ControlError(str(exc)) from exc
        stores.social.apply(message)
        node.ingest.add_own(message, wall_ms())
        node.gossip.publish(message.raw, message.kind)
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
        try:
            mid = stores.manifests.resolve(str(params.get("id", "")))
        except KeyError as exc:
            raise ControlError(exc.args[0], status=404) from exc
        key = unlock_param(stores, params)
        try:
            message = view_message(key, mid, watched_ms, wall_ms())
        except ProtocolError as exc:
            raise ControlError(str(exc)) from exc
        stores.social.apply(message)
        node.ingest.add_own(message, wall_ms())
        node.gossip.publish(message.raw, message.kind)
        return {"id": mid.hex(), "watched_ms": watched_ms, "message": message.id.hex()}

    async def block(params: dict[str, Any]) -> dict[str, Any]:
        return _block(stores, params, blocking=True)

    async def unblock(params: dict[str, Any]) -> dict[str, Any]:
        return _block(stores, params, blocking=False)

    async def blocked(params: dict[str, Any]) -> dict[str, Any]:
        viewer = account_param(stores, {})
        return {"blocked": sorted(account_to_text(a) for a in stores.graph.blocked(viewer))}

    async def followers(params: dict[str, Any]) -> dict[str, Any]:
        account = account_param(stores, params)
        limit = limit_param(params, 1000, FOLLOWERS_LIMIT_MAX)
        return {"followers": [account_to_text(a) for a in stores.graph.followers(account, limit)]}

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
    if target == viewer:
        raise ControlError("an account does not block itself")
    if blocking:
        stores.graph.block(viewer, target)
    else:
        stores.graph.unblock(viewer, target)
    return {"blocked": blocking, "target": account_to_text(target)}
