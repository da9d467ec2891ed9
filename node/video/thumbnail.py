"""The still a feed shows before a video plays: one upright frame as a small JPEG."""

from fractions import Fraction

import av
from av.video.frame import VideoFrame

THUMBNAIL_WIDTH = 480
THUMBNAIL_HEIGHT_MAX = 854
"""A 9:16 portrait frame at THUMBNAIL_WIDTH; taller frames are fitted into this height."""
JPEG_QUALITY_SCALE = 4
"""MJPEG quantiser scale (2 best .. 31 worst): a sharp still at some 20 KB."""
THUMBNAIL_AT_SECONDS = Fraction(1)
"""Where to take the still: the first frame is often black or a fade-in."""


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """Fit a `width` x `height` picture to our thumbnail bounds, never upscaling; even sides."""
    scale = min(
        Fraction(1), Fraction(THUMBNAIL_WIDTH, width), Fraction(THUMBNAIL_HEIGHT_MAX, height)
    )
    return _even(width * scale), _even(height * scale)


def encode_jpeg(frame: VideoFrame, width: int, height: int) -> bytes:
    """`frame`, upright already and scaled to `width` x `height`, as a baseline JPEG."""
    small = frame.reformat(
        width=width,
        height=height,
        format="yuv420p",
        dst_color_range="JPEG",
        interpolation="AREA",
    )
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuv420p"
    encoder.color_range = small.color_range
    encoder.time_base = Fraction(1, 25)
    quality = str(JPEG_QUALITY_SCALE)
    encoder.options = {"qmin": quality, "qmax": quality}
    packets = encoder.encode(small) + encoder.encode(None)
    return b"".join(bytes(packet) for packet in packets)


def _even(value: Fraction) -> int:
    return max(2, round(value / 2) * 2)
