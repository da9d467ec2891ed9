"""LedgerStore: the node's durable replica of the token ledger.

The ledger's machines (protocol/ledger.py) read the state through :class:`LedgerStore`, a
:class:`~protocol.ledger.LedgerState` and :class:`~protocol.ledger.LockState` over the
node's one KV, and return an :class:`~protocol.ledger.Overlay` of changes. :meth:`stage`
puts every write of an overlay into the caller's batch: sequence numbers, balances,
tokens, the applied slots, the history of every account an applied order touches, and the
certificates themselves, which go into the message log as sync items. So one atomic write
moves the replica from one consistent state to the next, whatever else the caller stages
with it, and a crash at any moment leaves a state that replaying the stored certificates
from the genesis gives again.

Layout (storage/keys.py, prefixes 0x60 to 0x67 and two META names): every integer is a
big-endian u64; a zero balance is deleted, not stored. Every value is checked when read
(its length, its range, a token's canonical encoding): a damaged one raises
:class:`DamagedRecord` and is never handed to the machines.

Not thread-safe: stage and write from one task at a time, since staging reads the state
the overlay was computed from.
"""

from collections.abc import Iterator, Mapping
from itertools import islice

from protocol.accounts import PUBLIC_KEY_LEN
from protocol.certs import Certificate
from protocol.codec import decode_record, encode_record
from protocol.errors import DecodeError
from protocol.genesis import decode_genesis, genesis_overlay, network_id
from protocol.ledger import Overlay, Slot, TokenInfo, credits
from protocol.orders import AMOUNT_MAX, ORDER_ID_LEN, SEQ_MAX, TOKEN_ID_LEN, owners
from storage.errors import DamagedRecord, LedgerError, WrongNetwork
from storage.keys import (
    META_LEDGER_APPLIED,
    META_LEDGER_GENESIS,
    U64_MAX,
    Prefix,
    key,
    meta_key,
    u64,
)
from storage.kv import KV, Batch, read_through
from storage.messages import MessageLog, check_certificate_item

HISTORY_LIMIT_MAX = 1000
TOKEN_CACHE_MAX = 4096
"""The most certificates one :meth:`LedgerStore.history` page returns."""
TOKEN_INFO_BYTES_MAX = 1024
"""The largest canonical TokenInfo (its fields' limits add up to about 700 bytes)."""
NEXT_SEQ_MAX = SEQ_MAX + 1
"""An account whose last order took sequence number SEQ_MAX is at SEQ_MAX + 1."""
_U64_BYTES = 8
_STATE_PREFIXES = (Prefix.LEDGER_SEQ, Prefix.LEDGER_BALANCE, Prefix.LEDGER_TOKEN)


