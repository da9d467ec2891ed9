"""Swarm download of a video from one and from four seeders, beside a raw libp2p stream.

Run from the repository root: ``.venv/bin/python bench/swarm.py [--mb 200] [--rounds 3]``.

The video: transcoding a real one would take minutes, and chunks are opaque to the swarm,
so it is a valid signed manifest whose segments are ``--chunk-kib`` KiB of random bytes
(one rendition, with a small thumbnail and init chunk), about ``--mb`` MB in all. Before
any node starts, its chunks and manifest are stored, pinned as the node's own, in the
homes of five seeders, signed by an account of theirs, and the manifest is put in their
message logs, so that sync hands it to whoever connects. One seeder runs alone; the four
others run as a network of their own (the first the others' bootstrap node), so that a
fetcher of the one-seeder case cannot find the other four.

Each round, for each case, a fetcher starts over a fresh home, bootstrapping to the
seeder(s); it waits until it is connected to all of them and holds the manifest (sync on
connect), then the ``fetch`` control call (the streaming call of ``toktok fetch``) is
timed with the wall clock until its result: provider lookup, download, hash checks and
storage of every chunk. The time to the first chunk is reported too (the node looks
providers up in the DHT before it asks for any chunk), and the rate from there on. Every
node has ``replicas = 1``, and each fetcher's node key is drawn until placement does not
make it a seeder of the video, so that nothing else fetches it meanwhile. The fetcher is
stopped and its home deleted after each round.

The raw case, in the same run: two processes of this script (``--raw-serve`` and
``--raw-fetch``), each a py-libp2p host built as the node builds its own (TCP, Noise,
Yamux), send the same number of bytes over one stream in 256 KiB writes, read 256 KiB at
a time; timed from opening the stream (the connection is up already) to the last byte.

The order of the cases turns each round, so drift in the machine's state favours none.
Figures are medians over the rounds; MB is 10**6 bytes. Seeders read chunks from the page
cache (they were just written). The CPU each side burnt is reported as cores used over
the transfer, beside what everything else on the machine used meanwhile (other work there
skews the figures). Every process is stopped at the end, on errors and on Ctrl-C too.
The last line printed is one JSON object with every figure.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node``, ``storage`` and ``tests`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from rich.progress import Progress

from bench.idle import (
    cpu_seconds,
    machine_cpu_s,
    measured,
    start_into,
    stop_all,
)
from node.config import NodeConfig, write_config
from node.controlclient import ControlClient
from node.home import Home
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage
from protocol.kinds import CHUNK_BYTES_MAX, DURATION_MS_MAX, SEGMENTS_MAX
from storage.chunks import PinReason
from storage.kv import Batch
from storage.messages import MessageLog
from tests.cli_helpers import PASSPHRASE
from tests.factories import account, sealed_manifest
from tests.netharness import NodeProc, fetcher_home, node_peer_id, wait_for

MB = 10**6
RATIO_GOAL = 0.8
RAW_PROTOCOL = "/toktok-bench/raw/1.0.0"
IO_BYTES = 256 * 1024
"""Write and read size of the raw case: the node's chunk reads (node/swarm.py READ_BYTES)."""
RAW_BLOCK_BYTES = 16 * 2**20
"""Random bytes the raw server cycles through (the contents do not matter to Noise)."""
SEGMENT_MS = 2000
"""tests/factories.py gives every segment 2 s: the manifest's duration bounds the count."""
THUMBNAIL_BYTES = 30_000
INIT_BYTES = 1_000
FOUR = 4
CREATOR = account(0)
READY_TIMEOUT_S = 60.0
FETCH_TIMEOUT_S = 600.0


# ---------------------------------------------------------------------------- the video


