"""The video layer against real PyAV: samples, probing, ingest to CMAF, cutting, export.

Transcodes are slow, so each source is ingested once per module and shared by the tests.
"""

import contextlib
import hashlib
import io
import itertools
import os
import random
import struct
import wave
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from hypothesis import given, settings
from hypothesis import strategies as st

from node.video import (
    CorruptVideo,
    IngestResult,
    NotAVideo,
    Rendition,
    VideoError,
    export,
    ingest,
    probe,
    split_fragments,
    write_sample,
)
from node.video.cmaf import fragment_timing, parse_init
from node.video.encode import plan_renditions

SAMPLE_720_SECONDS = 5.0
SAMPLE_720_FPS = 24
SAMPLE_360_SECONDS = 4.3
SAMPLE_360_FPS = 30
SEGMENT_MS = 2000


@dataclass(frozen=True)
class Ingested:
    source: Path
    result: IngestResult
    progress: list[float]


def _ingest(source: Path) -> Ingested:
    ticks: list[float] = []
    return Ingested(source, ingest(source, progress=ticks.append), ticks)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def sample_720(workdir: Path) -> Path:
    path = workdir / "sample-720.mp4"
    write_sample(path, seconds=SAMPLE_720_SECONDS, height=720, fps=SAMPLE_720_FPS)
    return path


@pytest.fixture(scope="module")
def sample_360(workdir: Path) -> Path:
    path = workdir / "sample-360.mp4"
    write_sample(path, seconds=SAMPLE_360_SECONDS, height=360, fps=SAMPLE_360_FPS)
    return path


@pytest.fixture(scope="module")
def ingested_720(sample_720: Path) -> Ingested:
    return _ingest(sample_720)


@pytest.fixture(scope="module")
def ingested_360(sample_360: Path) -> Ingested:
    return _ingest(sample_360)


@pytest.fixture(scope="module")
def ingested_silent(sample_360: Path, workdir: Path) -> Ingested:
    path = workdir / "silent.mp4"
    _remux(sample_360, path, audio=False)
    return _ingest(path)


@pytest.fixture(params=["720", "360", "silent"])
def ingested(
    request: pytest.FixtureRequest,
    ingested_720: Ingested,
    ingested_360: Ingested,
    ingested_silent: Ingested,
) -> Ingested:
    return {"720": ingested_720, "360": ingested_360, "silent": ingested_silent}[request.param]


# Helpers that look at our output with PyAV and plain byte scans, not with our own parser.


def _remux(
    source: Path,
    target: Path,
    *,
    audio: bool = True,
    rotation: int | None = None,
    container: str = "mp4",
    options: dict[str, str] | None = None,
    audio_seconds_max: float | None = None,
) -> None:
    """Copy `source`'s packets into another file, optionally dropping audio or rotating."""
    with av.open(source) as reader, av.open(target, "w", format=container, options=options) as out:
        streams = [s for s in reader.streams if audio or s.type == "video"]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        if rotation is not None:
            video = mapping[reader.streams.video[0].index]
            assert isinstance(video, VideoStream)
            video.set_display_rotation(rotation)
        for packet in reader.demux(streams):
            if packet.dts is None:
                continue
            if audio_seconds_max is not None and packet.stream.type == "audio":
                assert packet.pts is not None
                if packet.pts * packet.time_base > audio_seconds_max:
                    continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


@dataclass(frozen=True)
class Decoded:
    video_frames: int
    keyframe_first: bool
    video_seconds: float
    audio_seconds: float
    width: int
    height: int


def _decode(data: bytes) -> Decoded:
    """Decode a whole file from memory with PyAV and measure what came out."""
    frames = 0
    first_key = False
    width = height = 0
    video_end = audio_end = 0.0
    with av.open(io.BytesIO(data), mode="r") as reader:
        for frame in reader.decode(*reader.streams):
            if isinstance(frame, av.VideoFrame):
                if frames == 0:
                    first_key, width, height = frame.key_frame, frame.width, frame.height
                frames += 1
                video_end = max(video_end, frame.time)
            elif isinstance(frame, av.AudioFrame):
                assert frame.time is not None
                audio_end = max(audio_end, frame.time + frame.samples / frame.sample_rate)
    return Decoded(frames, first_key, video_end, audio_end, width, height)


def _joined(rendition: Rendition) -> bytes:
    return rendition.init + b"".join(segment.data for segment in rendition.segments)


def _first_box(data: bytes) -> str:
    return data[4:8].decode("latin-1")


