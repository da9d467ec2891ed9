"""The sync stream protocol, ``/toktok/sync/1.0.0``: anti-entropy between two nodes.

One session per stream. First the two sides reconcile their sets of messages with the
sans-IO :class:`~protocol.reconcile.Reconciler`, alternating messages until one side's
reply is final (or a side runs out of rounds); then each side pushes the envelopes the
other lacks, in frames, and ends with an End frame. A peer may push only what the
reconciliation announced as different, each message once, so it cannot flood us with
anything else. docs/sync.md section 8 specifies the frames byte by byte.

How the node drives it::

    async def handle_sync(stream: INetStream) -> None:  # host.set_stream_handler(PROTOCOL_ID, ...)
        try:
            result = await run_sync(stream, initiator=False, items=node_items,
                                    load=log.get, accept=accept, limits=limits)
        except SyncError as exc:
            ...  # log; penalise the peer for SyncProtocolError and SyncTimeout

    stream = await host.new_stream(peer_id, [PROTOCOL_ID])
    result = await run_sync(stream, initiator=True, ...)

:func:`run_sync` closes the stream in every case. Nothing may escape a py-libp2p stream
handler (it would end the connection's tasks), so a handler catches :class:`SyncError`,
and ``Exception`` with a log line. The frame codec is pure and could move to ``protocol/``
with a second driver (the simulator).
"""

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException

from protocol.certs import item_id
from protocol.codec import bin_bytes, check_field, decode_record, encode_record, fld
from protocol.envelope import ENVELOPE_BYTES_MAX
from protocol.errors import DecodeError
from protocol.itemset import TIMESTAMP_MS_MAX, Bound, Item, ItemSet, MemoryItemSet
from protocol.reconcile import DEFAULT_LIMITS, ReconcileLimits, Reconciler
from protocol.reconcilewire import (
    ID_DIFF,
    MESSAGE_BYTES_MAX,
    Message,
    encode_message,
)
from storage.messages import MessageLog

PROTOCOL_ID = TProtocol("/toktok/sync/1.0.0")
LENGTH_PREFIX_BYTES = 4
FRAME_BYTES_MAX = 1024 * 1024
"""The largest frame body a receiver accepts, checked on the length prefix before reading."""
ENVELOPES_PER_FRAME_MAX = 256
REASON_BYTES_MAX = 256
"""The longest reason an Error frame carries (UTF-8 bytes)."""
CLOSE_TIMEOUT_S = 5.0
"""How long a session ending in an error may spend telling the peer, and closing."""

# Frame kinds. Plain ints, not an IntEnum: the canonical encoder packs exact types only.
RECONCILE = 0
"""``message`` holds one reconciliation message (docs/sync.md section 4)."""
ENVELOPES = 1
"""``envelopes`` holds 1 to ENVELOPES_PER_FRAME_MAX signed envelopes the receiver lacks."""
END = 2
"""The sender has pushed everything it will; the last frame of its direction."""
ERROR = 3
"""The sender ends the session because of ``reason``; the last frame of its direction."""
KIND_MAX = ERROR
KIND_NAMES = {RECONCILE: "Reconcile", ENVELOPES: "Envelopes", END: "End", ERROR: "Error"}

_STREAM_GONE = (IOException, trio.BrokenResourceError, trio.ClosedResourceError)

AFTER_RECONCILE = "a Reconcile frame arrived after reconciliation ended"
UNANNOUNCED = "the peer pushed an envelope the reconciliation did not announce"


class SyncError(Exception):
    """A sync session failed; the stream is closed. Subclasses say whose fault it was."""


class SyncProtocolError(SyncError):
    """The peer broke the protocol (a malformed or oversize frame, a frame out of turn, an
    unannounced envelope): penalise it."""


class SyncTimeout(SyncError):
    """The peer kept us waiting longer than the limits allow (a frame, or the session)."""


class SyncClosed(SyncError):
    """The stream ended or broke before the session did; the cause is in ``__cause__``."""


