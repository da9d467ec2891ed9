"""Account keys, signatures, account ids and content ids.

Expected values are computed here from the definitions (RFC 4648 base32 written out below,
SHA-256 digests and RFC 8032 vectors as published), not with the code under test.
"""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.accounts import (
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    AccountKey,
    InvalidAccount,
    account_from_text,
    account_to_text,
    verify,
)
from protocol.cid import (
    CID_LEN,
    check_cid,
    chunk_id,
    cid_digest,
    cid_from_text,
    cid_to_text,
    matches,
)
from protocol.errors import InvalidCid
from tests.vectors.samples import ED25519_L, flip_bit

BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

seeds = st.binary(min_size=32, max_size=32)


def base32(data: bytes) -> str:
    """RFC 4648 base32, lower case, without padding: 5 bits per letter, zero-filled at the end."""
    bits = len(data) * 8
    fill = -bits % 5
    number = int.from_bytes(data, "big") << fill
    letters = (bits + fill) // 5
    return "".join(BASE32_ALPHABET[(number >> 5 * (letters - 1 - i)) & 31] for i in range(letters))


def expected_account(public_key: bytes) -> str:
    checksum = hashlib.sha256(b"toktok/v1/account" + public_key).digest()[:4]
    return "tt" + base32(public_key + checksum)


# ---------------------------------------------------------------------------------------
# Account ids.


@given(seeds)
def test_account_text_round_trip(seed: bytes) -> None:
    key = AccountKey(seed)
    assert key.seed == seed
    text = key.account_id
    assert text == account_to_text(key.public_key) == expected_account(key.public_key)
    assert len(text) == 2 + 58
    assert account_from_text(text) == key.public_key
    assert text in repr(key)


@given(st.binary(min_size=PUBLIC_KEY_LEN, max_size=PUBLIC_KEY_LEN))
def test_any_32_bytes_have_a_text_form(public_key: bytes) -> None:
    assert account_from_text(account_to_text(public_key)) == public_key


def test_account_text_ignores_surrounding_white_space() -> None:
    key = AccountKey(bytes(32))
    assert account_from_text(f"  {key.account_id}\n") == key.public_key


ALICE_TEXT = AccountKey(bytes(range(32))).account_id


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("", "must start with 'tt'", id="empty"),
        pytest.param("xx" + ALICE_TEXT[2:], "must start with 'tt'", id="wrong prefix"),
        pytest.param("TT" + ALICE_TEXT[2:], "must start with 'tt'", id="upper-case prefix"),
        pytest.param(ALICE_TEXT.upper().replace("TT", "tt", 1), "not lower-case", id="upper case"),
        pytest.param(ALICE_TEXT[:10] + "A" + ALICE_TEXT[11:], "not lower-case", id="one upper"),
        pytest.param(ALICE_TEXT[:10] + "0" + ALICE_TEXT[11:], "not base32", id="digit 0"),
        pytest.param(ALICE_TEXT[:10] + "1" + ALICE_TEXT[11:], "not base32", id="digit 1"),
        pytest.param(ALICE_TEXT[:10] + "-" + ALICE_TEXT[11:], "not lower-case", id="hyphen"),
        pytest.param(ALICE_TEXT[:10] + "é" + ALICE_TEXT[11:], "not lower-case", id="non-ASCII"),
        pytest.param(ALICE_TEXT + "=", "not lower-case", id="padding"),
        pytest.param(ALICE_TEXT[:-1], "not base32", id="one letter short"),
        pytest.param(ALICE_TEXT[:-2], "wrong length", id="two letters short"),
        pytest.param(ALICE_TEXT + "aa", "wrong length", id="two letters long"),
        pytest.param("tt" + base32(bytes(32)), "wrong length", id="key without checksum"),
        pytest.param("tt" + base32(bytes(40)), "wrong length", id="40 bytes"),
    ],
)
def test_invalid_account_text(text: str, match: str) -> None:
    with pytest.raises(InvalidAccount, match=match):
        account_from_text(text)


@given(seeds, st.integers(2, 59), st.sampled_from(BASE32_ALPHABET))
def test_invalid_account_text_typo(seed: bytes, position: int, letter: str) -> None:
    """Any one mistyped letter is caught: by the checksum, or by the unused last bits."""
    text = AccountKey(seed).account_id
    typo = text[:position] + letter + text[position + 1 :]
    if typo == text:
        return
    with pytest.raises(InvalidAccount, match="checksum does not match"):
        account_from_text(typo)


