"""Sample keys, records and envelope builders shared by the protocol tests and the vectors.

Every sample is valid at :data:`NOW_MS` as it stands; keyword arguments replace fields, so a
test breaks one rule at a time (``sample_follow(target=BOB.public_key)``). The envelope
builders sign any bytes under any kind and can override any envelope field, which is how the
invalid messages of tests/vectors/invalid_cases.py are made. Also here: a second msgpack
encoder written from docs/protocol.md (:func:`reference_encode`), and the list of validation
rules read from protocol/validate.py (:func:`validation_rules`). Nothing here may change
without regenerating the vectors (``python -m tests.vectors.make_vectors``).
"""

import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import protocol.validate
from protocol import codec
from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import ENVELOPE_VERSION, message_id, seal, signing_input
from protocol.kinds import (
    ChunkRef,
    Follow,
    Offer,
    Profile,
    Reaction,
    Record,
    Rendition,
    SegmentRef,
    Tombstone,
    Unfollow,
    VideoManifest,
    View,
)

NOW_MS = 1_700_000_000_000
"""The receiver's clock in every vector: 2023-11-14T22:13:20Z."""
CREATED_MS = NOW_MS - 600_000

ALICE = AccountKey(bytes(range(32)))
"""The creator: seed 00 01 02 ... 1f."""
BOB = AccountKey(bytes(range(32, 64)))
"""A fan: seed 20 21 ... 3f."""
MALLORY = AccountKey(bytes(range(64, 96)))
"""Signs what is not hers: seed 40 41 ... 5f."""
RFC8032_TEST1 = AccountKey(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
"""The key of RFC 8032 section 7.1, TEST 1, so other Ed25519 libraries can be cross-checked."""
KEYS = {key.public_key: key for key in (ALICE, BOB, MALLORY)}
ED25519_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 base point: a strict verifier wants a signature's S below it."""


# ---------------------------------------------------------------------------------------
# Sample records: valid as they stand at NOW_MS.


def fake_chunk(label: str, size: int) -> bytes:
    """Stand-in chunk bytes: the label's UTF-8 bytes repeated and cut to ``size`` bytes."""
    unit = label.encode("utf-8")
    return (unit * (size // len(unit) + 1))[:size]


@functools.cache
def chunk_ref(label: str, size: int) -> ChunkRef:
    return ChunkRef(cid=chunk_id(fake_chunk(label, size)), size=size)


@functools.cache
def rendition(name: str, width: int, height: int, bandwidth: int, *durations_ms: int) -> Rendition:
    """A rendition whose segments are sized as ``bandwidth`` bits/s times their duration."""
    return Rendition(
        name=name,
        width=width,
        height=height,
        bandwidth=bandwidth,
        codecs="avc1.64001f,mp4a.40.2",
        init=chunk_ref(f"{name} init", 812),
        segments=tuple(
            SegmentRef(
                cid=chunk_id(fake_chunk(f"{name} segment {i}", bandwidth * ms // 8000)),
                size=bandwidth * ms // 8000,
                duration_ms=ms,
            )
            for i, ms in enumerate(durations_ms)
        ),
    )


SOURCE = fake_chunk("original upload", 1_500_000)


def sample_manifest(**changes: Any) -> VideoManifest:
    """ALICE's video: 5.5 s, one 720p rendition in three segments."""
    manifest = VideoManifest(
        author=ALICE.public_key,
        created_ms=CREATED_MS,
        title="Sunrise over the harbour",
        description="Shot on a phone at 6 am.\nNo filter.",
        tags=("sunrise", "harbour"),
        license="CC-BY-4.0",
        remix_of=b"",
        duration_ms=5500,
        source_sha256=hashlib.sha256(SOURCE).digest(),
        source_size=len(SOURCE),
        thumbnail=chunk_ref("thumbnail", 24_000),
        renditions=(rendition("720p", 720, 1280, 2_500_000, 2000, 2000, 1500),),
    )
    return dataclasses.replace(manifest, **changes)


MANIFEST_ID = message_id(seal(ALICE, sample_manifest()).raw)
"""The message id of ``sample_manifest()``: what tombstones, reactions and views name."""


def sample_remix(**changes: Any) -> VideoManifest:
    """ALICE remixes her own video: two renditions, non-ASCII text, empty strings."""
    remix = sample_manifest(
        created_ms=CREATED_MS + 60_000,
        title="🌅 Sonnenaufgang — remix",
        description="",
        tags=("sunrise", "café", "日の出"),
        license="",
        remix_of=MANIFEST_ID,
        duration_ms=4000,
        renditions=(
            rendition("360p", 360, 640, 600_000, 2000, 2000),
            rendition("720p", 720, 1280, 2_500_000, 2000, 2000),
        ),
    )
    return dataclasses.replace(remix, **changes)


def sample_profile(**changes: Any) -> Profile:
    """ALICE's profile, every field filled."""
    profile = Profile(
        author=ALICE.public_key,
        created_ms=CREATED_MS,
        name="Alice Ångström 🎬",
        bio="Filmmaker.\nHarbour videos every morning.",
        avatar=chunk_id(fake_chunk("avatar", 5000)),
    )
    return dataclasses.replace(profile, **changes)


def sample_tombstone(**changes: Any) -> Tombstone:
    """ALICE withdraws ``sample_manifest()``."""
    tombstone = Tombstone(
        author=ALICE.public_key,
        created_ms=CREATED_MS + 120_000,
        manifest=MANIFEST_ID,
        reason="posted by mistake",
    )
    return dataclasses.replace(tombstone, **changes)


def sample_follow(**changes: Any) -> Follow:
    """BOB follows ALICE."""
    follow = Follow(author=BOB.public_key, created_ms=CREATED_MS, target=ALICE.public_key)
    return dataclasses.replace(follow, **changes)


def sample_unfollow(**changes: Any) -> Unfollow:
    """BOB stops following ALICE."""
    unfollow = Unfollow(
        author=BOB.public_key, created_ms=CREATED_MS + 300_000, target=ALICE.public_key
    )
    return dataclasses.replace(unfollow, **changes)


def sample_reaction(**changes: Any) -> Reaction:
    """BOB likes ``sample_manifest()``."""
    reaction = Reaction(
        author=BOB.public_key, created_ms=CREATED_MS + 1000, manifest=MANIFEST_ID, reaction="like"
    )
    return dataclasses.replace(reaction, **changes)


def sample_view(**changes: Any) -> View:
    """BOB watched ``sample_manifest()`` for 4.2 s."""
    view = View(
        author=BOB.public_key, created_ms=CREATED_MS + 1500, manifest=MANIFEST_ID, watched_ms=4200
    )
    return dataclasses.replace(view, **changes)


NETWORK_ID = hashlib.sha256(b"sample genesis").digest()
"""The network id the sample offer names (a genesis hash in a real network)."""
ART_TOKEN = hashlib.sha256(b"sample ART token").digest()
"""The id of ALICE's token in the sample offer (a create-token order's id in a network)."""
PEER_ID = bytes.fromhex("002408011220") + bytes(range(100, 132))
"""A libp2p Ed25519 peer id: the identity multihash of the protobuf-encoded public key."""
SHOP = AccountKey(bytes(range(96, 128)))
"""ALICE's shop account: seed 60 61 ... 7f."""


def sample_offer(**changes: Any) -> Offer:
    """ALICE sells ART from her shop: 5/2 platform base units per ART base unit, a day."""
    offer = Offer(
        author=ALICE.public_key,
        created_ms=CREATED_MS,
        network=NETWORK_ID,
        shop=SHOP.public_key,
        token=ART_TOKEN,
        price_token=bytes(32),
        price_num=5,
        price_den=2,
        amount_max=100,
        expires_ms=CREATED_MS + 86_400_000,
        peer=PEER_ID,
    )
    return dataclasses.replace(offer, **changes)


SAMPLES: dict[str, Callable[..., Record]] = {
    "manifest": sample_manifest,
    "profile": sample_profile,
    "tombstone": sample_tombstone,
    "follow": sample_follow,
    "unfollow": sample_unfollow,
    "reaction": sample_reaction,
    "view": sample_view,
    "offer": sample_offer,
}
"""One builder of a valid record per kind; keyword arguments replace fields."""


# ---------------------------------------------------------------------------------------
# Envelopes, well formed or not.


def key_of(record: Record) -> AccountKey:
    """The key of a sample record's author."""
    return KEYS[record.author]


def sealed(record: Record) -> bytes:
    """The envelope bytes of ``record``, signed by its author, even when the record breaks a
    field limit (``seal`` refuses those: invalid cases need them signed)."""
    return sign_record(key_of(record), record)


def sign_body(key: AccountKey, kind: str, body: bytes, /, **fields: Any) -> bytes:
    """Envelope bytes for any ``body`` signed by ``key`` under ``kind``.

    ``fields`` replace envelope fields after signing (``v``, ``kind``, ``signer``, ``sig``,
    ``body``) or add unknown ones; values need not respect the envelope's limits.
    """
    envelope = {
        "v": ENVELOPE_VERSION,
        "kind": kind,
        "signer": key.public_key,
        "body": body,
        "sig": key.sign(signing_input(kind, body)),
    }
    envelope.update(fields)
    return codec.encode(envelope)


def sign_record(key: AccountKey, record: Record, /, **fields: Any) -> bytes:
    """Like :func:`sign_body` with the canonical body of ``record``."""
    return sign_body(key, record.KIND, codec.encode_record(record), **fields)


def sign_obj(key: AccountKey, kind: str, obj: dict[str, Any]) -> bytes:
    """Sign the canonical encoding of a plain map as the body of ``kind``."""
    return sign_body(key, kind, codec.encode(obj))


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    """``data`` with one bit of byte ``index`` flipped."""
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


def validation_rules() -> list[tuple[str, str]]:
    """(verdict, text) of every ``# [REJECT]``/``# [IGNORE]`` comment in protocol/validate.py."""
    source = Path(protocol.validate.__file__).read_text(encoding="utf-8")
    pattern = re.compile(r"^\s*# \[(REJECT|IGNORE)\] (.+?)\s*$", re.MULTILINE)
    return [(m.group(1).lower(), m.group(2)) for m in pattern.finditer(source)]


# ---------------------------------------------------------------------------------------
# A second msgpack encoder, written from docs/protocol.md rather than from protocol/codec.py.


def _head(
    n: int, fixed: tuple[int, int] | None, codes: tuple[int | None, int, int], wide: bool
) -> bytes:
    """The type byte and length of a str, bin, array or map of ``n`` bytes or items.

    ``fixed`` is (base, largest n) of the fix form, ``codes`` the 8-, 16- and 32-bit forms.
    """
    if not wide:
        if fixed is not None and n <= fixed[1]:
            return bytes([fixed[0] | n])
        if codes[0] is not None and n < 2**8:
            return bytes([codes[0], n])
        if n < 2**16:
            return bytes([codes[1]]) + n.to_bytes(2, "big")
    return bytes([codes[2]]) + n.to_bytes(4, "big")


def _int(value: int, wide: bool) -> bytes:
    if wide:
        code = 0xCF if value >= 0 else 0xD3
        return bytes([code]) + value.to_bytes(8, "big", signed=value < 0)
    if -32 <= value < 128:
        return (value & 0xFF).to_bytes(1, "big")
    if value >= 0:
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if value < 2 ** (8 * size):
                return bytes([code]) + value.to_bytes(size, "big")
    for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if value >= -(2 ** (8 * size - 1)):
            return bytes([code]) + value.to_bytes(size, "big", signed=True)
    raise TypeError(f"integer out of the 64-bit range: {value}")


def reference_encode(
    value: Any, *, wide: frozenset[str] = frozenset(), reverse_keys: bool = False
) -> bytes:
    """msgpack as docs/protocol.md specifies it; with no options, the canonical bytes.

    ``wide`` names families ("int", "str", "bin", "array", "map") to write in their widest
    form instead of the shortest, and ``reverse_keys`` writes map keys in descending order:
    two ways to make bytes that decode to the right value but are not canonical.
    """
    again = functools.partial(reference_encode, wide=wide, reverse_keys=reverse_keys)
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return _int(value, "int" in wide)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _head(len(data), (0xA0, 31), (0xD9, 0xDA, 0xDB), "str" in wide) + data
    if isinstance(value, bytes):
        return _head(len(value), None, (0xC4, 0xC5, 0xC6), "bin" in wide) + value
    if isinstance(value, list | tuple):
        head = _head(len(value), (0x90, 15), (None, 0xDC, 0xDD), "array" in wide)
        return head + b"".join(again(item) for item in value)
    if isinstance(value, dict):
        keys = sorted(value, key=str.encode, reverse=reverse_keys)
        head = _head(len(value), (0x80, 15), (None, 0xDE, 0xDF), "map" in wide)
        return head + b"".join(again(key) + again(value[key]) for key in keys)
    raise TypeError(f"type {type(value).__name__} has no canonical encoding")
