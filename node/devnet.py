"""``toktok devnet``: a local test network, N node processes on 127.0.0.1, until interrupted.

    toktok devnet [--nodes N] [--validators V] [--sample] [--base-port P] [--dir DIR]

DIR (default ``./devnet``) holds::

    DIR/.toktok-devnet   marks the folder as a devnet of ours
    DIR/n1 ... DIR/nN    the node homes: n1 is the bootstrap node, the others join through it
    DIR/logs/nK.log      each node's log (JSON lines), rewritten on every run
    DIR/sample.mp4       the sample video (--sample), published on n1
    DIR/genesis.bin, DIR/genesis.json, DIR/validators/validator-K.key
                         the ledger's genesis, as ``toktok network init`` writes it

The genesis has V validators (default: min(4, N)) and gives every node's default account
ALLOCATION base units of the platform token. Every home's node.toml names the genesis, and
n1 ... nV's name their validator key (validator-K.key is nK's, committee seat K-1).

A later run reuses the homes it finds (same peer ids, accounts and stored videos) and the
genesis (nodes added since hold no allocation), and makes the missing homes; an empty
folder is taken, and any other folder without the marker is refused, so the devnet never
writes into what it did not make. Nodes listen on ports P, P+1, ... (free ports when P is
not given), each with a free control port that its home's ``run/control.json`` names while
it runs: ``toktok --home DIR/n2 videos`` talks to n2.

Accounts and validator keys are encrypted with ``$TOKTOK_PASSPHRASE``, or else with
:data:`DEVNET_PASSPHRASE`, which is public (it is written here): for test networks on your
own machine only.

Output: progress, the table of nodes and what to try go to stderr; stdout carries JSON
lines only, for scripts::

    {"event": "ready", "dir", "video": ID or null, "nodes": [{"name", "role", "home",
     "peer_id", "addr", "control_port", "pid", "log"}, ...]}
    {"event": "stopped", "nodes": [{"name", "pid", "exit_code", "killed"}, ...]}

SIGINT, SIGTERM or SIGHUP stops the network: SIGTERM to every node, STOP_TIMEOUT_S for
them to exit, then SIGKILL for stragglers (a second signal kills them at once). The exit
status is 0 when every node stopped cleanly, 1 when one died on its own or had to be
killed, and 130 when interrupted before the network was up; a failure to start raises
DevnetError.
"""

import contextlib
import dataclasses
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from node.clinode import RemoteError, stream
from node.config import (
    CONFIG_FILE,
    ConfigError,
    NodeConfig,
    load_config,
    render_config,
    write_config,
)
from node.controlclient import ControlClient, ControlClientError, NodeNotRunning
from node.home import PASSPHRASE_ENV, Home, HomeError, default_account
from node.ledgerconfig import load_genesis, load_validator_key
from node.progress import progress_bar
from node.video import VideoError, write_sample
from protocol.accounts import account_to_text
from protocol.genesis import decode_genesis
from storage.errors import StoreError
from storage.keyfile import KeyFileError

DEVNET_MARKER = ".toktok-devnet"
"""A file in every devnet folder: a later run (or a person) knows the folder is ours."""
DEVNET_PASSPHRASE = "toktok devnet: local test networks only"
"""The accounts' passphrase when $TOKTOK_PASSPHRASE is not set. Public: never for real use."""
ACCOUNT_NAME = "default"
LOG_DIR = "logs"
SAMPLE_FILE = "sample.mp4"
SAMPLE_SECONDS = 10.0
SAMPLE_HEIGHT = 720
SAMPLE_TITLE = "toktok devnet sample"
HOST = "127.0.0.1"
NODES_MAX = 32
VALIDATORS_DEFAULT_MAX = 4
GENESIS_FILE = "genesis.bin"
"""Where ``toktok network init --out DIR`` writes the genesis (named as in
bootstrap/genesis.py, which node/ cannot import)."""
VALIDATORS_DIR = "validators"
"""Where it writes validator-K.key, the key of committee seat K-1."""
NETWORK_NAME = "devnet"
ALLOCATION = 1_000_000_000
"""Platform tokens, in base units, that the genesis gives every node's default account."""
NETWORK_INIT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 60.0
SPREAD_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 5.0
POLL_S = 0.2
LOG_TAIL_BYTES = 4096
PIPE_WIDTH = 160

