"""Inputs that break exactly one rule, for the tests and for tests/vectors/invalid.json.

:data:`INVALID_MESSAGES` are envelopes, each breaking one validation rule of
protocol/validate.py (named by its comment's text); :data:`CODEC_INVALID` are byte strings
that are not canonical msgpack. Both tables feed the unit tests (which also check each
verdict's message against ``match``) and the language-neutral vector files.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

from protocol import codec
from protocol.envelope import signing_input
from protocol.errors import Ignore, Reject, Verdict
from protocol.kinds import BODY_BYTES_MAX, ChunkRef
from protocol.validate import DURATION_SLACK_MS, EPOCH_MS, FUTURE_MS_MAX, OFFER_LIFETIME_MS_MAX
from tests.vectors.samples import (
    BOB,
    MALLORY,
    MANIFEST_ID,
    NOW_MS,
    PEER_ID,
    flip_bit,
    reference_encode,
    sample_follow,
    sample_manifest,
    sample_offer,
    sample_profile,
    sample_reaction,
    sample_tombstone,
    sample_unfollow,
    sealed,
    sign_body,
    sign_obj,
    sign_record,
)


@dataclasses.dataclass(frozen=True)
class InvalidMessage:
    """An envelope that breaks one validation rule, and how a node must answer it."""

    name: str
    rule: str
    """The rule's text, exactly as its comment in protocol/validate.py words it."""
    verdict: type[Verdict]
    match: str
    """A regular expression the verdict's message matches."""
    raw: bytes


R_ENVELOPE_SIZE = "The envelope is at most ENVELOPE_BYTES_MAX bytes."
R_ENVELOPE = "The envelope is the canonical encoding of an envelope record."
R_VERSION = "The envelope version is one this node speaks."
R_KIND = "The kind is a known kind."
R_BODY_SIZE = "The body is at most its kind's size limit."
R_BODY = "The body is the canonical encoding of the kind's record."
R_SIGNER = "The signer is the record's author."
R_SIGNATURE = "The signature verifies over the domain tag and the body bytes received."
R_FUTURE = "The record is not from more than FUTURE_MS_MAX in the future."
R_EPOCH = "The record is not older than the protocol epoch."
R_TITLE = "The title is not blank and holds no control characters."
R_DESCRIPTION = "The description holds no control characters other than newlines."
R_LICENSE = "The license holds no control characters."
R_TAGS = "Tags are distinct, non-empty, without ASCII capitals or white space."
R_REMIX = "remix_of is empty or a message id."
R_RENDITION_NAMES = "Rendition names are distinct and hold no control characters."
R_CHUNK_CIDS = "The thumbnail, init and media segments are named by content ids."
R_CODECS = "The codecs string uses only letters, digits, dots and commas."
R_DURATION = "Each rendition's segments add up to the manifest's duration."
R_NAME = "The name holds no control characters."
R_BIO = "The bio holds no control characters other than newlines."
R_AVATAR = "The avatar is empty or a content id."
R_REASON = "The reason holds no control characters."
R_FOLLOW_SELF = "An account does not follow itself."
R_REACTION = "The reaction is one of REACTIONS."
R_TOMBSTONE_TARGET = "Only the manifest's author withdraws it."
R_OFFER_SHOP = "The shop is an account other than the offer's author."
R_OFFER_TOKENS = "The token sold differs from the token it is paid in."
R_OFFER_EXPIRY = "The offer expires after its creation, within OFFER_LIFETIME_MS_MAX."
R_OFFER_COST = "A fill of amount_max costs at most OFFER_AMOUNT_MAX of the price token."
R_OFFER_PEER = "The peer is a libp2p peer id: an identity or a SHA-256 multihash."


def _manifest(**changes: Any) -> bytes:
    return sealed(sample_manifest(**changes))


