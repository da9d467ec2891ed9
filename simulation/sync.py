"""Anti-entropy sync: the real set reconciliation between two nodes' logs, in virtual time.

Gossip is best effort: a node that was offline, or on the other side of a partition,
misses what was published meanwhile, and gossip never sends it again. The node closes
the gap with sync (node/sync.py): it reconciles its set of items with a peer's using
the sans-IO :class:`~protocol.reconcile.Reconciler`, then each side pushes the envelopes
the other lacks. This model runs that same machine on both sides of every session.

What is modelled:

- **Items.** Each gossip message stands for the items it carries. Item ``j`` of message
  ``m`` is ``(publish time in ms, SHA-256("toktok-sim/item/" || m || j))``, so a node's
  item set is the items of the messages it holds (:meth:`GossipSub.holds`). Forgeries
  are never stored, so they are never synced.
- **When.** A node reconciles with one random connected peer when it comes back online
  (``on_rejoin``, once churn has dialled its new peers) and every ``interval_s`` while
  online (a random phase per node; 0 or less: never), one session at a time per
  initiator, as the node's syncer does.
- **Rounds.** Every reconciliation message is one Reconcile frame of its exact encoded
  size (reconcilewire's ``message_bytes`` plus node/sync.py's framing), sent over a
  stream of its own (``Network.send(..., direct=True)``), so each round costs a link
  latency and its bytes go through both nodes' queues.
- **Transfer.** A side whose reconciliation is over pushes what it found the peer
  lacks (its ``have``), in Envelopes frames of at most 256 envelopes, then an End
  frame, all in one send; node/sync.py's rule for a side that ran out of rounds (push
  only what the peer's own IdDiffs named) is kept. On arrival the receiver stores each
  message (:meth:`GossipSub.learn`): stored, not relayed, as the node does. The session
  ends when both pushes have arrived.
- **Failures.** A session dies with the connection: when either side goes offline, or a
  frame is lost (the network's loss rate; the node's stream would be reset, and its
  frame timeout end the session), or after ``SESSION_TIMEOUT_US``.

Simplified: each side reconciles a snapshot of its set taken when its part of the
session begins (the initiator at the first message, the responder when that message
arrives); what gossip brings meanwhile is gossip's. An envelope's size is its message's
payload split evenly among its items. The node also syncs with every new connection;
here only the rejoin and the periodic sessions run (one peer each), which is what
catches a node up.

Check: at the end of every settled session each side holds everything the other's
snapshot held; a miss is a failure of the run (it would be a reconciliation bug).

Cost: snapshots are :class:`MemoryItemSet` objects built from item hashes computed once
per item, and shared by every node holding the same messages (an LRU of
``SNAPSHOTS_MAX``); a node whose message count has not changed since its last snapshot
reuses it at once (sets only grow). A session costs the reconciler's own work plus, on a
miss, one linear pass over the items published so far.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.codec import array_header_bytes, bin_bytes
from protocol.itemset import Item, MemoryItemSet, item_hash
from protocol.reconcile import Reconciler
from protocol.reconcilewire import ID_DIFF, Message, message_bytes
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.gossip import RPC_OVERHEAD_BYTES, GossipSub
from simulation.metrics import Result, percentile
from simulation.network import Network
from simulation.scenario import SyncConfig

ITEM_ID_DOMAIN = b"toktok-sim/item/"
SESSION_TIMEOUT_US = 30 * US_PER_S
"""node/sync.py's frame timeout: a session that has not ended by then never will."""
SNAPSHOTS_MAX = 128
"""Item sets kept for reuse, most recently used first."""
# node/sync.py's frames (checked against it by tests/test_sim_sync_feed.py): a 4-byte
# length prefix and a map of four fields. An End frame has them all empty; a Reconcile
# frame fills ``message`` (bytes), an Envelopes frame ``envelopes`` (an array of bytes).
END_FRAME_BYTES = 40
RECONCILE_FRAME_FIXED_BYTES = END_FRAME_BYTES - bin_bytes(0)
ENVELOPES_FRAME_FIXED_BYTES = END_FRAME_BYTES - array_header_bytes(0)
ENVELOPES_PER_FRAME_MAX = 256
FRAME_BYTES_MAX = 1024 * 1024

