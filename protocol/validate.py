"""Validation of signed messages: pure functions of the bytes and the time.

``validate_message`` is what a gossip validator, the sync service and the stores call on
every message from outside. It raises :class:`Reject` (the sender broke a rule: penalise
it) or :class:`Ignore` (not acceptable now, no fault: a timestamp from the future) and
otherwise returns the decoded :class:`SignedMessage`. One ``[REJECT]`` or ``[IGNORE]``
comment stands above each rule; docs/protocol.md lists them all.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

from protocol.accounts import verify
from protocol.cid import CID_PREFIX, check_cid
from protocol.codec import decode_record
from protocol.envelope import (
    ENVELOPE_BYTES_MAX,
    ENVELOPE_VERSION,
    Envelope,
    SignedMessage,
    decode_envelope,
    signing_input,
)
from protocol.errors import DecodeError, Ignore, InvalidCid, Reject
from protocol.kinds import (
    BODY_BYTES_MAX,
    MESSAGE_ID_LEN,
    OFFER_AMOUNT_MAX,
    REACTIONS,
    RECORD_TYPES,
    Follow,
    Offer,
    Profile,
    Reaction,
    Record,
    Tombstone,
    Unfollow,
    VideoManifest,
    View,
    offer_cost,
)

FUTURE_MS_MAX = 5 * 60 * 1000
"""How far ahead of the receiver's clock a message's ``created_ms`` may be."""
EPOCH_MS = 1_577_836_800_000
"""2020-01-01T00:00:00Z: no message of this protocol is older."""
DURATION_SLACK_MS = 1000
"""How far a rendition's summed segment durations may stray from the manifest's duration."""
CONTROL_CHARS = frozenset(
    [chr(c) for c in range(0x00, 0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)
"""C0 and C1 controls and the bidirectional embedding, override and isolate characters.

A fixed list rather than a Unicode category, so that nodes built on different Unicode
versions reach the same verdict on the same text."""
WHITE_SPACE = frozenset(
    [chr(c) for c in range(0x09, 0x0E)]
    + [" ", "\u0085", "\u00a0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)
"""Unicode's White_Space property, which the Unicode stability policy keeps fixed."""
OFFER_LIFETIME_MS_MAX = 30 * 24 * 3600 * 1000
"""The longest an offer may stand (30 days): a creator renews an offer by publishing another."""
IDENTITY_MULTIHASH_BYTES_MAX = 42
"""libp2p inlines a public key in its peer id (an identity multihash) up to this length."""
_ASCII_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_CLOCK_MS = 2**62
"""A time after every valid timestamp, for re-checking stored messages."""
_CODECS_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,")


def verify_envelope(raw: bytes) -> Envelope:
    """Decode an envelope and check its signature over the exact body bytes received.

    This is all the envelope layer checks: that the bytes are a well-formed envelope of a
    known kind and that ``signer`` signed ``body`` under the kind's domain tag. The body is
    not decoded. Raises :class:`Reject`.
    """
    # [REJECT] The envelope is at most ENVELOPE_BYTES_MAX bytes.
    if len(raw) > ENVELOPE_BYTES_MAX:
        raise Reject(f"envelope of {len(raw)} bytes exceeds {ENVELOPE_BYTES_MAX}")
    # [REJECT] The envelope is the canonical encoding of an envelope record.
    try:
        envelope = decode_envelope(raw)
    except DecodeError as exc:
        raise Reject(f"malformed envelope: {exc}") from exc
    # [REJECT] The envelope version is one this node speaks.
    if envelope.v != ENVELOPE_VERSION:
        raise Reject(f"unsupported envelope version {envelope.v}")
    # [REJECT] The kind is a known kind.
    if envelope.kind not in RECORD_TYPES:
        raise Reject(f"unknown kind {envelope.kind!r}")
    # [REJECT] The body is at most its kind's size limit.
    body_max = BODY_BYTES_MAX[envelope.kind]
    if len(envelope.body) > body_max:
        raise Reject(
            f"malformed {envelope.kind} body: {len(envelope.body)} bytes exceeds the limit of "
            f"{body_max}"
        )
    # [REJECT] The signature verifies over the domain tag and the body bytes received.
    if not verify(envelope.signer, signing_input(envelope.kind, envelope.body), envelope.sig):
        raise Reject(f"bad signature on {envelope.kind}")
    return envelope


