"""ManifestStore: signed video manifests by id, by creator and by time, and tombstones.

Manifests are kept as the exact envelope bytes that were validated, and are re-checked
(decoded and signature-verified) every time they are read back. A manifest is only stored
when every chunk it names is already in the chunk store, and it is written in one atomic
batch with its indexes (and, for the node's own videos, the pins on its chunks).
"""

from collections.abc import Iterator
from dataclasses import dataclass

from protocol.envelope import SignedMessage
from protocol.errors import Reject
from protocol.kinds import MESSAGE_ID_LEN, Tombstone, VideoManifest
from protocol.validate import reopen_message, validate_tombstone_target
from storage.chunks import ChunkStore, PinReason
from storage.errors import StoreError
from storage.keys import Prefix, u64
from storage.keys import key as _key
from storage.kv import KV, Batch


class ManifestError(StoreError):
    """A manifest that cannot be stored as asked."""


class MissingChunks(ManifestError):
    """The chunk store lacks chunks the manifest names: it is not stored before them."""


class Withdrawn(ManifestError):
    """The video was withdrawn by its creator (a tombstone is stored for it)."""


class DamagedRecord(StoreError):
    """A stored record failed its integrity check on read."""


def manifest_chunks(manifest: VideoManifest) -> list[bytes]:
    """Every chunk id a manifest names: thumbnail, then per rendition init and segments."""
    cids = [manifest.thumbnail.cid]
    for rendition in manifest.renditions:
        cids.append(rendition.init.cid)
        cids.extend(segment.cid for segment in rendition.segments)
    return cids


@dataclass(frozen=True)
class StoredManifest:
    """A manifest read back from the store, checked."""

    message: SignedMessage

    @property
    def id(self) -> bytes:
        return self.message.id

    @property
    def manifest(self) -> VideoManifest:
        record = self.message.record
        assert isinstance(record, VideoManifest)
        return record


