"""The web gateway's HTTP handler: the JSON API under ``/api/`` and the web app's files.

Most endpoints are a control route (node/api.py, feedapi.py, ledgerapi.py, offerapi.py)
under another name: the gateway checks who asks and what they send, renames a few
parameters, and answers with the route's reply unchanged, so the CLI and the browser share
one implementation. Writes are the signed-in owner's, acting as the account the node
unlocked at start (the route gets that key under ``UNLOCKED_KEY``, never a passphrase).

Every request passes, in order: the route table (404, 405 with Allow), the same-origin rule
for writes (403), the session for the owner's writes (401), the body's type and size (415,
413), then the endpoint's own checks of every field (400 naming the field). The whole API
is in docs/api.md.
"""

import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import trio

from node.config import WebConfig
from node.control import UNLOCKED_KEY, ControlServer, parse_params
from node.daemon import Node
from node.gateway.params import (
    ACCOUNT,
    ACCOUNT_LIMIT,
    BUY_FIELDS,
    LIMIT,
    PUBLISH_FIELDS,
    TARGET,
    TIP_FIELDS,
    TOKEN_FIELDS,
    TRANSFER_FIELDS,
    VIDEO,
    VIEW_FIELDS,
    ApiError,
    Call,
    Fields,
    account_id,
    check_content_type,
    video_id,
)
from node.gateway.rtc import RtcService
from node.gateway.segments import SegmentSource
from node.gateway.sessions import (
    Sessions,
    check_not_cross_site,
    check_same_origin,
    clear_cookie,
    set_cookie,
)
from node.gateway.uploads import Uploads
from node.home import HomeError, default_account
from node.httpserver import JSON_TYPE, Refusal, Request, Response, json_response
from protocol.accounts import AccountKey, account_from_text, account_to_text
from storage.errors import StoreError

log = logging.getLogger("toktok.gateway")

API_PREFIX = "/api/"
STATIC_DIR = Path(__file__).parent / "static"
OCTET_TYPE = "application/octet-stream"
JSON_BODY_BYTES_MAX = 64 * 1024
SIGNIN_TOKEN_BYTES = 32
FOLLOWERS_COUNTED_MAX = 10_000
"""A profile counts followers up to this many (and says when there are more)."""
NODE_VIDEOS_MAX = 200
"""The node page lists this many of the videos held here, newest first."""
LOCKED = "the node's account is locked: start the node with TOKTOK_PASSPHRASE set"
NO_LEDGER = "this node keeps no ledger: its node.toml names no genesis"

CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
IMMUTABLE = "private, max-age=31536000, immutable"
"""For bytes named by their hash (an envelope by its id, a thumbnail by its manifest's)."""
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
Reply = Response | dict[str, Any]
Endpoint = Callable[[Call], Awaitable[Reply]]


class Access(Enum):
    READ = "anyone"
    PAGE = "the app's pages (same origin), signed in or not"
    OWNER = "the signed-in owner, from the app's pages"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    """The path's segments after /api/; "*" takes any one segment (an argument)."""
    endpoint: Endpoint
    access: Access = Access.READ
    body_type: str | None = None


