"""The node daemon: one libp2p host running every service over one home's store.

:class:`Node` builds the host (TCP, noise, yamux, the node key from the home), starts
pubsub before dialling anyone (py-libp2p's pubsub never sees earlier connections), and
runs in one trio nursery: gossip, chunk serving, sync, peer exchange, seeding, the
dialer, and the loopback control and metrics endpoints. Cancelling the nursery (SIGINT,
SIGTERM) stops them all; the store is closed last, after every writer has stopped.
"""

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from node.config import NodeConfig
from node.gossip import GossipService, wall_ms
from node.home import Home
from node.ingest import Ingest, Verdict
from node.ledger import LedgerService
from node.ledgerclient import LedgerClient
from node.offers import OfferService
from node.peers import PeerBook
from node.pex import ANSWER_BYTES_MAX, PEX_PROTOCOL, decode_peers, encode_peers
from node.providers import Providers
from node.seeding import Seeding
from node.streams import QuietNotifee, read_some
from node.swarm import CHUNK_PROTOCOL, ChunkServer, SwarmStats, UploadLimit
from node.sync import PROTOCOL_ID as SYNC_PROTOCOL
from node.sync import NodeItemSet, SyncLimits, run_sync
from protocol.accounts import AccountKey
from protocol.envelope import SignedMessage
from protocol.errors import DecodeError
from protocol.genesis import committee_of, decode_genesis
from protocol.gossipwire import CERTIFICATE, LEDGER_TOPIC, gossip_message_id
from protocol.ledgerwire import PROTOCOL_ID as LEDGER_PROTOCOL
from protocol.offerwire import PROTOCOL_ID as OFFER_PROTOCOL
from storage.errors import StoreError
from storage.messages import MessageLog
from storage.stores import Stores

log = logging.getLogger("toktok.node")

GOSSIPSUB_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
DIAL_INTERVAL_S = 1.0
PEX_INTERVAL_S = 5.0
CONNECTED_QUEUE_MAX = 256
SYNC_SESSION_S = 60
SYNCS_MAX = 4
"""Sync sessions this node starts at once."""
ANNOUNCE_DELAY_S = 2.0
ANNOUNCE_INTERVAL_S = 6 * 3600
ANNOUNCE_PAUSE_S = 0.5
"""Between two announcements: a provide costs every node on its path CPU."""
LEDGER_BATCHES_PER_S = 5.0
"""Certificate batches a node gossips per second, at most."""
ANNOUNCE_MAX = 10_000
"""Videos announced per round; the rest wait (a node seeds far fewer)."""


def key_pair_from_seed(seed: bytes):  # type: ignore[no-untyped-def]
    """The libp2p Ed25519 key pair of the node, from the 32-byte seed in the home."""
    return create_new_key_pair(seed)


class _Notifee(QuietNotifee):
    """Tells the node of new connections (to sync with them)."""

    def __init__(self, node: "Node") -> None:
        self._node = node

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._node.on_connected(conn.muxed_conn.peer_id)


