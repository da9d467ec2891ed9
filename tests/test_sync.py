"""The sync stream protocol: two sides over trio memory streams, then over real py-libp2p.

Each side keeps a :class:`MessageLog` on a MemoryKV and a :class:`NodeItemSet` built from
it; ``accept`` validates what arrives and stores it, as the node does. Scripted peers
write raw frames to check that every way of breaking the protocol ends in a typed error.
"""

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import multiaddr
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import node.sync
from node.sync import (
    AFTER_RECONCILE,
    END,
    ENVELOPES,
    ENVELOPES_PER_FRAME_MAX,
    ERROR,
    FRAME_BYTES_MAX,
    KIND_MAX,
    PROTOCOL_ID,
    REASON_BYTES_MAX,
    RECONCILE,
    UNANNOUNCED,
    NodeItemSet,
    SyncClosed,
    SyncError,
    SyncFrame,
    SyncLimits,
    SyncProtocolError,
    SyncRefused,
    SyncResult,
    SyncStream,
    SyncTimeout,
    check_frame,
    check_frame_length,
    decode_frame,
    encode_frame,
    end_frame,
    envelopes_frame,
    error_frame,
    reconcile_frame,
    run_sync,
)
from protocol.codec import encode
from protocol.envelope import ENVELOPE_BYTES_MAX, SignedMessage, seal
from protocol.errors import DecodeError
from protocol.itemset import BOUND_MAX, BOUND_MIN
from protocol.kinds import Follow, Tombstone
from protocol.reconcile import ReconcileLimits, Reconciler
from protocol.reconcilewire import VERSION, Message, Range, encode_message
from protocol.validate import validate_message
from storage.kv import Batch, MemoryKV
from storage.messages import MessageLog
from tests.factories import NOW_MS, account, fake_video, sealed_manifest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sync.md"
AUTHORS = [account(n) for n in range(8)]


def follow(n: int) -> SignedMessage:
    """Message number ``n``: distinct for every ``n``, created ``n`` ms before NOW_MS."""
    author = AUTHORS[n % len(AUTHORS)]
    target = AUTHORS[(n + 1) % len(AUTHORS)]
    return seal(author, Follow(author.public_key, NOW_MS - n, target.public_key))


_FOLLOWS: list[SignedMessage] = []


def follows(count: int) -> list[SignedMessage]:
    """The first ``count`` messages, signed once per test run."""
    _FOLLOWS.extend(follow(n) for n in range(len(_FOLLOWS), count))
    return _FOLLOWS[:count]


class TrioStream:
    """A trio stream in the SyncStream shape."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int) -> bytes:
        return bytes(await self.stream.receive_some(n))

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()


def stream_pair() -> tuple[TrioStream, TrioStream]:
    left, right = trio.testing.memory_stream_pair()
    return TrioStream(left), TrioStream(right)


class Side:
    """One node's sync state: a log, its item set, and what accept saw."""

    def __init__(
        self,
        messages: Iterable[SignedMessage] = (),
        *,
        withdrawn: Iterable[tuple[int, bytes]] = (),
        limits: SyncLimits | None = None,
    ) -> None:
        self.kv = MemoryKV()
        self.log = MessageLog(self.kv)
        batch = Batch()
        for message in messages:
            self.log.stage(batch, message)
        for created_ms, mid in withdrawn:
            self.log.stage_withdrawn(batch, mid, created_ms)
        self.kv.write(batch)
        self.items = NodeItemSet.from_log(self.log)
        self.limits = limits or SyncLimits()
        self.arrived: list[int] = []
        """created_ms of every envelope accept saw, in arrival order."""

    async def accept(self, envelopes: list[bytes]) -> int:
        new = 0
        for raw in envelopes:
            message = validate_message(raw, NOW_MS)
            self.arrived.append(message.record.created_ms)
            batch = Batch()
            if self.log.stage(batch, message):
                self.kv.write(batch)
                self.items.add(message.record.created_ms, message.id)
                new += 1
        return new

    async def run(self, stream: SyncStream, *, initiator: bool) -> SyncResult:
        return await run_sync(
            stream,
            initiator=initiator,
            items=self.items,
            load=self.log.get,
            accept=self.accept,
            limits=self.limits,
        )

    def fingerprint(self) -> bytes:
        return self.items.fingerprint(BOUND_MIN, BOUND_MAX)


