"""The video layer: probe uploads, transcode them to CMAF renditions, cut and export them.

See docs/architecture.md for where it sits. Everything here is synchronous and CPU-bound
(an ingest takes seconds to minutes), so a caller on an event loop runs it in a worker
thread. Every error it raises on bad input is a VideoError with a one-line message.
"""

from .boxes import split_fragments
from .errors import CorruptVideo, NotAVideo, VideoError
from .export import export
from .ingest import ingest
from .model import IngestResult, ProbeInfo, Rendition, Segment
from .probe import probe
from .sample import write_sample

__all__ = [
    "CorruptVideo",
    "IngestResult",
    "NotAVideo",
    "ProbeInfo",
    "Rendition",
    "Segment",
    "VideoError",
    "export",
    "ingest",
    "probe",
    "split_fragments",
    "write_sample",
]
