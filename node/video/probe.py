"""Probing an upload: is it a whole, decodable video, and what are its size, length and rate."""

from __future__ import annotations  # PyAV's Packet is generic only to type checkers.

import os
from fractions import Fraction

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.frame import VideoFrame

from .errors import CorruptVideo
from .model import ProbeInfo
from .source import SourceStreams, corrupt, open_source, packet_time, select_streams
from .upright import display_size

TRUNCATION_TOLERANCE = Fraction(1, 4)
"""How far streams may end short of the declared duration (seconds) before we call the
file truncated: more than any frame or audio packet lasts, far less than a lost cluster."""


class Extent:
    """Where the video stream's packets start and end, and whether the file is complete.

    Fed every demuxed packet; a packet the demuxer flags as cut short (a faststart MP4 with
    its tail missing) is damage, and so is a file whose streams stop well before the
    duration its header declares.
    """

    def __init__(self, source: SourceStreams) -> None:
        self.source = source
        self.video_start: Fraction | None = None
        self.video_end = Fraction(0)
        self.end = Fraction(0)
        frame_seconds = 1 / Fraction(source.fps) if source.fps > 0 else Fraction(0)
        self.frame_seconds = frame_seconds.limit_denominator(1_000_000)

    def add(self, packet: Packet[Stream]) -> None:
        """Account for one packet; raises CorruptVideo if the demuxer saw it cut short."""
        if packet.is_corrupt:
            raise CorruptVideo("the video file is truncated or damaged (a packet is cut short)")
        if packet.pts is None:
            return
        start = packet_time(packet.stream, packet.pts)
        is_video = packet.stream.index == self.source.video.index
        if packet.duration:
            length = packet_time(packet.stream, packet.duration)
        else:
            length = self.frame_seconds if is_video else Fraction(0)
        self.end = max(self.end, start + length)
        if is_video:
            self.video_start = start if self.video_start is None else min(self.video_start, start)
            self.video_end = max(self.video_end, start + length)

    @property
    def video_seconds(self) -> Fraction:
        """How long the video stream lasts, from its first to its last frame's end."""
        return self.video_end - self.video_start if self.video_start is not None else Fraction(0)

    def check_complete(self) -> None:
        """Raise CorruptVideo if no video was found or the streams stop short of the header."""
        if self.video_start is None:
            raise CorruptVideo("the video stream has no frames")
        declared = self.source.declared_duration
        reached = self.end - self.source.start
        if declared is not None and reached < declared - TRUNCATION_TOLERANCE:
            raise CorruptVideo(
                f"the video file is truncated: it stops at {float(reached):.1f} s "
                f"of the {float(declared):.1f} s its header declares"
            )


def probe(path: str | os.PathLike[str]) -> ProbeInfo:
    """Check that `path` holds a whole video we accept, and describe it.

    Reads every packet (cheap: no decoding) to catch truncation, and decodes the first
    frame to learn the displayed size. Damage inside the compressed frames is found only by
    decoding them all, which ingest() does. Raises NotAVideo, CorruptVideo or VideoError.
    """
    with open_source(path) as container:
        try:
            return _probe(container)
        except av.FFmpegError as error:
            raise corrupt(error) from error


def _probe(container: InputContainer) -> ProbeInfo:
    source = select_streams(container)
    extent = Extent(source)
    first: VideoFrame | None = None
    streams = [source.video] if source.audio is None else [source.video, source.audio]
    for packet in container.demux(streams):
        extent.add(packet)
        if first is None and packet.stream.index == source.video.index:
            first = next(iter(source.video.decode(packet)), None)
    extent.check_complete()
    if first is None:
        # The decoder may hold frames back until it is flushed (B-frames, threads).
        first = next(iter(source.video.decode(None)), None)
    if first is None:
        raise CorruptVideo("no frame of the video stream can be decoded")
    width, height = display_size(first, source.video.sample_aspect_ratio)
    return ProbeInfo(
        duration_ms=round(extent.video_seconds * 1000),
        width=width,
        height=height,
        fps=source.fps,
        has_audio=source.audio is not None,
        video_codec=source.video.codec_context.codec.canonical_name,
    )
