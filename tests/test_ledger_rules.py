"""Ledger wire rules: a ``test_invalid_*`` case for every rule of protocol/orders.py and
protocol/certs.py, valid orders and certificates, and the byte limits.

Each case starts from valid bytes and breaks one rule, named by the exact text of its
``# [REJECT]`` comment; the meta-tests fail when a rule has no case, a case names no rule, or
docs/protocol.md section 13 misses a rule.
"""

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import protocol.certs
import protocol.orders
from protocol import codec
from protocol.certs import (
    BATCH_MAX,
    CERTIFICATE_BYTES_MAX,
    CERTIFICATE_FIRST_KEY,
    PATH_MAX,
    VALIDATORS_MAX,
    CertificateWire,
    Committee,
    VerifiedRoots,
    Vote,
    certify,
    is_certificate,
    sign_votes,
    verify_certificate,
)
from protocol.errors import Ignore, Reject, Verdict
from protocol.orders import (
    AMOUNT_MAX,
    ORDER_BYTES_MAX,
    PLATFORM_TOKEN,
    SEQ_MAX,
    SIGNED_ORDER_BYTES_MAX,
    CreateToken,
    Leg,
    Order,
    SignedOrder,
    SignedOrderWire,
    Swap,
    Transfer,
    cosign,
    open_proposal,
    order_id,
    order_signing_input,
    propose_swap,
    sign_order,
    verify_order,
)
from protocol.validate import EPOCH_MS, FUTURE_MS_MAX
from tests.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    CREATED_MS,
    DAVE,
    MALLORY,
    NOW_MS,
    VALIDATOR_KEYS,
    Net,
    make_genesis,
)
from tests.vectors.samples import sample_follow, sealed

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
RULE_MODULES = {"orders": protocol.orders, "certs": protocol.certs}


def ledger_rules() -> list[tuple[str, str, str]]:
    """(module, verdict, text) of every rule comment in protocol/orders.py and certs.py."""
    pattern = re.compile(r"^\s*# \[(REJECT|IGNORE)\] (.+?)\s*$", re.MULTILINE)
    return [
        (name, m.group(1).lower(), m.group(2))
        for name, module in RULE_MODULES.items()
        for m in pattern.finditer(Path(str(module.__file__)).read_text(encoding="utf-8"))
    ]


R_WIRE = "The signed order is the canonical encoding of a SignedOrderWire."
R_KIND = "The kind is an order kind."
R_ORDER = "The order is the canonical encoding of its kind's record."
R_NETWORK = "The order is for this network."
R_SELF = "A transfer does not send to its own sender."
R_SYMBOL = "The symbol is an upper-case letter then up to 11 letters or digits."
R_CONTROL = "The name and metadata hold no control characters."
R_SWAP_ACCOUNTS = "A swap's legs are two different accounts."
R_SWAP_TOKENS = "A swap's legs give two different tokens."
R_OFFER = "A swap's offer field is empty or an offer id."
R_VERSION = "The version is one this node speaks."
R_SIG_COUNT = "There is one signature per owner."
R_SIGS = "Every owner's signature verifies over the order's signing input."
R_PROPOSAL = "A proposal is a swap signed by its a leg's account alone."
R_MEMBER = "The vote's validator is a committee member."
R_PATH_HASH = "Every path entry is a 32-byte hash."
R_PATH = "The path leads from the order id to the vote's root."
R_VOTE_SIG = "The validator's signature over the root verifies."
R_CERT = "The certificate is the canonical encoding of a CertificateWire."
R_CERT_SIGS = "There is one owner signature per owner."
R_SORTED = "Votes are sorted by validator index, one per validator."
R_QUORUM = "The voters hold a quorum of the committee's weight."
R_FUTURE = "The record is not from more than FUTURE_MS_MAX in the future."
R_EPOCH = "The record is not older than the protocol epoch."
"""The last two are protocol/validate.py's time rules, which orders share."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One way to break one rule, and the verdict it must earn."""

    name: str
    module: str
    """Where the rule's comment is: orders, certs, or validate (the shared time rules)."""
    rule: str
    verdict: type[Verdict]
    match: str
    run: Callable[[], object]


# ---------------------------------------------------------------------------------------
# Building bytes that break rules.