def _sps_from_avcc(init: bytes) -> bytes:
    """The first SPS in the init's avcC box, found by a byte scan (ISO/IEC 14496-15 5.3.3.1)."""
    payload = init.index(b"avcC") + 4
    (length,) = struct.unpack_from(">H", init, payload + 6)
    return init[payload + 8 : payload + 8 + length]


# Samples.


def test_sample_is_a_decodable_video_with_audio(sample_720: Path) -> None:
    decoded = _decode(sample_720.read_bytes())
    assert decoded.video_frames == round(SAMPLE_720_SECONDS * SAMPLE_720_FPS)
    assert (decoded.width, decoded.height) == (1280, 720)
    assert decoded.audio_seconds == pytest.approx(SAMPLE_720_SECONDS, abs=0.05)
    with av.open(sample_720) as reader:
        assert reader.streams.video[0].codec_context.name == "h264"
        assert reader.streams.audio[0].codec_context.name == "aac"


@pytest.mark.parametrize(
    ("height", "size"), [(360, (640, 360)), (480, (854, 480)), (241, (426, 240))]
)
def test_sample_is_16_by_9_with_even_sides(
    tmp_path: Path, height: int, size: tuple[int, int]
) -> None:
    path = tmp_path / "small.mp4"
    write_sample(path, seconds=0.2, height=height, fps=10)
    decoded = _decode(path.read_bytes())
    assert (decoded.width, decoded.height) == size


@pytest.mark.parametrize(
    "arguments",
    [
        {"seconds": 0.0},
        {"seconds": -1.0},
        {"seconds": 601.0},
        {"seconds": 1.0, "height": 8},
        {"seconds": 1.0, "height": 5000},
        {"seconds": 1.0, "fps": 0},
        {"seconds": 1.0, "fps": 1000},
    ],
)
def test_invalid_sample_arguments(tmp_path: Path, arguments: dict[str, float]) -> None:
    with pytest.raises(VideoError):
        write_sample(tmp_path / "bad.mp4", **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "bad.mp4").exists()


# Probing.


def test_probe_describes_the_sample(sample_720: Path) -> None:
    info = probe(sample_720)
    assert (info.width, info.height) == (1280, 720)
    assert info.duration_ms == pytest.approx(SAMPLE_720_SECONDS * 1000, abs=1)
    assert info.fps == pytest.approx(SAMPLE_720_FPS)
    assert info.has_audio
    assert info.video_codec == "h264"


def test_probe_reports_the_upright_size_of_a_rotated_video(
    sample_360: Path, tmp_path: Path
) -> None:
    rotated = tmp_path / "rotated.mp4"
    _remux(sample_360, rotated, rotation=-90)
    info = probe(rotated)
    assert (info.width, info.height) == (360, 640)


@pytest.mark.parametrize("container", ["matroska", "mpegts"])
def test_probe_accepts_other_containers(sample_360: Path, tmp_path: Path, container: str) -> None:
    path = tmp_path / f"sample.{container}"
    _remux(sample_360, path, container=container)
    info = probe(path)
    assert (info.width, info.height, info.has_audio) == (640, 360, True)
    assert info.duration_ms == pytest.approx(SAMPLE_360_SECONDS * 1000, abs=40)


def _text(path: Path) -> None:
    path.write_text("hello, this is not a video\n" * 20)


