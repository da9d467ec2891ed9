"""MessageLog: the set of signed messages a node holds for anti-entropy sync.

Every message the node accepted, of any kind (manifests, tombstones, follows, unfollows,
reactions, profiles, offers), is kept here as the exact envelope bytes that passed validation,
under its message id, with an index in sync item order, ``(created_ms, id)``
(docs/sync.md section 2). The other stores keep what each kind means (the newest follow
state, a video's chunks); this one keeps every message, so it can be served to a peer that
lacks it, and it is what :class:`node.sync.NodeItemSet` is built from.

When a creator withdraws a video, its manifest's bytes go but its item stays, as a
placeholder: the set still holds ``(created_ms, id)``, so two nodes that both know of the
withdrawal reconcile to equal sets, and the manifest is never served nor taken back.
:meth:`MessageLog.has` is True for a placeholder and :meth:`MessageLog.get` returns None.

Ledger certificates are items too (:meth:`MessageLog.stage_certificate`): the id is the
certificate's order id, the timestamp the order's ``created_ms``, the bytes the
certificate's own. They are not envelopes: the ledger verified their votes before applying
them, and a read checks only that the bytes still decode to the certificate of that order.

Writes are staged into the caller's :class:`~storage.kv.Batch`, to be written with the
caller's own store changes in one atomic write.
"""

from collections.abc import Iterator

from protocol.certs import CERTIFICATE_BYTES_MAX, Certificate, CertificateWire, is_certificate
from protocol.codec import decode_record
from protocol.envelope import SignedMessage
from protocol.errors import DecodeError
from protocol.itemset import ID_LEN, TIMESTAMP_MS_MAX
from protocol.orders import ORDER_BYTES_MAX, ORDER_TYPES, order_id
from storage.errors import DamagedRecord, StoreError
from storage.keys import Prefix, u64
from storage.keys import key as _key
from storage.kv import KV, Batch, read_through
from storage.records import check_before_write, read_back

_MS_BYTES = 8
_TIME_KEY_BYTES = 1 + _MS_BYTES + ID_LEN


class MessageLog:
    """Messages by id and by ``(created_ms, id)`` over a :class:`KV` (see module doc).

    Layout (storage/keys.py): ``MESSAGE + id -> created_ms (u64) + envelope`` (the
    created_ms alone for a placeholder) and ``MESSAGE_BY_TIME + created_ms (u64) + id ->
    b""``. Both entries of an item are always staged together.
    """

    def __init__(self, kv: KV) -> None:
        self._kv = kv

    def stage(self, batch: Batch, message: SignedMessage) -> bool:
        """Stage ``message`` into ``batch``; return whether it is new to the log.

        Returns False, staging nothing, when the message is already held (or staged in
        ``batch``) or is a placeholder: a withdrawn manifest is never taken back. Raises
        :class:`StoreError` when the message's bytes do not decode and verify to its record,
        or its ``created_ms`` lies outside the sync item space; nothing is staged then.
        """
        mid = message.id
        if read_through(self._kv, _key(Prefix.MESSAGE, mid), batch) is not None:
            return False
        created_ms = message.record.created_ms
        if created_ms > TIMESTAMP_MS_MAX:
            raise StoreError(f"{message.kind} created_ms {created_ms} exceeds {TIMESTAMP_MS_MAX}")
        check_before_write(message, StoreError)
        self._stage_item(batch, mid, created_ms, message.raw)
        return True

    def stage_withdrawn(self, batch: Batch, mid: bytes, created_ms: int) -> bool:
        """Stage the placeholder of the withdrawn message ``mid``; return whether it changed
        anything.

        Drops the message's bytes, if held, and keeps (or adds) its item. ``created_ms`` is
        the withdrawn message's own (a manifest's ``created_ms``, not the tombstone's).
        Raises :class:`ValueError` for an id not of 32 bytes, a timestamp outside the item
        space, or one that differs from the held message's; :class:`DamagedRecord` when the
        held entry cannot be read.
        """
        if len(mid) != ID_LEN:
            raise ValueError(f"a message id is {ID_LEN} bytes, not {len(mid)}")
        if not 0 <= created_ms <= TIMESTAMP_MS_MAX:
            raise ValueError(f"created_ms {created_ms} outside [0, {TIMESTAMP_MS_MAX}]")
        value = read_through(self._kv, _key(Prefix.MESSAGE, mid), batch)
        if value is not None:
            held_ms = _split_value(mid, value)[0]
            if held_ms != created_ms:
                raise ValueError(
                    f"message {mid.hex()} was created at {held_ms} ms, not {created_ms}"
                )
            if len(value) == _MS_BYTES:
                return False  # already a placeholder
        self._stage_item(batch, mid, created_ms, b"")
        return True

    def stage_certificate(self, batch: Batch, cert: Certificate) -> bool:
        """Stage the ledger certificate ``cert`` into ``batch``; return whether it is new.

        Its votes are not checked again (the ledger checked them before applying it). Raises
        :class:`StoreError` when its bytes do not begin as a certificate's or its timestamp
        lies outside the sync item space; nothing is staged then.
        """
        check_certificate_item(cert, StoreError)
        if read_through(self._kv, _key(Prefix.MESSAGE, cert.order_id), batch) is not None:
            return False
        self._stage_item(batch, cert.order_id, cert.created_ms, cert.raw)
        return True

    def _stage_item(self, batch: Batch, mid: bytes, created_ms: int, raw: bytes) -> None:
        ms = u64(created_ms)
        batch.put(_key(Prefix.MESSAGE, mid), ms + raw)
        batch.put(_key(Prefix.MESSAGE_BY_TIME, ms, mid), b"")

    def has(self, mid: bytes) -> bool:
        """Whether the item ``mid`` is in the set, as a message or a placeholder."""
        return self._kv.get(_key(Prefix.MESSAGE, mid)) is not None

    def get(self, mid: bytes) -> bytes | None:
        """The exact bytes of item ``mid`` (an envelope or a certificate); None if unknown
        or a placeholder.

        An envelope is decoded and its signature verified again before it is returned; a
        certificate is decoded and its order id and timestamp compared with the entry's.
        Raises :class:`DamagedRecord` when the bytes no longer check, or are not the message
        their key and timestamp say.
        """
        value = self._kv.get(_key(Prefix.MESSAGE, mid))
        if value is None:
            return None
        created_ms, raw = _split_value(mid, value)
        if not raw:
            return None
        if is_certificate(raw):
            _check_certificate_read(mid, created_ms, raw)
            return raw
        message = read_back(raw, object, f"message {mid.hex()}")
        if message.id != mid:
            raise DamagedRecord(f"stored message {mid.hex()} is not what its key says")
        if message.record.created_ms != created_ms:
            raise DamagedRecord(f"stored message {mid.hex()} has another created_ms")
        return raw

    def created_ms(self, mid: bytes) -> int | None:
        """The ``created_ms`` of item ``mid`` (message or placeholder), or None if unknown.

        Raises :class:`DamagedRecord` when the entry is too short to hold one.
        """
        value = self._kv.get(_key(Prefix.MESSAGE, mid))
        return None if value is None else _split_value(mid, value)[0]

    def items(self) -> Iterator[tuple[int, bytes]]:
        """Every item ``(created_ms, id)``, placeholders included, in ascending item order.

        The iteration sees the log as it was when it started. Raises :class:`DamagedRecord`
        for an index key of the wrong length.
        """
        for key, _ in self._kv.iterate(_key(Prefix.MESSAGE_BY_TIME), include_value=False):
            if len(key) != _TIME_KEY_BYTES:
                raise DamagedRecord(f"message index key of {len(key)} bytes: {key[:16].hex()}")
            yield int.from_bytes(key[1 : 1 + _MS_BYTES], "big"), key[1 + _MS_BYTES :]

    def count(self) -> int:
        """How many items the set holds, placeholders included (a scan of the index)."""
        prefix = _key(Prefix.MESSAGE_BY_TIME)
        return sum(1 for _ in self._kv.iterate(prefix, include_value=False))


