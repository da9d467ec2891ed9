"""The decode loop: one pass over the source feeding every rendition's encoder."""

import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.container import InputContainer
from av.video.frame import VideoFrame

from .encode import (
    VIDEO_TIMESCALE,
    Plan,
    RenditionEncoder,
    audio_output,
    keyframe_type,
    plan_renditions,
)
from .errors import CorruptVideo, VideoError
from .probe import Extent
from .source import corrupt, select_streams
from .thumbnail import THUMBNAIL_AT_SECONDS, encode_jpeg, thumbnail_size
from .upright import Upright, display_size

SEGMENT_SECONDS = Fraction(2)
SEGMENT_TAIL_MIN = Fraction(1, 2)
"""A last segment shorter than this (seconds) is folded into the one before it."""
FPS_MAX = 60
FPS_DEFAULT = 30
GOP_SECONDS_MAX = 10
"""x264's own keyframe interval: far beyond the forced one, so it never cuts on its own."""
AUDIO_LEAD_FRAMES_MAX = 2048
"""Decoded audio frames held while waiting for the first video frame (some 45 s of AAC)."""
SILENCE_FRAME_SAMPLES = 1024
DECODE_THREADS = 1
"""Single-threaded decoding: FFmpeg's frame threads lose the flag that marks frames whose
damage the decoder concealed, and a 2-core machine has no spare core for them anyway."""


