"""Ingest: an upload in; CMAF renditions, a thumbnail and the upload's hash out.

The source is decoded once and every decoded frame is fed to all renditions' encoders.
Segment boundaries are chosen here, on the source timeline, and imposed on every encoder
as forced keyframes, so renditions are aligned and a player may switch between them at any
segment. Each encoder muxes to a fragmented MP4 in a temporary directory, which is then cut
into init and media segments by walking its boxes.
"""

import hashlib
import math
import os
import tempfile
from collections.abc import Callable
from fractions import Fraction

import av

from protocol.kinds import DURATION_MS_MAX

from .boxes import split_fragments
from .cmaf import VIDEO_HANDLER, codecs_string, fragment_timing, parse_init
from .encode import Plan
from .errors import VideoError
from .model import IngestResult, Rendition, Segment
from .source import check_file, open_source, why
from .transcode import Transcode

DURATION_MS_LIMIT = 3_600_000
"""The most any caller may allow, whatever duration_ms_max it passes."""
HASH_CHUNK_BYTES = 1 << 20
PROGRESS_STEP = 0.01
TRANSCODE_SHARE = 0.95
"""The part of the progress bar spent decoding and encoding; the rest is the final cut."""

ProgressCallback = Callable[[float], None]


def ingest(
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    duration_ms_max: int = DURATION_MS_MAX,
) -> IngestResult:
    """Transcode the upload at `path` into CMAF renditions for the network.

    `progress` is called with increasing fractions of the work done, the last one 1.0.
    Raises NotAVideo, CorruptVideo, or VideoError (e.g. longer than `duration_ms_max`);
    ValueError if `duration_ms_max` is not in 1..DURATION_MS_LIMIT.
    """
    if not 0 < duration_ms_max <= DURATION_MS_LIMIT:
        raise ValueError(
            f"duration_ms_max must be in 1..{DURATION_MS_LIMIT}, not {duration_ms_max}"
        )
    source_size = check_file(path)
    source_sha256 = _sha256(path)
    report = _Progress(progress)
    with tempfile.TemporaryDirectory(prefix="toktok-ingest-") as workdir:
        with open_source(path) as container:
            job = Transcode(
                container,
                workdir,
                duration_max=Fraction(duration_ms_max, 1000),
                progress=lambda done: report(done * TRANSCODE_SHARE),
            )
            try:
                outputs = job.run()
                thumbnail = job.thumbnail_jpeg()
            except av.FFmpegError as error:
                # Decoding errors were already turned into CorruptVideo; this is the encoder
                # or muxer failing, which no upload should be able to cause.
                raise VideoError(f"transcoding failed ({why(error)})") from error
            finally:
                job.close()
        renditions = tuple(_rendition(plan, data) for plan, data in outputs)
    _check_aligned(renditions)
    report(1.0)
    return IngestResult(
        duration_ms=sum(segment.duration_ms for segment in renditions[0].segments),
        source_sha256=source_sha256,
        source_size=source_size,
        thumbnail_jpeg=thumbnail,
        renditions=renditions,
    )


def _sha256(path: str | os.PathLike[str]) -> bytes:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise VideoError(f"cannot read the file: {error.strerror}") from error
    return digest.digest()


def _rendition(plan: Plan, data: bytes) -> Rendition:
    """Cut one encoder's fragmented MP4 into a Rendition, timing each segment."""
    init, chunks = split_fragments(data)
    tracks = parse_init(init)
    video = tracks[0]
    assert video.handler == VIDEO_HANDLER, "our renditions always have a video track"
    assert chunks, "a transcode with frames yields at least one fragment"
    segments = []
    for chunk in chunks:
        timing = fragment_timing(chunk, video)
        assert timing.starts_with_sync, "fragments are cut at keyframes"
        # Milliseconds from boundaries on the track clock, so rounding never accumulates:
        # the durations add up to the end of the last frame exactly.
        start_ms = _ms(timing.start, video.timescale)
        end_ms = _ms(timing.start + timing.duration, video.timescale)
        segments.append(Segment(chunk, end_ms - start_ms))
    bandwidth = max(
        math.ceil(len(segment.data) * 8 * 1000 / max(1, segment.duration_ms))
        for segment in segments
    )
    return Rendition(
        name=plan.rung.name,
        width=plan.width,
        height=plan.height,
        bandwidth=bandwidth,
        codecs=codecs_string(tracks),
        init=init,
        segments=tuple(segments),
    )


def _ms(ticks: int, timescale: int) -> int:
    return (ticks * 1000 + timescale // 2) // timescale


def _check_aligned(renditions: tuple[Rendition, ...]) -> None:
    durations = {tuple(segment.duration_ms for segment in r.segments) for r in renditions}
    assert len(durations) == 1, "all renditions share the forced keyframes"


class _Progress:
    """Passes strictly increasing fractions, at most one per PROGRESS_STEP, to a callback."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.last = -1.0

    def __call__(self, fraction: float) -> None:
        if self.callback is None:
            return
        fraction = min(1.0, max(0.0, fraction))
        if fraction - self.last >= PROGRESS_STEP or (fraction == 1.0 > self.last):
            self.last = fraction
            self.callback(fraction)
