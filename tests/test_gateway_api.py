"""The web gateway's JSON API (node/gateway/api.py) over a real node.

Each test runs a real :class:`~node.daemon.Node` in process, over a home on real LevelDB
with a one-validator ledger (its own votes certify), and calls the gateway's handler with
requests as the HTTP server would build them; the last tests go through a real socket for
what only the wire shows (cookies, headers). WebRTC itself is tested in test_gateway_rtc.
"""

import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from node.api import install_routes
from node.config import WebConfig, load_config
from node.control import UNLOCKED_KEY, ControlServer
from node.daemon import Node
from node.gateway.api import CSP, LOCKED, NO_LEDGER, Gateway
from node.gateway.bridge import Bridge
from node.gateway.rtc import RtcService
from node.gateway.segments import SegmentSource
from node.gateway.sessions import SIGNIN_TRIES_BURST, SIGNIN_TRY_REFILL_S
from node.gateway.uploads import PIECE_BYTES_MAX, UPLOAD_IDLE_S, UPLOADS_MAX
from node.home import Home, unlock_account
from node.httpserver import Request, Response, serve_http
from node.ledgerconfig import load_genesis, load_validator_key
from node.publish import follow_message
from node.video import write_sample
from protocol.accounts import AccountKey, account_to_text
from protocol.cid import chunk_id
from storage.chunks import PinReason
from tests.cli_helpers import PASSPHRASE
from tests.factories import NOW_MS, account, fake_video, sealed_manifest
from tests.httpclient import raw_request
from tests.ledgernet import prepare_ledger_homes
from tests.netharness import init_home

pytestmark = pytest.mark.trio