def _random(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(50_000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wav(path: Path) -> None:
    tone = (np.sin(np.arange(16_000) / 5) * 10_000).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
        writer.writeframes(tone.tobytes())


def _png(path: Path) -> None:
    picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 200, np.uint8), format="rgb24")
    with av.open(path, "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        out.mux(stream.encode(picture))
        out.mux(stream.encode(None))


def _m4a(path: Path) -> None:
    """An MP4 with an AAC track and no video: audio only, in a container we accept."""
    with av.open(path, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000, layout="mono")
        for index in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 48_000, index * 1024
            frame.time_base = Fraction(1, 48_000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


NOT_VIDEOS: list[tuple[str, Callable[[Path], None]]] = [
    ("notes.txt", _text),
    ("text-named.mp4", _text),
    ("random.bin", _random),
    ("empty.mp4", _empty),
    ("tone.wav", _wav),
    ("picture.png", _png),
    ("picture-named.mp4", _png),
    ("voice.m4a", _m4a),
]


@pytest.mark.parametrize(("name", "make"), NOT_VIDEOS, ids=[name for name, _ in NOT_VIDEOS])
def test_invalid_not_a_video(tmp_path: Path, name: str, make: Callable[[Path], None]) -> None:
    path = tmp_path / name
    make(path)
    for call in (probe, ingest):
        with pytest.raises(NotAVideo) as caught:
            call(path)
        message = str(caught.value)
        assert message.startswith("not a video") and "\n" not in message


def test_invalid_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="cannot read"):
        probe(tmp_path / "nothing-here.mp4")


def _cut(source: Path, target: Path, keep: float | int) -> Path:
    data = source.read_bytes()
    end = int(len(data) * keep) if isinstance(keep, float) else len(data) + keep
    target.write_bytes(data[:end])
    return target


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9, -100, -3000])
def test_invalid_truncated_mp4(sample_360: Path, tmp_path: Path, keep: float | int) -> None:
    # write_sample puts the moov last, so every cut here loses all or part of it.
    path = _cut(sample_360, tmp_path / "cut.mp4", keep)
    with pytest.raises(CorruptVideo) as caught:
        probe(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("container", "options", "keep"),
    [
        ("mp4", {"movflags": "faststart"}, 0.5),
        ("mp4", {"movflags": "faststart"}, 0.97),
        ("matroska", {}, 0.3),
        ("matroska", {}, 0.8),
    ],
)
def test_invalid_truncated_stream(
    sample_360: Path, tmp_path: Path, container: str, options: dict[str, str], keep: float
) -> None:
    # The header survives, so the file opens; the streams end before the header says.
    whole = tmp_path / "whole"
    _remux(sample_360, whole, container=container, options=options)
    path = _cut(whole, tmp_path / "cut", keep)
    for call in (probe, ingest):
        with pytest.raises(CorruptVideo, match="truncated"):
            call(path)


@pytest.mark.parametrize("audio", [True, False])
def test_invalid_damaged_middle(sample_360: Path, tmp_path: Path, audio: bool) -> None:
    source = tmp_path / "source.mp4"
    _remux(sample_360, source, audio=audio)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = random.Random(3).randbytes(8192)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptVideo, match="damaged"):
        ingest(damaged)


def test_invalid_too_long(sample_360: Path) -> None:
    with pytest.raises(VideoError, match="longer than") as caught:
        ingest(sample_360, duration_ms_max=1000)
    assert not isinstance(caught.value, NotAVideo | CorruptVideo)


# Ingest.


@pytest.mark.parametrize(
    ("size", "renditions"),
    [
        ((1920, 1080), [(640, 360), (1280, 720)]),
        ((1280, 720), [(640, 360), (1280, 720)]),
        ((1080, 1920), [(360, 640), (720, 1280)]),
        ((640, 480), [(480, 360)]),
        ((1280, 719), [(640, 360)]),
        ((320, 240), [(320, 240)]),
        ((853, 480), [(640, 360)]),
    ],
)
def test_rendition_ladder(size: tuple[int, int], renditions: list[tuple[int, int]]) -> None:
    assert [(plan.width, plan.height) for plan in plan_renditions(*size)] == renditions


def test_720p_source_gets_both_renditions(ingested_720: Ingested) -> None:
    renditions = ingested_720.result.renditions
    assert [(r.name, r.width, r.height) for r in renditions] == [
        ("360p", 640, 360),
        ("720p", 1280, 720),
    ]


def test_360p_source_gets_only_360p(ingested_360: Ingested) -> None:
    renditions = ingested_360.result.renditions
    assert [(r.name, r.width, r.height) for r in renditions] == [("360p", 640, 360)]


