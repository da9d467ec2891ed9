"""Validation: a ``test_invalid_*`` case for every rule of protocol/validate.py, valid
messages of every kind, and tampering with signed bytes.

Every case starts from a valid sample (tests/vectors/samples.py) and breaks one rule, named
by the exact text of its ``# [REJECT]``/``# [IGNORE]`` comment; the meta-tests at the end
fail when a rule has no case, a case names no rule, or docs/protocol.md misses a rule.
"""

import dataclasses
import functools
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocol.validate
from protocol import codec
from protocol.cid import chunk_id
from protocol.envelope import ENVELOPE_BYTES_MAX, signing_input
from protocol.errors import Ignore, Reject, Verdict
from protocol.kinds import (
    BODY_BYTES_MAX,
    DURATION_MS_MAX,
    MESSAGE_ID_LEN,
    RECORD_TYPES,
    TAGS_MAX,
    TITLE_BYTES_MAX,
    ChunkRef,
    Record,
    SegmentRef,
    Unfollow,
)
from protocol.validate import (
    DURATION_SLACK_MS,
    EPOCH_MS,
    FUTURE_MS_MAX,
    validate_message,
    validate_tombstone_target,
)
from tests.vectors.invalid_cases import (
    INVALID_MESSAGES,
    R_AVATAR,
    R_BIO,
    R_BODY,
    R_BODY_SIZE,
    R_CHUNK_CIDS,
    R_CODECS,
    R_DESCRIPTION,
    R_DURATION,
    R_ENVELOPE,
    R_ENVELOPE_SIZE,
    R_EPOCH,
    R_FUTURE,
    R_KIND,
    R_LICENSE,
    R_NAME,
    R_REACTION,
    R_REASON,
    R_REMIX,
    R_RENDITION_NAMES,
    R_SIGNATURE,
    R_SIGNER,
    R_TAGS,
    R_TITLE,
    R_TOMBSTONE_TARGET,
    R_VERSION,
)
from tests.vectors.samples import (
    ALICE,
    BOB,
    ED25519_L,
    MALLORY,
    MANIFEST_ID,
    NOW_MS,
    SAMPLES,
    key_of,
    reference_encode,
    rendition,
    sample_follow,
    sample_manifest,
    sample_profile,
    sample_reaction,
    sample_remix,
    sample_tombstone,
    sample_unfollow,
    sample_view,
    sealed,
    sign_body,
    sign_obj,
    sign_record,
    validation_rules,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
KINDS = list(RECORD_TYPES)


@dataclasses.dataclass(frozen=True)
class Case:
    """One way to break one rule, and the verdict it must earn."""

    name: str
    rule: str
    """The rule's text, exactly as its comment in protocol/validate.py words it."""
    verdict: type[Verdict]
    match: str
    """A regular expression the verdict's message matches."""
    run: Callable[[], object]


def check(raw: bytes) -> Callable[[], object]:
    return lambda: validate_message(raw, NOW_MS)


def manifest_raw(**changes: Any) -> bytes:
    return sealed(sample_manifest(**changes))


def with_rendition(**changes: Any) -> bytes:
    first = dataclasses.replace(sample_manifest().renditions[0], **changes)
    return manifest_raw(renditions=(first,))


def envelope_of_size(size: int) -> bytes:
    """A follow envelope padded, through its body, to exactly ``size`` bytes."""
    body_len = size - 150  # a little more than the envelope adds, so the body is bin32 at once
    raw = sign_body(BOB, "follow", bytes(body_len))
    raw = sign_body(BOB, "follow", bytes(body_len + size - len(raw)))
    assert len(raw) == size
    return raw


def without(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in obj.items() if key != name}


def resign(raw: bytes, **fields: Any) -> bytes:
    """The follow envelope ``raw`` re-encoded with ``fields`` replaced (signature kept)."""
    envelope = codec.decode(raw, bytes_max=len(raw))
    return codec.encode({**envelope, **fields})


FOLLOW = sample_follow()
FOLLOW_RAW = sealed(FOLLOW)
FOLLOW_OBJ = codec.record_to_obj(FOLLOW)
FOLLOW_BODY = codec.encode_record(FOLLOW)


def sign_follow_with(to_sign: bytes) -> bytes:
    """BOB's follow envelope, its signature made over ``to_sign``."""
    return sign_record(BOB, FOLLOW, sig=BOB.sign(to_sign))


# Cases beyond the vectors: more ways to break each rule, and the boundaries.


def _envelope_cases() -> Iterator[Case]:
    """Rules 1 to 4 of docs/protocol.md section 7."""
    yield Case(
        "envelope-one-byte-over",
        R_ENVELOPE_SIZE,
        Reject,
        f"envelope of {ENVELOPE_BYTES_MAX + 1} bytes exceeds {ENVELOPE_BYTES_MAX}",
        check(envelope_of_size(ENVELOPE_BYTES_MAX + 1)),
    )
    yield Case("envelope-1-mib", R_ENVELOPE_SIZE, Reject, "exceeds", check(bytes(2**20)))
    yield Case(
        "envelope-at-size-limit-but-body-too-long",
        R_ENVELOPE,
        Reject,
        rf"Envelope\.body: \d+ bytes exceeds the limit of {BODY_BYTES_MAX['manifest']}",
        check(envelope_of_size(ENVELOPE_BYTES_MAX)),
    )
    for name, raw, match in [
        ("empty", b"", "malformed msgpack"),
        ("not-a-map", codec.encode([1]), "Envelope: expected a map, got tuple"),
        ("missing-sig", codec.encode({"body": b"", "kind": "follow", "v": 1}), "missing field"),
        ("kind-empty", resign(FOLLOW_RAW, kind=""), "kind: 0 bytes, at least 1 required"),
        ("kind-33-bytes", resign(FOLLOW_RAW, kind="k" * 33), "kind: 33 bytes exceeds"),
        ("signer-31-bytes", resign(FOLLOW_RAW, signer=bytes(31)), "signer: 31 bytes"),
        ("sig-65-bytes", resign(FOLLOW_RAW, sig=bytes(65)), "sig: 65 bytes exceeds"),
        ("version-256", resign(FOLLOW_RAW, v=256), r"v: 256 outside \[0, 255\]"),
        ("version-negative", resign(FOLLOW_RAW, v=-1), r"v: -1 outside \[0, 255\]"),
        ("body-str", resign(FOLLOW_RAW, body="x"), "body: expected bytes, got str"),
        ("version-float", FOLLOW_RAW[:-1] + bytes.fromhex("cb3ff0000000000000"), "got float"),
        ("version-nil", FOLLOW_RAW[:-1] + b"\xc0", "v: expected an integer, got NoneType"),
        ("version-uint8", FOLLOW_RAW[:-1] + b"\xcc\x01", "not the canonical encoding"),
        ("duplicate-key", b"\x86" + FOLLOW_RAW[1:] + b"\xa1v\x01", "not the canonical"),
        ("version-ext", FOLLOW_RAW[:-1] + b"\xd4\x01\x01", "extension type 1"),
    ]:
        yield Case(
            f"envelope-{name}", R_ENVELOPE, Reject, "malformed envelope: .*" + match, check(raw)
        )
    for version in (0, 3, 255):
        yield Case(
            f"envelope-version-{version}",
            R_VERSION,
            Reject,
            f"unsupported envelope version {version}",
            check(sign_record(BOB, FOLLOW, v=version)),
        )
    for kind in ("Follow", "toktok/v1/follow", "follow\x00", "fóllow", "View", "comment"):
        yield Case(
            f"kind-{kind!r}",
            R_KIND,
            Reject,
            re.escape(f"unknown kind {kind!r}"),
            check(sign_record(BOB, FOLLOW, kind=kind)),
        )


def _body_and_signature_cases() -> Iterator[Case]:
    """Rules 5 to 7."""
    for name, body, match in [
        ("empty", b"", "malformed msgpack"),
        ("not-a-map", codec.encode([1]), "Follow: expected a map, got tuple"),
        ("trailing-byte", FOLLOW_BODY + b"\x00", "trailing bytes"),
        ("missing-target", codec.encode(without(FOLLOW_OBJ, "target")), "missing field 'target'"),
        ("unsorted-keys", reference_encode(FOLLOW_OBJ, reverse_keys=True), "not sorted"),
        ("map32", reference_encode(FOLLOW_OBJ, wide=frozenset({"map"})), "not the canonical"),
    ]:
        yield Case(
            f"body-{name}",
            R_BODY,
            Reject,
            "malformed follow body: .*" + match,
            check(sign_body(BOB, "follow", body)),
        )
    profile_obj = codec.record_to_obj(sample_profile())
    yield Case(
        "body-profile-over-1024-bytes",
        R_BODY_SIZE,
        Reject,
        f"malformed profile body: \\d+ bytes exceeds the limit of {BODY_BYTES_MAX['profile']}",
        check(sign_obj(ALICE, "profile", {**profile_obj, "pad": bytes(1024)})),
    )
    for name, raw, match in [
        ("title-too-long", manifest_raw(title="x" * 151), "title: 151 bytes exceeds"),
        ("no-renditions", manifest_raw(renditions=()), "renditions: 0 items"),
        ("tag-33-bytes", manifest_raw(tags=("t" * 33,)), r"tags\.0: 33 bytes exceeds"),
        ("eleven-tags", manifest_raw(tags=tuple("abcdefghijk")), "11 items exceeds"),
        ("duration-zero", manifest_raw(duration_ms=0), r"duration_ms: 0 outside"),
        ("reaction-empty", sealed(sample_reaction(reaction="")), "reaction: 0 bytes"),
        ("view-watched-zero", sealed(sample_view(watched_ms=0)), r"watched_ms: 0 outside"),
        (
            "view-watched-past-the-longest-video",
            sealed(sample_view(watched_ms=DURATION_MS_MAX + 1)),
            rf"watched_ms: {DURATION_MS_MAX + 1} outside",
        ),
        ("view-manifest-31-bytes", sealed(sample_view(manifest=bytes(31))), "manifest: 31 bytes"),
        ("view-manifest-empty", sealed(sample_view(manifest=b"")), "manifest: 0 bytes"),
        ("remix-33-bytes", manifest_raw(remix_of=bytes(33)), "remix_of: 33 bytes"),
        ("avatar-37-bytes", sealed(sample_profile(avatar=bytes(37))), "avatar: 37 bytes"),
    ]:
        yield Case(f"body-{name}", R_BODY, Reject, match, check(raw))
    yield Case(
        "signer-is-the-target",
        R_SIGNER,
        Reject,
        "follow signed by an account other than its author",
        check(sign_record(ALICE, FOLLOW)),
    )
    sig = BOB.sign(signing_input("follow", FOLLOW_BODY))
    mallory_sig = MALLORY.sign(signing_input("follow", FOLLOW_BODY))
    s_plus_l = (int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")
    for name, raw in [
        ("zeros", sign_record(BOB, FOLLOW, sig=bytes(64))),
        ("of-another-message", sign_follow_with(b"something else")),
        ("of-the-bare-body", sign_follow_with(FOLLOW_BODY)),
        ("with-v2-tag", sign_follow_with(b"toktok/v2/follow\x00" + FOLLOW_BODY)),
        ("without-zero-byte", sign_follow_with(b"toktok/v1/follow" + FOLLOW_BODY)),
        ("by-mallory", sign_record(BOB, FOLLOW, sig=mallory_sig)),
        ("s-plus-l", sign_record(BOB, FOLLOW, sig=sig[:32] + s_plus_l)),
    ]:
        yield Case(f"signature-{name}", R_SIGNATURE, Reject, "bad signature on follow", check(raw))


def _time_cases() -> Iterator[Case]:
    """Rules 8 and 9, for every kind."""
    for kind in KINDS:
        for created_ms, name in [(NOW_MS + FUTURE_MS_MAX + 1, "just"), (2**64 - 1, "far")]:
            yield Case(
                f"{kind}-{name}-in-the-future",
                R_FUTURE,
                Ignore,
                "in the future",
                check(sealed(SAMPLES[kind](created_ms=created_ms))),
            )
        for created_ms, name in [(EPOCH_MS - 1, "just"), (0, "long")]:
            yield Case(
                f"{kind}-{name}-before-epoch",
                R_EPOCH,
                Reject,
                f"before the protocol epoch {EPOCH_MS}",
                check(sealed(SAMPLES[kind](created_ms=created_ms))),
            )


def _manifest_cases() -> Iterator[Case]:
    """Rules 10 to 17."""
    for text_rule, field, value, bad in [
        (R_TITLE, "title", "a\nb", "\n"),
        (R_TITLE, "title", "a\u2066b", "\u2066"),
        (R_TITLE, "title", "\x00", "\x00"),
        (R_TITLE, "title", "del\x7f", "\x7f"),
        (R_DESCRIPTION, "description", "\t", "\t"),
        (R_DESCRIPTION, "description", "a\r\nb", "\r"),
        (R_DESCRIPTION, "description", "\u202e", "\u202e"),
        (R_LICENSE, "license", "MIT\n", "\n"),
        (R_LICENSE, "license", "\u202aMIT", "\u202a"),
    ]:
        yield Case(
            f"{field}-{value!r}",
            text_rule,
            Reject,
            re.escape(f"{field} contains the control character {bad!r}"),
            check(manifest_raw(**{field: value})),
        )
    for title in ["\t", "\u3000", " \n "]:
        raw = manifest_raw(title=title)
        yield Case(f"title-blank-{title!r}", R_TITLE, Reject, "title is blank", check(raw))
    for tags, match in [
        (("",), "tag '' must be non-empty, without capitals A-Z or spaces"),
        (("golden hour",), "tag 'golden hour' must be"),
        (("tab\tx",), "tag 'tab\\tx' must be"),
        (("nbsp\u00a0x",), "tag 'nbsp\\xa0x' must be"),
        (("ok", "Sunrise"), "tag 'Sunrise' must be"),
        (("sun\x7frise",), "tag contains the control character '\\x7f'"),
        (("a", "b", "a"), "tags repeat"),
    ]:
        yield Case(
            f"tags-{tags!r}", R_TAGS, Reject, re.escape(match), check(manifest_raw(tags=tags))
        )
    for size in (1, 31):
        yield Case(
            f"remix-of-{size}-bytes",
            R_REMIX,
            Reject,
            f"remix_of must be empty or {MESSAGE_ID_LEN} bytes",
            check(manifest_raw(remix_of=MANIFEST_ID[:size])),
        )
    yield Case(
        "rendition-names-repeat-different-content",
        R_RENDITION_NAMES,
        Reject,
        "rendition names repeat",
        check(
            manifest_raw(
                duration_ms=4000,
                renditions=(
                    rendition("720p", 720, 1280, 2_500_000, 2000, 2000),
                    rendition("720p", 360, 640, 600_000, 2000, 2000),
                ),
            )
        ),
    )
    yield Case(
        "rendition-name-control-character",
        R_RENDITION_NAMES,
        Reject,
        re.escape("rendition name contains the control character '\\x1b'"),
        check(with_rendition(name="720p\x1b[2J")),
    )
    dag_pb = bytes([1, 0x70, 0x12, 0x20]) + bytes(32)
    remix = sample_remix()
    hd = remix.renditions[1]
    hd_bad_last = dataclasses.replace(hd.segments[-1], cid=dag_pb)
    hd = dataclasses.replace(hd, segments=(*hd.segments[:-1], hd_bad_last))
    two_renditions = sealed(sample_remix(renditions=(remix.renditions[0], hd)))
    for name, raw, where in [
        ("thumbnail", manifest_raw(thumbnail=ChunkRef(dag_pb, 1)), "thumbnail"),
        ("init", with_rendition(init=ChunkRef(dag_pb, 812)), "rendition 720p init"),
        ("segment", with_rendition(segments=(SegmentRef(dag_pb, 1, 5500),)), "720p segment 0"),
        ("last-segment", two_renditions, "720p segment 1"),
    ]:
        yield Case(
            f"chunk-cid-{name}",
            R_CHUNK_CIDS,
            Reject,
            f"{where}: not a CIDv1 raw sha2-256 id: {dag_pb[:8].hex()}",
            check(raw),
        )
    for codecs in ["avc1/64001f", "avc1.64001f;", "avc1_x", "ec-3", "avc1.64001fé", "avc1 "]:
        yield Case(
            f"codecs-{codecs!r}",
            R_CODECS,
            Reject,
            re.escape(f"rendition 720p: codecs {codecs!r} malformed"),
            check(with_rendition(codecs=codecs)),
        )
    for duration_ms in (5500 + DURATION_SLACK_MS + 1, 5500 - DURATION_SLACK_MS - 1):
        yield Case(
            f"duration-{duration_ms}",
            R_DURATION,
            Reject,
            f"rendition 720p: segments last 5500 ms, manifest says {duration_ms} ms",
            check(manifest_raw(duration_ms=duration_ms)),
        )
    short_360p = rendition("360p", 360, 640, 600_000, 2000)
    yield Case(
        "duration-second-rendition-short",
        R_DURATION,
        Reject,
        "rendition 360p: segments last 2000 ms, manifest says 4000 ms",
        check(sealed(sample_remix(renditions=(sample_remix().renditions[1], short_360p)))),
    )


def _other_kind_cases() -> Iterator[Case]:
    """Rules 18 to 24."""
    for text_rule, field, value in [
        (R_NAME, "name", "\x00"),
        (R_NAME, "name", "Alice\u202e"),
        (R_BIO, "bio", "\t"),
        (R_BIO, "bio", "\x7f"),
    ]:
        yield Case(
            f"{field}-{value!r}",
            text_rule,
            Reject,
            re.escape(f"{field} contains the control character {value[-1]!r}"),
            check(sealed(sample_profile(**{field: value}))),
        )
    for name, avatar in [
        ("1-byte", b"\x01"),
        ("35-bytes", chunk_id(b"avatar")[:35]),
        ("dag-pb", bytes([1, 0x70]) + chunk_id(b"avatar")[2:]),
        ("message-id", MANIFEST_ID),
    ]:
        yield Case(
            f"avatar-{name}",
            R_AVATAR,
            Reject,
            "avatar: not a CIDv1 raw sha2-256 id",
            check(sealed(sample_profile(avatar=avatar))),
        )
    yield Case(
        "reason-newline",
        R_REASON,
        Reject,
        re.escape("reason contains the control character '\\n'"),
        check(sealed(sample_tombstone(reason="oops\n"))),
    )
    for name, key in [("bob", BOB), ("mallory", MALLORY)]:
        tombstone = sample_tombstone(author=key.public_key)
        yield Case(
            f"tombstone-by-{name}",
            R_TOMBSTONE_TARGET,
            Reject,
            "tombstone by an account other than the video's author",
            functools.partial(validate_tombstone_target, tombstone, sample_manifest()),
        )
    for reaction in ("Like", "like ", "♥", "unlike!"):
        yield Case(
            f"reaction-{reaction!r}",
            R_REACTION,
            Reject,
            re.escape(f"unknown reaction {reaction!r}"),
            check(sealed(sample_reaction(reaction=reaction))),
        )


CASES: list[Case] = [
    *(Case(m.name, m.rule, m.verdict, m.match, check(m.raw)) for m in INVALID_MESSAGES),
    *_envelope_cases(),
    *_body_and_signature_cases(),
    *_time_cases(),
    *_manifest_cases(),
    *_other_kind_cases(),
]

RULE_CASES: dict[str, list[str]] = {}
"""Rule text -> the names of the cases that break it."""
for _case in CASES:
    RULE_CASES.setdefault(_case.rule, []).append(_case.name)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_invalid_breaks_one_rule(case: Case) -> None:
    with pytest.raises(Verdict) as caught:
        case.run()
    assert type(caught.value) is case.verdict
    assert re.search(case.match, str(caught.value)), str(caught.value)


# ---------------------------------------------------------------------------------------
# Valid messages.


@pytest.mark.parametrize("kind", KINDS)
def test_valid_sample_of_every_kind(kind: str) -> None:
    record = SAMPLES[kind]()
    raw = sealed(record)
    message = validate_message(raw, NOW_MS)
    assert message.record == record
    assert message.raw == raw
    assert message.kind == kind
    assert message.envelope.signer == record.author
    assert message.envelope.body == codec.encode_record(record)


VALID: list[Any] = [
    pytest.param(sample_remix(), id="remix with two renditions"),
    pytest.param(sample_manifest(created_ms=NOW_MS + FUTURE_MS_MAX), id="at the future limit"),
    pytest.param(sample_follow(created_ms=EPOCH_MS), id="at the epoch"),
    pytest.param(sample_manifest(duration_ms=5500 + DURATION_SLACK_MS), id="short by slack"),
    pytest.param(sample_manifest(duration_ms=5500 - DURATION_SLACK_MS), id="long by slack"),
    pytest.param(sample_manifest(title="x" * TITLE_BYTES_MAX), id="longest title"),
    pytest.param(sample_manifest(title="🎬" * (TITLE_BYTES_MAX // 4)), id="emoji title"),
    pytest.param(sample_manifest(title=" padded "), id="title with spaces"),
    pytest.param(sample_manifest(description="a\nb\n\n", license=""), id="newlines in description"),
    pytest.param(sample_manifest(description="line\u2028separator"), id="line separator is not C"),
    pytest.param(sample_manifest(tags=()), id="no tags"),
    pytest.param(sample_manifest(tags=tuple(f"t{i}" for i in range(TAGS_MAX))), id="most tags"),
    pytest.param(sample_manifest(tags=("ß", "日の出", "c++", "#1")), id="unusual tags"),
    pytest.param(sample_manifest(remix_of=bytes(MESSAGE_ID_LEN)), id="remix of unknown id"),
    pytest.param(sample_profile(name="", bio="", avatar=b""), id="empty profile"),
    pytest.param(sample_profile(bio="one\ntwo"), id="newline in bio"),
    pytest.param(sample_tombstone(reason=""), id="tombstone without reason"),
    pytest.param(sample_reaction(reaction="unlike"), id="unlike"),
    pytest.param(sample_unfollow(), id="unfollow"),
    pytest.param(sample_view(watched_ms=1), id="view of 1 ms"),
    pytest.param(sample_view(watched_ms=DURATION_MS_MAX), id="view as long as the longest video"),
    pytest.param(sample_view(author=ALICE.public_key), id="a creator views their own video"),
]  # fmt: skip


@pytest.mark.parametrize("record", VALID)
def test_valid_variant(record: Record) -> None:
    assert validate_message(sealed(record), NOW_MS).record == record


def test_valid_tombstone_target() -> None:
    validate_tombstone_target(sample_tombstone(), sample_manifest())


def test_validation_is_pure() -> None:
    raw = sealed(sample_manifest())
    first = validate_message(raw, NOW_MS)
    assert validate_message(raw, NOW_MS) == first
    assert first.id == validate_message(raw, NOW_MS + 10**9).id


# ---------------------------------------------------------------------------------------
# Tampering with signed bytes.

MANIFEST_RAW = sealed(sample_manifest())


@given(st.data())
def test_invalid_any_flipped_byte(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(MANIFEST_RAW) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    raw = MANIFEST_RAW[:index] + bytes([MANIFEST_RAW[index] ^ mask]) + MANIFEST_RAW[index + 1 :]
    with pytest.raises(Reject):
        validate_message(raw, NOW_MS)


def test_invalid_manifest_signed_by_another_key() -> None:
    manifest = sample_manifest()
    with pytest.raises(Reject, match="manifest signed by an account other than its author"):
        validate_message(sign_record(MALLORY, manifest), NOW_MS)
    forged = sign_record(MALLORY, manifest, signer=ALICE.public_key)
    with pytest.raises(Reject, match="bad signature on manifest"):
        validate_message(forged, NOW_MS)


def test_another_author_may_publish_the_same_video() -> None:
    """What ties a manifest to a creator is its author field, signed: a copy is a new message."""
    copy = sample_manifest(author=MALLORY.public_key)
    message = validate_message(sign_record(MALLORY, copy), NOW_MS)
    assert message.id != validate_message(MANIFEST_RAW, NOW_MS).id


@given(
    st.sets(st.sampled_from(["int", "str", "bin", "array", "map"])),
    st.booleans(),
)
def test_invalid_non_canonical_body_signed_by_its_author(wide: set[str], reverse: bool) -> None:
    obj = codec.record_to_obj(sample_manifest())
    body = reference_encode(obj, wide=frozenset(wide), reverse_keys=reverse)
    raw = sign_body(ALICE, "manifest", body)
    if body == codec.encode(obj):
        assert validate_message(raw, NOW_MS).raw == raw
        return
    with pytest.raises(Reject, match="malformed manifest body"):
        validate_message(raw, NOW_MS)


KIND_PAIRS = [pytest.param(a, b, id=f"{a}->{b}") for a, b in itertools.permutations(KINDS, 2)]


@pytest.mark.parametrize(("kind", "label"), KIND_PAIRS)
def test_invalid_body_relabelled_as_another_kind(kind: str, label: str) -> None:
    """The envelope of one kind, its kind field changed and its signature kept."""
    record = SAMPLES[kind]()
    raw = sign_record(key_of(record), record, kind=label)
    with pytest.raises(Reject, match=f"malformed {label} body|bad signature on {label}"):
        validate_message(raw, NOW_MS)


@pytest.mark.parametrize(("kind", "label"), KIND_PAIRS)
def test_invalid_signature_made_for_another_kind(kind: str, label: str) -> None:
    """A valid body of kind ``label``, signed under the domain tag of ``kind``."""
    record = SAMPLES[label]()
    key = key_of(record)
    body = codec.encode_record(record)
    raw = sign_record(key, record, sig=key.sign(signing_input(kind, body)))
    with pytest.raises(Reject, match=f"bad signature on {label}"):
        validate_message(raw, NOW_MS)


def test_follow_and_unfollow_differ_only_by_domain_tag() -> None:
    """Same fields, same body bytes: only the signed kind tells a follow from an unfollow."""
    follow = sample_follow()
    unfollow = Unfollow(author=follow.author, created_ms=follow.created_ms, target=follow.target)
    body = codec.encode_record(FOLLOW)
    assert codec.encode_record(unfollow) == body
    follow_sig = BOB.sign(signing_input("follow", body))
    with pytest.raises(Reject, match="bad signature on unfollow"):
        validate_message(sign_record(BOB, unfollow, sig=follow_sig), NOW_MS)
    assert validate_message(sign_record(BOB, unfollow), NOW_MS).record == unfollow


# ---------------------------------------------------------------------------------------
# Every rule has a case, and the documentation lists every rule.


def test_every_rule_has_a_case() -> None:
    rules = validation_rules()
    assert rules, "no rule comments found in protocol/validate.py"
    missing = [text for _, text in rules if text not in RULE_CASES]
    where = "to _extra_cases here, or to INVALID_MESSAGES in tests/vectors/invalid_cases.py"
    assert not missing, f"add a test_invalid case ({where}) for: {missing}"
    texts = {text for _, text in rules}
    stale = [rule for rule in RULE_CASES if rule not in texts]
    assert not stale, f"cases name rules that protocol/validate.py no longer has: {stale}"


def test_every_case_earns_its_rules_verdict() -> None:
    verdicts = {text: verdict for verdict, text in validation_rules()}
    for case in CASES:
        assert case.verdict.__name__.lower() == verdicts[case.rule], case.name


def test_every_rule_comment_is_read() -> None:
    """A mistyped marker (``#[REJECT]``, ``# [reject]``) would hide a rule from the checks."""
    source = Path(protocol.validate.__file__).read_text(encoding="utf-8")
    markers = re.findall(r"#\s*\[\s*(?:reject|ignore)\s*\]", source, re.IGNORECASE)
    assert len(markers) == len(validation_rules())


def test_docs_list_every_rule() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for verdict, text in validation_rules():
        assert f"[{verdict.upper()}] {text}" in docs, f"docs/protocol.md lacks the rule: {text}"