@pytest.mark.parametrize("size", [0, 31, 33, 36])
def test_invalid_account_key_length(size: int) -> None:
    with pytest.raises(InvalidAccount, match=f"got {size}"):
        account_to_text(bytes(size))


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_invalid_seed_length(size: int) -> None:
    with pytest.raises(ValueError, match=f"got {size}"):
        AccountKey(bytes(size))


# ---------------------------------------------------------------------------------------
# Signatures.

RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
]


@pytest.mark.parametrize(("seed", "public_key", "message", "signature"), RFC8032)
def test_rfc8032_vectors(seed: str, public_key: str, message: str, signature: str) -> None:
    key = AccountKey(bytes.fromhex(seed))
    assert key.public_key.hex() == public_key
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert verify(key.public_key, bytes.fromhex(message), bytes.fromhex(signature))


@given(seeds, st.binary(max_size=300))
def test_sign_verify(seed: bytes, message: bytes) -> None:
    key = AccountKey(seed)
    signature = key.sign(message)
    assert len(signature) == SIGNATURE_LEN
    assert signature == key.sign(message), "Ed25519 signatures are deterministic"
    assert verify(key.public_key, message, signature)


@given(seeds, st.binary(min_size=1, max_size=100), st.data())
def test_invalid_signature_message_bit_flipped(
    seed: bytes, message: bytes, data: st.DataObject
) -> None:
    key = AccountKey(seed)
    signature = key.sign(message)
    index = data.draw(st.integers(0, len(message) - 1))
    bit = data.draw(st.integers(0, 7))
    assert not verify(key.public_key, flip_bit(message, index, bit), signature)


@given(seeds, st.integers(0, SIGNATURE_LEN - 1), st.integers(0, 7))
def test_invalid_signature_bit_flipped(seed: bytes, index: int, bit: int) -> None:
    key = AccountKey(seed)
    signature = key.sign(b"message")
    assert not verify(key.public_key, b"message", flip_bit(signature, index, bit))


@given(seeds, st.integers(0, PUBLIC_KEY_LEN - 1), st.integers(0, 7))
def test_invalid_signature_key_bit_flipped(seed: bytes, index: int, bit: int) -> None:
    key = AccountKey(seed)
    signature = key.sign(b"message")
    assert not verify(flip_bit(key.public_key, index, bit), b"message", signature)


def test_invalid_signature_by_another_key() -> None:
    signature = AccountKey(bytes(32)).sign(b"message")
    assert not verify(AccountKey(bytes([1]) * 32).public_key, b"message", signature)


@pytest.mark.parametrize(
    ("key_len", "signature_len"),
    [(31, 64), (33, 64), (0, 64), (32, 63), (32, 65), (32, 0)],
)
def test_invalid_signature_lengths(key_len: int, signature_len: int) -> None:
    key = AccountKey(bytes(32))
    signature = key.sign(b"message") + bytes(1)
    public_key = key.public_key + bytes(1)
    assert verify(public_key[:32], b"message", signature[:64])
    assert not verify(public_key[:key_len], b"message", signature[:signature_len])


def test_invalid_signature_with_non_canonical_s() -> None:
    """S + L verifies under lax Ed25519 rules; strict verification refuses it."""
    key = AccountKey(bytes(32))
    signature = key.sign(b"message")
    s = int.from_bytes(signature[32:], "little") + ED25519_L
    assert s < 2**256
    assert not verify(key.public_key, b"message", signature[:32] + s.to_bytes(32, "little"))


IDENTITY = bytes([1]) + bytes(31)
"""The encoding of the neutral point, a small-order point."""


def test_invalid_signature_by_small_order_key() -> None:
    """With A = R = the neutral point and S = 0, [S]B = R + [k]A holds for every message;
    lax verifiers accept this signature of anything, strict ones refuse small-order keys."""
    assert not verify(IDENTITY, b"anything", IDENTITY + bytes(32))
    assert not verify(bytes(32), b"anything", IDENTITY + bytes(32))


# ---------------------------------------------------------------------------------------
# Content ids.

KNOWN_CIDS = [
    pytest.param(
        b"",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        id="empty",
    ),
    pytest.param(
        b"hello",
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
        id="hello",
    ),
]