NET = Net()
NETWORK = NET.network
FAN = hashlib.sha256(b"a fan token").digest()
TRANSFER = Transfer(
    NETWORK, CREATED_MS, ALICE.public_key, 0, PLATFORM_TOKEN, BOB.public_key, 10, b""
)
CREATE = CreateToken(NETWORK, CREATED_MS, CAROL.public_key, 0, "FAN", "Fan", 100, 0, "")
SWAP = Swap(
    NETWORK,
    CREATED_MS,
    Leg(ALICE.public_key, 0, PLATFORM_TOKEN, 10),
    Leg(BOB.public_key, 0, FAN, 5),
    b"",
)
KEYS = {k.public_key: k for k in (ALICE, BOB, CAROL, MALLORY, DAVE)}


def wire(kind: str, order: bytes, sigs: Sequence[bytes], **fields: Any) -> bytes:
    """Signed-order bytes with any fields, in or out of their limits."""
    obj: dict[str, Any] = {"v": 1, "kind": kind, "order": order, "sigs": list(sigs)}
    obj.update(fields)
    return codec.encode(obj)


def signed(
    order: Order | bytes, signers: Sequence[Any] = (), kind: str = "", **fields: Any
) -> bytes:
    """``order`` (a record, which may break its limits, or bytes) signed under ``kind`` by
    ``signers`` (its owners when left out)."""
    if isinstance(order, bytes):
        body = order
    else:
        body = codec.encode_record(order)
        kind = kind or order.KIND
        signers = signers or [KEYS[owner] for owner in protocol.orders.owners(order)]
    sigs = [k.sign(order_signing_input(kind, body)) for k in signers]
    return wire(kind, body, sigs, **fields)


def transfer(**changes: Any) -> Transfer:
    return dataclasses.replace(TRANSFER, **changes)


def create(**changes: Any) -> CreateToken:
    return dataclasses.replace(CREATE, **changes)


def swap(**changes: Any) -> Swap:
    return dataclasses.replace(SWAP, **changes)


def check_order(raw: bytes) -> Callable[[], object]:
    return lambda: verify_order(raw, NETWORK, NOW_MS)


def _wire_cases() -> Iterator[Case]:
    good = signed(TRANSFER)
    for name, raw, match in [
        ("empty", b"", "malformed msgpack"),
        ("not-a-map", codec.encode([1]), "expected a map"),
        ("trailing-byte", good + b"\x00", "trailing bytes"),
        ("version-uint8", good[:-1] + b"\xcc\x01", "not the canonical encoding"),
        ("unknown-field", signed(TRANSFER, extra=1), "unknown field 'extra'"),
        ("no-signature", wire("transfer", codec.encode_record(TRANSFER), []), "at least 1"),
        ("three-signatures", wire("transfer", b"\x80", [bytes(64)] * 3), "3 items exceeds"),
        ("signature-65-bytes", wire("transfer", b"\x80", [bytes(65)]), "65 bytes exceeds"),
        ("order-empty", wire("transfer", b"", [bytes(64)]), "0 bytes, at least 1"),
        ("order-1025-bytes", wire("transfer", bytes(1025), [bytes(64)]), "1025 bytes exceeds"),
        ("kind-17-bytes", wire("k" * 17, b"\x80", [bytes(64)]), "17 bytes exceeds"),
        ("version-256", signed(TRANSFER, v=256), r"256 outside \[0, 255\]"),
        ("too-big", bytes(SIGNED_ORDER_BYTES_MAX + 1), "exceeds the limit"),
    ]:
        yield Case(
            f"wire-{name}",
            "orders",
            R_WIRE,
            Reject,
            "malformed signed order: .*" + match,
            check_order(raw),
        )
    for version in (0, 2, 255):
        yield Case(
            f"wire-version-{version}",
            "orders",
            R_VERSION,
            Reject,
            f"signed order version {version} is not 1",
            check_order(signed(TRANSFER, v=version)),
        )
    for kind in ("Transfer", "mint", "transfer\x00", "vote"):
        body = codec.encode_record(TRANSFER)
        yield Case(
            f"kind-{kind!r}",
            "orders",
            R_KIND,
            Reject,
            re.escape(f"unknown order kind {kind!r}"),
            check_order(signed(body, [ALICE], kind=kind)),
        )


