"""A small HTTP/1.1 server for the node's local interfaces (control calls and metrics).

h11 is the protocol machine: this module feeds it the socket's bytes and writes out what it
returns. The server listens on loopback only and bounds what a client can make it hold:
header bytes, body bytes, open connections, the time to read a request, the time to write
each piece of a response and the time spent draining a refused request.

A ``Handler`` gets each request whole (its body read in full) and returns a ``Response``
that carries its body or streams it from an async iterator (chunked transfer encoding).
Connections are kept alive when the client allows it.
"""

import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import trio

log = logging.getLogger("toktok.http")

JSON_TYPE = "application/json"
RECEIVE_BYTES = 64 * 1024
# Headers a handler may not set: the server owns the framing and the connection.
RESERVED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-type"})
_ACCEPT_RETRY_S = 0.1
# Responses that carry no body, and so no Content-Length either (RFC 9110, 8.6).
_BODILESS_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class HttpLimits:
    header_bytes_max: int = 16 * 1024
    body_bytes_max: int = 8 * 1024 * 1024
    connections_max: int = 64
    # From the first wait for a request to its last body byte (an idle keep-alive
    # connection is closed when it runs out).
    request_seconds_max: float = 30.0
    # For each write of a response: a client that stops reading is dropped.
    write_seconds_max: float = 30.0
    # After refusing a request, how long to read and discard what the client still sends,
    # so that a client busy writing a refused body reads our answer instead of a reset.
    linger_seconds_max: float = 5.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"HttpLimits.{name} must be positive, not {value!r}")


DEFAULT_LIMITS = HttpLimits()


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]  # the last value of a repeated name wins
    headers: dict[str, str]  # names lower-cased; repeated fields joined with ", "
    body: bytes
    client: str = ""  # the client's IP address, for limits per client


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    # When set, the body is sent as the iterator yields, chunked, and ``body`` is ignored.
    stream: AsyncIterator[bytes] | None = None
    # Extra header fields (such as Allow); the names in RESERVED_HEADERS are refused.
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def json_bytes(value: object) -> bytes:
    """Compact JSON on one line. Raises TypeError or ValueError for what JSON cannot hold
    (NaN and infinities included)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def json_response(value: dict[str, Any], status: int = 200) -> Response:
    return Response(status=status, body=json_bytes(value))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON ``{"error": message}`` response."""
    body = json.dumps({"error": message}).encode()
    return Response(status=status, body=body, headers=dict(headers or {}))


class Refusal(Exception):
    """A request refused with a message for the user: answered with the HTTP ``status``
    (4xx or 5xx), ``headers`` and the JSON body of :func:`error_response`. Each layer
    names its own kind (a control call, a web gateway check, an upload, ...)."""

    def __init__(
        self, message: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a refusal's status is 4xx or 5xx, not {status}")
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}

    def response(self) -> Response:
        return error_response(self.status, self.message, self.headers)


def check_loopback_host(host: str) -> None:
    """Raise ValueError unless ``host`` is a loopback address literal (127.0.0.0/8 or ::1).

    Names such as ``localhost`` are refused too: what they resolve to is not ours to check.
    """
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the server listens on loopback addresses only (127.0.0.0/8, ::1): {host!r}"
        )


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: HttpLimits = DEFAULT_LIMITS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled; ``task_status`` gets the bound port.

    Raises ValueError when ``host`` is not a loopback address literal and OSError when the
    port cannot be bound.
    """
    check_loopback_host(host)
    listeners = await trio.open_tcp_listeners(port, host=host)
    assert len(listeners) == 1, "an address literal gives one listener"
    async with listeners[0] as listener:
        bound_port: int = listener.socket.getsockname()[1]
        # Connections past the limit wait in the kernel's backlog until one ends.
        slots = trio.Semaphore(limits.connections_max)
        async with trio.open_nursery() as nursery:
            task_status.started(bound_port)
            log.info("http server listening", extra={"host": host, "port": bound_port})
            while True:
                await slots.acquire()
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    # Out of file descriptors or buffers: wait for some to be freed.
                    slots.release()
                    log.warning("http accept failed", extra={"error": repr(exc)})
                    await trio.sleep(_ACCEPT_RETRY_S)
                    continue
                nursery.start_soon(_connection_task, stream, handler, limits, slots)


class _Refused(Exception):
    """A request the server answers itself with an error status before closing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Abort(Exception):
    """The connection cannot go on (the client stopped reading): close it without a word."""