class SyncRefused(SyncError):
    """The peer ended the session with an Error frame; its reason is the message."""


@dataclass(frozen=True)
class SyncFrame:
    """One frame body: a tagged union whose ``kind`` says which other field is in use.

    Unused fields are empty; :func:`check_frame` enforces it.
    """

    envelopes: tuple[bytes, ...] = fld(
        items_max=ENVELOPES_PER_FRAME_MAX, item_len_max=ENVELOPE_BYTES_MAX
    )
    kind: int = fld(value_max=KIND_MAX)
    message: bytes = fld(len_max=MESSAGE_BYTES_MAX)
    reason: str = fld(len_max=REASON_BYTES_MAX)


def reconcile_frame(message: Message) -> SyncFrame:
    return SyncFrame(envelopes=(), kind=RECONCILE, message=encode_message(message), reason="")


def envelopes_frame(envelopes: Iterable[bytes]) -> SyncFrame:
    return SyncFrame(envelopes=tuple(envelopes), kind=ENVELOPES, message=b"", reason="")


def end_frame() -> SyncFrame:
    return SyncFrame(envelopes=(), kind=END, message=b"", reason="")


def error_frame(reason: str) -> SyncFrame:
    """An Error frame, ``reason`` cut to REASON_BYTES_MAX bytes on a character boundary."""
    cut = reason.encode("utf-8")[:REASON_BYTES_MAX].decode("utf-8", "ignore")
    return SyncFrame(envelopes=(), kind=ERROR, message=b"", reason=cut)


def check_frame(frame: SyncFrame) -> None:
    """Check the rules of a frame beyond its record's field limits. Raises
    :class:`~protocol.errors.DecodeError`."""
    name = KIND_NAMES.get(frame.kind, str(frame.kind))
    carries = (bool(frame.envelopes), bool(frame.message), bool(frame.reason))
    # [REJECT] A Reconcile frame carries a message and nothing else.
    if frame.kind == RECONCILE and carries != (False, True, False):
        raise DecodeError(f"{name} frame must carry a message and nothing else")
    # [REJECT] An Envelopes frame carries at least one envelope and nothing else.
    if frame.kind == ENVELOPES and carries != (True, False, False):
        raise DecodeError(f"{name} frame must carry envelopes and nothing else")
    # [REJECT] An End frame carries nothing.
    if frame.kind == END and any(carries):
        raise DecodeError(f"{name} frame must carry nothing")
    # [REJECT] An Error frame carries nothing but its reason.
    if frame.kind == ERROR and (frame.envelopes or frame.message):
        raise DecodeError(f"{name} frame must carry nothing but its reason")


def encode_frame(frame: SyncFrame) -> bytes:
    """The 4-byte big-endian body length, then the body: the frame's canonical encoding.

    Raises :class:`~protocol.errors.DecodeError` when the frame breaks a field limit or a
    rule: nothing is written that the receiver would refuse.
    """
    for field in dataclasses.fields(frame):
        check_field(SyncFrame, field.name, getattr(frame, field.name))
    check_frame(frame)
    body = encode_record(frame)
    assert len(body) <= FRAME_BYTES_MAX, "senders size their frames within the limit"
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


def decode_frame(body: bytes) -> SyncFrame:
    """Decode and check one frame body. Raises :class:`~protocol.errors.DecodeError`."""
    frame = decode_record(SyncFrame, body, bytes_max=FRAME_BYTES_MAX)
    check_frame(frame)
    return frame


def check_frame_length(length: int) -> int:
    """Return ``length``, a frame's body length, if a receiver accepts it. Raises
    :class:`~protocol.errors.DecodeError`."""
    # [REJECT] A frame has a body: no frame encodes to zero bytes.
    if length == 0:
        raise DecodeError("frame with an empty body")
    # [REJECT] A body is at most FRAME_BYTES_MAX bytes, checked before it is read.
    if length > FRAME_BYTES_MAX:
        raise DecodeError(f"frame of {length} bytes exceeds the limit of {FRAME_BYTES_MAX}")
    return length