def make_video(mb: float, chunk_bytes: int) -> tuple[SignedMessage, list[bytes]]:
    """A signed manifest of about ``mb`` MB of random segments, and its chunks."""
    segments = math.ceil(mb * MB / chunk_bytes)
    most = min(SEGMENTS_MAX, DURATION_MS_MAX // SEGMENT_MS)
    if segments > most:
        raise SystemExit(f"{segments} segments of {chunk_bytes} bytes: at most {most}")
    chunks = [os.urandom(THUMBNAIL_BYTES), os.urandom(INIT_BYTES)]
    chunks += [os.urandom(chunk_bytes) for _ in range(segments)]
    created_ms = time.time_ns() // 1_000_000
    message = sealed_manifest(CREATOR, chunks, created_ms=created_ms, title="swarm bench")
    return message, chunks


def seeder_home(path: Path, message: SignedMessage, chunks: Sequence[bytes]) -> Path:
    """A home whose account made the video: chunks and manifest stored, pinned as its own,
    and the manifest in the message log, as ``toktok publish`` leaves them."""
    Home(path).init(account_name="creator", passphrase=PASSPHRASE, seed=CREATOR.seed)
    write_config(path, NodeConfig().override(replicas=1))
    with Home(path).open() as stores:
        for data in chunks:
            stores.chunks.put(chunk_id(data), data, pin=PinReason.OWN)
        stores.manifests.put(message, pin=PinReason.OWN)
        batch = Batch()
        if MessageLog(stores.kv).stage(batch, message):
            stores.kv.write(batch)
    return path


# ---------------------------------------------------------------------------- node cases


@dataclass
class Swarm:
    """Running seeders of one case, and where to put its fetchers."""

    name: str
    seeders: list[NodeProc]
    workdir: Path
    rounds: int = 0

    @property
    def peer_ids(self) -> list[bytes]:
        return [node_peer_id(s.home) for s in self.seeders]


def timed_fetch(
    fetcher: NodeProc, mid: str, report: Callable[[float], None]
) -> tuple[float, float]:
    """Seconds to the first chunk and to the result of the ``fetch`` call."""
    client = ControlClient.from_home(fetcher.home, stream_read_timeout_s=FETCH_TIMEOUT_S)
    first: float | None = None
    started = time.perf_counter()
    for item in client.stream("fetch", id=mid):
        if "result" in item:
            done = time.perf_counter() - started
            return (done if first is None else first), done
        fraction = float(item.get("fraction", 0.0))
        if first is None and fraction > 0:
            first = time.perf_counter() - started
        report(fraction)
    raise RuntimeError("the fetch call ended without a result")


def fetch_round(swarm: Swarm, mid: bytes, total: int, bar: Progress) -> dict[str, float]:
    """One fetch of the whole video by a fresh fetcher of ``swarm``'s seeders."""
    swarm.rounds += 1
    home = fetcher_home(swarm.workdir / f"fetcher-{swarm.rounds}", mid, swarm.peer_ids)
    task = bar.add_task(f"{swarm.name} {swarm.rounds}", total=1.0)
    started: list[NodeProc] = []
    try:
        fetcher = start_into(started, home, [s.addr for s in swarm.seeders])
        wanted = len(swarm.seeders)
        wait_for(
            lambda: (
                fetcher.status()["peers"] >= wanted
                and fetcher.call("message", id=mid.hex())["held"]
            ),
            timeout_s=READY_TIMEOUT_S,
            what=f"the fetcher to connect to {wanted} seeders and learn the manifest",
        )
        pids = [fetcher.proc.pid] + [s.proc.pid for s in swarm.seeders]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        machine_before = machine_cpu_s()
        first_s, seconds = timed_fetch(fetcher, mid.hex(), lambda f: bar.update(task, completed=f))
        machine_s = machine_cpu_s() - machine_before
        cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        status = fetcher.status()
    finally:
        stop_all(started)
        bar.remove_task(task)
        shutil.rmtree(home, ignore_errors=True)
    if status["seeded"]:
        raise RuntimeError("the fetcher seeded the video by placement while it was timed")
    return {
        "MBps": total / MB / seconds,
        "seconds": seconds,
        "first_chunk_s": first_s,
        "after_first_MBps": total / MB / (seconds - first_s),
        "fetcher_cores": cpu[0] / seconds,
        "seeder_cores": sum(cpu[1:]) / seconds,
        "others_cores": (machine_s - sum(cpu)) / seconds,
    }


@contextmanager
def seeders(name: str, homes: Sequence[Path], workdir: Path) -> Iterator[Swarm]:
    """Seeder nodes over ``homes``, the first the others' bootstrap node; stopped at the end."""
    nodes: list[NodeProc] = []
    try:
        for i, home in enumerate(homes):
            start_into(nodes, home, [nodes[0].addr] if i else [])
        wanted = len(nodes) - 1
        wait_for(
            lambda: all(node.status()["peers"] >= wanted for node in nodes),
            timeout_s=READY_TIMEOUT_S,
            what="the seeders to connect to each other",
        )
        yield Swarm(name, nodes, workdir)
    finally:
        stop_all(nodes)


# ---------------------------------------------------------------------------- raw case


async def _raw_serve() -> None:
    host = _raw_host()
    block = os.urandom(RAW_BLOCK_BYTES)

    async def handle(stream: Any) -> None:
        wanted = int.from_bytes(await _read_exactly(stream, 8), "big")
        sent = 0
        while sent < wanted:
            start = sent % RAW_BLOCK_BYTES
            piece = block[start : start + min(IO_BYTES, wanted - sent)]
            await stream.write(piece)
            sent += len(piece)
        await stream.close()

    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen):
        host.set_stream_handler(TProtocol(RAW_PROTOCOL), handle)
        print(json.dumps({"addrs": [str(a) for a in host.get_addrs()]}), flush=True)
        await trio.sleep_forever()