class ManifestStore:
    """Video manifests and tombstones over a :class:`KV`."""

    def __init__(self, kv: KV, chunks: ChunkStore) -> None:
        self._kv = kv
        self._chunks = chunks

    def put(self, message: SignedMessage, *, pin: PinReason | None = None) -> bool:
        """Store a validated manifest message. Returns False if it was already stored.

        With ``pin``, every chunk the manifest names is pinned for that reason in the same
        batch. Raises :class:`MissingChunks` when a chunk is absent and :class:`Withdrawn`
        when a tombstone for it is stored; nothing is written then.
        """
        manifest = message.record
        if not isinstance(manifest, VideoManifest):
            raise ManifestError(f"not a manifest: {message.kind}")
        mid = message.id
        if self._kv.get(_key(Prefix.TOMBSTONE, mid)) is not None:
            raise Withdrawn(f"video {mid.hex()} was withdrawn by its creator")
        if self._kv.get(_key(Prefix.MANIFEST, mid)) is not None:
            return False
        cids = manifest_chunks(manifest)
        missing = [cid for cid in cids if not self._chunks.has(cid)]
        if missing:
            raise MissingChunks(f"{len(missing)} of {len(cids)} chunks of {mid.hex()} missing")
        batch = Batch()
        batch.put(_key(Prefix.MANIFEST, mid), message.raw)
        self._index(batch, mid, manifest, present=True)
        if pin is not None:
            for cid in set(cids):
                self._chunks.pin(cid, pin, batch=batch)
        self._kv.write(batch, sync=True)
        return True

    def _index(self, batch: Batch, mid: bytes, manifest: VideoManifest, *, present: bool) -> None:
        ms = u64(manifest.created_ms)
        keys = (
            _key(Prefix.MANIFEST_BY_CREATOR, manifest.author, ms, mid),
            _key(Prefix.MANIFEST_BY_TIME, ms, mid),
        )
        for key in keys:
            if present:
                batch.put(key, b"")
            else:
                batch.delete(key)

    def get(self, mid: bytes) -> StoredManifest | None:
        """Return the manifest with id ``mid``, or None. Raises :class:`DamagedRecord`."""
        raw = self._kv.get(_key(Prefix.MANIFEST, mid))
        if raw is None:
            return None
        return self._reopen(mid, raw)

    def _reopen(self, mid: bytes, raw: bytes) -> StoredManifest:
        try:
            message = reopen_message(raw)
        except Reject as exc:
            raise DamagedRecord(f"stored manifest {mid.hex()} is damaged: {exc}") from exc
        if message.id != mid or not isinstance(message.record, VideoManifest):
            raise DamagedRecord(f"stored manifest {mid.hex()} is not what its key says")
        return StoredManifest(message)

    def has(self, mid: bytes) -> bool:
        return self._kv.get(_key(Prefix.MANIFEST, mid)) is not None

    def resolve(self, prefix_hex: str) -> bytes:
        """Return the one stored id starting with the hex ``prefix_hex`` (at least 4 digits).

        Raises :class:`KeyError` when none or several match, with a message saying which.
        """
        text = prefix_hex.strip().lower()
        if len(text) < 4 or len(text) > 2 * MESSAGE_ID_LEN:
            raise KeyError(f"a video id is 4 to {2 * MESSAGE_ID_LEN} hex digits: {text!r}")
        try:
            start = bytes.fromhex(text[: len(text) // 2 * 2])
        except ValueError as exc:
            raise KeyError(f"not a hex video id: {text!r}") from exc
        found = [
            key[1:]
            for key, _ in self._kv.iterate(_key(Prefix.MANIFEST, start), include_value=False)
            if key[1:].hex().startswith(text)
        ]
        if not found:
            raise KeyError(f"no stored video with id {text}")
        if len(found) > 1:
            raise KeyError(f"{len(found)} stored videos start with {text}: give more digits")
        return found[0]

    def by_creator(self, author: bytes, *, limit: int = 50) -> list[StoredManifest]:
        """The creator's manifests, newest first."""
        prefix = _key(Prefix.MANIFEST_BY_CREATOR, author)
        return self._walk(prefix, limit)

    def recent(self, *, limit: int = 50) -> list[StoredManifest]:
        """All stored manifests, newest first."""
        return self._walk(_key(Prefix.MANIFEST_BY_TIME), limit)

    def _walk(self, prefix: bytes, limit: int) -> list[StoredManifest]:
        # Index keys end with the message id.
        out = []
        for key, _ in self._kv.iterate(prefix, reverse=True, include_value=False):
            found = self.get(key[-MESSAGE_ID_LEN:])
            if found is not None:
                out.append(found)
            if len(out) >= limit:
                break
        return out

    def ids(self) -> Iterator[bytes]:
        """Every stored manifest id, in id order."""
        for key, _ in self._kv.iterate(_key(Prefix.MANIFEST), include_value=False):
            yield key[1:]

    def count(self) -> int:
        return sum(1 for _ in self.ids())

    def withdraw(self, message: SignedMessage) -> bool:
        """Store a validated tombstone and drop the manifest it names, if stored.

        Returns False when the tombstone was already stored. Raises :class:`Reject` when the
        tombstone's author is not the video's. The video's chunks lose their pins but stay
        until the quota evicts them.
        """
        tombstone = message.record
        if not isinstance(tombstone, Tombstone):
            raise ManifestError(f"not a tombstone: {message.kind}")
        mid = tombstone.manifest
        if self._kv.get(_key(Prefix.TOMBSTONE, mid)) is not None:
            return False
        batch = Batch()
        stored = self.get(mid)
        if stored is not None:
            validate_tombstone_target(tombstone, stored.manifest)
            batch.delete(_key(Prefix.MANIFEST, mid))
            self._index(batch, mid, stored.manifest, present=False)
            for cid in set(manifest_chunks(stored.manifest)):
                for reason in self._chunks.pins(cid):
                    self._chunks.unpin(cid, reason, batch=batch)
        batch.put(_key(Prefix.TOMBSTONE, mid), message.raw)
        self._kv.write(batch, sync=True)
        return True

    def tombstone(self, mid: bytes) -> SignedMessage | None:
        """The stored tombstone withdrawing ``mid``, if any."""
        raw = self._kv.get(_key(Prefix.TOMBSTONE, mid))
        return None if raw is None else reopen_message(raw)
