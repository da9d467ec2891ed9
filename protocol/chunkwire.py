"""The wire format of the chunk stream protocol, ``/toktok/chunks/1.0.0``.

A requester opens a stream to a peer and writes :class:`ChunkRequest` frames; the peer
answers each with one :class:`ChunkResponse` frame echoing the request's ``id``. Every frame
is a 4-byte big-endian unsigned body length followed by the body, the canonical msgpack
encoding of the record (protocol/codec.py). Each direction carries one record type, so a
decoder knows what it reads and the largest body it may accept before it reads it.

Nothing here touches a stream: :func:`encode_frame` returns bytes to write and
:class:`FrameDecoder` turns bytes read, in pieces of any size, into records. docs/swarm.md
describes the protocol in plain words.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from protocol.cid import CID_LEN
from protocol.codec import U64_MAX, check_field, decode_record, encode_record, fld
from protocol.errors import DecodeError
from protocol.kinds import CHUNK_BYTES_MAX

PROTOCOL_ID = "/toktok/chunks/1.0.0"
LENGTH_PREFIX_BYTES = 4

# Response statuses. Plain ints, not an IntEnum: the canonical encoder packs exact types only.
OK = 0
"""``data`` holds the chunk."""
NOT_FOUND = 1
"""The peer does not hold the chunk."""
BUSY = 2
"""The peer holds the chunk but will not serve it now (its own limits); try later or elsewhere."""
ERROR = 3
"""The peer failed to read the chunk (a storage fault on its side)."""
STATUS_MAX = ERROR
STATUS_NAMES = {OK: "OK", NOT_FOUND: "NOT_FOUND", BUSY: "BUSY", ERROR: "ERROR"}


@dataclass(frozen=True)
class ChunkRequest:
    """Ask for one chunk by content id; ``id`` is the requester's, echoed by the response."""

    id: int = fld(value_max=U64_MAX)
    cid: bytes = fld(len_min=CID_LEN, len_max=CID_LEN)


@dataclass(frozen=True)
class ChunkResponse:
    """The answer to the request with the same ``id``: the chunk's bytes, or why not.

    ``data`` is empty unless ``status`` is :data:`OK`.
    """

    id: int = fld(value_max=U64_MAX)
    status: int = fld(value_max=STATUS_MAX)
    data: bytes = fld(len_max=CHUNK_BYTES_MAX)


REQUEST_BODY_BYTES_MAX = 64
"""The largest ChunkRequest body: 55 bytes with a 64-bit id, rounded up."""
RESPONSE_BODY_BYTES_MAX = CHUNK_BYTES_MAX + 64
"""The largest ChunkResponse body: the chunk plus 31 bytes of keys and headers, rounded up."""
BODY_BYTES_MAX: dict[type, int] = {
    ChunkRequest: REQUEST_BODY_BYTES_MAX,
    ChunkResponse: RESPONSE_BODY_BYTES_MAX,
}

W = TypeVar("W")


class FrameError(DecodeError):
    """A frame whose length prefix is refused (zero, or above the body limit)."""


def _check_rules(record: ChunkRequest | ChunkResponse) -> None:
    # [REJECT] A response carries data only with status OK: a refusal holds no payload.
    if isinstance(record, ChunkResponse) and record.status != OK and record.data:
        raise DecodeError(f"ChunkResponse: status {STATUS_NAMES[record.status]} with data")


def encode_frame(record: ChunkRequest | ChunkResponse) -> bytes:
    """Return the frame of ``record``: its body length (4 bytes, big-endian), then the body.

    Raises :class:`DecodeError` when the record breaks a field limit or a rule: nothing is
    written that the receiving :class:`FrameDecoder` would refuse.
    """
    for f in dataclasses.fields(record):
        check_field(type(record), f.name, getattr(record, f.name))
    _check_rules(record)
    body = encode_record(record)
    assert len(body) <= BODY_BYTES_MAX[type(record)], "the body limit covers the field limits"
    return length_prefixed(body)


def length_prefixed(body: bytes) -> bytes:
    """A frame of any of our stream protocols: the body's length (4 bytes, big-endian),
    then the body. :class:`FrameDecoder` reads them back."""
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