err = Console(stderr=True, highlight=False, soft_wrap=True)
if not err.is_terminal:
    # A log file or a pipe has no width: keep peer ids and paths whole.
    err.width = PIPE_WIDTH


class DevnetError(Exception):
    """The devnet cannot start: bad input, a folder not ours, a node that failed. One line."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived while the network was starting."""


@dataclass(frozen=True)
class DevnetOptions:
    nodes: int
    directory: Path
    base_port: int | None = None
    sample: bool = False
    passphrase: str | None = None
    """None: DEVNET_PASSPHRASE."""
    validators: int | None = None
    """The genesis committee's size; None: min(VALIDATORS_DEFAULT_MAX, nodes)."""
    log_level: str | None = None
    """Passed to every node's ``--log-level``."""
    json_lines: bool = True
    """Print the ready and stopped lines on stdout (make demo leaves them out)."""
    http: str | None = None
    """HOST:PORT where the last node serves the web app; None: no web app."""


@dataclass
class DevnetNode:
    """One node process of the devnet."""

    name: str
    role: str
    home: Path
    log: Path
    proc: "subprocess.Popen[bytes]"
    ready_line: "queue.Queue[bytes | None]"
    peer_id: str = ""
    addr: str = ""
    control_port: int = 0
    web: str | None = None
    """The web app's sign-in address, when this node serves it."""

    def client(self) -> ControlClient:
        return ControlClient.from_home(self.home)

    def call(self, name: str, **params: Any) -> dict[str, Any]:
        return self.client().call(name, **params)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "home": str(self.home),
            "peer_id": self.peer_id,
            "addr": self.addr,
            "control_port": self.control_port,
            "web": self.web,
            "pid": self.proc.pid,
            "log": str(self.log),
        }


@dataclass(frozen=True)
class Stopped:
    name: str
    pid: int
    exit_code: int | None
    """None: it did not exit even after SIGKILL, within KILL_TIMEOUT_S."""
    killed: bool

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.killed


ReadyHook = Callable[[list[DevnetNode], str | None], None]


class Signals:
    """Notes SIGINT, SIGTERM and SIGHUP instead of raising where they land.

    A handler that raised could interrupt ``Popen`` after the fork and leave a node running
    that nobody stops; the waiting points call :meth:`check` instead.
    """

    # SIGHUP too: a closed terminal would otherwise end the devnet and leave its nodes,
    # which run in sessions of their own, without anyone to stop them.
    WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        for signum in self.WATCHED:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum

    def check(self) -> None:
        """Raises Interrupted once a signal has arrived."""
        if self.count:
            raise Interrupted(signal.Signals(self.first or signal.SIGINT).name)

    def sleep(self, seconds: float) -> None:
        self.check()
        time.sleep(seconds)
        self.check()


# ------------------------------------------------------------------------------ checks


def passphrase_from_env() -> str | None:
    """$TOKTOK_PASSPHRASE, or None for DEVNET_PASSPHRASE."""
    return os.environ.get(PASSPHRASE_ENV)


def check_nodes(count: int) -> None:
    if not 1 <= count <= NODES_MAX:
        raise DevnetError(f"--nodes: 1 to {NODES_MAX}, not {count}")


def validator_count(options: "DevnetOptions") -> int:
    """The committee size of a new genesis. Raises DevnetError unless 1 to the node count."""
    if options.validators is None:
        return min(VALIDATORS_DEFAULT_MAX, options.nodes)
    if not 1 <= options.validators <= options.nodes:
        raise DevnetError(
            f"--validators: 1 to {options.nodes} (the node count), not {options.validators}"
        )
    return options.validators


