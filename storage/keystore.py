"""Account secrets encrypted under a passphrase: scrypt, then AES-256-GCM.

Each entry is one KV record under Prefix.KEYSTORE + name. Its value is msgpack
``[1, body, sha256(body)]``, where ``body`` is a msgpack map holding the scrypt parameters
(stored per entry, so the defaults can rise without breaking old entries), the salt, the
nonce, the public key, a passphrase check and the ciphertext. scrypt yields 64 bytes: the
first 32 are the AES key, the last 32 the check, so a wrong passphrase is told apart from a
damaged entry without trying the cipher. The GCM associated data binds the entry name and
public key, so neither can be swapped under a ciphertext; the outer SHA-256 tells accidental
damage of the parameters (which would otherwise read as a wrong passphrase) from a typo.

Secrets are opaque bytes here: the protocol layer owns what they mean (Ed25519 seeds).
"""

import hashlib
import hmac
import os
import threading
import unicodedata
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from storage.errors import (
    KeystoreEntryDamaged,
    KeystoreEntryMissing,
    KeystoreError,
    WrongPassphrase,
)
from storage.keys import Prefix, keystore_key, prefix
from storage.kv import KV, Batch

FORMAT_VERSION = 1
SCRYPT_N_DEFAULT = 2**15  # 32 MiB and about 0.1 s per unlock with r=8
# Entries may use a lower n (tests do); the maximum refuses records that would make an
# unlock allocate more than 1 GiB.
SCRYPT_N_MIN = 2**10
SCRYPT_N_MAX = 2**20
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_R_MAX = 8
SCRYPT_P_MAX = 4
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
CHECK_BYTES = 32
TAG_BYTES = 16
NAME_BYTES_MAX = 64
SECRET_BYTES_MAX = 1024
PUBLIC_KEY_BYTES_MAX = 256
PASSPHRASE_CHARS_MAX = 1024
AAD_DOMAIN = "toktok/v1/keystore"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A secret encrypted under a passphrase, with everything needed to open it but the
    passphrase (also used by storage/keyfile.py)."""

    n: int
    r: int
    p: int
    salt: bytes
    nonce: bytes
    check: bytes
    public_key: bytes
    ciphertext: bytes

    def body(self) -> bytes:
        """The msgpack map of the fields (see module doc)."""
        return bytes(
            msgpack.packb(
                {
                    "kdf": "scrypt",
                    "n": self.n,
                    "r": self.r,
                    "p": self.p,
                    "salt": self.salt,
                    "aead": "aes-256-gcm",
                    "nonce": self.nonce,
                    "check": self.check,
                    "pub": self.public_key,
                    "ct": self.ciphertext,
                }
            )
        )

    def encode(self) -> bytes:
        """A keystore entry's value: ``[FORMAT_VERSION, body, sha256(body)]``."""
        body = self.body()
        return bytes(msgpack.packb([FORMAT_VERSION, body, hashlib.sha256(body).digest()]))


