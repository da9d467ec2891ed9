"""Keystore: encrypted account secrets, over both KV backends."""

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from storage.errors import (
    KeystoreEntryDamaged,
    KeystoreEntryMissing,
    KeystoreError,
    StoreCorrupt,
    WrongPassphrase,
)
from storage.keys import keystore_key
from storage.keystore import SCRYPT_N_DEFAULT, SCRYPT_N_MIN, Keystore
from storage.kv import KV, Batch, LevelDBKV, MemoryKV

SECRET = bytes(range(32))
PUBLIC = bytes(range(100, 132))
N_TEST = SCRYPT_N_MIN  # fast; the default is checked once below


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store = MemoryKV() if request.param == "memory" else LevelDBKV(str(tmp_path / "db"))
    yield store
    store.close()


@pytest.fixture
def keystore(kv: KV) -> Keystore:
    ks = Keystore(kv, scrypt_n=N_TEST)
    ks.add("alice", SECRET, PUBLIC, "correct horse")
    return ks


def test_round_trip(keystore: Keystore) -> None:
    assert keystore.unlock("alice", "correct horse") == SECRET
    assert keystore.public_key("alice") == PUBLIC


def test_default_cost_is_recorded_in_the_entry(kv: KV) -> None:
    ks = Keystore(kv)
    ks.add("bob", SECRET, PUBLIC, "pw")
    assert body_of(kv, "bob")["n"] == SCRYPT_N_DEFAULT
    assert ks.unlock("bob", "pw") == SECRET
    # An entry keeps its own cost: a keystore with another default still opens it.
    assert Keystore(kv, scrypt_n=N_TEST).unlock("bob", "pw") == SECRET


def test_names_are_listed_in_order(keystore: Keystore) -> None:
    keystore.add("zoë", SECRET, PUBLIC, "pw")
    keystore.add("bob", SECRET, PUBLIC, "pw")
    assert keystore.names() == ["alice", "bob", "zoë"]


def test_invalid_duplicate_name(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError, match="already"):
        keystore.add("alice", b"other", PUBLIC, "pw")
    assert keystore.unlock("alice", "correct horse") == SECRET


def test_invalid_wrong_passphrase(keystore: Keystore) -> None:
    with pytest.raises(WrongPassphrase, match="wrong passphrase for key 'alice'"):
        keystore.unlock("alice", "correct horse!")


def test_invalid_missing_entry(keystore: Keystore) -> None:
    with pytest.raises(KeystoreEntryMissing, match="'carol'"):
        keystore.unlock("carol", "pw")
    with pytest.raises(KeystoreEntryMissing):
        keystore.public_key("carol")


def test_invalid_empty_passphrase(kv: KV) -> None:
    ks = Keystore(kv, scrypt_n=N_TEST)
    with pytest.raises(KeystoreError, match="empty passphrase"):
        ks.add("alice", SECRET, PUBLIC, "")
    assert ks.names() == []


@pytest.mark.parametrize(
    ("name", "secret", "public"),
    [
        ("", SECRET, PUBLIC),
        (" alice", SECRET, PUBLIC),
        ("al\nice", SECRET, PUBLIC),
        ("a" * 65, SECRET, PUBLIC),
        ("alice", b"", PUBLIC),
        ("alice", bytes(1025), PUBLIC),
        ("alice", SECRET, b""),
        ("alice", SECRET, bytes(257)),
    ],
)
def test_invalid_entry_fields(kv: KV, name: str, secret: bytes, public: bytes) -> None:
    ks = Keystore(kv, scrypt_n=N_TEST)
    with pytest.raises(KeystoreError):
        ks.add(name, secret, public, "pw")
    assert ks.names() == []


