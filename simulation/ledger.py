"""The ledger model: the real validator and replica machines over the simulated network.

What is modelled (protocol/ledger.py and protocol/certs.py run as they are; the steps
around them follow node/ledger.py and node/ledgerclient.py):

- **Committee and genesis**: ``validators`` seats of weight 1 on distinct random nodes,
  with Ed25519 keys drawn from the ``ledger.keys`` stream; a genesis giving ``ALLOCATION``
  platform tokens to each of ``accounts`` accounts, whose client runs on a random node.
- **Honest clients**: ``transfers`` transfers from ``start_s``, exponential gaps at
  ``rate_per_s``, each from a random honest account to another account. A client has one
  order of an account in flight at a time (the node's account lock); the rest queue. It
  spends at most its allocation less what it already spent: credits are never counted on,
  so a validator at the right sequence number always finds the funds. The order goes to
  every validator on a stream of its own; a validator answering WRONG_SEQUENCE gets the
  account's recent certificates and the order again (the node's catch-up); validators
  that have not voted get the order again every ``RETRY_US``, and at once when the
  client's node comes back online.
- **Validators**: each message (an order, a certificate push) takes ``processing_ms``,
  one at a time per validator. An honest one checks the owners' signatures
  (``verify_order``), votes with :class:`~protocol.ledger.Validator` and keeps its locks;
  its ledger is its replica.
- **Certificates**: the client forms one from a quorum of votes (``certify``), pushes it
  to every validator, publishes it on the ``ledger`` GossipSub topic (when there is one)
  and applies it if its node is a replica.
- **Replicas**: every node when there are at most ``replica_sample`` nodes; otherwise the
  validators and ``replica_sample`` other nodes drawn from ``ledger.replicas``. Each applies
  what gossip and pushes bring with :class:`~protocol.ledger.Replica` on a
  :class:`MemoryLedger`.
- **Byzantine validators** vote for whatever they are sent, conflicting orders of one
  (account, sequence number) included. **Byzantine clients** equivocate every
  ``EQUIVOCATION_INTERVAL_US`` while the workload runs: two transfers with one sequence
  number, each sent to a different half of the validators at once, then (with the retry)
  both to every validator, gathering every vote they can, even after one certified.

Checks, one line in ``result.failures`` each (at most ``FAILURE_LINES_MAX`` per kind):
no two certificates for one (account, sequence number); no replica refusing a certificate
as conflicting; equal states on honest replicas that applied equal certificate sets;
every token's supply conserved and no balance negative on each; every honest transfer
certified, unless its client went offline, a validator went offline, fewer than a
quorum of validators were reachable when it was sent, or it came in the last
``LIVENESS_GRACE_US`` of the run (those are counted in ``liveness_excused``).

Figures: ``sample()`` gives certificates formed so far and orders pending (signed and
not settled, plus honest transfers queued behind them); ``finish`` writes
``summary["ledger"]``, ``samples["finality_ms"]`` (an honest order sent to the
certificate formed at its client) and ``samples["replica_apply_ms"]`` (a certificate
formed to applied, at every honest replica that applied it, its client's node included).

Wiring (simulation/run.py): when ``ledger.validators > 0``, build a second
:class:`~simulation.gossip.GossipSub` for the ``ledger`` topic, pass it here (this model
sets its ``on_accept``), start it with the manifests topic, and add the model to the
list; churn and partitions act on the same :class:`~simulation.network.Network`.

Simplified:

- The signatures of each distinct certificate, and of each distinct signed order, are
  verified once in the run and the verdict cached (:class:`Verdicts`): the same bytes get
  the same verdict on every node, so only the crypto cost is saved, and it stays at one
  verification per certificate formed instead of one per replica. A client does not check
  each vote it gets (the node does): the Byzantine validators here sign properly, and
  every replica checks every certificate.
- A node that goes offline loses its connections, not its state: its ledger, locks and
  the work already queued on it survive.
- No sync: a replica that missed a certificate while offline stays behind (its later
  certificates of that account wait), unless the sync model hands it the gossip message.
- Transfers of the platform token only: no swaps, no token creation.
- Sizes: orders and certificates are their real bytes, votes their encoded record, plus
  a fixed framing overhead per message.
"""

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.accounts import AccountKey
from protocol.certs import (
    Certificate,
    Committee,
    Member,
    VerifiedRoots,
    Vote,
    certify,
    sign_votes,
    verify_certificate,
)
from protocol.codec import encode_record
from protocol.errors import Ignore, Reject
from protocol.genesis import Allocation, Genesis, encode_genesis, genesis_overlay, network_id
from protocol.ledger import (
    ConflictingOrder,
    OrderRefused,
    Overlay,
    Replica,
    Slot,
    TokenInfo,
    Validator,
    WrongSequence,
)
from protocol.orders import PLATFORM_TOKEN, SignedOrder, Transfer, sign_order, spends, verify_order
from simulation.engine import US_PER_MS, US_PER_S, Sim
from simulation.gossip import GossipSub, Message
from simulation.metrics import Result, percentile
from simulation.network import Network
from simulation.scenario import ByzantineConfig, LedgerConfig
from simulation.world import sampler_us