UNSORTED_TRANSFER = b"\x88" + b"".join(
    codec.encode(name) + codec.encode(value)
    for name, value in sorted(codec.record_to_obj(TRANSFER).items(), reverse=True)
)
"""TRANSFER's fields in reverse order: a map that is not canonical."""


def _order_record_cases() -> Iterator[Case]:
    obj = codec.record_to_obj(TRANSFER)
    for name, raw, match in [
        ("amount-0", signed(transfer(amount=0)), r"amount: 0 outside \[1,"),
        ("amount-2^63", signed(transfer(amount=AMOUNT_MAX + 1)), "amount: 9223372036854775808"),
        ("seq-2^63", signed(transfer(seq=SEQ_MAX + 1)), "seq: 9223372036854775808"),
        ("memo-65-bytes", signed(transfer(memo=bytes(65))), "memo: 65 bytes exceeds"),
        ("sender-31-bytes", signed(transfer(sender=bytes(31)), [ALICE]), "sender: 31 bytes"),
        ("network-31-bytes", signed(transfer(network=bytes(31))), "network: 31 bytes"),
        ("token-33-bytes", signed(transfer(token=bytes(33))), "token: 33 bytes"),
        (
            "extra-field",
            signed(codec.encode({**obj, "fee": 1}), [ALICE], kind="transfer"),
            "unknown field 'fee'",
        ),
        (
            "create-token-as-transfer",
            signed(codec.encode_record(CREATE), [CAROL], kind="transfer"),
            "unknown field",
        ),
        (
            "unsorted-keys",
            signed(UNSORTED_TRANSFER, [ALICE], kind="transfer"),
            "not sorted",
        ),
        ("symbol-13-bytes", signed(create(symbol="A" * 13)), "symbol: 13 bytes exceeds"),
        ("symbol-empty", signed(create(symbol="")), "symbol: 0 bytes"),
        ("decimals-19", signed(create(decimals=19)), r"decimals: 19 outside \[0, 18\]"),
        ("supply-0", signed(create(supply=0)), r"supply: 0 outside"),
        ("metadata-513-bytes", signed(create(metadata="é" * 256 + "x")), "metadata: 513 bytes"),
        ("name-65-bytes", signed(create(name="n" * 65)), "name: 65 bytes exceeds"),
        ("offer-33-bytes", signed(swap(offer=bytes(33))), "offer: 33 bytes exceeds"),
        (
            "leg-amount-0",
            signed(swap(b=Leg(BOB.public_key, 0, FAN, 0))),
            r"Swap\.b\.amount: 0 outside",
        ),
    ]:
        yield Case(
            f"order-{name}",
            "orders",
            R_ORDER,
            Reject,
            "malformed .* order: .*" + match,
            check_order(raw),
        )
    samples: list[tuple[str, Order]] = [
        ("transfer", TRANSFER),
        ("create-token", CREATE),
        ("swap", SWAP),
    ]
    for name, order in samples:
        other = dataclasses.replace(order, network=hashlib.sha256(b"another genesis").digest())
        yield Case(
            f"{name}-other-network",
            "orders",
            R_NETWORK,
            Reject,
            "order is for another network",
            check_order(signed(other)),
        )
        yield Case(
            f"{name}-from-the-future",
            "validate",
            R_FUTURE,
            Ignore,
            f"created {FUTURE_MS_MAX + 1} ms in the future",
            check_order(signed(dataclasses.replace(order, created_ms=NOW_MS + FUTURE_MS_MAX + 1))),
        )
        yield Case(
            f"{name}-before-the-epoch",
            "validate",
            R_EPOCH,
            Reject,
            "before the protocol epoch",
            check_order(signed(dataclasses.replace(order, created_ms=EPOCH_MS - 1))),
        )