def validate_message(raw: bytes, now_ms: int) -> SignedMessage:
    """Decode and check a message received from outside, at local time ``now_ms``.

    Raises :class:`Reject` or :class:`Ignore`; returns the message otherwise.
    """
    envelope = verify_envelope(raw)
    # [REJECT] The body is the canonical encoding of the kind's record.
    try:
        record = decode_record(
            RECORD_TYPES[envelope.kind], envelope.body, bytes_max=BODY_BYTES_MAX[envelope.kind]
        )
    except DecodeError as exc:
        raise Reject(f"malformed {envelope.kind} body: {exc}") from exc
    # [REJECT] The signer is the record's author.
    if envelope.signer != record.author:
        raise Reject(f"{envelope.kind} signed by an account other than its author")
    validate_record(record, now_ms)
    return SignedMessage(raw=raw, envelope=envelope, record=record)


def validate_record(record: Record, now_ms: int) -> None:
    """Apply the rules of the record's kind. Raises :class:`Reject` or :class:`Ignore`."""
    _VALIDATORS[type(record)](record, now_ms)


def validate_created(created_ms: int, now_ms: int) -> None:
    """The timestamp rules every kind shares."""
    # [IGNORE] The record is not from more than FUTURE_MS_MAX in the future.
    if created_ms > now_ms + FUTURE_MS_MAX:
        raise Ignore(f"created {created_ms - now_ms} ms in the future (limit {FUTURE_MS_MAX})")
    # [REJECT] The record is not older than the protocol epoch.
    if created_ms < EPOCH_MS:
        raise Reject(f"created_ms {created_ms} is before the protocol epoch {EPOCH_MS}")


