"""One handle on all of a node's durable state: a single KV and the stores over it."""

from pathlib import Path
from types import TracebackType

from protocol.envelope import SignedMessage
from storage.chunks import ChunkStore
from storage.errors import StoreCorrupt, StoreError
from storage.keys import META_SCHEMA, Prefix, key, meta_key
from storage.keystore import Keystore
from storage.kv import KV, Batch, LevelDBKV, MemoryKV
from storage.ledger import LedgerStore
from storage.manifests import ManifestStore
from storage.messages import MessageLog
from storage.offers import OfferStore
from storage.social import SocialStore
from storage.socialgraph import SocialGraph

SCHEMA_VERSION = 2
"""The layout of storage/keys.py this code reads and writes. 2: the social graph's indexes
(0x80 to 0x85), which every register change must keep, so a toktok that reads schema 1 (and
would change registers without them) must not open the store."""


def _check_schema(kv: KV) -> None:
    """Refuse a store of a newer schema; mark an older or new one as this schema's.

    Raises StoreCorrupt for a damaged version, StoreError for a newer one. An older store is
    marked before it is upgraded (Stores rebuilds the graph when its marker is missing),
    so an older toktok never opens it again, even if the upgrade is cut short.
    """
    raw = kv.get(meta_key(META_SCHEMA))
    if raw is not None:
        if not raw.isdigit():
            raise StoreCorrupt(f"the store's schema version is damaged: {raw[:16]!r}")
        if int(raw) > SCHEMA_VERSION:
            raise StoreError(
                f"this store has schema {int(raw)}, written by a newer toktok; this one reads "
                f"schema {SCHEMA_VERSION}: upgrade toktok"
            )
        if int(raw) == SCHEMA_VERSION:
            return
    batch = Batch()
    batch.put(meta_key(META_SCHEMA), str(SCHEMA_VERSION).encode("ascii"))
    kv.write(batch, sync=True)


class Stores:
    """The chunk, manifest, social, key, ledger and offer stores, the social graph and the
    message log of one node, sharing one KV."""

    def __init__(self, kv: KV, *, quota_bytes: int | None = None) -> None:
        """Raises StoreError for a store written by a newer schema; undoes crashed publishes
        and builds the social graph's indexes if the store lacks them (an upgrade from
        schema 1, or a rebuild cut short)."""
        self.kv = kv
        _check_schema(kv)
        self.chunks = ChunkStore(kv, quota_bytes=quota_bytes)
        self.manifests = ManifestStore(kv, self.chunks)
        self.social = SocialStore(kv)
        self.graph = SocialGraph(kv, self.social)
        self.keystore = Keystore(kv)
        self.messages = MessageLog(kv)
        self.ledger = LedgerStore(kv, self.messages)
        self.offers = OfferStore(kv)
        self.manifests.recover()
        if not self.graph.indexed():
            self.graph.rebuild()

    @classmethod
    def open(cls, path: Path, *, quota_bytes: int | None = None) -> "Stores":
        """Open (creating if needed) the LevelDB at ``path``. Raises ``StoreError``."""
        return cls(LevelDBKV(str(path)), quota_bytes=quota_bytes)

    @classmethod
    def memory(cls, *, quota_bytes: int | None = None) -> "Stores":
        """Stores over an in-memory KV, for tests and the simulator."""
        return cls(MemoryKV(), quota_bytes=quota_bytes)

    def apply_social(self, message: SignedMessage) -> None:
        """Apply a social message made here (no node running) and log it for sync, in one
        write: a crash keeps both or neither. Raises StoreError as the stores do."""
        batch = Batch()
        if self.messages.stage(batch, message):
            self.social.apply(message, batch)
            self.kv.write(batch)

    def get_setting(self, name: str) -> str | None:
        """A node setting kept in the store (such as the default account's name)."""
        raw = self.kv.get(key(Prefix.CONFIG, name.encode("utf-8")))
        return None if raw is None else raw.decode("utf-8")

    def set_setting(self, name: str, value: str) -> None:
        batch = Batch()
        self.stage_setting(batch, name, value)
        self.kv.write(batch, sync=True)

    def stage_setting(self, batch: Batch, name: str, value: str) -> None:
        """Put a setting in ``batch``, to be written with other changes."""
        batch.put(key(Prefix.CONFIG, name.encode("utf-8")), value.encode("utf-8"))

    def close(self) -> None:
        try:
            self.chunks.close()
        finally:
            self.kv.close()

    def __enter__(self) -> "Stores":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
