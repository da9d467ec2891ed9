"""End to end through the real CLI: sample, publish, show, export, verify, follow."""

import json
from pathlib import Path

import av
import pytest

from protocol.cid import chunk_id
from storage.keys import Prefix
from storage.kv import Batch
from storage.stores import Stores
from tests.cli_helpers import toktok, toktok_env
from tests.factories import account


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A home with one published 6 s 720p sample: (home, video id, sample path)."""
    root = tmp_path_factory.mktemp("cli")
    home = root / "home"
    toktok(home, "init", "--name", "creator")
    sample = root / "sample.mp4"
    toktok(home, "sample", str(sample), "--seconds", "6", "--height", "720")
    proc = toktok(home, "publish", str(sample), "--title", "Hello toktok", "--tag", "test")
    video_id = proc.stdout.strip().splitlines()[-1]
    assert len(video_id) == 64
    return home, video_id, sample


def test_publish_show_videos(published: tuple[Path, str, Path]) -> None:
    home, video_id, sample = published
    shown = json.loads(toktok(home, "show", video_id[:12], "--json").stdout)
    assert shown["id"] == video_id
    assert shown["title"] == "Hello toktok"
    assert shown["tags"] == ["test"]
    assert [r["name"] for r in shown["renditions"]] == ["360p", "720p"]
    assert 5500 <= shown["duration_ms"] <= 6500
    import hashlib

    assert shown["source_sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    listed = json.loads(toktok(home, "videos", "--json").stdout)
    assert [v["id"] for v in listed] == [video_id]
    assert "Hello toktok" in toktok(home, "show", video_id).stdout


@pytest.mark.parametrize("rendition,height", [("360p", 360), ("720p", 720)])
def test_export_decodes_for_the_full_duration(
    published: tuple[Path, str, Path], tmp_path: Path, rendition: str, height: int
) -> None:
    home, video_id, _ = published
    out = tmp_path / f"{rendition}.mp4"
    toktok(home, "export", video_id, str(out), "--rendition", rendition)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = 0
        last_pts_s = 0.0
        for frame in container.decode(stream):
            frames += 1
            assert frame.height == height
            assert frame.pts is not None and stream.time_base is not None
            last_pts_s = float(frame.pts * stream.time_base)
    assert frames >= 30 * 6 - 2
    assert last_pts_s >= 5.8


def test_verify_detects_a_flipped_byte(published: tuple[Path, str, Path]) -> None:
    home, video_id, _ = published
    assert "ok" in toktok(home, "verify").stdout
    shown = json.loads(toktok(home, "show", video_id, "--json").stdout)
    from protocol.cid import cid_from_text

    cid = cid_from_text(shown["renditions"][0]["segments"][1]["cid"])
    key = bytes([Prefix.CHUNK_DATA]) + cid
    with Stores.open(home / "db") as stores:
        original = stores.kv.get(key)
        assert original is not None and chunk_id(original) == cid
        damaged = bytearray(original)
        damaged[len(damaged) // 3] ^= 0x40
        batch = Batch()
        batch.put(key, bytes(damaged))
        stores.kv.write(batch, sync=True)
    try:
        proc = toktok(home, "verify", check=False)
        assert proc.returncode == 1
        assert shown["renditions"][0]["segments"][1]["cid"] in proc.stdout
        export = toktok(
            home, "export", video_id, str(home / "x.mp4"), "--rendition", "360p", check=False
        )
        assert export.returncode == 2 and "damaged" in export.stderr.lower()
    finally:
        with Stores.open(home / "db") as stores:
            batch = Batch()
            batch.put(key, original)
            stores.kv.write(batch, sync=True)
    assert toktok(home, "verify").returncode == 0


def test_invalid_inputs_get_one_line_errors(
    tmp_path: Path, published: tuple[Path, str, Path]
) -> None:
    home, _, sample = published
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all\n" * 100)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(sample.read_bytes()[: sample.stat().st_size // 2])
    before = json.loads(toktok(home, "videos", "--json").stdout)
    for path in (text, truncated):
        proc = toktok(home, "publish", str(path), "--title", "bad", check=False)
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    blank = toktok(home, "publish", str(sample), "--title", "  ", check=False)
    assert blank.returncode == 2 and "title" in blank.stderr
    wrong = toktok(
        home,
        "publish",
        str(sample),
        "--title",
        "x",
        check=False,
        env=toktok_env(TOKTOK_PASSPHRASE="nope nope"),
    )
    assert wrong.returncode == 2 and "passphrase" in wrong.stderr.lower()
    assert json.loads(toktok(home, "videos", "--json").stdout) == before


def test_follow_and_unfollow(published: tuple[Path, str, Path]) -> None:
    home, _, _ = published
    other = account(7).account_id
    toktok(home, "follow", other)
    assert other in toktok(home, "following").stdout
    toktok(home, "unfollow", other)
    assert other not in toktok(home, "following").stdout
    bad = toktok(home, "follow", other[:-1] + ("a" if other[-1] != "a" else "b"), check=False)
    assert bad.returncode == 2 and "checksum" in bad.stderr


def test_init_twice_is_refused(published: tuple[Path, str, Path]) -> None:
    home, _, _ = published
    proc = toktok(home, "init", check=False)
    assert proc.returncode == 2 and "already" in proc.stderr
