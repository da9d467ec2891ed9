"""The ledger's test vectors, tests/vectors/ledger.json (docs/protocol.md section 13).

Made by ``python -m tests.vectors.make_vectors`` with the other vector files, from fixed seeds
and times, so the output depends only on this file, tests/vectors/samples.py and protocol/.
The story: a four-validator genesis gives ALICE and BOB platform tokens; ALICE tips BOB's
video (a transfer), BOB mints a fan token (a create-token), and the two swap platform tokens
for fan tokens. Validator 0 votes for the three orders in one batch; validators 0, 1 and 2
certify the transfer. Merkle trees of 1 to 5 leaves show every shape of audit path.
"""

import dataclasses
import hashlib
from typing import Any

from protocol import codec
from protocol.accounts import AccountKey
from protocol.certs import Member, Vote, certify, merkle_tree, sign_votes
from protocol.genesis import Allocation, Genesis, committee_of, encode_genesis
from protocol.orders import (
    PLATFORM_TOKEN,
    CreateToken,
    Leg,
    Order,
    SignedOrder,
    Swap,
    Transfer,
    order_signing_input,
    sign_order,
)
from tests.vectors.samples import ALICE, BOB, CREATED_MS, MANIFEST_ID, NOW_MS

VALIDATOR_KEYS = [AccountKey(bytes([0xA0 + i]) * 32) for i in range(4)]
"""Validator i's seed is 32 bytes of 0xa0 + i."""
MERKLE_COUNTS = (1, 2, 3, 4, 5)


def record_json(value: Any) -> Any:
    """A record as JSON: fields in canonical order, bytes as hex, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = sorted((f.name for f in dataclasses.fields(value)), key=str.encode)
        return {name: record_json(getattr(value, name)) for name in names}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [record_json(item) for item in value]
    return value


def sample_genesis() -> Genesis:
    return Genesis(
        name="toktok-vectors",
        created_ms=CREATED_MS - 86_400_000,
        validators=tuple(Member(k.public_key, 1) for k in VALIDATOR_KEYS),
        symbol="TOK",
        token_name="toktok",
        decimals=2,
        metadata="",
        allocations=(
            Allocation(ALICE.public_key, 1_000_000),
            Allocation(BOB.public_key, 250_000),
        ),
    )


def sample_orders(network: bytes) -> list[tuple[str, SignedOrder, list[AccountKey]]]:
    """(name, signed order, its owners' keys): a tip, a new token, a swap for it."""
    tip = Transfer(
        network=network,
        created_ms=CREATED_MS,
        sender=ALICE.public_key,
        seq=0,
        token=PLATFORM_TOKEN,
        recipient=BOB.public_key,
        amount=2500,
        memo=MANIFEST_ID,
    )
    mint = CreateToken(
        network=network,
        created_ms=CREATED_MS + 1000,
        creator=BOB.public_key,
        seq=0,
        symbol="BOBFAN",
        name="Bob's harbour fans",
        supply=1000,
        decimals=0,
        metadata='{"video":"sunrise"}',
    )
    minted = sign_order(mint, [BOB])
    deal = Swap(
        network=network,
        created_ms=CREATED_MS + 2000,
        a=Leg(account=ALICE.public_key, seq=1, token=PLATFORM_TOKEN, amount=500),
        b=Leg(account=BOB.public_key, seq=1, token=minted.id, amount=10),
        offer=b"",
    )
    return [
        ("alice tips bob", sign_order(tip, [ALICE]), [ALICE]),
        ("bob creates a fan token", minted, [BOB]),
        (
            "alice swaps platform tokens for bob's fan tokens",
            sign_order(deal, [ALICE, BOB]),
            [ALICE, BOB],
        ),
    ]


def key_json(name: str, key: AccountKey) -> dict[str, Any]:
    return {
        "name": name,
        "seed_hex": key.seed.hex(),
        "public_key_hex": key.public_key.hex(),
        "account": key.account_id,
    }


def order_json(name: str, signed: SignedOrder, keys: list[AccountKey]) -> dict[str, Any]:
    order: Order = signed.order
    return {
        "name": name,
        "kind": signed.kind,
        "signers": [key.public_key.hex() for key in keys],
        "record": record_json(order),
        "order_hex": signed.order_bytes.hex(),
        "signing_input_hex": order_signing_input(signed.kind, signed.order_bytes).hex(),
        "order_id_hex": signed.id.hex(),
        "signatures_hex": [sig.hex() for sig in signed.sigs],
        "signed_order_hex": signed.raw.hex(),
    }


def vote_json(vote: Vote) -> dict[str, Any]:
    return {"record": record_json(vote), "vote_hex": codec.encode_record(vote).hex()}


def merkle_json(count: int) -> dict[str, Any]:
    ids = [hashlib.sha256(b"order %d" % i).digest() for i in range(count)]
    root, paths = merkle_tree(ids)
    return {
        "count": count,
        "order_ids_hex": [oid.hex() for oid in ids],
        "root_hex": root.hex(),
        "paths_hex": [[entry.hex() for entry in path] for path in paths],
    }


def ledger_file() -> dict[str, Any]:
    genesis = sample_genesis()
    genesis_raw = encode_genesis(genesis)
    committee = committee_of(genesis)
    orders = sample_orders(committee.network)
    ids = [signed.id for _, signed, _ in orders]
    batches = [sign_votes(committee, i, key, ids) for i, key in enumerate(VALIDATOR_KEYS)]
    tip = orders[0][1]
    certificate = certify(committee, tip, [batch[0] for batch in batches[:3]])
    first = batches[0]
    return {
        "description": "The ledger (docs/protocol.md section 13): keys, a genesis and its "
        "network id, three signed orders, validator 0's vote for the three in one batch, a "
        "certificate of the first by validators 0, 1 and 2, and Merkle trees of 1 to 5 leaves "
        "(order ids SHA-256 of 'order <i>'). Valid at now_ms.",
        "now_ms": NOW_MS,
        "keys": [
            *(key_json(f"validator {i}", k) for i, k in enumerate(VALIDATOR_KEYS)),
            key_json("alice", ALICE),
            key_json("bob", BOB),
        ],
        "genesis": {
            "record": record_json(genesis),
            "genesis_hex": genesis_raw.hex(),
            "network_id_hex": committee.network.hex(),
            "total_weight": committee.total,
            "faulty_max": committee.faulty_max,
            "quorum": committee.quorum,
        },
        "orders": [order_json(name, signed, keys) for name, signed, keys in orders],
        "vote_batch": {
            "validator": 0,
            "order_ids_hex": [oid.hex() for oid in ids],
            "root_hex": first[0].root.hex(),
            "signing_input_hex": committee.vote_signing_input(first[0].root).hex(),
            "signature_hex": first[0].sig.hex(),
            "votes": [vote_json(vote) for vote in first],
        },
        "certificate": {
            "name": "the tip, certified by validators 0, 1 and 2",
            "order_id_hex": certificate.order_id.hex(),
            "signers": sorted(certificate.signers),
            "certificate_hex": certificate.raw.hex(),
        },
        "merkle": [merkle_json(count) for count in MERKLE_COUNTS],
    }
