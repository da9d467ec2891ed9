"""Writing a rendition back out as one fragmented MP4 file that any player opens."""

import os
import secrets
from collections.abc import Iterable

from .boxes import SEGMENT_OPENERS, check_segment, iter_boxes
from .errors import CorruptVideo

EXPORT_MODE = 0o666
"""The mode a new file is created with; the umask takes its bits off as for any other file."""


def export(init: bytes, segments: Iterable[bytes], out: str | os.PathLike[str]) -> None:
    """Write `init` then `segments` to `out`, atomically: a reader never sees half a file.

    The pieces are checked box by box as they are written, so chunks from the network that
    are not an init or media segment never become a file. The file gets the mode any new
    file gets (0o666 less the umask). Raises CorruptVideo for such a piece, and OSError
    naming `out` if the file cannot be written; `out` is untouched in both cases.
    """
    _check_init(init)
    target = os.path.abspath(os.fspath(out))
    directory, name = os.path.split(target)
    # Not tempfile.mkstemp: it creates 0o600 files, and the rename would keep that mode.
    # O_EXCL with a random name gives the same guarantee, and the kernel applies the umask
    # without our reading it (os.umask can only be read by changing it, for every thread).
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.partial")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, EXPORT_MODE)
    except OSError as exc:
        raise _naming(exc, target) from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(init)
            for segment in segments:
                check_segment(segment)
                file.write(segment)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        os.unlink(temporary)
        raise _naming(exc, target) from exc
    except BaseException:
        os.unlink(temporary)
        raise


def _naming(exc: OSError, target: str) -> OSError:
    """`exc` as an error about `target`, the file the caller named, not our temporary one."""
    if exc.errno is None:
        return OSError(f"{target}: {exc}")
    # OSError(errno, ...) builds the matching subclass (FileNotFoundError, IsADirectoryError).
    return OSError(exc.errno, exc.strerror, target)


def _check_init(init: bytes) -> None:
    """Raise CorruptVideo unless `init` is whole boxes, 'ftyp' first, with a 'moov'."""
    types = [box.type for box in iter_boxes(init)]
    if not types or types[0] != "ftyp" or "moov" not in types:
        raise CorruptVideo("init segment must hold an 'ftyp' box and then a 'moov' box")
    if SEGMENT_OPENERS.intersection(types):
        raise CorruptVideo("init segment holds media fragments")
