"""Chunk store throughput beside raw plyvel, and envelope validation beside bare Ed25519.

Envelopes: follows (the commonest, smallest kind) and twenty-segment manifests are
fully validated with ``validate_message`` (size, canonical decoding of envelope and body,
signer, signature, the kind's rules) and, in the same run, their signatures alone are
checked with the same Ed25519 verify over the same signing inputs.

Chunks, in the same run: same bytes, same options.

Run from the repository root: ``.venv/bin/python bench/storage.py [--mib 256,1024] [--rounds 3]``.
For each chunk size it writes the same chunks once with bare ``plyvel.DB.put`` and once with
``ChunkStore.put`` (which hashes every chunk, then writes data, metadata, LRU entry and
counters in one batch), each into a fresh database with the store's LevelDB options, then
reads them back with ``plyvel.DB.get`` and ``ChunkStore.get`` (which re-hashes every chunk).

Writes are measured twice: a burst of 256 MiB, four times LevelDB's write buffer, where raw
puts mostly fill the memtable and the log and the store's SHA-256 shows in full; and 1 GiB
sustained, sixteen times the write buffer, where the background flushes and compactions
that any long stream of writes pays for (a node fetching and seeding video) set the pace
of both, and the store's hashing overlaps with them.

Before the reads, each database is compacted and dropped from the OS page cache
(posix_fadvise), then reopened. Reads are measured "cold", from the disk, as when serving
video from a store larger than memory, then "hot", the same reads again from the page cache.
Hot raw reads of 1 MiB values run at memory-copy speed, so there the store's SHA-256 (about
1.7 GB/s on one core) bounds the ratio. ``os.sync()`` runs before each timed part so that
writeback of earlier data is not billed to it. Raw and store alternate in going first.
Every figure is the median over the rounds; MB is 10**6 bytes. The last line printed is one
JSON object with every figure.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file would shadow
# the ``storage`` package it measures: put the repository root first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import plyvel

from protocol.accounts import verify
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal, signing_input
from protocol.kinds import Follow
from protocol.validate import validate_message, verify_envelope
from storage.chunks import ChunkStore
from storage.keys import chunk_data_key
from storage.kv import LEVELDB_OPTIONS, LevelDBKV

CHUNK_SIZES = (256 * 2**10, 2**20)
MB = 10**6

Chunks = list[tuple[bytes, bytes]]


def make_chunks(chunk_bytes: int, total_bytes: int) -> Chunks:
    """Distinct incompressible chunks (like video) and their ids."""
    chunks = []
    for _ in range(total_bytes // chunk_bytes):
        data = os.urandom(chunk_bytes)
        chunks.append((chunk_id(data), data))
    return chunks


def drop_page_cache(path: Path) -> None:
    """Evict the database files from the OS page cache, so the next reads hit the disk."""
    for file in path.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def settle(path: Path) -> None:
    """Compact the database fully, then drop it from the page cache.

    Without this, reopening replays the write-ahead log into a fresh (cached) table and
    background compactions run during the reads; raw and store databases get the same.
    """
    db = plyvel.DB(str(path), **LEVELDB_OPTIONS)
    db.compact_range()
    db.close()
    drop_page_cache(path)


def timed(work: Callable[[], object]) -> float:
    # Flush other dirty pages first, so that the kernel's writeback throttling of an earlier
    # measurement's data does not land on this one.
    os.sync()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def raw_put_s(path: Path, chunks: Chunks) -> float:
    """Seconds to write every chunk with plyvel.DB.put into a fresh database."""
    db = plyvel.DB(str(path), create_if_missing=True, **LEVELDB_OPTIONS)

    def work() -> None:
        for cid, data in chunks:
            db.put(chunk_data_key(cid), data)

    seconds = timed(work)
    db.close()
    return seconds


def store_put_s(path: Path, chunks: Chunks) -> float:
    """Seconds to store (hash, then write) every chunk with ChunkStore.put, fresh database."""
    kv = LevelDBKV(str(path))
    store = ChunkStore(kv)

    def work() -> None:
        for cid, data in chunks:
            store.put(cid, data)

    seconds = timed(work)
    store.close()
    kv.close()
    return seconds


def raw_get_s(path: Path, chunks: Chunks) -> tuple[float, float]:
    """Seconds to read every chunk with plyvel.DB.get, from disk then from the page cache."""
    settle(path)
    db = plyvel.DB(str(path), **LEVELDB_OPTIONS)

    def work() -> None:
        for cid, data in chunks:
            if len(db.get(chunk_data_key(cid))) != len(data):
                raise AssertionError("raw read returned the wrong value")

    cold, hot = timed(work), timed(work)
    db.close()
    return cold, hot


def store_get_s(path: Path, chunks: Chunks) -> tuple[float, float]:
    """Seconds to read and verify every chunk with ChunkStore.get, from disk then cached."""
    settle(path)
    kv = LevelDBKV(str(path), create=False)
    store = ChunkStore(kv)

    def work() -> None:
        for cid, data in chunks:
            if len(store.get(cid)) != len(data):
                raise AssertionError("store read returned the wrong value")

    cold, hot = timed(work), timed(work)
    store.close()
    kv.close()
    return cold, hot


def one_round(chunks: Chunks, workdir: Path, mb: float, raw_first: bool) -> dict[str, float]:
    """MB/s of every measurement once, each in a fresh database."""
    out: dict[str, float] = {}
    for kind in ("raw", "store") if raw_first else ("store", "raw"):
        path = workdir / kind
        if kind == "raw":
            out["raw_put_MBps"] = mb / raw_put_s(path, chunks)
            cold, hot = raw_get_s(path, chunks)
            out["raw_get_MBps"], out["raw_get_hot_MBps"] = mb / cold, mb / hot
        else:
            out["store_put_MBps"] = mb / store_put_s(path, chunks)
            cold, hot = store_get_s(path, chunks)
            out["store_get_MBps"], out["store_get_hot_MBps"] = mb / cold, mb / hot
        shutil.rmtree(path)
    return out


def chunk_case(chunk_bytes: int, total_bytes: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Raw and store figures for one chunk size, each the median over ``rounds``."""
    chunks = make_chunks(chunk_bytes, total_bytes)
    mb = len(chunks) * chunk_bytes / MB
    # Alternate which goes first, so drift in the machine's state favours neither.
    runs = [one_round(chunks, workdir, mb, i % 2 == 0) for i in range(rounds)]
    m = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
    return {
        "chunk_bytes": chunk_bytes,
        "chunks": len(chunks),
        "raw_put_MBps": m["raw_put_MBps"],
        "store_put_MBps": m["store_put_MBps"],
        "put_ratio": round(m["store_put_MBps"] / m["raw_put_MBps"], 3),
        "raw_get_MBps": m["raw_get_MBps"],
        "store_get_MBps": m["store_get_MBps"],
        "get_ratio": round(m["store_get_MBps"] / m["raw_get_MBps"], 3),
        "raw_get_hot_MBps": m["raw_get_hot_MBps"],
        "store_get_hot_MBps": m["store_get_hot_MBps"],
        "get_hot_ratio": round(m["store_get_hot_MBps"] / m["raw_get_hot_MBps"], 3),
    }