class Node:
    """A running toktok node (see the module doc)."""

    def __init__(
        self,
        home: Home,
        config: NodeConfig,
        stores: Stores,
        *,
        genesis: bytes | None = None,
        validator_key: AccountKey | None = None,
    ) -> None:
        """``genesis`` (its canonical bytes) makes the node keep the ledger of that network;
        ``validator_key`` makes it a validator of its committee."""
        self.home = home
        self.config = config
        self.stores = stores
        seed = home.node_key_path.read_bytes()
        self.host: BasicHost = new_host(  # type: ignore[assignment]
            key_pair=key_pair_from_seed(seed),
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(max_connections_per_peer=1),
            listen_addrs=self.listen_addrs,
        )
        # A dial that fails fails at once: the dialer and sync try again on their own
        # schedule, and a download asks another peer (py-libp2p's default retries a dead
        # address three times, 0.7 s in all, while the caller waits).
        network = self.host.get_network()
        assert isinstance(network, Swarm), "new_host builds a Swarm"
        network.retry_config = RetryConfig(max_retries=0)
        g = config.gossip
        self.gossipsub = GossipSub(
            protocols=GOSSIPSUB_PROTOCOLS,
            degree=g.degree,
            degree_low=g.degree_low,
            degree_high=g.degree_high,
            heartbeat_interval=g.heartbeat_ms / 1000,  # type: ignore[arg-type]
            max_messages_per_topic_per_second=float(g.messages_per_peer_per_second),
        )
        self.pubsub = Pubsub(
            self.host,
            self.gossipsub,
            msg_id_constructor=lambda msg: gossip_message_id(msg.data),
            strict_signing=True,
        )
        self.peer_id = self.host.get_id()
        self.peers = PeerBook(
            self_id=self.peer_id,
            invalid_max=g.invalid_max,
            ban_ms=g.ban_seconds * 1000,
            cut_off=self._cut_off,
        )
        self.messages = MessageLog(stores.kv)
        self.items = NodeItemSet.from_log(self.messages)
        self.ingest = Ingest(stores, self.messages, self.items)
        self.swarm_stats = SwarmStats()
        kib_per_s = config.upload_kib_per_s
        self.chunk_server = ChunkServer(
            stores.chunks,
            self.swarm_stats,
            upload_limit=UploadLimit(kib_per_s * 1024) if kib_per_s else None,
        )
        self.providers = Providers(self.host, server=config.dht_server or config.bootstrap_role)
        self.seeding = Seeding(
            self.host,
            stores,
            self.peers,
            self.swarm_stats,
            replicas=config.replicas,
            clock=wall_ms,
            providers=self.providers,
            peer_live_ms=config.peer_live_s * 1000,
            rebalance_s=config.rebalance_s,
        )
        self.ingest.listen(self.seeding.on_message)
        self.gossip = GossipService(
            self.pubsub,
            self.ingest,
            self.peers,
            batch_delay_ms=g.batch_delay_ms,
            batches_per_s_max=g.messages_per_peer_per_second / 2,
            # Certificates reach connected nodes by a direct push (node/ledgerclient.py);
            # gossip carries them further in fewer, larger batches.
            topic_batches_per_s={LEDGER_TOPIC: LEDGER_BATCHES_PER_S},
            on_manifest=self.seeding.note_origin,
        )
        self.ledger: LedgerService | None = None
        self.ledger_client: LedgerClient | None = None
        self.offers: OfferService | None = None
        if genesis is not None:
            stores.ledger.init_genesis(genesis)
            committee = committee_of(decode_genesis(genesis))
            self.ledger = LedgerService(stores, self.items, committee, wall_ms, validator_key)
            self.ingest.ledger = self.ledger.offer
            # A certificate's arrival is kept by its order id, with the messages'.
            self.ledger.listen(lambda cert: self.ingest.arrived(cert.order_id, wall_ms()))
            self.ledger_client = LedgerClient(
                self.host, self.ledger, lambda raw: self.gossip.publish(raw, CERTIFICATE)
            )
            self.offers = OfferService(stores, self.ledger, self.ledger_client, self.share, wall_ms)
            self.offers.peer_id = self.peer_id.to_bytes()
        self.sync_limits = SyncLimits(session_timeout_s=SYNC_SESSION_S)
        self.sync_runs = 0
        self._connected_send, self._connected = trio.open_memory_channel[ID](CONNECTED_QUEUE_MAX)

    @property
    def listen_addrs(self) -> list[multiaddr.Multiaddr]:
        return [multiaddr.Multiaddr(a) for a in self.config.listen]

    def addrs(self) -> list[str]:
        """This node's dialable addresses, with its peer id."""
        return [str(a) for a in self.host.get_addrs()]

    def share(self, message: SignedMessage) -> None:
        """Keep a message made here (a social one applied in the same write as its log
        entry) and gossip it. A full gossip outbox leaves it to sync, which spreads every
        logged message."""
        self.ingest.add_own(message, wall_ms())
        try:
            self.gossip.publish(message.raw, message.kind)
        except OverflowError as exc:
            log.warning("gossip outbox full", extra={"error": str(exc)})

    # -- running ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until cancelled."""
        self.host.get_network().register_notifee(_Notifee(self))
        async with (
            self.host.run(self.listen_addrs),
            background_trio_service(self.pubsub),
            background_trio_service(self.gossipsub),
            background_trio_service(self.providers.dht),
        ):
            await self.pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(self.gossip.run)
                self.host.set_stream_handler(CHUNK_PROTOCOL, self.chunk_server.handle)
                self.host.set_stream_handler(TProtocol(SYNC_PROTOCOL), self._answer_sync)
                self.host.set_stream_handler(TProtocol(PEX_PROTOCOL), self._answer_pex)
                if self.ledger is not None:
                    self.ledger.peer_id = self.peer_id.to_bytes()
                    self.host.set_stream_handler(TProtocol(LEDGER_PROTOCOL), self.ledger.serve)
                if self.ledger_client is not None:
                    await nursery.start(self.ledger_client.run)
                if self.offers is not None:
                    self.host.set_stream_handler(TProtocol(OFFER_PROTOCOL), self.offers.serve)
                nursery.start_soon(self._dialer)
                nursery.start_soon(self._syncer)
                nursery.start_soon(self.seeding.run)
                nursery.start_soon(self._announce_held)
                task_status.started()
                log.info("node running", extra={"peer": str(self.peer_id), "addrs": self.addrs()})

    # -- peers -----------------------------------------------------------------------

    def on_connected(self, peer: ID) -> None:
        if self.peers.is_banned(peer, wall_ms()):
            return  # the syncer closes it (a notifee must not block the swarm)
        with contextlib.suppress(trio.WouldBlock):  # the periodic sync gets to it
            self._connected_send.send_nowait(peer)

    async def _cut_off(self, peer: ID) -> None:
        self.pubsub.add_to_blacklist(peer)
        with trio.move_on_after(5):
            try:
                await self.host.disconnect(peer)
            except Exception as exc:  # already gone, or closing: either way it is cut off
                log.debug("disconnect failed", extra={"peer": str(peer), "error": repr(exc)})

    async def connect(self, addr: str) -> ID:
        """Dial ``addr`` (with /p2p/). Raises whatever the dial raises."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        if self.peers.is_banned(info.peer_id, wall_ms()):
            raise ConnectionRefusedError(f"peer {info.peer_id} is banned")
        with trio.fail_after(10):
            await self.host.connect(info)
        self.peers.learn(info.peer_id, (addr,), wall_ms())
        return info.peer_id

    async def _dialer(self) -> None:
        """Join through the bootstrap list, then dial known peers while below peers_target."""
        for addr in self.config.bootstrap:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            self.peers.learn(info.peer_id, (addr,), wall_ms())
        asked: dict[ID, float] = {}
        while True:
            connected = set(self.host.get_connected_peers())
            self.peers.saw(connected, wall_ms())
            now = trio.current_time()
            for peer in connected:
                # Ask newcomers at once, and everyone again now and then while short of
                # peers: a bootstrap node knows more as the network grows.
                if peer not in asked or (
                    len(connected) < self.config.peers_target
                    and now - asked[peer] >= PEX_INTERVAL_S
                ):
                    asked[peer] = now
                    await self._ask_peers(peer)
            if len(connected) < self.config.peers_target:
                await self._dial_known(connected)
            asked = {p: t for p, t in asked.items() if p in connected}
            await trio.sleep(DIAL_INTERVAL_S)

    async def _dial_known(self, connected: set[ID]) -> None:
        for peer, addrs in self.peers.known().items():
            if peer in connected or not addrs:
                continue
            try:
                with trio.fail_after(5):
                    await self.host.connect(PeerInfo(peer, [multiaddr.Multiaddr(a) for a in addrs]))
            except Exception as exc:  # unreachable for now; tried again later
                log.debug("dial failed", extra={"peer": str(peer), "error": repr(exc)})
                continue
            connected.add(peer)
            if len(connected) >= self.config.peers_target:
                return

    async def _ask_peers(self, peer: ID) -> None:
        try:
            with trio.fail_after(5):
                stream = await self.host.new_stream(peer, [TProtocol(PEX_PROTOCOL)])
                await stream.close()
                data = await _read_all(stream, ANSWER_BYTES_MAX)
            learned = decode_peers(data)
        except Exception as exc:  # garbage, too slow, no such protocol, or gone
            log.debug("peer exchange failed", extra={"peer": str(peer), "error": repr(exc)})
            return
        now = wall_ms()
        log.debug("peers learned", extra={"peer": str(peer), "count": len(learned)})
        for other, addrs in learned:
            self.peers.learn(other, addrs, now)

    async def _answer_pex(self, stream: INetStream) -> None:
        peerstore = self.host.get_peerstore()
        asker = stream.muxed_conn.peer_id
        listing = []
        for peer in self.host.get_connected_peers():
            if peer == asker:
                continue
            try:
                known = peerstore.addrs(peer)
            except PeerStoreError:
                continue  # connected to us, but no listen address known (yet)
            addrs = [_with_peer_id(a, peer) for a in known if _dialable(a)]
            listing.append((peer, addrs))
        random.shuffle(listing)
        if self.config.bootstrap_role:
            # Newcomers ask bootstrap nodes first: tell them of peers heard of, too (the
            # connected ones first, as they are known to be up).
            listed = {peer for peer, _ in listing} | {asker}
            live = self.peers.live(wall_ms(), self.config.peer_live_s * 1000)
            heard = [
                (p, list(a)) for p, a in self.peers.known().items() if p not in listed and p in live
            ]
            listing += reversed(heard)  # the most recently heard of first
        try:
            await stream.write(encode_peers(listing))
            await stream.close()
        except Exception as exc:  # the asker left
            log.debug("peer exchange answer failed", extra={"error": repr(exc)})

    async def _announce_held(self) -> None:
        """Announce in the DHT, once peers are there, every video held whole here, and
        again every ANNOUNCE_INTERVAL_S (provider records expire)."""
        while True:
            while not self.host.get_connected_peers():
                await trio.sleep(1)
            await trio.sleep(ANNOUNCE_DELAY_S)  # let the first syncs fill the routing table
            announced = 0
            for count, mid in enumerate(list(self.stores.manifests.ids())):
                if count % 100 == 99:
                    await trio.sleep(0)  # most videos are skipped without awaiting anything
                try:
                    stored = self.stores.manifests.get(mid)
                except StoreError as exc:  # damaged: `toktok verify` reports it
                    log.warning("cannot read a manifest", extra={"error": str(exc)})
                    continue
                if stored is None or not self.stores.manifests.has_all_chunks(stored.manifest):
                    continue
                await self.providers.provide(mid)
                await trio.sleep(ANNOUNCE_PAUSE_S)
                announced += 1
                if announced >= ANNOUNCE_MAX:
                    break
            await trio.sleep(ANNOUNCE_INTERVAL_S)

    # -- sync ------------------------------------------------------------------------

    async def _syncer(self) -> None:
        """Sync with every new connection, and with a random peer every interval.

        Up to SYNCS_MAX sessions run at once, one per peer, so a slow peer delays no other.
        """
        interval = self.config.sync_interval_s
        next_periodic = trio.current_time() + interval
        limiter = trio.CapacityLimiter(SYNCS_MAX)
        syncing: set[ID] = set()
        async with trio.open_nursery() as nursery:
            while True:
                peer: ID | None = None
                with trio.move_on_at(next_periodic):
                    peer = await self._connected.receive()
                if peer is None:
                    next_periodic = trio.current_time() + interval
                    connected = self.host.get_connected_peers()
                    if not connected:
                        continue
                    peer = random.choice(connected)
                if self.peers.is_banned(peer, wall_ms()):
                    await self._cut_off(peer)
                    continue
                if peer not in syncing:
                    syncing.add(peer)
                    nursery.start_soon(self._meet, peer, limiter, syncing)

    async def _meet(self, peer: ID, limiter: trio.CapacityLimiter, syncing: set[ID]) -> None:
        """A peer (newly) connected: add it to the DHT's table and sync with it."""
        try:
            async with limiter:
                await self.providers.add_peer(peer)
                await self.sync_with(peer)
        finally:
            syncing.discard(peer)

    async def sync_with(self, peer: ID) -> int:
        """Reconcile message sets with ``peer``; return how many messages were new here."""
        try:
            with trio.fail_after(10):
                stream = await self.host.new_stream(peer, [TProtocol(SYNC_PROTOCOL)])
            result = await run_sync(
                stream,
                initiator=True,
                items=self.items,
                load=self.messages.get,
                accept=self._acceptor(peer),
                limits=self.sync_limits,
            )
        except Exception as exc:  # a sync that fails is retried on the next round
            log.info("sync failed", extra={"peer": str(peer), "error": repr(exc)})
            return 0
        self.sync_runs += 1
        log.info(
            "synced",
            extra={"peer": str(peer), "received": result.received, "sent": result.sent},
        )
        return result.accepted

    async def _answer_sync(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            await run_sync(
                stream,
                initiator=False,
                items=self.items,
                load=self.messages.get,
                accept=self._acceptor(peer),
                limits=self.sync_limits,
            )
        except Exception as exc:  # the peer's fault or its departure; logged, not fatal
            log.info("sync answer failed", extra={"peer": str(peer), "error": repr(exc)})
            with trio.move_on_after(1):
                await stream.reset()

    def _acceptor(self, peer: ID) -> Callable[[list[bytes]], Awaitable[int]]:
        async def accept(envelopes: list[bytes]) -> int:
            new = 0
            for raw in envelopes:
                outcome = self.ingest.offer(raw, wall_ms())
                if outcome.verdict is Verdict.NEW:
                    new += 1
                elif outcome.verdict is Verdict.REJECTED:
                    await self.peers.offend(peer, outcome.reason, wall_ms())
                await trio.sleep(0)
            return new

        return accept


def _with_peer_id(addr: multiaddr.Multiaddr, peer: ID) -> str:
    text = str(addr)
    return text if "/p2p/" in text else f"{text}/p2p/{peer}"


def _dialable(addr: multiaddr.Multiaddr) -> bool:
    text = str(addr)
    return text.startswith(("/ip4/", "/ip6/")) and "/tcp/" in text


async def _read_all(stream: INetStream, bytes_max: int) -> bytes:
    data = bytearray()
    while piece := await read_some(stream, 65536):
        data += piece
        if len(data) > bytes_max:
            raise DecodeError(f"answer over {bytes_max} bytes")
    return bytes(data)