HOST = "127.0.0.1:8080"
ORIGIN = f"http://{HOST}"
JSON = "application/json"
OCTET = "application/octet-stream"
GUARD_S = 60
INDEX = b"<!doctype html><title>toktok</title>"
CREATOR = account(1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    node: Node
    control: ControlServer
    gateway: Gateway
    owner: AccountKey | None
    root: Path
    clock: Clock
    cookie: str = ""
    uploads: Path = field(init=False)

    def __post_init__(self) -> None:
        self.uploads = self.root / "uploads"


@pytest.fixture(scope="module")
def ledger_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose node validates, alone, a ledger where its account holds tokens; each
    test runs on a copy."""
    [home] = prepare_ledger_homes(tmp_path_factory.mktemp("ledger"), 1, 1)
    return home


@asynccontextmanager
async def running(
    root: Path, template: Path | None, *, locked: bool = False, **web: Any
) -> AsyncIterator[Env]:
    """A node over a copy of ``template`` (None: a fresh home, no ledger) and its gateway,
    signed in unless ``locked`` (the node could not unlock its account)."""
    home_path = root / "home"
    if template is None:
        init_home(home_path)
    else:
        shutil.copytree(template, home_path)
    config = load_config(home_path).override(listen=("/ip4/127.0.0.1/tcp/0",))
    static = root / "static"
    (static / "css").mkdir(parents=True)
    (static / "index.html").write_bytes(INDEX)
    (static / "app.js").write_text("console.log('app')")
    (static / "css" / "style.css").write_text("body {}")
    (static / ".secret").write_text("hidden")
    (root / "outside.txt").write_text("outside")
    (static / "link.txt").symlink_to(root / "outside.txt")
    home = Home(home_path)
    stores = home.open()
    try:
        node = Node(
            home,
            config,
            stores,
            genesis=load_genesis(config, home_path),
            validator_key=load_validator_key(config, home_path, PASSPHRASE),
        )
        control = ControlServer("0" * 64)
        install_routes(control, node)
        owner = None if locked else unlock_account(stores, PASSPHRASE)
        clock = Clock()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            gateway = Gateway(
                node,
                control,
                rtc=None,
                source=SegmentSource(node),
                owner=owner,
                config=WebConfig(**{"sessions_max": 2, "upload_mb_max": 1, **web}),
                uploads_dir=root / "uploads",
                static_dir=static,
                clock=clock,
            )
            env = Env(node, control, gateway, owner, root, clock)
            env.cookie = await sign_in(env)
            try:
                yield env
            finally:
                nursery.cancel_scope.cancel()
    finally:
        stores.close()


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Request:
    return Request(method, path, query or {}, {"host": HOST, **(headers or {})}, body, "127.0.0.1")


async def send(
    env: Env, method: str, path: str, payload: Any = None, **options: Any
) -> tuple[int, Any]:
    """Send a request (see :func:`respond`); its status and JSON reply (None when the
    reply is not JSON)."""
    response = await respond(env, method, path, payload, **options)
    if response.content_type != JSON:
        return response.status, None
    return response.status, json.loads(response.body)


async def respond(
    env: Env,
    method: str,
    path: str,
    payload: Any = None,
    *,
    query: dict[str, str] | None = None,
    signed: bool = True,
    origin: str | None = ORIGIN,
    content_type: str | None = JSON,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Send a request as from the app's own page (by default: signed in, same origin, a
    JSON body) to the gateway's handler."""
    fields = dict(headers or {})
    if method != "GET" and origin is not None:
        fields["origin"] = origin
    if signed and env.cookie:
        fields["cookie"] = f"other=1; toktok_session={env.cookie}"
    if content_type is not None and method in ("POST", "PUT"):
        fields["content-type"] = content_type
    if body is None:
        body = b"" if payload is None else json.dumps(payload).encode()
    with trio.fail_after(GUARD_S):
        return await env.gateway.handler(request(method, path, body, query=query, headers=fields))


async def sign_in(env: Env) -> str:
    response = await respond(env, "POST", "/api/session", {"token": env.gateway.signin_token})
    assert response.status == 200, response.body
    cookie = response.headers["Set-Cookie"]
    assert cookie.endswith("; HttpOnly; SameSite=Strict; Path=/")
    return cookie.split(";")[0].removeprefix("toktok_session=")


def store_video(env: Env, author: AccountKey = CREATOR, tag: bytes = b"v", **meta: Any) -> str:
    """A video by ``author`` whose chunks and manifest are stored here; its id."""
    chunks = fake_video(tag)
    message = sealed_manifest(author, chunks, **meta)
    stores = env.node.stores
    for data in chunks:
        stores.chunks.put(chunk_id(data), data, pin=PinReason.OWN)
    stores.manifests.put(message, pin=PinReason.OWN)
    return message.id.hex()


def text(key: AccountKey) -> str:
    return account_to_text(key.public_key)


def tok(reply: dict[str, Any], symbol: str = "TOK") -> int:
    return sum(int(r["amount"]) for r in reply["balances"] if r["symbol"] == symbol)


# -- reads ---------------------------------------------------------------------------------


async def test_reads_answer_with_the_control_replies(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env, title="hello")
        assert env.owner is not None
        _, status = await send(env, "GET", "/api/status")
        assert status["signed_in"] is True and status["unlocked"] is True
        assert status["account"] == text(env.owner) and status["videos"] == 1
        assert status["web"]["sessions_max"] == 2 and status["ledger"]["validator"] == 0
        assert (await send(env, "GET", "/api/status", signed=False))[1]["signed_in"] is False
        for path, route, query in [
            ("/api/feed", "feed", {"limit": "5"}),
            ("/api/videos", "videos", {"limit": "10"}),
            ("/api/following", "following", {}),
            ("/api/balance", "balance", {}),
            ("/api/history", "history", {"limit": "3"}),
            ("/api/tokens", "tokens", {}),
            ("/api/offers", "offers", {}),
        ]:
            params = {k: int(v) for k, v in query.items()}
            expected = await env.control.call(route, params)
            status, got = await send(env, "GET", path, query=query, signed=False)
            assert isinstance(expected, dict)
            for reply in (expected, got):
                reply.pop("now_ms", None)  # the feed's clock moved on in between
            assert (status, got) == (200, expected), path
        _, videos = await send(env, "GET", "/api/videos")
        assert [v["id"] for v in videos["videos"]] == [vid]
        _, balance = await send(env, "GET", "/api/balance")
        assert tok(balance) > 0 and balance["account"] == text(env.owner)
        _, tokens = await send(env, "GET", "/api/tokens")
        assert [t["symbol"] for t in tokens["tokens"]] == ["TOK"]


async def test_video_envelope_thumbnail_and_node(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env, title="hello")
        status, shown = await send(env, "GET", f"/api/videos/{vid}", signed=False)
        assert status == 200 and shown["video"]["title"] == "hello"
        assert (shown["liked"], shown["likes"], shown["following_author"]) == (False, 0, False)
        envelope = await respond(env, "GET", f"/api/videos/{vid}/envelope")
        assert envelope.status == 200 and envelope.content_type == "application/octet-stream"
        assert hashlib.sha256(envelope.body).hexdigest() == vid
        assert "immutable" in envelope.headers["Cache-Control"]
        thumbnail = await respond(env, "GET", f"/api/videos/{vid}/thumbnail")
        assert (thumbnail.status, thumbnail.content_type) == (200, "image/jpeg")
        assert thumbnail.body == fake_video(b"v")[0]
        status, info = await send(env, "GET", "/api/node")
        assert status == 200 and info["rtc"] is None
        assert info["status"]["peer_id"] == str(env.node.peer_id)
        assert info["peers"] == {"peers": [], "known": 0}
        [held] = info["seeding"]
        assert (held["id"], held["chunks_held"], held["chunks"]) == (vid, 5, 5)


@pytest.mark.parametrize(
    "path,query,status,message",
    [
        ("/api/videos", {"limit": "0"}, 400, "limit: 1 to 1000"),
        ("/api/videos", {"limit": "ten"}, 400, "limit: a whole number"),
        ("/api/videos", {"limit": "-1"}, 400, "limit: a whole number"),
        ("/api/videos", {"sort": "new"}, 400, "unknown field 'sort'"),
        ("/api/videos", {"account": "ttnope"}, 400, "account:"),
        ("/api/feed", {"limit": "100000"}, 400, "limit: 1 to 200"),
        ("/api/status", {"x": "1"}, 400, "unknown field 'x' (this takes: nothing)"),
        ("/api/videos/zz", {}, 404, "a video id is 4 to 64 hex digits"),
        ("/api/videos/" + "0" * 64, {}, 404, "no stored video"),
        ("/api/videos/" + "G" * 64 + "/envelope", {}, 400, "64 lower-case hex digits"),
        ("/api/videos/" + "0" * 64 + "/envelope", {}, 404, "is known here"),
        ("/api/videos/" + "0" * 63 + "/thumbnail", {}, 400, "64 lower-case hex digits"),
        ("/api/accounts/ttnope", {}, 400, "account:"),
        ("/api/accounts/ttnope/followers", {}, 400, "account:"),
        ("/api/history", {"limit": "1001"}, 400, "limit: 1 to 1000"),
        ("/api/balance", {"account": "x"}, 400, "account id"),
        ("/api/offers/" + "0" * 64 + "/quote", {}, 404, "offer"),
        ("/api/offers/" + "0" * 64 + "/quote", {"amount": "lots"}, 400, "amount: a whole"),
        ("/api/uploads/" + "0" * 32, {}, 404, "no upload"),
        ("/api/nothing", {}, 404, "no such path"),
        ("/api/videos/a/b/c", {}, 404, "no such path"),
    ],
)
async def test_invalid_reads(
    tmp_path: Path, ledger_home: Path, path: str, query: dict[str, str], status: int, message: str
) -> None:
    async with running(tmp_path, ledger_home) as env:
        got = await send(env, "GET", path, query=query)
        assert got[0] == status and message in got[1]["error"], got


async def test_invalid_methods(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        for method, path, allow in [
            ("POST", "/api/videos", "GET, HEAD"),
            ("DELETE", "/api/status", "GET, HEAD"),
            ("GET", "/api/follow", "POST"),
            ("PATCH", "/api/session", "DELETE, POST"),
            ("POST", "/", "GET, HEAD"),
        ]:
            response = await respond(env, method, path, {})
            assert (response.status, response.headers["Allow"]) == (405, allow), path
        head = await respond(env, "HEAD", "/api/status")
        assert head.status == 200


# -- who may write -------------------------------------------------------------------------

UPLOAD = "/api/uploads/" + "0" * 32


def writes(vid: str) -> list[tuple[str, str, Any]]:
    """Every write of the owner, with a valid body."""
    other = text(account(2))
    return [
        ("POST", "/api/follow", {"account": other}),
        ("POST", "/api/unfollow", {"account": other}),
        ("POST", "/api/like", {"id": vid}),
        ("POST", "/api/unlike", {"id": vid}),
        ("POST", "/api/view", {"id": vid, "watched_ms": 1000}),
        ("POST", "/api/tip", {"id": vid, "amount": 1}),
        ("POST", "/api/transfer", {"to": other, "amount": 1}),
        ("POST", "/api/tokens", {"symbol": "FAN", "name": "Fans", "supply": 10}),
        ("POST", "/api/buy", {"offer": "0" * 64, "amount": 1}),
        ("POST", "/api/uploads", {"size": 10, "name": "a.mp4"}),
        ("PUT", UPLOAD, None),
        ("POST", UPLOAD + "/publish", {"title": "t"}),
        ("DELETE", UPLOAD, None),
    ]


def nothing_written(env: Env, vid: str) -> None:
    assert env.owner is not None
    stores = env.node.stores
    assert not stores.social.is_following(env.owner.public_key, account(2).public_key)
    assert stores.graph.like_count(bytes.fromhex(vid)) == 0
    assert stores.graph.viewed(env.owner.public_key, 10) == []
    assert env.node.ledger_client is not None and env.node.ledger_client.certified == 0
    assert list(env.uploads.iterdir()) == []


async def test_writes_need_a_session(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env)
        for method, path, payload in writes(vid):
            piece: dict[str, Any] = {"content_type": OCTET, "body": b"x"} if method == "PUT" else {}
            got = await send(env, method, path, payload, signed=False, **piece)
            assert got[0] == 401 and "sign in first" in got[1]["error"], path
            stale = {"cookie": "toktok_session=" + "A" * 43}
            got = await send(env, method, path, payload, signed=False, headers=stale)
            assert got[0] == 401, path
        nothing_written(env, vid)


@pytest.mark.parametrize(
    "origin,headers,message",
    [
        ("http://evil.example", {}, "Origin 'http://evil.example' is not http://127.0.0.1:8080"),
        ("http://127.0.0.1:9999", {}, "is not http://127.0.0.1:8080"),
        ("https://127.0.0.1:8080", {}, "is not http://127.0.0.1:8080"),
        ("null", {}, "Origin 'null'"),
        (None, {}, "send Origin: http://127.0.0.1:8080"),
        (None, {"sec-fetch-site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
        (ORIGIN, {"sec-fetch-site": "same-site"}, "Sec-Fetch-Site: same-site"),
    ],
)
async def test_writes_refused_from_another_origin(
    tmp_path: Path,
    ledger_home: Path,
    origin: str | None,
    headers: dict[str, str],
    message: str,
) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env)
        for method, path, payload in [*writes(vid), ("POST", "/api/session", {"token": "x"})]:
            got = await send(env, method, path, payload, origin=origin, headers=headers)
            assert got[0] == 403 and message in got[1]["error"], (path, got)
            # Signing in or not: the origin is checked first.
            got = await send(
                env, method, path, payload, origin=origin, headers=headers, signed=False
            )
            assert got[0] == 403, path
        nothing_written(env, vid)


async def test_a_same_origin_mark_stands_for_origin(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        assert env.owner is not None
        mark = {"sec-fetch-site": "same-origin"}
        payload = {"account": text(account(2))}
        assert (await send(env, "POST", "/api/follow", payload, origin=None, headers=mark))[
            0
        ] == 200
        assert env.node.stores.social.is_following(env.owner.public_key, account(2).public_key)


@pytest.mark.parametrize(
    "content_type,body,status,message",
    [
        (
            "text/plain",
            b'{"account": "x"}',
            415,
            "Content-Type: application/json, not 'text/plain'",
        ),
        ("application/x-www-form-urlencoded", b"account=x", 415, "Content-Type"),
        (None, b'{"account": "x"}', 415, "Content-Type"),
        (JSON, b"{", 400, "not valid JSON"),
        (JSON, b"[1]", 400, "must be a JSON object"),
        (JSON, b'{"account": NaN}', 400, "not valid JSON"),
        (JSON, b'{"account": "' + b"x" * 70_000 + b'"}', 413, "at most 65536 bytes"),
        (JSON, b"{}", 400, "account: required"),
        (JSON, b'{"account": 5}', 400, "account: a string"),
        (JSON, b'{"account": "ttnope"}', 400, "account id"),
        (JSON, b'{"account": "x", "as_account": "y"}', 400, "unknown field 'as_account'"),
        (JSON, b'{"passphrase": "y"}', 400, "unknown field 'passphrase'"),
    ],
)
async def test_invalid_json_write(
    tmp_path: Path,
    ledger_home: Path,
    content_type: str | None,
    body: bytes,
    status: int,
    message: str,
) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env)
        got = await send(env, "POST", "/api/follow", content_type=content_type, body=body)
        assert got[0] == status and message in got[1]["error"], got
        nothing_written(env, vid)


# -- signing in ----------------------------------------------------------------------------


async def test_sign_in_and_out(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        follow = ("POST", "/api/follow", {"account": text(account(2))})
        assert (await send(env, *follow))[0] == 200
        signed_out = await respond(env, "DELETE", "/api/session")
        assert signed_out.status == 200
        assert signed_out.headers["Set-Cookie"].startswith("toktok_session=; ")
        assert "Max-Age=0" in signed_out.headers["Set-Cookie"]
        assert (await send(env, *follow))[0] == 401
        assert (await send(env, "GET", "/api/status"))[1]["signed_in"] is False
        # sessions_max is 2: a third sign-in signs the first session out.
        first, second, third = [await sign_in(env) for _ in range(3)]
        for cookie, answer in ((first, 401), (second, 200), (third, 200)):
            env.cookie = cookie
            assert (await send(env, *follow))[0] == answer
        assert len(env.gateway.sessions) == 2


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"token": "wrong"}, 401, "wrong sign-in token"),
        ({"token": ""}, 400, "token: the sign-in token"),
        ({"token": "x" * 300}, 400, "token: the sign-in token"),
        ({"token": 5}, 400, "token: a string"),
        ({}, 400, "token: required"),
        ({"token": "x", "remember": True}, 400, "unknown field 'remember'"),
    ],
)
async def test_invalid_sign_in(
    tmp_path: Path, ledger_home: Path, body: dict[str, Any], status: int, message: str
) -> None:
    async with running(tmp_path, ledger_home) as env:
        response = await respond(env, "POST", "/api/session", body, signed=False)
        assert response.status == status and message in json.loads(response.body)["error"]
        assert "Set-Cookie" not in response.headers
        assert len(env.gateway.sessions) == 1


