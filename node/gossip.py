"""Gossip: batches of signed messages on GossipSub topics (protocol/gossipwire.py).

Receiving: the topic validator decodes the batch and offers each envelope to
:class:`~node.ingest.Ingest`, which stores what is new. The batch is relayed when all it
holds is valid, new here or not; it is dropped quietly when it held messages to ignore
(future-dated, withdrawn); it is dropped and its forwarder penalised when anything in it
is forged, malformed or on the wrong topic.

Publishing: messages wait up to ``batch_delay_ms`` for others to share their batch, so a
burst of events costs a few gossip messages (one py-libp2p receiver handles only a few
hundred a second).
"""

import logging
import time
from collections.abc import Callable, Mapping

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from node.ingest import Ingest, Verdict
from node.peers import PeerBook
from protocol.certs import is_certificate
from protocol.envelope import decode_envelope
from protocol.errors import DecodeError
from protocol.gossipwire import (
    BATCH_BYTES_MAX,
    BATCH_ITEMS_MAX,
    CERTIFICATE,
    TOPIC_KINDS,
    TOPICS,
    batch_bytes,
    decode_batch,
    encode_batch,
    topic_for,
)
from protocol.kinds import VideoManifest

log = logging.getLogger("toktok.gossip")

OUTBOX_MAX = 4096
"""Messages waiting to be published; publishing refuses more (the caller retries)."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class GossipService:
    """Validates incoming batches and publishes outgoing ones."""

    def __init__(
        self,
        pubsub: Pubsub,
        ingest: Ingest,
        peers: PeerBook,
        *,
        batch_delay_ms: int,
        batches_per_s_max: float = 50.0,
        topic_batches_per_s: Mapping[str, float] | None = None,
        on_manifest: Callable[[bytes, ID], None] | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        """``on_manifest(id, origin)`` hears of each new manifest and the peer that first
        published its batch (a provider of the video). At most ``batches_per_s_max``
        batches a second leave on each topic (``topic_batches_per_s`` may set fewer for
        some): under load, batches grow instead."""
        self._pubsub = pubsub
        self._ingest = ingest
        self._peers = peers
        self._batch_delay_s = batch_delay_ms / 1000
        rates = {topic: batches_per_s_max for topic in TOPICS} | dict(topic_batches_per_s or {})
        self._batch_interval_s = {
            topic: 1 / min(rate, batches_per_s_max) for topic, rate in rates.items()
        }
        self._clock = clock
        self._on_manifest = on_manifest
        self._outbox: dict[str, list[bytes]] = {topic: [] for topic in TOPICS}
        self._wakeup = trio.Event()
        self._offenders: list[tuple[ID, str]] = []
        self._offence = trio.Event()
        self.batches_in = 0
        self.batches_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe to every topic and serve until cancelled."""
        async with trio.open_nursery() as nursery:
            for topic in TOPICS:
                self._pubsub.set_topic_validator(topic, self._validator(topic), False)
                subscription = await self._pubsub.subscribe(topic)
                nursery.start_soon(self._drain, subscription)
            nursery.start_soon(self._publisher)
            nursery.start_soon(self._punisher)
            task_status.started()

    @property
    def queued(self) -> int:
        """Messages waiting to be published."""
        return sum(len(queue) for queue in self._outbox.values())

    def publish(self, raw: bytes, kind: str) -> None:
        """Queue a stored, valid message for gossip. Raises OverflowError when full."""
        if self.queued >= OUTBOX_MAX:
            raise OverflowError("the gossip outbox is full")
        self._outbox[topic_for(kind)].append(raw)
        self._wakeup.set()

    def _validator(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        kinds = TOPIC_KINDS[topic]

        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            if forwarder == self._pubsub.my_id:
                return True  # our own publish: stored and logged before it was queued
            self.batches_in += 1
            self.bytes_in += len(msg.data)
            try:
                verdict, reason = self._check(msg.data, kinds, ID(msg.from_id))
            except Exception:  # a bug of ours: drop the batch, keep the node (logged)
                log.exception("gossip validation failed")
                return False
            if verdict is Verdict.REJECTED:
                self._offenders.append((forwarder, reason))
                self._offence.set()
                log.info("gossip rejected", extra={"peer": str(forwarder), "reason": reason})
            # A batch of messages known here is relayed all the same: the peers it goes
            # to may lack them (they came here by another way), and GossipSub already
            # drops what a peer has seen. (Refusing one also costs py-libp2p a text dump
            # of the whole message for its exception: milliseconds each.)
            return verdict in (Verdict.NEW, Verdict.DUPLICATE)

        return validate

    def _check(self, data: bytes, kinds: frozenset[str], origin: ID) -> tuple[Verdict, str]:
        """The batch's verdict: REJECTED if any item is, else NEW if any item is new."""
        try:
            envelopes = decode_batch(data)
        except DecodeError as exc:
            return Verdict.REJECTED, f"malformed batch: {exc}"
        now_ms = self._clock()
        verdict = Verdict.DUPLICATE
        for raw in envelopes:
            try:
                kind = CERTIFICATE if is_certificate(raw) else decode_envelope(raw).kind
            except DecodeError as exc:
                return Verdict.REJECTED, f"malformed envelope: {exc}"
            # [REJECT] A topic carries only its own kinds.
            if kind not in kinds:
                return Verdict.REJECTED, f"a {kind} message on the wrong topic"
            outcome = self._ingest.offer(raw, now_ms)
            if outcome.verdict is Verdict.REJECTED:
                return Verdict.REJECTED, outcome.reason
            if outcome.verdict is Verdict.NEW:
                verdict = Verdict.NEW
                if self._on_manifest is not None and kind == VideoManifest.KIND:
                    assert outcome.message is not None
                    self._on_manifest(outcome.message.id, origin)
        return verdict, ""

    async def _punisher(self) -> None:
        # Validators are synchronous; offences are settled here, where we may await.
        while True:
            await self._offence.wait()
            self._offence = trio.Event()
            offenders, self._offenders = self._offenders, []
            for peer, reason in offenders:
                await self._peers.offend(peer, reason, self._clock())

    async def _drain(self, subscription: object) -> None:
        # What validators accepted is already stored; the queue only has to stay empty.
        get = subscription.get  # type: ignore[attr-defined]
        while True:
            await get()

    async def _publisher(self) -> None:
        last: dict[str, float] = dict.fromkeys(self._outbox, -1.0)
        while True:
            await self._wakeup.wait()
            await trio.sleep(self._batch_delay_s)
            self._wakeup = trio.Event()
            for topic, queue in self._outbox.items():
                while queue:
                    # Above the peers' spam limit py-libp2p drops batches silently: wait,
                    # and let the next batch carry what comes meanwhile.
                    await trio.sleep_until(last[topic] + self._batch_interval_s[topic])
                    last[topic] = trio.current_time()
                    batch = _take_batch(queue)
                    data = encode_batch(batch)
                    await self._pubsub.publish(topic, data)
                    self.bytes_out += len(data)
                    self.batches_out += 1


def _take_batch(queue: list[bytes]) -> list[bytes]:
    """Remove and return the longest prefix of ``queue`` that fits one batch."""
    count, size = 0, 3  # an array header of BATCH_ITEMS_MAX items takes at most 3 bytes
    for raw in queue[:BATCH_ITEMS_MAX]:
        grown = size + batch_bytes([len(raw)]) - batch_bytes([])  # one more bin
        if count and grown > BATCH_BYTES_MAX:
            break
        count, size = count + 1, grown
    batch = queue[:count]
    del queue[:count]
    return batch
