"""The control interface end to end: ControlServer on a real socket, ControlClient in a thread."""

import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from node.control import (
    ControlError,
    ControlServer,
    load_or_create_token,
    metrics_handler,
    remove_run_file,
    write_run_file,
)
from node.controlclient import (
    ControlCallError,
    ControlClient,
    NodeNotRunning,
    RunInfo,
    TokenFileError,
    read_token,
    run_file_path,
    token_path,
)
from node.httpserver import serve_http
from node.metrics import Registry
from tests.httpclient import raw_request

GUARD_S = 10
PEER_ID = "12D3KooWExample"
T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking client call off the trio thread, as the CLI would run it."""
    with trio.fail_after(GUARD_S):
        return await trio.to_thread.run_sync(fn)


async def echo(params: dict[str, Any]) -> dict[str, Any]:
    return {"params": params}


async def refuse(params: dict[str, Any]) -> dict[str, Any]:
    raise ControlError("that video is being published already", status=409)


async def crash(params: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("bug")


async def progress(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    if not isinstance(params.get("n"), int):
        raise ControlError("n must be an integer")
    for done in range(params["n"]):
        yield {"done": done}
    if params.get("fail") == "refuse":
        raise ControlError("out of space", status=507)
    if params.get("fail") == "crash":
        raise RuntimeError("bug")
    if params.get("fail") == "hang":
        await trio.Event().wait()


async def streams_later(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A coroutine that returns its stream, rather than being an async generator itself."""
    return progress(params)


async def hang(params: dict[str, Any]) -> dict[str, Any]:
    await trio.Event().wait()
    raise AssertionError("unreachable")


@dataclass
class Node:
    home: Path
    port: int
    registry: Registry
    client: ControlClient


@pytest.fixture
async def node(nursery: trio.Nursery, tmp_path: Path) -> Node:
    registry = Registry()
    registry.counter("toktok_calls", "Calls made.").inc(2)
    server = ControlServer(load_or_create_token(tmp_path), registry=registry)
    for name, fn in [("echo", echo), ("refuse", refuse), ("crash", crash), ("hang", hang)]:
        server.route(name, fn)
    server.route("progress", progress)
    server.route("streams-later", streams_later)
    server.route("not-a-dict", lambda params: trio.sleep(0))  # type: ignore[arg-type,return-value]
    port = await nursery.start(partial(serve_http, server.handler))
    write_run_file(
        tmp_path, port=port, metrics_port=None, pid=os.getpid(), peer_id=PEER_ID, addrs=["/a"]
    )
    return Node(tmp_path, port, registry, ControlClient.from_home(tmp_path))


def auth(home: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_path(home).read_text().strip()}"}


@pytest.mark.trio
async def test_call_passes_params_and_answers(node: Node) -> None:
    answer = await in_thread(lambda: node.client.call("echo", name="x", n=[1, 2]))
    assert answer == {"params": {"name": "x", "n": [1, 2]}}
    assert node.client.info == RunInfo(node.port, None, os.getpid(), PEER_ID, ("/a",))


@pytest.mark.trio
async def test_invalid_token(node: Node) -> None:
    missing = await in_thread(lambda: raw_request(node.port, "POST", "/v1/echo", b"{}"))
    assert missing[0] == 401
    assert missing[1]["WWW-Authenticate"] == "Bearer"
    wrong = ControlClient(node.client.info, "0" * 64)
    with pytest.raises(ControlCallError, match="token") as caught:
        await in_thread(lambda: wrong.call("echo"))
    assert caught.value.status == 401
    token = token_path(node.home).read_text().strip()
    for header in (f"Basic {token}", token, f"Bearer {token}x", "Bearer"):
        headers = {"Authorization": header}
        answer = await in_thread(partial(raw_request, node.port, "POST", "/v1/echo", b"", headers))
        assert answer[0] == 401, header


@pytest.mark.trio
async def test_invalid_call_name_and_method(node: Node) -> None:
    with pytest.raises(ControlCallError, match="no such call") as caught:
        await in_thread(lambda: node.client.call("nope"))
    assert caught.value.status == 404
    got = await in_thread(
        lambda: raw_request(node.port, "GET", "/v1/echo", headers=auth(node.home))
    )
    assert (got[0], got[1]["Allow"]) == (405, "POST")
    got = await in_thread(
        lambda: raw_request(node.port, "POST", "/v2/echo", b"{}", auth(node.home))
    )
    assert got[0] == 404