def test_rotated_source_becomes_portrait(sample_360: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    _remux(sample_360, rotated, rotation=-90)
    rendition = ingest(rotated).renditions[0]
    decoded = _decode(_joined(rendition))
    assert (rendition.width, rendition.height) == (decoded.width, decoded.height) == (360, 640)


def test_segments_are_about_two_seconds(ingested: Ingested) -> None:
    result = ingested.result
    for rendition in result.renditions:
        durations = [segment.duration_ms for segment in rendition.segments]
        assert all(d == pytest.approx(SEGMENT_MS, abs=42) for d in durations[:-1]), durations
        assert 0 < durations[-1] <= SEGMENT_MS * 5 // 4, durations
        assert sum(durations) == result.duration_ms


def test_short_tail_joins_the_last_segment(ingested_360: Ingested) -> None:
    # 4.3 s: a third segment would last 0.3 s, so the second one runs on to the end.
    durations = [s.duration_ms for s in ingested_360.result.renditions[0].segments]
    assert durations == [2000, 2300]


def test_renditions_cut_at_the_same_instants(ingested_720: Ingested) -> None:
    cuts = {tuple(s.duration_ms for s in r.segments) for r in ingested_720.result.renditions}
    assert len(cuts) == 1


def test_every_segment_starts_a_fragment_on_a_keyframe(ingested: Ingested) -> None:
    for rendition in ingested.result.renditions:
        assert _first_box(rendition.init) == "ftyp"
        for segment in rendition.segments:
            assert _first_box(segment.data) in ("moof", "styp")
            # The init plus this one segment must play on its own, from a keyframe.
            decoded = _decode(rendition.init + segment.data)
            assert decoded.keyframe_first
            assert decoded.video_frames > 0


def test_renditions_decode_for_the_full_duration(ingested: Ingested) -> None:
    result = ingested.result
    with av.open(ingested.source) as reader:
        source_frames = sum(1 for _ in reader.decode(video=0))
        has_audio = bool(reader.streams.audio)
    for rendition in result.renditions:
        decoded = _decode(_joined(rendition))
        assert decoded.video_frames == source_frames
        assert (decoded.width, decoded.height) == (rendition.width, rendition.height)
        frame_seconds = result.duration_ms / 1000 / source_frames
        assert decoded.video_seconds + frame_seconds == pytest.approx(
            result.duration_ms / 1000, abs=0.002
        )
        if has_audio:
            assert decoded.audio_seconds == pytest.approx(result.duration_ms / 1000, abs=0.05)
        else:
            assert decoded.audio_seconds == 0


def test_duration_matches_the_source(ingested_720: Ingested, ingested_360: Ingested) -> None:
    assert ingested_720.result.duration_ms == SAMPLE_720_SECONDS * 1000
    assert ingested_360.result.duration_ms == SAMPLE_360_SECONDS * 1000


def test_codecs_string_matches_the_sps(ingested: Ingested) -> None:
    for rendition in ingested.result.renditions:
        sps = _sps_from_avcc(rendition.init)
        assert sps[0] & 0x1F == 7
        video, *audio = rendition.codecs.split(",")
        assert video == "avc1." + sps[1:4].hex()
        with av.open(io.BytesIO(_joined(rendition))) as reader:
            assert audio == (["mp4a.40.2"] if reader.streams.audio else [])


def test_audio_that_stops_early_is_padded_to_the_end(sample_360: Path, tmp_path: Path) -> None:
    # Browsers play a muxed rendition only where both tracks have data.
    source = tmp_path / "short-audio.mp4"
    _remux(sample_360, source, audio_seconds_max=1.0)
    result = ingest(source)
    decoded = _decode(_joined(result.renditions[0]))
    assert decoded.audio_seconds >= result.duration_ms / 1000


def test_silent_source_gives_video_only_renditions(ingested_silent: Ingested) -> None:
    for rendition in ingested_silent.result.renditions:
        assert "mp4a" not in rendition.codecs
        assert rendition.init.count(b"trak") == 1


def test_bandwidth_is_the_peak_segment_bitrate(ingested: Ingested) -> None:
    for rendition in ingested.result.renditions:
        rates = [len(s.data) * 8 * 1000 / s.duration_ms for s in rendition.segments]
        assert rendition.bandwidth == pytest.approx(max(rates), abs=1)


def test_source_hash_and_size(ingested: Ingested) -> None:
    data = ingested.source.read_bytes()
    assert ingested.result.source_size == len(data)
    assert ingested.result.source_sha256 == hashlib.sha256(data).digest()


def test_thumbnail_is_a_small_jpeg(ingested_720: Ingested) -> None:
    jpeg = ingested_720.result.thumbnail_jpeg
    assert jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")
    decoded = _decode(jpeg)
    assert (decoded.width, decoded.height) == (480, 270)


def test_progress_increases_to_one(ingested: Ingested) -> None:
    ticks = ingested.progress
    assert len(ticks) > 10
    assert all(a < b for a, b in itertools.pairwise(ticks))
    assert ticks[0] >= 0 and ticks[-1] == 1.0


# Cutting and exporting.


def test_split_fragments_round_trip(ingested_720: Ingested) -> None:
    for rendition in ingested_720.result.renditions:
        init, segments = split_fragments(_joined(rendition))
        assert init == rendition.init
        assert segments == [s.data for s in rendition.segments]


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_split_fragments_round_trips_any_run_of_segments(
    ingested_360: Ingested, data: st.DataObject
) -> None:
    rendition = ingested_360.result.renditions[0]
    pieces = [s.data for s in rendition.segments]
    start = data.draw(st.integers(0, len(pieces)))
    end = data.draw(st.integers(start, len(pieces)))
    init, segments = split_fragments(rendition.init + b"".join(pieces[start:end]))
    assert (init, segments) == (rendition.init, pieces[start:end])


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_split_fragments_rejects_garbage_cleanly(blob: bytes) -> None:
    # Anything else than a result or CorruptVideo (IndexError, struct.error...) fails.
    with contextlib.suppress(CorruptVideo):
        split_fragments(blob)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_parsers_reject_damaged_output_cleanly(ingested_360: Ingested, data: st.DataObject) -> None:
    # Chunks come from peers: a flipped byte anywhere may fail only as a VideoError.
    rendition = ingested_360.result.renditions[0]
    blob = bytearray(rendition.init + rendition.segments[0].data)
    edits = st.tuples(st.integers(0, len(rendition.init) + 4000), st.integers(0, 255))
    for offset, value in data.draw(st.lists(edits, min_size=1, max_size=4)):
        blob[offset] = value
    with contextlib.suppress(VideoError):
        init, segments = split_fragments(bytes(blob))
        tracks = parse_init(init)
        for segment in segments:
            for track in tracks:
                fragment_timing(segment, track)


def _box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


FTYP = _box(b"ftyp", b"iso6\x00\x00\x02\x00iso6")
MOOV = _box(b"moov", _box(b"mvhd", bytes(100)))
FRAGMENT = _box(b"moof", _box(b"mfhd", bytes(8))) + _box(b"mdat", b"\x00" * 16)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "'ftyp'"),
        (b"\x00\x00\x00", "truncated box header"),
        (struct.pack(">I", 4) + b"ftyp", "impossible size"),
        (struct.pack(">I", 99) + b"ftyp" + bytes(8), "only 16 remain"),
        (MOOV + FRAGMENT, "'ftyp'"),
        (FTYP + FRAGMENT, "no 'moov'"),
        (FTYP + MOOV + _box(b"moof"), "without its 'mdat'"),
        (FTYP + MOOV + _box(b"moof") + _box(b"moof") + _box(b"mdat"), "without its 'mdat'"),
        (FTYP + MOOV + FRAGMENT + MOOV, "unexpected 'moov'"),
        (FTYP + MOOV + FRAGMENT + FRAGMENT[:-3], "remain"),
    ],
)
def test_invalid_fragmented_mp4(data: bytes, complaint: str) -> None:
    with pytest.raises(CorruptVideo, match=complaint):
        split_fragments(data)


