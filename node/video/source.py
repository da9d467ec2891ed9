"""Opening an uploaded file with PyAV, safely, and telling users what is wrong with it.

Uploads come from anyone, and FFmpeg's demuxers are a large attack surface, so the file is
opened through the 'file' protocol only (no playlist may pull in other files or URLs) and
only a short list of containers and codecs is let through. Every PyAV error is turned
into a NotAVideo or CorruptVideo with a one-line message; the PyAV error stays on
__cause__ for logs.
"""

import os
import stat
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import av
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.stream import Disposition, Stream
from av.video.stream import VideoStream

from .errors import CorruptVideo, NotAVideo, VideoError

SOURCE_BYTES_MAX = 4 * 1024**3
SIDE_PIXELS_MAX = 4096
SIDE_PIXELS_MIN = 16
SNIFF_BYTES = 192
# FFmpeg demuxer names; the MP4 one is registered under all of these aliases.
CONTAINERS = (
    "mov",
    "mp4",
    "m4a",
    "3gp",
    "3g2",
    "mj2",
    "matroska",
    "webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "ogg",
)
MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
# Containers that write the duration in their header, so a file that ends before it is
# truncated. MPEG-TS/PS and Ogg have no such field: FFmpeg reads their duration off the
# last timestamps in the file, which a truncated file moves along with its end.
DURATION_IN_HEADER = frozenset({MP4_DEMUXER, "matroska,webm", "avi", "flv"})
TOP_LEVEL_BOXES_MAX = 100_000
"""Top-level boxes walked to find a file's end: a fragmented upload has two per fragment."""
VIDEO_CODECS = frozenset(
    {
        "h264",
        "hevc",
        "vp8",
        "vp9",
        "av1",
        "mpeg4",
        "mpeg2video",
        "mpeg1video",
        "h263",
        "theora",
        "mjpeg",
        "prores",
    }
)
AUDIO_CODECS = frozenset(
    {"aac", "mp3", "mp2", "opus", "vorbis", "ac3", "eac3", "flac", "alac", "amr_nb", "amr_wb"}
)
PCM_CODEC_PREFIX = "pcm_"

# Only to word the error message for common files that are not videos.
SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)
RIFF_KINDS = {b"WAVE": "WAV audio", b"WEBP": "a WebP image"}


@dataclass(frozen=True)
class SourceStreams:
    """The streams of an upload that we transcode, and what its header claims about them."""

    video: VideoStream
    audio: AudioStream | None
    declared_duration: Fraction | None
    """From the container header, where the container has one (see DURATION_IN_HEADER)."""
    start: Fraction
    """The container's start time: timestamps count from here."""
    duration_estimate: Fraction | None
    """FFmpeg's idea of the duration, from the header or guessed; for progress reports."""
    fps: float