def _order_field_cases() -> Iterator[Case]:
    yield Case(
        "transfer-to-self",
        "orders",
        R_SELF,
        Reject,
        "a transfer to oneself",
        check_order(signed(transfer(recipient=ALICE.public_key))),
    )
    for symbol in ("fan", "Fan", "1FAN", "F-N", "FAN ", "ÉCU", "_"):
        yield Case(
            f"symbol-{symbol!r}",
            "orders",
            R_SYMBOL,
            Reject,
            "is not A-Z then A-Z0-9",
            check_order(signed(create(symbol=symbol))),
        )
    for what, text in [
        ("name", "a\x00b"),
        ("name", "tab\there"),
        ("name", "\x7f"),
        ("name", "c1 \x85"),
        ("metadata", "line\nbreak"),
        ("metadata", "\x9f"),
        ("name", "rtl \u202e override"),
        ("metadata", "isolate \u2066"),
    ]:
        yield Case(
            f"{what}-control-{text!r}",
            "orders",
            R_CONTROL,
            Reject,
            f"token {what} holds control characters",
            check_order(signed(create(**{what: text}))),
        )
    yield Case(
        "swap-with-itself",
        "orders",
        R_SWAP_ACCOUNTS,
        Reject,
        "a swap between an account and itself",
        check_order(signed(swap(b=Leg(ALICE.public_key, 1, FAN, 5)), [ALICE, ALICE])),
    )
    yield Case(
        "swap-same-token",
        "orders",
        R_SWAP_TOKENS,
        Reject,
        "a swap of a token for itself",
        check_order(signed(swap(b=Leg(BOB.public_key, 0, PLATFORM_TOKEN, 5)))),
    )
    for size in (1, 16, 31):
        yield Case(
            f"swap-offer-{size}-bytes",
            "orders",
            R_OFFER,
            Reject,
            "a swap's offer is empty or 32 bytes",
            check_order(signed(swap(offer=bytes(size)))),
        )


def _signature_cases() -> Iterator[Case]:
    body = codec.encode_record(TRANSFER)
    message = order_signing_input("transfer", body)
    swap_body = codec.encode_record(SWAP)
    swap_message = order_signing_input("swap", swap_body)
    for name, raw, match in [
        (
            "transfer-two-signatures",
            wire("transfer", body, [ALICE.sign(message)] * 2),
            "needs 1 signatures, has 2",
        ),
        (
            "swap-one-signature",
            wire("swap", swap_body, [ALICE.sign(swap_message)]),
            "needs 2 signatures, has 1",
        ),
    ]:
        yield Case(name, "orders", R_SIG_COUNT, Reject, match, check_order(raw))
    flipped = bytearray(ALICE.sign(message))
    flipped[5] ^= 1
    for name, raw in [
        ("signed-by-mallory", wire("transfer", body, [MALLORY.sign(message)])),
        (
            "signed-under-another-kind",
            wire("transfer", body, [ALICE.sign(order_signing_input("swap", body))]),
        ),
        ("signed-without-domain", wire("transfer", body, [ALICE.sign(body)])),
        ("bit-flipped", wire("transfer", body, [bytes(flipped)])),
        ("signature-63-bytes", wire("transfer", body, [ALICE.sign(message)[:63]])),
        (
            "swap-second-by-mallory",
            wire("swap", swap_body, [ALICE.sign(swap_message), MALLORY.sign(swap_message)]),
        ),
        (
            "swap-signatures-swapped",
            wire("swap", swap_body, [BOB.sign(swap_message), ALICE.sign(swap_message)]),
        ),
        ("swap-first-missing", wire("swap", swap_body, [bytes(64), BOB.sign(swap_message)])),
    ]:
        yield Case(
            name, "orders", R_SIGS, Reject, "an owner's signature does not verify", check_order(raw)
        )


def check_proposal(raw: bytes) -> Callable[[], object]:
    return lambda: open_proposal(raw, NETWORK, NOW_MS)


def _proposal_cases() -> Iterator[Case]:
    body = codec.encode_record(SWAP)
    message = order_signing_input("swap", body)
    for version in (0, 2):
        yield Case(
            f"proposal-version-{version}",
            "orders",
            R_VERSION,
            Reject,
            f"signed order version {version} is not 1",
            check_proposal(wire("swap", body, [ALICE.sign(message)], v=version)),
        )
    for name, raw, match in [
        ("a-transfer", signed(TRANSFER), "a swap proposal is a swap with one signature"),
        ("both-signatures", signed(SWAP), "a swap proposal is a swap with one signature"),
        ("signed-by-b", wire("swap", body, [BOB.sign(message)]), "signature does not verify"),
        ("signed-by-mallory", wire("swap", body, [MALLORY.sign(message)]), "does not verify"),
    ]:
        yield Case(
            f"proposal-{name}",
            "orders",
            R_PROPOSAL,
            Reject,
            match,
            check_proposal(raw),
        )


# Certificates: one batch of three orders voted by all four validators of a fresh network.

