"""The feed as people see it: ranked items with titles, score parts and reasons.

Used by the control route and by ``toktok feed`` on a home whose node is not running: the
same pure ranking (protocol/ranking.py) over the store's social graph either way.
"""

from typing import Any

from protocol.accounts import account_to_text
from protocol.ranking import rank_feed
from storage.errors import StoreError
from storage.stores import Stores


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
