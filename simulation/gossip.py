"""GossipSub as py-libp2p 0.8.1 runs it for the node, one topic per instance.

What is modelled, with the node's values (node/config.py, node/daemon.py):

- **Mesh**: every heartbeat a node with fewer than ``D_lo`` mesh peers grafts random
  connected peers up to ``D``; one with more than ``D_hi`` prunes random ones down to
  ``D``. A GRAFT is accepted unless the pair is in prune back-off (60 s); a PRUNE starts
  the back-off on both sides. Closed connections leave the mesh at once.
- **Forwarding**: a message a node accepts goes to its mesh peers but the one it came
  from and its origin. With ``idontwant`` (gossipsub v1.2, off: the node speaks only
  /meshsub/1.1.0) it also skips a peer whose IDONTWANT for it has arrived.
- **Seen cache**: a node accepts each message once; later copies are duplicates. The
  node's store dedups too, so entries never expire here (the real cache's 120 s only
  matters for copies arriving later than that, which the mesh never delivers).
- **Message cache and gossip**: at each heartbeat a node sends IHAVE with the ids it
  received in the last ``gossip_window`` heartbeats to max(``D_lazy``, ``gossip_factor``
  x its non-mesh peers) random non-mesh peers; a peer missing some answers IWANT, and
  gets them if they are still in the sender's cache (``gossip_history`` heartbeats).
- **Validation**: a node spends a per-hop processing time (the scenario's
  ``processing_ms``) on each message before relaying it, one at a time. A forged
  message is rejected there, never relayed, and a peer that sent ``invalid_max`` of
  them is disconnected (the node's PeerBook bans it). Each node has a core of its own,
  unless the nodes share :class:`SharedCores` (node processes on one machine): then a
  message also waits for the first core free.
- **Batching**: what one node publishes within ``batch_delay_ms`` leaves in one gossip
  message (node/gossip.py), as the node does.

Sizes: a message costs its payload plus ``RPC_OVERHEAD_BYTES`` (framing and the sender
record py-libp2p attaches); control messages cost ``CONTROL_BYTES`` plus
``ID_BYTES`` per message id (py-libp2p writes ids in hex).

Not modelled: peer scoring beyond the ban, flood publishing, fanout (every node
subscribes), px, adaptive gossip (it stays at its defaults on a healthy network), and
spam limits (the node's batching keeps well under them).
"""

from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.network import Network

RPC_OVERHEAD_BYTES = 220
CONTROL_BYTES = 40
ID_BYTES = 66
PRUNE_BACKOFF_US = 60 * US_PER_S
INVALID_MAX = 3
# No copy of a message is still on its way this long after it was published (the
# longest queue a node's links build in any scenario here is far shorter).
IN_FLIGHT_US = 600 * US_PER_S


@dataclass(frozen=True)
class MeshParams:
    """GossipSub's knobs, the node's values by default."""

    D: int = 6
    D_lo: int = 4
    D_hi: int = 12
    D_lazy: int = 6
    gossip_factor: float = 0.25
    heartbeat_us: int = 1000 * US_PER_MS
    gossip_window: int = 3
    gossip_history: int = 5
    batch_delay_us: int = 5 * US_PER_MS
    # IDONTWANT is gossipsub v1.2; the node offers only /meshsub/1.1.0 and 1.0.0
    # (node/daemon.py), so py-libp2p never sends it between nodes.
    idontwant: bool = False


class SharedCores:
    """The cores of one machine whose node processes all run the gossip: each message's
    processing takes the first core free."""

    def __init__(self, cores: int) -> None:
        if cores < 1:
            raise ValueError("at least one core")
        self.free = [0] * cores
        self.busy_us = 0

    def run(self, ready_us: int, processing_us: int) -> int:
        """A message ready for processing at ``ready_us``: when it is processed."""
        free = self.free
        core = min(range(len(free)), key=free.__getitem__)
        start = free[core] if free[core] > ready_us else ready_us
        free[core] = start + processing_us
        self.busy_us += processing_us
        return free[core]