def test_split_fragments_drops_a_trailing_mfra() -> None:
    init, segments = split_fragments(FTYP + MOOV + FRAGMENT + FRAGMENT + _box(b"mfra"))
    assert init == FTYP + MOOV
    assert segments == [FRAGMENT, FRAGMENT]


def test_export_writes_a_playable_file(ingested_720: Ingested, tmp_path: Path) -> None:
    rendition = ingested_720.result.renditions[1]
    out = tmp_path / "export.mp4"
    export(rendition.init, (s.data for s in rendition.segments), out)
    assert out.read_bytes() == _joined(rendition)
    assert _decode(out.read_bytes()).video_frames == SAMPLE_720_SECONDS * SAMPLE_720_FPS
    assert os.listdir(tmp_path) == ["export.mp4"]


@pytest.mark.parametrize(
    ("init", "segments"),
    [
        (b"garbage!", []),
        (FTYP + MOOV + FRAGMENT, []),
        (FTYP + MOOV, [FRAGMENT, b"\x00\x00\x00\x10moof"]),
        (FTYP + MOOV, [FRAGMENT, FTYP]),
    ],
)
def test_invalid_export_leaves_nothing(tmp_path: Path, init: bytes, segments: list[bytes]) -> None:
    out = tmp_path / "export.mp4"
    with pytest.raises(CorruptVideo):
        export(init, segments, out)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_export_gives_the_file_the_umask_mode(tmp_path: Path, umask: int) -> None:
    out = tmp_path / "export.mp4"
    previous = os.umask(umask)
    try:
        export(FTYP + MOOV, [FRAGMENT], out)
    finally:
        os.umask(previous)
    assert out.read_bytes() == FTYP + MOOV + FRAGMENT
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("relative", "error"),
    [("missing/export.mp4", FileNotFoundError), ("a directory", IsADirectoryError)],
)
def test_export_errors_name_the_target(tmp_path: Path, relative: str, error: type[OSError]) -> None:
    (tmp_path / "a directory").mkdir()
    out = tmp_path / relative
    with pytest.raises(error) as caught:
        export(FTYP + MOOV, [FRAGMENT], out)
    assert caught.value.filename == str(out)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a directory"]
