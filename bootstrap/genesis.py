"""``toktok network init``: a new network's genesis and its validators' keys.

    toktok network init --validators N --out DIR --alloc ACCOUNT=AMOUNT [--alloc ...]
        [--name NAME] [--symbol TOK] [--token-name TEXT] [--decimals 6] [--weight W] [--json]

makes N fresh validator keys and writes::

    DIR/validators/validator-1.key ... validator-N.key
        each validator's key (committee seat 0 ... N-1), encrypted with the passphrase
        ($TOKTOK_PASSPHRASE, or asked) as storage/keyfile.py describes
    DIR/genesis.json   a description for people: network id, validators, quorum, token,
                       allocations (account ids in text form, amounts in base units)
    DIR/genesis.bin    the genesis itself, its canonical bytes: what nodes load (the
                       ``genesis`` key of node.toml) and what the network id hashes

Every input is checked before anything is written, and a DIR that already holds a genesis
or validator keys is refused. genesis.bin is written last, so a run that fails half-way
leaves no genesis behind (and removes the files it had written).
"""

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.cli import CliError, now_ms, out, read_passphrase, say
from protocol.accounts import SEED_LEN, AccountKey, InvalidAccount, account_from_text
from protocol.accounts import account_to_text as text_id
from protocol.certs import VALIDATORS_MAX, Member
from protocol.genesis import (
    Allocation,
    Genesis,
    committee_of,
    decode_genesis,
    encode_genesis,
    genesis_summary,
    network_id,
)
from protocol.orders import AMOUNT_MAX, DECIMALS_MAX
from storage.keyfile import write_key_file
from storage.keystore import SCRYPT_N_DEFAULT

GENESIS_FILE = "genesis.bin"
GENESIS_JSON = "genesis.json"
VALIDATORS_DIR = "validators"
WEIGHT_MAX = 2**32
"""A committee seat's largest weight (protocol.certs.Member)."""
DEFAULT_NAME = "toktok"
DEFAULT_SYMBOL = "TOK"
DEFAULT_DECIMALS = 6


def key_file_name(index: int) -> str:
    """The key file of committee seat ``index`` (0-based); files count from 1, as devnet
    homes do."""
    return f"validator-{index + 1}.key"


@dataclass(frozen=True)
class NetworkPlan:
    """What ``network init`` was asked to make, checked (see :func:`plan_from_args`)."""

    out: Path
    validators: int
    weight: int
    name: str
    symbol: str
    token_name: str
    decimals: int
    allocations: tuple[Allocation, ...]


def plan_from_args(args: argparse.Namespace) -> NetworkPlan:
    """The checked plan. Raises :class:`CliError` naming the flag at fault."""
    if not 1 <= args.validators <= VALIDATORS_MAX:
        raise CliError(f"--validators: 1 to {VALIDATORS_MAX}, not {args.validators}")
    if not 1 <= args.weight <= WEIGHT_MAX:
        raise CliError(f"--weight: 1 to {WEIGHT_MAX}, not {args.weight}")
    if not 0 <= args.decimals <= DECIMALS_MAX:
        raise CliError(f"--decimals: 0 to {DECIMALS_MAX}, not {args.decimals}")
    if not args.alloc:
        raise CliError(
            "--alloc ACCOUNT=AMOUNT: at least one allocation of the platform token is needed"
        )
    allocations = [parse_allocation(text) for text in args.alloc]
    seen: set[bytes] = set()
    for a in allocations:
        if a.account in seen:
            raise CliError(f"--alloc: account {text_id(a.account)} is given twice")
        seen.add(a.account)
    return NetworkPlan(
        out=args.out,
        validators=args.validators,
        weight=args.weight,
        name=args.name,
        symbol=args.symbol,
        token_name=args.token_name,
        decimals=args.decimals,
        allocations=tuple(allocations),
    )


def parse_allocation(text: str) -> Allocation:
    """``ACCOUNT=AMOUNT`` (a text account id, an integer in base units). Raises
    :class:`CliError`."""
    account_text, sep, amount_text = text.partition("=")
    if not sep:
        raise CliError(f"--alloc: expected ACCOUNT=AMOUNT, got {text!r}")
    try:
        account = account_from_text(account_text)
    except InvalidAccount as exc:
        raise CliError(f"--alloc: {exc}") from None
    try:
        amount = int(amount_text.strip())
    except ValueError:
        raise CliError(f"--alloc: the amount {amount_text!r} is not an integer") from None
    if not 1 <= amount <= AMOUNT_MAX:
        raise CliError(f"--alloc: an amount is 1 to {AMOUNT_MAX} base units, not {amount}")
    return Allocation(account, amount)