GENESIS_MS = 1_700_000_000_000
"""The ledger clock at virtual time 0: orders are dated ``GENESIS_MS + now``."""
ALLOCATION = 1_000_000
AMOUNT_MAX = 100
"""The largest transfer, in base units."""
REQUEST_OVERHEAD_BYTES = 32
"""A ledger stream frame's length prefix, request id, op and item header."""
RESPONSE_OVERHEAD_BYTES = 48
REFUSAL_BYTES = 120
"""A refusal's code and reason text."""
RETRY_US = 2 * US_PER_S
CATCH_UP_MAX = 16
"""Recent certificates of an account a client keeps to catch a lagging validator up."""
REPLICA_SAMPLE = 50
LIVENESS_GRACE_US = 10 * US_PER_S
EQUIVOCATION_INTERVAL_US = 2 * US_PER_S
VERDICTS_MAX = 1 << 16
FAILURE_LINES_MAX = 20
NO_BYZANTINE = ByzantineConfig()


class MemoryLedger:
    """A replica's ledger and a validator's locks in dicts, committed an overlay at a time."""

    def __init__(self) -> None:
        self.seqs: dict[bytes, int] = {}
        self.balances: dict[tuple[bytes, bytes], int] = {}
        self.tokens: dict[bytes, TokenInfo] = {}
        self.slots: dict[Slot, bytes] = {}
        self.locks: dict[Slot, bytes] = {}
        self.applied: dict[bytes, None] = {}
        """The ids of the certified orders applied here, in the order they applied."""

    def next_seq(self, account: bytes) -> int:
        return self.seqs.get(account, 0)

    def balance(self, account: bytes, token: bytes) -> int:
        return self.balances.get((account, token), 0)

    def token(self, token_id: bytes) -> TokenInfo | None:
        return self.tokens.get(token_id)

    def certified(self, account: bytes, seq: int) -> bytes | None:
        return self.slots.get((account, seq))

    def lock(self, account: bytes, seq: int) -> bytes | None:
        return self.locks.get((account, seq))

    def commit(self, overlay: Overlay) -> None:
        """Write ``overlay`` at once, as the node writes one batch."""
        self.seqs.update(overlay.seqs)
        self.balances.update(overlay.balances)
        self.tokens.update(overlay.tokens)
        self.slots.update(overlay.slots)
        self.applied.update(dict.fromkeys(cert.order_id for cert in overlay.applied))

    def snapshot(self) -> tuple[Any, ...]:
        """The ledger's content, comparable between replicas (zero balances left out)."""
        return (
            sorted(self.seqs.items()),
            sorted((k, v) for k, v in self.balances.items() if v),
            sorted((k, encode_record(v)) for k, v in self.tokens.items()),
            sorted(self.slots.items()),
        )

    def problems(self) -> list[str]:
        """Negative balances, and tokens whose balances do not add up to their supply."""
        found = [
            f"account {a.hex()[:16]} holds {v} of token {t.hex()[:16]}"
            for (a, t), v in self.balances.items()
            if v < 0
        ]
        totals: dict[bytes, int] = {}
        for (_, token), value in self.balances.items():
            totals[token] = totals.get(token, 0) + value
        for token, total in totals.items():
            info = self.tokens.get(token)
            if info is None or total != info.supply:
                supply = None if info is None else info.supply
                found.append(f"token {token.hex()[:16]} adds up to {total}, supply {supply}")
        return found


