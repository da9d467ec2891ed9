"""End to end through the real CLI: sample, publish, show, export, verify, follow."""

import dataclasses
import json
import subprocess
from pathlib import Path

import av
import pytest

from node.demo import DEMO_MARKER, NotADemoHome, fresh_home
from protocol.cid import chunk_id
from protocol.envelope import seal
from storage.chunks import PinReason
from storage.keys import Prefix
from storage.kv import Batch
from storage.stores import Stores
from tests.cli_helpers import toktok, toktok_env
from tests.factories import account, fake_video, manifest_for


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


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """`proc` exited 2 with a single ``error: ...`` line naming every one of `words`."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def stored_chunks(home: Path) -> tuple[int, int]:
    """(chunk count, bytes used) of the home's chunk store."""
    with Stores.open(home / "db") as stores:
        return stores.chunks.count, stores.chunks.used_bytes


def test_invalid_inputs_get_one_line_errors(
    tmp_path: Path, published: tuple[Path, str, Path]
) -> None:
    home, _, sample = published
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all\n" * 100)
    original = sample.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(original[: len(original) // 2])
    damaged = tmp_path / "damaged.mp4"
    middle = len(original) // 2
    damaged.write_bytes(original[:middle] + b"\xff" * 4096 + original[middle + 4096 :])
    missing = tmp_path / "missing.mp4"
    good = ("--title", "bad")
    cases: list[tuple[Path, tuple[str, ...], str]] = [
        (text, good, ""),
        (truncated, good, ""),
        (damaged, good, ""),
        (missing, good, str(missing)),
        (sample, ("--title", "  "), "title"),
        (sample, ("--title", "x" * 151), "title"),
        (sample, ("--title", "ok", *(f"--tag=t{i}" for i in range(11))), "tag"),
    ]
    before = json.loads(toktok(home, "videos", "--json").stdout)
    for path, meta, word in cases:
        chunks_before = stored_chunks(home)
        proc = toktok(home, "publish", str(path), *meta, check=False)
        assert_one_line_error(proc, word)
        assert stored_chunks(home) == chunks_before, (path.name, meta[:2])
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


def test_publish_json_prints_the_record_then_the_id(
    tmp_path: Path, published: tuple[Path, str, Path]
) -> None:
    # A home of its own: a second video in the shared one would change what others list.
    _, _, sample = published
    home = tmp_path / "home"
    toktok(home, "init")
    proc = toktok(home, "publish", str(sample), "--title", "As JSON", "--tag", "json", "--json")
    *record_lines, last = proc.stdout.strip().splitlines()
    record = json.loads("\n".join(record_lines))
    assert last == record["id"] and len(last) == 64
    assert record["title"] == "As JSON" and record["tags"] == ["json"]
    assert [r["name"] for r in record["renditions"]] == ["360p", "720p"]
    for rendition in record["renditions"]:
        segments = rendition["segments"]
        assert segments and all(s.keys() == {"cid", "size", "duration_ms"} for s in segments)
        assert all(s["size"] > 0 and s["duration_ms"] > 0 for s in segments)
        assert abs(sum(s["duration_ms"] for s in segments) - record["duration_ms"]) <= 100
        assert len({s["cid"] for s in segments}) == len(segments)
    assert json.loads(toktok(home, "show", last, "--json").stdout) == record


HOSTILE_TITLE = "oops [/] x [red]red[/red] [bold]:thumbs_up: [link=https://x.invalid]y"


def test_record_text_is_printed_literally(tmp_path: Path) -> None:
    # Titles, tags and rendition names will come from peers: none of it is rich markup.
    home = tmp_path / "home"
    toktok(home, "init")
    key = account(3)
    chunks = fake_video(b"hostile")
    manifest = manifest_for(key, chunks, title=HOSTILE_TITLE)
    rendition = dataclasses.replace(manifest.renditions[0], name="[i]360p")
    manifest = dataclasses.replace(manifest, tags=("[bold]tag",), renditions=(rendition,))
    message = seal(key, manifest)
    with Stores.open(home / "db") as stores:
        for data in chunks:
            stores.chunks.put(chunk_id(data), data)
        assert stores.manifests.put(message, pin=PinReason.OWN)
    # Wide enough that the table does not wrap the title.
    env = toktok_env(COLUMNS="200")
    listed = toktok(home, "videos", env=env)
    assert HOSTILE_TITLE in listed.stdout and listed.stderr == ""
    shown = toktok(home, "show", message.id.hex(), env=env)
    assert shown.stdout.splitlines()[0] == f"{HOSTILE_TITLE}  (0:06)"
    assert "tags      #[bold]tag\n" in shown.stdout
    assert "rendition [i]360p: 640x360 " in shown.stdout
    assert shown.stderr == ""


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_invalid_videos_limit(tmp_path: Path, limit: str) -> None:
    proc = toktok(tmp_path / "home", "videos", "--limit", limit, check=False)
    assert proc.returncode == 2 and "argument --limit" in proc.stderr


def test_unwritable_paths_get_one_line_errors(
    tmp_path: Path, published: tuple[Path, str, Path]
) -> None:
    home, video_id, _ = published
    missing = tmp_path / "missing" / "out.mp4"
    assert_one_line_error(toktok(home, "export", video_id, str(missing), check=False), str(missing))
    directory = tmp_path / "a directory"
    directory.mkdir()
    onto = toktok(home, "export", video_id, str(directory), check=False)
    assert_one_line_error(onto, str(directory), "directory")
    assert list(directory.iterdir()) == []
    sample = toktok(home, "sample", str(missing), "--seconds", "1", "--height", "64", check=False)
    assert_one_line_error(sample, str(missing))
    a_file = tmp_path / "a file"
    a_file.write_text("")
    assert_one_line_error(toktok(a_file / "home", "init", check=False), str(a_file))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a directory", "a file"]


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


def test_demo_home_is_made_and_remade(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    fresh_home(home)
    assert [p.name for p in home.iterdir()] == [DEMO_MARKER]
    (home / "node").mkdir()
    (home / "node" / "db").write_text("an earlier run")
    fresh_home(home)
    assert [p.name for p in home.iterdir()] == [DEMO_MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    fresh_home(empty)
    assert [p.name for p in empty.iterdir()] == [DEMO_MARKER]


def test_invalid_demo_home_is_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(NotADemoHome, match=f"refusing to delete .*{DEMO_MARKER}"):
        fresh_home(precious)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a file"
    a_file.write_text("keep me too")
    with pytest.raises(NotADemoHome, match="not a plain directory"):
        fresh_home(a_file)
    link = tmp_path / "link"
    link.symlink_to(precious)
    with pytest.raises(NotADemoHome, match="not a plain directory"):
        fresh_home(link)
    assert a_file.read_text() == "keep me too"
    assert (precious / "notes.txt").read_text() == "keep me"
