"""Generate the protocol test vectors, tests/vectors/*.json.

Run from the repository root::

    python -m tests.vectors.make_vectors

Everything comes from fixed seeds and fixed times, and Ed25519 signatures are deterministic,
so the output depends only on tests/vectors/*.py and on protocol/: running it twice writes
the same bytes. tests/test_vectors.py checks that the code still reproduces every byte and
verdict; docs/protocol.md explains the format and walks through some of the vectors.

- ``codec.json``: plain values with their canonical bytes, and byte strings that must not
  decode.
- ``ids.json``: account ids and content ids, binary and text.
- ``<kind>.json``, one per kind: records with their body, signing input, signature,
  envelope and message id.
- ``invalid.json``: envelopes that each break one validation rule, with the verdict.
- ``ledger.json``: the ledger's genesis, orders, votes, certificate and Merkle trees
  (tests/vectors/ledger_vectors.py).
"""

import dataclasses
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import codec
from protocol.cid import chunk_id, cid_to_text
from protocol.envelope import seal, signing_input
from protocol.kinds import RECORD_TYPES, Record
from tests.vectors.invalid_cases import CODEC_INVALID, INVALID_MESSAGES
from tests.vectors.ledger_vectors import ledger_file
from tests.vectors.samples import (
    ALICE,
    BOB,
    CREATED_MS,
    MALLORY,
    NOW_MS,
    RFC8032_TEST1,
    fake_chunk,
    key_of,
    sample_follow,
    sample_manifest,
    sample_offer,
    sample_profile,
    sample_reaction,
    sample_remix,
    sample_tombstone,
    sample_unfollow,
    sample_view,
)

VECTORS_DIR = Path(__file__).resolve().parent
JSON_INT_MAX = 2**53 - 1
"""Record integers in the vectors stay below this, so every JSON reader keeps them exact."""


# ---------------------------------------------------------------------------------------
# JSON forms.


