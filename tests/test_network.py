"""Real nodes as real processes on 127.0.0.1: gossip, placement, fetch, control."""

import base64
import json
import signal
import subprocess
import sys
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from node.home import Home
from protocol.envelope import SignedMessage, seal
from protocol.kinds import Follow
from tests.cli_helpers import toktok, toktok_env
from tests.factories import account, fake_video, sealed_manifest
from tests.netharness import (
    NodeProc,
    chunks_complete,
    evil_peer,
    network,
    start_node,
    video_ids,
    wait_for,
)

NOW_MS = 1_790_000_000_000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sealed_follow(author: int, target: int) -> SignedMessage:
    key = account(author)
    record = Follow(
        author=key.public_key, created_ms=NOW_MS + target, target=account(target).public_key
    )
    return seal(key, record)


def holds_message(node: NodeProc, mid: bytes) -> bool:
    return bool(node.call("message", id=mid.hex())["held"])


def publish(node: NodeProc, sample: Path) -> str:
    proc = toktok(node.home, "publish", str(sample), "--title", "net test")
    return proc.stdout.strip().splitlines()[-1]


def chunk_sizes(video: dict[str, Any]) -> dict[str, int]:
    refs = [video["thumbnail"]]
    for r in video["renditions"]:
        refs += [r["init"], *r["segments"]]
    return {ref["cid"]: ref["size"] for ref in refs}


def peer_count_at_least(node: NodeProc, count: int) -> bool:
    return int(node.status()["peers"]) >= count


def holds_video(node: NodeProc, video_id: str) -> bool:
    return video_id in video_ids(node)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("net") / "sample.mp4"
    toktok(path.parent / "unused", "sample", str(path), "--seconds", "6", "--height", "360")
    return path


def test_five_nodes_publish_everywhere_then_fetch(tmp_path: Path, sample: Path) -> None:
    with network(tmp_path, 5) as nodes:
        # Peer exchange: every node learns more than its one bootstrap address.
        for node in nodes:
            wait_for(partial(peer_count_at_least, node, 3), timeout_s=30, what="peers")
        creator, fetcher = nodes[1], nodes[4]
        video_id = publish(creator, sample)
        for node in nodes:
            wait_for(partial(holds_video, node, video_id), timeout_s=20, what="the manifest")
        toktok(fetcher.home, "fetch", video_id)
        assert chunks_complete(fetcher, video_id)
        status = fetcher.status()
        assert status["ingest"]["rejected"] == 0


def connected(nodes: list[NodeProc]) -> None:
    """Wait until every node is connected to every other (peer exchange at work)."""
    for node in nodes:
        wait_for(partial(peer_count_at_least, node, len(nodes) - 1), timeout_s=30, what="peers")


def seeders_of(nodes: list[NodeProc], video_id: str) -> list[NodeProc]:
    return [n for n in nodes if chunks_complete(n, video_id)]


def test_a_corrupting_peer_is_penalised_and_the_download_completes(
    tmp_path: Path, sample: Path
) -> None:
    with network(tmp_path, 4, replicas=1) as nodes:
        connected(nodes)
        creator = nodes[1]
        video_id = publish(creator, sample)
        for node in nodes:
            wait_for(partial(holds_video, node, video_id), timeout_s=20, what="the manifest")
        # Creator plus one placement seeder hold it; fetch on a node that holds nothing.
        wait_for(lambda: len(seeders_of(nodes, video_id)) >= 2, timeout_s=30, what="seeding")
        fetcher = next(n for n in nodes if not chunks_complete(n, video_id))
        sizes = tmp_path / "sizes.json"
        video = fetcher.call("show", id=video_id)["video"]
        sizes.write_text(json.dumps(chunk_sizes(video)))
        with evil_peer(fetcher.addr, "chunks", "--sizes", str(sizes)):
            wait_for(lambda: fetcher.status()["peers"] >= 3, timeout_s=20, what="peers")
            toktok(fetcher.home, "fetch", video_id)
            assert chunks_complete(fetcher, video_id)
            status = fetcher.status()
            assert status["offences"] >= 1, status
        fetcher.stop()
        assert "ok:" in toktok(fetcher.home, "verify").stdout


def test_a_seeder_killed_mid_download_leaves_the_others_to_finish(
    tmp_path: Path, sample: Path
) -> None:
    # Every node serves at most 256 KiB/s, so the download takes long enough to be cut.
    with network(tmp_path, 5, replicas=2, upload_kib_per_s=256) as nodes:
        connected(nodes)
        video_id = publish(nodes[1], sample)
        wait_for(lambda: len(seeders_of(nodes, video_id)) >= 3, timeout_s=60, what="seeding")
        holders = seeders_of(nodes, video_id)
        fetcher = next(n for n in nodes if n not in holders)
        fetch = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "--home", str(fetcher.home), "fetch", video_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=toktok_env(),
        )
        try:
            wait_for(lambda: fetcher.status()["chunks_fetched"] >= 2, timeout_s=30, what="start")
            victim = holders[-1]
            victim.kill()
            assert fetch.wait(timeout=120) == 0, fetch.stderr.read() if fetch.stderr else ""
        finally:
            if fetch.poll() is None:
                fetch.kill()
            if fetch.stderr is not None:
                fetch.stderr.close()
        assert chunks_complete(fetcher, video_id)


