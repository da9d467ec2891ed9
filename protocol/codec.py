"""Canonical msgpack: exactly one byte string per value, and strict decoding.

The encoding rules (specified byte by byte in docs/protocol.md):

- Allowed types: unsigned and negative integers (shortest msgpack form), booleans, UTF-8
  strings (``str`` family), byte strings (``bin`` family), arrays and maps. No nil, no
  floats (they have several encodings and no place in signed data), no extension types.
- Every length and integer uses the shortest msgpack form, as any msgpack encoder writes it.
- Map keys are strings, sorted by their UTF-8 bytes, without duplicates.

Decoding is strict: it rejects trailing bytes, values nested too deep, floats, nil,
extension types, non-string keys, and any input whose re-encoding differs from it (which
catches unsorted or duplicate keys and non-shortest forms). Records are frozen dataclasses
whose fields carry their limits; :func:`record_from_obj` rejects unknown, missing,
mistyped and oversize fields.
"""

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import msgpack

from protocol.errors import DecodeError
from protocol.fastdecode import Decoder, Mismatch, compile_decoder

DEPTH_MAX = 8
U64_MAX = 2**64 - 1

R = TypeVar("R")


def encode(value: Any) -> bytes:
    """Return the canonical encoding of a plain value (see module doc).

    Raises :class:`TypeError` for values outside the canonical subset: that is a bug of the
    caller, since every value we sign is built by our own code.
    """
    return msgpack.packb(_canonical(value, 0), use_bin_type=True, strict_types=True)  # type: ignore[no-any-return]


