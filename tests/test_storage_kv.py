"""The KV seam: MemoryKV and LevelDBKV must behave identically."""

import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.errors import StoreClosed, StoreCorrupt, StoreError, StoreLocked
from storage.keys import chunk_lru_key, split_chunk_lru_key, u64
from storage.kv import KV, Batch, LevelDBKV, MemoryKV, key_range, read_through


def make_kv(kind: str, path: Path) -> KV:
    return MemoryKV() if kind == "memory" else LevelDBKV(str(path))


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store = make_kv(request.param, tmp_path / "db")
    yield store
    store.close()


def write(kv: KV, *puts: tuple[bytes, bytes], deletes: tuple[bytes, ...] = ()) -> None:
    batch = Batch()
    for key, value in puts:
        batch.put(key, value)
    for key in deletes:
        batch.delete(key)
    kv.write(batch)


def test_get_put_delete(kv: KV) -> None:
    assert kv.get(b"a") is None
    write(kv, (b"a", b"1"), (b"b", b""))
    assert kv.get(b"a") == b"1"
    assert kv.get(b"b") == b""  # an empty value is a value, not an absence
    write(kv, deletes=(b"a", b"missing"))
    assert kv.get(b"a") is None
    assert kv.get(b"b") == b""


def test_batch_keeps_last_op_per_key(kv: KV) -> None:
    batch = Batch()
    batch.put(b"k", b"1")
    batch.delete(b"k")
    batch.put(b"j", b"1")
    batch.put(b"j", b"2")
    assert len(batch) == 2
    assert b"k" in batch and b"x" not in batch
    assert batch.pending(b"k") is None
    assert batch.pending(b"j") == b"2"
    assert batch.ops() == [(b"k", None), (b"j", b"2")]
    with pytest.raises(KeyError):
        batch.pending(b"x")
    kv.write(batch)
    assert kv.get(b"k") is None
    assert kv.get(b"j") == b"2"


def test_read_through_sees_staged_ops(kv: KV) -> None:
    write(kv, (b"a", b"old"), (b"b", b"kept"))
    batch = Batch()
    batch.put(b"a", b"new")
    batch.delete(b"b")
    assert read_through(kv, b"a", batch) == b"new"
    assert read_through(kv, b"b", batch) is None
    assert read_through(kv, b"a", None) == b"old"
    assert kv.get(b"b") == b"kept"


def test_on_write_callbacks_run_once_after_the_write(kv: KV) -> None:
    seen: list[bytes | None] = []
    batch = Batch()
    batch.put(b"a", b"1")
    batch.on_write(lambda: seen.append(kv.get(b"a")))
    kv.write(batch)
    assert seen == [b"1"]
    kv.write(batch)
    assert seen == [b"1"]
    empty = Batch()
    empty.on_write(lambda: seen.append(None))
    kv.write(empty)
    assert seen == [b"1", None]


@pytest.mark.parametrize(
    "op",
    [
        lambda b: b.put("a", b"1"),
        lambda b: b.put(b"a", "1"),
        lambda b: b.put(bytearray(b"a"), b"1"),
        lambda b: b.delete("a"),
    ],
)
def test_invalid_non_bytes_rejected(op: Callable[[Batch], None]) -> None:
    with pytest.raises(TypeError):
        op(Batch())


def test_invalid_get_with_str(kv: KV) -> None:
    with pytest.raises(TypeError):
        kv.get("a")  # type: ignore[arg-type]


KEYS = [b"", b"\x00", b"a", b"a\x00", b"ab", b"a\xff", b"a\xff\xff", b"b", b"\xff", b"\xff\x01"]


def test_iterate_prefix_order_and_values(kv: KV) -> None:
    write(kv, *[(k, b"v" + k) for k in reversed(KEYS)])
    assert list(kv.iterate(b"")) == [(k, b"v" + k) for k in KEYS]
    assert [k for k, _ in kv.iterate(b"a")] == [b"a", b"a\x00", b"ab", b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"a\xff")] == [b"a\xff", b"a\xff\xff"]
    assert [k for k, _ in kv.iterate(b"\xff")] == [b"\xff", b"\xff\x01"]
    assert list(kv.iterate(b"c")) == []
    assert list(kv.iterate(b"b", include_value=False)) == [(b"b", b"")]


def test_iterate_start_and_reverse(kv: KV) -> None:
    write(kv, *[(k, b"") for k in KEYS])

    def keys(prefix: bytes, start: bytes | None = None, reverse: bool = False) -> list[bytes]:
        return [k for k, _ in kv.iterate(prefix, start=start, reverse=reverse)]

    assert keys(b"a", reverse=True) == [b"a\xff\xff", b"a\xff", b"ab", b"a\x00", b"a"]
    assert keys(b"a", start=b"a\xff") == [b"a\xff", b"a\xff\xff"]
    assert keys(b"a", start=b"a\x01") == [b"ab", b"a\xff", b"a\xff\xff"]
    assert keys(b"a", start=b"a\xff", reverse=True) == [b"a\xff", b"ab", b"a\x00", b"a"]
    assert keys(b"a", start=b"zz", reverse=True) == keys(b"a", reverse=True)  # beyond prefix
    assert keys(b"", start=b"", reverse=True) == [b""]  # plyvel 1.5 alone returns []
    assert keys(b"a", start=b"0") == keys(b"a")  # start before the prefix
    assert keys(b"a", start=b"zz") == []
    assert keys(b"a", start=b"0", reverse=True) == []


