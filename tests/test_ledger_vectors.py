"""tests/vectors/ledger.json against the code: every byte of the ledger's vectors.

Each check rebuilds a value from what the file gives (seeds, records, order ids) the way
docs/protocol.md section 13 says, so a change of encoding, signing input, id, Merkle tree or
certificate fails here. A deliberate change regenerates the file
(``python -m tests.vectors.make_vectors``) and updates the document.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from protocol import codec
from protocol.accounts import AccountKey, verify
from protocol.certs import (
    CERTIFICATE_BYTES_MAX,
    VOTE_DOMAIN,
    CertificateWire,
    VerifiedRoots,
    Vote,
    is_certificate,
    merkle_tree,
    root_from_path,
    verify_certificate,
)
from protocol.genesis import GENESIS_DOMAIN, Genesis, committee_of, decode_genesis
from protocol.orders import ORDER_DOMAIN, ORDER_TYPES, verify_order
from tests.vectors.ledger_vectors import ledger_file
from tests.vectors.make_vectors import VECTORS_DIR, from_json

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
VECTORS: dict[str, Any] = json.loads((VECTORS_DIR / "ledger.json").read_text(encoding="utf-8"))
NOW_MS: int = VECTORS["now_ms"]


def genesis() -> Genesis:
    record: Genesis = from_json(Genesis, VECTORS["genesis"]["record"])
    return record


def network() -> bytes:
    return bytes.fromhex(VECTORS["genesis"]["network_id_hex"])


def test_the_file_is_what_the_code_makes() -> None:
    text = json.dumps(ledger_file(), indent=2, ensure_ascii=False) + "\n"
    assert (VECTORS_DIR / "ledger.json").read_text(encoding="utf-8") == text, (
        "run: python -m tests.vectors.make_vectors, and update docs/protocol.md section 13"
    )


@pytest.mark.parametrize("vector", VECTORS["keys"], ids=lambda v: v["name"])
def test_key_vector(vector: Any) -> None:
    key = AccountKey(bytes.fromhex(vector["seed_hex"]))
    assert key.public_key.hex() == vector["public_key_hex"]
    assert key.account_id == vector["account"]


def test_genesis_vector() -> None:
    vector = VECTORS["genesis"]
    raw = bytes.fromhex(vector["genesis_hex"])
    assert codec.encode_record(genesis()) == raw
    assert decode_genesis(raw) == genesis()
    assert hashlib.sha256(GENESIS_DOMAIN + raw).hexdigest() == vector["network_id_hex"]
    committee = committee_of(genesis())
    assert committee.network == network()
    assert (committee.total, committee.faulty_max, committee.quorum) == (
        vector["total_weight"],
        vector["faulty_max"],
        vector["quorum"],
    )


@pytest.mark.parametrize("vector", VECTORS["orders"], ids=lambda v: v["name"])
def test_order_vector(vector: Any) -> None:
    kind = vector["kind"]
    order = from_json(ORDER_TYPES[kind], vector["record"])
    body = codec.encode_record(order)
    assert body.hex() == vector["order_hex"]
    to_sign = ORDER_DOMAIN + kind.encode("ascii") + b"\x00" + body
    assert to_sign.hex() == vector["signing_input_hex"]
    assert hashlib.sha256(to_sign).hexdigest() == vector["order_id_hex"]
    keys = {k["public_key_hex"]: k for k in VECTORS["keys"]}
    for signer, sig in zip(vector["signers"], vector["signatures_hex"], strict=True):
        key = AccountKey(bytes.fromhex(keys[signer]["seed_hex"]))
        assert key.sign(to_sign).hex() == sig
        assert verify(key.public_key, to_sign, bytes.fromhex(sig))
    wire = {
        "kind": kind,
        "order": body,
        "sigs": [bytes.fromhex(s) for s in vector["signatures_hex"]],
    }
    raw = codec.encode({**wire, "v": 1})
    assert raw.hex() == vector["signed_order_hex"]
    received = verify_order(raw, network(), NOW_MS)
    assert received.order == order and received.id.hex() == vector["order_id_hex"]


def test_vote_batch_vector() -> None:
    batch = VECTORS["vote_batch"]
    ids = [bytes.fromhex(h) for h in batch["order_ids_hex"]]
    assert ids == [bytes.fromhex(o["order_id_hex"]) for o in VECTORS["orders"]]
    root, paths = merkle_tree(ids)
    assert root.hex() == batch["root_hex"]
    to_sign = VOTE_DOMAIN + network() + root
    assert to_sign.hex() == batch["signing_input_hex"]
    validator = VECTORS["keys"][batch["validator"]]
    key = AccountKey(bytes.fromhex(validator["seed_hex"]))
    assert key.sign(to_sign).hex() == batch["signature_hex"]
    for i, (oid, path, vector) in enumerate(zip(ids, paths, batch["votes"], strict=True)):
        vote = Vote(batch["validator"], root, key.sign(to_sign), i, len(ids), path)
        assert from_json(Vote, vector["record"]) == vote
        assert codec.encode_record(vote).hex() == vector["vote_hex"]
        assert root_from_path(oid, i, len(ids), path) == root


@pytest.mark.parametrize("vector", VECTORS["merkle"], ids=lambda v: f"{v['count']} leaves")
def test_merkle_vector(vector: Any) -> None:
    ids = [bytes.fromhex(h) for h in vector["order_ids_hex"]]
    assert ids == [hashlib.sha256(b"order %d" % i).digest() for i in range(vector["count"])]
    root, paths = merkle_tree(ids)
    assert root.hex() == vector["root_hex"]
    assert [[e.hex() for e in path] for path in paths] == vector["paths_hex"]
    for i, path in enumerate(paths):
        assert root_from_path(ids[i], i, len(ids), path) == root


def test_certificate_vector() -> None:
    vector = VECTORS["certificate"]
    raw = bytes.fromhex(vector["certificate_hex"])
    assert is_certificate(raw)
    cert = verify_certificate(raw, committee_of(genesis()), VerifiedRoots(), NOW_MS)
    assert cert.order_id.hex() == vector["order_id_hex"] == VECTORS["orders"][0]["order_id_hex"]
    assert sorted(cert.signers) == vector["signers"]
    wire = codec.decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
    tip = VECTORS["orders"][0]
    assert wire.order.hex() == tip["order_hex"]
    assert [s.hex() for s in wire.sigs] == tip["signatures_hex"]
    assert [v.index for v in wire.votes] == [0, 0, 0] and {v.count for v in wire.votes} == {3}


def test_docs_quote_the_ledger_vectors() -> None:
    """docs/protocol.md section 13 walks through the tip; its bytes must be today's."""
    docs = DOCS.read_text(encoding="utf-8")
    section = docs[docs.index("## 13. Ledger") :].replace(" ", "").replace("\n", "")
    tip = VECTORS["orders"][0]
    for field in ("order_hex", "signing_input_hex", "order_id_hex", "signed_order_hex"):
        assert tip[field] in section, f"docs/protocol.md section 13 lacks the tip's {field}"
    assert VECTORS["genesis"]["network_id_hex"] in section
    assert VECTORS["vote_batch"]["root_hex"] in section
    for vote in VECTORS["vote_batch"]["votes"]:
        assert vote["vote_hex"] in section
    assert VECTORS["merkle"][2]["root_hex"] in section