class FrameDecoder(Generic[W]):
    """Turns the bytes of one stream direction into records of one type, in order.

    Feed it whatever the stream delivers; it holds at most one incomplete frame, and never
    more than ``LENGTH_PREFIX_BYTES`` plus the body limit of its record type. After the first
    error it refuses everything: the stream is out of step and must be closed.
    """

    def __init__(
        self,
        record_type: type[W],
        body_bytes_max: int | None = None,
        check: Callable[[Any], None] = lambda record: None,
    ) -> None:
        """Frames of ``record_type``; other protocols than chunks' give their body limit and
        a ``check`` of their rules beyond the record's field limits (it raises
        :class:`DecodeError`)."""
        self._type: type[W] = record_type
        self._body_bytes_max = (
            BODY_BYTES_MAX[record_type] if body_bytes_max is None else body_bytes_max
        )
        self._check = check
        self._prefix = bytearray()
        self._body: bytearray | None = None
        """The body of the frame being read, allocated whole once its prefix is complete."""
        self._filled = 0
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of the frame being read (prefix or body)."""
        return self._filled if self._body is not None else len(self._prefix)

    @property
    def at_boundary(self) -> bool:
        """True when no partial frame is held: the stream may end here cleanly."""
        return self._body is None and not self._prefix

    def feed(self, data: bytes) -> list[W]:
        """Take the next bytes of the stream and return the records they complete.

        Raises :class:`FrameError` as soon as a length prefix is zero or above the limit,
        before any of that frame's body is held, and :class:`DecodeError` for a body that is
        not a canonical, in-limits record. Records completed earlier in the same call are
        dropped with the stream; every later call raises :class:`DecodeError` again.
        """
        if self._failed is not None:
            raise DecodeError(f"stream already failed: {self._failed}")
        try:
            return self._feed(memoryview(data))
        except DecodeError as exc:
            self._failed = str(exc)
            self._prefix.clear()
            self._body = None
            raise

    def _feed(self, view: memoryview) -> list[W]:
        # Each body byte is copied once, into a buffer of the frame's size: chunk
        # responses are up to 4 MiB, and this runs for every byte a download receives.
        records: list[W] = []
        while view:
            if self._body is None:
                take = LENGTH_PREFIX_BYTES - len(self._prefix)
                self._prefix += view[:take]
                view = view[take:]
                if len(self._prefix) < LENGTH_PREFIX_BYTES:
                    break
                length = self._check_length(int.from_bytes(self._prefix, "big"))
                self._prefix.clear()
                self._body, self._filled = bytearray(length), 0
            else:
                take = min(len(self._body) - self._filled, len(view))
                self._body[self._filled : self._filled + take] = view[:take]
                self._filled += take
                view = view[take:]
                if self._filled < len(self._body):
                    break
                body, self._body = self._body, None
                records.append(self._decode(body))
        return records

    def _check_length(self, length: int) -> int:
        # [REJECT] A frame has a body: no record encodes to zero bytes.
        if length == 0:
            raise FrameError(f"{self._type.__name__} frame with an empty body")
        # [REJECT] The body is at most the record type's limit, checked before reading it.
        if length > self._body_bytes_max:
            raise FrameError(
                f"{self._type.__name__} frame of {length} bytes exceeds the limit of "
                f"{self._body_bytes_max}"
            )
        return length

    def _decode(self, body: bytearray) -> W:
        if self._type is ChunkResponse:
            fast = _decode_response(body)
            if fast is not None:
                return fast  # type: ignore[return-value]
        record = decode_record(self._type, bytes(body), bytes_max=self._body_bytes_max)
        if isinstance(record, ChunkRequest | ChunkResponse):
            _check_rules(record)
        self._check(record)
        return record


_DATA_KEY = b"\xa4data"
_ID_KEY = b"\xa2id"
_STATUS_KEY = b"\xa6status"
_BIN_HEADERS = ((0xC4, 1, 2**8), (0xC5, 2, 2**16), (0xC6, 4, 2**32))
_UINT_HEADERS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def _decode_response(body: bytearray) -> ChunkResponse | None:
    """Decode the canonical encoding of a ChunkResponse without re-encoding its data.

    Returns None for anything that is not exactly that encoding (the map of ``data``,
    ``id``, ``status`` in that order, shortest forms throughout) or that breaks a limit or
    rule: the generic decoder then rejects it with its precise error. Accepting exactly
    what the generic decoder accepts is tested in tests/test_chunkwire.py.
    """
    view = memoryview(body)
    if not body.startswith(b"\x83" + _DATA_KEY):
        return None
    pos = 6
    if pos >= len(view):
        return None
    for tag, width, end in _BIN_HEADERS:
        if view[pos] == tag:
            size = int.from_bytes(view[pos + 1 : pos + 1 + width], "big")
            start = pos + 1 + width
            # Shortest form: a longer header only for a length the shorter cannot hold.
            if size >= end or (width > 1 and size < end >> (8 * width // 2)):
                return None
            break
    else:
        return None
    if size > CHUNK_BYTES_MAX or start + size > len(view):
        return None
    pos = start + size
    if body[pos : pos + 3] != _ID_KEY:
        return None
    id_, pos = _read_uint(view, pos + 3)
    if id_ is None or body[pos : pos + 7] != _STATUS_KEY:
        return None
    status, pos = _read_uint(view, pos + 7)
    if status is None or pos != len(view) or status > STATUS_MAX or (status != OK and size):
        return None
    return ChunkResponse(id=id_, status=status, data=bytes(view[start : start + size]))


def _read_uint(view: memoryview, pos: int) -> tuple[int | None, int]:
    """The unsigned integer at ``pos`` in its shortest msgpack form, and the next position."""
    if pos >= len(view):
        return None, pos
    head = view[pos]
    if head < 0x80:
        return head, pos + 1
    width = _UINT_HEADERS.get(head)
    if width is None or pos + 1 + width > len(view):
        return None, pos
    value = int.from_bytes(view[pos + 1 : pos + 1 + width], "big")
    # Shortest form: positive fixint below 128, then u8, u16, u32, u64.
    floor = 0x80 if width == 1 else 1 << (8 * width // 2)
    if value < floor:
        return None, pos
    return value, pos + 1 + width
