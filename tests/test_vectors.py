"""The vector files in tests/vectors/ against the code: every byte and every verdict.

An accidental change of the encoding, the signing input, the ids or a verdict fails here. A
deliberate one regenerates the files (``python -m tests.vectors.make_vectors``), which
other implementations then see in the diff, and updates docs/protocol.md.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from protocol import codec
from protocol.accounts import AccountKey, account_from_text, verify
from protocol.cid import chunk_id, cid_from_text, cid_to_text
from protocol.envelope import DOMAIN_PREFIX, message_id, seal, signing_input
from protocol.errors import DecodeError, Ignore, Reject, Verdict
from protocol.kinds import BODY_BYTES_MAX, RECORD_TYPES
from protocol.validate import validate_message
from tests.vectors import make_vectors
from tests.vectors.invalid_cases import R_ENVELOPE_SIZE, R_TOMBSTONE_TARGET
from tests.vectors.make_vectors import VECTORS_DIR, from_json, to_json, untag_plain
from tests.vectors.samples import reference_encode, validation_rules

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
VERDICTS: dict[str, type[Verdict]] = {"reject": Reject, "ignore": Ignore}
RULES_WITHOUT_VECTORS = {
    R_ENVELOPE_SIZE: "its smallest case is a 128 KiB envelope, too big to be worth a file",
    R_TOMBSTONE_TARGET: "it needs the named manifest, so validate_message cannot apply it",
}


def load(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


def vectors_of(name: str, key: str = "vectors") -> list[Any]:
    return [pytest.param(vector, id=vector["name"]) for vector in load(name)[key]]


KIND_VECTORS = [
    pytest.param(kind, vector, id=f"{kind}: {vector['name']}")
    for kind in RECORD_TYPES
    for vector in load(f"{kind}.json")["vectors"]
]


@pytest.mark.parametrize(("kind", "vector"), KIND_VECTORS)
def test_kind_vector(kind: str, vector: Any) -> None:
    key = AccountKey(bytes.fromhex(vector["seed_hex"]))
    assert key.public_key.hex() == vector["public_key_hex"]
    assert key.account_id == vector["account"]
    record = from_json(RECORD_TYPES[kind], vector["record"])
    assert to_json(record) == vector["record"]
    body = codec.encode_record(record)
    assert body.hex() == vector["body_hex"]
    assert codec.decode_record(RECORD_TYPES[kind], body, bytes_max=BODY_BYTES_MAX[kind]) == record
    to_sign = signing_input(kind, body)
    assert to_sign.hex() == vector["signing_input_hex"]
    signature = key.sign(to_sign)
    assert signature.hex() == vector["signature_hex"]
    assert verify(key.public_key, to_sign, signature)
    raw = seal(key, record).raw
    assert raw.hex() == vector["envelope_hex"]
    assert message_id(raw).hex() == vector["message_id_hex"]
    assert hashlib.sha256(raw).hexdigest() == vector["message_id_hex"]
    message = validate_message(raw, vector["now_ms"])
    assert message.record == record
    assert message.id.hex() == vector["message_id_hex"]


@pytest.mark.parametrize("kind", list(RECORD_TYPES))
def test_kind_file_names_its_domain_tag(kind: str) -> None:
    content = load(f"{kind}.json")
    assert content["kind"] == kind
    assert content["domain_tag"].encode("ascii") == DOMAIN_PREFIX + kind.encode("ascii")


@pytest.mark.parametrize("vector", vectors_of("codec.json", "valid"))
def test_codec_vector(vector: Any) -> None:
    value = untag_plain(vector["value"])
    data = codec.encode(value)
    assert data.hex() == vector["hex"]
    assert reference_encode(value) == data
    assert codec.decode(data, bytes_max=len(data)) == value


@pytest.mark.parametrize("vector", vectors_of("codec.json", "invalid"))
def test_invalid_codec_vector(vector: Any) -> None:
    with pytest.raises(DecodeError):
        codec.decode(bytes.fromhex(vector["hex"]), bytes_max=vector["bytes_max"])


@pytest.mark.parametrize("vector", vectors_of("ids.json", "accounts"))
def test_account_vector(vector: Any) -> None:
    key = AccountKey(bytes.fromhex(vector["seed_hex"]))
    assert key.public_key.hex() == vector["public_key_hex"]
    assert key.account_id == vector["account"]
    assert account_from_text(vector["account"]).hex() == vector["public_key_hex"]


@pytest.mark.parametrize("vector", vectors_of("ids.json", "cids"))
def test_cid_vector(vector: Any) -> None:
    cid = chunk_id(bytes.fromhex(vector["data_hex"]))
    assert cid.hex() == vector["cid_hex"]
    assert cid_to_text(cid) == vector["cid"]
    assert cid_from_text(vector["cid"]) == cid


@pytest.mark.parametrize("vector", vectors_of("invalid.json"))
def test_invalid_message_vector(vector: Any) -> None:
    with pytest.raises(Verdict) as caught:
        validate_message(bytes.fromhex(vector["envelope_hex"]), vector["now_ms"])
    assert type(caught.value) is VERDICTS[vector["verdict"]]


def test_every_rule_has_an_invalid_vector() -> None:
    rules = {text: verdict for verdict, text in validation_rules()}
    in_vectors = {vector["rule"]: vector["verdict"] for vector in load("invalid.json")["vectors"]}
    assert set(in_vectors) <= set(rules), "a vector names a rule that validate.py lacks"
    missing = set(rules) - set(in_vectors) - set(RULES_WITHOUT_VECTORS)
    assert not missing, f"add a case to tests/vectors/invalid_cases.py for: {sorted(missing)}"
    assert all(rules[rule] == verdict for rule, verdict in in_vectors.items())


def test_regenerating_gives_the_same_files() -> None:
    built = make_vectors.build()
    on_disk = {path.name for path in VECTORS_DIR.glob("*.json")}
    assert on_disk == set(built), "run: python -m tests.vectors.make_vectors"
    for name, text in built.items():
        assert (VECTORS_DIR / name).read_text(encoding="utf-8") == text, (
            f"tests/vectors/{name} differs from what the code makes now: an encoding changed? "
            "If on purpose, run python -m tests.vectors.make_vectors and update docs/protocol.md"
        )


def test_docs_quote_the_worked_example() -> None:
    """docs/protocol.md walks through the follow vector; its bytes must be today's."""
    docs = DOCS.read_text(encoding="utf-8").replace(" ", "").replace("\n", "")
    (follow,) = load("follow.json")["vectors"]
    for field in ("body_hex", "signing_input_hex", "signature_hex", "envelope_hex"):
        assert follow[field] in docs, f"docs/protocol.md does not show the follow {field}"
    for field in ("message_id_hex", "public_key_hex", "account"):
        assert follow[field] in docs, f"docs/protocol.md does not show the follow {field}"
    assert f"**Body**({len(follow['body_hex']) // 2}bytes)" in docs
    assert f"**Envelope**({len(follow['envelope_hex']) // 2}bytes)" in docs


def test_docs_quote_the_view_body_byte_by_byte() -> None:
    """docs/protocol.md section 3 takes a view body apart; its rows must join to the
    vector's bytes (the 32-byte fields shortened there come from the record)."""
    docs = DOCS.read_text(encoding="utf-8")
    section = docs[docs.index("### `view`: View") : docs.index("### `offer`: Offer")]
    first, rewatch = load("view.json")["vectors"]
    record = first["record"]
    rows = re.findall(r"^\| `([0-9a-f ]+)`(?: \+ 32 bytes `(\w+)…(\w+)`)? \|", section, re.M)
    body = ""
    for head, start, end in rows:
        body += head.replace(" ", "")
        if start:
            [field] = [v for v in record.values() if isinstance(v, str) and v.startswith(start)]
            assert field.endswith(end)
            body += field
    assert body == first["body_hex"]
    assert f"{len(body) // 2}-byte body" in section
    assert rewatch["body_hex"].endswith("ce000927c0")
