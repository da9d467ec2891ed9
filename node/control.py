"""The node's control interface, server side: JSON calls over loopback HTTP, behind a token.

    POST /v1/<name>  body: a JSON object of parameters (an empty body means {}).
                     200 with a JSON object, or with JSON lines (application/x-ndjson)
                     for a call that streams; an error is {"error": message} with its
                     status (401 token, 404 name, 405 method, 400 body, or the call's own).
                     A stream that fails after its first line ends with the line
                     {"error": message, "status": status}, so items must not have an
                     "error" key of their own.
    GET  /metrics    the Prometheus text of the node's registry, without the token.

The token sits in HOME/control.token, readable by the node's user only: holding it means
being that user, and a web page cannot send it (no CORS), so pages cannot make calls
either. While the daemon runs, HOME/run/control.json tells the CLI where to find it. The
file layout and the client are in node.controlclient.
"""

import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from node import metrics
from node.controlclient import (
    CALL_PREFIX,
    NDJSON_TYPE,
    RUN_DIR,
    RunInfo,
    read_token,
    run_file_path,
    token_path,
)
from node.home import HomeError, default_account, unlock_account
from node.httpserver import Handler, Refusal, Request, Response, error_response, json_bytes
from protocol.accounts import AccountKey, InvalidAccount, account_from_text
from storage.errors import WrongPassphrase
from storage.stores import Stores

log = logging.getLogger("toktok.control")

METRICS_PATH = "/metrics"
ROUTE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
TOKEN_BYTES = 32
TOKEN_CHARS_MIN = 32
TOKEN_CHAR_PATTERN = re.compile(rf"[\x21-\x7e]{{{TOKEN_CHARS_MIN},}}")

UNLOCKED_KEY = "_unlocked_key"
"""A parameter only callers inside the node can give: JSON never decodes to an AccountKey,
so a value read from a request can never pass for one."""

Params = dict[str, Any]
Reply = dict[str, Any]
RouteFn = Callable[[Params], Awaitable[Reply | AsyncIterator[Reply]] | AsyncIterator[Reply]]


class ControlError(Refusal):
    """A call refused with a message for the user, answered with HTTP ``status``."""


class ControlServer:
    """The routes of the control interface and the HTTP handler that serves them."""

    def __init__(self, token: str, *, registry: metrics.Registry | None = None) -> None:
        """Raises ValueError for a token shorter than TOKEN_CHARS_MIN printable ASCII
        characters (an empty one would let ``Bearer`` alone in)."""
        if not TOKEN_CHAR_PATTERN.fullmatch(token):
            raise ValueError(f"a control token is {TOKEN_CHARS_MIN}+ printable ASCII characters")
        self._token = token.encode()
        self._routes: dict[str, RouteFn] = {}
        self._metrics = None if registry is None else metrics_handler(registry)

    def route(self, name: str, fn: RouteFn) -> None:
        """Serve ``fn`` at ``POST /v1/<name>``.

        ``fn(params)`` returns (or is a coroutine returning) a JSON-able dict, or an async
        iterator of them to stream; an async generator function works as it is. It raises
        ControlError to refuse. Raises ValueError for a bad or taken name.
        """
        if not ROUTE_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"bad route name {name!r}: must match {ROUTE_NAME_PATTERN.pattern}")
        if name in self._routes:
            raise ValueError(f"the route {name!r} exists already")
        self._routes[name] = fn

    def __contains__(self, name: object) -> bool:
        """Whether a route of that name is served."""
        return name in self._routes

    async def call(self, name: str, params: Params) -> Reply | AsyncIterator[Reply]:
        """Carry out the route ``name`` from inside the node (the web gateway): its reply,
        or the async iterator of a streaming route. Raises KeyError for an unknown name and
        ControlError as the route does."""
        produced = self._routes[name](params)
        return produced if isinstance(produced, AsyncIterator) else await produced

    async def handler(self, request: Request) -> Response:
        """The HTTP handler, for node.httpserver.serve_http."""
        if request.path == METRICS_PATH and self._metrics is not None:
            return await self._metrics(request)
        if not request.path.startswith(CALL_PREFIX):
            return error_response(404, f"no such path: {request.path}")
        if not self._authorized(request.headers.get("authorization")):
            return error_response(
                401,
                "this call needs the node's token: Authorization: Bearer <HOME/control.token>",
                {"WWW-Authenticate": "Bearer"},
            )
        name = request.path.removeprefix(CALL_PREFIX)
        fn = self._routes.get(name)
        if fn is None:
            return error_response(404, f"no such call: {name!r}")
        if request.method != "POST":
            return error_response(
                405, f"calls are made with POST, not {request.method}", {"Allow": "POST"}
            )
        try:
            return await _call(name, fn, parse_params(request.body))
        except ControlError as exc:
            return exc.response()

    def _authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time, so that the answer's timing tells nothing about the token.
        return hmac.compare_digest(given.strip().encode("latin-1"), self._token)


