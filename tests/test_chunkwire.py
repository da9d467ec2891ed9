"""The chunk stream wire format: frames, records, limits, and a decoder that never crashes."""

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.chunkwire import (
    BUSY,
    ERROR,
    LENGTH_PREFIX_BYTES,
    NOT_FOUND,
    OK,
    PROTOCOL_ID,
    REQUEST_BODY_BYTES_MAX,
    RESPONSE_BODY_BYTES_MAX,
    ChunkRequest,
    ChunkResponse,
    FrameDecoder,
    FrameError,
    _decode_response,
    encode_frame,
)
from protocol.cid import CID_LEN, chunk_id
from protocol.codec import U64_MAX, decode_record
from protocol.errors import DecodeError
from protocol.kinds import CHUNK_BYTES_MAX

CID = chunk_id(b"a chunk")

request_ids = st.integers(0, U64_MAX)
requests = st.builds(
    ChunkRequest, id=request_ids, cid=st.binary(min_size=CID_LEN, max_size=CID_LEN)
)
responses = st.one_of(
    st.builds(ChunkResponse, id=request_ids, status=st.just(OK), data=st.binary(max_size=300)),
    st.builds(
        ChunkResponse,
        id=request_ids,
        status=st.sampled_from([NOT_FOUND, BUSY, ERROR]),
        data=st.just(b""),
    ),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


def test_protocol_id() -> None:
    assert PROTOCOL_ID == "/toktok/chunks/1.0.0"


def test_frame_layout() -> None:
    data = encode_frame(ChunkRequest(id=7, cid=CID))
    body = codec.encode_record(ChunkRequest(id=7, cid=CID))
    assert data == len(body).to_bytes(4, "big") + body
    assert codec.decode(body, bytes_max=100) == {"cid": CID, "id": 7}


VECTORS = [
    # (record, frame in hex): the examples of docs/swarm.md, byte for byte.
    (
        ChunkRequest(id=1, cid=bytes(range(36))),
        "0000002f 82 a3636964 c424 000102030405060708090a0b0c0d0e0f"
        "101112131415161718191a1b1c1d1e1f20212223 a26964 01",
    ),
    (
        ChunkResponse(id=2, status=OK, data=b"hi"),
        "00000016 83 a464617461 c4026869 a26964 02 a6737461747573 00",
    ),
    (
        ChunkResponse(id=1, status=NOT_FOUND, data=b""),
        "00000014 83 a464617461 c400 a26964 01 a6737461747573 01",
    ),
]


@pytest.mark.parametrize(("record", "hex_frame"), VECTORS)
def test_frame_vectors(record: ChunkRequest | ChunkResponse, hex_frame: str) -> None:
    data = bytes.fromhex(hex_frame.replace(" ", ""))
    assert encode_frame(record) == data
    decoder: FrameDecoder[Any] = (
        FrameDecoder(ChunkRequest)
        if isinstance(record, ChunkRequest)
        else FrameDecoder(ChunkResponse)
    )
    assert decoder.feed(data) == [record]


@given(requests)
def test_request_round_trip(record: ChunkRequest) -> None:
    decoder = FrameDecoder(ChunkRequest)
    assert decoder.feed(encode_frame(record)) == [record]
    assert decoder.at_boundary


@given(responses)
def test_response_round_trip(record: ChunkResponse) -> None:
    assert FrameDecoder(ChunkResponse).feed(encode_frame(record)) == [record]


def test_largest_records_fit_their_limits() -> None:
    request = encode_frame(ChunkRequest(id=U64_MAX, cid=CID))
    assert len(request) - LENGTH_PREFIX_BYTES <= REQUEST_BODY_BYTES_MAX
    big = ChunkResponse(id=U64_MAX, status=OK, data=b"\xaa" * CHUNK_BYTES_MAX)
    data = encode_frame(big)
    assert len(data) - LENGTH_PREFIX_BYTES <= RESPONSE_BODY_BYTES_MAX
    assert FrameDecoder(ChunkResponse).feed(data) == [big]


@given(st.lists(responses, max_size=6), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_gives_the_same_records(records: list[ChunkResponse], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(r) for r in records)
    decoder = FrameDecoder(ChunkResponse)
    out = [record for piece in split(stream, cuts) for record in decoder.feed(piece)]
    assert out == records
    assert decoder.at_boundary and decoder.buffered == 0


@given(st.lists(requests, max_size=6), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking_of_requests(records: list[ChunkRequest], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(r) for r in records)
    decoder = FrameDecoder(ChunkRequest)
    assert [r for piece in split(stream, cuts) for r in decoder.feed(piece)] == records


def feed_all(decoder: FrameDecoder[Any], pieces: list[bytes]) -> None:
    """Feed every piece; only DecodeError may come out, and it ends the stream."""
    for piece in pieces:
        try:
            decoder.feed(piece)
        except DecodeError:
            with pytest.raises(DecodeError):
                decoder.feed(b"\x00")
            return


@given(st.binary(max_size=400), st.lists(st.integers(0, 1000), max_size=8))
def test_garbage_raises_decode_error_only(data: bytes, cuts: list[int]) -> None:
    feed_all(FrameDecoder(ChunkResponse), split(data, cuts))
    feed_all(FrameDecoder(ChunkRequest), split(data, cuts))


@given(st.binary(min_size=1, max_size=200))
def test_framed_garbage_raises_decode_error_only(body: bytes) -> None:
    feed_all(FrameDecoder(ChunkResponse), [frame(body)])
    feed_all(FrameDecoder(ChunkRequest), [frame(body)])


@given(responses, st.integers(0, 10_000), st.integers(1, 255))
def test_corrupted_frames_raise_decode_error_only(
    record: ChunkResponse, where: int, flip: int
) -> None:
    data = bytearray(encode_frame(record))
    data[where % len(data)] ^= flip
    feed_all(FrameDecoder(ChunkResponse), [bytes(data)])


@pytest.mark.parametrize("record_type", [ChunkRequest, ChunkResponse])
def test_invalid_oversize_frame_is_refused_from_its_prefix(record_type: Any) -> None:
    limit = REQUEST_BODY_BYTES_MAX if record_type is ChunkRequest else RESPONSE_BODY_BYTES_MAX
    decoder = FrameDecoder(record_type)
    assert decoder.feed((limit + 1).to_bytes(4, "big")[:3]) == []
    with pytest.raises(FrameError, match=f"exceeds the limit of {limit}"):
        decoder.feed((limit + 1).to_bytes(4, "big")[3:])
    assert decoder.buffered == 0


def test_invalid_oversize_frame_body_is_never_held() -> None:
    decoder = FrameDecoder(ChunkResponse)
    with pytest.raises(FrameError):
        decoder.feed(b"\xff\xff\xff\xff" + b"x" * 100_000)
    assert decoder.buffered == 0
    with pytest.raises(DecodeError, match="already failed"):
        decoder.feed(b"x" * 10)
    assert decoder.buffered == 0


def test_invalid_empty_frame() -> None:
    with pytest.raises(FrameError, match="empty body"):
        FrameDecoder(ChunkRequest).feed(b"\x00\x00\x00\x00")


def test_frames_before_an_error_are_decoded_in_earlier_calls() -> None:
    decoder = FrameDecoder(ChunkRequest)
    good = ChunkRequest(id=1, cid=CID)
    assert decoder.feed(encode_frame(good)) == [good]
    with pytest.raises(DecodeError):
        decoder.feed(frame(b"\xc0"))


BAD_BODIES: list[tuple[str, Any, Any, str]] = [
    # (case, record type, plain value to encode, expected message fragment)
    ("unknown field", ChunkRequest, {"cid": CID, "id": 1, "x": 0}, "unknown field"),
    ("missing field", ChunkRequest, {"id": 1}, "missing field"),
    ("short cid", ChunkRequest, {"cid": CID[:-1], "id": 1}, "at least 36"),
    ("negative id", ChunkRequest, {"cid": CID, "id": -1}, "outside"),
    ("status out of range", ChunkResponse, {"data": b"", "id": 1, "status": 4}, "outside"),
    ("refusal with data", ChunkResponse, {"data": b"x", "id": 1, "status": BUSY}, "with data"),
    ("request on response stream", ChunkResponse, {"cid": CID, "id": 1}, "field"),
    ("not a map", ChunkRequest, [1, 2], "expected a map"),
]


@pytest.mark.parametrize(
    ("record_type", "value", "message"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_invalid_bodies(record_type: Any, value: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        FrameDecoder(record_type).feed(frame(codec.encode(value)))


def test_invalid_non_canonical_body() -> None:
    # A uint 16 holding 1 is not the shortest form.
    body = b"\x82\xa3cid\xc4\x24" + CID + b"\xa2id\xcd\x00\x01"
    with pytest.raises(DecodeError, match="canonical"):
        FrameDecoder(ChunkRequest).feed(frame(body))


BAD_RECORDS: list[tuple[str, ChunkRequest | ChunkResponse]] = [
    ("short cid", ChunkRequest(id=1, cid=CID[:-1])),
    ("id above u64", ChunkRequest(id=U64_MAX + 1, cid=CID)),
    ("status out of range", ChunkResponse(id=1, status=4, data=b"")),
    ("refusal with data", ChunkResponse(id=1, status=NOT_FOUND, data=b"x")),
    ("oversize chunk", ChunkResponse(id=1, status=OK, data=b"x" * (CHUNK_BYTES_MAX + 1))),
]


@pytest.mark.parametrize("record", [c[1] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_invalid_records_are_not_encoded(record: ChunkRequest | ChunkResponse) -> None:
    with pytest.raises(DecodeError):
        encode_frame(record)


def _generic_response(body: bytes) -> ChunkResponse | None:
    try:
        record = decode_record(ChunkResponse, body, bytes_max=RESPONSE_BODY_BYTES_MAX)
    except DecodeError:
        return None
    if record.status != OK and record.data:
        return None
    return record


@given(
    responses,
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    st.integers(-3, 3),
)
def test_fast_response_decoder_accepts_exactly_what_the_generic_one_does(
    record: ChunkResponse, flips: list[tuple[int, int]], cut: int
) -> None:
    # Mutations near the header and the trailing fields, where the fast parser works.
    body = bytearray(encode_frame(record)[LENGTH_PREFIX_BYTES:])
    for position, value in flips:
        if body:
            body[position % len(body)] = value
    if cut > 0:
        body += bytes(cut)
    elif cut < 0:
        del body[cut:]
    fast = _decode_response(bytearray(body))
    generic = _generic_response(bytes(body))
    if fast is not None:
        assert fast == generic
    # The fast path may decline what is valid (the generic path then decides), never the
    # other way: whatever it returns, the generic decoder returns too.


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, CHUNK_BYTES_MAX])
@pytest.mark.parametrize("request_id", [0, 127, 128, 255, 256, 2**16, 2**32, 2**64 - 1])
def test_fast_response_decoder_takes_every_canonical_response(size: int, request_id: int) -> None:
    record = ChunkResponse(id=request_id, status=OK, data=b"\x5a" * size)
    assert _decode_response(bytearray(encode_frame(record)[LENGTH_PREFIX_BYTES:])) == record