class Transcode:
    """Decodes `container` once and encodes every rendition into files under `workdir`.

    Encoders are created at the first decoded frame, once its upright size is known.
    """

    def __init__(
        self,
        container: InputContainer,
        workdir: str | os.PathLike[str],
        *,
        duration_max: Fraction,
        progress: Callable[[float], None],
    ) -> None:
        self.container = container
        self.source = select_streams(container)
        self.workdir = workdir
        self.duration_max = duration_max
        self.progress = progress
        self.extent = Extent(self.source)
        declared = self.source.declared_duration
        if declared is not None and declared > duration_max:
            raise _too_long(duration_max)
        self.expected = declared or self.source.duration_estimate
        self.cuts = _Cuts(self.expected)
        self.upright = Upright()
        self.encoders: list[RenditionEncoder] = []
        self.start: Fraction | None = None
        self.last_pts: int | None = None
        self.video_end = Fraction(0)
        self.audio_end_samples = 0
        self.pending_audio: list[AudioFrame] = []
        self.resampler: AudioResampler | None = None
        self.audio_key: tuple[str, str, int] | None = None
        self.audio_params: tuple[int, str] | None = None
        self.still: VideoFrame | None = None
        self.still_time = Fraction(-1)
        self.still_size = (0, 0)
        rate = Fraction(self.source.fps or FPS_DEFAULT).limit_denominator(1001)
        self.fps = min(rate, Fraction(FPS_MAX))
        # Frames closer together than this (in 1/VIDEO_TIMESCALE) are dropped: sources above
        # FPS_MAX are thinned, and repeated or backwards timestamps are skipped.
        self.pts_step_min = VIDEO_TIMESCALE * 3 // (4 * FPS_MAX)

    def run(self) -> list[tuple[Plan, bytes]]:
        """Transcode everything; return each rendition's plan and fragmented MP4 bytes."""
        for frame in self._decoded():
            if isinstance(frame, VideoFrame):
                self._video(frame)
            elif isinstance(frame, AudioFrame):
                self._audio(frame)
        self.extent.check_complete()
        if not self.encoders:
            raise CorruptVideo("no frame of the video stream can be decoded")
        if self.audio_params is not None:
            self._finish_audio()
        finished = [(encoder.plan, encoder.finish()) for encoder in self.encoders]
        self.encoders = []
        return finished

    def close(self) -> None:
        """Release encoders left open by an error."""
        for encoder in self.encoders:
            encoder.close()
        self.encoders = []

    def thumbnail_jpeg(self) -> bytes:
        assert self.still is not None, "run() saw a video frame"
        return encode_jpeg(self.still, *self.still_size)

    def _decoded(self) -> Iterator[VideoFrame | AudioFrame]:
        """Every decoded frame of the chosen streams; decoder errors become CorruptVideo."""
        video = self.source.video
        video.codec_context.thread_count = DECODE_THREADS
        streams = [video] if self.source.audio is None else [video, self.source.audio]
        packets = self.container.demux(streams)
        while True:
            try:
                packet = next(packets)
                self.extent.add(packet)
                frames = packet.decode()
            except StopIteration:
                return
            except av.FFmpegError as error:
                raise corrupt(error) from error
            for frame in frames:
                assert isinstance(frame, VideoFrame | AudioFrame), "we demux no subtitles"
                if frame.is_corrupt:
                    raise CorruptVideo("the video data is damaged: a frame decodes with errors")
                yield frame

    def _video(self, frame: VideoFrame) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        time = frame.pts * frame.time_base
        if self.start is None:
            self._open(frame, time)
        assert self.start is not None
        time -= self.start
        if time > self.duration_max:
            raise _too_long(self.duration_max)
        pts = round(time * VIDEO_TIMESCALE)
        if self.last_pts is not None and pts < self.last_pts + self.pts_step_min:
            return
        self.last_pts = pts
        self.video_end = time + 1 / self.fps
        upright = self.upright(frame)
        if self.still_time < THUMBNAIL_AT_SECONDS <= time or self.still is None:
            self.still, self.still_time = upright, time
        upright.pts = pts
        upright.time_base = Fraction(1, VIDEO_TIMESCALE)
        upright.pict_type = keyframe_type(self.cuts.is_cut(time))
        for encoder in self.encoders:
            encoder.add_video(upright)
        if self.expected:
            self.progress(float(min(Fraction(1), time / self.expected)))

    def _open(self, first: VideoFrame, time: Fraction) -> None:
        """Set the timeline's origin and create the encoders, from the first video frame."""
        self.start = time
        width, height = display_size(first, self.source.video.sample_aspect_ratio)
        self.still_size = thumbnail_size(width, height)
        if self.source.audio is not None:
            context = self.source.audio.codec_context
            self.audio_params = audio_output(context.sample_rate, context.channels)
        gop_frames_max = math.ceil(self.fps * GOP_SECONDS_MAX)
        for plan in plan_renditions(width, height):
            path = os.path.join(self.workdir, f"{plan.rung.name}.mp4")
            self.encoders.append(
                RenditionEncoder(plan, path, self.fps, self.audio_params, gop_frames_max)
            )
        pending, self.pending_audio = self.pending_audio, []
        for frame in pending:
            self._audio(frame)

    def _audio(self, frame: AudioFrame) -> None:
        if self.start is None:
            if len(self.pending_audio) >= AUDIO_LEAD_FRAMES_MAX:
                raise CorruptVideo("the audio runs far ahead of the first video frame")
            self.pending_audio.append(frame)
            return
        if frame.pts is not None and frame.time_base is not None:
            time = frame.pts * frame.time_base - self.start
            if time > self.duration_max:
                raise _too_long(self.duration_max)
            # Onto the video's timeline, counted in samples: audio before the first frame
            # gets trimmed, a late start padded with silence, by the resampler below. The
            # container's own clock may be coarser than a sample (AVI counts packets), and
            # the encoder re-chunks frames to 1024 samples by these timestamps.
            frame.pts = round(time * frame.sample_rate)
            frame.time_base = Fraction(1, frame.sample_rate)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self.resampler is None:
            assert self.audio_params is not None, "set with the encoders, for sources with audio"
            rate, layout = self.audio_params
            # async=1: pad or trim wherever timestamps jump (more than 0.1 s by default),
            # and first_pts=0: start exactly with the video. Keeps lip sync across gaps.
            self.resampler = AudioResampler(
                format="fltp", layout=layout, rate=rate, options={"async": "1", "first_pts": "0"}
            )
            self.audio_key = key
        elif key != self.audio_key:
            raise VideoError("the audio format changes mid-stream, which is not supported")
        for resampled in self.resampler.resample(frame):
            self._encode_audio(resampled)

    def _finish_audio(self) -> None:
        """Flush the audio, pad it with silence up to the end of the video, flush the encoder.

        A browser plays a muxed rendition only where both tracks have data, so audio that
        stops early (or never starts: a stream with no decodable packets) would stall it.
        """
        assert self.audio_params is not None
        if self.resampler is not None:
            for frame in self.resampler.resample(None):
                self._encode_audio(frame)
        rate, layout = self.audio_params
        end = math.ceil(self.video_end * rate)
        channels = 1 if layout == "mono" else 2
        while self.audio_end_samples < end:
            count = min(SILENCE_FRAME_SAMPLES, end - self.audio_end_samples)
            silence = AudioFrame.from_ndarray(
                np.zeros((channels, count), np.float32), format="fltp", layout=layout
            )
            silence.sample_rate = rate
            silence.pts = self.audio_end_samples
            silence.time_base = Fraction(1, rate)
            self._encode_audio(silence)
        self._encode_audio(None)

    def _encode_audio(self, frame: AudioFrame | None) -> None:
        """Encode once, with the first rendition's encoder, and mux into every rendition."""
        if frame is not None:
            assert frame.pts is not None, "the resampler's output is timed in samples"
            self.audio_end_samples = max(self.audio_end_samples, frame.pts + frame.samples)
        for packet in self.encoders[0].encode_audio(frame):
            for encoder in self.encoders:
                encoder.mux_audio(packet)


class _Cuts:
    """Decides which frames open a segment: the first at or after each SEGMENT_SECONDS mark.

    A mark closer than SEGMENT_TAIL_MIN to the expected end is skipped, so the video does
    not end on a sliver of a segment (whose keyframe would also inflate its bitrate).
    """

    def __init__(self, expected: Fraction | None) -> None:
        self.expected = expected
        self.next = Fraction(0)

    def is_cut(self, time: Fraction) -> bool:
        if time < self.next:
            return False
        while self.next <= time:
            self.next += SEGMENT_SECONDS
        near_end = self.expected is not None and self.expected - time < SEGMENT_TAIL_MIN
        return time == 0 or not near_end


def _too_long(limit: Fraction) -> VideoError:
    return VideoError(f"the video is longer than the {float(limit):g} s limit")