@pytest.mark.trio
@pytest.mark.parametrize(
    "body,message",
    [
        (b"{", "not valid JSON"),
        (b"[1]", "must be a JSON object, not list"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
async def test_invalid_body(node: Node, body: bytes, message: str) -> None:
    got = await in_thread(lambda: raw_request(node.port, "POST", "/v1/echo", body, auth(node.home)))
    assert got[0] == 400
    assert message in json.loads(got[2])["error"]


@pytest.mark.trio
async def test_empty_body_means_no_params(node: Node) -> None:
    got = await in_thread(lambda: raw_request(node.port, "POST", "/v1/echo", b"", auth(node.home)))
    assert (got[0], json.loads(got[2])) == (200, {"params": {}})


@pytest.mark.trio
async def test_call_refusal_and_failure(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ControlCallError) as caught:
        await in_thread(lambda: node.client.call("refuse"))
    assert (caught.value.status, caught.value.message) == (
        409,
        "that video is being published already",
    )
    with caplog.at_level(logging.ERROR):
        for name in ("crash", "not-a-dict"):
            with pytest.raises(ControlCallError, match="internal error") as caught:
                await in_thread(partial(node.client.call, name))
            assert caught.value.status == 500
    assert [r.getMessage() for r in caplog.records] == ["http handler failed"] * 2
    assert await in_thread(lambda: node.client.call("echo")) == {"params": {}}


@pytest.mark.trio
async def test_stream_json_lines(node: Node) -> None:
    items = await in_thread(lambda: list(node.client.stream("progress", n=3)))
    assert items == [{"done": 0}, {"done": 1}, {"done": 2}]
    assert await in_thread(lambda: list(node.client.stream("streams-later", n=1))) == [{"done": 0}]
    assert await in_thread(lambda: list(node.client.stream("progress", n=0))) == []
    assert await in_thread(lambda: list(node.client.stream("echo"))) == [{"params": {}}]
    headers = auth(node.home)
    got = await in_thread(
        lambda: raw_request(node.port, "POST", "/v1/progress", b'{"n":2}', headers)
    )
    assert got[1]["content-type"] == "application/x-ndjson"
    assert got[2] == b'{"done":0}\n{"done":1}\n'


def collect(stream: Callable[[], Any]) -> tuple[list[dict[str, Any]], ControlCallError]:
    """The items a stream gave before it raised ControlCallError, and the error."""
    items: list[dict[str, Any]] = []
    try:
        for item in stream():
            items.append(item)
    except ControlCallError as exc:
        return items, exc
    raise AssertionError(f"the stream ended without an error after {items}")


@pytest.mark.trio
async def test_stream_errors(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    refused = await in_thread(
        lambda: collect(lambda: node.client.stream("progress", n=1, fail="refuse"))
    )
    assert refused[0] == [{"done": 0}]
    assert (refused[1].message, refused[1].status) == ("out of space", 507)
    with caplog.at_level(logging.ERROR, logger="toktok.control"):
        crashed = await in_thread(
            lambda: collect(lambda: node.client.stream("progress", n=2, fail="crash"))
        )
    assert crashed[0] == [{"done": 0}, {"done": 1}]
    assert (crashed[1].message, crashed[1].status) == ("internal error", 500)
    assert [r.getMessage() for r in caplog.records] == ["control stream failed"]
    # A stream that refuses before its first item answers with its status, at once.
    with pytest.raises(ControlCallError, match="n must be an integer") as caught:
        await in_thread(lambda: node.client.stream("progress"))
    assert caught.value.status == 400


@pytest.mark.trio
async def test_client_timeouts(node: Node) -> None:
    impatient = ControlClient(node.client.info, read_token(node.home), timeout_s=0.2)
    with pytest.raises(ControlCallError, match="timed out") as caught:
        await in_thread(lambda: impatient.call("hang"))
    assert caught.value.status is None
    impatient = ControlClient(node.client.info, read_token(node.home), stream_read_timeout_s=1.0)
    stalled = await in_thread(
        lambda: collect(lambda: impatient.stream("progress", n=1, fail="hang"))
    )
    assert stalled[0] == [{"done": 0}]
    assert "timed out" in stalled[1].message


@pytest.mark.trio
async def test_metrics_need_no_token(node: Node, nursery: trio.Nursery) -> None:
    got = await in_thread(lambda: raw_request(node.port, "GET", "/metrics"))
    assert got[0] == 200
    assert got[1]["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert got[2].decode() == node.registry.render()
    assert "toktok_calls_total 2\n" in got[2].decode()
    assert (await in_thread(lambda: raw_request(node.port, "POST", "/metrics")))[0] == 405
    # On a port of its own, and on a control server without a registry.
    own = await nursery.start(partial(serve_http, metrics_handler(node.registry)))
    assert (await in_thread(lambda: raw_request(own, "GET", "/metrics")))[2] == got[2]
    assert (await in_thread(lambda: raw_request(own, "GET", "/v1/echo")))[0] == 404
    bare = await nursery.start(partial(serve_http, ControlServer("0" * 64).handler))
    assert (await in_thread(lambda: raw_request(bare, "GET", "/metrics")))[0] == 404


@pytest.mark.trio
async def test_stream_closed_when_the_client_leaves(nursery: trio.Nursery, tmp_path: Path) -> None:
    closed = trio.Event()

    async def endless(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                yield {"more": True}
                await trio.sleep(0)
        finally:
            closed.set()

    server = ControlServer(load_or_create_token(tmp_path))
    server.route("endless", endless)
    port = await nursery.start(partial(serve_http, server.handler))
    client = ControlClient(RunInfo(port, None, os.getpid(), PEER_ID, ()), read_token(tmp_path))

    def read_one_and_leave() -> dict[str, Any]:
        items = client.stream("endless")
        try:
            return next(items)
        finally:
            items.close()

    assert await in_thread(read_one_and_leave) == {"more": True}
    with trio.fail_after(GUARD_S):
        await closed.wait()


def test_invalid_route() -> None:
    server = ControlServer("0" * 64)
    server.route("echo", echo)
    for name in ("echo", "Echo", "", "a/b", "x" * 65):
        with pytest.raises(ValueError):
            server.route(name, echo)
    with pytest.raises(ValueError):
        ControlError("fine", status=200)
    for token in ("", "short", "é" * 40, "a b" * 20):
        with pytest.raises(ValueError, match="control token"):
            ControlServer(token)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_file(tmp_path: Path) -> None:
    write_run_file(tmp_path, port=1, metrics_port=2, pid=3, peer_id=PEER_ID, addrs=["/x"])
    path = run_file_path(tmp_path)
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert json.loads(path.read_text()) == {
        "version": 1,
        "port": 1,
        "metrics_port": 2,
        "pid": 3,
        "peer_id": PEER_ID,
        "addrs": ["/x"],
    }
    write_run_file(tmp_path, port=4, metrics_port=None, pid=5, peer_id=PEER_ID, addrs=[])
    assert json.loads(path.read_text())["port"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["control.json"]  # no temporary left
    remove_run_file(tmp_path, pid=3)  # another daemon's: kept
    assert path.exists()
    remove_run_file(tmp_path, pid=5)
    assert not path.exists()
    remove_run_file(tmp_path)  # already gone: fine


def test_token_file(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    path = token_path(tmp_path)
    assert len(token) == 64 and int(token, 16) >= 0
    assert mode(path) == 0o600
    assert load_or_create_token(tmp_path) == token
    path.chmod(0o644)
    assert load_or_create_token(tmp_path) == token
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["control.token"]  # no temporary left


@pytest.mark.parametrize("content", [b"", b"short", b"g" * 64, b"\xff" * 64])
def test_invalid_token_file(tmp_path: Path, content: bytes) -> None:
    token_path(tmp_path).write_bytes(content)
    with pytest.raises(TokenFileError):
        load_or_create_token(tmp_path)
    assert token_path(tmp_path).read_bytes() == content


def test_node_not_running_without_a_run_file(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="no node is running"):
        ControlClient.from_home(tmp_path)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"port": 1}', b"x" * 70_000])
def test_node_not_running_with_a_damaged_run_file(tmp_path: Path, content: bytes) -> None:
    run_file_path(tmp_path).parent.mkdir()
    run_file_path(tmp_path).write_bytes(content)
    with pytest.raises(NodeNotRunning, match="damaged"):
        ControlClient.from_home(tmp_path)


def test_node_not_running_when_its_pid_is_gone(tmp_path: Path) -> None:
    load_or_create_token(tmp_path)
    write_run_file(tmp_path, port=1, metrics_port=None, pid=2**31 - 1, peer_id=PEER_ID, addrs=[])
    with pytest.raises(NodeNotRunning, match="has stopped"):
        ControlClient.from_home(tmp_path)


def test_node_not_running_when_its_port_is_closed(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    load_or_create_token(tmp_path)
    write_run_file(tmp_path, port=port, metrics_port=None, pid=os.getpid(), peer_id="p", addrs=[])
    client = ControlClient.from_home(tmp_path)
    with pytest.raises(NodeNotRunning, match="no node answers"):
        client.call("echo")
    with pytest.raises(NodeNotRunning):
        client.stream("echo")