class Verdicts:
    """Every distinct certificate's and signed order's signatures checked once.

    Keyed by the exact bytes, so the verdict is the one any node would reach; at most
    ``VERDICTS_MAX`` of each kind are kept, the oldest dropped first."""

    def __init__(self, committee: Committee) -> None:
        self.committee = committee
        self.roots = VerifiedRoots()
        self._certs: dict[bytes, Certificate | None] = {}
        self._orders: dict[bytes, SignedOrder | None] = {}
        self.checked = 0
        self.hits = 0

    def certificate(self, raw: bytes, now_ms: int) -> Certificate | None:
        """The certificate ``raw`` if its quorum of votes verifies, else None."""
        if raw in self._certs:
            self.hits += 1
            return self._certs[raw]
        self.checked += 1
        try:
            cert: Certificate | None = verify_certificate(raw, self.committee, self.roots, now_ms)
        except (Reject, Ignore):
            cert = None
        _bounded_put(self._certs, raw, cert)
        return cert

    def order(self, raw: bytes, now_ms: int) -> SignedOrder | None:
        """The signed order ``raw`` if its rules and owners' signatures check, else None."""
        if raw in self._orders:
            self.hits += 1
            return self._orders[raw]
        self.checked += 1
        try:
            signed: SignedOrder | None = verify_order(raw, self.committee.network, now_ms)
        except (Reject, Ignore):
            signed = None
        _bounded_put(self._orders, raw, signed)
        return signed


def _bounded_put(cache: dict[bytes, Any], key: bytes, value: Any) -> None:
    if len(cache) >= VERDICTS_MAX:
        del cache[next(iter(cache))]
    cache[key] = value


@dataclass(eq=False)
class _Planned:
    """One transfer of the honest workload, before and after it became an order."""

    sender: "_Client"
    recipient: int
    amount: int
    scheduled_us: int
    order: "_Order | None" = None
    skipped: bool = False
    """Its account had nothing left to spend."""


@dataclass(eq=False)
class _Order:
    """A signed order at its client, gathering votes."""

    signed: SignedOrder
    client: "_Client"
    seq: int
    amount: int
    sent_us: int
    votes: dict[int, Vote] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    """Refusals that will not change: a conflict, or a slot the account has passed."""
    caught_up: set[int] = field(default_factory=set)
    """Validators sent the account's recent certificates since the last retry."""
    twin: "_Order | None" = None
    done: bool = False
    certified: bool = False
    obstructed: bool = False
    """Fewer than a quorum of validators were reachable from its client at a sending."""


@dataclass(eq=False)
class _Client:
    index: int
    key: AccountKey
    node: int
    byzantine: bool
    next_seq: int = 0
    spent: int = 0
    queue: deque[_Planned] = field(default_factory=deque)
    current: list[_Order] = field(default_factory=list)
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=CATCH_UP_MAX))
    blocked: bool = False


@dataclass(eq=False)
class _Seat:
    """A committee seat: its node, key and voting rule (None: Byzantine, signs anything)."""

    index: int
    node: int
    key: AccountKey
    validator: Validator | None
    cpu_free_us: int = 0


@dataclass(eq=False)
class _ReplicaNode:
    node: int
    ledger: MemoryLedger
    replica: Replica
    honest: bool


