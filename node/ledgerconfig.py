"""The ledger settings of node.toml, read and checked: the genesis and the validator key.

``genesis`` names the network's genesis.bin (written by ``toktok network init``) and
``validator_key`` this node's encrypted validator key file; both are relative to the home
unless absolute. A key that is not in the genesis committee is refused before the
passphrase is even tried, since a node voting with it would only be ignored.
"""

from pathlib import Path

from node.config import ConfigError, NodeConfig
from protocol.accounts import AccountKey, account_to_text
from protocol.genesis import GENESIS_BYTES_MAX, decode_genesis
from storage.keyfile import KeyFileDamaged, key_file_public_key, read_key_file


def config_path(home: Path, value: str) -> Path:
    """A path from node.toml: relative to the home unless absolute."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else home / path


def load_genesis(config: NodeConfig, home: Path) -> bytes | None:
    """The canonical bytes of the genesis that ``config.genesis`` names; None when it names
    none (this node keeps no ledger).

    Raises :class:`ConfigError`, naming the key and the file, when the file cannot be read,
    is too large or is not a valid genesis.
    """
    if not config.genesis:
        return None
    path = config_path(home, config.genesis)
    try:
        with path.open("rb") as f:
            raw = f.read(GENESIS_BYTES_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"genesis: cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > GENESIS_BYTES_MAX:
        raise ConfigError(f"genesis: {path} is longer than {GENESIS_BYTES_MAX} bytes")
    try:
        decode_genesis(raw)
    except ValueError as exc:
        raise ConfigError(f"genesis: {path}: {exc}") from exc
    return raw


def load_validator_key(config: NodeConfig, home: Path, passphrase: str) -> AccountKey | None:
    """This node's validator key, from the file ``config.validator_key`` names; None when
    it names none (this node does not vote).

    Raises :class:`ConfigError` when the genesis cannot be loaded (see :func:`load_genesis`),
    the key file cannot be read or is damaged, or its key is not in the genesis committee;
    ``storage.keyfile.KeyFileWrongPassphrase`` when ``passphrase`` does not open it, and
    its base ``KeyFileError`` when the passphrase is empty.
    """
    if not config.validator_key:
        return None
    raw = load_genesis(config, home)
    if raw is None:
        raise ConfigError("validator_key: a validator needs the network's genesis too")
    committee = {member.key for member in decode_genesis(raw).validators}
    path = config_path(home, config.validator_key)
    try:
        public_key = key_file_public_key(path)
        if public_key not in committee:
            raise ConfigError(
                f"validator_key: the key in {path} ({account_to_text(public_key)}) is not in "
                f"the committee of the genesis {config_path(home, config.genesis)}"
            )
        return read_key_file(path, passphrase)
    except OSError as exc:
        raise ConfigError(f"validator_key: cannot read {path}: {exc.strerror or exc}") from exc
    except KeyFileDamaged as exc:
        raise ConfigError(f"validator_key: {exc}") from exc