async def _raw_fetch(addr: str, total: int) -> dict[str, float]:
    host = _raw_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        await host.connect(info)
        cpu_before, machine_before = _own_cpu_s(), machine_cpu_s()
        started = time.perf_counter()
        stream = await host.new_stream(info.peer_id, [TProtocol(RAW_PROTOCOL)])
        await stream.write(total.to_bytes(8, "big"))
        received = 0
        while received < total:
            try:
                data = await stream.read(IO_BYTES)
            except StreamEOF:
                break
            if not data:
                break
            received += len(data)
        seconds = time.perf_counter() - started
        cpu = _own_cpu_s() - cpu_before
        machine_s = machine_cpu_s() - machine_before
        await stream.close()
    if received != total:
        raise RuntimeError(f"raw stream ended after {received} of {total} bytes")
    return {"seconds": seconds, "cpu_s": cpu, "machine_s": machine_s}


def _raw_host() -> Any:
    """A py-libp2p host built as node/daemon.py builds the node's (TCP, Noise, Yamux)."""
    return new_host(
        key_pair=create_new_key_pair(os.urandom(32)),
        muxer_preference="YAMUX",
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )


async def _read_exactly(stream: Any, count: int) -> bytes:
    data = b""
    while len(data) < count:
        piece = await stream.read(count - len(data))
        if not piece:
            raise EOFError(f"stream ended after {len(data)} of {count} bytes")
        data += piece
    return data


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def raw_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """This script serving raw streams in a process of its own; yields it and its address."""
    args = [sys.executable, __file__, "--raw-serve"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = _readline(proc.stdout, READY_TIMEOUT_S)
        if not line:
            raise RuntimeError("the raw server did not start")
        yield proc, json.loads(line)["addrs"][0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _readline(stream: Any, timeout_s: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return lines[0] if lines else ""


def raw_round(server: subprocess.Popen[str], addr: str, total: int) -> dict[str, float]:
    """One raw transfer of ``total`` bytes, received by a fresh process."""
    cpu_before = cpu_seconds(server.pid)
    args = [sys.executable, __file__, "--raw-fetch", addr, "--bytes", str(total)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"the raw fetch failed:\n{done.stderr}")
    # The server's CPU is counted from before the receiver starts: the connection's
    # handshake is in it, a small part of the whole.
    server_cpu = cpu_seconds(server.pid) - cpu_before
    result = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = float(result["seconds"])
    return {
        "MBps": total / MB / seconds,
        "seconds": seconds,
        "first_chunk_s": 0.0,
        "after_first_MBps": total / MB / seconds,
        "fetcher_cores": float(result["cpu_s"]) / seconds,
        "seeder_cores": server_cpu / seconds,
        "others_cores": (float(result["machine_s"]) - float(result["cpu_s"]) - server_cpu)
        / seconds,
    }


# ---------------------------------------------------------------------------- the run


def median_of(rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in rounds[0]}


def measure(args: argparse.Namespace, root: Path, bar: Progress) -> dict[str, Any]:
    task = bar.add_task("seeder homes", total=1 + FOUR)
    message, chunks = make_video(args.mb, args.chunk_kib * 1024)
    total, count = sum(map(len, chunks)), len(chunks)
    homes = []
    for i in range(1 + FOUR):
        homes.append(seeder_home(root / f"seeder-{i}", message, chunks))
        bar.advance(task)
    del chunks  # the seeders hold them now: 200 MB less in this process
    runs: dict[str, list[dict[str, float]]] = {"raw": [], "one": [], "four": []}
    with (
        raw_server() as (server, addr),
        seeders("1 seeder", homes[:1], root) as one,
        seeders(f"{FOUR} seeders", homes[1:], root) as four,
    ):
        cases: dict[str, Callable[[], dict[str, float]]] = {
            "raw": lambda: raw_round(server, addr, total),
            "one": lambda: fetch_round(one, message.id, total, bar),
            "four": lambda: fetch_round(four, message.id, total, bar),
        }
        names = list(cases)
        for r in range(args.rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                runs[name].append(cases[name]())
    m = {name: median_of(values) for name, values in runs.items()}
    return {
        "bench": "swarm",
        "bytes": total,
        "chunks": count,
        "chunk_bytes": args.chunk_kib * 1024,
        "rounds": args.rounds,
        "raw_MBps": round(m["raw"]["MBps"], 1),
        "one_seeder_MBps": round(m["one"]["MBps"], 1),
        "four_seeders_MBps": round(m["four"]["MBps"], 1),
        "one_seeder_ratio": round(m["one"]["MBps"] / m["raw"]["MBps"], 3),
        "four_seeders_ratio": round(m["four"]["MBps"] / m["raw"]["MBps"], 3),
        "raw": m["raw"],
        "one_seeder": m["one"],
        "four_seeders": m["four"],
        "cpus": os.cpu_count(),
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"video: {r['bytes'] / MB:.1f} MB in {r['chunks']} chunks of up to "
        f"{r['chunk_bytes'] // 1024} KiB; medians of {r['rounds']} rounds",
        flush=True,
    )
    for label, key in (
        ("raw stream", "raw"),
        ("1 seeder", "one_seeder"),
        ("4 seeders", "four_seeders"),
    ):
        c = r[key]
        print(
            f"  {label:<10} {c['MBps']:7.1f} MB/s  {c['seconds']:6.2f} s "
            f"(first chunk after {c['first_chunk_s']:.2f} s, {c['after_first_MBps']:.1f} MB/s "
            f"from there); fetcher {c['fetcher_cores']:.2f} "
            f"cores, sender(s) {c['seeder_cores']:.2f}, everything else {c['others_cores']:.2f}",
            flush=True,
        )
    print(
        f"1 seeder: {r['one_seeder_ratio']:.0%} of the raw stream (goal {RATIO_GOAL:.0%}); "
        f"4 seeders: {r['four_seeders_ratio']:.0%}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=200.0, help="size of the video, MB")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="segment size, KiB")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (median)")
    parser.add_argument("--raw-serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-fetch", metavar="ADDR", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_serve or args.raw_fetch:
        if args.raw_serve:
            trio.run(_raw_serve)
            return None
        print(json.dumps(trio.run(_raw_fetch, args.raw_fetch, args.bytes)), flush=True)
        return None
    if not 1 <= args.chunk_kib * 1024 <= CHUNK_BYTES_MAX or args.rounds < 1 or args.mb <= 0:
        parser.error(
            f"--chunk-kib 1 to {CHUNK_BYTES_MAX // 1024}, --rounds at least 1, --mb above 0"
        )
    result = measured("swarm", args, measure)
    report(result)
    return result


if __name__ == "__main__":
    result = main()
    if result is not None:
        print(json.dumps(result))