CERT_NET = Net()
BATCH = [
    CERT_NET.transfer(BOB, CAROL, 7),
    CERT_NET.transfer(ALICE, BOB, 10),
    CERT_NET.create_token(CAROL),
]
TARGET = BATCH[1]
BATCH_VOTES = [CERT_NET.vote(i, BATCH) for i in range(4)]
VOTES: list[Vote] = []
for _results in BATCH_VOTES:
    assert isinstance(_results[1], Vote)
    VOTES.append(_results[1])
OTHER_VOTES = [r[0] for r in BATCH_VOTES if isinstance(r[0], Vote)]
"""The same validators' votes for another order of the batch."""


def cert_raw(
    votes: Sequence[Vote | dict[str, Any]] = VOTES[:3], target: SignedOrder = TARGET, **fields: Any
) -> bytes:
    """Certificate bytes for ``target`` with ``votes`` and any fields replaced."""
    obj: dict[str, Any] = {
        "kind": target.kind,
        "order": target.order_bytes,
        "sigs": list(target.sigs),
        "v": 1,
        "votes": [v if isinstance(v, dict) else codec.record_to_obj(v) for v in votes],
    }
    obj.update(fields)
    return codec.encode(obj)


def vote(which: int, /, **changes: Any) -> Vote:
    """Validator ``which``'s vote for TARGET with fields replaced."""
    return dataclasses.replace(VOTES[which], **changes)


def check_cert(raw: bytes, committee: Committee = CERT_NET.committee) -> Callable[[], object]:
    return lambda: verify_certificate(raw, committee, VerifiedRoots(), NOW_MS)


