"""Canonical msgpack and records: round trips, and every way decoding refuses bytes."""

import dataclasses
import re
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import DEPTH_MAX, U64_MAX, Limits, fld
from protocol.envelope import Envelope, seal
from protocol.errors import DecodeError
from protocol.kinds import (
    RECORD_TYPES,
    ChunkRef,
    Profile,
    Rendition,
    SegmentRef,
    VideoManifest,
)
from tests.vectors.invalid_cases import CODEC_INVALID, InvalidBytes
from tests.vectors.samples import ALICE, reference_encode, sample_manifest, sample_profile

I64_MIN = -(2**63)
BIG = 10**7
"""A ``bytes_max`` no generated value reaches: the round trips test the codec, not limits."""

# ---------------------------------------------------------------------------------------
# Plain values.

scalars = st.one_of(
    st.integers(I64_MIN, U64_MAX),
    st.integers(-40, 300),
    st.booleans(),
    st.text(),
    st.binary(),
)


def plain_values(depth: int = 0) -> st.SearchStrategy[Any]:
    """Values :func:`codec.encode` accepts, nested at most ``DEPTH_MAX`` deep."""
    if depth == DEPTH_MAX:
        return scalars
    inner = plain_values(depth + 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    )


def as_decoded(value: Any) -> Any:
    """``value`` as :func:`codec.decode` returns it: lists become tuples."""
    if isinstance(value, list | tuple):
        return tuple(as_decoded(item) for item in value)
    if isinstance(value, dict):
        return {key: as_decoded(item) for key, item in value.items()}
    return value


@given(plain_values())
def test_plain_round_trip(value: Any) -> None:
    data = codec.encode(value)
    decoded = codec.decode(data, bytes_max=len(data))
    assert decoded == as_decoded(value)
    assert codec.encode(decoded) == data


@given(plain_values())
def test_encoding_matches_the_specification(value: Any) -> None:
    """A second encoder written from docs/protocol.md gives the same bytes."""
    assert codec.encode(value) == reference_encode(value)


@given(st.dictionaries(st.text(), st.integers(0, 9), min_size=2))
def test_map_bytes_do_not_depend_on_insertion_order(value: dict[str, int]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert codec.encode(reversed_value) == codec.encode(value)
    decoded = codec.decode(codec.encode(value), bytes_max=BIG)
    assert list(decoded) == sorted(value, key=str.encode)


@given(
    plain_values(),
    st.sets(st.sampled_from(["int", "str", "bin", "array", "map"]), min_size=1),
    st.booleans(),
)
def test_non_canonical_forms_do_not_decode(value: Any, wide: set[str], reverse_keys: bool) -> None:
    data = reference_encode(value, wide=frozenset(wide), reverse_keys=reverse_keys)
    if data == codec.encode(value):
        return  # nothing in value was widened or reordered
    with pytest.raises(DecodeError):
        codec.decode(data, bytes_max=BIG)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CODEC_INVALID])
def test_invalid_decode(case: InvalidBytes) -> None:
    with pytest.raises(DecodeError, match=case.match):
        codec.decode(bytes.fromhex(case.hex), bytes_max=case.bytes_max)


def nested(depth: int) -> Any:
    """An integer under ``depth`` arrays: the integer sits at depth ``depth``."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_depth_limit_is_inclusive() -> None:
    data = codec.encode(nested(DEPTH_MAX))
    assert codec.decode(data, bytes_max=len(data)) == as_decoded(nested(DEPTH_MAX))


def test_size_limit_is_inclusive() -> None:
    data = codec.encode("abc")
    assert codec.decode(data, bytes_max=len(data)) == "abc"
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode(data, bytes_max=len(data) - 1)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(1.5, "float", id="float"),
        pytest.param(None, "NoneType", id="nil"),
        pytest.param({1: 2}, "map keys must be strings", id="int key"),
        pytest.param({b"a": 2}, "map keys must be strings", id="bin key"),
        pytest.param(2**64, "64-bit range", id="int too big"),
        pytest.param(I64_MIN - 1, "64-bit range", id="int too small"),
        pytest.param(nested(DEPTH_MAX + 1), "DEPTH_MAX", id="too deep"),
        pytest.param({1, 2}, "set", id="set"),
        pytest.param(bytearray(b"x"), "bytearray", id="bytearray"),
    ],
)
def test_invalid_encode(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        codec.encode(value)


# ---------------------------------------------------------------------------------------
# Records, with strategies read from each field's type and limits.

ITEMS_MAX = 3
"""Generated tuples stay short (a manifest may list SEGMENTS_MAX segments).