async def sync(a: Side, b: Side) -> tuple[SyncResult, SyncResult]:
    """One session, ``a`` initiating."""
    left, right = stream_pair()
    results: dict[str, SyncResult] = {}

    async def run(name: str, side: Side, stream: TrioStream, initiator: bool) -> None:
        results[name] = await side.run(stream, initiator=initiator)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "a", a, left, True)
        nursery.start_soon(run, "b", b, right, False)
    return results["a"], results["b"]


# ---------------------------------------------------------------------------------------
# Two real sides.


@pytest.mark.trio
async def test_identical_sets_transfer_nothing() -> None:
    messages = follows(300)
    a, b = Side(messages), Side(messages)
    ra, rb = await sync(a, b)
    for result in (ra, rb):
        assert result.settled
        assert (result.have, result.need, result.sent, result.received) == (0, 0, 0, 0)
    assert ra.rounds == rb.rounds == 1  # a fingerprint, then an empty final reply
    assert ra.bytes_out == rb.bytes_in and rb.bytes_out == ra.bytes_in


@pytest.mark.trio
async def test_empty_sets() -> None:
    ra, rb = await sync(Side(), Side())
    assert ra.settled and rb.settled and ra.sent == rb.sent == 0


@pytest.mark.trio
async def test_disjoint_sets_exchange_everything() -> None:
    messages = follows(110)
    a, b = Side(messages[:50]), Side(messages[50:])
    ra, rb = await sync(a, b)
    assert (ra.have, ra.need, ra.sent, ra.received, ra.accepted) == (50, 60, 50, 60, 60)
    assert (rb.have, rb.need, rb.sent, rb.received, rb.accepted) == (60, 50, 60, 50, 50)
    assert ra.settled and rb.settled
    assert a.fingerprint() == b.fingerprint() == Side(messages).fingerprint()
    assert a.log.count() == b.log.count() == 110


@pytest.mark.parametrize("a_initiates", [True, False])
@pytest.mark.trio
async def test_200_differences_among_5000_each_way(a_initiates: bool) -> None:
    messages = follows(5200)
    only_a = messages[4800:5000]
    only_b = messages[5000:]
    common = messages[:4800]
    small = SyncLimits(envelopes_per_frame_max=16)
    a, b = Side(common + only_a, limits=small), Side(common + only_b)
    first, second = (a, b) if a_initiates else (b, a)
    r1, r2 = await sync(first, second)
    ra, rb = (r1, r2) if a_initiates else (r2, r1)
    assert (ra.sent, ra.received, ra.accepted) == (200, 200, 200)
    assert (rb.sent, rb.received, rb.accepted) == (200, 200, 200)
    assert a.fingerprint() == b.fingerprint()
    assert a.log.count() == b.log.count() == 5200
    # Pushed in ascending time order, in frames of at most 16 envelopes from a.
    assert a.arrived == sorted(a.arrived) and b.arrived == sorted(b.arrived)
    assert ra.bytes_out > 200 * len(only_a[0].raw) + 13 * 5
    # Reconciliation cost stays far below sending every id (5,000 * 32 bytes).
    assert ra.bytes_out - sum(len(m.raw) + 3 for m in only_a) < 5000 * 32
    # Nothing left to do.
    again = await sync(a, b)
    assert [r.sent for r in again] == [0, 0]


