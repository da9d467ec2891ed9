"""The feed as people see it: ranked items with titles, score parts and reasons, and the
block list and followers beside it.

Used by the control routes (node/feedapi.py) and by the ``toktok`` feed commands on a home
whose node is not running (node/clifeed.py): the same pure ranking (protocol/ranking.py)
over the store's social graph, and the same answers, either way.
"""

from typing import Any

from protocol.accounts import account_to_text
from protocol.ranking import rank_feed
from storage.errors import StoreError
from storage.stores import Stores

FEED_LIMIT_MAX = 200
"""Videos one feed request may ask for."""
FOLLOWERS_LIMIT_MAX = 10_000
"""Followers one listing may ask for."""


def feed_json(stores: Stores, viewer: bytes, now_ms: int, limit: int) -> dict[str, Any]:
    """The viewer's top ``limit`` videos, each with why it is there."""
    graph = stores.graph
    items = rank_feed(graph, viewer, now_ms, blocked=graph.blocked(viewer), limit=limit)
    out = []
    for item in items:
        out.append(
            {
                "id": item.video.id.hex(),
                "title": _title(stores, item.video.id),
                "creator": account_to_text(item.video.creator),
                "created_ms": item.video.created_ms,
                "score": item.score,
                "parts": dict(item.parts),
                "reasons": [
                    {"code": r.code, "count": r.count, "text": r.text} for r in item.reasons
                ],
            }
        )
    return {"viewer": account_to_text(viewer), "now_ms": now_ms, "feed": out}


def _title(stores: Stores, video: bytes) -> str:
    try:
        stored = stores.manifests.get(video)
    except StoreError:
        return "(damaged)"  # `toktok verify` says more; the feed still shows the rest
    return stored.manifest.title if stored is not None else "(not held)"


def block_json(stores: Stores, viewer: bytes, target: bytes, *, blocking: bool) -> dict[str, Any]:
    """Block (or unblock) ``target`` for ``viewer``. Raises ValueError when they are the same
    account (storage/socialgraph.py's SELF_BLOCK), StoreError when ``viewer`` blocks too
    many accounts already."""
    if blocking:
        stores.graph.block(viewer, target)
    else:
        stores.graph.unblock(viewer, target)
    return {"blocked": blocking, "target": account_to_text(target)}


def blocked_json(stores: Stores, viewer: bytes) -> dict[str, Any]:
    """The accounts ``viewer`` blocks, in text order."""
    return {"blocked": sorted(account_to_text(a) for a in stores.graph.blocked(viewer))}


def followers_json(stores: Stores, account: bytes, limit: int) -> dict[str, Any]:
    """Up to ``limit`` accounts following ``account``, in id order."""
    return {"followers": [account_to_text(a) for a in stores.graph.followers(account, limit)]}
