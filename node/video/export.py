"""Writing a rendition back out as one fragmented MP4 file that any player opens."""

import os
import tempfile
from collections.abc import Iterable

from .boxes import SEGMENT_OPENERS, check_segment, iter_boxes
from .errors import CorruptVideo


def export(init: bytes, segments: Iterable[bytes], out: str | os.PathLike[str]) -> None:
    """Write `init` then `segments` to `out`, atomically: a reader never sees half a file.

    The pieces are checked box by box as they are written, so chunks from the network that
    are not an init or media segment never become a file. Raises CorruptVideo for such a
    piece, and OSError if the file cannot be written; `out` is untouched in both cases.
    """
    _check_init(init)
    target = os.path.abspath(os.fspath(out))
    directory = os.path.dirname(target)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".partial", dir=directory
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(init)
            for segment in segments:
                check_segment(segment)
                file.write(segment)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def _check_init(init: bytes) -> None:
    """Raise CorruptVideo unless `init` is whole boxes, 'ftyp' first, with a 'moov'."""
    types = [box.type for box in iter_boxes(init)]
    if not types or types[0] != "ftyp" or "moov" not in types:
        raise CorruptVideo("init segment must hold an 'ftyp' box and then a 'moov' box")
    if SEGMENT_OPENERS.intersection(types):
        raise CorruptVideo("init segment holds media fragments")