@pytest.mark.trio
async def test_frames_are_cut_by_size() -> None:
    manifests = [
        sealed_manifest(AUTHORS[0], fake_video(b"v%d" % n, segments=40), created_ms=NOW_MS - n)
        for n in range(120)
    ]
    total = sum(len(m.raw) for m in manifests)
    limits = SyncLimits(frame_bytes_max=140_000)
    assert total > 2 * limits.frame_bytes_max
    a, b = Side(manifests, limits=limits), Side()
    frames = 0
    accept = b.accept

    async def counting(envelopes: list[bytes]) -> int:
        nonlocal frames
        frames += 1
        assert sum(len(raw) for raw in envelopes) <= limits.frame_bytes_max
        return await accept(envelopes)

    b.accept = counting  # type: ignore[method-assign]
    ra, _ = await sync(a, b)
    assert ra.sent == 120 and b.log.count() == 120
    assert frames >= -(-total // limits.frame_bytes_max)


@pytest.mark.parametrize("who_is_short", ["initiator", "responder"])
@pytest.mark.trio
async def test_a_session_out_of_rounds_still_transfers_what_it_learned(who_is_short: str) -> None:
    # 600 differences spread evenly, and replies of at most 4,000 bytes: one side runs out
    # of rounds before the end, and each session pushes what both sides learned so far.
    messages = follows(3000)
    a = Side([m for i, m in enumerate(messages) if i % 10 != 0])
    b = Side([m for i, m in enumerate(messages) if i % 10 != 5])
    small = ReconcileLimits(message_bytes_max=4000, ids_max=100)
    a.limits = b.limits = SyncLimits(reconcile=small)
    short = SyncLimits(reconcile=dataclasses.replace(small, rounds_max=8))
    (a if who_is_short == "initiator" else b).limits = short
    sessions = 0
    while True:
        ra, rb = await sync(a, b)  # no SyncError: nothing pushed is unannounced
        sessions += 1
        if ra.settled and rb.settled:
            break
        assert not ra.settled and not rb.settled
        assert ra.sent > 0 and rb.sent > 0, "every session makes progress"
        assert sessions < 30
    assert sessions > 2
    assert a.fingerprint() == b.fingerprint() == Side(messages).fingerprint()


@pytest.mark.trio
async def test_placeholders_are_never_served() -> None:
    manifest = sealed_manifest(AUTHORS[0], fake_video(b"v"))
    created_ms = manifest.record.created_ms
    tombstone = seal(
        AUTHORS[0], Tombstone(AUTHORS[0].public_key, NOW_MS + 1, manifest.id, "withdrawn")
    )
    common = follows(40)
    # a withdrew the video; b never heard of it, nor of the tombstone.
    a = Side([*common, manifest, tombstone])
    batch = Batch()
    a.log.stage_withdrawn(batch, manifest.id, created_ms)
    a.kv.write(batch)
    b = Side(common)
    ra, rb = await sync(a, b)
    assert (ra.have, ra.sent, ra.withheld) == (2, 1, 1)
    assert (rb.need, rb.received) == (2, 1)
    assert b.log.has(tombstone.id) and not b.log.has(manifest.id)
    # Once b knows of the withdrawal too, the sets agree.
    batch = Batch()
    b.log.stage_withdrawn(batch, manifest.id, created_ms)
    b.kv.write(batch)
    b.items.add(created_ms, manifest.id)
    ra, rb = await sync(a, b)
    assert ra.settled and (ra.have, ra.need) == (0, 0)
    # A node still holding the manifest never gets it from a, and a never takes it back.
    c = Side([*common, manifest])
    rc, ra = await sync(c, a)
    assert (rc.need, rc.received, ra.withheld) == (1, 1, 0)  # c gets the tombstone only
    assert (rc.have, rc.sent) == (0, 0)  # same item on both sides: nothing to push
    assert a.log.get(manifest.id) is None


# ---------------------------------------------------------------------------------------
# Scripted peers.


async def read_frame(stream: TrioStream) -> SyncFrame:
    prefix = await read_exactly(stream, 4)
    return decode_frame(await read_exactly(stream, int.from_bytes(prefix, "big")))


async def read_exactly(stream: TrioStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = await stream.read(n - len(data))
        assert more, "unexpected end of stream"
        data += more
    return data


async def against(
    side: Side, script: Callable[[TrioStream], object], *, initiator: bool = False
) -> tuple[SyncError, TrioStream]:
    """Run ``side`` against a scripted peer; return the error it raised and the peer end."""
    ours, theirs = stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(script, theirs)  # type: ignore[arg-type]
        with pytest.raises(SyncError) as caught:
            await side.run(ours, initiator=initiator)
        nursery.cancel_scope.cancel()
    return caught.value, theirs


def frame_bytes(kind: int, **fields: object) -> bytes:
    body = {"envelopes": [], "kind": kind, "message": b"", "reason": ""}
    body.update(fields)
    data = encode(body)
    return len(data).to_bytes(4, "big") + data


@pytest.mark.trio
async def test_malformed_frame_is_a_protocol_error_and_the_peer_is_told() -> None:
    async def script(stream: TrioStream) -> None:
        await stream.write(b"\0\0\0\3\x81\xa1x")  # a map, truncated
        await trio.sleep_forever()

    error, peer = await against(Side(follows(10)), script)
    assert isinstance(error, SyncProtocolError) and "bad frame" in str(error)
    told = await read_frame(peer)
    assert told.kind == ERROR and "bad frame" in told.reason


@pytest.mark.trio
async def test_oversize_frame_is_refused_before_its_body_arrives() -> None:
    async def script(stream: TrioStream) -> None:
        await stream.write((FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
        await trio.sleep_forever()

    error, _ = await against(Side(), script)
    assert isinstance(error, SyncProtocolError) and "exceeds the limit" in str(error)


@pytest.mark.trio
async def test_bad_reconciliation_message_is_a_protocol_error() -> None:
    async def script(stream: TrioStream) -> None:
        await stream.write(frame_bytes(RECONCILE, message=b"\x82\xa6ranges\x90\xa7version\x02"))
        await trio.sleep_forever()

    error, _ = await against(Side(), script)
    assert isinstance(error, SyncProtocolError) and "version 2" in str(error)


@pytest.mark.trio
async def test_reconcile_frame_after_reconciliation_ended() -> None:
    async def script(stream: TrioStream) -> None:
        await read_frame(stream)  # the initiator's fingerprint
        final = reconcile_frame(Message(ranges=(), version=VERSION))
        await stream.write(encode_frame(final) + encode_frame(final))
        await trio.sleep_forever()

    error, _ = await against(Side(follows(50)), script, initiator=True)
    assert isinstance(error, SyncProtocolError) and AFTER_RECONCILE in str(error)


async def lying_peer(load: Callable[[bytes], bytes | None]) -> SyncError:
    """A real peer whose ``load`` lies; return the error our side raised."""
    messages = follows(60)
    honest, liar = Side(messages[:40]), Side(messages[:30] + messages[40:])
    left, right = stream_pair()
    caught: list[SyncError] = []

    async def run_honest() -> None:
        try:
            await honest.run(left, initiator=True)
        except SyncError as exc:
            caught.append(exc)

    async def run_liar() -> None:
        # The liar may have read our End before our Error frame: it need not hear of it.
        with contextlib.suppress(SyncRefused):
            await run_sync(
                right,
                initiator=False,
                items=liar.items,
                load=load,
                accept=liar.accept,
                limits=SyncLimits(),
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_honest)
        nursery.start_soon(run_liar)
    assert honest.log.count() == 40, "nothing of a refused frame is accepted"
    return caught[0]


@pytest.mark.trio
async def test_a_peer_pushing_unannounced_envelopes_is_refused() -> None:
    unrelated = follow(100_000).raw
    error = await lying_peer(lambda mid: unrelated)
    assert isinstance(error, SyncProtocolError) and UNANNOUNCED in str(error)


@pytest.mark.trio
async def test_a_peer_pushing_an_envelope_twice_is_refused() -> None:
    announced = follows(60)[45].raw
    error = await lying_peer(lambda mid: announced)
    assert isinstance(error, SyncProtocolError) and UNANNOUNCED in str(error)


@pytest.mark.trio
async def test_an_error_frame_ends_the_session() -> None:
    async def script(stream: TrioStream) -> None:
        await stream.write(encode_frame(error_frame("busy")))
        await trio.sleep_forever()

    error, _ = await against(Side(), script)
    assert isinstance(error, SyncRefused) and "busy" in str(error)


@pytest.mark.trio
async def test_a_stream_closed_early() -> None:
    async def script(stream: TrioStream) -> None:
        await stream.write(b"\0\0")  # half a length prefix
        await stream.close()

    error, _ = await against(Side(), script)
    assert isinstance(error, SyncClosed)


@pytest.mark.trio
async def test_a_silent_peer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def script(stream: TrioStream) -> None:
        await trio.sleep_forever()

    side = Side(limits=SyncLimits(frame_timeout_s=30))
    start = trio.current_time()
    error, peer = await against(side, script)
    assert isinstance(error, SyncTimeout) and "30" in str(error)
    assert trio.current_time() - start == pytest.approx(30)
    assert (await read_frame(peer)).kind == ERROR


@pytest.mark.trio
async def test_a_trickling_peer_hits_the_session_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A frame every 20 s, each one a fingerprint that differs, so the session would go on
    # for rounds_max rounds: each frame comes in time, the session does not.
    bogus = Message(ranges=(Range.fingerprint(BOUND_MAX, b"\1" * 16),), version=VERSION)

    async def script(stream: TrioStream) -> None:
        while True:
            await trio.sleep(20)
            await stream.write(encode_frame(reconcile_frame(bogus)))
            assert (await read_frame(stream)).kind == RECONCILE

    side = Side(follows(100), limits=SyncLimits(frame_timeout_s=30, session_timeout_s=100))
    error, _ = await against(side, script)
    assert isinstance(error, SyncTimeout) and "session" in str(error)


# ---------------------------------------------------------------------------------------
# Frames: rules, round trips and the document.


def frame(kind: int, **fields: object) -> SyncFrame:
    values: dict[str, object] = {"envelopes": (), "kind": kind, "message": b"", "reason": ""}
    values.update(fields)
    return SyncFrame(**values)  # type: ignore[arg-type]


INVALID_FRAMES = [
    ("A Reconcile frame carries a message and nothing else.", frame(RECONCILE)),
    (
        "A Reconcile frame carries a message and nothing else.",
        frame(RECONCILE, message=b"\x80", reason="x"),
    ),
    ("An Envelopes frame carries at least one envelope and nothing else.", frame(ENVELOPES)),
    (
        "An Envelopes frame carries at least one envelope and nothing else.",
        frame(ENVELOPES, envelopes=(b"e",), message=b"m"),
    ),
    ("An End frame carries nothing.", frame(END, reason="done")),
    ("An Error frame carries nothing but its reason.", frame(ERROR, envelopes=(b"e",))),
]


@pytest.mark.parametrize(("rule", "bad"), INVALID_FRAMES)
def test_invalid_frame(rule: str, bad: SyncFrame) -> None:
    with pytest.raises(DecodeError):
        check_frame(bad)
    data = frame_bytes(
        bad.kind, envelopes=list(bad.envelopes), message=bad.message, reason=bad.reason
    )
    with pytest.raises(DecodeError):
        decode_frame(data[4:])


@pytest.mark.parametrize(
    ("rule", "length"),
    [
        ("A frame has a body: no frame encodes to zero bytes.", 0),
        (
            "A body is at most FRAME_BYTES_MAX bytes, checked before it is read.",
            FRAME_BYTES_MAX + 1,
        ),
    ],
)
def test_invalid_frame_length(rule: str, length: int) -> None:
    with pytest.raises(DecodeError):
        check_frame_length(length)
    assert check_frame_length(FRAME_BYTES_MAX) == FRAME_BYTES_MAX


def test_frames_beyond_the_field_limits_are_not_encoded() -> None:
    for bad in (
        envelopes_frame([b"e"] * (ENVELOPES_PER_FRAME_MAX + 1)),
        envelopes_frame([b"e" * (ENVELOPE_BYTES_MAX + 1)]),
        frame(ERROR, reason="x" * (REASON_BYTES_MAX + 1)),
        frame(KIND_MAX + 1),
    ):
        with pytest.raises(DecodeError):
            encode_frame(bad)


def test_invalid_frame_fields() -> None:
    for data in (
        frame_bytes(KIND_MAX + 1),
        frame_bytes(ENVELOPES, envelopes=[b"e"] * (ENVELOPES_PER_FRAME_MAX + 1)),
        frame_bytes(ERROR, reason="x" * (REASON_BYTES_MAX + 1)),
        frame_bytes(END, extra=1),
    ):
        with pytest.raises(DecodeError):
            decode_frame(data[4:])


def test_every_rule_has_a_case_and_is_documented() -> None:
    source = Path(node.sync.__file__).read_text(encoding="utf-8")
    rules = re.findall(r"# \[REJECT\] (.+)", source)
    assert len(rules) == 7
    cases = {rule for rule, _ in INVALID_FRAMES} | {
        "A frame has a body: no frame encodes to zero bytes.",
        "A body is at most FRAME_BYTES_MAX bytes, checked before it is read.",
        "Every envelope pushed is one reconciliation announced, each once.",
    }
    assert set(rules) == cases
    docs = DOCS.read_text(encoding="utf-8")
    assert not [rule for rule in rules if f"[REJECT] {rule}" not in docs], "rule not in docs"


def test_error_reason_is_cut_on_a_character_boundary() -> None:
    reason = error_frame("é" * REASON_BYTES_MAX).reason
    assert len(reason.encode("utf-8")) == REASON_BYTES_MAX
    assert decode_frame(encode_frame(error_frame("é" * 200))[4:]).reason == "é" * 128


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.builds(
            envelopes_frame,
            st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20),
        ),
        st.builds(error_frame, st.text(max_size=300)),
        st.just(end_frame()),
        st.builds(
            lambda ids: reconcile_frame(Reconciler(NodeItemSet(ids)).initiate()),
            st.dictionaries(st.binary(min_size=32, max_size=32), st.integers(0, 2**40)).map(
                lambda by_id: [(ms, mid) for mid, ms in by_id.items()]
            ),
        ),
    )
)
def test_frames_round_trip(value: SyncFrame) -> None:
    data = encode_frame(value)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert decode_frame(data[4:]) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_frame(data)


def test_docs_quote_current_bytes() -> None:
    hex_text = re.sub(r"\s+", "", DOCS.read_text(encoding="utf-8"))
    first = Message(ranges=(), version=VERSION)
    for data in (encode_frame(end_frame()), encode_frame(reconcile_frame(first))):
        assert data.hex() in hex_text, data.hex(" ")
    assert encode_message(first).hex() in hex_text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_timeout_s": 0},
        {"session_timeout_s": -1},
        {"frame_bytes_max": FRAME_BYTES_MAX + 1},
        {"frame_bytes_max": 100_000},
        {"envelopes_per_frame_max": 0},
        {"envelopes_per_frame_max": ENVELOPES_PER_FRAME_MAX + 1},
    ],
)
def test_invalid_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SyncLimits(**kwargs)  # type: ignore[arg-type]