def listen_ports(count: int, base_port: int | None) -> list[int]:
    """The TCP port of each node (0: a free one). Raises DevnetError for a range that is
    out of bounds or that has a port something else holds."""
    if base_port is None:
        return [0] * count
    last = base_port + count - 1
    if base_port < 1 or last > 65535:
        raise DevnetError(f"--base-port: ports {base_port} to {last} are not all in 1..65535")
    for port in range(base_port, last + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # The node's listener sets SO_REUSEADDR too: a port in TIME_WAIT is usable.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                raise DevnetError(
                    f"cannot listen on {HOST}:{port} ({exc.strerror}): the devnet needs ports "
                    f"{base_port} to {last}; choose another --base-port, or none for free ports"
                ) from exc
    return list(range(base_port, last + 1))


def prepare(directory: Path, count: int, passphrase: str) -> list[str]:
    """Make ``directory`` a devnet with homes n1..n<count>, keeping those it has; return the
    names of the homes it reused.

    Raises DevnetError for a path that is not a plain directory, a non-empty directory
    without the marker, a home a node is running over, or a home that cannot be made.
    """
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise DevnetError(f"{directory} is not a plain directory; choose another --dir")
    marker = directory / DEVNET_MARKER
    if directory.is_dir() and not marker.is_file() and any(directory.iterdir()):
        raise DevnetError(
            f"refusing to use {directory}: it is not empty and has no {DEVNET_MARKER} file, "
            "so it is not a devnet; choose another --dir"
        )
    reused = []
    home = Home(directory)
    try:
        (directory / LOG_DIR).mkdir(parents=True, exist_ok=True)
        marker.write_text("a toktok devnet: 'toktok devnet --dir' on this folder reuses it\n")
        for name in node_names(count):
            home = Home(directory / name)
            if home.exists():
                _refuse_if_running(home.path)
                reused.append(name)
                continue
            home.init(account_name=ACCOUNT_NAME, passphrase=passphrase)
            write_config(home.path, NodeConfig())
    except OSError as exc:
        raise DevnetError(f"cannot set up {home.path}: {exc.strerror or exc}") from exc
    except (HomeError, StoreError) as exc:
        raise DevnetError(f"cannot set up {home.path}: {exc}") from exc
    return reused


def node_names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


def _refuse_if_running(home: Path) -> None:
    try:
        pid = ControlClient.from_home(home).info.pid
    except NodeNotRunning:
        return
    except ControlClientError:
        pid = None  # its run file names a live process, but the token is unreadable
    raise DevnetError(
        f"a node (pid {pid}) is already running over {home}: is a devnet running there?"
    )


# ------------------------------------------------------------------------------ ledger


def prepare_ledger(directory: Path, count: int, validators: int, passphrase: str) -> None:
    """Give the devnet a genesis (a new one with ``validators`` seats, unless it has one)
    and name it, and the validator keys, in the homes' node.toml; check they load.

    Raises DevnetError when the genesis cannot be made or read, or a home's config or
    validator key does not load (a passphrase other than the one the keys were made with).
    """
    genesis_path = directory / GENESIS_FILE
    reused = genesis_path.exists()
    if not reused:
        _network_init(directory, count, validators, passphrase)
    try:
        seats = len(decode_genesis(genesis_path.read_bytes()).validators)
    except (OSError, ValueError) as exc:
        raise DevnetError(f"cannot read the genesis {genesis_path}: {exc}") from exc
    if reused:
        note = "" if seats == validators else f" (--validators {validators} is for a new one)"
        _step(f"reusing the genesis {relative(genesis_path)}: {seats} validators{note}")
    if seats > count:
        _step(f"the genesis has {seats} validators, {seats - count} without a node in this run")
    for i, name in enumerate(node_names(count)):
        home = directory / name
        key = f"../{VALIDATORS_DIR}/validator-{i + 1}.key" if i < seats else ""
        try:
            _set_config(home, genesis=f"../{GENESIS_FILE}", validator_key=key)
            config = load_config(home)
            load_genesis(config, home)
            load_validator_key(config, home, passphrase)
        except ConfigError as exc:
            raise DevnetError(f"{name}: {exc}") from exc
        except KeyFileError as exc:
            raise DevnetError(
                f"{name}: {exc} (validator keys made by an earlier run keep its {PASSPHRASE_ENV})"
            ) from exc
        except OSError as exc:
            raise DevnetError(f"cannot write {home / CONFIG_FILE}: {exc}") from exc


