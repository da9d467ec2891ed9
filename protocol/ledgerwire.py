"""The wire format of the ledger stream protocol, ``/toktok/ledger/1.0.0``.

Validators serve it. A client opens a stream and writes :class:`LedgerRequest` frames;
the validator answers each, in order, with one :class:`LedgerResponse` echoing the
request's ``id``. Frames are framed as on the chunk protocol: a 4-byte big-endian body
length, then the canonical msgpack body (protocol/chunkwire.py's FrameDecoder reads them).

Operations:

- ``hello``: no items. The answer names the validator's committee index and proves the
  stream's peer holds that key: ``proof`` is the validator's signature over
  ``b"toktok/v1/validator-peer\\x00" + network id + the peer id's bytes``.
- ``submit``: items are signed orders (protocol/orders.py). The answer holds one
  :class:`Result` per order, in order: a vote, or the code and reason of a refusal.
- ``confirm``: items are certificates. The validator applies them (they may unblock
  later orders of the same accounts); the answer's ``applied`` counts those that were new.
"""

from dataclasses import dataclass

from protocol.accounts import SIGNATURE_LEN, AccountKey, verify
from protocol.certs import CERTIFICATE_BYTES_MAX, Committee, Vote
from protocol.chunkwire import length_prefixed
from protocol.codec import U64_MAX, encode_record, fit_text, fld
from protocol.errors import DecodeError
from protocol.orders import SIGNED_ORDER_BYTES_MAX

PROTOCOL_ID = "/toktok/ledger/1.0.0"
ITEMS_MAX = 256
"""Orders or certificates in one request."""
REASON_BYTES_MAX = 200
PEER_PROOF_DOMAIN = b"toktok/v1/validator-peer\x00"

HELLO = "hello"
SUBMIT = "submit"
CONFIRM = "confirm"
OPS = (HELLO, SUBMIT, CONFIRM)

# Result and response codes. Plain ints: the canonical encoder packs exact types only.
VOTED = 0
WRONG_SEQUENCE = 1
CONFLICT = 2
INSUFFICIENT_FUNDS = 3
UNKNOWN_TOKEN = 4
INVALID = 5
"""The order breaks a rule (bad signature, malformed, another network)."""
CODE_MAX = INVALID
CODE_NAMES = {
    VOTED: "voted",
    WRONG_SEQUENCE: "wrong_sequence",
    CONFLICT: "conflict",
    INSUFFICIENT_FUNDS: "insufficient_funds",
    UNKNOWN_TOKEN: "unknown_token",
    INVALID: "invalid",
}

OK = 0
BAD_REQUEST = 1
"""The request broke a rule of this protocol; the stream is closed after the answer."""
NOT_VALIDATOR = 2
STATUS_MAX = NOT_VALIDATOR


@dataclass(frozen=True)
class LedgerRequest:
    id: int = fld(value_max=U64_MAX)
    op: str = fld(len_min=1, len_max=16)
    items: tuple[bytes, ...] = fld(
        items_max=ITEMS_MAX, item_len_max=max(SIGNED_ORDER_BYTES_MAX, CERTIFICATE_BYTES_MAX)
    )


@dataclass(frozen=True)
class Result:
    """The validator's answer to one submitted order."""

    code: int = fld(value_max=CODE_MAX)
    reason: str = fld(len_max=REASON_BYTES_MAX)
    votes: tuple[Vote, ...] = fld(items_max=1)
    """The vote when ``code`` is VOTED; empty otherwise."""


@dataclass(frozen=True)
class LedgerResponse:
    id: int = fld(value_max=U64_MAX)
    status: int = fld(value_max=STATUS_MAX)
    reason: str = fld(len_max=REASON_BYTES_MAX)
    validator: int = fld(value_max=255)
    proof: bytes = fld(len_max=SIGNATURE_LEN)
    results: tuple[Result, ...] = fld(items_max=ITEMS_MAX)
    applied: int = fld(value_max=ITEMS_MAX)


REQUEST_BODY_BYTES_MAX = 16 + ITEMS_MAX * (CERTIFICATE_BYTES_MAX + 5)
RESPONSE_BODY_BYTES_MAX = 512 + ITEMS_MAX * (REASON_BYTES_MAX + 64 + 11 * 34 + 128)


def check_request(request: LedgerRequest) -> None:
    """The rules of a request beyond its field limits. Raises :class:`DecodeError`."""
    # [REJECT] The operation is hello, submit or confirm.
    if request.op not in OPS:
        raise DecodeError(f"unknown ledger operation {request.op[:16]!r}")
    # [REJECT] A hello carries no items; submit and confirm carry at least one.
    if (request.op == HELLO) != (not request.items):
        raise DecodeError(f"a {request.op} request with {len(request.items)} items")


def check_response(response: LedgerResponse) -> None:
    """The rules of a response beyond its field limits. Raises :class:`DecodeError`."""
    for result in response.results:
        # [REJECT] A result carries a vote exactly when its code is VOTED.
        if (result.code == VOTED) != bool(result.votes):
            raise DecodeError("a result's vote does not match its code")


def encode_frame(record: LedgerRequest | LedgerResponse) -> bytes:
    """The frame of ``record``: its body length (4 bytes, big-endian), then the body."""
    body = encode_record(record)
    limit = REQUEST_BODY_BYTES_MAX if isinstance(record, LedgerRequest) else RESPONSE_BODY_BYTES_MAX
    assert len(body) <= limit, "the field limits keep a frame within the body limit"
    return length_prefixed(body)


def reason_text(text: str) -> str:
    """``text`` cut to fit a response's or result's reason field."""
    return fit_text(text, REASON_BYTES_MAX)


def peer_proof(key: AccountKey, network: bytes, peer_id: bytes) -> bytes:
    """The validator's proof that the peer ``peer_id`` speaks for its key."""
    return key.sign(PEER_PROOF_DOMAIN + network + peer_id)


def check_peer_proof(committee: Committee, index: int, peer_id: bytes, proof: bytes) -> bool:
    """Whether ``proof`` shows that ``peer_id`` speaks for validator ``index``."""
    if index >= len(committee.members):
        return False
    key = committee.members[index].key
    return verify(key, PEER_PROOF_DOMAIN + committee.network + peer_id, proof)
