"""``toktok devnet``: a real local network in real processes, started and stopped as a user
would, and its refusals of bad input."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from typing import IO, Any

import pytest

from node.config import load_config
from node.controlclient import ControlClient, pid_alive, run_file_path
from node.devnet import (
    ALLOCATION,
    DEVNET_MARKER,
    DEVNET_PASSPHRASE,
    DevnetError,
    DevnetOptions,
    prepare,
    prepare_ledger,
    run,
)
from node.home import Home, default_account, unlock_account
from node.ledgerconfig import load_genesis, load_validator_key
from protocol.genesis import decode_genesis
from tests.cli_helpers import toktok, toktok_env
from tests.netharness import wait_for

READY_TIMEOUT_S = 240.0
"""Four nodes, a 10 s 720p sample written and transcoded: two cores under load take long."""
STOP_TIMEOUT_S = 60.0


def _lines_into(stream: IO[str], lines: "queue.Queue[str | None]") -> None:
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


def next_event(lines: "queue.Queue[str | None]", timeout_s: float, stderr: Path) -> Any:
    """The next JSON line devnet prints on stdout."""
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"devnet printed nothing in {timeout_s} s:\n{tail(stderr)}") from None
    assert line is not None, f"devnet closed its stdout:\n{tail(stderr)}"
    return json.loads(line)


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def chunk_count(video: dict[str, Any]) -> int:
    cids = {video["thumbnail"]["cid"]}
    for r in video["renditions"]:
        cids.add(r["init"]["cid"])
        cids.update(s["cid"] for s in r["segments"])
    return len(cids)


def holds(home: Path, video: str) -> bool:
    return bool(ControlClient.from_home(home).call("message", id=video)["held"])


def stop_leftovers(proc: "subprocess.Popen[str]", pids: list[int]) -> None:
    """After a failure: stop the devnet, then kill any node it left running."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_devnet_of_four_publishes_fetches_and_stops_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    stderr = tmp_path / "devnet.stderr"
    env = toktok_env()
    del env["TOKTOK_PASSPHRASE"]  # the devnet's own passphrase, as documented
    args = [sys.executable, "-m", "node.cli", "devnet", "--nodes", "4", "--sample"]
    args += ["--dir", str(directory)]
    with stderr.open("w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines_into, args=(proc.stdout, lines), daemon=True).start()
    pids: list[int] = []
    try:
        ready = next_event(lines, READY_TIMEOUT_S, stderr)
        assert ready["event"] == "ready" and ready["dir"] == str(directory)
        nodes = ready["nodes"]
        pids = [n["pid"] for n in nodes]
        assert [(n["name"], n["role"]) for n in nodes] == [
            ("n1", "bootstrap"),
            ("n2", "node"),
            ("n3", "node"),
            ("n4", "node"),
        ]
        assert len({n["peer_id"] for n in nodes}) == 4
        homes = [Path(n["home"]) for n in nodes]
        assert homes == [directory / n["name"] for n in nodes]
        video = ready["video"]
        assert isinstance(video, str) and len(bytes.fromhex(video)) == 32

        for node, home in zip(nodes, homes, strict=True):
            assert ControlClient.from_home(home).info.port == node["control_port"]
            assert node["addr"].endswith("/p2p/" + node["peer_id"])
            wait_for(partial(holds, home, video), timeout_s=30, what="the manifest")
        fetcher = ControlClient.from_home(homes[2])
        items = list(fetcher.stream("fetch", id=video))
        shown = fetcher.call("show", id=video)["video"]
        assert items[-1]["result"] == {"id": video, "chunks_held": chunk_count(shown)}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT_S) == 0, tail(stderr)
        stopped = next_event(lines, 5, stderr)
    finally:
        stop_leftovers(proc, pids)
    assert stopped["event"] == "stopped"
    assert [(n["name"], n["exit_code"], n["killed"]) for n in stopped["nodes"]] == [
        (f"n{i}", 0, False) for i in range(1, 5)
    ]
    assert not any(pid_alive(pid) for pid in pids)
    # Every node names the genesis; n1 to n4 (min(4, N)) hold its committee's keys.
    raw = (directory / "genesis.bin").read_bytes()
    committee = [m.key for m in decode_genesis(raw).validators]
    for home in homes:
        config = load_config(home)
        assert load_genesis(config, home) == raw
        key = load_validator_key(config, home, DEVNET_PASSPHRASE)
        assert key is not None and key.public_key == committee[homes.index(home)]
    for home in homes:
        assert not run_file_path(home).exists()
        with Home(home).open() as stores:  # no LevelDB lock left behind
            if home.name == "n1":
                unlock_account(stores, DEVNET_PASSPHRASE)
        assert "ok:" in toktok(home, "verify").stdout


