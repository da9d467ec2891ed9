"""One handle on all of a node's durable state: a single KV and the stores over it."""

from pathlib import Path
from types import TracebackType

from storage.chunks import ChunkStore
from storage.keys import Prefix, key
from storage.keystore import Keystore
from storage.kv import KV, Batch, LevelDBKV, MemoryKV
from storage.manifests import ManifestStore
from storage.social import SocialStore


class Stores:
    """The chunk, manifest, social and key stores of one node, sharing one KV."""

    def __init__(self, kv: KV, *, quota_bytes: int | None = None) -> None:
        self.kv = kv
        self.chunks = ChunkStore(kv, quota_bytes=quota_bytes)
        self.manifests = ManifestStore(kv, self.chunks)
        self.social = SocialStore(kv)
        self.keystore = Keystore(kv)

    @classmethod
    def open(cls, path: Path, *, quota_bytes: int | None = None) -> "Stores":
        """Open (creating if needed) the LevelDB at ``path``. Raises ``StoreError``."""
        return cls(LevelDBKV(str(path)), quota_bytes=quota_bytes)

    @classmethod
    def memory(cls, *, quota_bytes: int | None = None) -> "Stores":
        """Stores over an in-memory KV, for tests and the simulator."""
        return cls(MemoryKV(), quota_bytes=quota_bytes)

    def get_setting(self, name: str) -> str | None:
        """A node setting kept in the store (such as the default account's name)."""
        raw = self.kv.get(key(Prefix.CONFIG, name.encode("utf-8")))
        return None if raw is None else raw.decode("utf-8")

    def set_setting(self, name: str, value: str) -> None:
        batch = Batch()
        batch.put(key(Prefix.CONFIG, name.encode("utf-8")), value.encode("utf-8"))
        self.kv.write(batch, sync=True)

    def close(self) -> None:
        self.chunks.close()
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
