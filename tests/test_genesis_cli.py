"""``toktok network init``, validator key files, and the ledger keys of node.toml."""

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.genesis import (
    GENESIS_FILE,
    GENESIS_JSON,
    VALIDATORS_DIR,
    NetworkPlan,
    build_genesis,
    key_file_name,
    parse_allocation,
    write_network,
)
from node.cli import main
from node.config import ConfigError, NodeConfig, load_config, write_config
from node.ledgerconfig import load_genesis, load_validator_key
from protocol.accounts import AccountKey, account_to_text
from protocol.genesis import committee_of, decode_genesis, network_id
from protocol.orders import AMOUNT_MAX
from storage.keyfile import (
    MAGIC,
    KeyFileDamaged,
    KeyFileError,
    KeyFileWrongPassphrase,
    key_file_public_key,
    read_key_file,
    write_key_file,
)
from storage.keystore import SCRYPT_N_DEFAULT, SCRYPT_N_MIN
from tests.cli_helpers import PASSPHRASE, toktok

SEED = bytes(range(32))
ALICE = AccountKey(bytes([1] * 32))
BOB = AccountKey(bytes([2] * 32))


def init_args(out: Path, *extra: str) -> list[str]:
    return ["network", "init", "--out", str(out), *extra]


@pytest.fixture
def passphrase_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOKTOK_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("TOKTOK_HOME", raising=False)
    yield


# ------------------------------------------------------------------------ network init


def test_network_init_writes_genesis_json_and_keys(tmp_path: Path) -> None:
    out = tmp_path / "net"
    args = ["--validators", "3", "--name", "testnet", "--symbol", "TT", "--decimals", "2"]
    args += ["--weight", "5", "--alloc", f"{ALICE.account_id}=1000"]
    args += ["--alloc", f"{BOB.account_id}=250"]
    proc = toktok(tmp_path, *init_args(out, *args))
    raw = (out / GENESIS_FILE).read_bytes()
    genesis = decode_genesis(raw)
    assert proc.stdout.splitlines()[-1] == network_id(raw).hex()
    assert (genesis.name, genesis.symbol, genesis.decimals) == ("testnet", "TT", 2)
    assert [(a.account, a.amount) for a in genesis.allocations] == [
        (ALICE.public_key, 1000),
        (BOB.public_key, 250),
    ]
    # The committee is exactly the key files, in seat order, and each opens.
    keys = [read_key_file(out / VALIDATORS_DIR / key_file_name(i), PASSPHRASE) for i in range(3)]
    assert [(m.key, m.weight) for m in genesis.validators] == [(k.public_key, 5) for k in keys]
    assert sorted(p.name for p in (out / VALIDATORS_DIR).iterdir()) == [
        "validator-1.key",
        "validator-2.key",
        "validator-3.key",
    ]
    for path in (out / VALIDATORS_DIR).iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    described = json.loads((out / GENESIS_JSON).read_text())
    committee = committee_of(genesis)
    assert described["network"] == network_id(raw).hex()
    assert [v["account"] for v in described["validators"]] == [k.account_id for k in keys]
    assert [v["weight"] for v in described["validators"]] == [5, 5, 5]
    assert (described["quorum"], described["total_weight"]) == (committee.quorum, 15)
    assert described["token"]["supply"] == 1250
    assert described["allocations"] == [
        {"account": ALICE.account_id, "amount": 1000},
        {"account": BOB.account_id, "amount": 250},
    ]


