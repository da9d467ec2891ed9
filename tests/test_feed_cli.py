"""The feed through the real CLI and the running node's control interface."""

import json
import time
from pathlib import Path

import pytest

from node.controlclient import ControlCallError
from node.home import Home, default_account
from node.publish import follow_message
from protocol.accounts import AccountKey, account_to_text
from storage.messages import MessageLog
from tests.cli_helpers import toktok
from tests.factories import account, fake_video, sealed_manifest
from tests.netharness import init_home, start_node


def now_ms() -> int:
    return int(time.time() * 1000)


def seed_home(home: Path) -> tuple[AccountKey, AccountKey, AccountKey, list[str]]:
    """A home whose account follows ``creator``; ``creator`` and ``friend`` posted videos,
    and ``friend`` (followed too) follows ``other``, who posted one: three videos to rank."""
    init_home(home)
    creator, friend, other = account(11), account(12), account(13)
    ids = []
    with Home(home).open() as stores:
        _, viewer = default_account(stores)
        for n, author in enumerate((creator, friend, other)):
            created = now_ms() - (n + 1) * 3_600_000  # one, two and three hours ago
            message = sealed_manifest(
                author, fake_video(bytes([n])), created_ms=created, title=f"clip {n}"
            )
            stores.manifests.put(message, pin=None)
            ids.append(message.id.hex())
        # The viewer's follows are made with the viewer's key by the CLI below; here the
        # friend's follow of `other` arrives as it would from the network.
        stores.social.apply(
            follow_message(friend, other.public_key, following=True, now_ms=now_ms())
        )
        assert viewer
    return creator, friend, other, ids


def feed(home: Path, *extra: str) -> list[dict[str, object]]:
    result = json.loads(toktok(home, "feed", "--json", *extra).stdout)
    return list(result["feed"])


def test_feed_follow_like_block_offline(tmp_path: Path) -> None:
    home = tmp_path / "h"
    creator, friend, _, ids = seed_home(home)
    assert feed(home) == []
    toktok(home, "follow", account_to_text(creator.public_key))
    toktok(home, "follow", account_to_text(friend.public_key))
    items = feed(home)
    shown = [i["id"] for i in items]
    assert ids[0] in shown and ids[1] in shown
    first = next(i for i in items if i["id"] == ids[0])
    texts = " ".join(r["text"] for r in first["reasons"])  # type: ignore[attr-defined]
    assert "you follow" in texts and "ago" in texts
    # The friend follows `other`: two hops out, with a reason saying so.
    third = next(i for i in items if i["id"] == ids[2])
    assert any("follow" in r["text"] for r in third["reasons"])  # type: ignore[attr-defined]
    toktok(home, "like", ids[0][:12])
    explained = toktok(home, "feed", "--explain").stdout
    assert "score" in explained and "clip 0" in explained
    toktok(home, "block", account_to_text(creator.public_key))
    assert ids[0] not in [i["id"] for i in feed(home)]
    assert account_to_text(creator.public_key) in toktok(home, "blocked").stdout
    toktok(home, "unblock", account_to_text(creator.public_key))
    assert ids[0] in [i["id"] for i in feed(home)]
    bad = toktok(home, "block", "ttnotanaccount", check=False)
    assert bad.returncode == 2 and "error:" in bad.stderr
    with Home(home).open() as stores:
        me = account_to_text(default_account(stores)[1])
    itself = toktok(home, "block", me, check=False)
    assert itself.returncode == 2 and "does not block itself" in itself.stderr


def test_view_offline_is_stored_logged_and_ranks(tmp_path: Path) -> None:
    home = tmp_path / "h"
    _, _, other, ids = seed_home(home)
    said = toktok(home, "view", ids[2][:12], "--watched-s", "4.5").stdout
    assert "told the network you watched" in said
    toktok(home, "view", ids[2][:12], "--watched-s", "2")  # a rewatch adds up
    with Home(home).open() as stores:
        viewer = default_account(stores)[1]
        [(video, _)] = stores.graph.viewed(viewer, 10)
        assert video.hex() == ids[2]
        total = stores.graph.watched(viewer, video)
        assert total is not None and (total.views, total.watched_ms) == (2, 6500)
        assert MessageLog(stores.kv).count() == 2  # logged: sync spreads them later
    # The viewer follows nobody: the watched creator's video is found and says why.
    [item] = feed(home)
    assert item["id"] == ids[2]
    texts = [r["text"] for r in item["reasons"]]  # type: ignore[attr-defined]
    assert "you watched 1 video by the creator" in texts
    assert other
    help_text = toktok(home, "view", "--help").stdout
    assert "tells the network you watched it" in " ".join(help_text.split())
    for seconds in ("0", "-1", "601", "nan"):
        bad = toktok(home, "view", ids[2][:12], "--watched-s", seconds, check=False)
        assert bad.returncode == 2 and "--watched-s" in bad.stderr, seconds


def test_feed_and_followers_through_a_running_node(tmp_path: Path) -> None:
    home = tmp_path / "h"
    creator, friend, _, ids = seed_home(home)
    toktok(home, "follow", account_to_text(creator.public_key))
    with Home(home).open() as stores:
        viewer = default_account(stores)[1]
        stores.social.apply(follow_message(friend, viewer, following=True, now_ms=now_ms()))
    node = start_node(home)
    try:
        items = node.call("feed", limit=10)["feed"]
        assert [i["id"] for i in items][:1] == [ids[0]]
        assert all(i["reasons"] for i in items)
        node.call("like", id=ids[0], passphrase="correct horse battery")
        viewed = node.call("view", id=ids[1], watched_ms=3000, passphrase="correct horse battery")
        assert viewed["id"] == ids[1] and viewed["watched_ms"] == 3000
        watched = next(i for i in node.call("feed")["feed"] if i["id"] == ids[1])
        assert "you watched 1 video by the creator" in [r["text"] for r in watched["reasons"]]
        for bad in (0, "3000", True, 600_001):
            with pytest.raises(ControlCallError, match="watched_ms"):
                node.call("view", id=ids[1], watched_ms=bad, passphrase="correct horse battery")
        followers = node.call("followers")["followers"]
        assert followers == [account_to_text(friend.public_key)]
        node.call("block", target=account_to_text(creator.public_key))
        with pytest.raises(ControlCallError, match="does not block itself"):
            node.call("block", target=account_to_text(viewer))
        assert ids[0] not in [i["id"] for i in node.call("feed")["feed"]]
        assert toktok(home, "feed").returncode == 0
    finally:
        assert node.stop() == 0