def _network_init(directory: Path, count: int, validators: int, passphrase: str) -> None:
    """Run ``toktok network init`` into ``directory``, allocating to every home's account."""
    args = [sys.executable, "-m", "node.cli", "network", "init", "--out", str(directory)]
    args += ["--validators", str(validators), "--name", NETWORK_NAME]
    for name in node_names(count):
        try:
            with Home(directory / name).open() as stores:
                _, public_key = default_account(stores)
        except (HomeError, StoreError) as exc:
            raise DevnetError(f"cannot read the account of {name}: {exc}") from exc
        args += ["--alloc", f"{account_to_text(public_key)}={ALLOCATION}"]
    env = dict(os.environ)
    env.pop("TOKTOK_HOME", None)
    env[PASSPHRASE_ENV] = passphrase
    try:
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=NETWORK_INIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DevnetError(
            f"'toktok network init' did not finish in {NETWORK_INIT_TIMEOUT_S:g} s"
        ) from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no message"]
        raise DevnetError(f"'toktok network init' failed ({proc.returncode}): {lines[-1]}")
    _step(
        f"made the genesis {relative(directory / GENESIS_FILE)}: {validators} validators "
        f"(n1 to n{validators}), {ALLOCATION} base units to each node's account"
    )


def _set_config(home: Path, *, genesis: str, validator_key: str) -> None:
    """Set the ledger keys in ``home``'s node.toml, rewriting it only when they change.

    Raises ConfigError for a node.toml that does not load, OSError when it cannot be written.
    """
    config = load_config(home)
    changed = dataclasses.replace(config, genesis=genesis, validator_key=validator_key)
    if changed == config:
        return
    changed.check()
    path = home / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_config(changed), encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------------------ running


def run(options: DevnetOptions, *, on_ready: ReadyHook | None = None) -> int:
    """Run the devnet until SIGINT, SIGTERM or SIGHUP; return the exit status (see the module doc).

    ``on_ready(nodes, video_id)`` is called once the network is up, before the hints are
    printed (make demo shows a node's videos there). Raises DevnetError when the network
    cannot start, after stopping whatever nodes it had started.
    """
    check_nodes(options.nodes)
    validators = validator_count(options)
    ports = listen_ports(options.nodes, options.base_port)
    passphrase = DEVNET_PASSPHRASE if options.passphrase is None else options.passphrase
    directory = options.directory.expanduser().absolute()
    reused = prepare(directory, options.nodes, passphrase)
    made = [n for n in node_names(options.nodes) if n not in reused]
    _step(f"devnet in {relative(directory)}: " + _homes_text(reused, made))
    prepare_ledger(directory, options.nodes, validators, passphrase)
    nodes: list[DevnetNode] = []
    status = 0
    with Signals() as signals:
        try:
            video = _bring_up(directory, ports, options, passphrase, nodes, signals)
            _announce(directory, nodes, video, options, on_ready)
            died = _watch(nodes, signals)
            if died is not None:
                code = exit_text(died.proc.returncode)
                _step(f"{died.name} ended on its own ({code}); see {died.log}")
                status = 1
        except Interrupted as exc:
            _step(f"{exc} while starting: stopping the {_count(len(nodes))} started")
            status = 130
        finally:
            if nodes:
                results = _stop_all(nodes, signals, options.json_lines)
                if not all(r.clean for r in results) and status == 0:
                    status = 1
    return status


def _count(nodes: int) -> str:
    return f"{nodes} node" if nodes == 1 else f"{nodes} nodes"


def _homes_text(reused: list[str], made: list[str]) -> str:
    parts = []
    if reused:
        parts.append(f"reusing the homes {', '.join(reused)}")
    if made:
        parts.append(f"creating {', '.join(made)}")
    return "; ".join(parts)