def _invalid_messages() -> Iterator[InvalidMessage]:
    msg = InvalidMessage
    follow = sample_follow()
    follow_obj = codec.record_to_obj(follow)
    follow_raw = sealed(follow)
    follow_body = codec.encode_record(follow)
    envelope_obj = codec.decode(follow_raw, bytes_max=len(follow_raw))
    yield msg("envelope-not-msgpack", R_ENVELOPE, Reject, "malformed envelope", b"\xc1")
    yield msg("envelope-trailing-byte", R_ENVELOPE, Reject, "trailing bytes", follow_raw + b"\x00")
    yield msg(
        "envelope-keys-unsorted",
        R_ENVELOPE,
        Reject,
        "not sorted",
        reference_encode(envelope_obj, reverse_keys=True),
    )
    yield msg(
        "envelope-unknown-field",
        R_ENVELOPE,
        Reject,
        "unknown field 'x'",
        sign_record(BOB, follow, x=1),
    )
    yield msg(
        "envelope-signature-63-bytes",
        R_ENVELOPE,
        Reject,
        "sig: 63 bytes, at least 64 required",
        sign_record(BOB, follow, sig=BOB.sign(signing_input("follow", follow_body))[:63]),
    )
    yield msg(
        "envelope-version-2",
        R_VERSION,
        Reject,
        "unsupported envelope version 2",
        sign_record(BOB, follow, v=2),
    )
    yield msg(
        "kind-unknown", R_KIND, Reject, "unknown kind 'comment'", sign_body(BOB, "comment", b"")
    )
    yield msg(
        "body-not-canonical",
        R_BODY,
        Reject,
        "malformed follow body: not the canonical encoding",
        sign_body(BOB, "follow", reference_encode(follow_obj, wide=frozenset({"bin"}))),
    )
    yield msg(
        "body-unknown-field",
        R_BODY,
        Reject,
        "malformed follow body: Follow: unknown field 'note'",
        sign_obj(BOB, "follow", {**follow_obj, "note": "hi"}),
    )
    yield msg(
        "body-oversize",
        R_BODY_SIZE,
        Reject,
        f"exceeds the limit of {BODY_BYTES_MAX['follow']}",
        sign_obj(BOB, "follow", {**follow_obj, "pad": bytes(200)}),
    )
    yield msg(
        "body-of-another-kind",
        R_BODY,
        Reject,
        "malformed reaction body: Reaction: unknown field 'target'",
        sign_body(BOB, "reaction", follow_body),
    )
    yield msg(
        "signer-not-author",
        R_SIGNER,
        Reject,
        "follow signed by an account other than its author",
        sign_record(MALLORY, follow),
    )
    yield msg(
        "signature-flipped-bit",
        R_SIGNATURE,
        Reject,
        "bad signature on follow",
        flip_bit(follow_raw, follow_raw.index(BOB.sign(signing_input("follow", follow_body)))),
    )
    yield msg(
        "follow-relabelled-unfollow",
        R_SIGNATURE,
        Reject,
        "bad signature on unfollow",
        sign_record(BOB, follow, kind="unfollow"),
    )
    yield msg(
        "created-in-future",
        R_FUTURE,
        Ignore,
        "in the future",
        sealed(sample_follow(created_ms=NOW_MS + FUTURE_MS_MAX + 1)),
    )
    yield msg(
        "created-before-epoch",
        R_EPOCH,
        Reject,
        "before the protocol epoch",
        sealed(sample_follow(created_ms=EPOCH_MS - 1)),
    )
    yield msg("title-blank", R_TITLE, Reject, "title is blank", _manifest(title=" \u3000 "))
    yield msg(
        "title-bidi-override",
        R_TITLE,
        Reject,
        "title contains the control character '\\\\u202e'",
        _manifest(title="Sunrise \u202eover"),
    )
    yield msg(
        "description-bell",
        R_DESCRIPTION,
        Reject,
        "description contains the control character",
        _manifest(description="ding\x07"),
    )
    yield msg(
        "license-tab",
        R_LICENSE,
        Reject,
        "license contains the control character",
        _manifest(license="CC-BY\t4.0"),
    )
    yield msg(
        "tag-upper-case", R_TAGS, Reject, "tag 'Sunrise' must be", _manifest(tags=("Sunrise",))
    )
    yield msg("tag-repeated", R_TAGS, Reject, "tags repeat", _manifest(tags=("sun", "sun")))
    yield msg(
        "remix-of-16-bytes",
        R_REMIX,
        Reject,
        "remix_of must be empty or 32 bytes",
        _manifest(remix_of=MANIFEST_ID[:16]),
    )
    yield msg(
        "rendition-names-repeat",
        R_RENDITION_NAMES,
        Reject,
        "rendition names repeat",
        _manifest(renditions=sample_manifest().renditions * 2),
    )
    yield msg(
        "thumbnail-not-cid",
        R_CHUNK_CIDS,
        Reject,
        "thumbnail: not a CIDv1 raw sha2-256 id",
        _manifest(thumbnail=ChunkRef(cid=bytes(36), size=24_000)),
    )
    yield msg(
        "codecs-with-space",
        R_CODECS,
        Reject,
        "rendition 720p: codecs .* malformed",
        _manifest(
            renditions=(
                dataclasses.replace(
                    sample_manifest().renditions[0], codecs="avc1.64001f, mp4a.40.2"
                ),
            )
        ),
    )
    yield msg(
        "segments-too-short",
        R_DURATION,
        Reject,
        "rendition 720p: segments last 5500 ms, manifest says 6501 ms",
        _manifest(duration_ms=5500 + DURATION_SLACK_MS + 1),
    )
    yield msg(
        "name-newline",
        R_NAME,
        Reject,
        "name contains the control character",
        sealed(sample_profile(name="Alice\n")),
    )
    yield msg(
        "bio-carriage-return",
        R_BIO,
        Reject,
        "bio contains the control character",
        sealed(sample_profile(bio="line\r\nline")),
    )
    yield msg(
        "avatar-not-cid",
        R_AVATAR,
        Reject,
        "avatar: not a CIDv1 raw sha2-256 id",
        sealed(sample_profile(avatar=bytes(36))),
    )
    yield msg(
        "reason-escape",
        R_REASON,
        Reject,
        "reason contains the control character",
        sealed(sample_tombstone(reason="\x1b[31mred")),
    )
    yield msg(
        "follow-self",
        R_FOLLOW_SELF,
        Reject,
        "follow targets its own author",
        sealed(sample_follow(target=BOB.public_key)),
    )
    yield msg(
        "unfollow-self",
        R_FOLLOW_SELF,
        Reject,
        "unfollow targets its own author",
        sealed(sample_unfollow(target=BOB.public_key)),
    )
    yield msg(
        "reaction-unknown",
        R_REACTION,
        Reject,
        "unknown reaction 'love'",
        sealed(sample_reaction(reaction="love")),
    )


