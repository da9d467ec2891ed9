"""Accounts: Ed25519 keys and the text form of an account id.

An account (a creator or a fan) is an Ed25519 key pair; its id is the 32-byte public key.
The text form people copy around is ``tt`` followed by RFC 4648 base32 (lower case, no
padding) of the public key and a 4-byte checksum, the first bytes of
``SHA-256(b"toktok/v1/account" || public_key)``. The checksum catches typing errors.

Key generation takes its 32-byte seed from the caller, since this layer draws no randomness.
"""

import base64
import hashlib

import nacl.bindings
import nacl.exceptions

from protocol.errors import ProtocolError

PUBLIC_KEY_LEN = 32
SEED_LEN = 32
SIGNATURE_LEN = 64
ACCOUNT_TEXT_PREFIX = "tt"
_CHECKSUM_TAG = b"toktok/v1/account"
_CHECKSUM_LEN = 4


class InvalidAccount(ProtocolError):
    """An account id (text or bytes) that is malformed."""


class AccountKey:
    """A private Ed25519 key: signs for one account."""

    __slots__ = ("_secret", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an Ed25519 seed is {SEED_LEN} bytes, got {len(seed)}")
        self.public_key, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)

    @property
    def seed(self) -> bytes:
        """The 32-byte seed the key derives from (what a keystore keeps)."""
        return self._secret[:SEED_LEN]

    @property
    def account_id(self) -> str:
        """The text form of this key's account id."""
        return account_to_text(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        signed = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_LEN]

    def __repr__(self) -> str:
        return f"AccountKey({self.account_id})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``.

    libsodium's strict verification is used: non-canonical encodings and small-order keys
    are refused, so every node reaches the same verdict on the same bytes.
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def _checksum(public_key: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_TAG + public_key).digest()[:_CHECKSUM_LEN]


def account_to_text(public_key: bytes) -> str:
    """Return the text form of an account id. Raises :class:`InvalidAccount`."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise InvalidAccount(f"an account id is {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    raw = public_key + _checksum(public_key)
    return ACCOUNT_TEXT_PREFIX + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def account_from_text(text: str) -> bytes:
    """Parse the text form of an account id into its public key.

    Raises :class:`InvalidAccount` for a wrong prefix, bad characters, wrong length or a
    checksum mismatch (a typing error).
    """
    text = text.strip()
    if not text.startswith(ACCOUNT_TEXT_PREFIX):
        raise InvalidAccount(f"account id must start with {ACCOUNT_TEXT_PREFIX!r}: {text[:12]!r}")
    body = text[len(ACCOUNT_TEXT_PREFIX) :]
    if not body.isascii() or not body.isalnum() or body != body.lower():
        raise InvalidAccount(f"account id is not lower-case base32: {text[:12]!r}")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise InvalidAccount(f"account id is not base32: {text[:12]!r}") from exc
    if len(raw) != PUBLIC_KEY_LEN + _CHECKSUM_LEN:
        raise InvalidAccount(f"account id has the wrong length: {text[:12]!r}")
    public_key, checksum = raw[:PUBLIC_KEY_LEN], raw[PUBLIC_KEY_LEN:]
    if checksum != _checksum(public_key) or account_to_text(public_key) != text:
        raise InvalidAccount(f"account id checksum does not match (a typo?): {text[:12]!r}")
    return public_key