REJOIN = "rejoin"
PERIODIC = "periodic"
INITIATOR = 0
RESPONDER = 1


def reconcile_frame_bytes(message: Message) -> int:
    """Bytes on the stream of the Reconcile frame carrying ``message``."""
    return RECONCILE_FRAME_FIXED_BYTES + bin_bytes(message_bytes(message))


def push_bytes(envelope_sizes: Iterable[int]) -> int:
    """Bytes on the stream of pushing envelopes of these sizes, then the End frame, framed
    as node/sync.py's ``_push`` does."""
    total = END_FRAME_BYTES
    count = 0
    body = 0
    for size in envelope_sizes:
        cost = bin_bytes(size)
        if count and (
            count == ENVELOPES_PER_FRAME_MAX
            or ENVELOPES_FRAME_FIXED_BYTES + array_header_bytes(count + 1) + body + cost
            > FRAME_BYTES_MAX
        ):
            total += ENVELOPES_FRAME_FIXED_BYTES + array_header_bytes(count) + body
            count = body = 0
        count += 1
        body += cost
    if count:
        total += ENVELOPES_FRAME_FIXED_BYTES + array_header_bytes(count) + body
    return total


def item_id(mid: int, index: int) -> bytes:
    """The 32-byte id of item ``index`` of gossip message ``mid``."""
    return hashlib.sha256(
        ITEM_ID_DOMAIN + mid.to_bytes(8, "big") + index.to_bytes(4, "big")
    ).digest()


class HeldItems(MemoryItemSet):
    """A :class:`MemoryItemSet` built from items whose hashes are already known, with the
    gossip messages (``mids``) its items belong to.

    The reconciler reads it through MemoryItemSet's own methods; only the construction
    skips the per-item check and hash, which were done once when the item first appeared.
    """

    def __init__(
        self, items: list[Item], hashes: list[int], mids: frozenset[int], serial: int = 0
    ) -> None:
        super().__init__()
        assert len(items) == len(hashes), "one hash per item"
        self._items = items  # sorted and distinct: filtered from the sorted universe
        self._hashes = hashes
        self._sums = None
        self.mids = mids
        self.serial = serial


@dataclass(eq=False)
class _Session:
    """One session between ``nodes[INITIATOR]`` and ``nodes[RESPONDER]``."""

    nodes: tuple[int, int]
    kind: str
    started_us: int
    machines: list[Reconciler | None] = field(default_factory=lambda: [None, None])
    held: list[HeldItems | None] = field(default_factory=lambda: [None, None])
    have: list[list[bytes]] = field(default_factory=lambda: [[], []])
    pushed: list[bool] = field(default_factory=lambda: [False, False])
    arrived: int = 0
    messages: int = 0
    ended: bool = False


