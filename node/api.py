"""What the control interface offers: the CLI's commands, carried out by the running node.

Each route takes a JSON object and returns one, or a stream of progress objects ending
with the result. Errors a user can act on raise :class:`~node.control.ControlError`,
whose message the CLI prints as it would its own.
"""

import base64
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.peerstore import PeerStoreError

from node.control import (
    ControlError,
    ControlServer,
    account_param,
    limit_param,
    unlock_param,
    video_param,
)
from node.daemon import Node
from node.feedapi import install_feed_routes
from node.gossip import wall_ms
from node.ingest import Verdict
from node.ledgerapi import install_ledger_routes
from node.publish import PublishMeta, check_meta, finish_publish, follow_message
from node.render import held_video_json, manifest_json
from node.swarm import SwarmError
from node.video import VideoError, ingest
from protocol.accounts import InvalidAccount, account_from_text, account_to_text
from protocol.errors import ProtocolError
from storage.chunks import PinReason
from storage.errors import ManifestError, StoreError
from storage.manifests import StoredManifest

log = logging.getLogger("toktok.api")

VIDEOS_LIMIT_MAX = 1000


def _text(params: dict[str, Any], name: str, default: str | None = None) -> str:
    value = params.get(name, default)
    if not isinstance(value, str):
        raise ControlError(f"parameter {name!r}: a string is required")
    return value