def test_a_peer_flooding_forged_gossip_is_cut_off_and_honest_gossip_flows(
    tmp_path: Path,
) -> None:
    with network(tmp_path, 3) as nodes:
        victim = nodes[1]
        with evil_peer(victim.addr, "flood") as (_, lines):
            wait_for(lambda: '"cut_off"' in "".join(lines), timeout_s=30, what="the ban")
            follow = sealed_follow(1, 2)
            assert nodes[2].call("submit", envelope=b64(follow.raw))["verdict"] == "new"
            for node in nodes:
                wait_for(partial(holds_message, node, follow.id), timeout_s=20, what="gossip")
        status = victim.status()
        assert status["bans"] >= 1 and status["ingest"]["rejected"] >= 1, status


def test_a_node_offline_catches_up_by_sync(tmp_path: Path) -> None:
    with network(tmp_path, 3) as nodes:
        source, sleeper = nodes[1], nodes[2]
        wait_for(lambda: sleeper.status()["peers"] >= 2, timeout_s=30, what="peers")
        sleeper.stop()
        messages = [sealed_manifest(account(i % 7), fake_video(b"v%d" % i)) for i in range(100)]
        messages += [sealed_follow(i % 9, 10 + i) for i in range(100)]
        for message in messages:
            assert source.call("submit", envelope=b64(message.raw))["verdict"] == "new"
        wait_for(lambda: nodes[0].status()["messages"] >= 200, timeout_s=30, what="gossip")
        restarted = start_node(sleeper.home, bootstrap=[nodes[0].addr])
        nodes[2] = restarted
        wait_for(lambda: restarted.status()["messages"] >= 200, timeout_s=30, what="catch-up")
        for message in messages[:5] + messages[-5:]:
            assert holds_message(restarted, message.id)


def test_a_node_finds_holders_it_is_not_connected_to_through_the_dht(
    tmp_path: Path, sample: Path
) -> None:
    # Each node dials only its bootstrap node, so the fetcher has no link to the holders.
    with network(tmp_path, 4, replicas=1, peers_target=1) as nodes:
        for node in nodes[1:]:
            wait_for(partial(peer_count_at_least, node, 1), timeout_s=20, what="bootstrap")
        creator, fetcher = nodes[1], nodes[3]
        video_id = publish(creator, sample)
        wait_for(partial(holds_video, fetcher, video_id), timeout_s=20, what="the manifest")
        wait_for(lambda: creator.status()["dht_provided"] >= 1, timeout_s=30, what="announce")
        toktok(fetcher.home, "fetch", video_id)
        assert chunks_complete(fetcher, video_id)
        assert fetcher.status()["dht_found"] >= 1


def test_metrics_on_loopback_and_a_clean_stop_on_sigterm(tmp_path: Path) -> None:
    with network(tmp_path, 2) as nodes:
        node = nodes[1]
        wait_for(partial(peer_count_at_least, node, 1), timeout_s=20, what="a peer")
        port = node.client().info.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        assert "\ntoktok_peers 1\n" in f"\n{text}", text
        assert "toktok_gossip_in_total" in text and "toktok_store_bytes" in text
        assert node.stop(signal.SIGTERM) == 0
        assert not (node.home / "run" / "control.json").exists()
        with Home(node.home).open() as stores:  # no lock left, nothing to recover
            assert stores.chunks.audit() == []


def test_when_a_seeder_leaves_placement_picks_another(tmp_path: Path, sample: Path) -> None:
    # One seeder besides the creator; peers unseen for 2 s stop counting for placement,
    # which is computed again every second.
    with network(tmp_path, 5, replicas=1, peer_live_s=2, rebalance_s=1) as nodes:
        connected(nodes)
        creator = nodes[1]
        video_id = publish(creator, sample)
        wait_for(lambda: len(seeders_of(nodes, video_id)) >= 2, timeout_s=30, what="seeding")
        seeder = next(n for n in seeders_of(nodes, video_id) if n is not creator)
        seeder.kill()
        others = [n for n in nodes if n is not creator and n is not seeder]
        wait_for(
            lambda: any(chunks_complete(n, video_id) for n in others),
            timeout_s=30,
            what="a new seeder",
        )