class _Peer:
    """One client connection: its socket, its h11 machine and the limits that apply."""

    def __init__(self, stream: trio.SocketStream, limits: HttpLimits) -> None:
        self.stream = stream
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.header_bytes_max)
        self.bytes_received = 0
        try:
            self.client = str(stream.socket.getpeername()[0])
        except OSError:  # the client is gone already; the first read will say so
            self.client = ""

    async def next_event(self) -> object:
        """The next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(RECEIVE_BYTES)
            self.bytes_received += len(data)
            self.h11.receive_data(data)  # b"" tells h11 the client closed its side

    async def send(self, event: h11.Event) -> None:
        """Send one h11 event. Raises _Abort when the client does not take it in time."""
        data = self.h11.send(event)
        if not data:
            return
        with trio.move_on_after(self.limits.write_seconds_max):
            await self.stream.send_all(data)
            return
        raise _Abort(f"the client read nothing for {self.limits.write_seconds_max} s")


async def _connection_task(
    stream: trio.SocketStream, handler: Handler, limits: HttpLimits, slots: trio.Semaphore
) -> None:
    try:
        async with stream:
            await _serve_connection(_Peer(stream, limits), handler)
    except (_Abort, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # The client went away or stalled: there is nobody left to tell.
    except Exception as exc:
        # The top of a connection's task: nothing one client does may stop the server.
        log.error("http connection failed", exc_info=True, extra={"error": repr(exc)})
    finally:
        slots.release()


async def _serve_connection(peer: _Peer, handler: Handler) -> None:
    while True:
        try:
            request = await _read_request(peer)
        except _Refused as refused:
            await _send_error(peer, refused.status, refused.message)
            await _linger(peer)
            return
        if request is None:
            return
        response, head = await _respond(handler, request)
        await _send_response(peer, request.method, response, head)
        if peer.h11.our_state is not h11.DONE or peer.h11.their_state is not h11.DONE:
            return
        peer.h11.start_next_cycle()


async def _read_request(peer: _Peer) -> Request | None:
    """The next request, or None when the client closed the connection or left it idle.

    Raises _Refused for a request the server answers itself (400, 403, 408, 413, 431).
    """
    peer.bytes_received = 0
    with trio.move_on_after(peer.limits.request_seconds_max):
        try:
            return await _receive_request(peer)
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise _head_too_large(peer.limits) from exc
            raise _Refused(exc.error_status_hint, f"bad request: {exc}") from exc
    if peer.bytes_received == 0:
        return None
    raise _Refused(408, f"the request took more than {peer.limits.request_seconds_max} s")


async def _receive_request(peer: _Peer) -> Request | None:
    event = await peer.next_event()
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise _Refused(400, f"expected a request, got {type(event).__name__}")
    # h11 bounds only a head that arrives in pieces; one read can bring a whole larger one.
    head_bytes = len(event.target) + sum(len(name) + len(value) for name, value in event.headers)
    if head_bytes > peer.limits.header_bytes_max:
        raise _head_too_large(peer.limits)
    headers = _header_dict(event.headers)
    if not _host_is_loopback(headers.get("host")):
        # A page whose name resolves to 127.0.0.1 (DNS rebinding) must not read our answers.
        raise _Refused(403, "the Host header must name a loopback address")
    path, query = _parse_target(event.target)
    body = await _receive_body(peer, _declared_length(headers))
    method = event.method.decode("ascii")
    return Request(
        method=method, path=path, query=query, headers=headers, body=body, client=peer.client
    )


async def _receive_body(peer: _Peer, declared_length: int) -> bytes:
    body_bytes_max = peer.limits.body_bytes_max
    too_large = _Refused(413, f"the body is larger than {body_bytes_max} bytes")
    if declared_length > body_bytes_max:
        raise too_large
    if peer.h11.they_are_waiting_for_100_continue:
        await peer.send(h11.InformationalResponse(status_code=100, headers=[]))
    body = bytearray()
    while True:
        part = await peer.next_event()
        if isinstance(part, h11.EndOfMessage):
            return bytes(body)
        if not isinstance(part, h11.Data):
            raise _Refused(400, f"unexpected {type(part).__name__} in a request body")
        body += part.data
        if len(body) > body_bytes_max:  # a chunked body declares no length
            raise too_large


def _head_too_large(limits: HttpLimits) -> _Refused:
    return _Refused(431, f"the request head is larger than {limits.header_bytes_max} bytes")


def _header_dict(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:  # h11 gives names lower-cased
        key, text = name.decode("ascii"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _declared_length(headers: dict[str, str]) -> int:
    declared = headers.get("content-length")
    if declared is None:
        return 0
    try:
        return int(declared)  # h11 has checked that it is digits and not contradicted
    except ValueError as exc:
        raise _Refused(400, f"bad Content-Length: {declared!r}") from exc


def _parse_target(target: bytes) -> tuple[str, dict[str, str]]:
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Refused(400, "the request target is not ASCII") from exc
    if not text.startswith("/"):
        raise _Refused(400, "the request target must be a path starting with /")
    split = urlsplit(text)
    return unquote(split.path), dict(parse_qsl(split.query, keep_blank_values=True))


def _host_is_loopback(value: str | None) -> bool:
    if value is None:
        return True  # HTTP/1.0 without Host: no name was used, so none was rebound.
    host = value.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else ""
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _respond(handler: Handler, request: Request) -> tuple[Response, h11.Response]:
    """The handler's response and its head; a handler that fails gets a 500 in its place."""
    try:
        response = await handler(request)
        return response, _response_head(response)
    except Exception as exc:
        # The top of a request: a handler's failure is its own, never the server's.
        log.error(
            "http handler failed",
            exc_info=True,
            extra={"method": request.method, "path": request.path, "error": repr(exc)},
        )
        response = error_response(500, "internal error")
        return response, _response_head(response)


