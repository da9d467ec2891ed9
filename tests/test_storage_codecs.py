"""Hypothesis round trips for the storage layer's own record encodings.

Each stored record (keystore entry, social register, chunk metadata and counters) must
decode back to what was encoded, and damaged bytes must decode to a clean refusal.
"""

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from storage import keystore
from storage.chunks import _Counters, _decode_meta, _Meta, _three_counts
from storage.errors import DamagedRecord, StoreCorrupt
from storage.social import _Register, _Stamp

CID = bytes([1, 0x55, 0x12, 0x20]) + bytes(32)
u64 = st.integers(0, 2**64 - 1)

entries = st.builds(
    keystore.Sealed,
    n=st.sampled_from([2**k for k in range(10, 21)]),
    r=st.integers(1, keystore.SCRYPT_R_MAX),
    p=st.integers(1, keystore.SCRYPT_P_MAX),
    salt=st.binary(min_size=keystore.SALT_BYTES, max_size=keystore.SALT_BYTES),
    nonce=st.binary(min_size=keystore.NONCE_BYTES, max_size=keystore.NONCE_BYTES),
    check=st.binary(min_size=keystore.CHECK_BYTES, max_size=keystore.CHECK_BYTES),
    public_key=st.binary(min_size=1, max_size=keystore.PUBLIC_KEY_BYTES_MAX),
    ciphertext=st.binary(
        min_size=keystore.TAG_BYTES + 1, max_size=keystore.SECRET_BYTES_MAX + keystore.TAG_BYTES
    ),
)


@given(entries)
def test_keystore_entry_round_trip(entry: keystore.Sealed) -> None:
    assert keystore._decode(entry.encode()) == entry


@given(entries, st.data())
def test_keystore_entry_damage_is_refused(entry: keystore.Sealed, data: st.DataObject) -> None:
    raw = bytearray(entry.encode())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    assert keystore._decode(bytes(raw)) is None


@given(st.booleans(), u64, st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_social_register_round_trip(active: bool, ms: int, mid: bytes, raw: bytes) -> None:
    register = _Register(active, _Stamp(ms, mid), raw)
    assert _Register.decode(register.encode()) == register


@given(st.binary(max_size=64))
def test_social_register_garbage_is_refused_cleanly(raw: bytes) -> None:
    with contextlib.suppress(DamagedRecord):
        _Register.decode(raw)


@given(st.integers(0, 4 * 2**20), u64, st.integers(0, 2**5 - 1).map(lambda m: m & ~1))
def test_chunk_meta_round_trip(size: int, tick: int, mask: int) -> None:
    meta = _Meta(size, tick, mask)
    assert _decode_meta(CID, meta.encode()) == meta


@given(u64, u64, u64)
def test_chunk_counters_round_trip(used: int, count: int, pinned: int) -> None:
    counters = _Counters(used, count, pinned)
    assert _three_counts(counters.encode()) == [used, count, pinned]


@given(st.binary(max_size=64))
def test_chunk_meta_garbage_is_refused_cleanly(raw: bytes) -> None:
    with contextlib.suppress(StoreCorrupt):
        _decode_meta(CID, raw)
