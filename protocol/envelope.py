"""Signed envelopes: how every message leaves a node.

Wire form: the canonical msgpack map ``{"body": bin, "kind": str, "sig": bin[64],
"signer": bin[32], "v": 1}``. ``body`` is the canonical encoding of the kind's record.
``sig`` is the Ed25519 signature by ``signer`` over the signing input::

    b"toktok/v1/" + kind (ASCII) + b"\\x00" + body

The message id is ``SHA-256(envelope bytes)``. Verification always runs over the bytes that
were received (``body`` as it came), never over a re-encoding.
"""

import functools
import hashlib
from dataclasses import dataclass

from protocol.accounts import PUBLIC_KEY_LEN, SIGNATURE_LEN, AccountKey
from protocol.codec import decode_record, encode_record, fld
from protocol.kinds import BODY_BYTES_MAX, MESSAGE_ID_LEN, Record

ENVELOPE_VERSION = 1
DOMAIN_PREFIX = b"toktok/v1/"
KIND_BYTES_MAX = 32
ENVELOPE_OVERHEAD_MAX = 192
"""Bytes an envelope adds to its body: keys, version, kind, signer and signature."""
ENVELOPE_BYTES_MAX = max(BODY_BYTES_MAX.values()) + ENVELOPE_OVERHEAD_MAX


@dataclass(frozen=True)
class Envelope:
    """The outer, signed wrapper of a message, as decoded from the wire."""

    v: int = fld(value_min=0, value_max=255)
    kind: str = fld(len_min=1, len_max=KIND_BYTES_MAX)
    signer: bytes = fld(len_min=PUBLIC_KEY_LEN, len_max=PUBLIC_KEY_LEN)
    body: bytes = fld(len_max=max(BODY_BYTES_MAX.values()))
    sig: bytes = fld(len_min=SIGNATURE_LEN, len_max=SIGNATURE_LEN)


@dataclass(frozen=True)
class SignedMessage:
    """A message that passed validation: its raw bytes, its parts and its id."""

    raw: bytes
    envelope: Envelope
    record: Record

    @functools.cached_property
    def id(self) -> bytes:
        """The message id: SHA-256 of the exact envelope bytes (hashed once)."""
        return message_id(self.raw)

    @property
    def kind(self) -> str:
        return self.envelope.kind


def signing_input(kind: str, body: bytes) -> bytes:
    """The bytes an envelope's signature covers: the domain tag, a zero byte, the body."""
    return DOMAIN_PREFIX + kind.encode("ascii") + b"\x00" + body


def message_id(raw: bytes) -> bytes:
    """Return the id of the envelope ``raw``: its SHA-256 digest."""
    digest = hashlib.sha256(raw).digest()
    assert len(digest) == MESSAGE_ID_LEN
    return digest


def decode_envelope(raw: bytes) -> Envelope:
    """Decode the outer envelope without checking the signature or the body.

    Raises :class:`protocol.errors.DecodeError` when ``raw`` is oversize or not canonical.
    """
    return decode_record(Envelope, raw, bytes_max=ENVELOPE_BYTES_MAX)


def seal(key: AccountKey, record: Record) -> SignedMessage:
    """Encode, sign and wrap ``record``; the caller makes sure ``record.author`` is the key's.

    Raises :class:`protocol.errors.DecodeError` when the record breaks a field limit or its
    kind's body size: nothing is signed that a receiver could not decode.
    """
    assert record.author == key.public_key, "records are signed by their author"
    body = encode_record(record)
    kind = record.KIND
    decode_record(type(record), body, bytes_max=BODY_BYTES_MAX[kind])
    envelope = Envelope(
        v=ENVELOPE_VERSION,
        kind=kind,
        signer=key.public_key,
        body=body,
        sig=key.sign(signing_input(kind, body)),
    )
    return SignedMessage(raw=encode_record(envelope), envelope=envelope, record=record)
