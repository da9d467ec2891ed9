"""Interop: a js-libp2p client receives the batches py-libp2p peers gossip and checks them.

``interop/js/receive.mjs`` is written from docs/protocol.md alone: it dials one peer (the
bare py-libp2p peer of ``tests/interop_peer.py``, or a node of a small network of real
``toktok`` node processes), subscribes over GossipSub, and prints one JSON line per
envelope with its message id and the verdict of its own strict decoder and Ed25519 check.
``interop/js/check_vectors.mjs`` runs the same checks over the test vectors. The npm
packages come from ``make`` (interop/js/node_modules/.stamp).
"""

import base64
import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest

from protocol.accounts import AccountKey
from protocol.envelope import SignedMessage, message_id, seal
from protocol.gossipwire import MANIFEST_TOPIC, encode_batch, gossip_message_id
from protocol.kinds import VideoManifest
from tests.factories import account, fake_video, manifest_for
from tests.netharness import NodeProc, network, wait_for

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "interop" / "js"
NODE = shutil.which("node")
PEER_START_S = 30.0
"""Until the py peer prints its address: importing py-libp2p takes a second, more under load."""
JS_TIMEOUT_MS = 20_000
"""How long receive.mjs waits for its envelopes; the test allows it a little more."""
EXIT_ALL_VERIFIED = 0
EXIT_BAD_ENVELOPE = 2
MESH_TIMEOUT_S = 20.0
"""Until receive.mjs is in the mesh of the node it dialled: start, dial, a heartbeat (1 s)."""
GOSSIP_TIMEOUT_S = 10.0

pytestmark = pytest.mark.skipif(
    NODE is None or not (JS_DIR / "node_modules" / ".stamp").exists(),
    reason="needs node and the npm packages: make interop/js/node_modules/.stamp",
)


def _lines_into(stream: IO[str], lines: "queue.Queue[str | None]") -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class JsonLinesProcess:
    """A subprocess whose stdout is read line by line, each line a JSON object."""

    def __init__(self, what: str, args: list[str], cwd: Path, stderr: Path) -> None:
        self._what = what
        self._stderr = stderr
        with stderr.open("w") as err:
            self.proc = subprocess.Popen(
                args, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=_lines_into, args=(self.proc.stdout, self._lines), daemon=True
        )
        self._reader.start()

    def next_json(self, timeout_s: float) -> dict[str, Any]:
        """The next JSON line printed. Raises AssertionError if none comes."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"{self._what} printed nothing in {timeout_s} s\n{self.stderr_tail()}"
            ) from None
        if line is None:
            status = self.proc.wait()
            raise AssertionError(f"{self._what} exited with {status}\n{self.stderr_tail()}")
        value: dict[str, Any] = json.loads(line)
        return value

    def stderr_tail(self) -> str:
        return self._stderr.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class PeerProcess(JsonLinesProcess):
    """``tests/interop_peer.py`` in a subprocess."""

    def __init__(self, topic: str, batches: list[bytes], stderr: Path) -> None:
        args = [sys.executable, "-m", "tests.interop_peer", "--topic", topic]
        for data in batches:
            args += ["--publish", data.hex()]
        super().__init__("the interop peer", args, ROOT, stderr)


def split_output(stdout: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """receive.mjs's lines: its events (the "mesh" line) and its envelope lines."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    return [x for x in lines if "event" in x], [x for x in lines if "event" not in x]


def mesh_event(peer: str) -> dict[str, Any]:
    return {"event": "mesh", "peer": peer, "topic": MANIFEST_TOPIC}


