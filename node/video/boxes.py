"""Walking ISO-BMFF boxes (ISO/IEC 14496-12), and cutting a fragmented MP4 into CMAF chunks.

Everything here reads bytes we may have received from a peer, so every size is checked
against the bytes actually present and every malformation raises CorruptVideo.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import CorruptVideo

BOX_HEADER_BYTES = 8
LARGE_BOX_HEADER_BYTES = 16

# Top-level boxes that may open a media segment (ISO/IEC 23000-19 CMAF, 14496-12 8.16).
SEGMENT_OPENERS = frozenset({"styp", "sidx", "ssix", "prft", "emsg", "moof"})
# Top-level boxes that belong to no segment: the movie fragment random access index is a
# whole-file structure, meaningless once the file is cut into chunks.
WHOLE_FILE_TRAILERS = frozenset({"mfra"})


@dataclass(frozen=True)
class Box:
    """One box: its four-character type and where it and its payload lie in the buffer."""

    type: str
    start: int
    payload_start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes that tile data[start:end] exactly; raise CorruptVideo otherwise."""
    limit = len(data) if end is None else end
    if not 0 <= start <= limit <= len(data):
        raise CorruptVideo(f"box range {start}..{limit} lies outside {len(data)} bytes")
    offset = start
    while offset < limit:
        if limit - offset < BOX_HEADER_BYTES:
            raise CorruptVideo(f"truncated box header at byte {offset}")
        size, raw_type = struct.unpack_from(">I4s", data, offset)
        box_type = raw_type.decode("latin-1")
        header = BOX_HEADER_BYTES
        if size == 1:
            if limit - offset < LARGE_BOX_HEADER_BYTES:
                raise CorruptVideo(f"truncated 64-bit box header at byte {offset}")
            (size,) = struct.unpack_from(">Q", data, offset + BOX_HEADER_BYTES)
            header = LARGE_BOX_HEADER_BYTES
        elif size == 0:
            # Size 0 means "up to the end of the enclosing space" (14496-12 4.2).
            size = limit - offset
        if size < header:
            raise CorruptVideo(f"box '{box_type}' at byte {offset} has impossible size {size}")
        if size > limit - offset:
            raise CorruptVideo(
                f"box '{box_type}' at byte {offset} needs {size} bytes, "
                f"only {limit - offset} remain (truncated?)"
            )
        yield Box(box_type, offset, offset + header, offset + size)
        offset += size


def children(data: bytes, parent: Box, skip: int = 0) -> Iterator[Box]:
    """The boxes inside `parent`, after `skip` payload bytes (a full box's version/flags)."""
    return iter_boxes(data, parent.payload_start + skip, parent.end)


def find_child(data: bytes, parent: Box, box_type: str, skip: int = 0) -> Box | None:
    """The first child of `parent` of type `box_type`, if any."""
    for box in children(data, parent, skip):
        if box.type == box_type:
            return box
    return None


def require_child(data: bytes, parent: Box, box_type: str, skip: int = 0) -> Box:
    """The first child of `parent` of type `box_type`; raise CorruptVideo if there is none."""
    box = find_child(data, parent, box_type, skip)
    if box is None:
        raise CorruptVideo(f"'{parent.type}' box has no '{box_type}' box")
    return box


def split_fragments(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split a fragmented MP4 into its init segment and its media segments.

    The init segment is everything before the first segment-opening box and must hold a
    'ftyp' and a 'moov'. A media segment is an optional styp/sidx/prft/emsg prefix, then
    one or more moof+mdat pairs; a new one starts at the first opener after an 'mdat'.
    A trailing 'mfra' is dropped. Raises CorruptVideo on malformed boxes or structure.
    """
    top = list(iter_boxes(data))
    first_opener = next((i for i, box in enumerate(top) if box.type in SEGMENT_OPENERS), len(top))
    head = [box.type for box in top[:first_opener]]
    if not head or head[0] != "ftyp":
        raise CorruptVideo("fragmented MP4 does not start with an 'ftyp' box")
    if "moov" not in head:
        raise CorruptVideo("fragmented MP4 has no 'moov' box before its first fragment")
    init_end = top[first_opener - 1].end

    spans: list[tuple[int, int]] = []
    seg_start: int | None = None
    seen_mdat = False
    last_end = init_end
    for box in top[first_opener:]:
        if box.type in WHOLE_FILE_TRAILERS:
            break
        if box.type in SEGMENT_OPENERS and (seg_start is None or seen_mdat):
            if seg_start is not None:
                spans.append((seg_start, box.start))
            seg_start, seen_mdat = box.start, False
        elif box.type in ("ftyp", "moov"):
            raise CorruptVideo(f"unexpected '{box.type}' box at byte {box.start} after fragments")
        if box.type == "mdat":
            seen_mdat = True
        last_end = box.end
    if seg_start is not None:
        spans.append((seg_start, last_end))
    segments = [data[a:b] for a, b in spans]
    for segment in segments:
        check_segment(segment)
    return data[:init_end], segments


def check_segment(segment: bytes) -> None:
    """Raise CorruptVideo unless `segment` is whole boxes with each 'moof' followed by an 'mdat'."""
    open_moof = False
    seen_moof = False
    for box in iter_boxes(segment):
        if box.type in ("ftyp", "moov"):
            raise CorruptVideo(f"media segment holds a '{box.type}' box")
        if box.type == "moof":
            if open_moof:
                raise CorruptVideo("media segment has a 'moof' box without its 'mdat'")
            open_moof = seen_moof = True
        elif box.type == "mdat":
            open_moof = False
    if not seen_moof:
        raise CorruptVideo("media segment has no 'moof' box")
    if open_moof:
        raise CorruptVideo("media segment ends with a 'moof' box without its 'mdat'")