def envelope_case(kind: str, messages: list[SignedMessage], rounds: int) -> dict[str, Any]:
    """Per second, in the same run and alternating: envelopes verified (``verify_envelope``:
    decoded, signature checked over the exact body bytes), envelopes fully validated
    (``validate_message``: also the body decoded and the kind's rules), and bare Ed25519
    verifications of the same signatures over the same signing inputs. Medians of rounds."""
    now = max(m.record.created_ms for m in messages)
    bare_args = [
        (m.envelope.signer, signing_input(m.envelope.kind, m.envelope.body), m.envelope.sig)
        for m in messages
    ]
    raws = [m.raw for m in messages]

    def verified() -> None:
        for raw in raws:
            verify_envelope(raw)

    def validated() -> None:
        for raw in raws:
            validate_message(raw, now)

    def bare() -> None:
        for signer, message, sig in bare_args:
            if not verify(signer, message, sig):
                raise AssertionError("a bench signature failed to verify")

    works: dict[str, Callable[[], None]] = {
        "verified": verified,
        "validated": validated,
        "bare": bare,
    }
    rates: dict[str, list[float]] = {name: [] for name in works}
    for i in range(rounds):
        names = list(works) if i % 2 == 0 else list(reversed(works))
        for name in names:
            started = time.perf_counter()
            works[name]()
            rates[name].append(len(messages) / (time.perf_counter() - started))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "kind": kind,
        "envelope_bytes_mean": round(statistics.mean(len(r) for r in raws)),
        "verified_per_s": round(rate["verified"]),
        "validated_per_s": round(rate["validated"]),
        "bare_verify_per_s": round(rate["bare"]),
        "verified_ratio": round(rate["verified"] / rate["bare"], 3),
        "validated_ratio": round(rate["validated"] / rate["bare"], 3),
    }


