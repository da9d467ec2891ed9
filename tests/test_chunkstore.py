"""ChunkStore over both KV backends: integrity, pins, LRU eviction and exact accounting."""

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocol.cid import CID_LEN, chunk_id, cid_to_text
from protocol.errors import InvalidCid
from protocol.kinds import CHUNK_BYTES_MAX
from storage.chunks import ChunkStore, PinReason
from storage.errors import (
    BatchConflict,
    ChunkCorrupt,
    ChunkIdMismatch,
    ChunkMissing,
    ChunkTooLarge,
    QuotaExceeded,
)
from storage.keys import (
    META_CHUNK_COUNTERS,
    Prefix,
    chunk_data_key,
    chunk_lru_key,
    chunk_meta_key,
    chunk_pin_key,
    meta_key,
    prefix,
)
from storage.kv import KV, Batch, LevelDBKV, MemoryKV


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store = MemoryKV() if request.param == "memory" else LevelDBKV(str(tmp_path / "db"))
    yield store
    store.close()


def chunk(tag: int, size: int = 100) -> tuple[bytes, bytes]:
    """A distinct chunk of ``size`` bytes and its id."""
    data = tag.to_bytes(4, "big") * (size // 4) + bytes(size % 4)
    return chunk_id(data), data


def stored(store: ChunkStore) -> set[bytes]:
    return set(store.ids())


def test_put_get_has_delete(kv: KV) -> None:
    store = ChunkStore(kv)
    cid, data = chunk(1, 1000)
    assert not store.has(cid)
    assert store.put(cid, data)
    assert not store.put(cid, data)  # idempotent
    assert store.has(cid)
    assert store.get(cid) == data
    assert store.size_of(cid) == 1000
    assert (store.used_bytes, store.count, store.pinned_bytes) == (1000, 1, 0)
    assert list(store.ids()) == [cid]
    assert store.delete(cid)
    assert not store.delete(cid)
    assert not store.has(cid)
    assert (store.used_bytes, store.count) == (0, 0)
    assert list(kv.iterate(b"")) == [(k, v) for k, v in kv.iterate(b"\x01")]  # only counters


def test_empty_and_largest_chunks(kv: KV) -> None:
    store = ChunkStore(kv)
    for data in (b"", bytes(CHUNK_BYTES_MAX)):
        store.put(chunk_id(data), data)
        assert store.get(chunk_id(data)) == data
    assert store.used_bytes == CHUNK_BYTES_MAX


def test_missing_chunk(kv: KV) -> None:
    store = ChunkStore(kv)
    cid, _ = chunk(1)
    with pytest.raises(ChunkMissing, match=cid_to_text(cid)) as info:
        store.get(cid)
    assert info.value.cid == cid
    with pytest.raises(ChunkMissing):
        store.size_of(cid)
    with pytest.raises(ChunkMissing):
        store.pins(cid)
    with pytest.raises(ChunkMissing):
        store.pin(cid, PinReason.OWN)
    assert not store.unpin(cid, PinReason.OWN)


def test_invalid_id_mismatch_stores_nothing(kv: KV) -> None:
    store = ChunkStore(kv)
    cid, _ = chunk(1)
    with pytest.raises(ChunkIdMismatch, match=cid_to_text(cid)):
        store.put(cid, b"other bytes")
    assert list(kv.iterate(b"")) == []
    assert (store.used_bytes, store.count) == (0, 0)


def test_invalid_oversize_chunk(kv: KV) -> None:
    store = ChunkStore(kv)
    data = bytes(CHUNK_BYTES_MAX + 1)
    with pytest.raises(ChunkTooLarge, match=str(CHUNK_BYTES_MAX)):
        store.put(chunk_id(data), data)
    assert list(kv.iterate(b"")) == []


@pytest.mark.parametrize("cid", [b"", b"\x01\x55\x12\x20" + bytes(31), b"\x01\x70" + bytes(34)])
def test_invalid_malformed_cid(kv: KV, cid: bytes) -> None:
    store = ChunkStore(kv)
    with pytest.raises(InvalidCid):
        store.put(cid, b"")
    with pytest.raises(InvalidCid):
        store.get(cid)
    with pytest.raises(InvalidCid):
        store.has(cid)


def test_damaged_chunk_is_never_served(kv: KV) -> None:
    store = ChunkStore(kv)
    good, good_data = chunk(1, 5000)
    bad, bad_data = chunk(2, 5000)
    store.put(good, good_data)
    store.put(bad, bad_data)
    flipped = bytearray(bad_data)
    flipped[1234] ^= 0x01
    batch = Batch()
    batch.put(chunk_data_key(bad), bytes(flipped))
    kv.write(batch)
    with pytest.raises(ChunkCorrupt, match=cid_to_text(bad)) as info:
        store.get(bad)
    assert info.value.cid == bad
    assert store.get(good) == good_data
    assert dict(store.verify()) == {good: True, bad: False}
    assert store.damaged() == [bad]
    store.delete(bad)  # the way to recover: delete, then fetch again
    store.put(bad, bad_data)
    assert store.damaged() == []


def test_missing_data_is_reported_by_verify(kv: KV) -> None:
    store = ChunkStore(kv)
    cid, data = chunk(1)
    store.put(cid, data)
    batch = Batch()
    batch.delete(chunk_data_key(cid))
    kv.write(batch)
    assert store.damaged() == [cid]


def test_pins(kv: KV) -> None:
    store = ChunkStore(kv)
    cid, data = chunk(1, 300)
    store.put(cid, data, pin=PinReason.WATCHED)
    assert store.pins(cid) == {PinReason.WATCHED}
    assert store.pinned_bytes == 300
    assert store.pin(cid, PinReason.OWN)
    assert not store.pin(cid, PinReason.OWN)
    assert not store.put(cid, data, pin=PinReason.SEEDING)
    assert store.pins(cid) == {PinReason.WATCHED, PinReason.OWN, PinReason.SEEDING}
    assert list(store.pinned(PinReason.OWN)) == [cid]
    for reason in (PinReason.WATCHED, PinReason.OWN, PinReason.SEEDING):
        assert store.unpin(cid, reason)
    assert not store.unpin(cid, PinReason.OWN)
    assert store.pins(cid) == set()
    assert list(store.pinned(PinReason.OWN)) == []
    assert store.pinned_bytes == 0


def test_lru_evicts_the_least_recently_read(kv: KV) -> None:
    store = ChunkStore(kv, quota_bytes=300)
    (a, da), (b, db), (c, dc), (d, dd) = (chunk(i) for i in range(4))
    for cid, data in ((a, da), (b, db), (c, dc)):
        store.put(cid, data)
    store.get(a)  # now b is the least recently used
    store.put(d, dd)
    assert stored(store) == {a, c, d}
    assert store.used_bytes == 300


def test_pinned_chunks_are_never_evicted(kv: KV) -> None:
    store = ChunkStore(kv, quota_bytes=300)
    (a, da), (b, db), (c, dc), (d, dd) = (chunk(i) for i in range(4))
    store.put(a, da, pin=PinReason.OWN)  # the oldest, but pinned
    store.put(b, db)
    store.put(c, dc, pin=PinReason.FOLLOWED)
    store.put(d, dd)
    assert stored(store) == {a, c, d}
    e, de = chunk(5, 150)
    with pytest.raises(QuotaExceeded, match="pinned"):
        store.put(e, de)  # evicting d (100 bytes) would not be enough
    assert stored(store) == {a, c, d}  # nothing evicted, nothing stored
    store.unpin(a, PinReason.OWN)  # a becomes evictable, as if just read
    store.put(e, de)
    assert stored(store) == {c, e}


def test_invalid_chunk_larger_than_quota(kv: KV) -> None:
    store = ChunkStore(kv, quota_bytes=100)
    a, da = chunk(1, 50)
    store.put(a, da)
    big, dbig = chunk(2, 101)
    with pytest.raises(QuotaExceeded):
        store.put(big, dbig)
    assert stored(store) == {a}
    assert store.used_bytes == 50


def test_stale_lru_entries_are_skipped_and_removed(kv: KV) -> None:
    store = ChunkStore(kv, quota_bytes=200)
    (pinned, dp), (gone, _), (a, da), (b, db) = (chunk(i) for i in range(4))
    store.put(pinned, dp, pin=PinReason.OWN)
    store.put(a, da)
    # Entries older than every real one, pointing at a pinned and at an absent chunk, as a
    # bug or a hand-edited database might leave them: eviction must not act on them.
    batch = Batch()
    batch.put(chunk_lru_key(0, pinned), b"")
    batch.put(chunk_lru_key(0, gone), b"")
    kv.write(batch)
    store.put(b, db)
    assert stored(store) == {pinned, b}
    assert (store.used_bytes, store.count, store.pinned_bytes) == (200, 2, 100)
    assert [key for key, _ in kv.iterate(prefix(Prefix.CHUNK_LRU))] == [
        chunk_lru_key(store_tick(kv, b), b)
    ]


def store_tick(kv: KV, cid: bytes) -> int:
    """The LRU tick recorded in a chunk's metadata."""
    raw = kv.get(chunk_meta_key(cid))
    assert raw is not None
    tick = msgpack.unpackb(raw)[1]
    assert isinstance(tick, int)
    return tick


def test_batch_composition(kv: KV) -> None:
    store = ChunkStore(kv, quota_bytes=250)
    old, dold = chunk(0)
    store.put(old, dold)
    batch = Batch()
    (a, da), (b, db) = chunk(1), chunk(2)
    assert store.put(a, da, batch=batch)
    assert store.put(b, db, pin=PinReason.OWN, batch=batch)  # evicts old, in the same batch
    assert not store.put(a, da, batch=batch)  # sees what the batch already holds
    batch.put(b"\x50other-entity", b"written with the chunks")
    assert not store.has(a) and store.has(old)  # nothing visible before the write
    assert (store.used_bytes, store.count) == (100, 1)
    with pytest.raises(BatchConflict):
        store.put(*chunk(3))
    kv.write(batch)
    assert stored(store) == {a, b}
    assert (store.used_bytes, store.count, store.pinned_bytes) == (200, 2, 100)
    store.put(*chunk(3))  # the store accepts other writes again


def test_dropped_batch_changes_nothing(kv: KV) -> None:
    store = ChunkStore(kv)
    batch = Batch()
    store.put(*chunk(1), batch=batch)
    del batch
    store.put(*chunk(2))
    assert (store.used_bytes, store.count) == (100, 1)


def test_accounting_and_order_survive_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    chunks = [chunk(i) for i in range(4)]
    with LevelDBKV(path) as kv:
        store = ChunkStore(kv, quota_bytes=400)
        for cid, data in chunks:
            store.put(cid, data)
        store.pin(chunks[3][0], PinReason.SEEDING)
        store.get(chunks[0][0])  # recency kept in memory until close
        store.close()
    with LevelDBKV(path) as kv:
        store = ChunkStore(kv, quota_bytes=400)
        assert (store.used_bytes, store.count, store.pinned_bytes) == (400, 4, 100)
        store.put(*chunk(9))
        assert stored(store) == {chunks[0][0], chunks[2][0], chunks[3][0], chunk(9)[0]}


def test_concurrent_puts_keep_exact_accounting(kv: KV) -> None:
    store = ChunkStore(kv)
    chunks = [chunk(i, 1000 + i) for i in range(200)]

    def work(part: list[tuple[bytes, bytes]]) -> None:
        for cid, data in part:
            store.put(cid, data)
            store.get(cid)

    threads = [threading.Thread(target=work, args=(chunks[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count == 200
    assert store.used_bytes == sum(len(d) for _, d in chunks)


POOL = [chunk(i, 50 + 37 * i) for i in range(12)]
QUOTA = 1000


class ChunkStoreModel(RuleBasedStateMachine):
    """Random operations against a plain model of LRU-with-pins; everything must agree."""

    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.kv = self.open_kv()
        self.store = ChunkStore(self.kv, quota_bytes=QUOTA)
        self.clock = 0
        # cid -> [size, last use, pins]
        self.model: dict[bytes, tuple[int, int, set[PinReason]]] = {}

    def open_kv(self) -> KV:
        return MemoryKV() if self.backend == "memory" else LevelDBKV(self.tmp.name + "/db")

    def teardown(self) -> None:
        self.kv.close()
        self.tmp.cleanup()

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def model_put(self, i: int, pin: PinReason | None, batch_added: set[bytes]) -> bool | None:
        """What put should return, None for QuotaExceeded. Chunks added by the same batch
        are not evicted to make room for each other."""
        cid, data = POOL[i]
        if cid in self.model:
            if pin is not None:
                self.model[cid][2].add(pin)
            return False
        need = sum(size for size, _, _ in self.model.values()) + len(data) - QUOTA
        lru = sorted(
            (use, c)
            for c, (_, use, pins) in self.model.items()
            if not pins and c not in batch_added
        )
        victims = []
        for _, victim in lru:
            if need <= 0:
                break
            victims.append(victim)
            need -= self.model[victim][0]
        if need > 0:
            return None
        for victim in victims:
            del self.model[victim]
        self.model[cid] = (len(data), self.tick(), set() if pin is None else {pin})
        batch_added.add(cid)
        return True

    def checked_put(
        self, i: int, pin: PinReason | None, batch: Batch | None, batch_added: set[bytes]
    ) -> None:
        expected = self.model_put(i, pin, batch_added)
        if expected is None:
            with pytest.raises(QuotaExceeded):
                self.store.put(*POOL[i], pin=pin, batch=batch)
        else:
            assert self.store.put(*POOL[i], pin=pin, batch=batch) == expected

    @rule(i=st.integers(0, len(POOL) - 1), pin=st.none() | st.sampled_from(PinReason))
    def put(self, i: int, pin: PinReason | None) -> None:
        self.checked_put(i, pin, None, set())

    @rule(
        items=st.lists(
            st.tuples(st.integers(0, len(POOL) - 1), st.none() | st.sampled_from(PinReason)),
            max_size=4,
        )
    )
    def put_in_one_batch(self, items: list[tuple[int, PinReason | None]]) -> None:
        batch, added = Batch(), set[bytes]()
        for i, pin in items:
            self.checked_put(i, pin, batch, added)
        self.kv.write(batch)

    @rule(i=st.integers(0, len(POOL) - 1))
    def drop_a_batch(self, i: int) -> None:
        batch = Batch()
        if POOL[i][0] not in self.model:
            with contextlib.suppress(QuotaExceeded):
                self.store.put(*POOL[i], batch=batch)
        del batch

    @rule(i=st.integers(0, len(POOL) - 1))
    def get(self, i: int) -> None:
        cid, data = POOL[i]
        if cid not in self.model:
            with pytest.raises(ChunkMissing):
                self.store.get(cid)
            return
        assert self.store.get(cid) == data
        size, _, pins = self.model[cid]
        self.model[cid] = (size, self.tick(), pins)

    @rule(i=st.integers(0, len(POOL) - 1))
    def delete(self, i: int) -> None:
        cid = POOL[i][0]
        assert self.store.delete(cid) == (self.model.pop(cid, None) is not None)

    @rule(i=st.integers(0, len(POOL) - 1), reason=st.sampled_from(PinReason))
    def pin(self, i: int, reason: PinReason) -> None:
        cid = POOL[i][0]
        if cid not in self.model:
            with pytest.raises(ChunkMissing):
                self.store.pin(cid, reason)
            return
        pins = self.model[cid][2]
        assert self.store.pin(cid, reason) == (reason not in pins)
        pins.add(reason)

    @rule(i=st.integers(0, len(POOL) - 1), reason=st.sampled_from(PinReason))
    def unpin(self, i: int, reason: PinReason) -> None:
        cid = POOL[i][0]
        pins = self.model[cid][2] if cid in self.model else set()
        assert self.store.unpin(cid, reason) == (reason in pins)
        if reason in pins:
            pins.discard(reason)
            if not pins:
                self.model[cid] = (self.model[cid][0], self.tick(), pins)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        if self.backend == "leveldb":
            self.kv.close()
            self.kv = self.open_kv()
        self.store = ChunkStore(self.kv, quota_bytes=QUOTA)

    @invariant()
    def accounting_matches_the_model(self) -> None:
        sizes = [size for size, _, _ in self.model.values()]
        pinned = [size for size, _, pins in self.model.values() if pins]
        assert self.store.used_bytes == sum(sizes)
        assert self.store.count == len(sizes)
        assert self.store.pinned_bytes == sum(pinned)
        assert set(self.store.ids()) == set(self.model)
        for cid, (size, _, pins) in self.model.items():
            assert self.store.size_of(cid) == size
            assert self.store.pins(cid) == pins
        lru = {key[-CID_LEN:] for key, _ in self.kv.iterate(prefix(Prefix.CHUNK_LRU))}
        assert lru == {cid for cid, (_, _, pins) in self.model.items() if not pins}


class LevelDBChunkStoreModel(ChunkStoreModel):
    backend = "leveldb"


machine_settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestChunkStoreModelMemory = ChunkStoreModel.TestCase
TestChunkStoreModelMemory.settings = machine_settings
TestChunkStoreModelLevelDB = LevelDBChunkStoreModel.TestCase
TestChunkStoreModelLevelDB.settings = machine_settings


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_putting_a_damaged_chunk_again_repairs_it(damage: str) -> None:
    kv = MemoryKV()
    store = ChunkStore(kv)
    data = bytes(range(256)) * 40
    cid = chunk_id(data)
    store.put(cid, data)
    stored = bytearray(data)
    if damage == "flip":
        stored[100] ^= 1
    else:
        del stored[-10:]
    batch = Batch()
    batch.put(chunk_data_key(cid), bytes(stored))
    kv.write(batch)
    with pytest.raises(ChunkCorrupt):
        store.get(cid)
    assert store.put(cid, data) is False  # not new: the counters do not move
    assert store.get(cid) == data
    assert store.used_bytes == len(data) and store.count == 1


def test_audit_finds_bookkeeping_that_disagrees_with_the_chunks() -> None:
    kv = MemoryKV()
    store = ChunkStore(kv)
    datas = [bytes([i]) * 1000 for i in range(3)]
    for i, data in enumerate(datas):
        store.put(chunk_id(data), data, pin=PinReason.OWN if i == 0 else None)
    assert store.audit() == []
    batch = Batch()
    batch.put(meta_key(META_CHUNK_COUNTERS), msgpack.packb([1, 2, 3]))
    batch.delete(chunk_pin_key(PinReason.OWN, chunk_id(datas[0])))
    kv.write(batch)
    problems = ChunkStore(kv).audit()
    assert any("counters say" in p for p in problems)
    assert any("pin index" in p and "OWN" in p for p in problems)


def test_put_verified_stores_without_hashing_again_and_checks_the_rest() -> None:
    store = ChunkStore(MemoryKV())
    data = b"verified elsewhere" * 100
    cid = chunk_id(data)
    assert store.put_verified(cid, data, pin=PinReason.WATCHED)
    assert store.get(cid) == data and store.pins(cid) == {PinReason.WATCHED}
    with pytest.raises(InvalidCid):
        store.put_verified(b"short", data)