class Gateway:
    """The web app's HTTP handler over a running node (see the module doc)."""

    def __init__(
        self,
        node: Node,
        control: ControlServer,
        *,
        rtc: RtcService | None,
        source: SegmentSource,
        owner: AccountKey | None,
        config: WebConfig,
        uploads_dir: Path,
        static_dir: Path = STATIC_DIR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``owner`` is the node's account, unlocked (None: writes that sign are refused).
        Removes what a previous run left in ``uploads_dir``; raises OSError if it cannot."""
        self._node = node
        self._control = control
        self._rtc = rtc
        self._source = source
        self._owner = owner
        self._config = config
        self._static_root = static_dir.resolve()
        self.signin_token = secrets.token_urlsafe(SIGNIN_TOKEN_BYTES)
        self.sessions = Sessions(self.signin_token, sessions_max=config.sessions_max, clock=clock)
        self.uploads = Uploads(
            uploads_dir, size_max=config.upload_mb_max * 1024 * 1024, clock=clock
        )
        self.uploads.clear_leftovers()
        self._routes = self._route_table()

    # -- dispatch ------------------------------------------------------------------------

    async def handler(self, request: Request) -> Response:
        """The HTTP handler, for node.httpserver.serve_http."""
        try:
            if request.path.startswith(API_PREFIX):
                response = await self._dispatch(request)
                response.headers.setdefault("Cache-Control", "no-store")
            else:
                response = await self._static(request)
        except Refusal as exc:  # a control call's, a check's, an upload's, a stream's
            response = exc.response()
            response.headers["Cache-Control"] = "no-store"
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _dispatch(self, request: Request) -> Response:
        route, args = self._match(request)
        check_not_cross_site(request.headers)
        if route.access is not Access.READ:
            check_same_origin(request.headers)
        if route.access is Access.OWNER:
            self.sessions.require(request.headers)
        body: dict[str, Any] = {}
        if route.body_type is not None:
            check_content_type(request, route.body_type)
        if route.body_type == JSON_TYPE:
            # [REJECT] A JSON body is small.
            if len(request.body) > JSON_BODY_BYTES_MAX:
                raise ApiError(f"a JSON body is at most {JSON_BODY_BYTES_MAX} bytes", 413)
            body = parse_params(request.body)
        reply = await route.endpoint(Call(request, args, body))
        return reply if isinstance(reply, Response) else json_response(reply)

    def _match(self, request: Request) -> tuple[Route, tuple[str, ...]]:
        """The route for the request and its arguments. Raises ApiError: 404 for a path no
        route has, 405 (with Allow) for a method the path does not take."""
        parts = tuple(request.path.removeprefix(API_PREFIX).split("/"))
        method = "GET" if request.method == "HEAD" else request.method
        allowed: list[str] = []
        for route in self._routes:
            if len(route.pattern) != len(parts) or not all(
                p in ("*", part) for p, part in zip(route.pattern, parts, strict=True)
            ):
                continue
            if route.method == method:
                args = tuple(part for p, part in zip(route.pattern, parts, strict=True) if p == "*")
                return route, args
            allowed += [route.method, "HEAD"] if route.method == "GET" else [route.method]
        if not allowed:
            raise ApiError(f"no such path: {request.path[:200]}", 404)
        allow = ", ".join(sorted(allowed))
        raise ApiError(f"{request.path[:200]} takes {allow}", 405, {"Allow": allow})

    def _route_table(self) -> list[Route]:
        read, page, owner = Access.READ, Access.PAGE, Access.OWNER

        def r(method: str, path: str, fn: Endpoint, access: Access = read) -> Route:
            body_type = JSON_TYPE if method == "POST" else None
            return Route(method, tuple(path.split("/")), fn, access, body_type)

        signed = self._signed
        return [
            r("GET", "status", self._status),
            r("GET", "feed", self._read("feed", LIMIT)),
            r("GET", "videos", self._read("videos", ACCOUNT_LIMIT)),
            r("GET", "videos/*", self._video),
            r("GET", "videos/*/envelope", self._envelope),
            r("GET", "videos/*/thumbnail", self._thumbnail),
            r("GET", "accounts/*", self._profile),
            r("GET", "accounts/*/followers", self._followers),
            r("GET", "following", self._read("following", {})),
            r("GET", "balance", self._read("balance", ACCOUNT)),
            r("GET", "history", self._read("history", ACCOUNT_LIMIT)),
            r("GET", "tokens", self._read("tokens", {})),
            r("GET", "offers", self._read("offers", LIMIT)),
            r("GET", "offers/*/quote", self._quote),
            r("GET", "node", self._node_info),
            r("POST", "session", self._sign_in, page),
            r("DELETE", "session", self._sign_out, page),
            r("POST", "rtc", self._rtc_offer, page),
            r("POST", "follow", signed("follow", TARGET), owner),
            r("POST", "unfollow", signed("unfollow", TARGET), owner),
            r("POST", "like", signed("like", VIDEO), owner),
            r("POST", "unlike", signed("unlike", VIDEO), owner),
            r("POST", "view", signed("view", VIEW_FIELDS), owner),
            r("POST", "tip", signed("tip", TIP_FIELDS, {"id": "manifest"}), owner),
            r("POST", "transfer", self._transfer, owner),
            r(
                "POST",
                "tokens",
                signed("token.create", TOKEN_FIELDS, {"name": "token_name"}),
                owner,
            ),
            r("POST", "buy", signed("buy", BUY_FIELDS), owner),
            r("POST", "uploads", self._upload_create, owner),
            r("GET", "uploads/*", self._upload_state),
            Route("PUT", ("uploads", "*"), self._upload_piece, owner, OCTET_TYPE),
            r("POST", "uploads/*/publish", self._upload_publish, owner),
            r("DELETE", "uploads/*", self._upload_abandon, owner),
        ]

    # -- control routes --------------------------------------------------------------------

    async def _call(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """The control route's reply. Raises ControlError as the route does, ApiError (409)
        for a ledger route on a node that keeps no ledger (it has no such route)."""
        # The ledger's routes are installed only on a node that keeps a ledger.
        if name not in self._control and self._node.ledger is None:
            raise ApiError(NO_LEDGER, 409)
        reply = await self._control.call(name, params)
        assert isinstance(reply, dict), f"the route {name} streams"
        return reply

    def _read(self, name: str, fields: Fields) -> Endpoint:
        """An endpoint answering with control route ``name``, its query as the params."""

        async def endpoint(call: Call) -> Reply:
            return await self._call(name, call.query(fields))

        return endpoint

    def _signed(self, name: str, fields: Fields, rename: Mapping[str, str] = {}) -> Endpoint:
        """An endpoint signing with the owner's key through control route ``name``, its
        body's fields as the params (``rename`` maps a field to the route's name for it)."""

        async def endpoint(call: Call) -> Reply:
            params = {rename.get(k, k): v for k, v in call.fields(fields).items()}
            return await self._call(name, {**params, UNLOCKED_KEY: self._signer()})

        return endpoint

    def _signer(self) -> AccountKey:
        """The owner's key. Raises ApiError (409) when the node could not unlock it."""
        if self._owner is None:
            raise ApiError(LOCKED, 409)
        return self._owner

    def _viewer(self) -> bytes | None:
        """The owner's account (no key needed): whose likes and follows the app shows."""
        if self._owner is not None:
            return self._owner.public_key
        try:
            return default_account(self._node.stores)[1]
        except (HomeError, StoreError):  # no account here, or its keystore entry damaged
            return None

    # -- reads ---------------------------------------------------------------------------

    async def _status(self, call: Call) -> Reply:
        call.query({})
        viewer = self._viewer()
        return {
            **await self._call("status", {}),
            "signed_in": self.sessions.signed_in(call.request.headers),
            "account": None if viewer is None else account_to_text(viewer),
            "unlocked": self._owner is not None,
            "web": dataclasses.asdict(self._config),
        }

    async def _video(self, call: Call) -> Reply:
        call.query({})
        reply = await self._call("show", {"id": call.args[0]})
        mid = bytes.fromhex(reply["video"]["id"])
        author = account_from_text(reply["video"]["author"])
        viewer, stores = self._viewer(), self._node.stores
        liked = viewer is not None and stores.social.is_liking(viewer, mid)
        following = viewer is not None and stores.social.is_following(viewer, author)
        likes = stores.graph.like_count(mid)
        return {**reply, "liked": liked, "likes": likes, "following_author": following}

    async def _envelope(self, call: Call) -> Reply:
        call.query({})
        data = await self._source.envelope(video_id(call.args[0]))
        return Response(body=data, content_type=OCTET_TYPE, headers={"Cache-Control": IMMUTABLE})

    async def _thumbnail(self, call: Call) -> Reply:
        call.query({})
        mid = video_id(call.args[0])
        data = await self._source.chunk(mid, self._source.manifest(mid).thumbnail.cid)
        return Response(body=data, content_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})

    async def _profile(self, call: Call) -> Reply:
        query = call.query(LIMIT)
        account = account_id(call.args[0])
        text = account_to_text(account)
        videos = await self._call("videos", {**query, "account": text})
        stores, viewer = self._node.stores, self._viewer()
        followers = len(stores.graph.followers(account, FOLLOWERS_COUNTED_MAX + 1))
        profile = stores.social.profile(account)
        return {
            "account": text,
            "videos": videos["videos"],
            "followers": min(followers, FOLLOWERS_COUNTED_MAX),
            "followers_more": followers > FOLLOWERS_COUNTED_MAX,
            "following": viewer is not None and stores.social.is_following(viewer, account),
            "profile": None if profile is None else {"name": profile.name, "bio": profile.bio},
        }

    async def _followers(self, call: Call) -> Reply:
        query = call.query(LIMIT)
        text = account_to_text(account_id(call.args[0]))
        return await self._call("followers", {**query, "account": text})

    async def _quote(self, call: Call) -> Reply:
        query = call.query({"amount": (int, False)})
        return await self._call("offer.quote", {**query, "offer": call.args[0]})

    async def _node_info(self, call: Call) -> Reply:
        call.query({})
        held = await self._call("videos", {"limit": NODE_VIDEOS_MAX})
        return {
            "status": await self._call("status", {}),
            "peers": await self._call("peers", {}),
            "seeding": [_held(v) for v in held["videos"] if v["chunks_held"]],
            "rtc": None if self._rtc is None else self._rtc.stats(),
            "segments": self._source.stats(),
        }

    # -- writes --------------------------------------------------------------------------

    async def _sign_in(self, call: Call) -> Reply:
        session = self.sessions.sign_in(call.fields({"token": (str, True)})["token"])
        viewer = self._viewer()
        reply = {
            "signed_in": True,
            "account": None if viewer is None else account_to_text(viewer),
            "unlocked": self._owner is not None,
        }
        response = json_response(reply)
        response.headers["Set-Cookie"] = set_cookie(session)
        return response

    async def _sign_out(self, call: Call) -> Reply:
        self.sessions.sign_out(call.request.headers)
        response = json_response({"signed_in": False})
        response.headers["Set-Cookie"] = clear_cookie()
        return response

    async def _transfer(self, call: Call) -> Reply:
        params = call.fields(TRANSFER_FIELDS)
        memo = params.pop("memo", "")
        params["memo_hex"] = memo.encode().hex()
        return await self._call("transfer", {**params, UNLOCKED_KEY: self._signer()})

    async def _rtc_offer(self, call: Call) -> Reply:
        offer = call.fields({"type": (str, True), "sdp": (str, True)})
        # [REJECT] The page sends an offer (the node only ever answers).
        if offer["type"] != "offer":
            raise ApiError(f"type: 'offer', not {offer['type'][:20]!r}")
        if self._rtc is None:
            raise ApiError("this node streams no video to browsers (WebRTC is off)", 503)
        answer = await self._rtc.answer(offer["sdp"], call.request.client)
        return {"type": "answer", "sdp": answer}

    # -- uploads -------------------------------------------------------------------------

    async def _upload_create(self, call: Call) -> Reply:
        fields = call.fields({"size": (int, True), "name": (str, True)})
        self._signer()  # refused now, not after the whole file has come
        return self.uploads.create(fields["size"], fields["name"]).json()

    async def _upload_state(self, call: Call) -> Reply:
        call.query({})
        return self.uploads.get(call.args[0]).json()

    async def _upload_piece(self, call: Call) -> Reply:
        offset = call.query({"offset": (int, True)})["offset"]
        return (await self.uploads.append(call.args[0], offset, call.request.body)).json()

    async def _upload_publish(self, call: Call) -> Reply:
        meta = call.fields(PUBLISH_FIELDS)
        key = self._signer()
        upload = self.uploads.begin_publish(call.args[0])
        try:
            progress = await self._control.call(
                "publish", {**meta, "file": str(upload.path), UNLOCKED_KEY: key}
            )
        except BaseException:  # refused, or cancelled: the file may be published again
            self.uploads.publish_refused(upload)
            raise
        assert isinstance(progress, AsyncIterator), "publish streams its progress"
        self._node.nursery.start_soon(self.uploads.follow, upload, progress)
        return upload.json()

    async def _upload_abandon(self, call: Call) -> Reply:
        self.uploads.abandon(call.args[0])
        return {"id": call.args[0], "abandoned": True}

    # -- the web app's files -------------------------------------------------------------

    async def _static(self, request: Request) -> Response:
        """``/`` (index.html) and ``/static/<file>``. Raises ApiError: 405 for a method
        other than GET or HEAD, 404 for anything but a file under the static folder."""
        if request.method not in ("GET", "HEAD"):
            raise ApiError("the web app's files are read with GET", 405, {"Allow": "GET, HEAD"})
        if request.path == "/":
            name = "index.html"
        elif request.path.startswith("/static/"):
            name = request.path.removeprefix("/static/")
        else:
            raise ApiError(f"no such page: {request.path[:200]}", 404)
        path = self._static_file(name)
        data = await trio.to_thread.run_sync(path.read_bytes)
        content_type = CONTENT_TYPES.get(path.suffix.lower(), OCTET_TYPE)
        return Response(body=data, content_type=content_type, headers={"Cache-Control": "no-cache"})

    def _static_file(self, name: str) -> Path:
        missing = ApiError(f"no such file: {name[:200]}", 404)
        # [REJECT] No empty, hidden or parent segment (no way out of the folder).
        if any(not part or part.startswith(".") for part in name.split("/")):
            raise missing
        try:
            path = (self._static_root / name).resolve(strict=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise missing from exc
        # [REJECT] A link that leads out of the folder, or anything but a file.
        if not path.is_relative_to(self._static_root) or not path.is_file():
            raise missing
        return path


def _held(video: dict[str, Any]) -> dict[str, Any]:
    """A held video as the node page lists it: how many of its chunks are here."""
    keys = ("id", "title", "author", "chunks_held", "chunks")
    return {key: video[key] for key in keys}