def _certificate_cases() -> Iterator[Case]:
    good = cert_raw()
    for name, raw, match in [
        ("trailing-byte", good + b"\x00", "trailing bytes"),
        ("not-a-map", codec.encode([]), "expected a map"),
        ("no-votes", cert_raw([]), "votes: 0 items, at least 1"),
        ("65-votes", cert_raw([VOTES[0]] * 65), "65 items exceeds"),
        ("unknown-field", cert_raw(extra=b""), "unknown field 'extra'"),
        ("no-sigs", cert_raw(sigs=[]), "sigs: 0 items"),
        ("vote-sig-63-bytes", cert_raw([vote(0, sig=bytes(63)), *VOTES[1:3]]), "sig: 63 bytes"),
        ("vote-root-31-bytes", cert_raw([vote(0, root=bytes(31)), *VOTES[1:3]]), "root: 31 bytes"),
        ("vote-count-0", cert_raw([vote(0, count=0), *VOTES[1:3]]), r"count: 0 outside"),
        ("vote-count-1025", cert_raw([vote(0, count=1025), *VOTES[1:3]]), "count: 1025 outside"),
        ("vote-index-1024", cert_raw([vote(0, index=1024), *VOTES[1:3]]), "index: 1024 outside"),
        (
            "vote-validator-64",
            cert_raw([*VOTES[:2], vote(2, validator=64)]),
            "validator: 64 outside",
        ),
        (
            "vote-path-11-entries",
            cert_raw([vote(0, path=(bytes(32),) * (PATH_MAX + 1)), *VOTES[1:3]]),
            "path: 11 items exceeds",
        ),
        (
            "vote-path-entry-33-bytes",
            cert_raw([vote(0, path=(bytes(33),)), *VOTES[1:3]]),
            "33 bytes",
        ),
        (
            "vote-unknown-field",
            cert_raw([{**codec.record_to_obj(VOTES[0]), "weight": 1}, *VOTES[1:3]]),
            "unknown field 'weight'",
        ),
        ("too-big", bytes(CERTIFICATE_BYTES_MAX + 1), "exceeds the limit"),
    ]:
        yield Case(
            f"cert-{name}",
            "certs",
            R_CERT,
            Reject,
            "malformed certificate: .*" + match,
            check_cert(raw),
        )
    for version in (0, 2):
        yield Case(
            f"cert-version-{version}",
            "certs",
            R_VERSION,
            Reject,
            f"certificate version {version} is not 1",
            check_cert(cert_raw(v=version)),
        )
    # The order inside a certificate meets the order rules.
    in_certificates: list[tuple[str, dict[str, Any], str, type[Verdict], str]] = [
        ("kind-unknown", {"kind": "mint"}, R_KIND, Reject, "unknown order kind"),
        ("order-malformed", {"order": b"\x80"}, R_ORDER, Reject, "missing field"),
        (
            "order-other-network",
            {"order": codec.encode_record(transfer(network=bytes(32)))},
            R_NETWORK,
            Reject,
            "another network",
        ),
        (
            "transfer-to-self",
            {"order": codec.encode_record(transfer(recipient=ALICE.public_key))},
            R_SELF,
            Reject,
            "oneself",
        ),
        (
            "order-future",
            {"order": codec.encode_record(transfer(created_ms=NOW_MS + 10**9))},
            R_FUTURE,
            Ignore,
            "in the future",
        ),
    ]
    for name, fields, rule, verdict, match in in_certificates:
        module = "validate" if rule == R_FUTURE else "orders"
        yield Case(f"cert-{name}", module, rule, verdict, match, check_cert(cert_raw(**fields)))
    # No signature at all breaks the record's own limit: cert-no-sigs above.
    yield Case(
        "cert-two-signatures-for-one-owner",
        "certs",
        R_CERT_SIGS,
        Reject,
        "with 2 owner signatures",
        check_cert(cert_raw(sigs=[TARGET.sigs[0]] * 2)),
    )
    for name, order in [
        ("unsorted", [VOTES[1], VOTES[0], VOTES[2]]),
        ("duplicate", [VOTES[0], VOTES[0], VOTES[1], VOTES[2]]),
        ("descending", VOTES[3:0:-1]),
    ]:
        yield Case(
            f"cert-votes-{name}",
            "certs",
            R_SORTED,
            Reject,
            "not sorted by validator",
            check_cert(cert_raw(order)),
        )
    for index in (4, 5, VALIDATORS_MAX - 1):
        yield Case(
            f"cert-validator-{index}",
            "certs",
            R_MEMBER,
            Reject,
            f"vote by validator {index}, the committee has 4",
            check_cert(cert_raw([*VOTES[:2], vote(2, validator=index)])),
        )
    yield Case(
        "cert-path-entry-31-bytes",
        "certs",
        R_PATH_HASH,
        Reject,
        "not 32 bytes",
        check_cert(
            cert_raw([vote(0, path=(VOTES[0].path[0][:31], *VOTES[0].path[1:])), *VOTES[1:3]])
        ),
    )
    assert VOTES[0].path, "the batch of three gives every vote a path"
    flipped = bytearray(VOTES[0].path[0])
    flipped[0] ^= 1
    for name, bad in [
        ("vote-for-another-order", OTHER_VOTES[0]),
        ("index-0", vote(0, index=0)),
        ("index-2", vote(0, index=2)),
        ("index-past-count", vote(0, index=3)),
        ("count-1", vote(0, count=1)),
        ("count-2", vote(0, count=2)),
        ("count-5", vote(0, count=5)),
        ("path-flipped", vote(0, path=(bytes(flipped), *VOTES[0].path[1:]))),
        ("path-short", vote(0, path=VOTES[0].path[:1])),
        ("path-long", vote(0, path=(*VOTES[0].path, bytes(32)))),
        ("path-reversed", vote(0, path=VOTES[0].path[::-1])),
        ("root-changed", vote(0, root=bytes(32))),
    ]:
        yield Case(
            f"cert-path-{name}",
            "certs",
            R_PATH,
            Reject,
            "validator 0's path does not lead to its root",
            check_cert(cert_raw([bad, *VOTES[1:3]])),
        )
    elsewhere = Net(make_genesis(name="othernet")).committee
    (foreign,) = sign_votes(elsewhere, 0, VALIDATOR_KEYS[0], [TARGET.id])
    (unrelated,) = sign_votes(CERT_NET.committee, 0, VALIDATOR_KEYS[0], [bytes(32)])
    sig = bytearray(VOTES[0].sig)
    sig[10] ^= 4
    for name, bad in [
        ("relabelled", vote(1, validator=0)),
        ("sig-flipped", vote(0, sig=bytes(sig))),
        ("sig-of-another-root", vote(0, sig=unrelated.sig)),
        ("of-another-network", foreign),
    ]:
        yield Case(
            f"cert-vote-{name}",
            "certs",
            R_VOTE_SIG,
            Reject,
            "validator 0's vote signature does not verify",
            check_cert(cert_raw([bad, *VOTES[1:3]])),
        )
    for name, votes in [
        ("one-vote", VOTES[:1]),
        ("two-votes", VOTES[:2]),
        ("two-votes-last", VOTES[2:]),
    ]:
        yield Case(
            f"cert-{name}",
            "certs",
            R_QUORUM,
            Reject,
            "the quorum is 3",
            check_cert(cert_raw(votes)),
        )