def _canonical(value: Any, depth: int) -> Any:
    if depth > DEPTH_MAX:
        raise TypeError("value nested deeper than DEPTH_MAX")
    if isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value <= U64_MAX:
            raise TypeError(f"integer out of the 64-bit range: {value}")
        return value
    if isinstance(value, list | tuple):
        return [_canonical(item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("map keys must be strings")
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        return {key: _canonical(value[key], depth + 1) for key in keys}
    raise TypeError(f"type {type(value).__name__} has no canonical encoding")


def decode(data: bytes, *, bytes_max: int) -> Any:
    """Decode canonical bytes into plain values (lists become tuples).

    Raises :class:`DecodeError` when ``data`` is longer than ``bytes_max`` or is not the
    canonical encoding of an allowed value.
    """
    value = _unpack(data, bytes_max)
    _check_plain(value, 0)
    _check_canonical(value, data)
    return value


def _unpack(data: bytes, bytes_max: int) -> Any:
    if len(data) > bytes_max:
        raise DecodeError(f"{len(data)} bytes exceeds the limit of {bytes_max}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            ext_hook=_reject_ext,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    return value


def _check_canonical(value: Any, data: bytes) -> None:
    # With the keys of every map known to be sorted strings, packing the decoded value as it
    # stands gives the canonical bytes; any other difference is a non-shortest form or a
    # duplicate key.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("not the canonical encoding (key order, duplicate key or int width)")


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")


def _check_plain(value: Any, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise DecodeError(f"value nested deeper than {DEPTH_MAX}")
    if value is None:
        raise DecodeError("nil is not allowed")
    if isinstance(value, float):
        raise DecodeError("floats are not allowed")
    if isinstance(value, msgpack.Timestamp):
        # msgpack decodes extension type -1 into a Timestamp itself, without calling ext_hook.
        raise DecodeError("extension type -1 (timestamp) is not allowed")
    if isinstance(value, tuple):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, dict):
        previous = b""
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise DecodeError("map keys must be strings")
            encoded = key.encode("utf-8")
            if index and encoded <= previous:
                raise DecodeError("map keys are not sorted by their UTF-8 bytes")
            previous = encoded
            _check_plain(item, depth + 1)
    elif not isinstance(value, bool | int | str | bytes):
        raise DecodeError(f"type {type(value).__name__} is not allowed")


# ---------------------------------------------------------------------------------------
# Records: frozen dataclasses whose fields carry their limits in metadata.


@dataclasses.dataclass(frozen=True)
class Limits:
    """The bounds of one record field.

    ``len_min``/``len_max`` bound a str (in UTF-8 bytes) or bytes value; ``items_max``
    bounds a tuple and ``item_len_max`` each of its str or bytes items; ``value_min`` and
    ``value_max`` bound an int.
    """

    len_min: int = 0
    len_max: int | None = None
    items_min: int = 0
    items_max: int | None = None
    item_len_max: int | None = None
    value_min: int = 0
    value_max: int = U64_MAX


def fld(**limits: int) -> Any:
    """Declare a record field with its :class:`Limits`: ``title: str = fld(len_max=150)``."""
    return dataclasses.field(metadata={"limits": Limits(**limits)})


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    kind: Any
    """bool, int, str, bytes, a record class, or tuple (then item_kind says of what)."""
    item_kind: Any
    limits: Limits
    item_limits: Limits
    is_record: bool
    item_is_record: bool


@dataclasses.dataclass(frozen=True)
class _RecordSpec:
    fields: tuple[_FieldSpec, ...]
    names: tuple[str, ...]
    """Field names in canonical (sorted) order, as a valid decoded map lists them."""
    sorted_fields: tuple[_FieldSpec, ...]
    """The fields in that order."""


_SPECS: dict[type, _RecordSpec] = {}


def _is_record(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _specs(cls: type) -> _RecordSpec:
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        item_kind = None
        if typing.get_origin(kind) is tuple:
            item_kind = typing.get_args(kind)[0]
            kind = tuple
        limits = f.metadata.get("limits", Limits())
        item_limits = Limits(len_max=limits.item_len_max)
        fields.append(
            _FieldSpec(
                f.name,
                kind,
                item_kind,
                limits,
                item_limits,
                _is_record(kind),
                _is_record(item_kind),
            )
        )
    names = tuple(sorted((f.name for f in fields), key=lambda n: n.encode("utf-8")))
    by_name = {f.name: f for f in fields}
    spec = _RecordSpec(tuple(fields), names, tuple(by_name[n] for n in names))
    _SPECS[cls] = spec
    return spec


def record_to_obj(record: Any) -> dict[str, Any]:
    """Turn a record (and nested records) into plain values for :func:`encode`, each map
    with its keys in canonical order."""
    out: dict[str, Any] = {}
    for spec in _specs(type(record)).sorted_fields:
        value = getattr(record, spec.name)
        if spec.kind is tuple:
            out[spec.name] = [record_to_obj(v) if spec.item_is_record else v for v in value]
        else:
            out[spec.name] = record_to_obj(value) if spec.is_record else value
    return out


def record_from_obj(cls: type[R], obj: Any, path: str = "") -> R:
    """Build a record of type ``cls`` from decoded plain values, checking every field.

    Raises :class:`DecodeError` naming the offending field for unknown, missing, mistyped
    or out-of-bounds fields.
    """
    where = path or cls.__name__
    if not isinstance(obj, dict):
        raise DecodeError(f"{where}: expected a map, got {type(obj).__name__}")
    record_spec = _specs(cls)
    if tuple(obj) != record_spec.names:
        if not all(isinstance(key, str) for key in obj):
            raise DecodeError(f"{where}: map keys must be strings")
        unknown = sorted(set(obj) - set(record_spec.names))
        if unknown:
            raise DecodeError(f"{where}: unknown field {unknown[0]!r}")
        missing = [name for name in record_spec.names if name not in obj]
        if missing:
            raise DecodeError(f"{where}: missing field {missing[0]!r}")
        raise DecodeError(f"{where}: map keys are not sorted by their UTF-8 bytes")
    values = {}
    for spec in record_spec.fields:
        value = obj[spec.name]
        if spec.kind is tuple:
            values[spec.name] = _tuple_from_obj(spec, value, where)
        elif spec.is_record:
            values[spec.name] = record_from_obj(spec.kind, value, f"{where}.{spec.name}")
        else:
            values[spec.name] = _check_value(spec.kind, spec.limits, value, where, spec.name)
    return cls(**values)


def _tuple_from_obj(spec: _FieldSpec, value: Any, where: str) -> tuple[Any, ...]:
    path = f"{where}.{spec.name}"
    if not isinstance(value, tuple):
        raise DecodeError(f"{path}: expected an array, got {type(value).__name__}")
    lim = spec.limits
    if len(value) < lim.items_min:
        raise DecodeError(f"{path}: {len(value)} items, at least {lim.items_min} required")
    if lim.items_max is not None and len(value) > lim.items_max:
        raise DecodeError(f"{path}: {len(value)} items exceeds the limit of {lim.items_max}")
    if spec.item_is_record:
        return tuple(
            record_from_obj(spec.item_kind, item, f"{path}[{i}]") for i, item in enumerate(value)
        )
    return tuple(
        _check_value(spec.item_kind, spec.item_limits, item, path, str(i))
        for i, item in enumerate(value)
    )


def _check_value(kind: Any, lim: Limits, value: Any, where: str, name: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise DecodeError(f"{where}.{name}: expected a bool, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(f"{where}.{name}: expected an integer, got {type(value).__name__}")
        if not lim.value_min <= value <= lim.value_max:
            raise DecodeError(f"{where}.{name}: {value} outside [{lim.value_min}, {lim.value_max}]")
        return value
    if kind is str or kind is bytes:
        if not isinstance(value, kind):
            raise DecodeError(
                f"{where}.{name}: expected {kind.__name__}, got {type(value).__name__}"
            )
        size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
        if size < lim.len_min:
            raise DecodeError(f"{where}.{name}: {size} bytes, at least {lim.len_min} required")
        if lim.len_max is not None and size > lim.len_max:
            raise DecodeError(f"{where}.{name}: {size} bytes exceeds the limit of {lim.len_max}")
        return value
    raise TypeError(f"{where}.{name}: unsupported field type {kind!r}")  # a bug in a record


def check_field(cls: type, name: str, value: Any) -> None:
    """Check one field value against its limits in record class ``cls``, as decoding would.

    Lets a caller refuse bad input early (a title too long, too many tags) with the message
    decoding would give. For fields of scalars and of tuples of scalars; a record field is
    checked by encoding its record. Raises :class:`DecodeError`.
    """
    spec = next(f for f in _specs(cls).fields if f.name == name)
    assert not (spec.is_record or spec.item_is_record), f"{name} holds records"
    if spec.kind is tuple:
        _tuple_from_obj(spec, tuple(value), cls.__name__)
    else:
        _check_value(spec.kind, spec.limits, value, cls.__name__, name)


def encode_record(record: Any) -> bytes:
    """Return the canonical bytes of a record.

    Faster than :func:`encode`: :func:`record_to_obj` already lists every map's keys in
    canonical order and a record's fields hold only canonical types (their declared
    types), so msgpack's exact-type packing writes the canonical form directly. Raises
    :class:`TypeError` for a value outside the canonical subset (a bug of the caller).
    """
    try:
        return msgpack.packb(  # type: ignore[no-any-return]
            record_to_obj(record), use_bin_type=True, strict_types=True
        )
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"a record value has no canonical encoding: {exc}") from exc


def decode_record(cls: type[R], data: bytes, *, bytes_max: int) -> R:
    """Decode canonical bytes into a record of type ``cls``. Raises :class:`DecodeError`.

    Faster than :func:`decode` then :func:`record_from_obj`, with the same verdicts: the
    record's own checks see every value (a float, nil or extension value is never of a
    field's type) and every map's keys (they must be exactly the field names, in sorted
    order), so only the canonical re-encoding is left to check.
    """
    value = _unpack(data, bytes_max)
    try:
        record: R = _decoder(cls)(value)
    except Mismatch:
        record = record_from_obj(cls, value)  # raises the precise DecodeError
    _check_canonical(value, data)
    return record


_DECODERS: dict[type, Decoder] = {}


def _decoder(cls: type) -> Decoder:
    """The compiled decoder of record class ``cls`` (see protocol/fastdecode.py)."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        spec = _specs(cls)
        decoder = compile_decoder(cls, spec.fields, spec.names, _decoder)
        _DECODERS[cls] = decoder
    return decoder


# Encoded sizes, computed without encoding (a sender sizes what it sends piece by piece).


def uint_bytes(value: int) -> int:
    """Bytes of the canonical encoding of the unsigned integer ``value``."""
    if value < 0x80:
        return 1
    if value <= 0xFF:
        return 2
    if value <= 0xFFFF:
        return 3
    return 5 if value <= 0xFFFF_FFFF else 9


def bin_bytes(length: int) -> int:
    """Bytes of the canonical encoding of a byte string of ``length`` bytes."""
    return length + (2 if length <= 0xFF else 3 if length <= 0xFFFF else 5)


def array_header_bytes(count: int) -> int:
    """Bytes of the header of an array of ``count`` items."""
    return 1 if count <= 15 else 3 if count <= 0xFFFF else 5


def fit_text(text: str, bytes_max: int) -> str:
    """``text``, cut (with "...") to at most ``bytes_max`` bytes of UTF-8, for a bounded
    text field such as a refusal's reason."""
    data = text.encode("utf-8")
    if len(data) <= bytes_max:
        return text
    return data[: bytes_max - 3].decode("utf-8", errors="ignore") + "..."