_ENVELOPES_OVERHEAD_BYTES = len(encode_record(envelopes_frame(()))) + 2
"""An Envelopes frame less its envelopes: the empty one, whose 1-byte array header grows to
3 bytes for 16 to 256 items."""
_RECONCILE_FRAME_BYTES_MAX = len(encode_record(error_frame(""))) + bin_bytes(MESSAGE_BYTES_MAX)
assert _RECONCILE_FRAME_BYTES_MAX <= FRAME_BYTES_MAX, "every reconciliation message fits a frame"
_ONE_ENVELOPE_FRAME_BYTES_MAX = _ENVELOPES_OVERHEAD_BYTES + bin_bytes(ENVELOPE_BYTES_MAX)


@dataclass(frozen=True)
class SyncLimits:
    """What one side allows a session, and how it shapes what it sends.

    ``frame_bytes_max`` and ``envelopes_per_frame_max`` shape our Envelopes frames (at most
    the protocol's FRAME_BYTES_MAX and ENVELOPES_PER_FRAME_MAX, which a receiver accepts).
    """

    reconcile: ReconcileLimits = DEFAULT_LIMITS
    frame_timeout_s: float = 30.0
    """The longest wait for one frame to arrive, or to be written (the peer not reading)."""
    session_timeout_s: float = 600.0
    frame_bytes_max: int = FRAME_BYTES_MAX
    envelopes_per_frame_max: int = ENVELOPES_PER_FRAME_MAX

    def __post_init__(self) -> None:
        """Raises :class:`ValueError` for limits outside the protocol's or without progress."""
        if not self.frame_timeout_s > 0 or not self.session_timeout_s > 0:
            raise ValueError("timeouts must be positive")
        if not _ONE_ENVELOPE_FRAME_BYTES_MAX <= self.frame_bytes_max <= FRAME_BYTES_MAX:
            raise ValueError(
                f"frame_bytes_max must be in [{_ONE_ENVELOPE_FRAME_BYTES_MAX}, {FRAME_BYTES_MAX}]"
            )
        if not 1 <= self.envelopes_per_frame_max <= ENVELOPES_PER_FRAME_MAX:
            raise ValueError(f"envelopes_per_frame_max must be in [1, {ENVELOPES_PER_FRAME_MAX}]")


@dataclass(frozen=True)
class SyncResult:
    """What one side of a finished session did."""

    rounds: int
    """Reconciliation messages received."""
    settled: bool
    """Both sides finished reconciling: the whole difference is known (neither ran out of
    rounds). After the transfer the sets are equal but for what was withheld or refused."""
    have: int
    """Items we held that the peer lacked."""
    need: int
    """Items the peer held that we lacked."""
    sent: int
    """Envelopes pushed to the peer."""
    withheld: int
    """Items of ``have`` not pushed: placeholders, or what ``load`` no longer had."""
    received: int
    """Envelopes the peer pushed."""
    accepted: int
    """Of those, how many ``accept`` said were new."""
    bytes_in: int
    bytes_out: int


class SyncStream(Protocol):
    """The stream a session runs on. py-libp2p's INetStream fits it; its read() raises
    StreamEOF at the end, where this protocol's returns b"" (both are handled)."""

    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class SyncItems(ItemSet, Protocol):
    """The item set a session reconciles, which also knows each item's timestamp, so the
    envelopes the peer lacks go out in time order."""

    def created_ms(self, mid: bytes) -> int | None:
        """The timestamp of item ``mid``, or None if it is not in the set."""
        ...


