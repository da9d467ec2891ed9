"""Merkle audit paths and codec round trips of the ledger's records (Hypothesis)."""

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.certs
import protocol.orders
from protocol import codec
from protocol.certs import (
    BATCH_MAX,
    CERTIFICATE_BYTES_MAX,
    HASH_LEN,
    PATH_MAX,
    VALIDATORS_MAX,
    CertificateWire,
    Member,
    Vote,
    leaf_hash,
    merkle_tree,
    root_from_path,
)
from protocol.genesis import (
    GENESIS_BYTES_MAX,
    Allocation,
    Genesis,
    committee_of,
    decode_genesis,
    encode_genesis,
    network_id,
)
from protocol.orders import (
    AMOUNT_MAX,
    ORDER_BYTES_MAX,
    SEQ_MAX,
    SIGNED_ORDER_BYTES_MAX,
    SYMBOL_RE,
    CreateToken,
    Leg,
    Order,
    SignedOrderWire,
    Swap,
    Transfer,
    sign_order,
    verify_order,
)
from protocol.validate import EPOCH_MS, FUTURE_MS_MAX
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    MALLORY,
    NOW_MS,
    Net,
)

NETWORK = Net().network


# ---------------------------------------------------------------------------------------
# Merkle trees: every audit path leads to the root, and nothing else does.


def reference_root(ids: Sequence[bytes]) -> bytes:
    """RFC 6962's MTH, written from its definition (docs/protocol.md section 13)."""
    if len(ids) == 1:
        return hashlib.sha256(b"\x00" + ids[0]).digest()
    k = 1 << ((len(ids) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + reference_root(ids[:k]) + reference_root(ids[k:])).digest()


def sides(index: int, count: int) -> list[bool]:
    """Whether the leaf goes left at each level, from the root down."""
    out = []
    while count > 1:
        k = 1 << ((count - 1).bit_length() - 1)
        out.append(index < k)
        index, count = (index, k) if index < k else (index - k, count - k)
    return out


LEAF_COUNTS = st.one_of(st.integers(1, 40), st.integers(1, BATCH_MAX))


@settings(max_examples=60, deadline=None)
@given(count=LEAF_COUNTS, data=st.data())
def test_every_audit_path_leads_to_the_root(count: int, data: st.DataObject) -> None:
    ids = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(count)]
    root, paths = merkle_tree(ids)
    assert root == reference_root(ids)
    for i in {0, count - 1, *data.draw(st.lists(st.integers(0, count - 1), max_size=8))}:
        assert len(paths[i]) == len(sides(i, count)) <= PATH_MAX
        assert root_from_path(ids[i], i, count, paths[i]) == root