def test_network_init_json_summary(
    tmp_path: Path, passphrase_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    args = init_args(out, "--validators", "1", "--alloc", f"{ALICE.account_id}=7", "--json")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    raw = (out / GENESIS_FILE).read_bytes()
    assert summary["network"] == network_id(raw).hex()
    assert (summary["validators"], summary["quorum"], summary["supply"]) == (1, 1, 7)
    assert summary["validator_keys"] == [str(out / VALIDATORS_DIR / "validator-1.key")]
    # The default cost of the keystore protects validator keys too.
    assert key_file_public_key(out / VALIDATORS_DIR / "validator-1.key") == (
        decode_genesis(raw).validators[0].key
    )
    assert SCRYPT_N_DEFAULT > SCRYPT_N_MIN


def test_network_init_refuses_to_overwrite(
    tmp_path: Path, passphrase_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    args = init_args(out, "--validators", "1", "--alloc", f"{ALICE.account_id}=1")
    assert main(args) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: {out} already holds a genesis (genesis.bin); not overwriting it"
    ]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # Keys left without a genesis are not overwritten either.
    (out / GENESIS_FILE).unlink()
    (out / GENESIS_JSON).unlink()
    assert main(args) == 2
    assert "already holds validator keys" in capsys.readouterr().err


def test_invalid_alloc_through_the_real_command(tmp_path: Path) -> None:
    out = tmp_path / "net"
    args = init_args(out, "--validators", "2", "--alloc", "ttnope=5")
    proc = toktok(tmp_path, *args, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: --alloc: ")
    assert not out.exists()


ALLOC = f"{ALICE.account_id}=10"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--validators", "2"], "--alloc ACCOUNT=AMOUNT: at least one allocation"),
        (["--validators", "2", "--alloc", ALICE.account_id], "--alloc: expected ACCOUNT=AMOUNT"),
        (["--validators", "2", "--alloc", ALICE.account_id[:-1] + "a=5"], "--alloc: account id"),
        (["--validators", "2", "--alloc", "bob=5"], "--alloc: account id must start with"),
        (["--validators", "2", "--alloc", f"{ALICE.account_id}=0"], "--alloc: an amount is 1 to"),
        (["--validators", "2", "--alloc", f"{ALICE.account_id}=-3"], "--alloc: an amount"),
        (["--validators", "2", "--alloc", f"{ALICE.account_id}=1.5"], "is not an integer"),
        (
            ["--validators", "2", "--alloc", f"{ALICE.account_id}={AMOUNT_MAX + 1}"],
            "--alloc: an amount",
        ),
        (["--validators", "2", "--alloc", ALLOC, "--alloc", ALLOC], "is given twice"),
        (
            [
                "--validators",
                "2",
                "--alloc",
                f"{ALICE.account_id}={AMOUNT_MAX}",
                "--alloc",
                f"{BOB.account_id}=1",
            ],
            "allocations add up to more than",
        ),
        (["--validators", "0", "--alloc", ALLOC], "--validators: 1 to 64, not 0"),
        (["--validators", "65", "--alloc", ALLOC], "--validators: 1 to 64, not 65"),
        (["--validators", "1", "--weight", "0", "--alloc", ALLOC], "--weight: 1 to"),
        (["--validators", "1", "--decimals", "19", "--alloc", ALLOC], "--decimals: 0 to 18"),
        (["--validators", "1", "--symbol", "tok", "--alloc", ALLOC], "platform symbol 'tok'"),
        (["--validators", "1", "--name", "", "--alloc", ALLOC], "Genesis.name"),
        (["--validators", "1", "--name", "x" * 65, "--alloc", ALLOC], "Genesis.name"),
    ],
)
def test_invalid_input_exits_2_and_writes_nothing(
    tmp_path: Path,
    passphrase_env: None,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "net"
    assert main(init_args(out, *args)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_invalid_out_and_passphrase_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a file"
    a_file.write_text("keep")
    monkeypatch.setenv("TOKTOK_PASSPHRASE", PASSPHRASE)
    assert main(init_args(a_file, "--validators", "1", "--alloc", ALLOC)) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep"
    monkeypatch.setenv("TOKTOK_PASSPHRASE", "short")
    out = tmp_path / "net"
    assert main(init_args(out, "--validators", "1", "--alloc", ALLOC)) == 2
    assert "passphrase needs at least" in capsys.readouterr().err
    assert not out.exists()


def test_parse_allocation_accepts_spaces_and_underscores() -> None:
    allocation = parse_allocation(f" {ALICE.account_id} = 1_000 ")
    assert (allocation.account, allocation.amount) == (ALICE.public_key, 1000)


# ------------------------------------------------------------------------ key files


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "v.key"
    write_key_file(path, SEED, PASSPHRASE, scrypt_n=SCRYPT_N_MIN)
    return path


def test_key_file_round_trip(key_file: Path) -> None:
    key = read_key_file(key_file, PASSPHRASE)
    assert key.seed == SEED
    assert key_file_public_key(key_file) == AccountKey(SEED).public_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(MAGIC)
    assert [p.name for p in key_file.parent.iterdir()] == ["v.key"]  # no temporary left


def test_invalid_wrong_passphrase(key_file: Path) -> None:
    with pytest.raises(KeyFileWrongPassphrase, match="wrong passphrase for the key file"):
        read_key_file(key_file, "not the passphrase")
    with pytest.raises(KeyFileError, match="empty passphrase"):
        read_key_file(key_file, "")


def test_invalid_key_file_is_never_overwritten(key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="never overwritten"):
        write_key_file(key_file, bytes(32), PASSPHRASE, scrypt_n=SCRYPT_N_MIN)
    assert key_file.read_bytes() == before


def test_invalid_seed_and_cost_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        write_key_file(tmp_path / "k", b"short", PASSPHRASE, scrypt_n=SCRYPT_N_MIN)
    with pytest.raises(ValueError, match="scrypt_n"):
        write_key_file(tmp_path / "k", SEED, PASSPHRASE, scrypt_n=1000)
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("length", [0, 5, len(MAGIC), len(MAGIC) + 1, 40, 100, -1])
def test_invalid_truncated_key_file(key_file: Path, length: int) -> None:
    raw = key_file.read_bytes()
    key_file.write_bytes(raw[:length])
    with pytest.raises(KeyFileDamaged, match=r"truncated|damaged"):
        read_key_file(key_file, PASSPHRASE)


@pytest.mark.parametrize("where", ["magic", "version", "body", "checksum"])
def test_invalid_damaged_key_file(key_file: Path, where: str) -> None:
    raw = bytearray(key_file.read_bytes())
    offset = {"magic": 0, "version": len(MAGIC), "body": 60, "checksum": len(raw) - 1}[where]
    raw[offset] ^= 0x01
    key_file.write_bytes(bytes(raw))
    expected = {"magic": "not a toktok key file", "version": "format version 0"}
    with pytest.raises(KeyFileDamaged, match=expected.get(where, "damaged")):
        read_key_file(key_file, PASSPHRASE)
    with pytest.raises(KeyFileDamaged):
        key_file_public_key(key_file)


def test_invalid_ciphertext_with_a_valid_checksum(key_file: Path) -> None:
    """Damage the checksum cannot see (it was recomputed): the cipher's tag does."""
    raw = bytearray(key_file.read_bytes()[:-32])
    raw[-5] ^= 0x01  # the last bytes of the body are the ciphertext's tag
    key_file.write_bytes(bytes(raw) + hashlib.sha256(raw).digest())
    with pytest.raises(KeyFileDamaged, match="fails authentication"):
        read_key_file(key_file, PASSPHRASE)


def test_invalid_key_file_of_other_kinds(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(MAGIC + b"\x01" + bytes(5000))
    with pytest.raises(KeyFileDamaged, match="longer than"):
        read_key_file(big, PASSPHRASE)
    with pytest.raises(FileNotFoundError):
        read_key_file(tmp_path / "absent", PASSPHRASE)


# ------------------------------------------------------------------------ node.toml


@pytest.fixture
def network(tmp_path: Path) -> Path:
    """A genesis with two validators in tmp_path/net, keys made cheap to open."""
    seeds = [bytes([10 + i] * 32) for i in range(2)]
    plan = NetworkPlan(
        out=tmp_path / "net",
        validators=2,
        weight=1,
        name="test",
        symbol="TOK",
        token_name="",
        decimals=6,
        allocations=(parse_allocation(f"{ALICE.account_id}=100"),),
    )
    raw = build_genesis(plan, [AccountKey(s) for s in seeds], 1)
    write_network(plan.out, raw, seeds, PASSPHRASE, scrypt_n=SCRYPT_N_MIN)
    return plan.out


def write_toml(home: Path, text: str) -> NodeConfig:
    home.mkdir(parents=True, exist_ok=True)
    (home / "node.toml").write_text(text)
    return load_config(home)


def test_config_ledger_keys_default_to_none(tmp_path: Path) -> None:
    write_config(tmp_path, NodeConfig())
    text = (tmp_path / "node.toml").read_text()
    assert 'genesis = ""' in text and 'validator_key = ""' in text
    config = load_config(tmp_path)
    assert config == NodeConfig()
    assert load_genesis(config, tmp_path) is None
    assert load_validator_key(config, tmp_path, PASSPHRASE) is None


def test_config_with_genesis_and_validator_key_loads(tmp_path: Path, network: Path) -> None:
    home = tmp_path / "home"
    text = 'genesis = "../net/genesis.bin"\n'
    text += 'validator_key = "../net/validators/validator-2.key"\n'
    config = write_toml(home, text)
    raw = load_genesis(config, home)
    assert raw == (network / GENESIS_FILE).read_bytes()
    key = load_validator_key(config, home, PASSPHRASE)
    assert key is not None and key.public_key == decode_genesis(raw).validators[1].key
    # Absolute paths work as well.
    absolute = NodeConfig(
        genesis=str(network / GENESIS_FILE),
        validator_key=str(network / VALIDATORS_DIR / "validator-1.key"),
    )
    key = load_validator_key(absolute, tmp_path / "elsewhere", PASSPHRASE)
    assert key is not None and key.public_key == decode_genesis(raw).validators[0].key
    with pytest.raises(KeyFileWrongPassphrase):
        load_validator_key(config, home, "not the passphrase")


def test_invalid_validator_key_outside_the_committee(tmp_path: Path, network: Path) -> None:
    outsider = tmp_path / "outsider.key"
    write_key_file(outsider, SEED, PASSPHRASE, scrypt_n=SCRYPT_N_MIN)
    config = NodeConfig(genesis=str(network / GENESIS_FILE), validator_key=str(outsider))
    with pytest.raises(ConfigError, match="is not in the committee") as caught:
        load_validator_key(config, tmp_path, PASSPHRASE)
    assert account_to_text(AccountKey(SEED).public_key) in str(caught.value)


def test_invalid_ledger_config(tmp_path: Path, network: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError, match="validator_key: a validator needs"):
        write_toml(home, 'validator_key = "v.key"\n')
    with pytest.raises(ConfigError, match="genesis: expected str"):
        write_toml(home, "genesis = 3\n")
    with pytest.raises(ConfigError, match="genesis: cannot read"):
        load_genesis(NodeConfig(genesis="absent.bin"), home)
    (home / "junk.bin").write_bytes(b"\x93junk")
    with pytest.raises(ConfigError, match=r"genesis: .*not a genesis"):
        load_genesis(NodeConfig(genesis="junk.bin"), home)
    genesis = str(network / GENESIS_FILE)
    with pytest.raises(ConfigError, match="validator_key: cannot read"):
        load_validator_key(NodeConfig(genesis=genesis, validator_key="absent.key"), home, "pw")
    damaged = home / "damaged.key"
    damaged.write_bytes((network / VALIDATORS_DIR / "validator-1.key").read_bytes()[:-1])
    config = NodeConfig(genesis=genesis, validator_key=str(damaged))
    with pytest.raises(ConfigError, match=r"validator_key: .*damaged"):
        load_validator_key(config, home, PASSPHRASE)
