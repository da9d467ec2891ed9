"""Synthetic test videos: a moving pattern and a tone, H.264 + AAC in an ordinary MP4.

The demo and the tests need real videos without shipping binary files. The picture moves
everywhere (scrolling bands and a bouncing checkered square), so encoders do real motion
search and the transcode benchmark is not flattered by a static image.
"""

import math
import os
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from .errors import VideoError

SAMPLE_SECONDS_MAX = 600.0
SAMPLE_HEIGHT_MIN = 16
SAMPLE_HEIGHT_MAX = 2160
SAMPLE_FPS_MAX = 120
AUDIO_RATE_HZ = 48_000
AUDIO_FRAME_SAMPLES = 1024
TONE_HZ = 440.0


def write_sample(
    path: str | os.PathLike[str],
    *,
    seconds: float,
    height: int = 720,
    fps: int = 30,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Write a synthetic `seconds`-long H.264/AAC MP4 at `height` lines, 16:9, to `path`.

    `progress`, if given, is called with the fraction written, once per second of video.
    Raises VideoError if an argument is out of range.
    """
    if not 0 < seconds <= SAMPLE_SECONDS_MAX:
        raise VideoError(f"sample length must be in (0, {SAMPLE_SECONDS_MAX:g}] s, not {seconds}")
    if not SAMPLE_HEIGHT_MIN <= height <= SAMPLE_HEIGHT_MAX:
        raise VideoError(
            f"sample height must be in [{SAMPLE_HEIGHT_MIN}, {SAMPLE_HEIGHT_MAX}], not {height}"
        )
    if not 1 <= fps <= SAMPLE_FPS_MAX:
        raise VideoError(f"sample fps must be in [1, {SAMPLE_FPS_MAX}], not {fps}")
    # yuv420p needs even dimensions.
    height -= height % 2
    width = round(height * 16 / 9 / 2) * 2
    frame_count = max(1, round(seconds * fps))
    audio_samples = round(frame_count / fps * AUDIO_RATE_HZ)

    with av.open(os.fspath(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        # Fast enough to write a minute of 720p quickly; quality is irrelevant for a pattern.
        video.codec_context.options = {"preset": "superfast", "crf": "20"}
        audio = out.add_stream("aac", rate=AUDIO_RATE_HZ, layout="stereo")
        audio.codec_context.bit_rate = 128_000
        audio.codec_context.time_base = Fraction(1, AUDIO_RATE_HZ)

        pattern = _Pattern(width, height, fps)
        written = 0
        for index in range(frame_count):
            frame = av.VideoFrame.from_ndarray(pattern.frame(index), format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
            # Keep the audio abreast of the video, so the muxer need not queue either.
            due = min(audio_samples, (index + 1) * AUDIO_RATE_HZ // fps)
            for start in range(written, due, AUDIO_FRAME_SAMPLES):
                out.mux(audio.encode(_tone_frame(start, min(AUDIO_FRAME_SAMPLES, due - start))))
            written = max(written, due)
            if progress is not None and (index + 1) % fps == 0:
                progress((index + 1) / frame_count)
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    if progress is not None:
        progress(1.0)


def _tone_frame(start: int, count: int) -> av.AudioFrame:
    """`count` stereo samples of a sine, from sample `start` on."""
    t = np.arange(start, start + count, dtype=np.float64) / AUDIO_RATE_HZ
    mono = (0.3 * np.sin(2 * math.pi * TONE_HZ * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([mono, mono]), format="fltp", layout="stereo")
    frame.sample_rate = AUDIO_RATE_HZ
    frame.pts = start
    frame.time_base = Fraction(1, AUDIO_RATE_HZ)
    return frame


class _Pattern:
    """Builds yuv420p frames (as one (h * 3 / 2, w) array) of a moving pattern."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        ys, xs = np.mgrid[0:height, 0:width]
        self.bands = (xs + 2 * ys).astype(np.uint16)
        # Smooth waves rather than sawtooth edges: hard edges everywhere would make the
        # sample far costlier to encode than camera footage.
        ramp = np.sin(np.arange(256) * (2 * math.pi / 256))
        self.wave = (128 + 80 * ramp).astype(np.uint8)
        self.tint = (128 + 40 * ramp).astype(np.uint8)
        # The chroma planes sample the same bands at half resolution, so the whole background
        # moves as one rigid picture, as a camera pan would.
        self.chroma_bands = self.bands[::2, ::2]
        self.box = max(4, height // 4)
        by, bx = np.mgrid[0 : self.box, 0 : self.box]
        cell = max(2, self.box // 8)
        self.checker = np.where(((by // cell) + (bx // cell)) % 2 == 0, 235, 16).astype(np.uint8)

    def frame(self, index: int) -> npt.NDArray[np.uint8]:
        # Speeds are in pixels per second, so the motion looks the same at any fps.
        seconds = index / self.fps
        # An even shift keeps the half-resolution chroma aligned with the luma.
        shift = 2 * int(60 * seconds)
        luma = self.wave[(self.bands + shift) % 256]
        x, y = self._bounce(seconds)
        luma[y : y + self.box, x : x + self.box] = self.checker
        u = self.tint[(self.chroma_bands + shift) % 256]
        v = self.tint[(self.chroma_bands + shift + 96) % 256]
        # from_ndarray takes yuv420p as one (h * 3 / 2, w) array: the three planes, flattened.
        flat = np.concatenate([luma.ravel(), u.ravel(), v.ravel()])
        return flat.reshape(self.height * 3 // 2, self.width)

    def _bounce(self, seconds: float) -> tuple[int, int]:
        """The top-left corner of the square, bouncing off the frame edges."""
        span_x = self.width - self.box
        span_y = self.height - self.box
        return _triangle(seconds * self.width * 0.4, span_x), _triangle(
            seconds * self.height * 0.3, span_y
        )


def _triangle(distance: float, span: int) -> int:
    """Position after travelling `distance` back and forth over [0, span]."""
    if span <= 0:
        return 0
    phase = int(distance) % (2 * span)
    return phase if phase <= span else 2 * span - phase
