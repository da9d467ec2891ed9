"""Compiled record decoders: the hot path of message validation.

``record_from_obj`` in protocol/codec.py walks a record's field specs generically, which
costs more than the Ed25519 verification it sits beside once a manifest lists dozens of
segments. For each record class we generate, once, a straight-line Python function that
checks the same rules and builds the record directly. It accepts exactly the inputs the
generic path accepts and raises :class:`Mismatch` on anything else; the caller then runs the
generic path, which raises the precise, field-naming :class:`~protocol.errors.DecodeError`.
So error messages have one source, and a property test checks that the two paths agree.
"""

from collections.abc import Callable
from typing import Any


class Mismatch(Exception):
    """The input is not a valid record: take the generic path for the exact error."""


Decoder = Callable[[Any], Any]


def _mismatch() -> None:
    raise Mismatch


def _text_ok(value: str, len_min: int, len_max: int | None) -> bool:
    """UTF-8 length of ``value`` within bounds, encoding only when the count is unclear."""
    chars = len(value)
    # A code point takes 1 to 4 UTF-8 bytes.
    if chars >= len_min and (len_max is None or chars * 4 <= len_max):
        return True
    size = len(value.encode("utf-8"))
    return size >= len_min and (len_max is None or size <= len_max)


def _scalar_check(var: str, kind: Any, lim: Any, lines: list[str], indent: str) -> None:
    """Append lines that raise Mismatch unless ``var`` is a valid ``kind`` within ``lim``."""
    if kind is bool:
        lines.append(f"{indent}if {var}.__class__ is not bool: mismatch()")
    elif kind is int:
        lines.append(
            f"{indent}if {var}.__class__ is not int or not "
            f"({lim.value_min} <= {var} <= {lim.value_max}): mismatch()"
        )
    elif kind is bytes:
        high = "" if lim.len_max is None else f" or len({var}) > {lim.len_max}"
        lines.append(
            f"{indent}if {var}.__class__ is not bytes or len({var}) < {lim.len_min}{high}: "
            "mismatch()"
        )
    elif kind is str:
        lines.append(
            f"{indent}if {var}.__class__ is not str or not "
            f"text_ok({var}, {lim.len_min}, {lim.len_max}): mismatch()"
        )
    else:
        raise TypeError(f"unsupported field type {kind!r}")  # a bug in a record class


def compile_decoder(
    cls: type,
    fields: tuple[Any, ...],
    names: tuple[str, ...],
    nested: Callable[[type], Decoder],
) -> Decoder:
    """Generate the decoder of record class ``cls`` from its field specs (codec._FieldSpec,
    in declaration order) and canonical ``names``; ``nested`` gives its parts' decoders."""
    env: dict[str, Any] = {
        "mismatch": _mismatch,
        "text_ok": _text_ok,
        "NAMES": names,
        "new": object.__new__,
        "cls": cls,
    }
    lines = [
        "def decode(obj):",
        "    if obj.__class__ is not dict or tuple(obj) != NAMES: mismatch()",
    ]
    for i, spec in enumerate(fields):
        var = f"v{i}"
        lines.append(f"    {var} = obj[{spec.name!r}]")
        if spec.kind is tuple:
            lim = spec.limits
            high = "" if lim.items_max is None else f" or len({var}) > {lim.items_max}"
            lines.append(
                f"    if {var}.__class__ is not tuple or len({var}) < {lim.items_min}{high}: "
                "mismatch()"
            )
            if spec.item_is_record:
                env[f"dec{i}"] = nested(spec.item_kind)
                lines.append(f"    {var} = tuple([dec{i}(x) for x in {var}])")
            else:
                lines.append(f"    for x in {var}:")
                _scalar_check("x", spec.item_kind, spec.item_limits, lines, "        ")
        elif spec.is_record:
            env[f"dec{i}"] = nested(spec.kind)
            lines.append(f"    {var} = dec{i}({var})")
        else:
            _scalar_check(var, spec.kind, spec.limits, lines, "    ")
    # Records are frozen dataclasses without __post_init__: filling the instance dict is
    # what their __init__ does, minus one object.__setattr__ call per field.
    lines.append("    record = new(cls)")
    assigned = ", ".join(f"{spec.name!r}: v{i}" for i, spec in enumerate(fields))
    lines.append(f"    record.__dict__.update({{{assigned}}})")
    lines.append("    return record")
    exec(compile("\n".join(lines), f"<decoder of {cls.__name__}>", "exec"), env)
    decoder: Decoder = env["decode"]
    return decoder