async def test_sign_in_tries_are_limited(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        token = env.gateway.signin_token
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        for _ in range(SIGNIN_TRIES_BURST):
            assert (await send(env, "POST", "/api/session", {"token": wrong}))[0] == 401
        # The budget is spent: even the right token waits.
        refused = await send(env, "POST", "/api/session", {"token": token})
        assert refused[0] == 429 and "too many wrong sign-in tokens" in refused[1]["error"]
        env.clock.now += SIGNIN_TRY_REFILL_S
        assert (await send(env, "POST", "/api/session", {"token": token}))[0] == 200
        assert (await send(env, "POST", "/api/session", {"token": wrong}))[0] == 401
        assert (await send(env, "POST", "/api/session", {"token": token}))[0] == 429


# -- the owner's writes --------------------------------------------------------------------


async def test_follow_like_view(
    tmp_path: Path, ledger_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every change within one millisecond: each still supersedes the one before.
    for module in ("node.api", "node.feedapi"):
        monkeypatch.setattr(f"{module}.wall_ms", lambda: NOW_MS)
    async with running(tmp_path, ledger_home) as env:
        assert env.owner is not None
        me, stores = env.owner.public_key, env.node.stores
        vid = store_video(env, CREATOR)
        mid, creator = bytes.fromhex(vid), text(CREATOR)
        status, followed = await send(env, "POST", "/api/follow", {"account": creator})
        assert status == 200 and followed["following"] is True
        assert stores.social.is_following(me, CREATOR.public_key)
        _, profile = await send(env, "GET", f"/api/accounts/{creator}")
        assert (profile["account"], profile["followers"], profile["following"]) == (
            creator,
            1,
            True,
        )
        assert [v["id"] for v in profile["videos"]] == [vid]
        _, followers = await send(env, "GET", f"/api/accounts/{creator}/followers")
        assert followers == {"followers": [text(env.owner)]}
        assert (await send(env, "GET", "/api/following"))[1] == {"following": [creator]}
        _, liked = await send(env, "POST", "/api/like", {"id": vid})
        assert liked["liked"] is True and stores.graph.like_count(mid) == 1
        _, shown = await send(env, "GET", f"/api/videos/{vid}")
        assert (shown["liked"], shown["likes"], shown["following_author"]) == (True, 1, True)
        await send(env, "POST", "/api/unlike", {"id": vid})
        await send(env, "POST", "/api/unfollow", {"account": creator})
        _, shown = await send(env, "GET", f"/api/videos/{vid}")
        assert (shown["liked"], shown["likes"], shown["following_author"]) == (False, 0, False)
        assert not stores.social.is_following(me, CREATOR.public_key)
        status, viewed = await send(env, "POST", "/api/view", {"id": vid, "watched_ms": 1500})
        assert status == 200 and viewed["watched_ms"] == 1500
        total = stores.graph.watched(me, mid)
        assert total is not None and total.watched_ms == 1500


async def test_profile_lists_that_creators_videos(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        theirs = store_video(env, CREATOR, b"a")
        store_video(env, account(2), b"b")
        # A follower arrives from the network: counted, though the owner does not follow.
        env.node.stores.social.apply(
            follow_message(account(3), CREATOR.public_key, following=True, now_ms=NOW_MS)
        )
        _, profile = await send(env, "GET", f"/api/accounts/{text(CREATOR)}", signed=False)
        assert [v["id"] for v in profile["videos"]] == [theirs]
        assert (profile["followers"], profile["following"], profile["profile"]) == (1, False, None)
        _, videos = await send(env, "GET", "/api/videos", query={"account": text(CREATOR)})
        assert [v["id"] for v in videos["videos"]] == [theirs]
        _, everyone = await send(env, "GET", "/api/videos")
        assert len(everyone["videos"]) == 2


@pytest.mark.parametrize(
    "path,payload,status,message",
    [
        ("/api/like", {"id": 7}, 400, "id: a string"),
        ("/api/like", {"id": "0" * 64}, 404, "no stored video"),
        ("/api/unlike", {}, 400, "id: required"),
        ("/api/view", {"id": "VID", "watched_ms": "1000"}, 400, "watched_ms: a whole number"),
        ("/api/view", {"id": "VID", "watched_ms": True}, 400, "watched_ms: a whole number"),
        ("/api/view", {"id": "VID", "watched_ms": -5}, 400, "watched_ms"),
        ("/api/tip", {"id": "VID", "amount": 0}, 400, "amount: 1 to"),
        ("/api/tip", {"id": "VID", "amount": 1, "token": "NOPE"}, 400, "no token has the symbol"),
        ("/api/tip", {"id": "0" * 64, "amount": 1}, 404, "no stored video"),
        ("/api/tip", {"manifest": "VID", "amount": 1}, 400, "unknown field 'manifest'"),
        ("/api/transfer", {"to": "tt", "amount": 1}, 400, "to:"),
        ("/api/transfer", {"to": "OTHER", "amount": 1.5}, 400, "amount: a whole number"),
        ("/api/transfer", {"to": "OTHER", "amount": 1, "memo": "m" * 65}, 400, "memo"),
        ("/api/transfer", {"to": "OTHER", "amount": 10**30}, 400, "amount: 1 to"),
        ("/api/tokens", {"symbol": "FAN", "name": "Fans"}, 400, "supply: required"),
        ("/api/tokens", {"symbol": "fan", "name": "Fans", "supply": 5}, 400, "symbol"),
        (
            "/api/tokens",
            {"symbol": "FAN", "name": "F", "supply": 5, "decimals": 99},
            400,
            "decimals",
        ),
        ("/api/buy", {"offer": "0" * 64, "amount": 1}, 404, "offer"),
        ("/api/buy", {"offer": "0" * 64, "amount": "1"}, 400, "amount: a whole number"),
    ],
)
async def test_invalid_owner_write(
    tmp_path: Path,
    ledger_home: Path,
    path: str,
    payload: dict[str, Any],
    status: int,
    message: str,
) -> None:
    async with running(tmp_path, ledger_home) as env:
        vid = store_video(env)
        names = {"VID": vid, "OTHER": text(account(2))}
        payload = {k: names.get(v, v) if isinstance(v, str) else v for k, v in payload.items()}
        got = await send(env, "POST", path, payload)
        assert got[0] == status and message in got[1]["error"], got
        nothing_written(env, vid)


async def test_transfer_token_and_tip(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        assert env.owner is not None
        me, other = text(env.owner), text(account(2))
        _, before = await send(env, "GET", "/api/balance")
        payload = {"to": other, "amount": 25, "memo": "thanks"}
        status, sent = await send(env, "POST", "/api/transfer", payload)
        assert status == 200 and sent["kind"] == "transfer"
        _, theirs = await send(env, "GET", "/api/balance", query={"account": other})
        assert tok(theirs) == 25
        _, mine = await send(env, "GET", "/api/balance", query={"account": me})
        assert tok(mine) == tok(before) - 25
        _, history = await send(env, "GET", "/api/history", query={"limit": "5"})
        assert len(history["history"]) == 1
        token = {"symbol": "FAN", "name": "Fan token", "supply": 1000, "decimals": 2}
        status, created = await send(env, "POST", "/api/tokens", token)
        assert status == 200 and created["kind"] == "create_token"
        _, tokens = await send(env, "GET", "/api/tokens")
        assert {t["symbol"] for t in tokens["tokens"]} == {"TOK", "FAN"}
        vid = store_video(env, CREATOR)
        tip = {"id": vid, "amount": 7, "token": "FAN"}
        status, tipped = await send(env, "POST", "/api/tip", tip)
        assert status == 200 and tipped["creator"] == text(CREATOR)
        _, creator = await send(env, "GET", "/api/balance", query={"account": text(CREATOR)})
        assert tok(creator, "FAN") == 7
        assert tok((await send(env, "GET", "/api/balance"))[1], "FAN") == 993
        terms = {"token": "FAN", "price_num": 2, "price_den": 1, "amount": 50}
        await env.control.call("offer.create", {**terms, UNLOCKED_KEY: env.owner})
        _, offers = await send(env, "GET", "/api/offers", signed=False)
        [offer] = offers["offers"]
        assert (offer["creator"], offer["stock"], offer["mine"]) == (me, 50, True)


async def test_a_locked_account_reads_but_signs_nothing(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home, locked=True) as env:
        vid = store_video(env)
        _, status = await send(env, "GET", "/api/status")
        assert status["signed_in"] is True and status["unlocked"] is False
        assert status["account"].startswith("tt")
        for method, path, payload in writes(vid)[:10]:
            got = await send(env, method, path, payload)
            assert got == (409, {"error": LOCKED}), path
        assert (await send(env, "GET", f"/api/videos/{vid}"))[0] == 200


async def test_a_node_without_a_ledger(tmp_path: Path) -> None:
    async with running(tmp_path, None) as env:
        for path in ("/api/balance", "/api/history", "/api/tokens", "/api/offers"):
            assert await send(env, "GET", path) == (409, {"error": NO_LEDGER}), path
        payload = {"to": text(account(2)), "amount": 1}
        assert await send(env, "POST", "/api/transfer", payload) == (409, {"error": NO_LEDGER})
        assert (await send(env, "GET", "/api/status"))[1]["ledger"] is None


# -- uploads -------------------------------------------------------------------------------

PIECE_BYTES = 16 * 1024


async def upload(env: Env, data: bytes, name: str = "clip.mp4") -> str:
    """Declare and send ``data`` in pieces; the upload's id."""
    status, state = await send(env, "POST", "/api/uploads", {"size": len(data), "name": name})
    assert status == 200 and state["phase"] == "receiving", state
    for offset in range(0, len(data), PIECE_BYTES):
        piece = data[offset : offset + PIECE_BYTES]
        query = {"offset": str(offset)}
        got = await send(
            env, "PUT", f"/api/uploads/{state['id']}", query=query, content_type=OCTET, body=piece
        )
        assert got[0] == 200 and got[1]["received"] == offset + len(piece), got
    return str(state["id"])


async def published(env: Env, upload_id: str, **meta: Any) -> dict[str, Any]:
    """Publish the upload and wait until the node is done with it; its final state."""
    status, state = await send(env, "POST", f"/api/uploads/{upload_id}/publish", meta)
    assert status == 200 and state["phase"] == "publishing", state
    with trio.fail_after(GUARD_S):
        await env.gateway.uploads.get(upload_id).finished.wait()
    status, state = await send(env, "GET", f"/api/uploads/{upload_id}", signed=False)
    assert status == 200
    return dict(state)


async def test_upload_publish_and_watch(tmp_path: Path, ledger_home: Path) -> None:
    sample = tmp_path / "clip.mp4"
    write_sample(sample, seconds=2, height=144, fps=15)
    data = sample.read_bytes()
    async with running(tmp_path, ledger_home) as env:
        assert env.owner is not None
        upload_id = await upload(env, data)
        [held] = list(env.uploads.iterdir())
        assert held.name == f"upload-{upload_id}.mp4" and held.read_bytes() == data
        _, state = await send(env, "GET", f"/api/uploads/{upload_id}")
        assert (state["phase"], state["received"], state["fraction"]) == (
            "received",
            len(data),
            1.0,
        )
        # Metadata the publish route refuses leaves the upload ready for another try.
        got = await send(env, "POST", f"/api/uploads/{upload_id}/publish", {"title": " "})
        assert got[0] == 400 and "title is blank" in got[1]["error"]
        got = await send(
            env, "POST", f"/api/uploads/{upload_id}/publish", {"title": "x", "tags": "a"}
        )
        assert got[0] == 400 and "tags: a list of strings" in got[1]["error"]
        state = await published(env, upload_id, title="Clip", description="d", tags=["demo"])
        assert state["phase"] == "done" and state["fraction"] == 1.0 and "error" not in state
        vid = state["result"]["id"]
        assert list(env.uploads.iterdir()) == []  # the ingest is done with it
        again = await send(env, "POST", f"/api/uploads/{upload_id}/publish", {"title": "Clip"})
        assert again[0] == 409 and "done already" in again[1]["error"]
        _, mine = await send(env, "GET", "/api/videos", query={"account": text(env.owner)})
        [video] = mine["videos"]
        assert (video["id"], video["title"], video["tags"]) == (vid, "Clip", ["demo"])
        envelope = await respond(env, "GET", f"/api/videos/{vid}/envelope", signed=False)
        assert hashlib.sha256(envelope.body).hexdigest() == vid
        thumbnail = await respond(env, "GET", f"/api/videos/{vid}/thumbnail", signed=False)
        assert thumbnail.status == 200 and thumbnail.body.startswith(b"\xff\xd8")


async def test_upload_of_a_file_that_is_not_a_video(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        upload_id = await upload(env, b"this is not a video\n" * 2000, name="notes.txt")
        state = await published(env, upload_id, title="Notes")
        assert state["phase"] == "failed" and "result" not in state
        assert state["error"].startswith("not a video: the file looks like text")
        assert list(env.uploads.iterdir()) == []
        assert env.node.stores.manifests.count() == 0


async def test_invalid_upload_pieces(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        _, state = await send(env, "POST", "/api/uploads", {"size": 100, "name": "a.mp4"})
        path = f"/api/uploads/{state['id']}"

        async def put(body: bytes, offset: str | None = "0", ctype: str = OCTET) -> tuple[int, Any]:
            query = {} if offset is None else {"offset": offset}
            return await send(env, "PUT", path, query=query, content_type=ctype, body=body)

        for got, status, message in [
            (await put(b"x", "10"), 409, "offset: 10, but 0 bytes are received so far"),
            (await put(b"x", None), 400, "offset: required"),
            (await put(b"x", "-1"), 400, "offset: a whole number"),
            (await put(b"x", ctype=JSON), 415, "Content-Type: application/octet-stream"),
            (await put(b""), 400, "an empty piece"),
            (await put(b"x" * (PIECE_BYTES_MAX + 1)), 413, f"at most {PIECE_BYTES_MAX} bytes"),
            (await put(b"x" * 101), 413, "past the declared size of 100 bytes"),
            (await put(b"x" * 60), 200, None),
            (await put(b"x", "0"), 409, "offset: 0, but 60 bytes"),
            (await put(b"x" * 40, "60"), 200, None),
            (await put(b"x", "100"), 409, "the upload is received: it takes no more bytes"),
        ]:
            assert got[0] == status, got
            assert message is None or message in got[1]["error"], got
        assert (await send(env, "GET", path))[1]["received"] == 100
        missing = "/api/uploads/" + "f" * 32
        assert (
            await send(env, "PUT", missing, query={"offset": "0"}, content_type=OCTET, body=b"x")
        )[0] == 404
        assert (await send(env, "POST", missing + "/publish", {"title": "t"}))[0] == 404


@pytest.mark.parametrize(
    "payload,status,message",
    [
        (
            {"size": 1024 * 1024 + 1, "name": "big.mp4"},
            413,
            "at most 1048576 bytes (web.upload_mb_max)",
        ),
        ({"size": 0, "name": "a.mp4"}, 400, "size: the file's size in bytes"),
        ({"size": "10", "name": "a.mp4"}, 400, "size: a whole number"),
        ({"size": 10, "name": ""}, 400, "name: the file's name"),
        ({"size": 10, "name": "a\nb.mp4"}, 400, "name: printable characters only"),
        ({"size": 10}, 400, "name: required"),
    ],
)
async def test_invalid_upload(
    tmp_path: Path, ledger_home: Path, payload: dict[str, Any], status: int, message: str
) -> None:
    async with running(tmp_path, ledger_home) as env:
        got = await send(env, "POST", "/api/uploads", payload)
        assert got[0] == status and message in got[1]["error"], got
        assert list(env.uploads.iterdir()) == []


async def test_uploads_at_once_and_abandoned(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        declare = ("POST", "/api/uploads", {"size": 10, "name": "a.mp4"})
        ids = [(await send(env, *declare))[1]["id"] for _ in range(UPLOADS_MAX)]
        refused = await send(env, *declare)
        assert refused[0] == 429 and f"{UPLOADS_MAX} uploads are under way" in refused[1]["error"]
        assert await send(env, "DELETE", f"/api/uploads/{ids[0]}") == (
            200,
            {"id": ids[0], "abandoned": True},
        )
        assert (await send(env, "GET", f"/api/uploads/{ids[0]}"))[0] == 404
        assert len(list(env.uploads.iterdir())) == UPLOADS_MAX - 1
        ids.append((await send(env, *declare))[1]["id"])
        # Nothing received for UPLOAD_IDLE_S: abandoned, files and all.
        env.clock.now += UPLOAD_IDLE_S
        for upload_id in ids[1:]:
            assert (await send(env, "GET", f"/api/uploads/{upload_id}"))[0] == 404
        assert list(env.uploads.iterdir()) == []
        assert (await send(env, *declare))[0] == 200


async def test_leftover_uploads_removed_at_start(tmp_path: Path, ledger_home: Path) -> None:
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "upload-0123.mp4").write_bytes(b"half a file")
    (tmp_path / "uploads" / "keep.txt").write_bytes(b"not ours")
    async with running(tmp_path, ledger_home) as env:
        assert [p.name for p in env.uploads.iterdir()] == ["keep.txt"]


# -- the web app's files -------------------------------------------------------------------


async def test_static_files(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        for path, content_type, body in [
            ("/", "text/html; charset=utf-8", INDEX),
            ("/static/index.html", "text/html; charset=utf-8", INDEX),
            ("/static/app.js", "text/javascript; charset=utf-8", b"console.log('app')"),
            ("/static/css/style.css", "text/css; charset=utf-8", b"body {}"),
        ]:
            response = await respond(env, "GET", path, signed=False)
            assert (response.status, response.content_type, response.body) == (
                200,
                content_type,
                body,
            )
            assert response.headers["Content-Security-Policy"] == CSP
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            assert response.headers["Cache-Control"] == "no-cache"
        api = await respond(env, "GET", "/api/status")
        assert api.headers["Cache-Control"] == "no-store"
        assert api.headers["Content-Security-Policy"] == CSP


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/../outside.txt",
        "/static//etc/passwd",
        "/static/.secret",
        "/static/link.txt",
        "/static/css",
        "/static/css/",
        "/static/nothing.js",
        "/static/a\x00b",
        "/etc/passwd",
        "/index.html/..",
    ],
)
async def test_invalid_static_path(tmp_path: Path, ledger_home: Path, path: str) -> None:
    async with running(tmp_path, ledger_home) as env:
        response = await respond(env, "GET", path, signed=False)
        assert response.status == 404 and b"no such" in response.body
        assert response.headers["X-Content-Type-Options"] == "nosniff"


# -- WebRTC offers (the streaming itself: tests/test_gateway_rtc.py) ------------------------

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:262144\r\n"
)


async def test_reads_refused_to_other_sites(tmp_path: Path, ledger_home: Path) -> None:
    """A page elsewhere (an <img> pointing at a thumbnail, a fetch timing a reply) gets 403:
    the browser marks its requests, and only the app's own and typed-in ones pass."""
    async with running(tmp_path, ledger_home) as env:
        for site, status in (("cross-site", 403), ("same-site", 403), ("same-origin", 200)):
            got = await send(env, "GET", "/api/status", headers={"sec-fetch-site": site})
            assert got[0] == status, (site, got)
        assert (await send(env, "GET", "/api/status", headers={"sec-fetch-site": "none"}))[0] == 200
        assert (await send(env, "GET", "/api/status"))[0] == 200  # curl, the CLI: no mark
        refused = await send(env, "GET", "/api/feed", headers={"sec-fetch-site": "cross-site"})
        assert "other sites are refused" in refused[1]["error"]


async def test_rtc_offers_checked(tmp_path: Path, ledger_home: Path) -> None:
    async with running(tmp_path, ledger_home) as env:
        offer = {"type": "offer", "sdp": OFFER}
        # Watching needs no session, but the offer must come from the app's pages.
        unavailable = await send(env, "POST", "/api/rtc", offer, signed=False)
        assert unavailable[0] == 503 and "WebRTC is off" in unavailable[1]["error"]
        for origin, payload, status, message in [
            ("http://evil.example", offer, 403, "cross-origin writes are refused"),
            (None, offer, 403, "send Origin"),
            (ORIGIN, {"type": "answer", "sdp": OFFER}, 400, "type: 'offer'"),
            (ORIGIN, {"type": "offer"}, 400, "sdp: required"),
            (ORIGIN, {"type": "offer", "sdp": 5}, 400, "sdp: a string"),
        ]:
            got = await send(env, "POST", "/api/rtc", payload, origin=origin, signed=False)
            assert got[0] == status and message in got[1]["error"], got
        text_body = await send(env, "POST", "/api/rtc", content_type="text/plain", body=b"{}")
        assert text_body[0] == 415
        # With a WebRTC service (its asyncio side not started): bad SDP is its to refuse.
        rtc = RtcService(Bridge(), SegmentSource(env.node))
        gateway = Gateway(
            env.node,
            env.control,
            rtc=rtc,
            source=SegmentSource(env.node),
            owner=env.owner,
            config=WebConfig(),
            uploads_dir=env.uploads,
        )
        env.gateway = gateway
        for sdp, status, message in [
            ("hello", 400, "sdp: an SDP offer with one data channel"),
            ("", 400, "sdp: the offer's SDP text"),
            (OFFER, 503, "the WebRTC side is not running"),
        ]:
            got = await send(env, "POST", "/api/rtc", {"type": "offer", "sdp": sdp}, signed=False)
            assert got[0] == status and message in got[1]["error"], got
        _, info = await send(env, "GET", "/api/node")
        assert info["rtc"]["connections_open"] == 0


# -- over a real socket --------------------------------------------------------------------


async def test_over_a_socket(tmp_path: Path, ledger_home: Path, nursery: trio.Nursery) -> None:
    async with running(tmp_path, ledger_home) as env:
        assert env.owner is not None
        port = await nursery.start(partial(serve_http, env.gateway.handler))
        origin = {"Origin": f"http://127.0.0.1:{port}", "Content-Type": JSON}

        def call(*args: Any, **kwargs: Any) -> Any:
            return trio.to_thread.run_sync(
                partial(raw_request, port, *args, timeout_s=GUARD_S, **kwargs)
            )

        status, headers, body = await call("GET", "/")
        assert (status, body, headers["Content-Security-Policy"]) == (200, INDEX, CSP)
        token = json.dumps({"token": env.gateway.signin_token}).encode()
        status, headers, body = await call("POST", "/api/session", token, origin)
        assert status == 200 and json.loads(body)["signed_in"] is True
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("toktok_session=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        session = {"Cookie": cookie.split(";")[0]}
        follow = json.dumps({"account": text(account(2))}).encode()
        evil = {**origin, **session, "Origin": "http://evil.example"}
        assert (await call("POST", "/api/follow", follow, evil))[0] == 403
        assert (await call("POST", "/api/follow", follow, origin))[0] == 401
        assert (await call("POST", "/api/follow", follow, {**origin, **session}))[0] == 200
        assert env.node.stores.social.is_following(env.owner.public_key, account(2).public_key)
        rebound = {**session, "Host": "toktok.evil.example"}
        assert (await call("GET", "/api/status", headers=rebound))[0] == 403