class SyncModel:
    """Reconciliation sessions on rejoin and every interval, over one gossip topic's log."""

    name = "sync"

    def __init__(self, sim: Sim, net: Network, gossip: GossipSub, cfg: SyncConfig) -> None:
        self.sim = sim
        self.net = net
        self.gossip = gossip
        self.cfg = cfg
        self._rng = sim.rng("sync")
        self._interval_us = int(cfg.interval_s * US_PER_S)
        # The items of every valid message ingested so far, sorted: (item, hash, mid).
        self._universe: list[tuple[Item, int, int]] = []
        self._ingested = 0
        self._mid_of: dict[bytes, int] = {}
        self._snapshots: OrderedDict[frozenset[int], HeldItems] = OrderedDict()
        self._live: dict[int, HeldItems] = {}  # the snapshots above, by serial number
        # Per node: how many messages it held when its snapshot was last taken, and that
        # snapshot's serial. A node's set only grows, so the same count means the same set.
        self._last: list[tuple[int, int]] = [(-1, 0)] * net.n
        self._active: list[list[_Session]] = [[] for _ in range(net.n)]
        self._busy = [False] * net.n
        # Figures.
        self.started = {REJOIN: 0, PERIODIC: 0}
        self.no_peer = 0
        self.completed = 0
        self.failed = 0
        self.exhausted = 0
        self.rounds: list[int] = []
        self.durations_ms: list[float] = []
        self.reconcile_bytes = 0
        self.transfer_bytes = 0
        self.items_recovered = 0
        self.messages_recovered = 0
        self.snapshots_built = 0
        self.misses = 0
        self._first_miss = ""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.net.watch_online(self._online)
        if self._interval_us <= 0:
            return
        for node in range(self.net.n):
            phase = int(self._rng.random() * self._interval_us)
            self.sim.at(self.sim.now + phase, self._tick, node)

    def _tick(self, node: int) -> None:
        self.sim.after(self._interval_us, self._tick, node)
        if self.net.online[node]:
            self._begin(node, PERIODIC)

    def _online(self, node: int, online: bool) -> None:
        if online:
            if self.cfg.on_rejoin:
                # After the watchers: churn dials the node's new peers right after this.
                self.sim.at(self.sim.now, self._begin, node, REJOIN)
            return
        for session in list(self._active[node]):
            self._fail(session)

    # -- a session ---------------------------------------------------------------------

    def _begin(self, node: int, kind: str) -> None:
        if self._busy[node] or not self.net.online[node]:
            return
        peers = self.net.peers[node]
        if not peers:
            self.no_peer += 1
            return
        peer = sorted(peers)[self._rng.randrange(len(peers))]
        self.started[kind] += 1
        session = _Session(nodes=(node, peer), kind=kind, started_us=self.sim.now)
        self._busy[node] = True
        self._active[node].append(session)
        self._active[peer].append(session)
        machine = self._machine(session, INITIATOR)
        self.sim.after(SESSION_TIMEOUT_US, self._expire, session)
        self._send(session, INITIATOR, machine.initiate())

    def _machine(self, session: _Session, side: int) -> Reconciler:
        held = self._snapshot(session.nodes[side])
        machine = Reconciler(held)
        session.held[side] = held
        session.machines[side] = machine
        return machine

    def _send(self, session: _Session, side: int, message: Message) -> None:
        size = reconcile_frame_bytes(message)
        session.messages += 1
        self.reconcile_bytes += size
        src, dst = session.nodes[side], session.nodes[1 - side]
        if not self.net.send(
            src, dst, size, self._receive, session, 1 - side, message, direct=True
        ):
            self._fail(session)

    def _receive(self, session: _Session, side: int, message: Message) -> None:
        if session.ended:
            return
        machine = session.machines[side] or self._machine(session, side)
        # A ReconcileError here would be our bug (both sides are honest): let it raise.
        outcome = machine.receive(message)
        have = outcome.have
        if machine.exhausted:
            # No reply goes out: push only what the peer's own IdDiffs told it it lacks.
            told = {i for r in message.ranges if r.mode == ID_DIFF for i in r.ids}
            have = [i for i in have if i in told]
        session.have[side].extend(have)
        if outcome.reply is not None:
            self._send(session, side, outcome.reply)
        if outcome.done and not session.ended:
            self._push(session, side)

    def _push(self, session: _Session, side: int) -> None:
        session.pushed[side] = True
        messages = self.gossip.messages
        mids = sorted({self._mid_of[i] for i in session.have[side]})
        sizes = []
        for mid in mids:
            msg = messages[mid]
            each = max(1, (msg.size_bytes - RPC_OVERHEAD_BYTES) // len(msg.items))
            sizes.extend([each] * len(msg.items))
        size = push_bytes(sizes)
        self.transfer_bytes += size
        src, dst = session.nodes[side], session.nodes[1 - side]
        if not self.net.send(src, dst, size, self._take, session, 1 - side, mids, direct=True):
            self._fail(session)

    def _take(self, session: _Session, side: int, mids: list[int]) -> None:
        if session.ended:
            return
        node = session.nodes[side]
        messages = self.gossip.messages
        for mid in mids:
            msg = messages[mid]
            if self.gossip.learn(node, msg):
                self.messages_recovered += 1
                self.items_recovered += len(msg.items)
        session.arrived += 1
        if not session.pushed[side]:
            # The peer moved on to its transfer first (it ran out of rounds): so do we.
            self._push(session, side)
        if session.arrived == 2 and not session.ended:
            self._complete(session)

    def _complete(self, session: _Session) -> None:
        self._end(session)
        self.completed += 1
        self.durations_ms.append((self.sim.now - session.started_us) / US_PER_MS)
        self.rounds.append((session.messages + 1) // 2)
        machines = [m for m in session.machines if m is not None]
        if any(m.exhausted for m in machines):
            self.exhausted += 1
            return
        ours, theirs = session.held
        assert ours is not None and theirs is not None, "both sides took part"
        if ours is theirs:
            return  # equal sets: nothing to check
        # A node never loses what it accepted, so it holds its own snapshot still: what it
        # must hold now beyond that is the difference.
        sides = ((session.nodes[0], ours, theirs), (session.nodes[1], theirs, ours))
        for node, own, other in sides:
            lacked = sorted(mid for mid in other.mids - own.mids if not self.gossip.has(node, mid))
            if lacked:
                self.misses += 1
                if not self._first_miss:
                    self._first_miss = f"node {node} lacks message {lacked[0]} after syncing"

    def _fail(self, session: _Session) -> None:
        if not session.ended:
            self._end(session)
            self.failed += 1

    def _expire(self, session: _Session) -> None:
        self._fail(session)

    def _end(self, session: _Session) -> None:
        session.ended = True
        initiator, responder = session.nodes
        self._busy[initiator] = False
        self._active[initiator].remove(session)
        self._active[responder].remove(session)

    # -- item sets ---------------------------------------------------------------------

    def _ingest(self) -> None:
        """Add the items of the messages published since the last call to the universe."""
        messages = self.gossip.messages
        new: list[tuple[Item, int, int]] = []
        for msg in messages[self._ingested :]:
            if not msg.valid:
                continue
            for index, published_us in enumerate(msg.item_times_us):
                item = (published_us // US_PER_MS, item_id(msg.mid, index))
                self._mid_of[item[1]] = msg.mid
                new.append((item, item_hash(item), msg.mid))
        self._ingested = len(messages)
        if new:
            # Items come nearly in time order: appending then sorting is close to linear.
            self._universe.extend(new)
            self._universe.sort(key=lambda entry: entry[0])

    def _snapshot(self, node: int) -> HeldItems:
        """The item set of the messages ``node`` holds now, shared with equal ones."""
        count, serial = self._last[node]
        if count == self.gossip.held[node]:
            found = self._live.get(serial)
            if found is not None:
                return found
        key = frozenset(self.gossip.holds(node))
        snapshots = self._snapshots
        found = snapshots.get(key)
        if found is None:
            found = snapshots[key] = self._build(key)
            self._live[found.serial] = found
            if len(snapshots) > SNAPSHOTS_MAX:
                del self._live[snapshots.popitem(last=False)[1].serial]
        else:
            snapshots.move_to_end(key)
        self._last[node] = (len(key), found.serial)
        return found

    def _build(self, held: frozenset[int]) -> HeldItems:
        self._ingest()
        entries = [entry for entry in self._universe if entry[2] in held]
        self.snapshots_built += 1
        items = [entry[0] for entry in entries]
        return HeldItems(items, [e[1] for e in entries], held, self.snapshots_built)

    # -- figures -----------------------------------------------------------------------

    def sample(self) -> dict[str, float]:
        return {"syncs": self.completed, "items_recovered": self.items_recovered}

    def finish(self, result: Result) -> None:
        rounds = self.rounds
        durations = self.durations_ms
        result.samples["sync_ms"] = list(durations)
        result.summary["sync"] = {
            "sessions": sum(self.started.values()),
            "rejoin_sessions": self.started[REJOIN],
            "periodic_sessions": self.started[PERIODIC],
            "no_peer": self.no_peer,
            "completed": self.completed,
            "failed": self.failed,
            "exhausted": self.exhausted,
            "rounds_mean": sum(rounds) / len(rounds) if rounds else 0.0,
            "rounds_max": max(rounds, default=0),
            "items_recovered": self.items_recovered,
            "messages_recovered": self.messages_recovered,
            "bytes": self.reconcile_bytes + self.transfer_bytes,
            "reconcile_bytes": self.reconcile_bytes,
            "transfer_bytes": self.transfer_bytes,
            "duration_ms_p50": percentile(durations, 50),
            "duration_ms_p90": percentile(durations, 90),
            "duration_ms_max": max(durations, default=0.0),
            "item_sets_built": self.snapshots_built,
        }
        if self.misses:
            result.failures.append(
                f"sync: {self.misses} settled sessions left a side without what the other "
                f"held ({self._first_miss})"
            )