Limits are tested below."""


def utf8_text(len_min: int, len_max: int) -> st.SearchStrategy[str]:
    """Text of ``len_min`` to ``len_max`` UTF-8 bytes."""
    return (
        st.text(min_size=len_min, max_size=len_max)
        .map(lambda text: text.encode("utf-8")[:len_max].decode("utf-8", "ignore"))
        .filter(lambda text: len(text.encode("utf-8")) >= len_min)
    )


def field_values(kind: Any, limits: Limits) -> st.SearchStrategy[Any]:
    if dataclasses.is_dataclass(kind):
        return records(kind)
    if typing.get_origin(kind) is tuple:
        item_limits = Limits(len_max=limits.item_len_max)
        items_max = min(limits.items_max if limits.items_max is not None else ITEMS_MAX, ITEMS_MAX)
        items = field_values(typing.get_args(kind)[0], item_limits)
        return st.lists(items, min_size=limits.items_min, max_size=items_max).map(tuple)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(limits.value_min, limits.value_max)
    len_max = limits.len_max if limits.len_max is not None else 100
    if kind is bytes:
        return st.binary(min_size=limits.len_min, max_size=len_max)
    assert kind is str, kind
    return utf8_text(limits.len_min, len_max)


def records(cls: Any) -> st.SearchStrategy[Any]:
    """Records of ``cls`` within every field limit (not necessarily valid messages)."""
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls,
        **{
            f.name: field_values(hints[f.name], f.metadata.get("limits", Limits()))
            for f in dataclasses.fields(cls)
        },
    )


RECORD_CLASSES = [ChunkRef, SegmentRef, Rendition, *RECORD_TYPES.values(), Envelope]


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_record_round_trip(cls: Any, data: st.DataObject) -> None:
    record = data.draw(records(cls))
    encoded = codec.encode_record(record)
    decoded = codec.decode_record(cls, encoded, bytes_max=BIG)
    assert decoded == record
    assert codec.encode_record(decoded) == encoded
    assert list(codec.decode(encoded, bytes_max=BIG)) == sorted(
        (f.name for f in dataclasses.fields(cls)), key=str.encode
    )


@dataclasses.dataclass(frozen=True)
class Flags:
    """A record with a bool field: no kind has one yet, but the codec supports it."""

    on: bool = fld()
    count: int = fld(value_min=-5, value_max=5)


@given(records(Flags))
def test_bool_record_round_trip(record: Flags) -> None:
    assert codec.decode_record(Flags, codec.encode_record(record), bytes_max=BIG) == record


def test_limits_are_inclusive() -> None:
    manifest = sample_manifest(
        title="é" * 75,
        description="x" * 2000,
        tags=tuple(f"{i:02d}" + "t" * 30 for i in range(10)),
        license="l" * 64,
        remix_of=bytes(32),
        duration_ms=600_000,
    )
    encoded = codec.encode_record(manifest)
    assert codec.decode_record(VideoManifest, encoded, bytes_max=BIG) == manifest


def manifest_obj(**changes: Any) -> dict[str, Any]:
    return {**codec.record_to_obj(sample_manifest()), **changes}


def profile_obj(**changes: Any) -> dict[str, Any]:
    return {**codec.record_to_obj(sample_profile()), **changes}


def segment_obj(**changes: Any) -> dict[str, Any]:
    return {
        "cid": bytes([1, 0x55, 0x12, 0x20]) + bytes(32),
        "duration_ms": 2000,
        "size": 1,
        **changes,
    }


def without(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key != name}


def manifest_with_segment(**changes: Any) -> dict[str, Any]:
    rendition = codec.record_to_obj(sample_manifest().renditions[0])
    rendition["segments"] = [segment_obj(**changes)]
    return manifest_obj(renditions=[rendition])


P, M, S = profile_obj, manifest_obj, manifest_with_segment
RECORD_INVALID: list[tuple[str, type, Any, str]] = [
    ("unknown field", Profile, P(zz=1), "Profile: unknown field 'zz'"),
    ("missing field", Profile, without(P(), "bio"), "missing field 'bio'"),
    ("not a map", Profile, [1], "Profile: expected a map, got tuple"),
    ("int for str", Profile, P(name=5), "Profile.name: expected str, got int"),
    ("bytes for str", Profile, P(name=b"x"), "expected str, got bytes"),
    ("str for bytes", Profile, P(avatar="x"), "expected bytes, got str"),
    ("str for int", Profile, P(created_ms="1"), "expected an integer, got str"),
    ("bool as int", Profile, P(created_ms=True), "expected an integer, got bool"),
    ("int as bool", Flags, {"count": 0, "on": 1}, "Flags.on: expected a bool, got int"),
    ("int below min", Flags, {"count": -6, "on": True}, r"-6 outside \[-5, 5\]"),
    ("int above max", Flags, {"count": 6, "on": True}, r"6 outside \[-5, 5\]"),
    ("negative int", Profile, P(created_ms=-1), r"-1 outside \[0, 18446744073709551615\]"),
    (
        "int out of range low",
        VideoManifest,
        M(duration_ms=0),
        r"duration_ms: 0 outside \[1, 600000\]",
    ),
    (
        "int out of range high",
        VideoManifest,
        M(duration_ms=600_001),
        r"600001 outside \[1, 600000\]",
    ),
    ("str too long", Profile, P(name="é" * 33), "Profile.name: 66 bytes exceeds the limit of 64"),
    ("str too short", VideoManifest, M(title=""), "title: 0 bytes, at least 1 required"),
    ("bytes too long", Profile, P(avatar=bytes(37)), "avatar: 37 bytes exceeds the limit of 36"),
    ("bytes too short", Profile, P(author=bytes(31)), "author: 31 bytes, at least 32 required"),
    (
        "too many items",
        VideoManifest,
        M(tags=[str(i) for i in range(11)]),
        "tags: 11 items exceeds the limit of 10",
    ),
    ("too few items", VideoManifest, M(renditions=[]), "renditions: 0 items, at least 1 required"),
    (
        "item too long",
        VideoManifest,
        M(tags=["t" * 33]),
        r"tags\.0: 33 bytes exceeds the limit of 32",
    ),
    ("item wrong type", VideoManifest, M(tags=[1]), r"tags\.0: expected str, got int"),
    ("str for array", VideoManifest, M(tags="t"), "tags: expected an array, got str"),
    (
        "int for record",
        VideoManifest,
        M(thumbnail=5),
        "VideoManifest.thumbnail: expected a map, got int",
    ),
    (
        "nested int out of range",
        VideoManifest,
        S(size=0),
        r"renditions\[0\]\.segments\[0\]\.size: 0 outside",
    ),
    (
        "nested unknown field",
        VideoManifest,
        S(extra=1),
        r"renditions\[0\]\.segments\[0\]: unknown field 'extra'",
    ),
    (
        "segment too long",
        VideoManifest,
        S(duration_ms=60_001),
        r"duration_ms: 60001 outside \[1, 60000\]",
    ),
]


@pytest.mark.parametrize(
    ("cls", "obj", "match"), [pytest.param(*row[1:], id=row[0]) for row in RECORD_INVALID]
)
def test_invalid_record(cls: Any, obj: Any, match: str) -> None:
    data = codec.encode(obj)
    with pytest.raises(DecodeError, match=match):
        codec.decode_record(cls, data, bytes_max=BIG)


def test_invalid_record_oversize() -> None:
    data = codec.encode_record(sample_profile())
    with pytest.raises(DecodeError, match=re.escape(f"{len(data)} bytes exceeds the limit")):
        codec.decode_record(Profile, data, bytes_max=len(data) - 1)


def test_invalid_record_with_mixed_key_types() -> None:
    # msgpack lets str and bytes keys through; a map mixing them must be a DecodeError, not
    # a TypeError from comparing them.
    data = msgpack.packb({b"a": 1, "zz": 2}, use_bin_type=True)
    with pytest.raises(DecodeError, match="map keys must be strings"):
        codec.decode_record(Profile, data, bytes_max=BIG)
    with pytest.raises(DecodeError, match="map keys must be strings"):
        codec.record_from_obj(Profile, {b"a": 1, "zz": 2})


def test_check_field_refuses_what_decoding_would() -> None:
    codec.check_field(VideoManifest, "title", "x" * 150)
    with pytest.raises(DecodeError, match=r"VideoManifest\.title: 151 bytes exceeds the limit"):
        codec.check_field(VideoManifest, "title", "x" * 151)
    with pytest.raises(DecodeError, match="11 items exceeds the limit of 10"):
        codec.check_field(VideoManifest, "tags", [f"t{i}" for i in range(11)])


def test_seal_refuses_a_record_outside_its_limits() -> None:
    # Nothing is signed that a receiver could not decode.
    with pytest.raises(DecodeError, match=r"title: 151 bytes exceeds"):
        seal(ALICE, sample_manifest(title="x" * 151))
