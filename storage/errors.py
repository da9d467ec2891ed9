"""Typed errors of the storage layer.

Every error raised on purpose by ``storage/`` derives from :class:`StoreError`, so a caller
can catch the layer as a whole, or one case when it can act on it: a missing chunk can be
fetched from a peer, a corrupt one deleted and fetched again, a full store trimmed.
"""


class StoreError(Exception):
    """Base class of every error raised by ``storage/``."""


class StoreClosed(StoreError):
    """The store was used after :meth:`close` (our own bug, not the disk's)."""


class StoreLocked(StoreError):
    """Another process (or another handle in this one) has the database open."""


class StoreCorrupt(StoreError):
    """The database, or a record inside it, cannot be read back as it was written."""


class ChunkError(StoreError):
    """Base class of the errors about one chunk; ``cid`` is its binary id."""

    def __init__(self, message: str, cid: bytes) -> None:
        super().__init__(message)
        self.cid = cid


class ChunkMissing(ChunkError):
    """No chunk with this id is stored."""


class ChunkCorrupt(ChunkError):
    """The stored bytes no longer hash to the chunk id; they are never served."""


class ChunkIdMismatch(ChunkError):
    """Bytes offered for storage do not hash to the id they were offered under."""


class ChunkTooLarge(ChunkError):
    """Bytes offered for storage exceed the chunk size limit."""


class QuotaExceeded(ChunkError):
    """The chunk does not fit in the quota even after evicting every unpinned chunk."""


class BatchConflict(StoreError):
    """A batch handed to a store is still unwritten while the store is asked for more."""


class KeystoreError(StoreError):
    """A keystore entry is missing, malformed or damaged, or a request is invalid."""


class WrongPassphrase(KeystoreError):
    """The passphrase does not unlock this keystore entry."""


class KeystoreEntryMissing(KeystoreError):
    """No keystore entry has this name."""


class KeystoreEntryDamaged(KeystoreError, StoreCorrupt):
    """A keystore entry fails its integrity check: it cannot be decrypted as stored."""


class ManifestError(StoreError):
    """A manifest (or tombstone) that cannot be stored as asked."""


class MissingChunks(ManifestError):
    """The chunk store lacks chunks the manifest names: it is not stored before them."""


class Withdrawn(ManifestError):
    """The video was withdrawn by its creator (a tombstone of theirs is stored for it)."""


class DamagedRecord(StoreCorrupt):
    """A stored record (manifest, tombstone, social event, ledger entry) failed its check
    on read."""


class LedgerError(StoreError):
    """A ledger change that cannot be stored as asked; nothing of it is staged."""


class WrongNetwork(LedgerError):
    """The store holds the ledger of another network (another genesis)."""