CASES = [
    *_wire_cases(),
    *_order_record_cases(),
    *_order_field_cases(),
    *_signature_cases(),
    *_proposal_cases(),
    *_certificate_cases(),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_invalid_wire(case: Case) -> None:
    with pytest.raises(Verdict) as caught:
        case.run()
    assert type(caught.value) is case.verdict, caught.value
    assert re.search(case.match, str(caught.value)), str(caught.value)


def test_every_rule_has_a_case() -> None:
    rules = ledger_rules()
    assert len(rules) >= 20, "rule comments not found in protocol/orders.py and certs.py"
    covered = {(case.module, case.rule) for case in CASES}
    missing = [(module, text) for module, _, text in rules if (module, text) not in covered]
    assert not missing, f"add a test_invalid case for: {missing}"
    known = {(module, text) for module, _, text in rules} | {
        ("validate", R_FUTURE),
        ("validate", R_EPOCH),
    }
    stale = {(case.module, case.rule) for case in CASES} - known
    assert not stale, f"cases name rules that the code no longer has: {stale}"


def test_every_case_earns_its_rules_verdict() -> None:
    verdicts = {(module, text): verdict for module, verdict, text in ledger_rules()}
    verdicts[("validate", R_FUTURE)] = "ignore"
    verdicts[("validate", R_EPOCH)] = "reject"
    for case in CASES:
        assert case.verdict.__name__.lower() == verdicts[(case.module, case.rule)], case.name


def test_every_rule_comment_is_read() -> None:
    """A mistyped marker (``#[REJECT]``, ``# [reject]``) would hide a rule from the checks."""
    for name, module in RULE_MODULES.items():
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        markers = re.findall(r"#\s*\[\s*(?:reject|ignore)\s*\]", source, re.IGNORECASE)
        assert len(markers) == len([r for r in ledger_rules() if r[0] == name])


def test_docs_list_every_rule() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    section = docs[docs.index("## 13. Ledger") :]
    for _, verdict, text in ledger_rules():
        assert f"[{verdict.upper()}] {text}" in section, f"docs/protocol.md lacks the rule: {text}"


# ---------------------------------------------------------------------------------------
# Valid orders and certificates.


@pytest.mark.parametrize(
    "order", [TRANSFER, CREATE, SWAP, transfer(memo=bytes(64)), create(symbol="A1234567890Z")]
)
def test_a_valid_order_verifies_with_its_id(order: Order) -> None:
    raw = signed(order)
    received = verify_order(raw, NETWORK, NOW_MS)
    assert received.order == order
    assert received.raw == raw
    assert (
        received.id
        == hashlib.sha256(order_signing_input(order.KIND, received.order_bytes)).digest()
    )
    assert received.id == order_id(order.KIND, codec.encode_record(order))


def test_the_time_rules_bound_an_order_at_their_limits() -> None:
    for created_ms in (EPOCH_MS, NOW_MS + FUTURE_MS_MAX):
        verify_order(signed(transfer(created_ms=created_ms)), NETWORK, NOW_MS)


def test_cosign_and_sign_order_agree_and_refuse_the_wrong_keys() -> None:
    partial = propose_swap(SWAP, ALICE)
    assert open_proposal(partial.raw, NETWORK, NOW_MS).order == SWAP
    with pytest.raises(ValueError, match="proposed by its a leg"):
        propose_swap(SWAP, BOB)
    both = cosign(partial, BOB)
    assert both.raw == sign_order(SWAP, [ALICE, BOB]).raw
    with pytest.raises(ValueError, match="second signature"):
        cosign(partial, MALLORY)
    with pytest.raises(ValueError, match="only a swap"):
        cosign(both, BOB)
    with pytest.raises(ValueError, match="exactly its owners"):
        sign_order(TRANSFER, [BOB])
    with pytest.raises(ValueError, match="exactly its owners"):
        sign_order(SWAP, [BOB, ALICE])


def test_a_certificate_verifies_and_names_its_signers() -> None:
    cert = verify_certificate(cert_raw(VOTES), CERT_NET.committee, VerifiedRoots(), NOW_MS)
    assert cert.order_id == TARGET.id and cert.order == TARGET.order
    assert cert.signers == {0, 1, 2, 3} and cert.created_ms == CREATED_MS
    built = certify(CERT_NET.committee, TARGET, [VOTES[2], VOTES[0], VOTES[1]])
    assert built.raw == cert_raw(VOTES[:3])
    assert is_certificate(built.raw) and built.raw.startswith(CERTIFICATE_FIRST_KEY)
    assert not is_certificate(sealed(sample_follow()))


def test_a_certificate_from_storage_skips_the_clock_only() -> None:
    future = sign_order(transfer(created_ms=NOW_MS + 10**9), [ALICE])
    votes = [sign_votes(CERT_NET.committee, i, VALIDATOR_KEYS[i], [future.id])[0] for i in range(3)]
    raw = certify(CERT_NET.committee, future, votes).raw
    with pytest.raises(Ignore):
        verify_certificate(raw, CERT_NET.committee, VerifiedRoots(), NOW_MS)
    assert verify_certificate(raw, CERT_NET.committee, VerifiedRoots()).order == future.order


def test_a_certificate_is_checked_by_its_votes_alone() -> None:
    """The owners' signatures ride along unchecked (protocol/certs.py): a quorum of votes is
    what makes an order final. So their bytes, unlike the votes', can be changed in transit."""
    raw = cert_raw(sigs=[bytes(64)])
    assert (
        verify_certificate(raw, CERT_NET.committee, VerifiedRoots(), NOW_MS).order_id == TARGET.id
    )


def test_certify_refuses_a_duplicate_vote_or_too_little_weight() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        certify(CERT_NET.committee, TARGET, [VOTES[0], VOTES[0], VOTES[1]])
    with pytest.raises(ValueError, match="below the quorum 3"):
        certify(CERT_NET.committee, TARGET, VOTES[:2])


def test_verified_roots_remember_good_roots_only_and_stay_bounded() -> None:
    roots = VerifiedRoots(capacity=2)
    committee = CERT_NET.committee
    assert all(roots.check(committee, v) for v in VOTES[:3])
    assert len(roots._seen) == 2
    assert not roots.check(committee, vote(1, validator=0))
    assert len(roots._seen) == 2


# ---------------------------------------------------------------------------------------
# Sizes: every record within its field limits fits the byte limit it is decoded with.


def _largest_vote(validator: int) -> Vote:
    return Vote(validator, bytes(32), bytes(64), BATCH_MAX - 1, BATCH_MAX, (bytes(32),) * PATH_MAX)


def test_the_byte_limits_hold_the_largest_records() -> None:
    u64 = 2**64 - 1
    largest_orders: list[Order] = [
        Transfer(bytes(32), u64, bytes(32), SEQ_MAX, bytes(32), bytes(32), AMOUNT_MAX, bytes(64)),
        CreateToken(
            bytes(32), u64, bytes(32), SEQ_MAX, "A" * 12, "é" * 32, AMOUNT_MAX, 18, "é" * 256
        ),
        Swap(
            bytes(32),
            u64,
            Leg(bytes(32), SEQ_MAX, bytes(32), AMOUNT_MAX),
            Leg(bytes(32), SEQ_MAX, bytes(32), AMOUNT_MAX),
            bytes(32),
        ),
    ]
    for order in largest_orders:
        assert len(codec.encode_record(order)) <= ORDER_BYTES_MAX
    largest_wire = SignedOrderWire(255, "k" * 16, bytes(ORDER_BYTES_MAX), (bytes(64),) * 2)
    assert len(codec.encode_record(largest_wire)) <= SIGNED_ORDER_BYTES_MAX
    votes = tuple(_largest_vote(i) for i in range(VALIDATORS_MAX))
    largest_cert = CertificateWire("k" * 16, bytes(ORDER_BYTES_MAX), (bytes(64),) * 2, 255, votes)
    raw = codec.encode_record(largest_cert)
    assert len(raw) <= CERTIFICATE_BYTES_MAX
    assert (
        codec.decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX) == largest_cert
    )