class LedgerStore:
    """The ledger replica over a :class:`KV` (see module doc).

    Certificates are kept in ``messages``, the node's message log, so sync serves them.
    """

    def __init__(self, kv: KV, messages: MessageLog) -> None:
        self._kv = kv
        self._messages = messages
        self._genesis: bytes | None = None
        """The genesis bytes once read and checked; they never change after init."""
        self._tokens: dict[bytes, TokenInfo] = {}
        """Tokens read and checked, the most recent TOKEN_CACHE_MAX."""

    # The genesis.

    def init_genesis(self, raw: bytes) -> None:
        """Make this an empty ledger of the network whose genesis is ``raw``.

        On an empty ledger, writes the genesis state and ``raw`` in one synced batch; does
        nothing when the same genesis is already there. Raises :class:`LedgerError` when
        ``raw`` is not a valid genesis, :class:`WrongNetwork` when the store holds another
        network's ledger, :class:`DamagedRecord` when it holds ledger state but no genesis;
        nothing is written then.
        """
        try:
            genesis = decode_genesis(raw)
        except ValueError as exc:
            raise LedgerError(f"cannot start the ledger: {exc}") from exc
        held = self.genesis()
        if held is not None:
            if held != raw:
                raise WrongNetwork(
                    f"this store belongs to network {network_id(held).hex()}, not"
                    f" {network_id(raw).hex()}"
                )
            return
        if self._holds_state():
            raise DamagedRecord("the store holds ledger state but no genesis")
        batch = Batch()
        self.stage(batch, genesis_overlay(genesis, self))
        batch.put(meta_key(META_LEDGER_GENESIS), raw)
        self._kv.write(batch, sync=True)

    def _holds_state(self) -> bool:
        for p in _STATE_PREFIXES:
            if next(iter(self._kv.iterate(key(p), include_value=False)), None) is not None:
                return True
        return False

    def genesis(self) -> bytes | None:
        """The genesis bytes this ledger started from, or None before :meth:`init_genesis`.

        Raises :class:`DamagedRecord` when the stored bytes are no longer a valid genesis.
        """
        if self._genesis is None:
            raw = self._kv.get(meta_key(META_LEDGER_GENESIS))
            if raw is None:
                return None
            try:
                decode_genesis(raw)
            except ValueError as exc:
                raise DamagedRecord(f"the stored genesis is damaged: {exc}") from exc
            self._genesis = raw
        return self._genesis

    def network(self) -> bytes | None:
        """The network id (the genesis hash), or None before :meth:`init_genesis`.

        Raises :class:`DamagedRecord` as :meth:`genesis` does.
        """
        raw = self.genesis()
        return None if raw is None else network_id(raw)

    # What the machines read (LedgerState, LockState). Each raises DamagedRecord for a
    # value that does not check.

    def next_seq(self, account: bytes) -> int:
        """The sequence number ``account``'s next order takes (0 for an unknown account)."""
        value = self._kv.get(key(Prefix.LEDGER_SEQ, account))
        return 0 if value is None else _u64_value(value, NEXT_SEQ_MAX, "sequence number")

    def balance(self, account: bytes, token: bytes) -> int:
        """How much of ``token`` ``account`` holds, in base units."""
        value = self._kv.get(key(Prefix.LEDGER_BALANCE, account, token))
        return 0 if value is None else _u64_value(value, AMOUNT_MAX, "balance")

    def token(self, token_id: bytes) -> TokenInfo | None:
        """The token ``token_id``, or None if it was never created (here, yet)."""
        info = self._tokens.get(token_id)
        if info is not None:
            return info
        value = self._kv.get(key(Prefix.LEDGER_TOKEN, token_id))
        if value is None:
            return None
        info = _token_value(token_id, value)
        if len(self._tokens) >= TOKEN_CACHE_MAX:
            self._tokens.pop(next(iter(self._tokens)))
        self._tokens[token_id] = info  # a token never changes once created
        return info

    def certified(self, account: bytes, seq: int) -> bytes | None:
        """The id of the order applied at ``(account, seq)``, if any."""
        value = self._kv.get(key(Prefix.LEDGER_SLOT, account, u64(seq)))
        return None if value is None else _id_value(value, "slot")

    def lock(self, account: bytes, seq: int) -> bytes | None:
        """The id of the order this validator voted for at ``(account, seq)``, if any."""
        value = self._kv.get(key(Prefix.LEDGER_LOCK, account, u64(seq)))
        return None if value is None else _id_value(value, "lock")

    # Writes.

    def stage(self, batch: Batch, overlay: Overlay) -> None:
        """Stage every write of ``overlay`` into ``batch``, for one atomic write.

        ``overlay`` must have been computed over this store's state plus what ``batch``
        already holds. Applying a slot drops this validator's lock on it. The overlay's
        ``conflicts`` are not stored: they are for the caller to report. Raises
        :class:`LedgerError`, staging nothing, when the overlay would apply a slot already
        applied (it was computed over a stale state) or holds a value out of range.
        """
        tokens = self._check_overlay(batch, overlay)
        for account, seq in overlay.seqs.items():
            batch.put(key(Prefix.LEDGER_SEQ, account), u64(seq))
        for (account, token), amount in overlay.balances.items():
            balance_key = key(Prefix.LEDGER_BALANCE, account, token)
            if amount:
                batch.put(balance_key, u64(amount))
            else:
                batch.delete(balance_key)
        for token_id, encoded in tokens.items():
            batch.put(key(Prefix.LEDGER_TOKEN, token_id), encoded)
        for (account, seq), oid in overlay.slots.items():
            batch.put(key(Prefix.LEDGER_SLOT, account, u64(seq)), oid)
            batch.delete(key(Prefix.LEDGER_LOCK, account, u64(seq)))
        if overlay.applied:
            position = self._applied_count(batch)
            for cert in overlay.applied:
                self._stage_applied(batch, cert, position)
                position += 1
            batch.put(meta_key(META_LEDGER_APPLIED), u64(position))

    def _check_overlay(self, batch: Batch, overlay: Overlay) -> dict[bytes, bytes]:
        """Raise :class:`LedgerError` unless every write of ``overlay`` can be staged;
        return the tokens' canonical bytes."""
        for account, seq in overlay.seqs.items():
            _check_len(account, PUBLIC_KEY_LEN, "account")
            if not 0 <= seq <= NEXT_SEQ_MAX:
                raise LedgerError(f"sequence number {seq} outside [0, {NEXT_SEQ_MAX}]")
        for (account, token), amount in overlay.balances.items():
            _check_len(account, PUBLIC_KEY_LEN, "account")
            _check_len(token, TOKEN_ID_LEN, "token id")
            if not 0 <= amount <= AMOUNT_MAX:
                raise LedgerError(f"balance {amount} outside [0, {AMOUNT_MAX}]")
        for (account, seq), oid in overlay.slots.items():
            _check_len(oid, ORDER_ID_LEN, "order id")
            slot_key = key(Prefix.LEDGER_SLOT, account, u64(seq))
            if read_through(self._kv, slot_key, batch) is not None:
                raise LedgerError(
                    f"account {account.hex()[:16]} sequence number {seq} is already applied:"
                    " the overlay was computed over a stale state"
                )
        for cert in overlay.applied:
            check_certificate_item(cert, LedgerError)
        return {tid: _encode_token(tid, info) for tid, info in overlay.tokens.items()}

    def _applied_count(self, batch: Batch) -> int:
        value = read_through(self._kv, meta_key(META_LEDGER_APPLIED), batch)
        return 0 if value is None else _u64_value(value, U64_MAX, "applied count")

    def _stage_applied(self, batch: Batch, cert: Certificate, position: int) -> None:
        """Stage ``cert`` at ``position`` of the log, in its parties' histories and in the
        message log."""
        at = u64(position)
        batch.put(key(Prefix.LEDGER_LOG, at), cert.order_id)
        batch.put(key(Prefix.LEDGER_POSITION, cert.order_id), at)
        for account in parties(cert):
            batch.put(key(Prefix.LEDGER_HISTORY, account, at), cert.order_id)
        self._messages.stage_certificate(batch, cert)

    def commit(self, overlay: Overlay) -> None:
        """Write ``overlay`` alone, in one batch, without waiting for the disk.

        A replica can lose the last writes to a power cut (never to a crash of the process
        alone) and learns those certificates again by sync; LevelDB keeps writes in order,
        so what survives is always a prefix of them, a consistent state. Raises
        :class:`LedgerError` as :meth:`stage` does, :class:`StoreError` if the write fails.
        """
        batch = Batch()
        self.stage(batch, overlay)
        self._kv.write(batch)

    def stage_locks(self, batch: Batch, locks: Mapping[Slot, bytes]) -> None:
        """Stage a validator's new locks (``(account, seq) -> order id``) into ``batch``.

        The caller writes the batch with ``sync=True`` before any vote for those orders
        leaves the node: a validator that forgot a vote after a power cut could sign
        another order for the same slot. A lock below its account's next sequence number
        is skipped (that slot is applied). Raises :class:`LedgerError`, staging nothing,
        when a slot is locked for another order (a validator never votes twice for one
        slot) or a field has the wrong length.
        """
        staged: list[tuple[bytes, bytes]] = []
        for (account, seq), oid in locks.items():
            _check_len(account, PUBLIC_KEY_LEN, "account")
            _check_len(oid, ORDER_ID_LEN, "order id")
            seq_value = read_through(self._kv, key(Prefix.LEDGER_SEQ, account), batch)
            if seq_value is not None and seq < _u64_value(seq_value, NEXT_SEQ_MAX, "seq"):
                continue
            lock_key = key(Prefix.LEDGER_LOCK, account, u64(seq))
            held = read_through(self._kv, lock_key, batch)
            if held is not None and held != oid:
                raise LedgerError(
                    f"account {account.hex()[:16]} sequence number {seq} is locked for order"
                    f" {held.hex()[:16]}, not {oid.hex()[:16]}"
                )
            staged.append((lock_key, oid))
        for lock_key, oid in staged:
            batch.put(lock_key, oid)

    # Queries.

    def applied(self, order_id: bytes) -> bool:
        """Whether the order ``order_id`` is certified and applied here."""
        return self._position(order_id) is not None

    def certificate(self, order_id: bytes) -> bytes | None:
        """The certificate of the applied order ``order_id``, or None if not applied here.

        Raises :class:`DamagedRecord` when the stored certificate is missing or damaged.
        """
        if self._position(order_id) is None:
            return None
        return self._certificate(order_id)

    def _certificate(self, oid: bytes) -> bytes:
        raw = self._messages.get(oid)
        if raw is None:
            raise DamagedRecord(f"applied order {oid.hex()} has no certificate stored")
        return raw

    def _position(self, oid: bytes) -> int | None:
        value = self._kv.get(key(Prefix.LEDGER_POSITION, oid))
        return None if value is None else _u64_value(value, U64_MAX, "log position")

    def history(self, account: bytes, limit: int = 50, before: bytes | None = None) -> list[bytes]:
        """Certificates of the orders that moved ``account``'s tokens, newest first.

        ``before``, for paging, is the order id of the last certificate of the previous
        page. Raises :class:`ValueError` for an account not of 32 bytes or a limit outside
        [1, HISTORY_LIMIT_MAX]; :class:`LedgerError` when ``before`` is not applied here;
        :class:`DamagedRecord` for a damaged entry.
        """
        _check_account(account)
        if not 1 <= limit <= HISTORY_LIMIT_MAX:
            raise ValueError(f"history limit {limit} outside [1, {HISTORY_LIMIT_MAX}]")
        prefix = key(Prefix.LEDGER_HISTORY, account)
        start = None
        if before is not None:
            position = self._position(before)
            if position is None:
                raise LedgerError(f"order {before.hex()} is not applied here")
            if position == 0:
                return []
            start = prefix + u64(position - 1)
        entries = self._kv.iterate(prefix, start=start, reverse=True)
        return [self._certificate(_id_value(v, "history")) for _, v in islice(entries, limit)]

    def balances(self, account: bytes) -> dict[bytes, int]:
        """Every token ``account`` holds, with its non-zero balance.

        Raises :class:`ValueError` for an account not of 32 bytes, :class:`DamagedRecord`
        for a damaged entry.
        """
        _check_account(account)
        prefix = key(Prefix.LEDGER_BALANCE, account)
        held: dict[bytes, int] = {}
        for k, value in self._kv.iterate(prefix):
            _check_key(k, len(prefix) + TOKEN_ID_LEN, "balance")
            amount = _u64_value(value, AMOUNT_MAX, "balance")
            if amount:
                held[k[len(prefix) :]] = amount
        return held

    def tokens(self) -> list[tuple[bytes, TokenInfo]]:
        """Every token, by id. Raises :class:`DamagedRecord` for a damaged entry."""
        found = []
        for k, value in self._kv.iterate(key(Prefix.LEDGER_TOKEN)):
            _check_key(k, 1 + TOKEN_ID_LEN, "token")
            found.append((k[1:], _token_value(k[1:], value)))
        return found

    def certificates(self) -> Iterator[bytes]:
        """Every applied certificate, in the order they applied (for replay and audit).

        Sees the store as it was when the iteration started. Raises :class:`DamagedRecord`
        for a damaged entry or a certificate missing from the message log.
        """
        for k, value in self._kv.iterate(key(Prefix.LEDGER_LOG)):
            _check_key(k, 1 + _U64_BYTES, "log")
            yield self._certificate(_id_value(value, "log"))