@pytest.mark.parametrize(("data", "sha256_hex", "text"), KNOWN_CIDS)
def test_known_cids(data: bytes, sha256_hex: str, text: str) -> None:
    """What ``ipfs add --cid-version 1 --raw-leaves`` prints for the same bytes."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + bytes.fromhex(sha256_hex)
    assert "b" + base32(binary) == text, "the expected text follows from the definitions"
    cid = chunk_id(data)
    assert cid == binary
    assert cid_to_text(cid) == text
    assert cid_from_text(text) == cid
    assert cid_digest(cid).hex() == sha256_hex


@given(st.binary(max_size=1000))
def test_cid_round_trip(data: bytes) -> None:
    cid = chunk_id(data)
    assert len(cid) == CID_LEN
    check_cid(cid)
    assert cid_digest(cid) == hashlib.sha256(data).digest()
    assert matches(cid, data)
    assert not matches(cid, data + b"\x00")
    text = cid_to_text(cid)
    assert text == "b" + base32(cid)
    assert text.startswith("bafkrei")
    assert cid_from_text(text) == cid


HELLO = chunk_id(b"hello")
HELLO_TEXT = cid_to_text(HELLO)
DIGEST = hashlib.sha256(b"hello").digest()


def cid_text(binary: bytes) -> str:
    return "b" + base32(binary)


def with_last_letter(text: str, offset: int) -> str:
    """``text`` with its last letter moved ``offset`` places along the alphabet."""
    last = BASE32_ALPHABET.index(text[-1])
    return text[:-1] + BASE32_ALPHABET[(last + offset) % 32]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("", "must start with 'b'", id="empty"),
        pytest.param("b", "not base32", id="prefix only"),
        pytest.param(HELLO_TEXT.upper(), "must start with 'b'", id="upper case"),
        pytest.param("b" + HELLO_TEXT[1:].upper(), "not canonical", id="upper-case body"),
        pytest.param(" " + HELLO_TEXT, "must start with 'b'", id="leading space"),
        pytest.param(HELLO_TEXT + "=", "not base32", id="padding"),
        pytest.param(HELLO_TEXT + "a", "not base32", id="one letter long"),
        pytest.param(HELLO_TEXT[:-1], "not base32", id="one letter short"),
        pytest.param(HELLO_TEXT[:10] + "1" + HELLO_TEXT[11:], "not base32", id="digit 1"),
        pytest.param(HELLO_TEXT[:10] + "-" + HELLO_TEXT[11:], "not base32", id="hyphen"),
        pytest.param(with_last_letter(HELLO_TEXT, 1), "not canonical", id="unused bits set"),
        pytest.param("QmRN6wdp1S2A5EtjW9A3M1vKSBuQQGcgvuhoMUoEz4iiT5", "start", id="CIDv0"),
        pytest.param("f" + HELLO.hex(), "must start with 'b'", id="base16 multibase"),
        pytest.param(cid_text(bytes([1, 0x70, 0x12, 0x20]) + DIGEST), "not a CIDv1", id="dag-pb"),
        pytest.param(cid_text(bytes([1, 0x55, 0x13, 0x40]) + DIGEST * 2), "not a", id="sha512"),
        pytest.param(cid_text(bytes([0, 0x55, 0x12, 0x20]) + DIGEST), "not a", id="version 0"),
        pytest.param(cid_text(bytes([1, 0x55, 0x12, 0x1F]) + DIGEST), "not a", id="length 31"),
        pytest.param(cid_text(HELLO[:-1]), "not a CIDv1", id="digest 31 bytes"),
        pytest.param(cid_text(HELLO + b"\x00"), "not a CIDv1", id="digest 33 bytes"),
    ],
)
def test_invalid_cid_text(text: str, match: str) -> None:
    with pytest.raises(InvalidCid, match=match):
        cid_from_text(text)


@pytest.mark.parametrize(
    "cid",
    [
        pytest.param(b"", id="empty"),
        pytest.param(HELLO[:-1], id="short"),
        pytest.param(HELLO + b"\x00", id="long"),
        pytest.param(bytes([1, 0x70]) + HELLO[2:], id="dag-pb"),
        pytest.param(bytes(CID_LEN), id="zeros"),
        pytest.param(DIGEST, id="bare digest"),
    ],
)
def test_invalid_binary_cid(cid: bytes) -> None:
    with pytest.raises(InvalidCid):
        check_cid(cid)
    with pytest.raises(InvalidCid):
        cid_digest(cid)
    with pytest.raises(InvalidCid):
        cid_to_text(cid)
    assert not matches(cid, b"hello")


def test_matches_needs_the_exact_bytes() -> None:
    assert matches(HELLO, b"hello")
    assert not matches(HELLO, b"hellO")
    assert not matches(HELLO[:-1], b"hello")
