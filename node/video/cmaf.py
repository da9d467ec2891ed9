"""Reading what a manifest needs out of CMAF init and media segments.

From the init segment: each track's id, kind, timescale and its RFC 6381 codecs entry,
taken from the real decoder configuration (the H.264 SPS, the AAC AudioSpecificConfig) so
the string handed to MSE always matches the bytes. From a media segment: when it starts,
how long it lasts and whether it opens on a sync sample. Box layouts are from ISO/IEC
14496-12 (ISO-BMFF), 14496-15 (avcC) and 14496-1/-3 (esds, AAC).
"""

import struct
from dataclasses import dataclass

from .boxes import Box, children, find_child, iter_boxes, require_child
from .errors import CorruptVideo, VideoError

VIDEO_HANDLER = "vide"
AUDIO_HANDLER = "soun"
VISUAL_SAMPLE_ENTRY_BYTES = 78
AUDIO_SAMPLE_ENTRY_BYTES = 28
FULL_BOX_BYTES = 4
NAL_TYPE_SPS = 7
SAMPLE_FLAG_NON_SYNC = 0x0001_0000
TRACK_COUNT_MAX = 8
DESCRIPTOR_SIZE_BYTES_MAX = 4

# tfhd and trun flags (14496-12 8.8.7, 8.8.8).
TFHD_BASE_DATA_OFFSET = 0x01
TFHD_SAMPLE_DESCRIPTION_INDEX = 0x02
TFHD_DEFAULT_DURATION = 0x08
TFHD_DEFAULT_SIZE = 0x10
TFHD_DEFAULT_FLAGS = 0x20
TRUN_DATA_OFFSET = 0x01
TRUN_FIRST_SAMPLE_FLAGS = 0x04
TRUN_SAMPLE_DURATION = 0x100
TRUN_SAMPLE_SIZE = 0x200
TRUN_SAMPLE_FLAGS = 0x400
TRUN_SAMPLE_CTO = 0x800


@dataclass(frozen=True)
class Track:
    track_id: int
    handler: str
    timescale: int
    codec: str
    default_sample_duration: int
    default_sample_flags: int


@dataclass(frozen=True)
class FragmentTiming:
    """One track's timing within a media segment, in that track's timescale."""

    start: int
    duration: int
    starts_with_sync: bool


def parse_init(init: bytes) -> tuple[Track, ...]:
    """The tracks of an init segment, video tracks first; raises CorruptVideo or VideoError."""
    moov = next((box for box in iter_boxes(init) if box.type == "moov"), None)
    if moov is None:
        raise CorruptVideo("init segment has no 'moov' box")
    defaults = _trex_defaults(init, moov)
    tracks = [
        _parse_trak(init, box, defaults) for box in children(init, moov) if box.type == "trak"
    ]
    if not tracks:
        raise CorruptVideo("init segment has no tracks")
    if len(tracks) > TRACK_COUNT_MAX:
        raise CorruptVideo(f"init segment has {len(tracks)} tracks, more than {TRACK_COUNT_MAX}")
    tracks.sort(key=lambda track: track.handler != VIDEO_HANDLER)
    return tuple(tracks)


def codecs_string(tracks: tuple[Track, ...]) -> str:
    """The RFC 6381 codecs parameter for a muxed rendition, e.g. 'avc1.64001f,mp4a.40.2'."""
    return ",".join(track.codec for track in tracks)


def fragment_timing(segment: bytes, track: Track) -> FragmentTiming:
    """When `track` starts in `segment`, how long it runs, and whether it opens on a sync sample.

    Raises CorruptVideo if the segment's boxes are malformed or the track is absent.
    """
    start: int | None = None
    end = 0
    first_sync = False
    for moof in (box for box in iter_boxes(segment) if box.type == "moof"):
        for traf in (box for box in children(segment, moof) if box.type == "traf"):
            timing = _traf_timing(segment, traf, track)
            if timing is None:
                continue
            if start is None:
                start, first_sync = timing.start, timing.starts_with_sync
            elif timing.start < end:
                raise CorruptVideo(f"track {track.track_id} fragments overlap in a segment")
            end = timing.start + timing.duration
    if start is None:
        raise CorruptVideo(f"media segment has no samples of track {track.track_id}")
    return FragmentTiming(start, end - start, first_sync)


def _read(fmt: str, data: bytes, offset: int, end: int) -> tuple[int, ...]:
    """struct.unpack_from, but never past `end` (a box's end, not just the buffer's)."""
    if offset < 0 or offset + struct.calcsize(fmt) > end:
        raise CorruptVideo(f"box field at byte {offset} runs past the end of its box")
    return struct.unpack_from(fmt, data, offset)


def _version_flags(data: bytes, box: Box) -> tuple[int, int]:
    (word,) = _read(">I", data, box.payload_start, box.end)
    return word >> 24, word & 0xFF_FFFF