def _bring_up(
    directory: Path,
    ports: list[int],
    options: DevnetOptions,
    passphrase: str,
    nodes: list[DevnetNode],
    signals: Signals,
) -> str | None:
    """Start the nodes (into ``nodes``, as they start), connect them, publish the sample;
    return the sample's id."""
    names = node_names(options.nodes)
    nodes.append(_spawn(directory, names[0], ports[0], [], options.log_level, passphrase))
    _wait_ready(nodes[0], signals)
    for name, port in zip(names[1:], ports[1:], strict=True):
        bootstrap = [nodes[0].addr]
        web = options.http if name == names[-1] else None
        nodes.append(_spawn(directory, name, port, bootstrap, options.log_level, passphrase, web))
    # The sample is written while the other nodes start.
    sample = _write_sample(directory / SAMPLE_FILE, signals) if options.sample else None
    for node in nodes[1:]:
        _wait_ready(node, signals)
    _wait_connected(nodes, signals)
    if sample is None:
        return None
    video = _publish(nodes[0], sample, passphrase, signals)
    _wait_spread(nodes, video, signals)
    return video


def _spawn(
    directory: Path,
    name: str,
    port: int,
    bootstrap: list[str],
    log_level: str | None,
    passphrase: str,
    http: str | None = None,
) -> DevnetNode:
    home = directory / name
    role = "node" if bootstrap else "bootstrap"
    args = [sys.executable, "-m", "node.cli", "--home", str(home)]
    if log_level is not None:
        args += ["--log-level", log_level]
    args += [role, "run", "--listen", f"/ip4/{HOST}/tcp/{port}"]
    for addr in bootstrap:
        args += ["--bootstrap", addr]
    if http is not None:
        args += ["--http", http]
    log = directory / LOG_DIR / f"{name}.log"
    env = dict(os.environ)
    env.pop("TOKTOK_HOME", None)
    # A validator unlocks its key with it, at start, with no terminal to ask on.
    env[PASSPHRASE_ENV] = passphrase
    with log.open("wb") as log_file:
        # A session of its own: Ctrl-C reaches the devnet, which stops the nodes in order.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            start_new_session=True,
        )
    assert proc.stdout is not None
    ready_line: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
    threading.Thread(target=_read_ready, args=(proc.stdout, ready_line), daemon=True).start()
    _step(f"started {name} ({role}, pid {proc.pid})")
    return DevnetNode(name, role, home, log, proc, ready_line)


def _read_ready(stdout: IO[bytes], ready_line: "queue.Queue[bytes | None]") -> None:
    """Hand over the node's first line (None if it closed stdout first), drain the rest."""
    with stdout:
        ready_line.put(stdout.readline() or None)
        for _ in stdout:
            pass


def _wait_ready(node: DevnetNode, signals: Signals) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        signals.check()
        try:
            line = node.ready_line.get(timeout=POLL_S)
            break
        except queue.Empty:
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"{node.name} did not start in {READY_TIMEOUT_S:g} s; see {node.log}"
                ) from None
    if line is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=KILL_TIMEOUT_S)
        raise DevnetError(
            f"{node.name} exited ({node.proc.returncode}) before it was ready: "
            f"{_log_tail(node.log)} (log: {node.log})"
        )
    try:
        info = json.loads(line)
        node.peer_id, node.addr = str(info["peer_id"]), str(info["addrs"][0])
        node.web = info.get("web")
        node.control_port = node.client().info.port
    except (ValueError, KeyError, IndexError, TypeError, ControlClientError) as exc:
        raise DevnetError(f"{node.name} started, but its ready line is odd: {line!r}") from exc
    _step(f"{node.name} ready: {node.addr}")


def _log_tail(path: Path) -> str:
    """The last line of a node's log: the error that stopped it, as the CLI prints it."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "nothing logged"


def _wait_for(
    nodes: list[DevnetNode], signals: Signals, condition: Callable[[], bool], timeout_s: float
) -> bool:
    """Poll ``condition`` until it holds (True) or the time is up (False).

    Raises DevnetError when a node exits meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        for node in nodes:
            if node.proc.poll() is not None:
                raise DevnetError(
                    f"{node.name} exited ({node.proc.returncode}): {_log_tail(node.log)} "
                    f"(log: {node.log})"
                )
        try:
            if condition():
                return True
        except ControlClientError:
            pass  # a node busy or between states: ask again
        if time.monotonic() >= deadline:
            return False
        signals.sleep(POLL_S)