def test_prepare_ledger_makes_a_genesis_then_reuses_it(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    prepare(directory, 3, DEVNET_PASSPHRASE)
    prepare_ledger(directory, 3, 2, DEVNET_PASSPHRASE)
    raw = (directory / "genesis.bin").read_bytes()
    genesis = decode_genesis(raw)
    homes = [directory / n for n in ("n1", "n2", "n3")]
    accounts = []
    for home in homes:
        with Home(home).open() as stores:
            accounts.append(default_account(stores)[1])
    assert [(a.account, a.amount) for a in genesis.allocations] == [
        (account, ALLOCATION) for account in accounts
    ]
    configs = [load_config(home) for home in homes]
    assert [c.validator_key for c in configs] == [
        "../validators/validator-1.key",
        "../validators/validator-2.key",
        "",
    ]
    pairs = zip(configs, homes, strict=True)
    keys = [load_validator_key(c, h, DEVNET_PASSPHRASE) for c, h in pairs]
    assert [k.public_key for k in keys if k] == [m.key for m in genesis.validators]
    # A later, bigger run keeps the genesis: n4 names it, holding no seat or allocation.
    prepare(directory, 4, DEVNET_PASSPHRASE)
    prepare_ledger(directory, 4, 4, DEVNET_PASSPHRASE)
    assert (directory / "genesis.bin").read_bytes() == raw
    n4 = load_config(directory / "n4")
    assert load_genesis(n4, directory / "n4") == raw and n4.validator_key == ""
    with pytest.raises(DevnetError, match="wrong passphrase"):
        prepare_ledger(directory, 4, 4, "another passphrase")


def test_invalid_validator_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="--validators: 1 to 2"):
        run(DevnetOptions(nodes=2, directory=tmp_path / "net", validators=3))
    with pytest.raises(DevnetError, match="--validators: 1 to 2"):
        run(DevnetOptions(nodes=2, directory=tmp_path / "net", validators=0))
    assert not (tmp_path / "net").exists()


def test_invalid_input_fails_with_one_line_and_status_2(tmp_path: Path) -> None:
    proc = toktok(tmp_path, "devnet", "--nodes", "0", "--dir", str(tmp_path / "net"), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: --nodes: 1 to 32, not 0"]
    assert not (tmp_path / "net").exists()


def refusal(directory: Path, nodes: int = 2, base_port: int | None = None) -> str:
    with pytest.raises(DevnetError) as caught:
        run(DevnetOptions(nodes=nodes, directory=directory, base_port=base_port))
    return str(caught.value)


@pytest.mark.parametrize("nodes", [0, -3, 33])
def test_invalid_node_count_is_refused(tmp_path: Path, nodes: int) -> None:
    assert "--nodes" in refusal(tmp_path / "net", nodes=nodes)
    assert not (tmp_path / "net").exists()


def test_invalid_port_range_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refusal(tmp_path / "net", base_port=port - 1)
    assert f"127.0.0.1:{port}" in message and "--base-port" in message
    assert "65534 to 65536" in refusal(tmp_path / "net", nodes=3, base_port=65534)
    assert "0 to 1" in refusal(tmp_path / "net", base_port=0)
    assert not (tmp_path / "net").exists()


def test_invalid_dir_not_ours_is_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    message = refusal(precious)
    assert "refusing" in message and DEVNET_MARKER in message
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a file"
    a_file.write_text("keep me too")
    assert "not a plain directory" in refusal(a_file)
    link = tmp_path / "link"
    link.symlink_to(precious)
    assert "not a plain directory" in refusal(link)
    assert a_file.read_text() == "keep me too"
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_prepare_makes_homes_then_reuses_them(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    assert prepare(directory, 2, "a passphrase") == []
    assert (directory / DEVNET_MARKER).is_file()
    keys = {n: (directory / n / "node.key").read_bytes() for n in ("n1", "n2")}
    # A later, bigger run keeps the homes it has (same node keys) and adds the missing one.
    assert prepare(directory, 3, "a passphrase") == ["n1", "n2"]
    assert {n: (directory / n / "node.key").read_bytes() for n in keys} == keys
    assert Home(directory / "n3").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(empty, 1, "a passphrase") == []
    with pytest.raises(DevnetError, match="refusing"):
        prepare(tmp_path, 1, "a passphrase")  # holds "net" and "empty", and no marker