def _trex_defaults(data: bytes, moov: Box) -> dict[int, tuple[int, int]]:
    """Per track id: (default sample duration, default sample flags) from 'mvex/trex'."""
    defaults: dict[int, tuple[int, int]] = {}
    mvex = find_child(data, moov, "mvex")
    if mvex is None:
        raise CorruptVideo("init segment is not fragmented: no 'mvex' box")
    for trex in (box for box in children(data, mvex) if box.type == "trex"):
        track_id, _index, duration, _size, flags = _read(
            ">5I", data, trex.payload_start + FULL_BOX_BYTES, trex.end
        )
        defaults[track_id] = (duration, flags)
    return defaults


def _parse_trak(data: bytes, trak: Box, defaults: dict[int, tuple[int, int]]) -> Track:
    tkhd = require_child(data, trak, "tkhd")
    version, _ = _version_flags(data, tkhd)
    id_offset = tkhd.payload_start + FULL_BOX_BYTES + (16 if version == 1 else 8)
    (track_id,) = _read(">I", data, id_offset, tkhd.end)
    mdia = require_child(data, trak, "mdia")
    mdhd = require_child(data, mdia, "mdhd")
    version, _ = _version_flags(data, mdhd)
    scale_offset = mdhd.payload_start + FULL_BOX_BYTES + (16 if version == 1 else 8)
    (timescale,) = _read(">I", data, scale_offset, mdhd.end)
    if timescale == 0:
        raise CorruptVideo(f"track {track_id} has a zero timescale")
    hdlr = require_child(data, mdia, "hdlr")
    handler_at = hdlr.payload_start + FULL_BOX_BYTES + 4  # After pre_defined.
    if handler_at + 4 > hdlr.end:
        raise CorruptVideo(f"track {track_id} has a truncated 'hdlr' box")
    handler = data[handler_at : handler_at + 4].decode("latin-1")
    stbl = require_child(data, require_child(data, mdia, "minf"), "stbl")
    stsd = require_child(data, stbl, "stsd")
    entry = next(children(data, stsd, skip=FULL_BOX_BYTES + 4), None)
    if entry is None:
        raise CorruptVideo(f"track {track_id} has no sample description")
    duration, flags = defaults.get(track_id, (0, 0))
    return Track(track_id, handler, timescale, _entry_codec(data, entry), duration, flags)


def _entry_codec(data: bytes, entry: Box) -> str:
    """The RFC 6381 codecs entry for one sample entry box ('avc1', 'mp4a', ...)."""
    if entry.type in ("avc1", "avc3"):
        avcc = require_child(data, entry, "avcC", skip=VISUAL_SAMPLE_ENTRY_BYTES)
        sps = _first_sps(data, avcc)
        # RFC 6381 3.3: profile_idc, the constraint flags byte and level_idc, in hex.
        return f"{entry.type}.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"
    if entry.type == "mp4a":
        esds = require_child(data, entry, "esds", skip=AUDIO_SAMPLE_ENTRY_BYTES)
        object_type, audio_object_type = _esds_audio_types(data, esds)
        # RFC 6381 3.3: the MPEG-4 objectTypeIndication in hex, then the AAC object type.
        return f"mp4a.{object_type:02x}.{audio_object_type}"
    raise VideoError(f"unsupported sample entry '{entry.type}'")


def _first_sps(data: bytes, avcc: Box) -> bytes:
    """The first sequence parameter set NAL unit in an AVCDecoderConfigurationRecord."""
    offset = avcc.payload_start
    version, _profile, _compat, _level, _length_size, sps_count = _read(
        ">6B", data, offset, avcc.end
    )
    if version != 1 or sps_count & 0x1F == 0:
        raise CorruptVideo("'avcC' box has no sequence parameter set")
    (length,) = _read(">H", data, offset + 6, avcc.end)
    sps = data[offset + 8 : offset + 8 + length]
    if length < 4 or len(sps) != length or offset + 8 + length > avcc.end:
        raise CorruptVideo("'avcC' box has a truncated sequence parameter set")
    if sps[0] & 0x1F != NAL_TYPE_SPS:
        raise CorruptVideo("'avcC' box's first parameter set is not an SPS")
    return sps


