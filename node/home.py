"""A node's home directory: its store, its libp2p key and its accounts.

Layout::

    HOME/db/        the node's LevelDB (every key prefix in storage/keys.py)
    HOME/node.key   the 32-byte Ed25519 seed of the node's libp2p identity (mode 0600)

Accounts live encrypted in the store's keystore; the store's setting ``default_account``
names the one commands act as unless told otherwise.
"""

import os
from pathlib import Path

from protocol.accounts import SEED_LEN, AccountKey
from storage.errors import StoreError
from storage.keystore import check_name
from storage.kv import Batch
from storage.stores import Stores

DEFAULT_ACCOUNT_SETTING = "default_account"
PASSPHRASE_ENV = "TOKTOK_PASSPHRASE"
"""Where commands and nodes read an account's (or validator key's) passphrase from."""
NODE_KEY_FILE = "node.key"
DB_DIR = "db"


class HomeError(Exception):
    """A home directory that is missing, already set up, or damaged."""


class Home:
    """Paths and set-up of one node home."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    @property
    def db_path(self) -> Path:
        return self.path / DB_DIR

    @property
    def node_key_path(self) -> Path:
        return self.path / NODE_KEY_FILE

    def exists(self) -> bool:
        return self.node_key_path.exists() and self.db_path.exists()

    def init(self, *, account_name: str, passphrase: str, seed: bytes | None = None) -> AccountKey:
        """Create the home: node key, store, and a first account made the default.

        Raises :class:`HomeError` if the home is already set up.
        """
        if self.exists():
            raise HomeError(f"{self.path} is already a toktok home")
        check_name(account_name)
        self.path.mkdir(parents=True, exist_ok=True)
        key = AccountKey(seed if seed is not None else os.urandom(SEED_LEN))
        with Stores.open(self.db_path) as stores:
            if stores.keystore.names():
                raise HomeError(f"{self.db_path} already holds accounts; not overwriting them")
            batch = Batch()
            stores.keystore.add(account_name, key.seed, key.public_key, passphrase, batch=batch)
            stores.stage_setting(batch, DEFAULT_ACCOUNT_SETTING, account_name)
            stores.kv.write(batch, sync=True)
        # Last: the node key marks a home as set up, so a crash before it leaves none.
        _write_secret(self.node_key_path, os.urandom(SEED_LEN))
        return key

    def open(self, *, quota_bytes: int | None = None) -> Stores:
        """Open the home's store. Raises :class:`HomeError` if the home is not set up."""
        if not self.exists():
            raise HomeError(f"{self.path} is not a toktok home: run 'toktok init' first")
        try:
            return Stores.open(self.db_path, quota_bytes=quota_bytes)
        except StoreError as exc:
            raise HomeError(f"cannot open the store in {self.db_path}: {exc}") from exc


def _write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only, atomically."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def unlock_account(stores: Stores, passphrase: str, name: str | None = None) -> AccountKey:
    """Decrypt an account key (the default one unless ``name`` is given).

    Raises :class:`HomeError` when no such account exists and the keystore's
    ``WrongPassphrase`` when the passphrase is wrong.
    """
    name = name or stores.get_setting(DEFAULT_ACCOUNT_SETTING)
    if name is None:
        raise HomeError("this home has no default account")
    if name not in stores.keystore.names():
        raise HomeError(f"no account named {name!r} in this home")
    return AccountKey(stores.keystore.unlock(name, passphrase))


def default_account(stores: Stores) -> tuple[str, bytes]:
    """The default account's name and public key (no passphrase needed)."""
    name = stores.get_setting(DEFAULT_ACCOUNT_SETTING)
    if name is None:
        raise HomeError("this home has no default account")
    return name, stores.keystore.public_key(name)
