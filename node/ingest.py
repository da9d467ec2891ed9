"""One way in for every signed message, whoever brings it: gossip, sync, or the owner.

:meth:`Ingest.offer` checks a message by protocol/ rules and, if it is new and valid,
applies it to the stores and adds it to the message log that sync reconciles. Its verdict
tells gossip whether to relay (NEW), drop quietly (DUPLICATE, IGNORED) or drop and
penalise the sender (REJECTED). A message already in the log is recognised by its id,
before any signature is checked, so duplicates from many peers cost one hash each.
"""

import enum
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from node.sync import NodeItemSet
from protocol.certs import is_certificate
from protocol.envelope import SignedMessage, message_id
from protocol.errors import Ignore, Reject
from protocol.kinds import Offer, Tombstone, VideoManifest
from protocol.validate import validate_message
from storage.errors import StoreError, Withdrawn
from storage.kv import Batch
from storage.messages import MessageLog
from storage.records import checked
from storage.stores import Stores

log = logging.getLogger("toktok.ingest")


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: SignedMessage | None = None
    reason: str = ""


Listener = Callable[[SignedMessage], None]


ARRIVALS_MAX = 10_000
"""Recent messages whose arrival time is kept, for measuring propagation."""


class Ingest:
    """Validates messages and applies them to the stores and the message log."""

    def __init__(self, stores: Stores, messages: MessageLog, items: NodeItemSet) -> None:
        """``items`` mirrors ``messages``' (created_ms, id) set in memory, for sync."""
        self._stores = stores
        self._messages = messages
        self._items = items
        self._listeners: list[Listener] = []
        self.arrivals: OrderedDict[bytes, int] = OrderedDict()
        """Message id -> wall-clock ms when it was applied here, the most recent few."""
        self.counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)
        self.ledger: Callable[[bytes, int], Outcome] | None = None
        """Where certificates go (set by the node when it keeps a ledger)."""

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` with every message applied (after it is stored)."""
        self._listeners.append(listener)

    def offer(self, raw: bytes, now_ms: int) -> Outcome:
        """Check ``raw`` and apply it if it is new. Never raises for bad input.

        A ledger certificate goes to ``ledger`` (node/ledger.py), when the node keeps one.
        """
        if is_certificate(raw):
            if self.ledger is None:
                outcome = Outcome(Verdict.IGNORED, reason="this node keeps no ledger")
            else:
                outcome = self.ledger(raw, now_ms)
            self.counts[outcome.verdict] += 1
            return outcome
        outcome = self._offer(raw, now_ms)
        self.counts[outcome.verdict] += 1
        if outcome.verdict is Verdict.NEW:
            assert outcome.message is not None
            self.arrived(outcome.message.id, now_ms)
            for listener in self._listeners:
                listener(outcome.message)
        return outcome

    def arrived(self, mid: bytes, now_ms: int) -> None:
        """Note that item ``mid`` was applied here at ``now_ms`` (see ``arrivals``)."""
        self.arrivals[mid] = now_ms
        while len(self.arrivals) > ARRIVALS_MAX:
            self.arrivals.popitem(last=False)

    def _offer(self, raw: bytes, now_ms: int) -> Outcome:
        if self._messages.has(message_id(raw)):
            return Outcome(Verdict.DUPLICATE)
        try:
            message = validate_message(raw, now_ms)
            checked(message)  # the stores' own check would verify the same bytes again
            return self._apply(message)
        except Reject as exc:
            return Outcome(Verdict.REJECTED, reason=str(exc))
        except Ignore as exc:
            return Outcome(Verdict.IGNORED, reason=str(exc))
        except StoreError as exc:
            # Our side failed (a damaged record, say): not the sender's fault.
            log.error("cannot store a message", extra={"error": str(exc)})
            return Outcome(Verdict.IGNORED, reason=f"store error: {exc}")

    def _apply(self, message: SignedMessage) -> Outcome:
        record = message.record
        batch = Batch()
        if isinstance(record, VideoManifest):
            try:
                self._stores.manifests.put(message, pin=None)
            except Withdrawn:
                # Known, and withdrawn: keep it in the sync set, never its bytes.
                self._messages.stage_withdrawn(batch, message.id, record.created_ms)
                self._stores.kv.write(batch)
                self._items.add(record.created_ms, message.id)
                return Outcome(Verdict.IGNORED, reason="withdrawn by its creator")
        elif isinstance(record, Tombstone):
            stored = self._stores.manifests.get(record.manifest)
            self._stores.manifests.withdraw(message)  # raises Reject for another's video
            if stored is not None:
                self._messages.stage_withdrawn(batch, stored.id, stored.manifest.created_ms)
                # Already in the item set, as the manifest it was.
        elif isinstance(record, Offer):
            self._stores.offers.put(message)
        else:
            assert _is_social(record)
            self._stores.social.apply(message, batch)
        # A social message's changes are in this batch. For a manifest or a tombstone, a
        # crash before this write leaves the store ahead of the log; the message comes
        # again by sync, the store calls it known, and this write completes the log.
        self._messages.stage(batch, message)
        self._stores.kv.write(batch)
        self._items.add(record.created_ms, message.id)
        return Outcome(Verdict.NEW, message)

    def add_own(self, message: SignedMessage, now_ms: int) -> None:
        """Log a message this node made: a social one (follow, like, view) is applied to
        the social store in the same write; a manifest or an offer is in its store already."""
        if self._messages.has(message.id):
            return
        batch = Batch()
        if _is_social(message.record):
            self._stores.social.apply(message, batch)
        self._messages.stage(batch, message)
        self._stores.kv.write(batch)
        self._items.add(message.record.created_ms, message.id)
        self.arrived(message.id, now_ms)
        self.counts[Verdict.NEW] += 1
        for listener in self._listeners:
            listener(message)


def _is_social(record: object) -> bool:
    """Whether a record belongs to the social store (every kind but these three)."""
    return not isinstance(record, VideoManifest | Tombstone | Offer)