def parties(cert: Certificate) -> list[bytes]:
    """The accounts whose tokens ``cert``'s order moves: its owners (senders, swap parties,
    a token's creator) then its recipients, each once."""
    found = list(owners(cert.order))
    for account, _, _ in credits(cert.order, cert.order_id):
        if account not in found:
            found.append(account)
    return found


def _check_len(value: bytes, length: int, what: str) -> None:
    if len(value) != length:
        raise LedgerError(f"{what} of {len(value)} bytes, not {length}")


def _check_account(account: bytes) -> None:
    if len(account) != PUBLIC_KEY_LEN:
        raise ValueError(f"an account is {PUBLIC_KEY_LEN} bytes, not {len(account)}")


def _check_key(k: bytes, length: int, what: str) -> None:
    if len(k) != length:
        raise DamagedRecord(f"ledger {what} key of {len(k)} bytes: {k[:16].hex()}")


def _u64_value(value: bytes, value_max: int, what: str) -> int:
    """The u64 stored as ``value``. Raises :class:`DamagedRecord` unless it is 8 bytes
    holding at most ``value_max``."""
    if len(value) != _U64_BYTES:
        raise DamagedRecord(f"stored ledger {what} is damaged: {len(value)} bytes, not 8")
    number = int.from_bytes(value, "big")
    if number > value_max:
        raise DamagedRecord(f"stored ledger {what} {number} exceeds {value_max}")
    return number


def _id_value(value: bytes, what: str) -> bytes:
    if len(value) != ORDER_ID_LEN:
        raise DamagedRecord(f"stored ledger {what} is damaged: an order id of {len(value)} bytes")
    return value


def _encode_token(token_id: bytes, info: TokenInfo) -> bytes:
    """The canonical bytes of ``info``, checked by decoding them. Raises LedgerError."""
    _check_len(token_id, TOKEN_ID_LEN, "token id")
    encoded = encode_record(info)
    try:
        decode_record(TokenInfo, encoded, bytes_max=TOKEN_INFO_BYTES_MAX)
    except DecodeError as exc:
        raise LedgerError(f"token {token_id.hex()[:16]} cannot be stored: {exc}") from exc
    return encoded


def _token_value(token_id: bytes, value: bytes) -> TokenInfo:
    try:
        return decode_record(TokenInfo, value, bytes_max=TOKEN_INFO_BYTES_MAX)
    except DecodeError as exc:
        raise DamagedRecord(f"stored token {token_id.hex()} is damaged: {exc}") from exc