def install_routes(server: ControlServer, node: Node) -> None:
    """Register every control route on ``server``."""

    async def status(params: dict[str, Any]) -> dict[str, Any]:
        chunks = node.stores.chunks
        return {
            "peer_id": str(node.peer_id),
            "addrs": node.addrs(),
            "peers": len(node.host.get_connected_peers()),
            "messages": len(node.items),
            "videos": node.stores.manifests.count(),
            "chunks": chunks.count,
            "store_bytes": chunks.used_bytes,
            "sync_runs": node.sync_runs,
            "seeded": node.seeding.seeded,
            "released": node.seeding.released,
            "ingest": {v.value: n for v, n in node.ingest.counts.items()},
            "chunks_served": node.swarm_stats.chunks_served,
            "chunk_streams_refused": node.swarm_stats.requests_refused,
            "dht_provided": node.providers.provided,
            "dht_found": node.providers.found,
            "dht_routing_table": node.providers.dht.get_routing_table_size(),
            "offences": node.peers.offences,
            "bans": node.peers.bans,
            "chunks_fetched": node.swarm_stats.chunks_fetched,
            "ledger": _ledger_status(node),
        }

    async def peers(params: dict[str, Any]) -> dict[str, Any]:
        store = node.host.get_peerstore()
        listing = []
        for peer in node.host.get_connected_peers():
            try:
                addrs = [str(a) for a in store.addrs(peer)]
            except PeerStoreError:
                addrs = []
            listing.append({"peer_id": str(peer), "addrs": addrs})
        return {"peers": listing, "known": len(node.peers.known())}

    async def connect(params: dict[str, Any]) -> dict[str, Any]:
        addr = _text(params, "addr")
        try:
            peer = await node.connect(addr)
        except Exception as exc:  # a dial fails in many ways; the user needs the text
            raise ControlError(f"cannot connect to {addr}: {exc!r}") from exc
        return {"peer_id": str(peer)}

    async def videos(params: dict[str, Any]) -> dict[str, Any]:
        """The videos stored here, newest first; with ``account``, that creator's only."""
        limit = limit_param(params, 50, VIDEOS_LIMIT_MAX)
        manifests = node.stores.manifests
        author = params.get("account")
        if author is None:
            found = manifests.recent(limit=limit)
        else:
            try:
                found = manifests.by_creator(account_from_text(str(author)), limit=limit)
            except InvalidAccount as exc:
                raise ControlError(f"account: {exc}") from exc
        return {"videos": [held_video_json(stored, manifests) for stored in found]}

    async def show(params: dict[str, Any]) -> dict[str, Any]:
        stored = node.stores.manifests.get(video_param(node.stores, params))
        if stored is None:
            raise ControlError("withdrawn while looking it up", status=404)
        return {"video": manifest_json(stored)}

    async def follow(params: dict[str, Any]) -> dict[str, Any]:
        return await _social(node, params, following=True)

    async def unfollow(params: dict[str, Any]) -> dict[str, Any]:
        return await _social(node, params, following=False)

    async def following(params: dict[str, Any]) -> dict[str, Any]:
        key = account_param(node.stores, {})
        return {"following": [account_to_text(t) for t in node.stores.social.following(key)]}

    async def message(params: dict[str, Any]) -> dict[str, Any]:
        try:
            mid = bytes.fromhex(_text(params, "id"))
        except ValueError as exc:
            raise ControlError("id: a message id in hex") from exc
        return {"held": node.messages.has(mid)}

    async def arrivals(params: dict[str, Any]) -> dict[str, Any]:
        """When each of the given messages (hex ids, at most 1000) was applied here."""
        ids = params.get("ids")
        if not isinstance(ids, list) or len(ids) > 1000:
            raise ControlError("ids: a list of at most 1000 hex message ids")
        out: dict[str, int | None] = {}
        for text in ids:
            try:
                mid = bytes.fromhex(text)
            except (ValueError, TypeError) as exc:
                raise ControlError(f"not a hex message id: {text!r}") from exc
            out[text] = node.ingest.arrivals.get(mid)
        return {"arrivals": out}

    async def submit(params: dict[str, Any]) -> dict[str, Any]:
        """A message signed elsewhere (a client holding its own key): check, store, gossip."""
        try:
            raw = base64.b64decode(_text(params, "envelope"), validate=True)
        except ValueError as exc:
            raise ControlError("envelope: base64 of the envelope bytes") from exc
        outcome = node.ingest.offer(raw, wall_ms())
        if outcome.verdict is Verdict.REJECTED:
            raise ControlError(f"rejected: {outcome.reason}")
        if outcome.verdict is Verdict.NEW:
            assert outcome.message is not None
            try:
                node.gossip.publish(raw, outcome.message.kind)
            except OverflowError as exc:  # stored: sync will spread it
                log.warning("gossip outbox full", extra={"error": str(exc)})
        return {"verdict": outcome.verdict.value, "reason": outcome.reason}

    async def publish(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return _publish(node, params)

    async def fetch(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return _fetch(node, video_param(node.stores, params))

    server.route("status", status)
    server.route("peers", peers)
    server.route("connect", connect)
    server.route("videos", videos)
    server.route("show", show)
    server.route("follow", follow)
    server.route("unfollow", unfollow)
    server.route("following", following)
    server.route("message", message)
    server.route("arrivals", arrivals)
    server.route("submit", submit)
    server.route("publish", publish)
    server.route("fetch", fetch)
    install_ledger_routes(server, node)
    install_feed_routes(server, node)


def _ledger_status(node: Node) -> dict[str, Any] | None:
    ledger, client = node.ledger, node.ledger_client
    if ledger is None or client is None:
        return None
    return {
        "network": ledger.committee.network.hex(),
        "validator": None if ledger.validator is None else ledger.validator.index,
        "validators_linked": len(client.links),
        "replicas_linked": len(client.replicas),
        "certified": client.certified,
        **dataclasses.asdict(ledger.stats),
    }


async def _social(node: Node, params: dict[str, Any], *, following: bool) -> dict[str, Any]:
    try:
        target = account_from_text(_text(params, "account"))
    except InvalidAccount as exc:
        raise ControlError(str(exc)) from exc
    key = unlock_param(node.stores, params)
    try:
        stamp = node.stores.social.follow_stamp_ms(key.public_key, target, wall_ms())
        message = follow_message(key, target, following=following, now_ms=stamp)
    except ProtocolError as exc:
        raise ControlError(str(exc)) from exc
    node.share(message)
    return {"id": message.id.hex(), "following": following}


def _publish(node: Node, params: dict[str, Any]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
    path = Path(_text(params, "file"))
    tags = params.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ControlError("tags: a list of strings")
    meta = PublishMeta(
        title=_text(params, "title"),
        description=_text(params, "description", ""),
        tags=tuple(tags),
        license=_text(params, "license", ""),
    )
    try:
        check_meta(meta)
    except ProtocolError as exc:
        raise ControlError(str(exc)) from exc
    key = unlock_param(node.stores, params)
    if not path.is_file():
        raise ControlError(f"{path}: no such file")
    send, receive = trio.open_memory_channel[dict[str, Any]](256)

    last: dict[str, float] = {}

    def report(phase: str, fraction: float) -> None:
        # A step per percent and phase; a slow reader misses a step of the bar, nothing else.
        rounded = round(fraction, 2)
        if rounded > last.get(phase, -1.0):
            last[phase] = rounded
            # A reader that went away (the CLI interrupted) must not stop the work.
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                send.send_nowait({"phase": phase, "fraction": rounded})

    async def work() -> None:
        async with send:
            try:
                # Transcoding is the long part; a worker thread keeps the node serving.
                result = await trio.to_thread.run_sync(
                    lambda: ingest(
                        path,
                        progress=lambda f: trio.from_thread.run_sync(report, "transcode", f),
                    )
                )
                message = finish_publish(
                    node.stores, key, result, meta, now_ms=wall_ms(), progress=report
                )
            except (VideoError, ProtocolError, StoreError, OSError) as exc:
                await send.send({"error": str(exc)})
                return
            node.share(message)
            node.nursery.start_soon(node.providers.provide, message.id)
            # Just stored and checked: rendered from the message, not read back.
            video = manifest_json(StoredManifest(message))
            await send.send({"result": {"id": message.id.hex(), "video": video}})

    node.nursery.start_soon(_task_top, "publish", work)
    return receive


async def _task_top(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run a call's background work in the node's nursery, where an escaping error would
    stop the node: a reader that left is fine, anything else is a bug to log."""
    try:
        await work()
    except trio.BrokenResourceError:
        pass  # the caller stopped listening; the work itself was done or refused
    except Exception as exc:
        log.error("background call failed", exc_info=True, extra={"call": name, "error": repr(exc)})


def _fetch(node: Node, mid: bytes) -> trio.MemoryReceiveChannel[dict[str, Any]]:
    send, receive = trio.open_memory_channel[dict[str, Any]](256)

    last = [-1.0]

    def report(held: int, total: int) -> None:
        # A step per percent: a line per chunk would cost the download a tenth of its time.
        fraction = round(held / max(total, 1), 2)
        if fraction > last[0]:
            last[0] = fraction
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                send.send_nowait({"phase": "fetch", "fraction": fraction})

    async def work() -> None:
        async with send:
            try:
                manifest = await node.seeding.fetch(mid, PinReason.WATCHED, progress=report)
            except (SwarmError, ManifestError, StoreError) as exc:
                await send.send({"error": str(exc)})
                return
            held = node.stores.manifests.chunks_held(manifest)
            await send.send({"result": {"id": mid.hex(), "chunks_held": held}})

    node.nursery.start_soon(_task_top, "fetch", work)
    return receive