def test_node_item_set() -> None:
    items = NodeItemSet([(5, b"\1" * 32), (3, b"\2" * 32)])
    assert len(items) == 2 and items.created_ms(b"\1" * 32) == 5
    assert items.ids(BOUND_MIN, BOUND_MAX) == [b"\2" * 32, b"\1" * 32]
    assert items.add(4, b"\3" * 32) and not items.add(4, b"\3" * 32)
    assert b"\3" * 32 in items and items.count(BOUND_MIN, BOUND_MAX) == 3
    with pytest.raises(ValueError, match="not 6"):
        items.add(6, b"\3" * 32)
    with pytest.raises(ValueError, match="not 2"):
        NodeItemSet([(1, b"\1" * 32), (2, b"\1" * 32)])


# ---------------------------------------------------------------------------------------
# Over real py-libp2p hosts.


@pytest.mark.trio
async def test_sync_between_two_libp2p_hosts() -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.peerinfo import info_from_p2p_addr

    messages = follows(400)
    a, b = Side(messages[:300]), Side(messages[100:])
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    hosts = [
        new_host(
            key_pair=create_new_key_pair(bytes([seed]) * 32),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
            listen_addrs=listen,
        )
        for seed in (1, 2)
    ]
    served: list[SyncResult] = []
    done = trio.Event()

    async def handler(stream: SyncStream) -> None:
        try:
            served.append(await b.run(stream, initiator=False))
        finally:
            done.set()

    with trio.fail_after(30):
        async with hosts[0].run(listen), hosts[1].run(listen):
            hosts[1].set_stream_handler(PROTOCOL_ID, handler)
            await hosts[0].connect(info_from_p2p_addr(hosts[1].get_addrs()[0]))
            stream = await hosts[0].new_stream(hosts[1].get_id(), [PROTOCOL_ID])
            result = await a.run(stream, initiator=True)
            await done.wait()
            # Closed here: leaving host.run leaves the dialer's TCP socket open.
            await hosts[0].disconnect(hosts[1].get_id())
    assert (result.sent, result.received, result.accepted) == (100, 100, 100)
    assert (served[0].sent, served[0].received) == (100, 100)
    assert a.fingerprint() == b.fingerprint() == Side(messages).fingerprint()