def _invalid_offers() -> Iterator[InvalidMessage]:
    msg = InvalidMessage
    offer = sample_offer()
    yield msg(
        "offer-shop-is-author",
        R_OFFER_SHOP,
        Reject,
        "an offer's shop is its author's own account",
        sealed(sample_offer(shop=offer.author)),
    )
    yield msg(
        "offer-token-for-itself",
        R_OFFER_TOKENS,
        Reject,
        "an offer of a token for itself",
        sealed(sample_offer(price_token=offer.token)),
    )
    for name, expires_ms, stands in [
        ("offer-expires-when-created", offer.created_ms, "0"),
        ("offer-expires-before-created", offer.created_ms - 1, "-1"),
        ("offer-stands-too-long", offer.created_ms + OFFER_LIFETIME_MS_MAX + 1, r"\d+"),
    ]:
        yield msg(
            name,
            R_OFFER_EXPIRY,
            Reject,
            f"an offer stands for {stands} ms",
            sealed(sample_offer(expires_ms=expires_ms)),
        )
    yield msg(
        "offer-fill-costs-too-much",
        R_OFFER_COST,
        Reject,
        "a fill of amount_max costs more than",
        sealed(sample_offer(price_num=2**62, price_den=1, amount_max=2)),
    )
    for name, peer in [
        ("offer-peer-not-multihash", b"\x01" + PEER_ID[1:]),
        ("offer-peer-wrong-length", PEER_ID[:-1]),
        ("offer-peer-sha256-short", b"\x12\x20" + bytes(31)),
    ]:
        yield msg(
            name,
            R_OFFER_PEER,
            Reject,
            "an offer's peer is not a libp2p peer id",
            sealed(sample_offer(peer=peer)),
        )