def _response_head(response: Response, *, close: bool = False) -> h11.Response:
    """The h11 head of ``response``. Raises ValueError or h11.LocalProtocolError if invalid."""
    if not 200 <= response.status <= 599:
        raise ValueError(f"a handler's status must be within 200..599, not {response.status}")
    bodiless = response.status in _BODILESS_STATUSES
    if bodiless and (response.body or response.stream is not None):
        raise ValueError(f"a {response.status} response has no body")
    headers = [("content-type", response.content_type)]
    for name, value in response.headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"the server sets the {name} header itself")
        headers.append((name, value))
    if response.stream is None and not bodiless:
        headers.append(("content-length", str(len(response.body))))
    if close:
        headers.append(("connection", "close"))
    # Without a Content-Length, h11 frames the body: chunked for HTTP/1.1, close for 1.0.
    return h11.Response(
        status_code=response.status, headers=headers, reason=_reason(response.status)
    )


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


async def _send_response(peer: _Peer, method: str, response: Response, head: h11.Response) -> None:
    try:
        await peer.send(head)
        if method == "HEAD":
            pass  # h11 has framed a HEAD response as bodiless.
        elif response.stream is not None:
            await _send_stream(peer, response.stream)
        elif response.body:
            await peer.send(h11.Data(data=response.body))
        await peer.send(h11.EndOfMessage())
    finally:
        if response.stream is not None:
            # Whatever happened, the producer of the stream gets to clean up.
            await _aclose(response.stream)


async def _send_stream(peer: _Peer, chunks: AsyncIterator[bytes]) -> None:
    """Send each chunk as it comes. Raises _Abort if the iterator fails: the status line is
    gone already, so the client learns of the failure from a body that ends unterminated."""
    try:
        async for chunk in chunks:
            if chunk:
                await peer.send(h11.Data(data=chunk))
    except (_Abort, trio.BrokenResourceError, trio.ClosedResourceError):
        raise
    except Exception as exc:
        log.error("http response stream failed", exc_info=True, extra={"error": repr(exc)})
        raise _Abort("the response stream failed") from exc


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def _send_error(peer: _Peer, status: int, message: str) -> None:
    if peer.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return  # A response has begun: the closed connection is all we can still say.
    response = error_response(status, message)
    await peer.send(_response_head(response, close=True))
    await peer.send(h11.Data(data=response.body))
    await peer.send(h11.EndOfMessage())


async def _linger(peer: _Peer) -> None:
    """Half-close, then discard what the client still sends, for a bounded time."""
    with trio.move_on_after(peer.limits.linger_seconds_max):
        try:
            await peer.stream.send_eof()
            while await peer.stream.receive_some(RECEIVE_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