def _wait_connected(nodes: list[DevnetNode], signals: Signals) -> None:
    """Wait until peer exchange has connected every node to every other (or to as many as
    its dialer keeps: ``peers_target`` in its node.toml)."""
    try:
        wanted = {n.name: min(len(nodes) - 1, load_config(n.home).peers_target) for n in nodes}
    except ConfigError as exc:
        raise DevnetError(str(exc)) from exc
    counts = {node.name: 0 for node in nodes}

    def all_connected() -> bool:
        for node in nodes:
            counts[node.name] = int(node.call("status")["peers"])
        return all(counts[name] >= wanted[name] for name in counts)

    if not _wait_for(nodes, signals, all_connected, CONNECT_TIMEOUT_S):
        short = ", ".join(
            f"{name} has {count} of {wanted[name]}"
            for name, count in counts.items()
            if count < wanted[name]
        )
        raise DevnetError(
            f"the nodes did not connect in {CONNECT_TIMEOUT_S:g} s ({short} peers); "
            f"see the logs in {nodes[0].log.parent}"
        )
    if len(nodes) > 1:
        _step(f"connected: {', '.join(f'{n} to {c}' for n, c in counts.items())} peers")


def _write_sample(path: Path, signals: Signals) -> Path:
    with _progress() as update:

        def progress(fraction: float) -> None:
            signals.check()
            update("sample", fraction)

        try:
            write_sample(path, seconds=SAMPLE_SECONDS, height=SAMPLE_HEIGHT, progress=progress)
        except (VideoError, OSError) as exc:
            raise DevnetError(f"cannot write the sample video {path}: {exc}") from exc
    _step(f"wrote {relative(path)} ({SAMPLE_SECONDS:g} s, {SAMPLE_HEIGHT}p)")
    return path


def _publish(node: DevnetNode, sample: Path, passphrase: str, signals: Signals) -> str:
    """Publish ``sample`` on ``node`` through its control interface, as 'toktok publish'."""
    with _progress() as update:

        def progress(phase: str, fraction: float) -> None:
            signals.check()
            update(phase, fraction)

        try:
            result = stream(
                node.client(),
                "publish",
                progress,
                file=str(sample),
                title=SAMPLE_TITLE,
                description="published by 'toktok devnet --sample'",
                tags=["devnet"],
                license="CC0-1.0",
                as_account=None,
                passphrase=passphrase,
            )
        except (RemoteError, ControlClientError) as exc:
            hint = ""
            if "passphrase" in str(exc).lower():
                hint = f" (homes made by an earlier run keep its {PASSPHRASE_ENV})"
            raise DevnetError(f"publishing the sample on {node.name} failed: {exc}{hint}") from exc
    video = str(result["id"])
    _step(f"published the sample on {node.name}: {video}")
    return video


def _wait_spread(nodes: list[DevnetNode], video: str, signals: Signals) -> None:
    """Wait until every node holds the sample's manifest; say so either way."""
    holders: set[str] = set()

    def everywhere() -> bool:
        for node in nodes:
            if node.name not in holders and node.call("message", id=video)["held"]:
                holders.add(node.name)
        return len(holders) == len(nodes)

    if _wait_for(nodes, signals, everywhere, SPREAD_TIMEOUT_S):
        _step(f"the manifest reached all {len(nodes)} nodes")
    else:
        missing = ", ".join(n.name for n in nodes if n.name not in holders)
        _step(f"after {SPREAD_TIMEOUT_S:g} s the manifest is still missing on {missing}")


def _watch(nodes: list[DevnetNode], signals: Signals) -> DevnetNode | None:
    """Wait for a signal (None) or a node that exits on its own (that node)."""
    while True:
        for node in nodes:
            if node.proc.poll() is not None:
                return node
        try:
            signals.sleep(POLL_S)
        except Interrupted as exc:
            _step(f"{exc}: stopping the network")
            return None