def to_json(value: Any) -> Any:
    """A record as JSON: fields in canonical order, bytes as hex, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = sorted((f.name for f in dataclasses.fields(value)), key=str.encode)
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        assert -JSON_INT_MAX <= value <= JSON_INT_MAX, "keep vector integers JSON-safe"
    return value


def from_json(cls: Any, obj: Any) -> Any:
    """The inverse of :func:`to_json` for a value of type ``cls`` (a record or field type)."""
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        return cls(**{f.name: from_json(hints[f.name], obj[f.name]) for f in fields})
    if typing.get_origin(cls) is tuple:
        item_type = typing.get_args(cls)[0]
        return tuple(from_json(item_type, item) for item in obj)
    if cls is bytes:
        return bytes.fromhex(obj)
    return obj


def tag_plain(value: Any) -> Any:
    """A plain codec value as tagged JSON: ``["int", "-1"]``, ``["bin", "00ff"]``, ..."""
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bin", value.hex()]
    if isinstance(value, list | tuple):
        return ["array", [tag_plain(item) for item in value]]
    assert isinstance(value, dict)
    keys = sorted(value, key=str.encode)
    return ["map", [[key, tag_plain(value[key])] for key in keys]]


def untag_plain(tagged: Any) -> Any:
    """The inverse of :func:`tag_plain`, with arrays as tuples (as :func:`codec.decode` gives)."""
    tag, payload = tagged
    if tag == "int":
        return int(payload)
    if tag == "bin":
        return bytes.fromhex(payload)
    if tag == "array":
        return tuple(untag_plain(item) for item in payload)
    if tag == "map":
        return {key: untag_plain(item) for key, item in payload}
    assert tag in ("bool", "str")
    return payload


# ---------------------------------------------------------------------------------------
# The files.

CODEC_VALID: list[tuple[str, Any]] = [
    ("uint fixint 0", 0),
    ("uint fixint 127", 127),
    ("uint8 128", 128),
    ("uint8 255", 255),
    ("uint16 256", 256),
    ("uint16 65535", 65535),
    ("uint32 65536", 65536),
    ("uint32 2^32-1", 2**32 - 1),
    ("uint64 2^32", 2**32),
    ("uint64 2^64-1", 2**64 - 1),
    ("negative fixint -1", -1),
    ("negative fixint -32", -32),
    ("int8 -33", -33),
    ("int8 -128", -128),
    ("int16 -129", -129),
    ("int16 -32768", -32768),
    ("int32 -32769", -32769),
    ("int32 -2^31", -(2**31)),
    ("int64 -2^31-1", -(2**31) - 1),
    ("int64 -2^63", -(2**63)),
    ("false", False),
    ("true", True),
    ("fixstr empty", ""),
    ("fixstr a", "a"),
    ("fixstr 2-byte UTF-8", "é"),
    ("fixstr 4-byte UTF-8", "🎬"),
    ("fixstr 31 bytes", "x" * 31),
    ("str8 32 bytes", "x" * 32),
    ("str8 255 bytes", "x" * 255),
    ("str16 256 bytes", "x" * 256),
    ("bin8 empty", b""),
    ("bin8 one byte", b"\x00"),
    ("bin8 255 bytes", bytes(range(255))),
    ("bin16 256 bytes", bytes(range(256))),
    ("fixarray empty", []),
    ("fixarray mixed", [1, "a", b"\x01", True, -1]),
    ("fixarray 15 items", list(range(15))),
    ("array16 16 items", list(range(16))),
    ("fixmap empty", {}),
    ("fixmap sorted by UTF-8 bytes", {"é": 5, "b": 4, "aa": 3, "a": 2, "Z": 1, "": 0}),
    ("fixmap prefix key first", {"signer": 2, "sig": 1}),
    ("fixmap 15 keys", {f"k{i:02d}": i for i in range(15)}),
    ("map16 16 keys", {f"k{i:02d}": i for i in range(16)}),
    ("nested", {"a": [{"b": [[], {}]}], "c": {"d": b""}}),
    ("depth 8 reached", [[[[[[[[1]]]]]]]]),
]


def codec_file() -> dict[str, Any]:
    return {
        "description": "Canonical msgpack: valid values with their only encoding, then byte "
        "strings a decoder must refuse. Values are tagged: [type, payload]; int payloads are "
        "decimal strings, bin payloads hex, map payloads [key, value] pairs in canonical order.",
        "valid": [
            {"name": name, "value": tag_plain(value), "hex": codec.encode(value).hex()}
            for name, value in CODEC_VALID
        ],
        "invalid": [
            {"name": case.name, "hex": case.hex, "bytes_max": case.bytes_max}
            for case in CODEC_INVALID
        ],
    }


def ids_file() -> dict[str, Any]:
    accounts = [
        {
            "name": name,
            "seed_hex": key.seed.hex(),
            "public_key_hex": key.public_key.hex(),
            "account": key.account_id,
        }
        for name, key in [
            ("alice", ALICE),
            ("bob", BOB),
            ("mallory", MALLORY),
            ("rfc8032-test1", RFC8032_TEST1),
        ]
    ]
    cids = [
        {"name": name, "data_hex": data.hex(), "cid_hex": cid.hex(), "cid": cid_to_text(cid)}
        for name, data in [
            ("empty", b""),
            ("hello", b"hello"),
            ("avatar", fake_chunk("avatar", 64)),
        ]
        for cid in [chunk_id(data)]
    ]
    return {
        "description": "Account ids (Ed25519 public keys) and content ids, binary and text.",
        "accounts": accounts,
        "cids": cids,
    }


def kind_vector(name: str, record: Record) -> dict[str, Any]:
    key = key_of(record)
    body = codec.encode_record(record)
    message = seal(key, record)
    return {
        "name": name,
        "seed_hex": key.seed.hex(),
        "public_key_hex": key.public_key.hex(),
        "account": key.account_id,
        "now_ms": NOW_MS,
        "record": to_json(record),
        "body_hex": body.hex(),
        "signing_input_hex": signing_input(record.KIND, body).hex(),
        "signature_hex": message.envelope.sig.hex(),
        "envelope_hex": message.raw.hex(),
        "message_id_hex": message.id.hex(),
    }


KIND_VECTORS: dict[str, list[tuple[str, Callable[[], Record]]]] = {
    "manifest": [("one rendition", sample_manifest), ("remix, two renditions", sample_remix)],
    "profile": [
        ("every field", sample_profile),
        ("empty fields", lambda: sample_profile(name="", bio="", avatar=b"")),
    ],
    "tombstone": [("withdraw the first manifest", sample_tombstone)],
    "follow": [("bob follows alice", sample_follow)],
    "unfollow": [("bob unfollows alice", sample_unfollow)],
    "reaction": [
        ("like", sample_reaction),
        ("unlike", lambda: sample_reaction(created_ms=CREATED_MS + 2000, reaction="unlike")),
    ],
    "view": [
        ("bob watched 4.2 s", sample_view),
        (
            "a rewatch, the longest",
            lambda: sample_view(created_ms=CREATED_MS + 500_000, watched_ms=600_000),
        ),
    ],
    "offer": [
        ("alice sells ART at 5/2", sample_offer),
        (
            "a SHA-256 peer id, a price below 1",
            lambda: sample_offer(
                peer=bytes.fromhex("1220") + bytes(range(32)),
                price_num=1,
                price_den=1000,
                amount_max=1_000_000,
            ),
        ),
    ],
}


def kind_file(kind: str) -> dict[str, Any]:
    return {
        "description": f"Valid {kind} messages at now_ms, signed by the seed's key.",
        "kind": kind,
        "domain_tag": f"toktok/v1/{kind}",
        "vectors": [kind_vector(name, build()) for name, build in KIND_VECTORS[kind]],
    }


def invalid_file() -> dict[str, Any]:
    return {
        "description": "Envelopes that each break one validation rule of docs/protocol.md "
        "(quoted in 'rule'), with the verdict a node gives at now_ms.",
        "vectors": [
            {
                "name": case.name,
                "rule": case.rule,
                "verdict": case.verdict.__name__.lower(),
                "now_ms": NOW_MS,
                "envelope_hex": case.raw.hex(),
            }
            for case in INVALID_MESSAGES
        ],
    }


def build() -> dict[str, str]:
    """Every vector file's name and exact text."""
    files = {"codec.json": codec_file(), "ids.json": ids_file(), "invalid.json": invalid_file()}
    for kind in RECORD_TYPES:
        files[f"{kind}.json"] = kind_file(kind)
    files["ledger.json"] = ledger_file()
    return {
        name: json.dumps(content, indent=2, ensure_ascii=False) + "\n"
        for name, content in sorted(files.items())
    }


def main() -> None:
    for name, text in build().items():
        (VECTORS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote tests/vectors/{name}")


if __name__ == "__main__":
    main()