@pytest.mark.parametrize("n", [SCRYPT_N_MIN // 2, 3 * SCRYPT_N_MIN, 2**21])
def test_invalid_scrypt_cost(kv: KV, n: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Keystore(kv, scrypt_n=n)


def test_passphrase_is_unicode_normalised(kv: KV) -> None:
    ks = Keystore(kv, scrypt_n=N_TEST)
    ks.add("alice", SECRET, PUBLIC, "caf\u00e9")  # é as one code point
    assert ks.unlock("alice", "cafe\u0301") == SECRET  # e + combining accent


def test_change_passphrase(keystore: Keystore, kv: KV) -> None:
    before = body_of(kv, "alice")
    keystore.change_passphrase("alice", "correct horse", "battery staple")
    after = body_of(kv, "alice")
    assert after["salt"] != before["salt"] and after["nonce"] != before["nonce"]
    assert keystore.unlock("alice", "battery staple") == SECRET
    assert keystore.public_key("alice") == PUBLIC
    with pytest.raises(WrongPassphrase):
        keystore.unlock("alice", "correct horse")
    with pytest.raises(WrongPassphrase):
        keystore.change_passphrase("alice", "correct horse", "x")
    with pytest.raises(KeystoreError, match="empty"):
        keystore.change_passphrase("alice", "battery staple", "")
    assert keystore.unlock("alice", "battery staple") == SECRET


def body_of(kv: KV, name: str) -> dict[str, Any]:
    raw = kv.get(keystore_key(name))
    assert raw is not None
    body = msgpack.unpackb(msgpack.unpackb(raw)[1])
    assert isinstance(body, dict)
    return body


def store_body(kv: KV, name: str, body: dict[str, Any]) -> None:
    """Write ``body`` as entry ``name`` with a valid checksum: a deliberate tamper."""
    packed = msgpack.packb(body)
    batch = Batch()
    batch.put(keystore_key(name), msgpack.packb([1, packed, hashlib.sha256(packed).digest()]))
    kv.write(batch)


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.update(ct=flip(body["ct"])),
        lambda body: body.update(nonce=flip(body["nonce"])),
        lambda body: body.update(pub=flip(body["pub"])),
    ],
)
def test_invalid_tampered_entry(
    keystore: Keystore, kv: KV, tamper: Callable[[dict[str, Any]], None]
) -> None:
    body = body_of(kv, "alice")
    tamper(body)
    store_body(kv, "alice", body)
    with pytest.raises(KeystoreEntryDamaged, match="fails authentication"):
        keystore.unlock("alice", "correct horse")


def test_invalid_entry_moved_to_another_name(keystore: Keystore, kv: KV) -> None:
    store_body(kv, "mallory", body_of(kv, "alice"))
    with pytest.raises(KeystoreEntryDamaged):
        keystore.unlock("mallory", "correct horse")


def test_invalid_tampered_kdf_parameters_read_as_wrong_passphrase(
    keystore: Keystore, kv: KV
) -> None:
    # A different salt with a valid checksum is indistinguishable from a wrong passphrase.
    body = body_of(kv, "alice")
    body["salt"] = flip(body["salt"])
    store_body(kv, "alice", body)
    with pytest.raises(WrongPassphrase):
        keystore.unlock("alice", "correct horse")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.update(n=2**30),  # would allocate 128 GiB
        lambda body: body.update(n=1000),
        lambda body: body.update(r=0),
        lambda body: body.update(salt=b"short"),
        lambda body: body.update(kdf="pbkdf2"),
        lambda body: body.update(extra=1),
        lambda body: body.pop("check"),
        lambda body: body.update(ct=b""),
    ],
)
def test_invalid_malformed_entry(
    keystore: Keystore, kv: KV, tamper: Callable[[dict[str, Any]], None]
) -> None:
    body = body_of(kv, "alice")
    tamper(body)
    store_body(kv, "alice", body)
    with pytest.raises(KeystoreEntryDamaged, match="checksum or format"):
        keystore.unlock("alice", "correct horse")
    with pytest.raises(StoreCorrupt):
        keystore.public_key("alice")


@pytest.mark.parametrize("offset", [0, 5, 40, -1])
def test_invalid_accidental_damage(keystore: Keystore, kv: KV, offset: int) -> None:
    raw = bytearray(kv.get(keystore_key("alice")) or b"")
    raw[offset] ^= 0x10
    batch = Batch()
    batch.put(keystore_key("alice"), bytes(raw))
    kv.write(batch)
    with pytest.raises(KeystoreEntryDamaged, match="checksum or format"):
        keystore.unlock("alice", "correct horse")
