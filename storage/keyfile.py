"""One Ed25519 seed (a validator's key) in a file of its own, encrypted under a passphrase.

The cipher is the keystore's (storage/keystore.py), with the same costs: scrypt yields 64
bytes, the first 32 an AES-256-GCM key, the last 32 a passphrase check, so a wrong
passphrase is told apart from a damaged file without trying the cipher. The file is::

    MAGIC (16) | version (1) | body | SHA-256 of everything before it (32)

``body`` is a msgpack map of the scrypt parameters (stored per file, so the defaults can
rise without breaking old files), the salt, the nonce, the check, the public key and the
ciphertext of the seed. The GCM associated data binds the public key, so it cannot be
swapped under a ciphertext; the checksum tells accidental damage of the parameters (which
would otherwise read as a wrong passphrase) from a typo. The public key is readable
without the passphrase, so a node can check a key belongs to the committee before asking.
"""

import hashlib
import hmac
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag

from protocol.accounts import PUBLIC_KEY_LEN, SEED_LEN, AccountKey
from storage.errors import KeystoreError, StoreCorrupt, StoreError, WrongPassphrase

# The keystore's sealing, so both protect a secret equally well.
from storage.keystore import (
    SCRYPT_N_DEFAULT,
    TAG_BYTES,
    Sealed,
    _passphrase_bytes,
    _valid_n,
    decode_body,
    seal,
    unseal,
)

MAGIC = b"toktok key file\n"
FORMAT_VERSION = 1
DIGEST_BYTES = 32
KEY_FILE_BYTES_MAX = 1024
"""A version 1 file is about 250 bytes; anything far bigger is not one of ours."""
AAD_DOMAIN = b"toktok/v1/keyfile\x00"


class KeyFileError(StoreError):
    """A key file that cannot be written or read as asked; the message names the file."""


class KeyFileWrongPassphrase(KeyFileError):
    """The passphrase does not open this key file."""


class KeyFileDamaged(KeyFileError, StoreCorrupt):
    """The file is not a key file of a known version, or fails its integrity checks."""


def write_key_file(
    path: Path, seed: bytes, passphrase: str, *, scrypt_n: int = SCRYPT_N_DEFAULT
) -> AccountKey:
    """Encrypt ``seed`` under ``passphrase`` into a new file ``path`` (mode 0600); return
    its key.

    The file appears whole or not at all (a temporary file, fsync, rename). Raises
    :class:`KeyFileError` when ``path`` exists (a key is never overwritten) or the
    passphrase is empty or too long, ValueError for a seed that is not 32 bytes or a bad
    ``scrypt_n``, and OSError when the file cannot be written.
    """
    if not _valid_n(scrypt_n):
        raise ValueError(f"scrypt_n must be a power of two the keystore allows: {scrypt_n}")
    key = AccountKey(seed)
    try:
        secret = _passphrase_bytes(passphrase)
    except KeystoreError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if path.exists() or path.is_symlink():
        raise KeyFileError(f"{path} exists; a key file is never overwritten")
    sealed = seal(key.seed, key.public_key, secret, scrypt_n, AAD_DOMAIN + key.public_key)
    _write_atomically(path, _encode(sealed))
    return key


def read_key_file(path: Path, passphrase: str) -> AccountKey:
    """The key in the key file ``path``.

    Raises :class:`KeyFileWrongPassphrase`, :class:`KeyFileDamaged` (a file that is not
    a key file, of an unknown version, truncated, or whose secret fails authentication),
    :class:`KeyFileError` for an empty passphrase, and OSError when it cannot be read.
    """
    sealed = _read(path)
    try:
        secret = _passphrase_bytes(passphrase)
    except KeystoreError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    try:
        seed = unseal(sealed, secret, AAD_DOMAIN + sealed.public_key)
    except WrongPassphrase:
        raise KeyFileWrongPassphrase(f"wrong passphrase for the key file {path}") from None
    except InvalidTag:
        raise KeyFileDamaged(
            f"the key file {path} is damaged: the passphrase is right but the encrypted key "
            "fails authentication; restore it from a backup"
        ) from None
    key = AccountKey(seed) if len(seed) == SEED_LEN else None
    if key is None or key.public_key != sealed.public_key:
        raise KeyFileDamaged(f"the key file {path} holds a key that does not match its account")
    return key


def key_file_public_key(path: Path) -> bytes:
    """The public key of the key file ``path``, read without the passphrase.

    Raises :class:`KeyFileDamaged` and OSError as :func:`read_key_file` does.
    """
    return _read(path).public_key


def _read(path: Path) -> Sealed:
    with path.open("rb") as f:
        raw = f.read(KEY_FILE_BYTES_MAX + 1)
    if len(raw) < len(MAGIC) and MAGIC.startswith(raw):
        raise KeyFileDamaged(f"the key file {path} is truncated ({len(raw)} bytes)")
    if not raw.startswith(MAGIC):
        raise KeyFileDamaged(f"{path} is not a toktok key file (it lacks the {MAGIC!r} prefix)")
    version = raw[len(MAGIC)] if len(raw) > len(MAGIC) else None
    if version != FORMAT_VERSION:
        raise KeyFileDamaged(
            f"the key file {path} has format version {version}; this node reads version "
            f"{FORMAT_VERSION} (a newer toktok may read it)"
        )
    if len(raw) > KEY_FILE_BYTES_MAX:
        raise KeyFileDamaged(f"the key file {path} is longer than {KEY_FILE_BYTES_MAX} bytes")
    sealed = _decode(raw)
    if sealed is None:
        raise KeyFileDamaged(
            f"the key file {path} is damaged (truncated, or its checksum or format is wrong); "
            "restore it from a backup"
        )
    return sealed


def _encode(sealed: Sealed) -> bytes:
    head = MAGIC + bytes([FORMAT_VERSION]) + sealed.body()
    return head + hashlib.sha256(head).digest()


def _decode(raw: bytes) -> Sealed | None:
    """The sealed key in ``raw`` (magic and version already checked), or None if it is
    truncated, fails its checksum or is malformed."""
    head, digest = raw[:-DIGEST_BYTES], raw[-DIGEST_BYTES:]
    if len(head) <= len(MAGIC) + 1 or not hmac.compare_digest(
        digest, hashlib.sha256(head).digest()
    ):
        return None
    sealed = decode_body(head[len(MAGIC) + 1 :])
    if sealed is None or len(sealed.public_key) != PUBLIC_KEY_LEN:
        return None
    return sealed if len(sealed.ciphertext) == SEED_LEN + TAG_BYTES else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``, readable by its owner only: whole or not at all."""
    # mkstemp creates the file with mode 0600, in the target's folder so rename is atomic.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk: a lost validator key is a lost seat.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
