"""ManifestStore: signed video manifests by id, by creator and by time, and tombstones.

Manifests are kept as the exact envelope bytes that were validated; they are checked again
(decoded, signature verified) before they are written and every time they are read back.
A manifest published here is only stored when every chunk it names is already in the chunk
store, with the size the manifest gives, and it is written in one atomic batch with its
indexes and the pins on its chunks, so the quota never evicts the video's chunks. A
manifest learned from the network is stored at once, without its chunks: every node knows
every video, and holds the chunks of those it seeds, follows or watched (:meth:`pin_video`).

Publishing writes a pending entry first (:meth:`ManifestStore.begin`), then the chunks,
each pinned; the manifest's batch removes the entry. :meth:`ManifestStore.recover`, run
when the store opens, undoes what a crashed publish left: its chunks lose their pin and go
if nothing else pins them or names them.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from protocol.envelope import SignedMessage
from protocol.kinds import MESSAGE_ID_LEN, Tombstone, VideoManifest
from protocol.validate import validate_tombstone_target
from storage.chunks import ChunkStore, PinReason
from storage.errors import (
    ChunkMissing,
    DamagedRecord,
    ManifestError,
    MissingChunks,
    StoreCorrupt,
    Withdrawn,
)
from storage.keys import Prefix, u64
from storage.keys import key as _key
from storage.kv import KV, Batch
from storage.records import check_before_write, read_back


def manifest_chunk_refs(manifest: VideoManifest) -> list[tuple[bytes, int]]:
    """(cid, size) of every chunk a manifest names, in order: the thumbnail, then per
    rendition its init and segments (the order publishing stores them in)."""
    refs = [(manifest.thumbnail.cid, manifest.thumbnail.size)]
    for rendition in manifest.renditions:
        refs.append((rendition.init.cid, rendition.init.size))
        refs.extend((segment.cid, segment.size) for segment in rendition.segments)
    return refs


def manifest_chunks(manifest: VideoManifest) -> list[bytes]:
    """Every chunk id a manifest names, in :func:`manifest_chunk_refs` order."""
    return [cid for cid, _ in manifest_chunk_refs(manifest)]


def _chunk_sizes(manifest: VideoManifest) -> dict[bytes, int]:
    return dict(manifest_chunk_refs(manifest))


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

    def put(self, message: SignedMessage, *, pin: PinReason | None) -> bool:
        """Store a validated manifest message, pinning its chunks for ``pin``.

        With a ``pin``, every chunk must be stored already; with None (a manifest from the
        network) none need be, and none is pinned. Returns False if it was already stored.
        Raises :class:`MissingChunks` when a chunk to pin is absent or not of the size the
        manifest gives, :class:`Withdrawn` when its author's tombstone for it is stored,
        :class:`ManifestError` when the message's bytes do not check; nothing is written then.
        """
        manifest = message.record
        if not isinstance(manifest, VideoManifest):
            raise ManifestError(f"not a manifest: {message.kind}")
        mid = message.id
        if self._kv.get(_key(Prefix.TOMBSTONE, mid, manifest.author)) is not None:
            raise Withdrawn(f"video {mid.hex()} was withdrawn by its creator")
        if self._kv.get(_key(Prefix.MANIFEST, mid)) is not None:
            return False
        check_before_write(message, ManifestError)
        sizes = _chunk_sizes(manifest)
        if pin is not None:
            self._check_chunks(mid, sizes)
        batch = Batch()
        batch.put(_key(Prefix.MANIFEST, mid), message.raw)
        batch.delete(_key(Prefix.MANIFEST_PENDING, mid))
        self._index(batch, mid, manifest, present=True)
        with self._chunks.exclusive():
            for cid in sizes:
                batch.put(_key(Prefix.MANIFEST_BY_CHUNK, cid, mid), b"")
                if pin is not None:
                    self._chunks.pin(cid, pin, batch=batch)
            # A video published here waits for the disk; one from the network need not:
            # lost in a crash, it comes back by sync.
            self._kv.write(batch, sync=pin is not None)
        return True

    def missing_chunks(self, manifest: VideoManifest) -> list[bytes]:
        """The chunks of ``manifest`` not in the chunk store, in manifest order."""
        return [cid for cid in _chunk_sizes(manifest) if not self._chunks.has(cid)]

    def has_all_chunks(self, manifest: VideoManifest) -> bool:
        """True when every chunk of ``manifest`` is in the chunk store (stops at the first
        missing one: most videos a node knows, it holds none of)."""
        return all(self._chunks.has(cid) for cid in _chunk_sizes(manifest))

    def chunks_held(self, manifest: VideoManifest) -> int:
        """How many of the chunks ``manifest`` lists are in the chunk store, as
        ``len(manifest_chunks(...))`` counts them."""
        return len(manifest_chunks(manifest)) - len(self.missing_chunks(manifest))

    def pin_video(self, mid: bytes, pin: PinReason) -> int:
        """Pin for ``pin`` every chunk of stored manifest ``mid`` held now; return how many.

        The caller pins again after fetching the rest. Raises :class:`ManifestError` when
        ``mid`` is not stored.
        """
        return self._set_pins(mid, pin, pinned=True)

    def unpin_video(self, mid: bytes, pin: PinReason) -> None:
        """Drop ``pin`` from the chunks of stored manifest ``mid`` (the quota may evict them).

        Raises :class:`ManifestError` when ``mid`` is not stored.
        """
        self._set_pins(mid, pin, pinned=False)

    def _set_pins(self, mid: bytes, pin: PinReason, *, pinned: bool) -> int:
        stored = self.get(mid)
        if stored is None:
            raise ManifestError(f"no stored video {mid.hex()}")
        batch = Batch()
        changed = 0
        with self._chunks.exclusive():
            for cid in _chunk_sizes(stored.manifest):
                if not pinned:
                    self._chunks.unpin(cid, pin, batch=batch)
                elif self._chunks.has(cid):
                    self._chunks.pin(cid, pin, batch=batch)
                    changed += 1
            self._kv.write(batch, sync=True)
        return changed

    def pinned_videos(self, pin: PinReason) -> set[bytes]:
        """The stored manifests naming a chunk pinned for ``pin``."""
        found: set[bytes] = set()
        for cid in self._chunks.pinned(pin):
            prefix = _key(Prefix.MANIFEST_BY_CHUNK, cid)
            for key, _ in self._kv.iterate(prefix, include_value=False):
                found.add(key[len(prefix) :])
        return found

    def _check_chunks(self, mid: bytes, sizes: dict[bytes, int]) -> None:
        stored: dict[bytes, int] = {}
        for cid in sizes:
            with contextlib.suppress(ChunkMissing):
                stored[cid] = self._chunks.size_of(cid)
        if len(stored) < len(sizes):
            missing = len(sizes) - len(stored)
            raise MissingChunks(f"{missing} of {len(sizes)} chunks of {mid.hex()} missing")
        for cid, size in sizes.items():
            if stored[cid] != size:
                raise MissingChunks(
                    f"a chunk of {mid.hex()} is {stored[cid]} bytes, the manifest says {size}"
                )

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
        # Who made it and when, for the feed's point lookups (storage/socialgraph.py).
        info = _key(Prefix.MANIFEST_INFO, mid)
        if present:
            batch.put(info, manifest.author + ms)
        else:
            batch.delete(info)

    def begin(self, message: SignedMessage) -> None:
        """Record that the chunks of ``message``'s manifest are about to be stored."""
        manifest = message.record
        assert isinstance(manifest, VideoManifest)
        batch = Batch()
        cids = list(_chunk_sizes(manifest))
        batch.put(_key(Prefix.MANIFEST_PENDING, message.id), msgpack.packb(cids))
        self._kv.write(batch, sync=True)

    def recover(self) -> int:
        """Undo publishes that crashed before their manifest was stored; return how many."""
        undone = 0
        for key, value in list(self._kv.iterate(_key(Prefix.MANIFEST_PENDING))):
            try:
                cids = msgpack.unpackb(value)
            except ValueError as exc:
                raise StoreCorrupt(f"pending publish {key[1:].hex()} is damaged") from exc
            for cid in cids:
                if not self._chunks.has(cid) or self._named(cid):
                    continue
                # The crashed publish pinned it; a chunk nothing else holds goes.
                if self._chunks.pins(cid) - {PinReason.OWN}:
                    self._chunks.unpin(cid, PinReason.OWN)
                else:
                    self._chunks.delete(cid)
            batch = Batch()
            batch.delete(key)
            self._kv.write(batch, sync=True)
            undone += 1
        return undone

    def _named(self, cid: bytes, *, besides: bytes = b"") -> bool:
        """True if a stored manifest other than ``besides`` names chunk ``cid``."""
        prefix = _key(Prefix.MANIFEST_BY_CHUNK, cid)
        return any(
            key[len(prefix) :] != besides
            for key, _ in self._kv.iterate(prefix, include_value=False)
        )

    def get(self, mid: bytes) -> StoredManifest | None:
        """Return the manifest with id ``mid``, or None. Raises :class:`DamagedRecord`."""
        raw = self._kv.get(_key(Prefix.MANIFEST, mid))
        if raw is None:
            return None
        message = read_back(raw, VideoManifest, f"manifest {mid.hex()}")
        if message.id != mid:
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
        found = []
        for key, _ in self._kv.iterate(_key(Prefix.MANIFEST, start), include_value=False):
            if key[1:].hex().startswith(text):
                found.append(key[1:])
            if len(found) > 1:
                raise KeyError(f"several stored videos start with {text}: give more digits")
        if not found:
            raise KeyError(f"no stored video with id {text}")
        return found[0]

    def by_creator(self, author: bytes, *, limit: int = 50) -> list[StoredManifest]:
        """The creator's manifests, newest first."""
        return self._walk(_key(Prefix.MANIFEST_BY_CREATOR, author), limit)

    def recent(self, *, limit: int = 50) -> list[StoredManifest]:
        """All stored manifests, newest first."""
        return self._walk(_key(Prefix.MANIFEST_BY_TIME), limit)

    def _walk(self, prefix: bytes, limit: int) -> list[StoredManifest]:
        out: list[StoredManifest] = []
        if limit <= 0:
            return out
        for key, _ in self._kv.iterate(prefix, reverse=True, include_value=False):
            # Index keys end with the message id.
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

        Returns False when the tombstone was already stored. Raises :class:`Reject` when
        the stored video is another account's (the tombstone is invalid, and not stored).
        A tombstone for a video not stored yet is kept under its author, and only ever
        withdraws that author's video. Chunks no other manifest names lose their pins and
        stay until the quota evicts them.
        """
        tombstone = message.record
        if not isinstance(tombstone, Tombstone):
            raise ManifestError(f"not a tombstone: {message.kind}")
        mid = tombstone.manifest
        key = _key(Prefix.TOMBSTONE, mid, tombstone.author)
        if self._kv.get(key) is not None:
            return False
        check_before_write(message, ManifestError)
        batch = Batch()
        stored = self.get(mid)
        if stored is not None:
            validate_tombstone_target(tombstone, stored.manifest)
        with self._chunks.exclusive():
            if stored is not None:
                self._drop(batch, mid, stored.manifest)
            batch.put(key, message.raw)
            self._kv.write(batch, sync=True)
        return True

    def _drop(self, batch: Batch, mid: bytes, manifest: VideoManifest) -> None:
        batch.delete(_key(Prefix.MANIFEST, mid))
        self._index(batch, mid, manifest, present=False)
        for cid in _chunk_sizes(manifest):
            batch.delete(_key(Prefix.MANIFEST_BY_CHUNK, cid, mid))
            # Most videos from the network have no chunk held here: check that first, as
            # recover() does, before the index scan and the pins read.
            if not self._chunks.has(cid) or self._named(cid, besides=mid):
                continue
            try:
                reasons = self._chunks.pins(cid)
            except ChunkMissing:
                continue  # already gone (deleted for repair, say): nothing to unpin
            for reason in reasons:
                self._chunks.unpin(cid, reason, batch=batch)

    def tombstone(self, mid: bytes, author: bytes) -> SignedMessage | None:
        """The stored tombstone by ``author`` withdrawing ``mid``, if any.

        Raises :class:`DamagedRecord` if it no longer checks.
        """
        raw = self._kv.get(_key(Prefix.TOMBSTONE, mid, author))
        if raw is None:
            return None
        return read_back(raw, Tombstone, f"tombstone for {mid.hex()}")