def _stop_all(nodes: list[DevnetNode], signals: Signals, json_lines: bool) -> list[Stopped]:
    """SIGTERM to every node, STOP_TIMEOUT_S to exit, then SIGKILL; report each."""
    running = [n for n in nodes if n.proc.poll() is None]
    for node in running:
        with contextlib.suppress(ProcessLookupError):
            node.proc.send_signal(signal.SIGTERM)
    if running:
        _step(f"sent SIGTERM to {_count(len(running))} (a second signal kills at once)")
    signals_before = signals.count
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (
        any(n.proc.poll() is None for n in nodes)
        and time.monotonic() < deadline
        and signals.count == signals_before
    ):
        time.sleep(POLL_S)
    results = []
    for node in nodes:
        killed = node.proc.poll() is None
        if killed:
            node.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=KILL_TIMEOUT_S)
        result = Stopped(node.name, node.proc.pid, node.proc.returncode, killed)
        results.append(result)
        how = "killed" if killed else "stopped"
        _step(f"{node.name} {how} ({exit_text(result.exit_code)})")
    if json_lines:
        stopped = {"event": "stopped", "nodes": [dataclasses.asdict(r) for r in results]}
        print(json.dumps(stopped), flush=True)
    return results


# ------------------------------------------------------------------------------ output


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"ended by {signal.Signals(-code).name}"
    return f"exit {code}"


def _announce(
    directory: Path,
    nodes: list[DevnetNode],
    video: str | None,
    options: DevnetOptions,
    on_ready: ReadyHook | None,
) -> None:
    table = Table(title="toktok devnet")
    for column in ("node", "role", "peer id", "address", "control", "home"):
        # A narrow terminal folds peer ids and paths rather than cut them short.
        table.add_column(column, overflow="fold")
    for node in nodes:
        table.add_row(
            node.name,
            node.role,
            node.peer_id,
            node.addr.split("/p2p/")[0],
            str(node.control_port),
            str(relative(node.home)),
        )
    err.print(table)
    ready = {
        "event": "ready",
        "dir": str(directory),
        "video": video,
        "nodes": [n.summary() for n in nodes],
    }
    if options.json_lines:
        print(json.dumps(ready), flush=True)
    if on_ready is not None:
        on_ready(nodes, video)
    toktok = toktok_command()
    other = nodes[1] if len(nodes) > 1 else nodes[0]
    last = nodes[-1]
    lines = [
        f"{_count(len(nodes))} up; logs in {relative(directory / LOG_DIR)}.",
        "Try, in another terminal:",
        f"  {toktok} --home {relative(other.home)} peers",
        f"  {toktok} --home {relative(other.home)} videos",
        f"  {toktok} --home {relative(last.home)} status",
    ]
    if video is not None:
        lines.insert(0, f"sample video {video} (published on {nodes[0].name})")
        lines.append(f"  {toktok} --home {relative(last.home)} fetch {video[:16]}")
    for node in nodes:
        if node.web is not None:
            lines.insert(0, f"web app of {node.name} (open it in a browser): {node.web}")
    if options.passphrase is None:
        lines.append(
            f"Accounts use the devnet passphrase (local test networks only): "
            f"export {PASSPHRASE_ENV}='{DEVNET_PASSPHRASE}' before publish or follow."
        )
    lines.append("Stop the network with Ctrl-C (or kill -TERM " + str(os.getpid()) + ").")
    for line in lines:
        _step(line)


def toktok_command() -> str:
    """How to run toktok from here: by name when the PATH finds ours, else by its path."""
    ours = Path(sys.executable).parent / "toktok"
    found = shutil.which("toktok")
    if found is not None and Path(found).resolve() == ours.resolve():
        return "toktok"
    if ours.exists():
        return str(relative(ours))
    return f"{sys.executable} -m node.cli"


def relative(path: Path) -> Path:
    """``path`` relative to the current directory when it lies below it."""
    try:
        return path.absolute().relative_to(Path.cwd())
    except ValueError:
        return path


def _step(text: str) -> None:
    # Text, not markup: paths and peer ids must print as they are.
    err.print(Text(text))


def _progress() -> AbstractContextManager[Callable[[str, float], None]]:
    return progress_bar(err)