def run_receiver(addr: str, topic: str, count: int) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    args = [NODE, "receive.mjs", "--connect", addr, "--topic", topic]
    args += ["--count", str(count), "--timeout-ms", str(JS_TIMEOUT_MS)]
    timeout_s = JS_TIMEOUT_MS / 1000 + 10
    return subprocess.run(
        args, cwd=JS_DIR, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def signed_manifest(key: AccountKey, title: str) -> tuple[VideoManifest, SignedMessage]:
    manifest = manifest_for(key, fake_video(title.encode()), title=title)
    return manifest, seal(key, manifest)


def tampered(raw: bytes, old: str, new: str) -> bytes:
    """The envelope with text ``old`` of its body swapped for ``new`` of the same length:
    still canonical, no longer what the author signed."""
    assert len(new.encode()) == len(old.encode()) and raw.count(old.encode()) == 1
    return raw.replace(old.encode(), new.encode())


def gossip(
    batches: list[bytes], count: int, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Publish ``batches`` from a py peer to receive.mjs; its run and its lines."""
    peer = PeerProcess(MANIFEST_TOPIC, batches, tmp_path / "peer.stderr")
    try:
        listening = peer.next_json(PEER_START_S)
        assert listening["event"] == "listening", listening
        result = run_receiver(listening["addr"], MANIFEST_TOPIC, count)
        events = [peer.next_json(5.0) for _ in range(1 + len(batches))]
    finally:
        peer.stop()
    assert events[0]["event"] == "mesh", events
    published = [e["msg_id"] for e in events[1:]]
    assert published == [gossip_message_id(data).hex() for data in batches]
    # The py peer publishes once the JS peer is in its mesh; the JS side may see the mesh
    # later than that, or exit with its envelopes before it does.
    js_events, lines = split_output(result.stdout)
    assert js_events in ([], [mesh_event(listening["addr"].split("/p2p/")[1])]), js_events
    return result, lines


def test_js_client_verifies_gossiped_manifests_and_rejects_a_tampered_one(
    tmp_path: Path,
) -> None:
    key = account(1)
    good = [signed_manifest(key, "interop video a"), signed_manifest(key, "interop video b")]
    forged = tampered(good[0][1].raw, "interop video a", "interop video A")
    batches = [encode_batch([m.raw for _, m in good]), encode_batch([forged])]

    result, lines = gossip(batches, count=3, tmp_path=tmp_path)

    assert result.returncode == EXIT_BAD_ENVELOPE, result.stdout + result.stderr
    assert len(lines) == 3, lines
    by_id = {line["id"]: line for line in lines}
    assert sorted(by_id) == sorted([m.id.hex() for _, m in good] + [message_id(forged).hex()])
    for manifest, message in good:
        assert by_id[message.id.hex()] == {
            "id": message.id.hex(),
            "batch": gossip_message_id(batches[0]).hex(),
            "kind": "manifest",
            "signer": key.public_key.hex(),
            "verified": True,
            "title": manifest.title,
            "author": key.public_key.hex(),
            "created_ms": manifest.created_ms,
        }
    bad = by_id[message_id(forged).hex()]
    assert bad["verified"] is False
    assert bad["batch"] == gossip_message_id(batches[1]).hex()
    assert bad["signer"] == key.public_key.hex()
    assert bad["error"] == "bad signature"


def test_js_client_exits_zero_when_every_envelope_verifies(tmp_path: Path) -> None:
    # Sixteen envelopes or more take the array 16 header (dc), not a fixarray.
    messages = [signed_manifest(account(2), f"video {n:02d}")[1] for n in range(20)]
    batch = encode_batch([m.raw for m in messages])
    assert batch[0] == 0xDC

    result, lines = gossip([batch], count=len(messages), tmp_path=tmp_path)

    assert result.returncode == EXIT_ALL_VERIFIED, result.stdout + result.stderr
    got = [(line["id"], line["verified"]) for line in lines]
    assert got == [(m.id.hex(), True) for m in messages]


def test_js_checks_agree_with_the_test_vectors() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "check_vectors.mjs", str(ROOT / "tests" / "vectors")],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["failed"] == 0 and summary["checked"] > 100


class Receiver(JsonLinesProcess):
    """``receive.mjs`` in a subprocess."""

    def __init__(self, addr: str, count: int, stderr: Path) -> None:
        assert NODE is not None
        args = [NODE, "receive.mjs", "--connect", addr, "--topic", MANIFEST_TOPIC]
        args += ["--count", str(count), "--timeout-ms", str(JS_TIMEOUT_MS)]
        super().__init__("receive.mjs", args, JS_DIR, stderr)


def connected_to_all(nodes: list[NodeProc], node: NodeProc) -> bool:
    return int(node.status()["peers"]) >= len(nodes) - 1


def test_js_client_in_a_devnet_verifies_a_manifest_another_node_publishes(
    tmp_path: Path,
) -> None:
    # Three real nodes: a bootstrap node and two that join it. The JS client dials only
    # the second; the manifest enters the network at the third and reaches it by gossip.
    with network(tmp_path / "net", 3) as nodes:
        for node in nodes:
            wait_for(partial(connected_to_all, nodes, node), timeout_s=30, what="peers")
        entry, publisher = nodes[1], nodes[2]
        receiver = Receiver(entry.addr, count=1, stderr=tmp_path / "receive.stderr")
        try:
            assert receiver.next_json(MESH_TIMEOUT_S) == mesh_event(entry.peer_id)
            key = account(3)
            now_ms = time.time_ns() // 1_000_000
            manifest = manifest_for(
                key, fake_video(b"devnet"), created_ms=now_ms, title="through a devnet"
            )
            message = seal(key, manifest)
            envelope = base64.b64encode(message.raw).decode("ascii")
            assert publisher.call("submit", envelope=envelope)["verdict"] == "new"
            line = receiver.next_json(GOSSIP_TIMEOUT_S)
            assert receiver.proc.wait(timeout=10) == EXIT_ALL_VERIFIED, receiver.stderr_tail()
        finally:
            receiver.stop()
        assert entry.call("message", id=message.id.hex())["held"]
    assert line == {
        "id": message.id.hex(),
        "batch": gossip_message_id(encode_batch([message.raw])).hex(),
        "kind": "manifest",
        "signer": key.public_key.hex(),
        "verified": True,
        "title": manifest.title,
        "author": key.public_key.hex(),
        "created_ms": manifest.created_ms,
    }