@dataclass(eq=False)
class Message:
    """One gossip message: a batch of items published together by ``origin``."""

    mid: int
    origin: int
    size_bytes: int
    published_us: int
    items: list[Any]
    item_times_us: list[int]
    valid: bool
    # Per node: 0 if nothing is known; > 0 once it accepted the message (the time it
    # finished validating it where IDONTWANT needs it, else 1) or rejected it (1);
    # < 0, minus the arrival time of the first copy on its way (reset when the node
    # goes offline, since that copy is then lost). Mostly small ints: Python shares
    # those, so ten million entries cost no object each, nor a cache miss to read.
    done: list[int] = field(repr=False)
    duplicates: int = 0
    accepted: int = 0


Accept = Callable[[int, Message, int], None]


class GossipSub:
    """One topic's GossipSub among all nodes of a :class:`Network`."""

    def __init__(
        self,
        sim: Sim,
        net: Network,
        topic: str,
        params: MeshParams,
        processing_us: int | Callable[[], int],
        *,
        on_accept: Accept | None = None,
        cores: SharedCores | None = None,
    ) -> None:
        self.sim = sim
        self.net = net
        self.topic = topic
        self.p = params
        # A constant processing time (the common case) is read without a call.
        if isinstance(processing_us, int):
            if processing_us <= 0:
                raise ValueError("a processing time above 0 us")
            fixed = processing_us
            self._fixed_us = fixed
            self._processing_us: Callable[[], int] = lambda: fixed
        else:
            self._fixed_us = 0
            self._processing_us = processing_us
        self.on_accept = on_accept
        self.cores = cores
        n = net.n
        self.mesh: list[set[int]] = [set() for _ in range(n)]
        self._out: list[list[tuple[int, int, float]] | None] = [None] * n
        # The valid messages each node lacks: small, so an IHAVE is checked against it
        # (an intersection, at the cost of the smaller set) rather than against all the
        # node has seen, and what a node holds is all valid messages but these.
        self.missing: list[set[int]] = [set() for _ in range(n)]
        self.valid_mids: set[int] = set()
        # The message cache: per node, the ids it accepted in each of its last
        # ``gossip_history`` heartbeats; ``current`` is the newest window.
        self.windows: list[deque[list[int]]] = [
            deque([[]], maxlen=params.gossip_history) for _ in range(n)
        ]
        self.current: list[list[int]] = [w[-1] for w in self.windows]
        self.cpu_free = [0] * n
        # How many valid messages each node has accepted: what holds() would count.
        self.held = [0] * n
        self.backoff: dict[tuple[int, int], int] = {}
        self.invalid: dict[tuple[int, int], int] = {}
        self.messages: list[Message] = []
        self._batches: dict[int, tuple[list[Any], list[int], list[int]]] = {}
        self._rng = sim.rng(f"gossip.{topic}")
        # Figures.
        self.delays_ms = array("d")
        self.sent_data = 0
        self.sent_control = 0
        self.iwant_served = 0
        self.synced = 0
        self.rejected = 0
        self.bans = 0
        net.watch_links(self._link)
        net.watch_online(self._online)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, first_us: int) -> None:
        """Start every online node's heartbeat, each at a random phase after ``first_us``."""
        for node in range(self.net.n):
            if self.net.online[node]:
                self._start_heartbeat(node, first_us)

    def _start_heartbeat(self, node: int, after_us: int) -> None:
        phase = int(self._rng.random() * self.p.heartbeat_us)
        self.sim.at(after_us + phase, self._heartbeat, node, self.net.epoch[node])

    def _link(self, a: int, b: int, up: bool) -> None:
        if up:
            return
        for x, y in ((a, b), (b, a)):
            if y in self.mesh[x]:
                self.mesh[x].discard(y)
                self._out[x] = None

    def _online(self, node: int, online: bool) -> None:
        # Copies on their way to the node were lost with its connections.
        for msg in reversed(self.messages):
            if self.sim.now - msg.published_us > IN_FLIGHT_US:
                break
            if msg.done[node] < 0:
                msg.done[node] = 0
        if online:
            self.windows[node] = deque([[]], maxlen=self.p.gossip_history)
            self.current[node] = self.windows[node][-1]
            self._start_heartbeat(node, self.sim.now)

    # -- publishing --------------------------------------------------------------------

    def publish(self, node: int, item: Any, size_bytes: int, *, valid: bool = True) -> None:
        """``node`` publishes ``item``: it leaves in the node's next batch."""
        batch = self._batches.get(node)
        if batch is None:
            batch = self._batches[node] = ([], [], [])
            self.sim.after(self.p.batch_delay_us, self._flush, node, valid)
        batch[0].append(item)
        batch[1].append(self.sim.now)
        batch[2].append(size_bytes)

    def _flush(self, node: int, valid: bool) -> None:
        items, times, sizes = self._batches.pop(node)
        if not self.net.online[node]:
            return
        msg = Message(
            mid=len(self.messages),
            origin=node,
            size_bytes=sum(sizes) + RPC_OVERHEAD_BYTES,
            published_us=self.sim.now,
            items=items,
            item_times_us=times,
            valid=valid,
            done=[0] * self.net.n,
        )
        self.messages.append(msg)
        if valid:
            mid = msg.mid
            self.valid_mids.add(mid)
            for lacking in self.missing:
                lacking.add(mid)
            self._accept(msg, node, node)
        else:
            # A forger sends its forgery to every connection it has, mesh or not.
            msg.done[node] = (self.sim.now or 1) if self.p.idontwant else 1
            self._send_to(msg, node, sorted(self.net.peers[node]), self.sim.now)

    def learn(self, node: int, msg: Message) -> bool:
        """``node`` got ``msg`` another way (sync): stored, not relayed. False if known."""
        if msg.done[node] > 0 or not msg.valid:
            return False
        msg.done[node] = 1
        msg.accepted += 1
        self.held[node] += 1
        self.missing[node].discard(msg.mid)
        self.synced += 1
        if node != msg.origin:
            now = self.sim.now
            self.delays_ms.extend((now - published) / US_PER_MS for published in msg.item_times_us)
        if self.on_accept is not None:
            self.on_accept(node, msg, self.sim.now)
        return True

    def holds(self, node: int) -> set[int]:
        """The ids of the valid messages ``node`` has accepted (a new set each call)."""
        return self.valid_mids - self.missing[node]

    def has(self, node: int, mid: int) -> bool:
        """Whether ``node`` has accepted the valid message ``mid``."""
        msg = self.messages[mid]
        return msg.valid and msg.done[node] > 0

    # -- receiving ---------------------------------------------------------------------

    def _arrive(self, msg: Message, node: int, src: int, epoch: int) -> None:
        net = self.net
        if net.epoch[node] != epoch or not net.online[node]:
            return
        if msg.done[node] > 0:
            msg.duplicates += 1
            return
        if not msg.valid:
            self._reject(msg, node, src)
            return
        self._accept(msg, node, src)

    def _reject(self, msg: Message, node: int, src: int) -> None:
        self._process(node, self._processing_us())
        msg.done[node] = 1
        self.rejected += 1
        key = (node, src)
        count = self.invalid[key] = self.invalid.get(key, 0) + 1
        if count >= INVALID_MAX and src in self.net.peers[node]:
            self.bans += 1
            self.net.disconnect(node, src)

    def _process(self, node: int, cost_us: int) -> int:
        """``node`` processes a message that reached it now: when it is done."""
        now = self.sim.now
        free = self.cpu_free[node]
        ready = free if free > now else now
        done = ready + cost_us if self.cores is None else self.cores.run(ready, cost_us)
        self.cpu_free[node] = done
        return done

    def _out_peers(self, node: int) -> list[tuple[int, int, float]]:
        """``node``'s mesh peers with their link latency and downlink cost per byte."""
        out = self._out[node]
        if out is None:
            latency = self.net.latency
            down = self.net.down_us_per_byte
            out = self._out[node] = [
                (peer, latency(node, peer), down[peer]) for peer in sorted(self.mesh[node])
            ]
        return out

    def _accept(self, msg: Message, node: int, src: int) -> None:
        """``node`` accepts ``msg`` (from ``src``) and relays it to its mesh.

        The hot path of every run, hence one long function: after the node's processing
        time, a copy goes to each mesh peer but ``src`` and the origin, unless that
        peer's IDONTWANT has arrived. A copy whose fate is already known (the peer has
        the message, or a copy on its way reaches it first) is a duplicate settled at
        once; only the others become events."""
        net = self.net
        cost = self._fixed_us or self._processing_us()
        if self.cores is None:
            now = self.sim.now
            free = self.cpu_free[node]
            start = (free if free > now else now) + cost
            self.cpu_free[node] = start
        else:
            start = self._process(node, cost)
        done = msg.done
        idontwant = self.p.idontwant
        done[node] = start if idontwant else 1
        msg.accepted += 1
        self.held[node] += 1
        mid = msg.mid
        self.missing[node].discard(mid)
        self.current[node].append(mid)
        origin = msg.origin
        if node != origin:
            times = msg.item_times_us
            if len(times) == 1:
                self.delays_ms.append((start - times[0]) / US_PER_MS)
            else:
                self.delays_ms.extend((start - published) / US_PER_MS for published in times)
        if self.on_accept is not None:
            self.on_accept(node, msg, start)
        out = self._out[node] or self._out_peers(node)
        size = msg.size_bytes
        up_cost = int(size * net.up_us_per_byte[node])
        down_free = net.down_free
        bytes_down = net.bytes_down
        epoch = net.epoch
        sim = self.sim
        order = sim.take_orders(len(out))
        loss = net.loss_rate
        arrive_fn = self._arrive
        free = net.up_free[node]
        sent = free if free > start else start
        copies = 0
        duplicates = 0
        for peer, latency, down_us_per_byte in out:
            if peer == src:
                continue
            peer_done = done[peer]
            if peer_done > 0:
                if peer == origin or (idontwant and peer_done + latency <= sent):
                    continue  # the peer's IDONTWANT is here (or it is the origin): not sent
                sent += up_cost  # it has the message already: a duplicate, settled now
                bytes_down[peer] += size
                duplicates += 1
                continue
            sent += up_cost
            arrive = sent + latency
            peer_free = down_free[peer]
            received = (peer_free if peer_free > arrive else arrive) + int(size * down_us_per_byte)
            down_free[peer] = received
            bytes_down[peer] += size
            if peer_done < 0 and -peer_done <= received:
                duplicates += 1  # a copy on its way reaches it first: settled now
                continue
            copies += 1
            if loss and net.lost():
                continue
            done[peer] = -received
            sim.push((received, order, arrive_fn, (msg, peer, node, epoch[peer])))
            order += 1
        copies += duplicates
        net.up_free[node] = sent
        # The IDONTWANTs to every mesh peer cost bytes; their effect is read from
        # ``done`` by the peers (above), so they need no event of their own.
        told = len(out) if idontwant else 0
        net.bytes_up[node] += copies * size + told * (CONTROL_BYTES + ID_BYTES)
        self.sent_data += copies
        self.sent_control += told
        msg.duplicates += duplicates
        self.sim.resolved(duplicates + told)

    def _send_to(self, msg: Message, node: int, peers: Sequence[int], start_us: int) -> None:
        """Send ``msg`` from ``node`` to each of ``peers`` (IWANT answers, forgeries)."""
        for peer in peers:
            self.sent_data += 1
            received = self.net.transfer_us(node, peer, msg.size_bytes)
            if self.net.lost():
                continue
            self.sim.at(
                max(received, start_us), self._arrive, msg, peer, node, self.net.epoch[peer]
            )

    # -- heartbeat ---------------------------------------------------------------------

    def _heartbeat(self, node: int, epoch: int) -> None:
        net = self.net
        if net.epoch[node] != epoch or not net.online[node]:
            return
        self.sim.after(self.p.heartbeat_us, self._heartbeat, node, epoch)
        self._maintain(node)
        windows = self.windows[node]
        ids: list[int] = []
        for window in list(windows)[-self.p.gossip_window :]:
            ids.extend(window)
        if ids:
            self._emit_ihave(node, ids)
        fresh: list[int] = []
        windows.append(fresh)
        self.current[node] = fresh

    def _maintain(self, node: int) -> None:
        mesh = self.mesh[node]
        size = len(mesh)
        p = self.p
        if p.D_lo <= size <= p.D_hi:
            return
        now = self.sim.now
        if size < p.D_lo:
            backoff = self.backoff
            pool = sorted(
                peer
                for peer in self.net.peers[node]
                if peer not in mesh and backoff.get((node, peer), 0) <= now
            )
            chosen = self._pick(pool, min(p.D - size, len(pool)))
            for peer in chosen:
                mesh.add(peer)
                self._control(node, peer, 0, self._graft, node, peer)
        else:
            chosen = self._pick(sorted(mesh), size - p.D)
            for peer in chosen:
                mesh.discard(peer)
                self.backoff[(node, peer)] = now + PRUNE_BACKOFF_US
                self._control(node, peer, 0, self._prune, node, peer)
        self._out[node] = None

    def _pick(self, pool: list[int], count: int) -> list[int]:
        """``count`` distinct members of ``pool`` at random (a partial shuffle of it)."""
        rng = self._rng
        size = len(pool)
        for i in range(count):
            j = i + int(rng.random() * (size - i))
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:count]

    def _graft(self, src: int, node: int) -> None:
        if self.backoff.get((node, src), 0) > self.sim.now or src not in self.net.peers[node]:
            self.mesh[src].discard(node)  # answered with a PRUNE, which we settle at once
            self._out[src] = None
            self.sim.resolved()
            return
        if src not in self.mesh[node]:
            self.mesh[node].add(src)
            self._out[node] = None

    def _prune(self, src: int, node: int) -> None:
        self.backoff[(node, src)] = self.sim.now + PRUNE_BACKOFF_US
        if src in self.mesh[node]:
            self.mesh[node].discard(src)
            self._out[node] = None

    def _emit_ihave(self, node: int, ids: list[int]) -> None:
        mesh = self.mesh[node]
        others = sorted(peer for peer in self.net.peers[node] if peer not in mesh)
        if not others:
            return
        count = max(self.p.D_lazy, int(self.p.gossip_factor * len(others)))
        targets = others if count >= len(others) else self._pick(others, count)
        have = frozenset(ids)
        size = CONTROL_BYTES + len(have) * ID_BYTES
        missing = self.missing
        for peer in targets:
            if have.isdisjoint(missing[peer]):
                # The peer lacks none of them, and what it lacks only shrinks until the
                # IHAVE arrives (new messages are not in it): it will ask for nothing.
                self.sent_control += 1
                if self.net.settle(node, peer, size):
                    self.sim.resolved()
            else:
                self._control(node, peer, len(have), self._ihave, peer, node, have)

    def _ihave(self, node: int, src: int, have: frozenset[int]) -> None:
        wanted = have & self.missing[node]
        if wanted:
            self._control(node, src, len(wanted), self._iwant, src, node, sorted(wanted))

    def _iwant(self, node: int, src: int, wanted: list[int]) -> None:
        cached: set[int] = set()
        for window in self.windows[node]:
            cached.update(window)
        for mid in wanted:
            if mid in cached:
                self.iwant_served += 1
                self._send_to(self.messages[mid], node, (src,), self.sim.now)

    def _control(self, src: int, dst: int, ids: int, fn: Callable[..., None], *args: Any) -> None:
        self.sent_control += 1
        self.net.send(src, dst, CONTROL_BYTES + ids * ID_BYTES, fn, *args)

    # -- figures -----------------------------------------------------------------------

    def coverage(self, nodes: Sequence[int]) -> float:
        """The fraction of (valid message, node) pairs where the node accepted it."""
        valid = [m for m in self.messages if m.valid]
        if not valid or not nodes:
            return 1.0
        got = sum(1 for m in valid for node in nodes if m.done[node] > 0)
        return got / (len(valid) * len(nodes))
