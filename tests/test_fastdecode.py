"""The compiled record decoders accept exactly what the generic path accepts."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import DecodeError
from protocol.fastdecode import Mismatch
from tests.test_codec import RECORD_CLASSES, plain_values, records


def both_paths(cls: Any, obj: Any) -> tuple[Any, Any]:
    """(compiled result or None, generic result or None): None where the path refused."""
    try:
        fast = codec._decoder(cls)(obj)
    except Mismatch:
        fast = None
    try:
        slow = codec.record_from_obj(cls, obj)
    except DecodeError:
        slow = None
    return fast, slow


def mutate(obj: Any, data: st.DataObject) -> Any:
    """Replace one value somewhere in the decoded record ``obj`` by an arbitrary value."""
    if isinstance(obj, dict) and obj and data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(obj)))
        return {**obj, name: mutate(obj[name], data)}
    if isinstance(obj, tuple) and obj and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(obj) - 1))
        return (*obj[:index], mutate(obj[index], data), *obj[index + 1 :])
    return data.draw(st.one_of(nearby(obj), plain_values(), st.none(), st.floats()))


def nearby(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same type as ``value`` just around it: where limits bite."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value)])
    if isinstance(value, int):
        return st.sampled_from([value - 1, value + 1, -value - 1, value * 2**32, 2**64])
    if isinstance(value, bytes):
        return st.integers(1, 300).flatmap(
            lambda n: st.sampled_from([value[:-n], value + b"x" * n, b"\xff" * 4 * n])
        )
    if isinstance(value, str):
        return st.integers(1, 300).flatmap(
            lambda n: st.sampled_from([value[:-n], value + "x" * n, "é" * 2 * n])
        )
    if isinstance(value, tuple):
        return st.integers(1, 400).map(lambda n: value[: max(0, len(value) - n)] + value * n)
    if isinstance(value, dict):
        return st.sampled_from(sorted(value)).map(
            lambda name: {k: v for k, v in value.items() if k != name}
        )
    return st.nothing()


@pytest.mark.parametrize("cls", RECORD_CLASSES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_compiled_and_generic_decoders_agree(cls: Any, data: st.DataObject) -> None:
    # Decoded as from the wire: map keys in canonical order, arrays as tuples.
    obj = codec.decode(codec.encode_record(data.draw(records(cls))), bytes_max=2**20)
    fast, slow = both_paths(cls, obj)
    assert fast is not None and fast == slow
    changed = mutate(obj, data)
    fast, slow = both_paths(cls, changed)
    assert fast == slow
