"""The loopback HTTP server, over real sockets on 127.0.0.1."""

import http.client
import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from node.httpserver import HttpLimits, Request, Response, serve_http

# A bound on each test's waiting, so that a broken server fails a test instead of hanging it.
GUARD_S = 10


async def start(nursery: trio.Nursery, handler: Any, **limits: Any) -> int:
    port: int = await nursery.start(partial(serve_http, handler, limits=HttpLimits(**limits)))
    return port


async def echo(request: Request) -> Response:
    fields = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body": request.body.decode(),
    }
    return Response(body=json.dumps(fields).encode())


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_all(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def exchange(port: int, raw: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    with trio.fail_after(GUARD_S):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(raw)
            return await read_all(stream)


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def json_body(reply: bytes) -> Any:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


@pytest.mark.trio
async def test_request_fields(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    raw = get("/a%20b/c?x=1&y=&x=2", "X-Custom: one", "x-custom: two")
    reply = await exchange(port, raw)
    assert status(reply) == 200
    assert b"content-type: application/json\r\n" in reply.lower()
    fields = json_body(reply)
    assert fields["method"] == "GET"
    assert fields["path"] == "/a b/c"
    assert fields["query"] == {"x": "2", "y": ""}
    assert fields["headers"]["x-custom"] == "one, two"
    assert fields["headers"]["host"] == "127.0.0.1"


@pytest.mark.trio
async def test_request_bodies(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    sized = get("/", "Content-Length: 5", method="POST") + b"hello"
    assert json_body(await exchange(port, sized))["body"] == "hello"
    chunked = get("/", "Transfer-Encoding: chunked", method="POST")
    chunked += b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    assert json_body(await exchange(port, chunked))["body"] == "hello"


@pytest.mark.trio
async def test_expect_100_continue(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    with trio.fail_after(GUARD_S):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                get("/", "Content-Length: 2", "Expect: 100-continue", method="PUT")
            )
            received = bytearray()
            while b"\r\n\r\n" not in received:  # curl waits for this before the body
                received += await stream.receive_some()
            assert received.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(b"hi")
            reply = await read_all(stream)
    assert json_body(reply)["body"] == "hi"


@pytest.mark.trio
async def test_head_gets_no_body(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)
    reply = await exchange(port, get("/", method="HEAD"))
    assert status(reply) == 200
    assert reply.endswith(b"\r\n\r\n")


@pytest.mark.trio
async def test_keep_alive_serves_requests_on_one_connection(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo)

    def two_requests() -> list[str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD_S)
        try:
            paths = []
            for path in ("/one", "/two"):
                conn.request("GET", path)
                paths.append(json.loads(conn.getresponse().read())["path"])
                sock = conn.sock
            assert conn.sock is sock and sock is not None
            return paths
        finally:
            conn.close()

    assert await trio.to_thread.run_sync(two_requests) == ["/one", "/two"]


@pytest.mark.trio
@pytest.mark.parametrize(
    "raw",
    [
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        get("http://127.0.0.1/"),  # absolute form
        b"GET /\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # not ASCII
        get("/", "Content-Length: x", method="POST"),
    ],
)
async def test_invalid_request_is_400(nursery: trio.Nursery, raw: bytes) -> None:
    port = await start(nursery, echo)
    reply = await exchange(port, raw)
    assert status(reply) == 400
    assert "error" in json_body(reply)


@pytest.mark.trio
@pytest.mark.parametrize("size", [2000, 200_000])  # read whole, and read in pieces
async def test_invalid_headers_too_large_is_431(nursery: trio.Nursery, size: int) -> None:
    port = await start(nursery, echo, header_bytes_max=1024)
    reply = await exchange(port, get("/", "X-Big: " + "a" * size))
    assert status(reply) == 431
    assert json_body(reply) == {"error": "the request head is larger than 1024 bytes"}
    assert status(await exchange(port, get("/", "X-Small: " + "a" * 900))) == 200


@pytest.mark.trio
async def test_invalid_declared_body_too_large_is_413(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo, body_bytes_max=1024)
    reply = await exchange(port, get("/", "Content-Length: 1025", method="POST"))
    assert status(reply) == 413
    assert json_body(reply) == {"error": "the body is larger than 1024 bytes"}


@pytest.mark.trio
async def test_invalid_chunked_body_too_large_is_413(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo, body_bytes_max=1024)
    raw = get("/", "Transfer-Encoding: chunked", method="POST")
    raw += (b"200\r\n" + b"a" * 0x200 + b"\r\n") * 3 + b"0\r\n\r\n"
    assert status(await exchange(port, raw)) == 413


@pytest.mark.trio
async def test_body_refused_while_the_client_still_sends_it(nursery: trio.Nursery) -> None:
    """The server drains a refused body, so a client that writes it all still reads the 413."""
    port = await start(nursery, echo, body_bytes_max=1024)

    def post_big() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD_S)
        try:
            conn.request("POST", "/", body=b"a" * (4 * 1024 * 1024))
            return conn.getresponse().status
        finally:
            conn.close()

    assert await trio.to_thread.run_sync(post_big) == 413


@pytest.mark.trio
@pytest.mark.parametrize(
    "host,expected",
    [("evil.example", 403), ("evil.example:80", 403), ("10.0.0.1", 403), ("localhost:8", 200)],
)
async def test_host_header_must_be_loopback(
    nursery: trio.Nursery, host: str, expected: int
) -> None:
    port = await start(nursery, echo)
    raw = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert status(await exchange(port, raw)) == expected
    raw = f"GET / HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n".encode()
    assert status(await exchange(port, raw)) == 200


@pytest.mark.trio
async def test_handler_failure_is_500_and_the_server_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("kaboom")
        if request.path == "/bad-header":
            return Response(headers={"Content-Length": "1"})
        if request.path == "/bad-status":
            return Response(status=99)
        if request.path == "/bad-204":
            return Response(status=204, body=b"{}")
        if request.path == "/204":
            return Response(status=204)
        return await echo(request)

    port = await start(nursery, handler)
    with caplog.at_level(logging.ERROR, logger="toktok.http"):
        for path in ("/boom", "/bad-header", "/bad-status", "/bad-204"):
            reply = await exchange(port, get(path))
            assert status(reply) == 500
            assert json_body(reply) == {"error": "internal error"}
    assert [r.getMessage() for r in caplog.records] == ["http handler failed"] * 4
    fields = caplog.records[0].__dict__  # the log line's extra fields
    assert fields["path"] == "/boom"
    assert "kaboom" in fields["error"]
    assert status(await exchange(port, get("/fine"))) == 200
    reply = await exchange(port, get("/204"))
    assert status(reply) == 204
    assert b"content-length" not in reply.lower()


@pytest.mark.trio
async def test_stream_is_sent_as_it_is_yielded(nursery: trio.Nursery) -> None:
    go_on = trio.Event()

    async def lines() -> AsyncIterator[bytes]:
        yield b"one\n"
        await go_on.wait()
        yield b"two\n"

    async def handler(request: Request) -> Response:
        return Response(content_type="application/x-ndjson", stream=lines())

    port = await start(nursery, handler)
    with trio.fail_after(GUARD_S):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(get("/"))
            received = bytearray()
            while b"one\n" not in received:  # arrives while the stream waits on go_on
                received += await stream.receive_some()
            go_on.set()
            received += await read_all(stream)
    head, body = bytes(received).split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"


@pytest.mark.trio
async def test_failing_stream_ends_unterminated(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def lines() -> AsyncIterator[bytes]:
        yield b"one\n"
        raise RuntimeError("disk gone")

    async def handler(request: Request) -> Response:
        return Response(stream=lines()) if request.path == "/stream" else await echo(request)

    port = await start(nursery, handler)
    with caplog.at_level(logging.ERROR, logger="toktok.http"):
        reply = await exchange(port, get("/stream"))
    assert reply.endswith(b"4\r\none\n\r\n")  # no terminating zero-length chunk
    assert [r.getMessage() for r in caplog.records] == ["http response stream failed"]
    assert status(await exchange(port, get("/"))) == 200


@pytest.mark.trio
async def test_slow_request_is_408_and_idle_connection_closed(nursery: trio.Nursery) -> None:
    port = await start(nursery, echo, request_seconds_max=0.5)
    reply = await exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status(reply) == 408
    assert await exchange(port, b"") == b""


@pytest.mark.trio
async def test_connections_past_the_limit_wait_their_turn(nursery: trio.Nursery) -> None:
    seen: list[str] = []

    async def record(request: Request) -> Response:
        seen.append(request.path)
        return Response()

    port = await start(nursery, record, connections_max=1)
    with trio.fail_after(GUARD_S):
        first = await trio.open_tcp_stream("127.0.0.1", port)
        second = await trio.open_tcp_stream("127.0.0.1", port)
        async with first, second:
            # The second sends first, yet waits until the first connection is done.
            await second.send_all(get("/second"))
            await first.send_all(get("/first"))
            assert status(await read_all(first)) == 200
            assert status(await read_all(second)) == 200
    assert seen == ["/first", "/second"]


@pytest.mark.trio
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "localhost", "example.org"])
async def test_invalid_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await serve_http(echo, host=host)


@pytest.mark.trio
async def test_any_loopback_address_is_accepted(nursery: trio.Nursery) -> None:
    port = await nursery.start(partial(serve_http, echo, host="127.0.0.2"))
    reply = await exchange(port, get("/"), host="127.0.0.2")
    assert status(reply) == 200


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="connections_max"):
        HttpLimits(connections_max=0)
