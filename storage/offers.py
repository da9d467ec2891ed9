"""OfferStore: standing offers, the offers this node closed, and its shop accounts' keys.

Offers arrive by gossip and sync like any message; they are kept here as the exact
envelope bytes that were validated, by id and by expiry time, so that the offers still
standing are one range scan from now. An offer past its expiry stays (it is in the sync
set too); it is no longer listed.

A shop account's key is kept in the clear, like the node's libp2p key: the node signs
fills with it while its owner is away, so a thief of the node's disk can spend what the
shop holds (the tokens for sale and the proceeds), and nothing of the creator's own
account, whose key stays in the passphrase-protected keystore. That is the trade of a
hot wallet: keep in a shop only what is for sale, and close the offer to take the rest
back.
"""

from collections.abc import Iterator

from protocol.accounts import SEED_LEN, AccountKey
from protocol.envelope import SignedMessage
from protocol.kinds import MESSAGE_ID_LEN, Offer
from storage.errors import DamagedRecord, StoreError
from storage.keys import Prefix, u64
from storage.keys import key as _key
from storage.kv import KV, Batch
from storage.records import check_before_write, read_back

_U64_BYTES = 8
OFFER_ID_HEX_MIN = 8
"""The shortest id prefix :meth:`OfferStore.resolve` takes."""


class OfferStore:
    """Offers by id and by expiry, closed offers and shop keys over a :class:`KV`."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv

    def put(self, message: SignedMessage) -> bool:
        """Store a validated offer; return False when it is already held.

        Raises :class:`StoreError` when the message is not an offer or its bytes do not
        check; nothing is written then.
        """
        record = message.record
        if not isinstance(record, Offer):
            raise StoreError(f"the offer store does not hold {message.kind} messages")
        if self._kv.get(_key(Prefix.OFFER, message.id)) is not None:
            return False
        check_before_write(message, StoreError)
        batch = Batch()
        batch.put(_key(Prefix.OFFER, message.id), message.raw)
        batch.put(_key(Prefix.OFFER_BY_EXPIRY, u64(record.expires_ms), message.id), b"")
        self._kv.write(batch)
        return True

    def get(self, offer_id: bytes) -> Offer | None:
        """The offer of id ``offer_id``, re-checked on read. Raises :class:`DamagedRecord`."""
        raw = self._kv.get(_key(Prefix.OFFER, offer_id))
        if raw is None:
            return None
        message = read_back(raw, Offer, f"offer {offer_id.hex()}")
        if message.id != offer_id:
            raise DamagedRecord(f"stored offer {offer_id.hex()} is not what its key says")
        assert isinstance(message.record, Offer)
        return message.record

    def raw(self, offer_id: bytes) -> bytes | None:
        """The offer's envelope bytes as stored (unchecked), or None."""
        return self._kv.get(_key(Prefix.OFFER, offer_id))

    def active(self, now_ms: int, *, limit: int = 100) -> Iterator[tuple[bytes, Offer]]:
        """Offers that expire after ``now_ms``, soonest first, at most ``limit``.

        Raises :class:`DamagedRecord` for an offer that no longer checks."""
        start = _key(Prefix.OFFER_BY_EXPIRY, u64(min(now_ms + 1, 2**64 - 1)))
        entries = self._kv.iterate(_key(Prefix.OFFER_BY_EXPIRY), start=start, include_value=False)
        for count, (key, _) in enumerate(entries):
            if count >= limit:
                return
            offer_id = key[1 + _U64_BYTES :]
            offer = self.get(offer_id)
            if offer is not None:
                yield offer_id, offer

    def resolve(self, text: str) -> bytes:
        """The one stored offer id starting with the hex ``text`` (8 to 64 digits).

        Raises :class:`KeyError` when none or several match, saying which.
        """
        text = text.strip().lower()
        if not OFFER_ID_HEX_MIN <= len(text) <= 2 * MESSAGE_ID_LEN:
            raise KeyError(f"an offer id is {OFFER_ID_HEX_MIN} to 64 hex digits: {text!r}")
        try:
            start = bytes.fromhex(text[: len(text) // 2 * 2])
        except ValueError as exc:
            raise KeyError(f"not a hex offer id: {text!r}") from exc
        found = [
            key[1:]
            for key, _ in self._kv.iterate(_key(Prefix.OFFER, start), include_value=False)
            if key[1:].hex().startswith(text)
        ][:2]
        if len(found) > 1:
            raise KeyError(f"several offers start with {text}: give more digits")
        if not found:
            raise KeyError(f"no known offer with id {text}")
        return found[0]

    # -- this node's shops -------------------------------------------------------------

    def close(self, offer_id: bytes, now_ms: int) -> None:
        """Mark an offer of this node closed: its shop fills no more."""
        batch = Batch()
        batch.put(_key(Prefix.OFFER_CLOSED, offer_id), u64(now_ms))
        self._kv.write(batch, sync=True)

    def closed(self, offer_id: bytes) -> bool:
        return self._kv.get(_key(Prefix.OFFER_CLOSED, offer_id)) is not None

    def add_shop_key(self, key: AccountKey) -> None:
        """Keep a new shop account's key, durably, before anything is sent to the shop."""
        batch = Batch()
        batch.put(_key(Prefix.SHOP_KEY, key.public_key), key.seed)
        self._kv.write(batch, sync=True)

    def shop_key(self, account: bytes) -> AccountKey | None:
        """The key of this node's shop ``account``, or None when it is not one of ours.

        Raises :class:`DamagedRecord` when the stored seed does not give that account."""
        seed = self._kv.get(_key(Prefix.SHOP_KEY, account))
        if seed is None:
            return None
        if len(seed) != SEED_LEN or AccountKey(seed).public_key != account:
            raise DamagedRecord(f"the stored key of shop {account.hex()[:16]} is damaged")
        return AccountKey(seed)