class NodeItemSet:
    """The node's sync set in memory (a :class:`SyncItems`), built from the
    :class:`MessageLog` at start and grown with :meth:`add` as messages are accepted.

    A :class:`MemoryItemSet` plus a dict from id to timestamp: about 400 bytes per item.
    """

    def __init__(self, items: Iterable[Item] = ()) -> None:
        """Raises :class:`ValueError` for an invalid item or one id at two timestamps."""
        listed = list(items)
        self._set = MemoryItemSet(listed)
        self._ms: dict[bytes, int] = {}
        for created_ms, mid in listed:
            self._check_same(self._ms.setdefault(mid, created_ms), created_ms, mid)

    @classmethod
    def from_log(cls, log: MessageLog) -> "NodeItemSet":
        """Every item of ``log``, placeholders included."""
        return cls(log.items())

    def add(self, created_ms: int, mid: bytes) -> bool:
        """Add item ``(created_ms, mid)``; return whether it was new. Call it once the batch
        that stages the message is written (``batch.on_write``). Raises :class:`ValueError`
        for an invalid item, or an id already held at another timestamp."""
        held = self._ms.get(mid)
        if held is not None:
            self._check_same(held, created_ms, mid)
            return False
        self._set.add((created_ms, mid))
        self._ms[mid] = created_ms
        return True

    @staticmethod
    def _check_same(held: int, created_ms: int, mid: bytes) -> None:
        if held != created_ms:
            raise ValueError(f"item {mid.hex()} is at {held} ms, not {created_ms}")

    def created_ms(self, mid: bytes) -> int | None:
        return self._ms.get(mid)

    def __len__(self) -> int:
        return len(self._ms)

    def __contains__(self, mid: object) -> bool:
        return mid in self._ms

    def count(self, lower: Bound, upper: Bound) -> int:
        return self._set.count(lower, upper)

    def fingerprint(self, lower: Bound, upper: Bound) -> bytes:
        return self._set.fingerprint(lower, upper)

    def split(self, lower: Bound, upper: Bound, parts: int) -> list[Bound]:
        return self._set.split(lower, upper, parts)

    def ids(self, lower: Bound, upper: Bound) -> list[bytes]:
        return self._set.ids(lower, upper)


async def run_sync(
    stream: SyncStream,
    *,
    initiator: bool,
    items: SyncItems,
    load: Callable[[bytes], bytes | None],
    accept: Callable[[list[bytes]], Awaitable[int]],
    limits: SyncLimits,
) -> SyncResult:
    """Run one sync session on ``stream``, then close it.

    ``load(mid)`` returns the exact envelope bytes of an item we hold (their SHA-256 is
    ``mid``), or None for a placeholder or an item gone since. ``accept(envelopes)``
    validates and stores what the peer pushed, frame by frame, and returns how many were
    new; the envelopes are ones reconciliation announced, but their contents are
    unchecked. It may raise :class:`SyncError` to end the session (say, for a peer pushing
    invalid messages).

    Raises :class:`SyncProtocolError`, :class:`SyncTimeout`, :class:`SyncClosed` or
    :class:`SyncRefused`; exceptions from ``load`` and ``accept`` propagate as they are.
    On a protocol error or a timeout of ours, the peer is sent an Error frame first.
    """
    session = _Session(stream, items, load, accept, limits)
    try:
        try:
            with trio.fail_after(limits.session_timeout_s):
                await session.run(initiator)
        except trio.TooSlowError as exc:
            raise SyncTimeout(f"session longer than {limits.session_timeout_s} s") from exc
    except (SyncProtocolError, SyncTimeout) as exc:
        await session.tell_peer(str(exc))
        raise
    finally:
        await session.close()
    return session.result()