INVALID_MESSAGES: list[InvalidMessage] = [*_invalid_messages(), *_invalid_offers()]
"""Small envelopes that each break one rule: written to invalid.json, tested one by one."""


@dataclasses.dataclass(frozen=True)
class InvalidBytes:
    """Bytes that must not decode as canonical msgpack within ``bytes_max``."""

    name: str
    hex: str
    bytes_max: int
    match: str
    """A regular expression the DecodeError's message matches."""


_NOT_CANONICAL = "not the canonical encoding"
_MALFORMED = "malformed msgpack"

CODEC_INVALID: list[InvalidBytes] = [
    InvalidBytes(*row)
    for row in [
        ("empty input", "", 100, _MALFORMED),
        ("truncated str", "a261", 100, _MALFORMED),
        ("reserved byte c1", "c1", 100, _MALFORMED),
        ("trailing bytes", "0100", 100, "trailing bytes"),
        ("oversize input", "a3616263", 3, "4 bytes exceeds the limit of 3"),
        ("nil", "c0", 100, "nil is not allowed"),
        ("nil in array", "91c0", 100, "nil is not allowed"),
        ("float32", "ca3f800000", 100, "floats are not allowed"),
        ("float64", "cb3ff0000000000000", 100, "floats are not allowed"),
        ("fixext1", "d40100", 100, "extension type 1 is not allowed"),
        ("ext8", "c7010500", 100, "extension type 5 is not allowed"),
        ("timestamp ext -1", "d6ff00000001", 100, r"extension type -1 \(timestamp\)"),
        ("int key", "810101", 100, _MALFORMED),
        ("bin key", "81c4016101", 100, "map keys must be strings"),
        ("array key", "819001", 100, _MALFORMED),
        ("keys unsorted", "82a16201a16102", 100, "not sorted"),
        ("keys unsorted by UTF-8 bytes", "82a2c3a901a16202", 100, "not sorted"),
        ("duplicate key", "82a16101a16101", 100, _NOT_CANONICAL),
        ("uint8 for 1", "cc01", 100, _NOT_CANONICAL),
        ("uint16 for 200", "cd00c8", 100, _NOT_CANONICAL),
        ("uint32 for 1", "ce00000001", 100, _NOT_CANONICAL),
        ("uint64 for 2^32-1", "cf00000000ffffffff", 100, _NOT_CANONICAL),
        ("int8 for 1", "d001", 100, _NOT_CANONICAL),
        ("int8 for -1", "d0ff", 100, _NOT_CANONICAL),
        ("int16 for -100", "d1ff9c", 100, _NOT_CANONICAL),
        ("int32 for -1", "d2ffffffff", 100, _NOT_CANONICAL),
        ("int64 for -1", "d3ffffffffffffffff", 100, _NOT_CANONICAL),
        ("int64 for 2^63-1", "d37fffffffffffffff", 100, _NOT_CANONICAL),
        ("str8 for 1 byte", "d90161", 100, _NOT_CANONICAL),
        ("str16 for 1 byte", "da000161", 100, _NOT_CANONICAL),
        ("str32 for 1 byte", "db0000000161", 100, _NOT_CANONICAL),
        ("bin16 for 1 byte", "c5000161", 100, _NOT_CANONICAL),
        ("bin32 for 1 byte", "c60000000161", 100, _NOT_CANONICAL),
        ("array16 for 1 item", "dc000101", 100, _NOT_CANONICAL),
        ("array32 for 1 item", "dd0000000101", 100, _NOT_CANONICAL),
        ("map16 for 1 pair", "de0001a16101", 100, _NOT_CANONICAL),
        ("map32 for 1 pair", "df00000001a16101", 100, _NOT_CANONICAL),
        ("invalid UTF-8 byte", "a1ff", 100, _MALFORMED),
        ("overlong UTF-8", "a2c0af", 100, _MALFORMED),
        ("UTF-8 surrogate", "a3eda080", 100, _MALFORMED),
        ("depth 9", "91" * 9 + "01", 100, "nested deeper than 8"),
        ("depth 9 in maps", "81a161" * 9 + "01", 100, "nested deeper than 8"),
    ]
]