def parse_params(body: bytes) -> Params:
    """The parameters in a call's body. Raises ControlError (400) if not a JSON object."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ControlError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ControlError(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def _call(name: str, fn: RouteFn, params: Params) -> Response:
    """Run the call; raises ControlError as the call does, and TypeError for a bad result."""
    produced = fn(params)
    result = produced if isinstance(produced, AsyncIterator) else await produced
    if isinstance(result, dict):
        return Response(body=_json_bytes(result))
    if isinstance(result, AsyncIterator):
        # The first item is taken now, so that a call refusing before it streams anything
        # (checking its parameters) answers with its status rather than a 200.
        try:
            first = [await anext(result)]
        except StopAsyncIteration:
            first = []
        return Response(content_type=NDJSON_TYPE, stream=_JsonLines(name, first, result))
    raise TypeError(f"the call {name!r} returned {type(result).__name__}")


class _JsonLines:
    """A call's stream as JSON lines. A failure becomes the last line, since the status
    line has gone by then; closing this closes the call's iterator."""

    def __init__(self, name: str, first: list[Reply], rest: AsyncIterator[Reply]) -> None:
        self._name = name
        self._first = first
        self._rest = rest
        self._done = False

    def __aiter__(self) -> "_JsonLines":
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            item = self._first.pop() if self._first else await anext(self._rest)
            return _json_bytes(item) + b"\n"
        except StopAsyncIteration:
            self._done = True
            raise
        except ControlError as exc:
            self._done = True
            return _json_bytes({"error": exc.message, "status": exc.status}) + b"\n"
        except Exception as exc:
            # The top of a stream: its failure is told to the client, never raised further.
            self._done = True
            extra = {"call": self._name, "error": repr(exc)}
            log.error("control stream failed", exc_info=True, extra=extra)
            return _json_bytes({"error": "internal error", "status": 500}) + b"\n"

    async def aclose(self) -> None:
        self._done = True
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _json_bytes(value: object) -> bytes:
    """Compact JSON on one line. Raises TypeError or ValueError for what JSON cannot hold."""
    if not isinstance(value, dict):
        raise TypeError(f"a call answers with JSON objects, not {type(value).__name__}")
    return json_bytes(value)


def metrics_handler(registry: metrics.Registry) -> Handler:
    """A handler serving ``GET /metrics`` from ``registry``, for a port of its own too."""

    async def handle(request: Request) -> Response:
        if request.path != METRICS_PATH:
            return error_response(404, f"no such path: {request.path}; try {METRICS_PATH}")
        if request.method not in ("GET", "HEAD"):
            return error_response(405, f"{METRICS_PATH} is read with GET", {"Allow": "GET, HEAD"})
        return Response(body=registry.render().encode(), content_type=metrics.CONTENT_TYPE)

    return handle


def write_run_file(
    home: Path, *, port: int, metrics_port: int | None, pid: int, peer_id: str, addrs: list[str]
) -> None:
    """Write HOME/run/control.json (mode 0600) at once: a reader sees the old or the new."""
    info = RunInfo(port, metrics_port, pid, peer_id, tuple(addrs))
    run_dir = home / RUN_DIR
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = _write_private_tmp(run_dir, json.dumps(info.to_json(), indent=2).encode() + b"\n")
    os.replace(tmp, run_file_path(home))


def remove_run_file(home: Path, *, pid: int | None = None) -> None:
    """Remove HOME/run/control.json if it exists (and, with ``pid``, only if it is that pid's:
    a daemon that failed to start must not remove the file of the one running)."""
    path = run_file_path(home)
    if pid is not None:
        try:
            if json.loads(path.read_bytes()).get("pid") != pid:
                return
        except (OSError, ValueError, AttributeError):
            return
    path.unlink(missing_ok=True)


def load_or_create_token(home: Path) -> str:
    """The token in HOME/control.token, made (32 random bytes in hex, mode 0600) if missing.

    Raises node.controlclient.TokenFileError when the file exists but holds no token.
    """
    path = token_path(home)
    if not path.exists():
        tmp = _write_private_tmp(home, (secrets.token_hex(TOKEN_BYTES) + "\n").encode())
        try:
            # link() creates the name only if it is free: two daemons starting at once
            # both end up with the token of whichever linked first.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    token = read_token(home)
    if path.stat().st_mode & 0o077:
        # A token others can read guards nothing; narrowing the mode loses nothing.
        log.warning("control token readable by others: made private", extra={"file": str(path)})
        path.chmod(0o600)
    return token


def _write_private_tmp(directory: Path, data: bytes) -> Path:
    """A new file in ``directory`` holding ``data``, synced, mode 0600 (mkstemp's)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def unlock_param(stores: Stores, params: dict[str, Any]) -> AccountKey:
    """The keystore account a control call acts as (``as_account``, or the default),
    unlocked with the call's ``passphrase``; or the key a caller inside the node put under
    UNLOCKED_KEY (the web gateway's signed-in owner). Raises :class:`ControlError` with the
    reason."""
    unlocked = params.get(UNLOCKED_KEY)
    if isinstance(unlocked, AccountKey):
        return unlocked
    try:
        return unlock_account(
            stores, str(params.get("passphrase", "")), params.get("as_account") or None
        )
    except (HomeError, WrongPassphrase) as exc:
        raise ControlError(str(exc)) from exc


def video_param(stores: Stores, params: dict[str, Any]) -> bytes:
    """The video the call's ``id`` names (a manifest id or a unique prefix, in hex).
    Raises :class:`ControlError`: 400 when ``id`` is not a string, 404 when no stored video
    matches it."""
    text = params.get("id")
    if not isinstance(text, str):
        raise ControlError("parameter 'id': a string is required")
    try:
        return stores.manifests.resolve(text)
    except KeyError as exc:
        raise ControlError(exc.args[0], status=404) from exc


def account_param(stores: Stores, params: dict[str, Any]) -> bytes:
    """The account a read is for: the call's ``account`` if given, else the home's default.
    Raises :class:`ControlError` for a malformed id or a home without accounts."""
    text = params.get("account")
    try:
        return account_from_text(str(text)) if text else default_account(stores)[1]
    except (InvalidAccount, HomeError) as exc:
        raise ControlError(str(exc)) from exc


def limit_param(params: dict[str, Any], default: int, most: int) -> int:
    """The call's ``limit`` (``default`` when absent). Raises :class:`ControlError` unless
    it is an integer from 1 to ``most``."""
    value = params.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ControlError(f"limit: 1 to {most}")
    return value
