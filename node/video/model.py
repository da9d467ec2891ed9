"""The values the video layer hands to the rest of the node; plain frozen data, no behaviour."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeInfo:
    """What probing an upload found. Width and height are as displayed (rotation applied)."""

    duration_ms: int
    width: int
    height: int
    fps: float
    has_audio: bool
    video_codec: str


@dataclass(frozen=True)
class Segment:
    """One CMAF media segment (moof + mdat, after a styp if the muxer wrote one).

    It starts with a video keyframe, so a player can start or seek here given only the init
    segment.
    """

    data: bytes
    duration_ms: int


@dataclass(frozen=True)
class Rendition:
    """One encoding of a video: an init segment (ftyp + moov) and its media segments."""

    name: str
    width: int
    height: int
    bandwidth: int
    """Peak bits per second over the segments, as HLS and DASH define it."""
    codecs: str
    """RFC 6381 codecs parameter for MSE, e.g. 'avc1.64001f,mp4a.40.2'."""
    init: bytes
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class IngestResult:
    """Everything a publisher needs to build a manifest for an uploaded video."""

    duration_ms: int
    source_sha256: bytes
    source_size: int
    thumbnail_jpeg: bytes
    renditions: tuple[Rendition, ...]
