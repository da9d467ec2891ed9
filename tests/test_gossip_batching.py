"""How the node packs queued messages into gossip batches."""

from node.gossip import _take_batch
from protocol.gossipwire import BATCH_BYTES_MAX, BATCH_ITEMS_MAX, decode_batch, encode_batch


def test_small_messages_fill_a_batch_up_to_its_item_limit() -> None:
    queue = [b"m%d" % i for i in range(100)]
    batch = _take_batch(queue)
    assert batch == [b"m%d" % i for i in range(BATCH_ITEMS_MAX)]
    assert queue == [b"m%d" % i for i in range(BATCH_ITEMS_MAX, 100)]
    assert decode_batch(encode_batch(batch)) == batch


def test_large_messages_stop_at_the_byte_limit_and_every_batch_encodes() -> None:
    queue = [bytes([i]) * 100_000 for i in range(25)]
    batches = []
    while queue:
        batches.append(_take_batch(queue))
    assert [len(b) for b in batches] == [10, 10, 5]
    for batch in batches:
        assert len(encode_batch(batch)) <= BATCH_BYTES_MAX


def test_a_batch_just_under_the_limit_is_not_split() -> None:
    # 16+ items use a 3-byte array header; the packer must count it.
    size = (BATCH_BYTES_MAX - 3) // 20 - 3
    queue = [b"x" * size for _ in range(20)]
    batch = _take_batch(queue)
    assert len(batch) == 20 and not queue
    assert len(encode_batch(batch)) <= BATCH_BYTES_MAX