def _esds_audio_types(data: bytes, esds: Box) -> tuple[int, int]:
    """(objectTypeIndication, AAC audioObjectType) from an 'esds' box (14496-1 7.2.6)."""
    offset = esds.payload_start + FULL_BOX_BYTES
    tag, offset, size = _descriptor(data, offset, esds.end)
    if tag != 0x03:
        raise CorruptVideo("'esds' box does not hold an ES_Descriptor")
    descriptor_end = offset + size
    (_es_id, es_flags) = _read(">HB", data, offset, descriptor_end)
    offset += 3
    if es_flags & 0x80:  # streamDependenceFlag: a dependsOn_ES_ID follows.
        offset += 2
    if es_flags & 0x40:  # URL_Flag: a length-prefixed URL follows.
        (url_length,) = _read(">B", data, offset, descriptor_end)
        offset += 1 + url_length
    if es_flags & 0x20:  # OCRstreamFlag: an OCR_ES_Id follows.
        offset += 2
    tag, offset, size = _descriptor(data, offset, descriptor_end)
    if tag != 0x04:
        raise CorruptVideo("'esds' box has no DecoderConfigDescriptor")
    config_end = offset + size
    (object_type,) = _read(">B", data, offset, config_end)
    # objectTypeIndication, streamType, bufferSizeDB, maxBitrate, avgBitrate: 13 bytes.
    tag, offset, size = _descriptor(data, offset + 13, config_end)
    if tag != 0x05:
        raise CorruptVideo("'esds' box has no DecoderSpecificInfo")
    (first,) = _read(">B", data, offset, offset + size)
    audio_object_type = first >> 3
    if audio_object_type == 31:  # Escape value: six more bits follow (14496-3 1.6.2.1).
        (second,) = _read(">B", data, offset + 1, offset + size)
        audio_object_type = 32 + (((first & 0x07) << 3) | (second >> 5))
    return object_type, audio_object_type


def _descriptor(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, payload offset, payload size) of an MPEG-4 descriptor; sizes use 7 bits a byte."""
    (tag,) = _read(">B", data, offset, end)
    offset += 1
    size = 0
    for _ in range(DESCRIPTOR_SIZE_BYTES_MAX):
        (byte,) = _read(">B", data, offset, end)
        offset += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if offset + size > end:
        raise CorruptVideo(f"MPEG-4 descriptor 0x{tag:02x} runs past the end of its box")
    return tag, offset, size


def _traf_timing(data: bytes, traf: Box, track: Track) -> FragmentTiming | None:
    """The timing of one 'traf' if it belongs to `track`, else None."""
    tfhd = require_child(data, traf, "tfhd")
    _, flags = _version_flags(data, tfhd)
    (track_id,) = _read(">I", data, tfhd.payload_start + FULL_BOX_BYTES, tfhd.end)
    if track_id != track.track_id:
        return None
    offset = tfhd.payload_start + FULL_BOX_BYTES + 4
    offset += 8 if flags & TFHD_BASE_DATA_OFFSET else 0
    offset += 4 if flags & TFHD_SAMPLE_DESCRIPTION_INDEX else 0
    default_duration = track.default_sample_duration
    if flags & TFHD_DEFAULT_DURATION:
        (default_duration,) = _read(">I", data, offset, tfhd.end)
        offset += 4
    offset += 4 if flags & TFHD_DEFAULT_SIZE else 0
    default_flags = track.default_sample_flags
    if flags & TFHD_DEFAULT_FLAGS:
        (default_flags,) = _read(">I", data, offset, tfhd.end)

    tfdt = require_child(data, traf, "tfdt")
    version, _ = _version_flags(data, tfdt)
    (start,) = _read(">Q" if version == 1 else ">I", data, tfdt.payload_start + 4, tfdt.end)
    duration = 0
    first_flags: int | None = None
    for trun in (box for box in children(data, traf) if box.type == "trun"):
        run_duration, run_first_flags = _trun(data, trun, default_duration, default_flags)
        duration += run_duration
        if first_flags is None:
            first_flags = run_first_flags
    if first_flags is None:
        raise CorruptVideo(f"track {track_id} fragment has no 'trun' box")
    return FragmentTiming(start, duration, not first_flags & SAMPLE_FLAG_NON_SYNC)


def _trun(data: bytes, trun: Box, default_duration: int, default_flags: int) -> tuple[int, int]:
    """(summed sample durations, flags of the first sample) of one 'trun' box."""
    _, flags = _version_flags(data, trun)
    offset = trun.payload_start + FULL_BOX_BYTES
    (count,) = _read(">I", data, offset, trun.end)
    offset += 4 + (4 if flags & TRUN_DATA_OFFSET else 0)
    first_flags = default_flags
    if flags & TRUN_FIRST_SAMPLE_FLAGS:
        (first_flags,) = _read(">I", data, offset, trun.end)
        offset += 4
    present = [
        bit
        for bit in (TRUN_SAMPLE_DURATION, TRUN_SAMPLE_SIZE, TRUN_SAMPLE_FLAGS, TRUN_SAMPLE_CTO)
        if flags & bit
    ]
    stride = 4 * len(present)
    if count == 0 or offset + count * stride > trun.end:
        raise CorruptVideo(f"'trun' box declares {count} samples that do not fit in it")
    if flags & TRUN_SAMPLE_FLAGS and not flags & TRUN_FIRST_SAMPLE_FLAGS:
        column = present.index(TRUN_SAMPLE_FLAGS)
        (first_flags,) = _read(">I", data, offset + 4 * column, trun.end)
    if not flags & TRUN_SAMPLE_DURATION:
        return count * default_duration, first_flags
    column = present.index(TRUN_SAMPLE_DURATION)
    rows = struct.Struct(">" + "I" * len(present)).iter_unpack(
        data[offset : offset + count * stride]
    )
    return sum(row[column] for row in rows), first_flags