class _Session:
    """One side of one session: the reconciliation, then the transfer."""

    def __init__(
        self,
        stream: SyncStream,
        items: SyncItems,
        load: Callable[[bytes], bytes | None],
        accept: Callable[[list[bytes]], Awaitable[int]],
        limits: SyncLimits,
    ) -> None:
        self._stream = stream
        self._items = items
        self._load = load
        self._accept = accept
        self._limits = limits
        self._reconciler = Reconciler(items, limits=limits.reconcile)
        self._to_push: list[bytes] = []
        # What the peer may push: every id reconciliation reported, either way. Our own
        # `have` belongs here too: a peer that stored one of those items while the session
        # ran counts it as its own `have` and pushes it back (docs/sync.md section 6). Each
        # id leaves the set when it arrives.
        self._announced: set[bytes] = set()
        self._have = self._need = 0
        self._peer_ended_early = False
        self._sent = self._withheld = self._received = self._accepted = 0
        self._bytes_in = self._bytes_out = 0
        self._buf = bytearray()
        # True while a write is under way or was cut short: the stream may then hold half a
        # frame, and no Error frame can follow.
        self._write_torn = False

    async def run(self, initiator: bool) -> None:
        if initiator:
            await self._send(reconcile_frame(self._reconciler.initiate()))
        first = await self._reconcile()
        await self._transfer(first)

    def result(self) -> SyncResult:
        return SyncResult(
            rounds=self._reconciler.rounds,
            settled=self._reconciler.done
            and not self._reconciler.exhausted
            and not self._peer_ended_early,
            have=self._have,
            need=self._need,
            sent=self._sent,
            withheld=self._withheld,
            received=self._received,
            accepted=self._accepted,
            bytes_in=self._bytes_in,
            bytes_out=self._bytes_out,
        )

    # Reconciliation -------------------------------------------------------------------

    async def _reconcile(self) -> SyncFrame | None:
        """Alternate reconciliation messages until our side is done; return the peer's first
        transfer frame if the peer moved on first (it ran out of rounds)."""
        while True:
            frame = await self._receive()
            if frame.kind != RECONCILE:
                self._peer_ended_early = True
                return frame
            try:
                # Checked against the rules by receive() itself.
                message = decode_record(Message, frame.message, bytes_max=MESSAGE_BYTES_MAX)
                outcome = self._reconciler.receive(message)
            except DecodeError as exc:
                raise SyncProtocolError(f"bad reconciliation message: {exc}") from exc
            have = outcome.have
            if self._reconciler.exhausted:
                # No reply goes out, so the peer never learns what we found answering its
                # IdLists: push only what its own IdDiffs told it is missing.
                told = _id_diff_ids(message)
                have = [mid for mid in have if mid in told]
            self._to_push.extend(have)
            self._have += len(have)
            self._need += len(outcome.need)
            self._announced.update(outcome.have, outcome.need)
            if outcome.reply is not None:
                await self._send(reconcile_frame(outcome.reply))
            if outcome.done:
                return None

    # Transfer -------------------------------------------------------------------------

    async def _transfer(self, first: SyncFrame | None) -> None:
        """Push what the peer lacks while taking what it pushes: both at once, since each
        side may be blocked writing until the other reads."""
        failures: list[Exception] = []

        async def guarded(step: Callable[[], Awaitable[None]]) -> None:
            try:
                await step()
            except Exception as exc:  # the top of a task: the parent re-raises it
                failures.append(exc)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, self._push)
            nursery.start_soon(guarded, lambda: self._take(first))
        if failures:
            raise failures[0]

    async def _push(self) -> None:
        def position(mid: bytes) -> tuple[int, bytes]:
            created_ms = self._items.created_ms(mid)
            return (TIMESTAMP_MS_MAX + 1 if created_ms is None else created_ms, mid)

        batch: list[bytes] = []
        size = _ENVELOPES_OVERHEAD_BYTES
        for mid in sorted(self._to_push, key=position):
            raw = self._load(mid)
            if raw is None or len(raw) > ENVELOPE_BYTES_MAX:
                self._withheld += 1
                continue
            cost = bin_bytes(len(raw))
            full = len(batch) == self._limits.envelopes_per_frame_max
            if batch and (full or size + cost > self._limits.frame_bytes_max):
                await self._push_batch(batch)
                batch, size = [], _ENVELOPES_OVERHEAD_BYTES
            batch.append(raw)
            size += cost
        if batch:
            await self._push_batch(batch)
        await self._send(end_frame())

    async def _push_batch(self, batch: list[bytes]) -> None:
        await self._send(envelopes_frame(batch))
        self._sent += len(batch)

    async def _take(self, frame: SyncFrame | None) -> None:
        while True:
            if frame is None:
                frame = await self._receive()
            if frame.kind == END:
                return
            if frame.kind == RECONCILE:
                raise SyncProtocolError(AFTER_RECONCILE)
            envelopes = list(frame.envelopes)
            for raw in envelopes:
                mid = item_id(raw)
                # [REJECT] Every envelope pushed is one reconciliation announced, each once.
                if mid not in self._announced:
                    raise SyncProtocolError(f"{UNANNOUNCED}: {mid.hex()}")
                self._announced.discard(mid)
            self._received += len(envelopes)
            self._accepted += await self._accept(envelopes)
            frame = None

    # Frames on the stream -------------------------------------------------------------

    async def _send(self, frame: SyncFrame) -> None:
        data = encode_frame(frame)
        self._write_torn = True
        try:
            with trio.fail_after(self._limits.frame_timeout_s):
                await self._stream.write(data)
        except trio.TooSlowError as exc:
            raise SyncTimeout(
                f"the peer read nothing for {self._limits.frame_timeout_s} s"
            ) from exc
        except (IOException, trio.BrokenResourceError) as exc:
            raise SyncClosed(f"writing to the stream failed: {exc!r}") from exc
        self._write_torn = False
        self._bytes_out += len(data)

    async def _receive(self) -> SyncFrame:
        """The next frame; an Error frame raises :class:`SyncRefused`."""
        try:
            with trio.fail_after(self._limits.frame_timeout_s):
                prefix = await self._read_exactly(LENGTH_PREFIX_BYTES)
                length = check_frame_length(int.from_bytes(prefix, "big"))
                frame = decode_frame(await self._read_exactly(length))
        except trio.TooSlowError as exc:
            raise SyncTimeout(
                f"no frame from the peer within {self._limits.frame_timeout_s} s"
            ) from exc
        except DecodeError as exc:
            raise SyncProtocolError(f"bad frame: {exc}") from exc
        self._bytes_in += LENGTH_PREFIX_BYTES + length
        if frame.kind == ERROR:
            raise SyncRefused(f"the peer ended the session: {frame.reason}")
        return frame

    async def _read_exactly(self, n: int) -> bytes:
        """Read exactly ``n`` bytes, asking the stream for no more than that."""
        while len(self._buf) < n:
            try:
                data = await self._stream.read(n - len(self._buf))
            except EOFError:  # py-libp2p's StreamEOF
                data = b""
            except (IOException, trio.BrokenResourceError) as exc:
                raise SyncClosed(f"reading from the stream failed: {exc!r}") from exc
            if not data:
                raise SyncClosed("the peer closed the stream before the session ended")
            self._buf += data
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    # Ending ---------------------------------------------------------------------------

    async def tell_peer(self, reason: str) -> None:
        """Send an Error frame, if the stream is between frames; best effort, bounded."""
        if self._write_torn:
            return
        # If the peer is gone, there is no one left to tell.
        with trio.move_on_after(CLOSE_TIMEOUT_S), contextlib.suppress(*_STREAM_GONE):
            await self._stream.write(encode_frame(error_frame(reason)))

    async def close(self) -> None:
        # Shielded: a session cancelled from outside still releases its stream. A stream
        # already closed or broken is released either way.
        deadline = trio.current_time() + CLOSE_TIMEOUT_S
        with trio.CancelScope(deadline=deadline, shield=True), contextlib.suppress(*_STREAM_GONE):
            await self._stream.close()


def _id_diff_ids(message: Message) -> set[bytes]:
    return {mid for range_ in message.ranges if range_.mode == ID_DIFF for mid in range_.ids}
