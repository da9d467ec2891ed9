"""Content ids: SHA-256 multihash wrapped as a CIDv1 with the raw codec.

Binary form (36 bytes): ``0x01`` (CID version 1), ``0x55`` (multicodec ``raw``), ``0x12``
(multihash ``sha2-256``), ``0x20`` (digest length 32), then the 32-byte SHA-256 digest.
Text form: multibase ``b`` (RFC 4648 base32, lower case, no padding) of the binary form, so
every chunk id reads ``bafkrei...`` and matches what IPFS tools print for the same bytes.
"""

import base64
import hashlib

from protocol.errors import InvalidCid

CID_PREFIX = b"\x01\x55\x12\x20"
CID_LEN = len(CID_PREFIX) + 32
CID_TEXT_PREFIX = "b"


def chunk_id(data: bytes) -> bytes:
    """Return the binary CID of ``data``."""
    return CID_PREFIX + hashlib.sha256(data).digest()


def cid_digest(cid: bytes) -> bytes:
    """Return the SHA-256 digest inside ``cid``. Raises :class:`InvalidCid`."""
    check_cid(cid)
    return cid[len(CID_PREFIX) :]


def check_cid(cid: bytes) -> None:
    """Raise :class:`InvalidCid` unless ``cid`` is a binary CIDv1 raw sha2-256 id."""
    if len(cid) != CID_LEN or not cid.startswith(CID_PREFIX):
        raise InvalidCid(f"not a CIDv1 raw sha2-256 id: {cid[:8].hex()}... ({len(cid)} bytes)")


def matches(cid: bytes, data: bytes) -> bool:
    """True when ``data`` hashes to ``cid``."""
    return len(cid) == CID_LEN and cid == chunk_id(data)


def cid_to_text(cid: bytes) -> str:
    """Return the multibase base32 text form of a binary CID."""
    check_cid(cid)
    return CID_TEXT_PREFIX + base64.b32encode(cid).decode("ascii").lower().rstrip("=")


def cid_from_text(text: str) -> bytes:
    """Parse the text form of a CID. Raises :class:`InvalidCid`."""
    if not text.startswith(CID_TEXT_PREFIX):
        raise InvalidCid(f"CID text must start with {CID_TEXT_PREFIX!r}: {text[:16]!r}")
    body = text[len(CID_TEXT_PREFIX) :].upper()
    if not body.isalnum() or body != body.strip():
        raise InvalidCid(f"CID text is not base32: {text[:16]!r}")
    try:
        cid = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise InvalidCid(f"CID text is not base32: {text[:16]!r}") from exc
    check_cid(cid)
    if cid_to_text(cid) != text:
        raise InvalidCid(f"CID text is not canonical: {text[:16]!r}")
    return cid