def build_genesis(plan: NetworkPlan, keys: list[AccountKey], created_ms: int) -> bytes:
    """The canonical bytes of the genesis of ``plan`` with ``keys`` as its committee.

    Raises :class:`CliError` for a genesis the protocol refuses (a bad symbol, a name too
    long, allocations adding up to too much).
    """
    genesis = Genesis(
        name=plan.name,
        created_ms=created_ms,
        validators=tuple(Member(key.public_key, plan.weight) for key in keys),
        symbol=plan.symbol,
        token_name=plan.token_name,
        decimals=plan.decimals,
        metadata="",
        allocations=plan.allocations,
    )
    try:
        raw = encode_genesis(genesis)
        # Decoding checks every field's limits too: what we write is what nodes accept.
        decode_genesis(raw)
    except ValueError as exc:
        raise CliError(f"the genesis would be invalid: {exc}") from None
    return raw


def describe(genesis: Genesis, raw: bytes) -> dict[str, Any]:
    """genesis.json: the genesis for people (nodes read genesis.bin only)."""
    committee = committee_of(genesis)
    return {
        "about": f"a description of {GENESIS_FILE}, which is the genesis nodes load",
        "name": genesis.name,
        "network": network_id(raw).hex(),
        "created_ms": genesis.created_ms,
        "validators": [
            {
                "seat": i,
                "account": text_id(m.key),
                "weight": m.weight,
                "key_file": f"{VALIDATORS_DIR}/{key_file_name(i)}",
            }
            for i, m in enumerate(genesis.validators)
        ],
        "total_weight": committee.total,
        "quorum": committee.quorum,
        "faulty_max": committee.faulty_max,
        "token": {
            "symbol": genesis.symbol,
            "name": genesis.token_name,
            "decimals": genesis.decimals,
            "metadata": genesis.metadata,
            "supply": sum(a.amount for a in genesis.allocations),
        },
        "allocations": [
            {"account": text_id(a.account), "amount": a.amount} for a in genesis.allocations
        ],
    }


def refuse_existing(out_dir: Path) -> None:
    """Raises :class:`CliError` when ``out_dir`` is not a folder or already holds a genesis
    or validator keys."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out: {out_dir} is not a folder")
    for name in (GENESIS_FILE, GENESIS_JSON):
        if (out_dir / name).exists():
            raise CliError(f"{out_dir} already holds a genesis ({name}); not overwriting it")
    keys_dir = out_dir / VALIDATORS_DIR
    if keys_dir.is_dir() and any(keys_dir.glob("validator-*.key")):
        raise CliError(f"{keys_dir} already holds validator keys; not overwriting them")


def write_network(
    out_dir: Path,
    raw: bytes,
    seeds: list[bytes],
    passphrase: str,
    *,
    scrypt_n: int = SCRYPT_N_DEFAULT,
) -> list[Path]:
    """Write the key files, genesis.json and, last, genesis.bin; return the key files.

    On a failure the files written so far are removed. Raises OSError when a file cannot
    be written, and storage.keyfile.KeyFileError when a key file exists after all.
    """
    written: list[Path] = []
    made_dirs = [d for d in (out_dir, out_dir / VALIDATORS_DIR) if not d.exists()]
    try:
        (out_dir / VALIDATORS_DIR).mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds):
            path = out_dir / VALIDATORS_DIR / key_file_name(i)
            write_key_file(path, seed, passphrase, scrypt_n=scrypt_n)
            written.append(path)
        text = json.dumps(describe(decode_genesis(raw), raw), indent=2) + "\n"
        written.append(_write_new(out_dir / GENESIS_JSON, text.encode()))
        written.append(_write_new(out_dir / GENESIS_FILE, raw))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for directory in reversed(made_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return written[: len(seeds)]


def _write_new(path: Path, data: bytes) -> Path:
    """Write a new file whole or not at all (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def cmd_network_init(args: argparse.Namespace) -> int:
    """``toktok network init``: 0, or 2 after a one-line error for bad input (nothing is
    written then). Raises OSError and storage's KeyFileError when a file cannot be written.
    """
    try:
        return _network_init(args)
    except CliError as exc:
        # Reported here, not by node.cli.main: under ``python -m node.cli`` (how devnet runs
        # this command) main is __main__'s, whose CliError is another class than ours.
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _network_init(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    out_dir = plan.out.expanduser()
    refuse_existing(out_dir)
    seeds = [os.urandom(SEED_LEN) for _ in range(plan.validators)]
    raw = build_genesis(plan, [AccountKey(s) for s in seeds], now_ms())
    passphrase = read_passphrase(confirm=True)
    key_files = write_network(out_dir, raw, seeds, passphrase)
    genesis = decode_genesis(raw)
    summary = genesis_summary(genesis)
    if args.json:
        summary["genesis"] = str(out_dir / GENESIS_FILE)
        summary["validator_keys"] = [str(path) for path in key_files]
        out.print_json(json.dumps(summary))
        return 0
    say(f"wrote {out_dir / GENESIS_FILE} and {out_dir / GENESIS_JSON} (a description)")
    say(
        f"{len(key_files)} validator keys in {out_dir / VALIDATORS_DIR}, encrypted with the "
        "passphrase; give each validator its own, and keep backups"
    )
    say(
        f"network {genesis.name!r}: {summary['validators']} validators, quorum "
        f"{summary['quorum']} of weight {committee_of(genesis).total}, "
        f"{summary['supply']} base units of {genesis.symbol}"
    )
    say(str(summary["network"]))
    return 0
