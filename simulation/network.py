"""The network model: links, bandwidth queues, loss, partitions and who is online.

Latency is fixed per link (drawn once from the scenario's distribution, or read from
the region matrix plus a drawn jitter) and the same both ways. Each node has an uplink
and a downlink, each a first-in first-out queue at its own rate: a message leaves when
the sender's uplink has sent what was queued before it, crosses the link, and is
received when the receiver's downlink has taken what arrived before it. The downlink
queue is advanced when a message is sent rather than when it arrives, which is exact
for one sender and close for several (a limit docs/simulation.md states).

Connections: each node dials ``peers`` others at start, so the graph is symmetric with
about twice that many connections per node. A node that goes offline loses them all;
one that comes back dials again.
"""

from collections.abc import Callable, Sequence
from typing import Any

from simulation.engine import Sim

BITS_PER_BYTE = 8


class Latency:
    """One-way latency per link, in microseconds."""

    def __init__(
        self,
        n: int,
        sample_us: Callable[[int, int], int],
    ) -> None:
        self._n = n
        self._sample_us = sample_us
        self._links: dict[int, int] = {}

    def __call__(self, a: int, b: int) -> int:
        key = a * self._n + b if a < b else b * self._n + a
        latency = self._links.get(key)
        if latency is None:
            latency = self._links[key] = self._sample_us(min(a, b), max(a, b))
        return latency


class Network:
    """Nodes 0..n-1: their links, queues, connections and online state."""

    def __init__(
        self,
        sim: Sim,
        n: int,
        latency: Latency,
        up_mbps: Sequence[float],
        down_mbps: Sequence[float],
        loss_rate: float,
    ) -> None:
        self.sim = sim
        self.n = n
        self.latency = latency
        # Microseconds to push one byte through each node's uplink and downlink.
        self.up_us_per_byte = [BITS_PER_BYTE / mbps for mbps in up_mbps]
        self.down_us_per_byte = [BITS_PER_BYTE / mbps for mbps in down_mbps]
        self.up_free = [0] * n
        self.down_free = [0] * n
        self.bytes_up = [0] * n
        self.bytes_down = [0] * n
        self.loss_rate = loss_rate
        self._loss = sim.rng("network.loss")
        self.online = [True] * n
        # A node's epoch changes each time it goes offline: a message sent to an earlier
        # epoch is lost with the connection that carried it.
        self.epoch = [0] * n
        self.group = [0] * n
        self.peers: list[set[int]] = [set() for _ in range(n)]
        self._watchers: list[Callable[[int, bool], None]] = []
        self._link_watchers: list[Callable[[int, int, bool], None]] = []

    # -- connections -------------------------------------------------------------------

    def watch_online(self, fn: Callable[[int, bool], None]) -> None:
        """Call ``fn(node, online)`` whenever a node goes offline or comes back."""
        self._watchers.append(fn)

    def watch_links(self, fn: Callable[[int, int, bool], None]) -> None:
        """Call ``fn(a, b, up)`` whenever a connection opens (up) or closes."""
        self._link_watchers.append(fn)

    def connect(self, a: int, b: int) -> bool:
        """Open a connection between ``a`` and ``b``; False if one exists or cannot."""
        if a == b or b in self.peers[a] or not (self.online[a] and self.online[b]):
            return False
        if self.group[a] != self.group[b]:
            return False
        self.peers[a].add(b)
        self.peers[b].add(a)
        for fn in self._link_watchers:
            fn(a, b, True)
        return True

    def disconnect(self, a: int, b: int) -> None:
        """Close the connection between ``a`` and ``b`` if there is one."""
        if b not in self.peers[a]:
            return
        self.peers[a].discard(b)
        self.peers[b].discard(a)
        for fn in self._link_watchers:
            fn(a, b, False)

    def dial_random(self, node: int, count: int, rng: Any) -> int:
        """Connect ``node`` to up to ``count`` random online nodes; how many it got."""
        got = 0
        tries = 0
        while got < count and tries < count * 8:
            tries += 1
            other = rng.randrange(self.n)
            if self.connect(node, other):
                got += 1
        return got

    def set_online(self, node: int, online: bool) -> None:
        """Take ``node`` offline (closing its connections) or bring it back."""
        if self.online[node] == online:
            return
        if not online:
            for other in sorted(self.peers[node]):
                self.disconnect(node, other)
            self.epoch[node] += 1
        self.online[node] = online
        for fn in self._watchers:
            fn(node, online)

    def set_groups(self, group: Sequence[int]) -> None:
        """Split the network: connections across groups close, none open across them."""
        self.group = list(group)
        for a in range(self.n):
            for b in sorted(self.peers[a]):
                if b > a and self.group[a] != self.group[b]:
                    self.disconnect(a, b)

    # -- sending -----------------------------------------------------------------------

    def transfer_us(self, src: int, dst: int, size_bytes: int) -> int:
        """Queue ``size_bytes`` from ``src`` to ``dst``: the time it is fully received.

        Charges both queues and byte counters; says nothing about loss."""
        now = self.sim.now
        up = self.up_free[src]
        sent = (up if up > now else now) + int(size_bytes * self.up_us_per_byte[src])
        self.up_free[src] = sent
        arrive = sent + self.latency(src, dst)
        down = self.down_free[dst]
        received = (down if down > arrive else arrive) + int(
            size_bytes * self.down_us_per_byte[dst]
        )
        self.down_free[dst] = received
        self.bytes_up[src] += size_bytes
        self.bytes_down[dst] += size_bytes
        return received

    def reachable(self, src: int, dst: int) -> bool:
        """Whether ``src`` could open a stream to ``dst`` now (both online, same side)."""
        return self.online[src] and self.online[dst] and self.group[src] == self.group[dst]

    def send(
        self,
        src: int,
        dst: int,
        size_bytes: int,
        fn: Callable[..., None],
        *args: Any,
        direct: bool = False,
    ) -> bool:
        """Send a message: ``fn(*args)`` runs at ``dst`` when it is received.

        Over a gossip connection by default; ``direct`` sends over a stream of its own
        (chunk and ledger protocols), which any two reachable nodes can open. Nothing
        runs if the two cannot talk (offline, partitioned), if the message is lost on
        the way, or if ``dst`` went offline before it arrived. Returns False when the
        message is known lost at sending."""
        if not (self.reachable(src, dst) if direct else dst in self.peers[src]):
            return False
        received = self.transfer_us(src, dst, size_bytes)
        if self.loss_rate and self._loss.random() < self.loss_rate:
            return False
        self.sim.at(received, self._arrive, dst, self.epoch[dst], fn, args)
        return True

    def settle(self, src: int, dst: int, size_bytes: int) -> bool:
        """Send over a gossip connection a message known to change nothing at ``dst``:
        what :meth:`send` charges and draws, without the event. Returns whether it would
        have been delivered (for the caller to count with :meth:`Sim.resolved`)."""
        if dst not in self.peers[src]:
            return False
        self.transfer_us(src, dst, size_bytes)
        return not (self.loss_rate and self._loss.random() < self.loss_rate)

    def _arrive(self, dst: int, epoch: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self.epoch[dst] == epoch and self.online[dst]:
            fn(*args)

    def lost(self) -> bool:
        """Draw whether one message is lost (the scenario's loss rate)."""
        return bool(self.loss_rate) and self._loss.random() < self.loss_rate