@settings(max_examples=80, deadline=None)
@given(count=LEAF_COUNTS, data=st.data())
def test_a_wrong_index_count_path_or_leaf_fails(count: int, data: st.DataObject) -> None:
    ids = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(count)]
    root, paths = merkle_tree(ids)
    i = data.draw(st.integers(0, count - 1), label="index")
    path = paths[i]
    other_leaf = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != ids[i]))
    assert root_from_path(other_leaf, i, count, path) != root
    assert root_from_path(leaf_hash(ids[i]), i, count, path) != root, "an inner value as a leaf"
    if count > 1:
        j = data.draw(st.integers(0, count - 1).filter(lambda j: j != i), label="wrong index")
        assert root_from_path(ids[i], j, count, path) != root
    assert root_from_path(ids[i], count, count, path) is None
    assert root_from_path(ids[i], i + count, count, path) is None
    # Index and count are not signed: only the shape they give the path is checked. Another
    # count that puts the leaf at the same place in the same shape leads to the same root.
    other_count = data.draw(st.integers(i + 1, BATCH_MAX).filter(lambda n: n != count))
    same_shape = sides(i, other_count) == sides(i, count)
    assert (root_from_path(ids[i], i, other_count, path) == root) == same_shape
    if path:
        at = data.draw(st.integers(0, len(path) - 1), label="entry")
        bit = data.draw(st.integers(0, 255), label="bit")
        entry = bytearray(path[at])
        entry[bit // 8] ^= 1 << (bit % 8)
        bad = (*path[:at], bytes(entry), *path[at + 1 :])
        assert root_from_path(ids[i], i, count, bad) != root
        assert root_from_path(ids[i], i, count, path[:-1]) is None
    assert root_from_path(ids[i], i, count, (*path, bytes(HASH_LEN))) is None


def test_a_one_leaf_tree_is_its_leaf_hash() -> None:
    root, paths = merkle_tree([bytes(32)])
    assert root == leaf_hash(bytes(32)) == hashlib.sha256(bytes(33)).digest() and paths == [()]


# ---------------------------------------------------------------------------------------
# Codecs: every record within its limits goes to bytes and back unchanged.


def blob(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


def text(bytes_max: int, bytes_min: int = 0) -> st.SearchStrategy[str]:
    return st.text(max_size=bytes_max).filter(
        lambda s: bytes_min <= len(s.encode("utf-8")) <= bytes_max
    )


U64 = st.integers(0, 2**64 - 1)
AMOUNTS = st.integers(1, AMOUNT_MAX)
SEQS = st.integers(0, SEQ_MAX)
TRANSFERS = st.builds(
    Transfer, blob(32), U64, blob(32), SEQS, blob(32), blob(32), AMOUNTS, st.binary(max_size=64)
)
CREATE_TOKENS = st.builds(
    CreateToken,
    blob(32),
    U64,
    blob(32),
    SEQS,
    text(12, 1),
    text(64),
    AMOUNTS,
    st.integers(0, 18),
    text(512),
)
LEGS = st.builds(Leg, blob(32), SEQS, blob(32), AMOUNTS)
SWAPS = st.builds(Swap, blob(32), U64, LEGS, LEGS, st.binary(max_size=32))
VOTE_RECORDS = st.builds(
    Vote,
    st.integers(0, VALIDATORS_MAX - 1),
    blob(32),
    blob(64),
    st.integers(0, BATCH_MAX - 1),
    st.integers(1, BATCH_MAX),
    st.lists(st.binary(max_size=32), max_size=PATH_MAX).map(tuple),
)
SIGS = st.lists(st.binary(max_size=64), min_size=1, max_size=2).map(tuple)
KINDS = text(16, 1)
WIRES = st.builds(
    SignedOrderWire, st.integers(0, 255), KINDS, st.binary(min_size=1, max_size=1024), SIGS
)
CERT_WIRES = st.builds(
    CertificateWire,
    KINDS,
    st.binary(min_size=1, max_size=1024),
    SIGS,
    st.integers(0, 255),
    st.lists(VOTE_RECORDS, min_size=1, max_size=5).map(tuple),
)
MEMBERS = st.builds(Member, blob(32), st.integers(1, 2**32))
ALLOCATIONS = st.builds(Allocation, blob(32), st.integers(1, 2**40))
GENESES = st.builds(
    Genesis,
    text(64, 1),
    U64,
    st.lists(MEMBERS, min_size=1, max_size=6, unique_by=lambda m: m.key).map(tuple),
    st.from_regex(SYMBOL_RE, fullmatch=True),
    text(64),
    st.integers(0, 18),
    text(64),
    st.lists(ALLOCATIONS, min_size=1, max_size=6, unique_by=lambda a: a.account).map(tuple),
)
CODECS: list[tuple[str, st.SearchStrategy[Any], int]] = [
    ("transfer", TRANSFERS, ORDER_BYTES_MAX),
    ("create_token", CREATE_TOKENS, ORDER_BYTES_MAX),
    ("swap", SWAPS, ORDER_BYTES_MAX),
    ("vote", VOTE_RECORDS, protocol.certs.VOTE_BYTES_MAX),
    ("signed order", WIRES, SIGNED_ORDER_BYTES_MAX),
    ("certificate", CERT_WIRES, CERTIFICATE_BYTES_MAX),
    ("genesis", GENESES, GENESIS_BYTES_MAX),
]


@pytest.mark.parametrize(
    ("strategy", "bytes_max"), [pytest.param(s, n, id=name) for name, s, n in CODECS]
)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_codec_round_trip(
    strategy: st.SearchStrategy[Any], bytes_max: int, data: st.DataObject
) -> None:
    record = data.draw(strategy)
    raw = codec.encode_record(record)
    assert len(raw) <= bytes_max
    decoded = codec.decode_record(type(record), raw, bytes_max=bytes_max)
    assert decoded == record
    assert codec.encode_record(decoded) == raw


@settings(max_examples=40, deadline=None)
@given(GENESES)
def test_genesis_round_trip_through_its_checks(genesis: Genesis) -> None:
    raw = encode_genesis(genesis)
    assert decode_genesis(raw) == genesis
    assert committee_of(genesis).network == network_id(raw)


ACCOUNT_KEYS = [ALICE, BOB, CAROL, MALLORY]
VALID_TIMES = st.integers(EPOCH_MS, NOW_MS + FUTURE_MS_MAX)


@st.composite
def valid_orders(draw: st.DrawFn) -> tuple[Order, list[Any]]:
    """An order that every rule accepts at NOW_MS on NETWORK, with its owners' keys."""
    first, second = draw(st.permutations(ACCOUNT_KEYS))[:2]
    kind = draw(st.sampled_from(["transfer", "create_token", "swap"]))
    created_ms = draw(VALID_TIMES)
    if kind == "transfer":
        order: Order = Transfer(
            NETWORK,
            created_ms,
            first.public_key,
            draw(SEQS),
            draw(blob(32)),
            second.public_key,
            draw(AMOUNTS),
            draw(st.binary(max_size=64)),
        )
        return order, [first]
    if kind == "create_token":
        printable = st.characters(
            exclude_categories=("Cc", "Cs"),
            exclude_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
        )
        order = CreateToken(
            NETWORK,
            created_ms,
            first.public_key,
            draw(SEQS),
            draw(st.from_regex(SYMBOL_RE, fullmatch=True)),
            draw(st.text(printable, max_size=16)),
            draw(AMOUNTS),
            draw(st.integers(0, 18)),
            draw(st.text(printable, max_size=64)),
        )
        return order, [first]
    tokens = draw(st.lists(blob(32), min_size=2, max_size=2, unique=True))
    a = Leg(first.public_key, draw(SEQS), tokens[0], draw(AMOUNTS))
    b = Leg(second.public_key, draw(SEQS), tokens[1], draw(AMOUNTS))
    offer = draw(st.sampled_from([b"", bytes(32), hashlib.sha256(b"offer").digest()]))
    return Swap(NETWORK, created_ms, a, b, offer), [first, second]


@settings(max_examples=60, deadline=None)
@given(valid_orders())
def test_a_signed_order_round_trips_through_its_checks(drawn: tuple[Order, list[Any]]) -> None:
    order, keys = drawn
    made = sign_order(order, keys)
    received = verify_order(made.raw, NETWORK, NOW_MS)
    assert received.order == order and received.id == made.id and received.raw == made.raw
    assert protocol.orders.decode_signed_order(made.raw) == SignedOrderWire(
        1, order.KIND, made.order_bytes, made.sigs
    )