def seal(secret: bytes, public_key: bytes, passphrase: bytes, n: int, aad: bytes) -> Sealed:
    """Encrypt ``secret`` under ``passphrase`` (already :func:`passphrase_bytes`) with a
    fresh salt and nonce; ``aad`` is bound to the ciphertext."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    key, check = _derive(passphrase, salt, n, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, secret, aad)
    return Sealed(n, SCRYPT_R, SCRYPT_P, salt, nonce, check, public_key, ciphertext)


def unseal(sealed: Sealed, passphrase: bytes, aad: bytes) -> bytes:
    """The secret in ``sealed``. Raises :class:`WrongPassphrase` when ``passphrase`` fails
    the check, and ``cryptography``'s InvalidTag when the passphrase is right but the
    ciphertext or ``aad`` fails authentication (damage)."""
    key, check = _derive(passphrase, sealed.salt, sealed.n, sealed.r, sealed.p)
    if not hmac.compare_digest(check, sealed.check):
        raise WrongPassphrase("wrong passphrase")
    return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)


class Keystore:
    """Named account secrets in a KV, each encrypted under its own passphrase.

    ``scrypt_n`` is the cost used for new entries and passphrase changes; raises ValueError
    unless it is a power of two in [SCRYPT_N_MIN, SCRYPT_N_MAX].
    """

    def __init__(self, kv: KV, *, scrypt_n: int = SCRYPT_N_DEFAULT) -> None:
        if not _valid_n(scrypt_n):
            raise ValueError(
                f"scrypt_n must be a power of two in [{SCRYPT_N_MIN}, {SCRYPT_N_MAX}]: {scrypt_n}"
            )
        self._kv = kv
        self._scrypt_n = scrypt_n
        # Serialises check-then-write in add() and change_passphrase().
        self._lock = threading.Lock()

    def add(
        self,
        name: str,
        secret: bytes,
        public_key: bytes,
        passphrase: str,
        *,
        batch: Batch | None = None,
    ) -> None:
        """Store ``secret`` under ``name``, encrypted with ``passphrase``.

        With ``batch``, the entry is only staged there, for the caller to write with other
        changes in one atomic batch. Raises KeystoreError if the name is taken or invalid,
        the passphrase empty, or the secret or public key empty or too long.
        """
        check_name(name)
        if not 0 < len(secret) <= SECRET_BYTES_MAX:
            raise KeystoreError(f"a secret must be 1 to {SECRET_BYTES_MAX} bytes: {len(secret)}")
        if not 0 < len(public_key) <= PUBLIC_KEY_BYTES_MAX:
            raise KeystoreError(
                f"a public key must be 1 to {PUBLIC_KEY_BYTES_MAX} bytes: {len(public_key)}"
            )
        secret_passphrase = _passphrase_bytes(passphrase)
        with self._lock:
            if self._kv.get(keystore_key(name)) is not None:
                raise KeystoreError(f"the keystore already has a key named {name!r}")
            entry = self._seal(name, secret, public_key, secret_passphrase)
            if batch is not None:
                batch.put(keystore_key(name), entry.encode())
            else:
                self._write(name, entry)

    def unlock(self, name: str, passphrase: str) -> bytes:
        """The secret stored under ``name``.

        Raises WrongPassphrase, KeystoreEntryMissing, KeystoreEntryDamaged (both
        KeystoreError).
        """
        return _open(name, self._read(name), _passphrase_bytes(passphrase))

    def public_key(self, name: str) -> bytes:
        """The public key stored beside the secret ``name`` (no passphrase needed).

        Raises KeystoreEntryMissing, KeystoreEntryDamaged.
        """
        return self._read(name).public_key

    def names(self) -> list[str]:
        """The names of every entry, in (UTF-8) byte order."""
        return [
            key[1:].decode("utf-8", "replace")
            for key, _ in self._kv.iterate(prefix(Prefix.KEYSTORE), include_value=False)
        ]

    def change_passphrase(self, name: str, old: str, new: str) -> None:
        """Re-encrypt entry ``name`` under ``new``, with a fresh salt and nonce and the
        current scrypt cost. Raises what unlock() raises, KeystoreError if ``new`` is empty.
        """
        new_bytes = _passphrase_bytes(new)
        with self._lock:
            entry = self._read(name)
            secret = _open(name, entry, _passphrase_bytes(old))
            self._write(name, self._seal(name, secret, entry.public_key, new_bytes))

    def _seal(self, name: str, secret: bytes, public_key: bytes, passphrase: bytes) -> Sealed:
        return seal(secret, public_key, passphrase, self._scrypt_n, _aad(name, public_key))

    def _write(self, name: str, entry: Sealed) -> None:
        batch = Batch()
        batch.put(keystore_key(name), entry.encode())
        # A lost keystore entry is a lost account: wait for the disk.
        self._kv.write(batch, sync=True)

    def _read(self, name: str) -> Sealed:
        check_name(name)
        raw = self._kv.get(keystore_key(name))
        if raw is None:
            raise KeystoreEntryMissing(f"the keystore has no key named {name!r}")
        entry = _decode(raw)
        if entry is None:
            raise KeystoreEntryDamaged(
                f"keystore entry {name!r} is damaged (its checksum or format is wrong); "
                "restore it from a backup"
            )
        return entry


def _open(name: str, entry: Sealed, passphrase: bytes) -> bytes:
    try:
        return unseal(entry, passphrase, _aad(name, entry.public_key))
    except WrongPassphrase:
        raise WrongPassphrase(f"wrong passphrase for key {name!r}") from None
    except InvalidTag as exc:
        raise KeystoreEntryDamaged(
            f"keystore entry {name!r} is damaged: the passphrase is right but the encrypted "
            "secret or its public key fails authentication; restore it from a backup"
        ) from exc


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    out = Scrypt(salt=salt, length=KEY_BYTES + CHECK_BYTES, n=n, r=r, p=p).derive(passphrase)
    return out[:KEY_BYTES], out[KEY_BYTES:]


def _aad(name: str, public_key: bytes) -> bytes:
    return bytes(msgpack.packb([AAD_DOMAIN, name, public_key]))


def _valid_n(n: int) -> bool:
    return SCRYPT_N_MIN <= n <= SCRYPT_N_MAX and n & (n - 1) == 0


def check_name(name: str) -> None:
    """Raise KeystoreError unless ``name`` can name a keystore entry."""
    size = len(name.encode("utf-8"))
    if not 0 < size <= NAME_BYTES_MAX or not name.isprintable() or name != name.strip():
        raise KeystoreError(
            f"a key name is 1 to {NAME_BYTES_MAX} bytes of printable text without leading or "
            f"trailing spaces: {name!r}"
        )


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC, so the same passphrase typed on another keyboard or system still unlocks.
    text = unicodedata.normalize("NFC", passphrase)
    if not text:
        raise KeystoreError("an empty passphrase would leave the secret unprotected; choose one")
    if len(text) > PASSPHRASE_CHARS_MAX:
        raise KeystoreError(f"a passphrase is at most {PASSPHRASE_CHARS_MAX} characters")
    return text.encode("utf-8")


_BODY_KEYS = {"kdf", "n", "r", "p", "salt", "aead", "nonce", "check", "pub", "ct"}


def _decode(raw: bytes) -> Sealed | None:
    """The entry in ``raw``, or None if it is malformed or fails its checksum."""
    try:
        outer = msgpack.unpackb(raw)
    except ValueError:
        return None
    if not (isinstance(outer, list) and len(outer) == 3 and outer[0] == FORMAT_VERSION):
        return None
    body, digest = outer[1], outer[2]
    if not isinstance(body, bytes) or digest != hashlib.sha256(body).digest():
        return None
    entry = decode_body(body)
    if entry is None:
        return None
    sizes_ok = 0 < len(entry.public_key) <= PUBLIC_KEY_BYTES_MAX and (
        TAG_BYTES < len(entry.ciphertext) <= SECRET_BYTES_MAX + TAG_BYTES
    )
    return entry if sizes_ok else None


def decode_body(body: bytes) -> Sealed | None:
    """The :class:`Sealed` whose :meth:`Sealed.body` is ``body``, or None if it is malformed
    (the caller checks the sizes of the public key and ciphertext it expects)."""
    try:
        f = msgpack.unpackb(body)
    except ValueError:
        return None
    if not isinstance(f, dict) or set(f) != _BODY_KEYS:
        return None
    if f["kdf"] != "scrypt" or f["aead"] != "aes-256-gcm":
        return None
    entry = Sealed(f["n"], f["r"], f["p"], f["salt"], f["nonce"], f["check"], f["pub"], f["ct"])
    ints = (entry.n, entry.r, entry.p)
    blobs = (entry.salt, entry.nonce, entry.check, entry.public_key, entry.ciphertext)
    ok = (
        all(type(i) is int for i in ints)
        and all(type(b) is bytes for b in blobs)
        and _valid_n(entry.n)
        and 1 <= entry.r <= SCRYPT_R_MAX
        and 1 <= entry.p <= SCRYPT_P_MAX
        and len(entry.salt) == SALT_BYTES
        and len(entry.nonce) == NONCE_BYTES
        and len(entry.check) == CHECK_BYTES
    )
    return entry if ok else None