@pytest.mark.parametrize(
    ("prefix", "start", "reverse", "expected"),
    [
        (b"a", None, False, (b"a", b"b", False)),
        (b"a\xff", None, False, (b"a\xff", b"b", False)),
        (b"\xff\xff", None, False, (b"\xff\xff", None, False)),
        (b"", None, True, (b"", None, False)),
        (b"a", b"a5", False, (b"a5", b"b", False)),
        (b"a", b"a5", True, (b"a", b"a5", True)),
        (b"a", b"c", True, (b"a", b"b", False)),
        (b"\xff", b"\xff\x05", True, (b"\xff", b"\xff\x05", True)),
    ],
)
def test_key_range(
    prefix: bytes,
    start: bytes | None,
    reverse: bool,
    expected: tuple[bytes, bytes | None, bool],
) -> None:
    assert key_range(prefix, start, reverse) == expected


def test_iteration_is_a_snapshot(kv: KV) -> None:
    write(kv, (b"k1", b"1"), (b"k2", b"2"), (b"k3", b"3"))
    it = kv.iterate(b"k")
    assert next(it) == (b"k1", b"1")
    write(kv, (b"k2", b"changed"), (b"k25", b"new"), deletes=(b"k3",))
    assert list(it) == [(b"k2", b"2"), (b"k3", b"3")]


def test_closed_store_raises(kv: KV) -> None:
    kv.close()
    kv.close()  # harmless
    with pytest.raises(StoreClosed):
        kv.get(b"a")
    with pytest.raises(StoreClosed):
        kv.iterate(b"")
    with pytest.raises(StoreClosed):
        kv.write(Batch())


def test_context_manager_closes(tmp_path: Path) -> None:
    with LevelDBKV(str(tmp_path / "db")) as kv:
        write(kv, (b"a", b"1"))
    with pytest.raises(StoreClosed):
        kv.get(b"a")


def test_leveldb_persists_across_reopen(tmp_path: Path) -> None:
    with LevelDBKV(str(tmp_path / "db")) as kv:
        write(kv, (b"a", b"1"))
    with LevelDBKV(str(tmp_path / "db"), create=False) as kv:
        assert kv.get(b"a") == b"1"


def test_invalid_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        LevelDBKV(str(tmp_path / "absent"), create=False)


def test_invalid_second_handle_in_this_process(tmp_path: Path) -> None:
    with LevelDBKV(str(tmp_path / "db")), pytest.raises(StoreLocked, match="in use"):
        LevelDBKV(str(tmp_path / "db"))


def test_invalid_database_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    holder_code = (
        "import sys; from storage.kv import LevelDBKV\n"
        f"kv = LevelDBKV({str(path)!r}); print('ready', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(StoreLocked, match="another process"):
            LevelDBKV(str(path))
        holder.stdin.close()  # the holder exits, which releases the lock
    LevelDBKV(str(path)).close()


def test_invalid_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LevelDBKV(str(path)) as kv:
        write(kv, (b"a", b"1"))
    for manifest in path.glob("MANIFEST-*"):
        manifest.write_bytes(b"not a leveldb manifest" * 4)
    with pytest.raises(StoreCorrupt, match="damaged"):
        LevelDBKV(str(path))


# Few distinct bytes, so that generated keys share prefixes and hit the 0xff edge cases.
key_st = st.binary(max_size=3).map(lambda b: bytes(x % 3 * 0x7F for x in b))
op_st = st.one_of(
    st.tuples(st.just("put"), key_st, st.binary(max_size=4)),
    st.tuples(st.just("delete"), key_st, st.none()),
)
query_st = st.tuples(key_st, st.none() | key_st, st.booleans(), st.booleans())


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(op_st, max_size=6), max_size=6),
    queries=st.lists(query_st, max_size=6),
)
def test_backends_agree_on_random_operations(
    batches: list[list[tuple[str, bytes, bytes | None]]],
    queries: list[tuple[bytes, bytes | None, bool, bool]],
) -> None:
    model: dict[bytes, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp, LevelDBKV(tmp + "/db") as disk, MemoryKV() as mem:
        for ops in batches:
            batch = Batch()
            for _op, key, value in ops:
                if value is None:
                    batch.delete(key)
                    model.pop(key, None)
                else:
                    batch.put(key, value)
                    model[key] = value
            disk.write(batch)
            mem.write(batch)
            for prefix, start, reverse, values in queries:
                expected = expected_iteration(model, prefix, start, reverse, values)
                for kv in (mem, disk):
                    got = kv.iterate(prefix, start=start, reverse=reverse, include_value=values)
                    assert list(got) == expected
        for key in {k for ops in batches for _, k, _ in ops}:
            assert mem.get(key) == disk.get(key) == model.get(key)


def expected_iteration(
    model: dict[bytes, bytes], prefix: bytes, start: bytes | None, reverse: bool, values: bool
) -> list[tuple[bytes, bytes]]:
    keys = sorted(k for k in model if k.startswith(prefix))
    if start is not None:
        keys = [k for k in keys if (k <= start if reverse else k >= start)]
    if reverse:
        keys.reverse()
    return [(k, model[k] if values else b"") for k in keys]


def test_u64_sorts_numerically() -> None:
    values = [0, 1, 255, 256, 2**32, 2**64 - 1]
    assert sorted(values, key=u64) == values
    assert sorted(u64(v) for v in values) == [u64(v) for v in values]


@pytest.mark.parametrize("value", [-1, 2**64])
def test_invalid_u64_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        u64(value)


def test_lru_key_round_trip() -> None:
    cid = b"\x01\x55\x12\x20" + bytes(range(32))
    assert split_chunk_lru_key(chunk_lru_key(7, cid)) == (7, cid)


@pytest.mark.parametrize("key", [b"", b"\x12" + bytes(43), b"\x13" + bytes(44)])
def test_invalid_lru_key(key: bytes) -> None:
    with pytest.raises(ValueError, match="not a chunk LRU key"):
        split_chunk_lru_key(key)