def envelope_messages(count: int) -> dict[str, list[SignedMessage]]:
    """Signed follows and twenty-segment manifests from ``count`` accounts."""
    from tests.factories import NOW_MS, account, fake_video, sealed_manifest

    follows, manifests = [], []
    for i in range(count):
        key, other = account(i), account(i + 1)
        follows.append(
            seal(key, Follow(author=key.public_key, created_ms=NOW_MS, target=other.public_key))
        )
        if i < count // 4:
            chunks = fake_video(b"bench-%d" % i, segments=20, segment_bytes=64)
            manifests.append(sealed_manifest(key, chunks))
    return {"follow": follows, "manifest": manifests}


def print_case(case: dict[str, Any]) -> None:
    print(
        f"{case['mib']} MiB in {case['chunk_bytes'] // 1024} KiB chunks x {case['chunks']}:\n"
        f"  put       raw {case['raw_put_MBps']:8.1f} MB/s   store {case['store_put_MBps']:8.1f}"
        f" MB/s   {case['put_ratio']:.0%} (goal 80%)\n"
        f"  get cold  raw {case['raw_get_MBps']:8.1f} MB/s   store {case['store_get_MBps']:8.1f}"
        f" MB/s   {case['get_ratio']:.0%} (goal 50%)\n"
        f"  get hot   raw {case['raw_get_hot_MBps']:8.1f} MB/s   store "
        f"{case['store_get_hot_MBps']:8.1f} MB/s   {case['get_hot_ratio']:.0%}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every measurement, print readable lines, and return all figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--mib",
        default="256,1024",
        help="MiB written per case and round, comma-separated (a burst, then sustained)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (median taken)")
    parser.add_argument("--envelopes", type=int, default=5000, help="envelopes per round")
    args = parser.parse_args(argv)
    volumes = [int(part) for part in args.mib.split(",")]
    result: dict[str, Any] = {"bench": "storage", "rounds": args.rounds, "cases": []}
    result["envelopes"] = []
    for kind, messages in envelope_messages(args.envelopes).items():
        row = envelope_case(kind, messages, args.rounds)
        print(
            f"{kind} envelopes ({row['envelope_bytes_mean']} bytes): "
            f"{row['bare_verify_per_s']}/s bare Ed25519 verifications; "
            f"{row['verified_per_s']}/s envelopes verified, {row['verified_ratio']:.0%} "
            f"(goal 80%); {row['validated_per_s']}/s fully validated, "
            f"{row['validated_ratio']:.0%}",
            flush=True,
        )
        result["envelopes"].append(row)
    with tempfile.TemporaryDirectory(prefix="toktok-bench-") as tmp:
        for mib in volumes:
            for chunk_bytes in CHUNK_SIZES:
                case = {"mib": mib, **chunk_case(chunk_bytes, mib * 2**20, args.rounds, Path(tmp))}
                print_case(case)
                result["cases"].append(case)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