class LedgerModel:
    """The ledger workload, its Byzantine actors and its checks (see module doc)."""

    name = "ledger"

    def __init__(
        self,
        sim: Sim,
        net: Network,
        cfg: LedgerConfig,
        byzantine: ByzantineConfig = NO_BYZANTINE,
        *,
        gossip: GossipSub | None = None,
        replica_sample: int = REPLICA_SAMPLE,
    ) -> None:
        """Build the committee, genesis, clients and replicas; takes ``gossip.on_accept``.

        Raises :class:`ValueError` for a committee that does not fit the network or
        more Byzantine validators or clients than there can be."""
        if not 1 <= cfg.validators <= net.n:
            raise ValueError(f"ledger.validators must be 1 to {net.n}, got {cfg.validators}")
        # More than f = (validators - 1) // 3 liars is allowed: it is how a researcher
        # sees safety break, which the checks then report.
        if byzantine.validators > cfg.validators:
            raise ValueError(
                f"byzantine.validators: at most the {cfg.validators} validators, "
                f"got {byzantine.validators}"
            )
        if byzantine.clients > cfg.accounts or cfg.accounts < 2:
            raise ValueError("ledger.accounts must be >= 2 and >= byzantine.clients")
        self.sim = sim
        self.net = net
        self.cfg = cfg
        self.gossip = gossip
        keys = sim.rng("ledger.keys")
        seat_keys = [AccountKey(keys.randbytes(32)) for _ in range(cfg.validators)]
        account_keys = [AccountKey(keys.randbytes(32)) for _ in range(cfg.accounts)]
        genesis = Genesis(
            name="sim",
            created_ms=GENESIS_MS,
            validators=tuple(Member(k.public_key, 1) for k in seat_keys),
            symbol="TOK",
            token_name="Toktok",
            decimals=0,
            metadata="",
            allocations=tuple(Allocation(k.public_key, ALLOCATION) for k in account_keys),
        )
        self.committee = Committee(network_id(encode_genesis(genesis)), genesis.validators)
        self.verdicts = Verdicts(self.committee)
        roles = sim.rng("ledger.roles")
        self.validator_nodes = roles.sample(range(net.n), cfg.validators)
        faulty = set(roles.sample(range(cfg.validators), byzantine.validators))
        self.seats = [
            _Seat(i, node, key, None if i in faulty else Validator(self.committee, key))
            for i, (node, key) in enumerate(zip(self.validator_nodes, seat_keys, strict=True))
        ]
        liars = set(roles.sample(range(cfg.accounts), byzantine.clients))
        self.account_nodes = [roles.randrange(net.n) for _ in range(cfg.accounts)]
        self.clients = [
            _Client(i, key, node, i in liars)
            for i, (key, node) in enumerate(zip(account_keys, self.account_nodes, strict=True))
        ]
        self._clients_at: dict[int, list[_Client]] = {}
        for client in self.clients:
            self._clients_at.setdefault(client.node, []).append(client)
        self._index = {k.public_key: i for i, k in enumerate(account_keys)}
        self.replicas = self._build_replicas(genesis, replica_sample, faulty)
        self._processing_us = sampler_us(cfg.processing_ms, sim, "ledger.processing")
        self._workload = sim.rng("ledger.transfers")
        self._liar_rng = sim.rng("ledger.byzantine")
        self._honest = [c for c in self.clients if not c.byzantine]
        self._planned: list[_Planned] = []
        self._last_offline_us: dict[int, int] = {}
        self._slots: dict[Slot, bytes] = {}
        self._formed_us: dict[bytes, int] = {}
        self._open_orders = 0
        self.failures: dict[str, list[str]] = {}
        self.finality_ms: list[float] = []
        self.apply_ms: list[float] = []
        self.counts = dict.fromkeys(
            (
                "orders",
                "certified",
                "safety_violations",
                "replica_conflicts",
                "conflicts_refused",
                "votes",
                "refusals",
                "catch_ups",
                "retries",
                "equivocations",
                "equivocations_certified",
                "byzantine_accounts_blocked",
                "certificates_rejected",
            ),
            0,
        )
        start_us = int(cfg.start_s * US_PER_S)
        self._start_us = start_us
        self._equivocate_until_us = start_us + max(
            EQUIVOCATION_INTERVAL_US, int(cfg.transfers / cfg.rate_per_s * US_PER_S)
        )
        if gossip is not None:
            gossip.on_accept = self._on_gossip
        net.watch_online(self._on_online)

    def _build_replicas(
        self, genesis: Genesis, sample: int, faulty: set[int]
    ) -> dict[int, _ReplicaNode]:
        n = self.net.n
        nodes = list(range(n))
        if n > sample:
            seats = set(self.validator_nodes)
            others = [node for node in nodes if node not in seats]
            chosen = self.sim.rng("ledger.replicas").sample(others, min(sample, len(others)))
            nodes = sorted({*self.validator_nodes, *chosen})
        liars = {self.seats[i].node for i in faulty}
        replicas: dict[int, _ReplicaNode] = {}
        for node in nodes:
            ledger = MemoryLedger()
            ledger.commit(genesis_overlay(genesis, ledger))
            replicas[node] = _ReplicaNode(node, ledger, Replica(), node not in liars)
        return replicas

    # -- plumbing ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return GENESIS_MS + self.sim.now // US_PER_MS

    def _reachable(self, a: int, b: int) -> bool:
        return self.net.online[a] if a == b else self.net.reachable(a, b)

    def _send(self, src: int, dst: int, size_bytes: int, fn: Any, *args: Any) -> None:
        """A message on a stream of its own; a node's message to itself costs nothing."""
        if src == dst:
            if self.net.online[src]:
                self.sim.at(self.sim.now, fn, *args)
            return
        self.net.send(src, dst, size_bytes, fn, *args, direct=True)

    def _fail(self, kind: str, line: str) -> None:
        self.failures.setdefault(kind, []).append(f"ledger: {line}")

    def _who(self, account: bytes, seq: int) -> str:
        return f"account {self._index.get(account, -1)} ({account.hex()[:16]}) seq {seq}"

    def _on_online(self, node: int, online: bool) -> None:
        if not online:
            self._last_offline_us[node] = self.sim.now
            return
        for client in self._clients_at.get(node, ()):
            for order in client.current:
                if not order.done:
                    order.caught_up.clear()
                    self._submit(order, range(len(self.seats)))
            self._pump(client)

    # -- clients -------------------------------------------------------------------------

    def start(self) -> None:
        if self.cfg.transfers and self._honest:
            self.sim.at(self._start_us, self._plan_transfer)
        for client in self.clients:
            if client.byzantine:
                phase = int(self._liar_rng.random() * EQUIVOCATION_INTERVAL_US)
                self.sim.at(self._start_us + phase, self._equivocate, client)

    def _other_account(self, rng: random.Random, sender: int) -> int:
        other: int = rng.randrange(len(self.clients) - 1)
        return other + 1 if other >= sender else other

    def _plan_transfer(self) -> None:
        rng = self._workload
        sender = self._honest[rng.randrange(len(self._honest))]
        recipient = self._other_account(rng, sender.index)
        planned = _Planned(sender, recipient, rng.randint(1, AMOUNT_MAX), self.sim.now)
        self._planned.append(planned)
        sender.queue.append(planned)
        self._pump(sender)
        if len(self._planned) < self.cfg.transfers:
            gap_us = int(rng.expovariate(self.cfg.rate_per_s) * US_PER_S)
            self.sim.after(max(1, gap_us), self._plan_transfer)

    def _order(self, client: _Client, recipient: int, amount: int) -> _Order:
        """A new signed transfer of ``client``'s next sequence number."""
        to = self.clients[recipient].key.public_key
        transfer = Transfer(
            self.committee.network,
            self._now_ms(),
            client.key.public_key,
            client.next_seq,
            PLATFORM_TOKEN,
            to,
            amount,
            b"",
        )
        self.counts["orders"] += 1
        self._open_orders += 1
        signed = sign_order(transfer, [client.key])
        return _Order(signed, client, client.next_seq, amount, self.sim.now)

    def _pump(self, client: _Client) -> None:
        """Send the client's next queued transfer if none is in flight and it is online."""
        while not client.current and client.queue and self.net.online[client.node]:
            planned = client.queue.popleft()
            amount = min(planned.amount, ALLOCATION - client.spent)
            if amount <= 0:
                planned.skipped = True
                continue
            client.spent += amount
            order = self._order(client, planned.recipient, amount)
            planned.order = order
            client.current = [order]
            self._submit(order, range(len(self.seats)))
            self.sim.after(RETRY_US, self._retry, order)

    def _equivocate(self, client: _Client) -> None:
        """Two transfers for one sequence number, to the two halves of the committee."""
        if self.sim.now + EQUIVOCATION_INTERVAL_US < self._equivocate_until_us:
            self.sim.after(EQUIVOCATION_INTERVAL_US, self._equivocate, client)
        available = ALLOCATION - client.spent
        if client.current or client.blocked or available < 1 or not self.net.online[client.node]:
            return
        rng = self._liar_rng
        amount = rng.randint(1, min(AMOUNT_MAX, available))
        first = self._other_account(rng, client.index)
        second = first
        while second == first and len(self.clients) > 2:
            second = self._other_account(rng, client.index)
        a = self._order(client, first, amount)
        b = self._order(client, second, amount + (first == second))
        a.twin, b.twin = b, a
        client.current = [a, b]
        self.counts["equivocations"] += 1
        seats = rng.sample(range(len(self.seats)), len(self.seats))
        half = len(seats) // 2
        for order, targets in ((a, seats[:half]), (b, seats[half:])):
            self._submit(order, targets)
            self.sim.after(RETRY_US, self._retry, order)

    def _submit(self, order: _Order, seats: Iterable[int]) -> None:
        src = order.client.node
        members = self.committee.members
        reachable = sum(members[s.index].weight for s in self.seats if self._reachable(src, s.node))
        if reachable < self.committee.quorum:
            order.obstructed = True
        size = len(order.signed.raw) + REQUEST_OVERHEAD_BYTES
        for i in seats:
            if i not in order.votes and i not in order.refused:
                self._send(src, self.seats[i].node, size, self._on_order, i, order)

    def _retry(self, order: _Order) -> None:
        """Send the order again to the validators that have not voted for it."""
        if order.done:
            return
        self.sim.after(RETRY_US, self._retry, order)
        if self.net.online[order.client.node]:
            self.counts["retries"] += 1
            order.caught_up.clear()
            self._submit(order, range(len(self.seats)))

    def _on_result(self, i: int, order: _Order, result: Vote | OrderRefused) -> None:
        if order.done:
            return
        if isinstance(result, Vote):
            order.votes[i] = result
            members = self.committee.members
            if sum(members[v].weight for v in order.votes) >= self.committee.quorum:
                self._certified(order)
            return
        client = order.client
        if isinstance(result, WrongSequence) and client.next_seq <= order.seq:
            # The validator lags: hand it the account's recent certificates, then ask
            # again (once until the next retry).
            if i not in order.caught_up and client.recent:
                order.caught_up.add(i)
                self.counts["catch_ups"] += 1
                seat = self.seats[i]
                raws = list(client.recent)
                size = sum(map(len, raws)) + REQUEST_OVERHEAD_BYTES
                self._send(client.node, seat.node, size, self._on_certs, i, raws)
                self._submit(order, [i])
            return
        order.refused[i] = type(result).__name__
        members = self.committee.members
        refused = sum(members[v].weight for v in order.refused)
        if self.committee.total - refused < self.committee.quorum:
            self._give_up(order)

    def _give_up(self, order: _Order) -> None:
        """No quorum can vote for ``order`` any more: the account is blocked if it was
        its last hope (only an equivocating client, or a broken rule, gets here)."""
        order.done = True
        self._open_orders -= 1
        client = order.client
        if all(o.done for o in client.current):
            if not any(o.certified for o in client.current):
                client.blocked = True
                self.counts["byzantine_accounts_blocked"] += client.byzantine
            client.current = []
            self._pump(client)

    def _certified(self, order: _Order) -> None:
        cert = certify(self.committee, order.signed, list(order.votes.values()))
        now = self.sim.now
        order.done = order.certified = True
        self._open_orders -= 1
        self.counts["certified"] += 1
        if not order.client.byzantine:
            self.finality_ms.append((now - order.sent_us) / US_PER_MS)
        oid = cert.order_id
        for account, seq in spends(cert.order):
            held = self._slots.setdefault((account, seq), oid)
            if held != oid:
                self.counts["safety_violations"] += 1
                self._fail(
                    "safety",
                    f"two certificates for {self._who(account, seq)}: orders "
                    f"{held.hex()[:16]} and {oid.hex()[:16]}",
                )
        self._formed_us.setdefault(oid, now)
        client = order.client
        client.next_seq = max(client.next_seq, order.seq + 1)
        client.recent.append(cert.raw)
        if order.twin is not None:
            self.counts["equivocations_certified"] += 1
            client.spent += order.amount
        if all(o.done for o in client.current):
            client.current = []
        if client.node in self.replicas:
            self._apply(client.node, [cert.raw])
        size = len(cert.raw) + REQUEST_OVERHEAD_BYTES
        for seat in self.seats:
            self._send(client.node, seat.node, size, self._on_certs, seat.index, [cert.raw])
        if self.gossip is not None:
            self.gossip.publish(client.node, cert.raw, len(cert.raw))
        self._pump(client)

    # -- validators ----------------------------------------------------------------------

    def _queue(self, seat: _Seat) -> int:
        """When the validator is done with a message arriving now (one at a time)."""
        now = self.sim.now
        seat.cpu_free_us = max(seat.cpu_free_us, now) + self._processing_us()
        return seat.cpu_free_us

    def _on_order(self, i: int, order: _Order) -> None:
        self.sim.at(self._queue(self.seats[i]), self._vote, i, order)

    def _on_certs(self, i: int, raws: list[bytes]) -> None:
        seat = self.seats[i]
        self.sim.at(self._queue(seat), self._apply, seat.node, raws)

    def _vote(self, i: int, order: _Order) -> None:
        seat = self.seats[i]
        signed = self.verdicts.order(order.signed.raw, self._now_ms())
        if signed is None:
            return  # the model signs every order properly: never here
        result: Vote | OrderRefused
        if seat.validator is None:
            result = sign_votes(self.committee, i, seat.key, [signed.id])[0]
        else:
            ledger = self.replicas[seat.node].ledger
            [result], locks = seat.validator.vote(ledger, ledger, [signed])
            ledger.locks.update(locks)
        if isinstance(result, Vote):
            self.counts["votes"] += 1
            size = len(encode_record(result)) + RESPONSE_OVERHEAD_BYTES
        else:
            self.counts["refusals"] += 1
            self.counts["conflicts_refused"] += isinstance(result, ConflictingOrder)
            size = REFUSAL_BYTES + RESPONSE_OVERHEAD_BYTES
        self._send(seat.node, order.client.node, size, self._on_result, i, order, result)

    # -- replicas ------------------------------------------------------------------------

    def _on_gossip(self, node: int, msg: Message, done_us: int) -> None:
        if node in self.replicas:
            self.sim.at(max(done_us, self.sim.now), self._apply, node, list(msg.items))

    def _apply(self, node: int, raws: Sequence[bytes]) -> None:
        """Check and apply certificates at replica ``node``."""
        rn = self.replicas[node]
        now_ms = self._now_ms()
        certs = []
        for raw in raws:
            cert = self.verdicts.certificate(raw, now_ms)
            if cert is None:
                self.counts["certificates_rejected"] += 1
            else:
                certs.append(cert)
        overlay = rn.replica.apply(rn.ledger, certs)
        rn.ledger.commit(overlay)
        if rn.honest:
            for reason in overlay.conflicts:
                self.counts["replica_conflicts"] += 1
                self._fail("safety", f"replica at node {node} refused a certificate: {reason}")
        now = self.sim.now
        for cert in overlay.applied:
            self.apply_ms.append((now - self._formed_us[cert.order_id]) / US_PER_MS)

    # -- figures and checks --------------------------------------------------------------

    def sample(self) -> dict[str, float]:
        queued = sum(len(c.queue) for c in self._honest)
        return {"certified": self.counts["certified"], "pending": self._open_orders + queued}

    def finish(self, result: Result) -> None:
        self._check_replicas()
        liveness = self._check_liveness()
        honest = [rn for rn in self.replicas.values() if rn.honest]
        certified = len(self._formed_us)
        applied = sum(len(rn.ledger.applied) for rn in honest)
        f = self.finality_ms
        lag = self.apply_ms
        result.samples["finality_ms"] = list(f)
        result.samples["replica_apply_ms"] = list(lag)
        result.summary["ledger"] = {
            "validators": len(self.seats),
            "byzantine_validators": sum(s.validator is None for s in self.seats),
            "accounts": len(self.clients),
            "byzantine_clients": len(self.clients) - len(self._honest),
            "replicas": len(self.replicas),
            **self.counts,
            **liveness,
            "finality_ms_p50": percentile(f, 50),
            "finality_ms_p90": percentile(f, 90),
            "finality_ms_p99": percentile(f, 99),
            "finality_ms_max": max(f, default=0.0),
            "replica_lag_ms_p50": percentile(lag, 50),
            "replica_lag_ms_p90": percentile(lag, 90),
            "replica_lag_ms_p99": percentile(lag, 99),
            "replica_coverage": applied / (certified * len(honest)) if certified else 1.0,
            "signature_checks": self.verdicts.checked,
            "verdict_cache_hits": self.verdicts.hits,
        }
        for lines in self.failures.values():
            result.failures.extend(lines[:FAILURE_LINES_MAX])
            if len(lines) > FAILURE_LINES_MAX:
                result.failures.append(
                    f"ledger: ... and {len(lines) - FAILURE_LINES_MAX} more like the above"
                )

    def _check_replicas(self) -> None:
        states: dict[frozenset[bytes], tuple[int, tuple[Any, ...]]] = {}
        for rn in self.replicas.values():
            if not rn.honest:
                continue
            for problem in rn.ledger.problems():
                self._fail("balances", f"replica at node {rn.node}: {problem}")
            snapshot = rn.ledger.snapshot()
            first, expected = states.setdefault(frozenset(rn.ledger.applied), (rn.node, snapshot))
            if snapshot != expected:
                self._fail(
                    "agreement",
                    f"replicas at nodes {first} and {rn.node} applied the same "
                    f"{len(rn.ledger.applied)} certificates but hold different states",
                )

    def _check_liveness(self) -> dict[str, float]:
        """Honest transfers certified, excused (see module doc), and failed (a line each:
        the first uncertified transfer of each account; later ones wait behind it)."""
        end = self.sim.now
        certified = excused = skipped = behind = 0
        stalled: dict[int, _Planned] = {}
        excused_accounts: set[int] = set()
        for planned in self._planned:
            order = planned.order
            account = planned.sender.index
            if order is not None and order.certified:
                certified += 1
            elif planned.skipped:
                skipped += 1
            elif account in excused_accounts or self._excused(planned, end):
                excused += 1
                excused_accounts.add(account)
            elif account in stalled:
                behind += 1
            else:
                stalled[account] = planned
        for planned in stalled.values():
            order = planned.order
            where = (
                f"account {planned.sender.index} (not sent)"
                if order is None
                else self._who(planned.sender.key.public_key, order.seq)
            )
            votes = 0 if order is None else len(order.votes)
            self._fail(
                "liveness",
                f"honest transfer of {where}, due at {planned.scheduled_us / US_PER_S:.3f} s, "
                f"not certified ({votes} votes) although its client and every validator "
                "stayed online and reachable",
            )
        total = len(self._planned)
        return {
            "honest_transfers": total,
            "honest_certified": certified,
            "honest_skipped": skipped,
            "liveness_excused": excused,
            "liveness_failed": len(stalled),
            "liveness_behind_failed": behind,
            "liveness": certified / (total - skipped) if total > skipped else 1.0,
        }

    def _excused(self, planned: _Planned, end_us: int) -> bool:
        since = planned.scheduled_us
        nodes = [planned.sender.node, *(seat.node for seat in self.seats)]
        return (
            since > end_us - LIVENESS_GRACE_US
            or not self.net.online[planned.sender.node]
            or any(self._last_offline_us.get(node, -1) >= since for node in nodes)
            or (planned.order is not None and planned.order.obstructed)
        )