def check_file(path: str | os.PathLike[str]) -> int:
    """The size of the regular file at `path`; raises VideoError if it cannot be an upload."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise VideoError(f"cannot read the file: {error.strerror}") from error
    if not stat.S_ISREG(info.st_mode):
        raise VideoError("not a regular file")
    if info.st_size == 0:
        raise NotAVideo("not a video: the file is empty")
    if info.st_size > SOURCE_BYTES_MAX:
        raise VideoError(
            f"the file is {info.st_size} bytes, more than the {SOURCE_BYTES_MAX} byte limit"
        )
    return info.st_size


def open_source(path: str | os.PathLike[str]) -> InputContainer:
    """Open an upload for demuxing; raises NotAVideo, CorruptVideo or VideoError."""
    size = check_file(path)
    location = "file:" + os.path.abspath(os.fspath(path))
    try:
        container = av.open(
            location,
            mode="r",
            container_options={
                "format_whitelist": ",".join(CONTAINERS),
                "protocol_whitelist": "file",
            },
            metadata_errors="replace",
        )
    except (av.FFmpegError, UnicodeDecodeError) as error:
        if _looks_like_video_container(path):
            raise CorruptVideo(
                f"the video file is truncated or damaged: its header cannot be read ({why(error)})"
            ) from error
        raise NotAVideo(
            f"not a video: {_describe(path)} "
            "(accepted: MP4/MOV, WebM/MKV, AVI, FLV, MPEG-TS/PS, Ogg)"
        ) from error
    if container.format.name == MP4_DEMUXER:
        try:
            _check_box_tail(path, size)
        except BaseException:
            container.close()
            raise
    return container


def select_streams(container: InputContainer) -> SourceStreams:
    """Pick the video and audio streams to transcode.

    Raises NotAVideo (no video, or a codec we do not take), CorruptVideo (no picture size)
    or VideoError (picture size out of bounds).
    """
    video = _pick(container.streams.video)
    audio = _pick(container.streams.audio)
    if video is None:
        what = "audio but no video" if audio is not None else "no video"
        raise NotAVideo(f"not a video: the file has {what}")
    # The format, not the decoder FFmpeg picked for it (libdav1d decodes av1, mp3float mp3).
    codec = video.codec_context.codec.canonical_name
    if codec not in VIDEO_CODECS:
        raise NotAVideo(f"unsupported video codec '{codec}'")
    width, height = video.codec_context.width, video.codec_context.height
    if width == 0 or height == 0:
        raise CorruptVideo("the video stream has no picture size (damaged header?)")
    if not (min(width, height) >= SIDE_PIXELS_MIN and max(width, height) <= SIDE_PIXELS_MAX):
        raise VideoError(
            f"video is {width}x{height}; each side must be "
            f"{SIDE_PIXELS_MIN} to {SIDE_PIXELS_MAX} pixels"
        )
    if audio is not None:
        audio_codec = audio.codec_context.codec.canonical_name
        if audio_codec not in AUDIO_CODECS and not audio_codec.startswith(PCM_CODEC_PREFIX):
            raise NotAVideo(f"unsupported audio codec '{audio_codec}'")
    declared: Fraction | None = None
    if container.format.name in DURATION_IN_HEADER and container.duration:
        declared = Fraction(container.duration, av.time_base)
    start = Fraction(container.start_time or 0, av.time_base)
    rate = video.average_rate or video.guessed_rate or video.base_rate
    estimate = Fraction(container.duration, av.time_base) if container.duration else None
    return SourceStreams(video, audio, declared, start, estimate, float(rate) if rate else 0.0)


def packet_time(stream: Stream, ticks: int) -> Fraction:
    """A timestamp of `stream` in seconds."""
    time_base = stream.time_base
    assert time_base is not None, "demuxed streams always have a time base"
    return ticks * time_base


def corrupt(error: Exception) -> CorruptVideo:
    """A CorruptVideo for an error PyAV raised while demuxing or decoding."""
    return CorruptVideo(f"the video data is damaged and cannot be decoded ({why(error)})")


_S = TypeVar("_S", bound=Stream)


def _pick(streams: tuple[_S, ...]) -> _S | None:
    """The stream a player would choose: skip cover art, prefer the default disposition."""
    real = [s for s in streams if not s.disposition & Disposition.attached_pic]
    default = [s for s in real if s.disposition & Disposition.default]
    chosen = default or real
    return chosen[0] if chosen else None


def why(error: Exception) -> str:
    """One line saying what went wrong, without paths or multi-line FFmpeg logs."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        reason = error.strerror
    else:
        reason = type(error).__name__
    return " ".join(reason.split())


def _check_box_tail(path: str | os.PathLike[str], size: int) -> None:
    """Raise CorruptVideo if the file's last top-level box runs past the end of the file.

    FFmpeg plays an MP4 whose 'moov' lost a few trailing bytes (often just metadata) without
    complaint, but the file was still cut short, typically by an interrupted upload.
    """
    with open(path, "rb") as file:
        offset = 0
        for _ in range(TOP_LEVEL_BOXES_MAX):
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8:
                return  # At the end, or a few stray bytes FFmpeg ignores too.
            box_size, box_type = struct.unpack_from(">I4s", header)
            if box_size == 1 and len(header) == 16:
                (box_size,) = struct.unpack_from(">Q", header, 8)
            if box_size == 0:
                return  # The box runs to the end of the file, by definition.
            if box_size < 8:
                return  # Not a box structure we can follow; FFmpeg accepted it.
            if offset + box_size > size:
                name = box_type.decode("latin-1")
                raise CorruptVideo(
                    f"the video file is truncated: its '{name}' box lacks "
                    f"{offset + box_size - size} bytes"
                )
            offset += box_size


def _head(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(SNIFF_BYTES)
    except OSError:
        return b""


def _describe(path: str | os.PathLike[str]) -> str:
    """What a file that is not a video seems to be, for the error message."""
    head = _head(path)
    for magic, what in SIGNATURES:
        if head.startswith(magic):
            return f"the file looks like {what}"
    if head.startswith(b"RIFF") and head[8:12] in RIFF_KINDS:
        return f"the file looks like {RIFF_KINDS[head[8:12]]}"
    if _is_text(head):
        return "the file looks like text"
    return "unrecognised or unsupported file format"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # Not just a character cut by the sniff length.
            return False
        text = head[: error.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c.isspace() for c in text)


def _looks_like_video_container(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like one of our containers, so a failure to open is damage."""
    head = _head(path)
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return not head[8:12].startswith((b"M4A", b"M4B", b"M4P"))  # Audio-only MP4 brands.
    return (
        head.startswith((b"\x1a\x45\xdf\xa3", b"FLV", b"\x00\x00\x01\xba"))
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or (len(head) > 188 and head[0] == head[188] == 0x47)  # MPEG-TS sync bytes.
    )