def _split_value(mid: bytes, value: bytes) -> tuple[int, bytes]:
    """(created_ms, envelope bytes) of a MESSAGE value; the bytes are empty for a placeholder."""
    if len(value) < _MS_BYTES:
        raise DamagedRecord(f"stored message {mid.hex()} is damaged: {len(value)} bytes")
    return int.from_bytes(value[:_MS_BYTES], "big"), value[_MS_BYTES:]


def check_certificate_item(cert: Certificate, error: type[StoreError]) -> None:
    """Raise ``error`` unless ``cert`` can be a sync item: bytes that begin as a
    certificate's, a 32-byte order id and a timestamp inside the item space."""
    if not is_certificate(cert.raw):
        raise error(f"refusing to store order {cert.order_id.hex()}: not certificate bytes")
    if len(cert.order_id) != ID_LEN:
        raise error(f"a certificate's order id is {ID_LEN} bytes, not {len(cert.order_id)}")
    if not 0 <= cert.created_ms <= TIMESTAMP_MS_MAX:
        raise error(f"certificate created_ms {cert.created_ms} exceeds {TIMESTAMP_MS_MAX}")


def _check_certificate_read(mid: bytes, created_ms: int, raw: bytes) -> None:
    """Raise :class:`DamagedRecord` unless ``raw`` decodes as the certificate of order
    ``mid``, created at ``created_ms`` (a structural check; the votes are not verified)."""
    what = f"stored certificate {mid.hex()}"
    try:
        wire = decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
        cls = ORDER_TYPES.get(wire.kind)
        if cls is None:
            raise DamagedRecord(f"{what} has an unknown order kind {wire.kind[:16]!r}")
        order = decode_record(cls, wire.order, bytes_max=ORDER_BYTES_MAX)
    except DecodeError as exc:
        raise DamagedRecord(f"{what} is damaged: {exc}") from exc
    if order_id(wire.kind, wire.order) != mid:
        raise DamagedRecord(f"{what} is not what its key says")
    if order.created_ms != created_ms:
        raise DamagedRecord(f"{what} has another created_ms")
