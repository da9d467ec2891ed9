"""MessageLog: the messages a node holds for sync, on both KV backends."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.envelope import SignedMessage, seal
from protocol.itemset import TIMESTAMP_MS_MAX
from protocol.kinds import Follow, Reaction
from storage.errors import DamagedRecord, StoreError
from storage.keys import Prefix, key, u64
from storage.kv import KV, Batch, LevelDBKV, MemoryKV
from storage.messages import MessageLog
from tests.factories import NOW_MS, account, fake_video, sealed_manifest


@pytest.fixture(params=["memory", "leveldb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KV]:
    store: KV = MemoryKV() if request.param == "memory" else LevelDBKV(str(tmp_path / "db"))
    yield store
    store.close()


def follow(n: int, created_ms: int = NOW_MS) -> SignedMessage:
    author = account(n)
    return seal(author, Follow(author.public_key, created_ms, account(n + 1).public_key))


def stage(kv: KV, log: MessageLog, *messages: SignedMessage) -> list[bool]:
    batch = Batch()
    new = [log.stage(batch, message) for message in messages]
    kv.write(batch)
    return new


def test_stage_get_has_items(kv: KV) -> None:
    log = MessageLog(kv)
    messages = [follow(n, NOW_MS - n) for n in range(5)]
    manifest = sealed_manifest(account(9), fake_video(b"v"), created_ms=NOW_MS - 2)
    assert stage(kv, log, *messages, manifest) == [True] * 6
    for message in [*messages, manifest]:
        assert log.has(message.id)
        assert log.get(message.id) == message.raw
        assert log.created_ms(message.id) == message.record.created_ms
    expected = sorted((m.record.created_ms, m.id) for m in [*messages, manifest])
    assert list(log.items()) == expected
    assert log.count() == 6


def test_unknown_id(kv: KV) -> None:
    log = MessageLog(kv)
    assert not log.has(b"\1" * 32)
    assert log.get(b"\1" * 32) is None
    assert log.created_ms(b"\1" * 32) is None
    assert list(log.items()) == []
    assert log.count() == 0


def test_stage_twice_is_a_no_op(kv: KV) -> None:
    log = MessageLog(kv)
    message = follow(1)
    batch = Batch()
    assert log.stage(batch, message)
    assert not log.stage(batch, message)  # already staged in this batch
    kv.write(batch)
    assert stage(kv, log, message) == [False]
    assert log.count() == 1


def test_nothing_is_visible_before_the_batch_is_written(kv: KV) -> None:
    log = MessageLog(kv)
    batch = Batch()
    log.stage(batch, follow(1))
    assert log.count() == 0
    kv.write(batch)
    assert log.count() == 1


def test_withdrawn_message_stays_as_a_placeholder(kv: KV) -> None:
    log = MessageLog(kv)
    manifest = sealed_manifest(account(1), fake_video(b"v"))
    stage(kv, log, manifest)
    batch = Batch()
    assert log.stage_withdrawn(batch, manifest.id, NOW_MS)
    kv.write(batch)
    assert log.has(manifest.id)
    assert log.get(manifest.id) is None
    assert log.created_ms(manifest.id) == NOW_MS
    assert list(log.items()) == [(NOW_MS, manifest.id)]
    # It is never taken back, and withdrawing it again changes nothing.
    assert stage(kv, log, manifest) == [False]
    assert log.get(manifest.id) is None
    batch = Batch()
    assert not log.stage_withdrawn(batch, manifest.id, NOW_MS)
    assert len(batch) == 0


def test_withdrawn_before_it_arrived(kv: KV) -> None:
    log = MessageLog(kv)
    manifest = sealed_manifest(account(1), fake_video(b"v"))
    batch = Batch()
    log.stage_withdrawn(batch, manifest.id, NOW_MS)
    assert not log.stage(batch, manifest)  # the placeholder is already staged
    kv.write(batch)
    assert log.has(manifest.id)
    assert log.get(manifest.id) is None
    assert log.count() == 1


@pytest.mark.parametrize(
    ("mid", "created_ms", "match"),
    [
        (b"\1" * 31, NOW_MS, "32 bytes"),
        (b"\1" * 32, -1, "outside"),
        (b"\1" * 32, TIMESTAMP_MS_MAX + 1, "outside"),
    ],
)
def test_invalid_withdrawn_item(kv: KV, mid: bytes, created_ms: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MessageLog(kv).stage_withdrawn(Batch(), mid, created_ms)


def test_invalid_withdrawn_at_another_time(kv: KV) -> None:
    log = MessageLog(kv)
    message = follow(1)
    stage(kv, log, message)
    with pytest.raises(ValueError, match="created at"):
        log.stage_withdrawn(Batch(), message.id, NOW_MS + 1)


def test_invalid_message_bytes_are_refused(kv: KV) -> None:
    log = MessageLog(kv)
    good = follow(1)
    other = follow(2)
    forged = SignedMessage(raw=other.raw, envelope=good.envelope, record=good.record)
    batch = Batch()
    with pytest.raises(StoreError, match="bytes say otherwise"):
        log.stage(batch, forged)
    assert len(batch) == 0


def test_invalid_timestamp_outside_the_item_space(kv: KV) -> None:
    author = account(1)
    record = Reaction(author.public_key, 2**64 - 1, b"\2" * 32, "like")
    with pytest.raises(StoreError, match="exceeds"):
        MessageLog(kv).stage(Batch(), seal(author, record))


def put_raw(kv: KV, k: bytes, value: bytes) -> None:
    batch = Batch()
    batch.put(k, value)
    kv.write(batch)


def test_damaged_bytes_are_reported(kv: KV) -> None:
    log = MessageLog(kv)
    message = follow(1)
    stage(kv, log, message)
    ms = u64(NOW_MS)
    flipped = bytearray(message.raw)
    flipped[-1] ^= 1
    put_raw(kv, key(Prefix.MESSAGE, message.id), ms + bytes(flipped))
    with pytest.raises(DamagedRecord, match="damaged"):
        log.get(message.id)
    # Intact bytes of another message under this id.
    put_raw(kv, key(Prefix.MESSAGE, message.id), ms + follow(2).raw)
    with pytest.raises(DamagedRecord, match="not what its key says"):
        log.get(message.id)
    # The right bytes beside another timestamp.
    put_raw(kv, key(Prefix.MESSAGE, message.id), u64(NOW_MS + 1) + message.raw)
    with pytest.raises(DamagedRecord, match="another created_ms"):
        log.get(message.id)
    put_raw(kv, key(Prefix.MESSAGE, message.id), b"\0" * 7)
    with pytest.raises(DamagedRecord, match="7 bytes"):
        log.get(message.id)
    with pytest.raises(DamagedRecord):
        log.created_ms(message.id)


def test_damaged_index_key_is_reported(kv: KV) -> None:
    put_raw(kv, key(Prefix.MESSAGE_BY_TIME, u64(NOW_MS), b"\1" * 31), b"")
    with pytest.raises(DamagedRecord, match="index key"):
        list(MessageLog(kv).items())


def test_the_log_keeps_to_its_prefixes(kv: KV) -> None:
    log = MessageLog(kv)
    stage(kv, log, follow(1))
    owned = {Prefix.MESSAGE, Prefix.MESSAGE_BY_TIME}
    keys = [k for k, _ in kv.iterate(b"", include_value=False)]
    assert {k[0] for k in keys} == owned