def _char_class(chars: frozenset[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


_CONTROL_RE = re.compile(_char_class(CONTROL_CHARS))
_CONTROL_BUT_NEWLINE_RE = re.compile(_char_class(CONTROL_CHARS - {"\n"}))
_NOT_WHITE_SPACE_RE = re.compile("[^" + _char_class(WHITE_SPACE)[1:])
_TAG_BAD_RE = re.compile(_char_class(WHITE_SPACE | _ASCII_UPPER))


def _check_text(what: str, text: str, *, multiline: bool = False) -> None:
    found = (_CONTROL_BUT_NEWLINE_RE if multiline else _CONTROL_RE).search(text)
    if found is not None:
        raise Reject(f"{what} contains the control character {found.group()!r}")


def _is_blank(text: str) -> bool:
    return _NOT_WHITE_SPACE_RE.search(text) is None


def _check_cid(what: str, cid: bytes) -> None:
    try:
        check_cid(cid)
    except InvalidCid as exc:
        raise Reject(f"{what}: {exc}") from exc


def validate_title(title: str) -> None:
    """The title rules, also checked by ``toktok publish`` before it starts transcoding."""
    # [REJECT] The title is not blank and holds no control characters.
    if _is_blank(title):
        raise Reject("title is blank")
    _check_text("title", title)


def validate_tags(tags: Sequence[str]) -> None:
    """The tag rules, also checked by ``toktok publish`` before it starts transcoding."""
    # [REJECT] Tags are distinct, non-empty, without ASCII capitals or white space.
    for tag in tags:
        if not tag or _TAG_BAD_RE.search(tag) is not None:
            raise Reject(f"tag {tag!r} must be non-empty, without capitals A-Z or spaces")
        _check_text("tag", tag)
    if len(set(tags)) != len(tags):
        raise Reject("tags repeat")


def reopen_message(raw: bytes) -> SignedMessage:
    """Re-check a message read back from our own store: every rule except the clock's.

    It passed :func:`validate_message` when it arrived; reading it back we check that the
    bytes are still intact and signed. Raises :class:`Reject` if they are not.
    """
    try:
        return validate_message(raw, now_ms=_NO_CLOCK_MS)
    except Ignore as exc:  # pragma: no cover - no clock rule can fire at _NO_CLOCK_MS
        raise AssertionError("clock rule fired on a stored message") from exc


def validate_manifest(manifest: VideoManifest, now_ms: int) -> None:
    """Rules of a video manifest. Raises :class:`Reject` or :class:`Ignore`."""
    validate_created(manifest.created_ms, now_ms)
    validate_title(manifest.title)
    # [REJECT] The description holds no control characters other than newlines.
    _check_text("description", manifest.description, multiline=True)
    # [REJECT] The license holds no control characters.
    _check_text("license", manifest.license)
    validate_tags(manifest.tags)
    # [REJECT] remix_of is empty or a message id.
    if manifest.remix_of and len(manifest.remix_of) != MESSAGE_ID_LEN:
        raise Reject(f"remix_of must be empty or {MESSAGE_ID_LEN} bytes")
    # [REJECT] Rendition names are distinct and hold no control characters.
    names = [rendition.name for rendition in manifest.renditions]
    if len(set(names)) != len(names):
        raise Reject("rendition names repeat")
    for name in names:
        _check_text("rendition name", name)
    # [REJECT] The thumbnail, init and media segments are named by content ids.
    _check_cid("thumbnail", manifest.thumbnail.cid)
    for rendition in manifest.renditions:
        _check_cid(f"rendition {rendition.name} init", rendition.init.cid)
        for index, segment in enumerate(rendition.segments):
            # The record already fixed the length: the prefix is all that is left, and the
            # message is only built for a bad one (this loop is on the gossip hot path).
            if not segment.cid.startswith(CID_PREFIX):
                _check_cid(f"rendition {rendition.name} segment {index}", segment.cid)
    for rendition in manifest.renditions:
        # [REJECT] The codecs string uses only letters, digits, dots and commas.
        if not set(rendition.codecs) <= _CODECS_ALPHABET:
            raise Reject(f"rendition {rendition.name}: codecs {rendition.codecs!r} malformed")
        # [REJECT] Each rendition's segments add up to the manifest's duration.
        total_ms = sum(segment.duration_ms for segment in rendition.segments)
        if abs(total_ms - manifest.duration_ms) > DURATION_SLACK_MS:
            raise Reject(
                f"rendition {rendition.name}: segments last {total_ms} ms, "
                f"manifest says {manifest.duration_ms} ms (slack {DURATION_SLACK_MS})"
            )


def validate_profile(profile: Profile, now_ms: int) -> None:
    """Rules of a profile. Raises :class:`Reject` or :class:`Ignore`."""
    validate_created(profile.created_ms, now_ms)
    # [REJECT] The name holds no control characters.
    _check_text("name", profile.name)
    # [REJECT] The bio holds no control characters other than newlines.
    _check_text("bio", profile.bio, multiline=True)
    # [REJECT] The avatar is empty or a content id.
    if profile.avatar:
        _check_cid("avatar", profile.avatar)


def validate_tombstone(tombstone: Tombstone, now_ms: int) -> None:
    """Rules of a tombstone on its own. Raises :class:`Reject` or :class:`Ignore`."""
    validate_created(tombstone.created_ms, now_ms)
    # [REJECT] The reason holds no control characters.
    _check_text("reason", tombstone.reason)


def validate_tombstone_target(tombstone: Tombstone, manifest: VideoManifest) -> None:
    """Rules between a tombstone and the manifest it names (when that one is known)."""
    # [REJECT] Only the manifest's author withdraws it.
    if tombstone.author != manifest.author:
        raise Reject("tombstone by an account other than the video's author")


def validate_follow(follow: Follow | Unfollow, now_ms: int) -> None:
    """Rules of a follow or an unfollow. Raises :class:`Reject` or :class:`Ignore`."""
    validate_created(follow.created_ms, now_ms)
    # [REJECT] An account does not follow itself.
    if follow.target == follow.author:
        raise Reject(f"{follow.KIND} targets its own author")


def validate_unfollow(unfollow: Unfollow, now_ms: int) -> None:
    """Rules of an unfollow: those of a follow. Raises :class:`Reject` or :class:`Ignore`."""
    validate_follow(unfollow, now_ms)


def validate_reaction(reaction: Reaction, now_ms: int) -> None:
    """Rules of a reaction. Raises :class:`Reject` or :class:`Ignore`."""
    validate_created(reaction.created_ms, now_ms)
    # [REJECT] The reaction is one of REACTIONS.
    if reaction.reaction not in REACTIONS:
        raise Reject(f"unknown reaction {reaction.reaction!r}")


def validate_view(view: View, now_ms: int) -> None:
    """Rules of a view receipt: the common time rules, nothing more. Raises :class:`Reject`
    or :class:`Ignore`.

    Its field limits (a message id, 1 to DURATION_MS_MAX ms watched) are checked when the
    body decodes. Whether ``watched_ms`` fits the video's own duration is not a rule: the
    manifest may be unknown here, and a looped short video is watched longer than it lasts.
    """
    validate_created(view.created_ms, now_ms)


def validate_offer(offer: Offer, now_ms: int) -> None:
    """Rules of a standing offer. Raises :class:`Reject` or :class:`Ignore`.

    An offer past its ``expires_ms`` is still valid: it is a fact of the past, kept and
    synced like any message; nodes only stop listing and filling it.
    """
    validate_created(offer.created_ms, now_ms)
    # [REJECT] The shop is an account other than the offer's author.
    if offer.shop == offer.author:
        raise Reject("an offer's shop is its author's own account")
    # [REJECT] The token sold differs from the token it is paid in.
    if offer.token == offer.price_token:
        raise Reject("an offer of a token for itself")
    # [REJECT] The offer expires after its creation, within OFFER_LIFETIME_MS_MAX.
    lifetime_ms = offer.expires_ms - offer.created_ms
    if not 0 < lifetime_ms <= OFFER_LIFETIME_MS_MAX:
        raise Reject(
            f"an offer stands for {lifetime_ms} ms; it must be 1 to {OFFER_LIFETIME_MS_MAX}"
        )
    # [REJECT] A fill of amount_max costs at most OFFER_AMOUNT_MAX of the price token.
    if offer_cost(offer, offer.amount_max) > OFFER_AMOUNT_MAX:
        raise Reject(f"a fill of amount_max costs more than {OFFER_AMOUNT_MAX} base units")
    # [REJECT] The peer is a libp2p peer id: an identity or a SHA-256 multihash.
    if not is_peer_id(offer.peer):
        raise Reject("an offer's peer is not a libp2p peer id")


def is_peer_id(data: bytes) -> bool:
    """Whether ``data`` is the bytes of a libp2p peer id: the multihash ``00 <len> <key>``
    (identity, a key of at most IDENTITY_MULTIHASH_BYTES_MAX bytes) or ``12 20 <digest>``
    (SHA-256 of a longer key)."""
    if len(data) >= 2 and data[0] == 0x00:
        return data[1] == len(data) - 2 and 1 <= data[1] <= IDENTITY_MULTIHASH_BYTES_MAX
    return len(data) == 34 and data[:2] == b"\x12\x20"


_VALIDATORS: dict[type[Any], Callable[[Any, int], None]] = {
    VideoManifest: validate_manifest,
    Profile: validate_profile,
    Tombstone: validate_tombstone,
    Follow: validate_follow,
    Unfollow: validate_unfollow,
    Reaction: validate_reaction,
    View: validate_view,
    Offer: validate_offer,
}
