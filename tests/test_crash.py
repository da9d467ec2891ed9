"""Crash safety: a publishing process killed with SIGKILL at random moments.

After every kill the store must open, every stored manifest must have all its chunks
present and intact, and the chunk store's byte accounting must match its contents. Half
of the kills land at a uniformly random time in the whole run, half just after the store
phase starts (the node logs a ``store_start`` event), where the writes happen.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.video import write_sample
from storage.keys import Prefix, key
from storage.manifests import manifest_chunks
from storage.stores import Stores
from tests.cli_helpers import toktok, toktok_env

KILLS_MIN = 20
RUNS_MAX = 60


def check_consistent(db: Path) -> int:
    """Assert the store's invariants; return the number of complete videos.

    Every manifest's chunks are present and intact; the byte counters match the chunks;
    no publish is left pending, and every pinned chunk belongs to a stored video (a killed
    publish leaks nothing).
    """
    with Stores.open(db) as stores:
        videos = 0
        named: set[bytes] = set()
        for mid in list(stores.manifests.ids()):
            stored = stores.manifests.get(mid)
            assert stored is not None
            for cid in manifest_chunks(stored.manifest):
                stores.chunks.get(cid)  # raises if missing or damaged
                named.add(cid)
            videos += 1
        sizes = {cid: stores.chunks.size_of(cid) for cid in stores.chunks.ids()}
        pinned = {cid for cid in sizes if stores.chunks.pins(cid)}
        assert stores.chunks.used_bytes == sum(sizes.values())
        assert stores.chunks.count == len(sizes)
        assert stores.chunks.pinned_bytes == sum(sizes[cid] for cid in pinned)
        assert pinned <= named, f"{len(pinned - named)} pinned chunks belong to no video"
        assert not list(stores.kv.iterate(key(Prefix.MANIFEST_PENDING)))
        assert stores.chunks.audit() == []
    return videos


def publish(home: Path, sample: Path, title: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.cli",
            "--home",
            str(home),
            "--log-level",
            "info",
            "publish",
            str(sample),
            "--title",
            title,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=toktok_env(),
    )


def wait_for_store_start(proc: subprocess.Popen[str]) -> bool:
    assert proc.stderr is not None
    return any('"store_start"' in line for line in proc.stderr)


@pytest.mark.slow
def test_sigkill_while_publishing_leaves_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("TOKTOK_CRASH_SEED", "0")) or random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    print(f"reproduce with TOKTOK_CRASH_SEED={seed}")
    home = tmp_path / "home"
    toktok(home, "init")
    # One full run, to learn how long a publish takes.
    first = tmp_path / "sample-0.mp4"
    write_sample(first, seconds=3.0, height=360)
    started = time.monotonic()
    toktok(home, "publish", str(first), "--title", "run 0")
    full_s = time.monotonic() - started
    kills = completed = 0
    for run in range(1, RUNS_MAX + 1):
        if kills >= KILLS_MIN:
            break
        sample = tmp_path / f"sample-{run}.mp4"
        write_sample(sample, seconds=2.0 + 0.1 * run, height=360)
        proc = publish(home, sample, f"run {run}")
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, full_s))
        else:
            wait_for_store_start(proc)
            time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
        if proc.returncode == 0:
            completed += 1
        else:
            assert proc.returncode == -signal.SIGKILL, f"publish failed by itself (seed {seed})"
        check_consistent(home / "db")
        sample.unlink()
    assert kills >= KILLS_MIN, f"only {kills} kills landed (seed {seed})"
    videos = check_consistent(home / "db")
    assert videos >= 1 + completed
    verify = toktok(home, "verify")
    assert verify.returncode == 0, verify.stdout
    listed = json.loads(toktok(home, "videos", "--json", "--limit", "1000").stdout)
    assert len(listed) == videos
