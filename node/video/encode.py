"""The rendition ladder, and one H.264/AAC encoder muxing fragmented MP4 per rendition."""

from __future__ import annotations  # PyAV's Packet is generic only to type checkers.

import os
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.packet import Packet
from av.video.frame import PictureType, VideoFrame

VIDEO_TIMESCALE = 90_000
"""Encoder and track clock (ticks a second): the MPEG clock, exact for 24/25/30/60 fps and
their NTSC variants."""
AUDIO_RATES_HZ = (44_100, 48_000)
AUDIO_RATE_DEFAULT_HZ = 48_000
X264_PRESET = "superfast"
"""Measured on 2 cores (bench/ingest.py): 'veryfast' misses 3x real time for 360p+720p."""
X264_CRF = "23"
X264_THREADS = 3
"""Frame threads, so encode() returns while x264 works and decoding overlaps with it."""
AUDIO_BPS = 128_000
"""One AAC encoding serves every rendition (see RenditionEncoder.mux_audio)."""
# CMAF fragments: a fragment opens at every keyframe, the moov carries no samples, each
# moof is its own base for data offsets, the CMAF brands and no edit list ('cmaf'), and no
# mfra index trails the file, since the file is cut into chunks anyway.
MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof+skip_trailer+cmaf"


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: a name, the short side it targets, and its video bitrate cap."""

    name: str
    short_side: int
    video_bps_max: int


LADDER = (
    Rung("360p", 360, 800_000),
    Rung("720p", 720, 2_500_000),
)


@dataclass(frozen=True)
class Plan:
    rung: Rung
    width: int
    height: int


def plan_renditions(width: int, height: int) -> list[Plan]:
    """The renditions of an upright `width` x `height` video.

    The rung is named after the short side, so a portrait 1080x1920 phone video gets a
    720x1280 '720p' as a landscape one gets 1280x720. The first rung is always made, smaller
    than its name if the source is (we never upscale); the others only if the source
    reaches them. Aspect ratio is kept, sides rounded to even numbers for 4:2:0 chroma.
    """
    short = min(width, height)
    plans = []
    for index, rung in enumerate(LADDER):
        if index > 0 and short < rung.short_side:
            continue
        scale = min(Fraction(1), Fraction(rung.short_side, short))
        plans.append(Plan(rung, _even(width * scale), _even(height * scale)))
    return plans


class RenditionEncoder:
    """Encodes frames of one rendition into a fragmented MP4 file.

    Keyframes come only where the caller marks a frame PictureType.I: x264's own keyframe
    placement (scene cuts, keyint) is switched off, so every rendition cuts at the same
    instants and a player can switch renditions at any segment boundary.
    """

    def __init__(
        self,
        plan: Plan,
        path: str | os.PathLike[str],
        fps: Fraction,
        audio: tuple[int, str] | None,
        gop_frames_max: int,
    ) -> None:
        """`audio` is (sample rate, layout name), or None for a video-only rendition."""
        self.plan = plan
        self.path = path
        self.output = av.open(
            os.fspath(path), mode="w", format="mp4", options={"movflags": MOVFLAGS}
        )
        self.video = self.output.add_stream("libx264", rate=fps)
        self.video.width = plan.width
        self.video.height = plan.height
        self.video.pix_fmt = "yuv420p"
        context = self.video.codec_context
        context.thread_type = "FRAME"
        context.thread_count = X264_THREADS
        context.time_base = Fraction(1, VIDEO_TIMESCALE)
        rate = plan.rung.video_bps_max
        context.options = {
            "preset": X264_PRESET,
            "crf": X264_CRF,
            # Capped CRF: constant quality, but never over the cap for more than a second's
            # buffer, so a segment's size stays predictable for the network.
            "maxrate": str(rate),
            "bufsize": str(rate),
            # Longer than any forced GOP, so x264 never adds a keyframe of its own.
            "g": str(gop_frames_max),
            "forced-idr": "1",
            # No B-frames: presentation order is decode order, so no composition offsets or
            # edit lists, which players resolve differently (FFmpeg shifts the video against
            # the audio by the reorder delay). It also cuts x264's time by about a third
            # on this machine, at the price of some 10% more bits on camera footage.
            "bf": "0",
            "x264-params": "scenecut=0:open-gop=0",
        }
        self.audio = None
        if audio is not None:
            sample_rate, layout = audio
            self.audio = self.output.add_stream("aac", rate=sample_rate, layout=layout)
            self.audio.codec_context.bit_rate = AUDIO_BPS
            self.audio.codec_context.time_base = Fraction(1, sample_rate)

    def add_video(self, frame: VideoFrame) -> None:
        """Scale `frame` (its pts in 1/VIDEO_TIMESCALE, pict_type I or NONE) and encode it."""
        scaled = frame.reformat(
            width=self.plan.width, height=self.plan.height, format="yuv420p", interpolation="AREA"
        )
        self.output.mux(self.video.encode(scaled))

    def encode_audio(self, frame: AudioFrame | None) -> list[Packet[AudioStream]]:
        """AAC packets for `frame` (None flushes), for mux_audio() on every rendition."""
        assert self.audio is not None, "only renditions with audio encode it"
        return self.audio.encode(frame)

    def mux_audio(self, packet: Packet[AudioStream]) -> None:
        """Write an AAC packet encoded by any rendition with the same audio settings.

        Audio is the same at every rung, so it is encoded once: every rendition's stream is
        opened with the same settings, hence the same AudioSpecificConfig, and muxing takes
        its own reference to the packet, so one packet can go to every file.
        """
        assert self.audio is not None, "only renditions with audio mux it"
        packet.stream = self.audio
        self.output.mux(packet)

    def finish(self) -> bytes:
        """Flush the video encoder, close the file, and return its bytes.

        Flush the audio first: encode_audio(None), then mux_audio() its packets.
        """
        self.output.mux(self.video.encode(None))
        self.output.close()
        with open(self.path, "rb") as file:
            return file.read()

    def close(self) -> None:
        """Release the encoders without flushing (after an error)."""
        self.output.close()


def keyframe_type(is_cut: bool) -> PictureType:
    """The pict_type that tells libx264 to start a new GOP here, or to choose freely.

    Decoded frames carry the type they had in the source; left alone, libx264 would copy the
    source's GOP structure, so every frame must be set one way or the other.
    """
    return PictureType.I if is_cut else PictureType.NONE


def audio_output(sample_rate: int, channels: int) -> tuple[int, str]:
    """(rate, layout) for AAC: keep 44.1/48 kHz, else 48 kHz; mono stays mono, else stereo."""
    rate = sample_rate if sample_rate in AUDIO_RATES_HZ else AUDIO_RATE_DEFAULT_HZ
    return rate, "mono" if channels == 1 else "stereo"


def _even(value: Fraction) -> int:
    return max(2, round(value / 2) * 2)
