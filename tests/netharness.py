"""Real nodes in real processes on 127.0.0.1, for the network tests.

Each node is ``python -m node.cli --home H node run`` in its own process; the test talks
to it as the CLI does, through its control interface (node/controlclient.py). Waiting is
on conditions read from the nodes, with a deadline, never on a fixed sleep.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libp2p.peer.id import ID

from node.config import NodeConfig, write_config
from node.controlclient import ControlClient
from node.daemon import key_pair_from_seed
from node.home import Home
from protocol.placement import should_seed
from tests.cli_helpers import PASSPHRASE, toktok_env

READY_TIMEOUT_S = 30.0
NODE_KEY_TRIES = 1000


@dataclass
class NodeProc:
    """One running node process."""

    home: Path
    proc: subprocess.Popen[str]
    peer_id: str
    addrs: list[str]
    stderr_lines: list[str] = field(default_factory=list)
    web: str | None = None
    """The web app's sign-in address, for a node started with --http."""

    @property
    def addr(self) -> str:
        return self.addrs[0]

    def client(self) -> ControlClient:
        return ControlClient.from_home(self.home)

    def call(self, name: str, **params: Any) -> dict[str, Any]:
        return self.client().call(name, **params)

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Signal the node and wait for it to exit; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self._close_pipes()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def init_home(path: Path, name: str = "default", **settings: Any) -> Path:
    """A fresh home with one account (the passphrase of tests/cli_helpers.py), and a
    node.toml with ``settings`` over the defaults."""
    Home(path).init(account_name=name, passphrase=PASSPHRASE)
    write_config(path, NodeConfig().override(**settings))
    return path


def node_peer_id(home: Path) -> bytes:
    """The binary libp2p peer id a node over ``home`` will have."""
    seed = Home(home).node_key_path.read_bytes()
    return bytes(ID.from_pubkey(key_pair_from_seed(seed).public_key).to_bytes())


def fetcher_home(path: Path, mid: bytes, seeders: Sequence[bytes], **settings: Any) -> Path:
    """A fresh home (``replicas = 1``, and ``settings``) whose node placement does not
    choose to seed video ``mid``.

    Placement would have it fetch the video by itself as soon as it learns the manifest;
    its node key is drawn again until it ranks below the seeders.
    """
    init_home(path, replicas=1, **settings)
    key_path = Home(path).node_key_path
    for _ in range(NODE_KEY_TRIES):
        if not should_seed(node_peer_id(path), mid, seeders, 1):
            return path
        fd = os.open(key_path, os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    raise RuntimeError(f"no node key out of {NODE_KEY_TRIES} ranks below the seeders")


def start_node(
    home: Path,
    *,
    bootstrap: list[str] = (),  # type: ignore[assignment]
    extra: list[str] = (),  # type: ignore[assignment]
    env: dict[str, str] | None = None,
    role: str = "node",
) -> NodeProc:
    """Start a node (``role`` node or bootstrap) over ``home`` listening on a free loopback
    port; wait until it runs."""
    args = [sys.executable, "-m", "node.cli", "--home", str(home), role, "run"]
    args += ["--listen", "/ip4/127.0.0.1/tcp/0"]
    for addr in bootstrap:
        args += ["--bootstrap", addr]
    args += list(extra)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or toktok_env(),
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr_lines: list[str] = []
    threading.Thread(target=_collect, args=(proc.stderr, stderr_lines), daemon=True).start()
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(READY_TIMEOUT_S)
    if not ready or not ready[0]:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError(f"node over {home} did not start:\n" + "".join(stderr_lines))
    info = json.loads(ready[0])
    return NodeProc(home, proc, info["peer_id"], info["addrs"], stderr_lines, info.get("web"))


def _collect(stream: Any, lines: list[str]) -> None:
    with stream:
        for line in stream:
            lines.append(line)


def wait_for(
    condition: Callable[[], Any], *, timeout_s: float, what: str, poll_s: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something true; return that. Fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # a node still starting, say: keep polling
            last_error = exc
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} ({last_error!r})")


@contextmanager
def network(
    root: Path, count: int, *, env: dict[str, str] | None = None, **settings: Any
) -> Iterator[list[NodeProc]]:
    """``count`` nodes with ``settings``, the first a bootstrap node the others join
    through; all stopped at the end."""
    nodes: list[NodeProc] = []
    try:
        first = start_node(init_home(root / "n0", **settings), env=env, role="bootstrap")
        nodes.append(first)
        for i in range(1, count):
            home = init_home(root / f"n{i}", **settings)
            nodes.append(start_node(home, bootstrap=[first.addr], env=env))
        yield nodes
    finally:
        stop_all(nodes)


def stop_all(nodes: list[NodeProc]) -> None:
    """Stop every node (SIGTERM, then SIGKILL for one that takes over 10 s)."""
    for node in nodes:
        try:
            node.stop(timeout_s=10)
        except subprocess.TimeoutExpired:
            node.kill()


def video_ids(node: NodeProc) -> set[str]:
    return {v["id"] for v in node.call("videos", limit=1000)["videos"]}


def chunks_complete(node: NodeProc, video_id: str) -> bool:
    for v in node.call("videos", limit=1000)["videos"]:
        if v["id"] == video_id:
            refs = {v["thumbnail"]["cid"]}
            for r in v["renditions"]:
                refs.add(r["init"]["cid"])
                refs.update(s["cid"] for s in r["segments"])
            return bool(v["chunks_held"] == len(refs))
    return False


@contextmanager
def evil_peer(
    target: str, mode: str, *extra: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """tests/evil_peer.py connected to ``target``; yields the process and its stdout lines
    (filled as they come). Killed at the end."""
    args = [sys.executable, "-m", "tests.evil_peer", "--connect", target, "--mode", mode, *extra]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=toktok_env()
    )
    lines: list[str] = []
    threading.Thread(target=_collect, args=(proc.stdout, lines), daemon=True).start()
    try:
        wait_for(
            lambda: any('"connected"' in line for line in lines), timeout_s=20, what="evil peer"
        )
        yield proc, lines
    finally:
        proc.kill()
        proc.wait(timeout=10)
