"""The committee, validators' votes and certificates.

A validator votes for a batch of orders with one signature: it builds a Merkle tree over
the batch's order ids (RFC 6962 shape: leaf ``SHA-256(0x00 || order id)``, inner node
``SHA-256(0x01 || left || right)``, the left subtree holding the largest power of two
below the leaf count) and signs::

    b"toktok/v1/vote\\x00" + network id (32) + root (32)

Each order's :class:`Vote` carries the validator's index, the root, the signature and the
order's audit path. A :class:`Certificate` is an order with its owners' signatures and the
votes of validators holding a quorum of the committee's weight: more than two thirds.
With at most ``f`` Byzantine weight out of ``3f+1``, two quorums share an honest validator,
and an honest validator votes for one order per (account, sequence number): so there is
never more than one certificate per slot.

A certificate is checked by its votes alone: each vote's path leads from the order id to
its root, and the root's signature verifies. The owners' signatures ride along, but an
order without them never gathers honest votes, so a replica need not check them. A root
shared by many certificates of one batch is verified once (:class:`VerifiedRoots`).
"""

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.accounts import PUBLIC_KEY_LEN, SIGNATURE_LEN, AccountKey, verify
from protocol.codec import decode_record, encode_record, fld
from protocol.envelope import message_id
from protocol.errors import DecodeError, Reject
from protocol.orders import (
    ORDER_BYTES_MAX,
    ORDER_VERSION,
    SIGNED_ORDER_BYTES_MAX,
    Order,
    SignedOrder,
    open_order,
    order_id,
    owners,
)

VOTE_DOMAIN = b"toktok/v1/vote\x00"
HASH_LEN = 32
BATCH_MAX = 1024
"""The most orders one vote signature covers."""
PATH_MAX = 10
"""Audit path length for up to BATCH_MAX leaves."""
VALIDATORS_MAX = 64
VOTE_BYTES_MAX = 485
"""The largest encoded :class:`Vote`: a 6-entry map whose keys take 36 bytes, PATH_MAX + 1
hashes (path and root, 34 bytes each with their bin header), the signature (66), index and
count (3 bytes each), the validator (1) and the path's array header (1)."""
CERTIFICATE_BYTES_MAX = SIGNED_ORDER_BYTES_MAX + VALIDATORS_MAX * VOTE_BYTES_MAX
"""The certificate's fields but its votes fit in SIGNED_ORDER_BYTES_MAX."""
_NO_CLOCK_MS = 2**62
"""A time after every valid timestamp, for certificates read back from storage."""
CERTIFICATE_FIRST_KEY = b"\x85\xa4kind"
"""How a certificate's bytes begin (a 5-entry map whose first key is "kind"), which tells
it apart from a signed envelope (whose first key is "body") in the sync set."""


@dataclass(frozen=True)
class Member:
    """A committee seat: a validator's public key and voting weight."""

    key: bytes = fld(len_min=PUBLIC_KEY_LEN, len_max=PUBLIC_KEY_LEN)
    weight: int = fld(value_min=1, value_max=2**32)


class Committee:
    """The validators fixed by the genesis, and the quorum arithmetic over their weights."""

    def __init__(self, network: bytes, members: Sequence[Member]) -> None:
        """Raises :class:`ValueError` for no members, too many, or a key listed twice."""
        if not 1 <= len(members) <= VALIDATORS_MAX:
            raise ValueError(f"a committee has 1 to {VALIDATORS_MAX} members")
        if len({m.key for m in members}) != len(members):
            raise ValueError("a validator key appears twice in the committee")
        self.network = network
        self.members = tuple(members)
        self.total = sum(m.weight for m in members)
        self.faulty_max = (self.total - 1) // 3
        """f: the most Byzantine weight the committee tolerates."""
        self.quorum = self.total - self.faulty_max
        """2f+1 (for a total of 3f+1): weight that makes a certificate."""
        self._index = {m.key: i for i, m in enumerate(members)}

    def index_of(self, key: bytes) -> int | None:
        return self._index.get(key)

    def vote_signing_input(self, root: bytes) -> bytes:
        return VOTE_DOMAIN + self.network + root


# Merkle trees over order ids.


def leaf_hash(order_id: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + order_id).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(count: int) -> int:
    """The largest power of two strictly below ``count`` (``count`` >= 2)."""
    return 1 << ((count - 1).bit_length() - 1)


def merkle_tree(order_ids: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """The root over ``order_ids`` and each leaf's audit path (bottom up)."""
    assert 1 <= len(order_ids) <= BATCH_MAX
    leaves = [leaf_hash(oid) for oid in order_ids]
    paths: list[list[bytes]] = [[] for _ in leaves]
    root = _build(leaves, 0, paths)
    return root, [tuple(p) for p in paths]


def _build(hashes: list[bytes], offset: int, paths: list[list[bytes]]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    left = _build(hashes[:k], offset, paths)
    right = _build(hashes[k:], offset + k, paths)
    for i in range(offset, offset + k):
        paths[i].append(right)
    for i in range(offset + k, offset + len(hashes)):
        paths[i].append(left)
    return _node(left, right)


def root_from_path(order_id: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` leads to from leaf ``index`` of ``count``; None if the path
    does not fit the tree's shape."""
    if not 0 <= index < count:
        return None
    # The side the leaf lies on at each level, from the root down (True: left subtree).
    sides: list[bool] = []
    lo, size = index, count
    while size > 1:
        k = _split(size)
        if lo < k:
            sides.append(True)
            size = k
        else:
            sides.append(False)
            lo -= k
            size -= k
    if len(sides) != len(path):
        return None
    sha256 = hashlib.sha256
    digest = sha256(b"\x00" + order_id).digest()
    for left_side, sibling in zip(reversed(sides), path, strict=True):
        pair = digest + sibling if left_side else sibling + digest
        digest = sha256(b"\x01" + pair).digest()
    return digest


# Votes and certificates.


@dataclass(frozen=True)
class Vote:
    """One validator's vote for one order: its batch root, signature and the audit path."""

    validator: int = fld(value_max=VALIDATORS_MAX - 1)
    root: bytes = fld(len_min=HASH_LEN, len_max=HASH_LEN)
    sig: bytes = fld(len_min=SIGNATURE_LEN, len_max=SIGNATURE_LEN)
    index: int = fld(value_max=BATCH_MAX - 1)
    count: int = fld(value_min=1, value_max=BATCH_MAX)
    path: tuple[bytes, ...] = fld(items_max=PATH_MAX, item_len_max=HASH_LEN)


def sign_votes(
    committee: Committee, validator: int, key: AccountKey, order_ids: Sequence[bytes]
) -> list[Vote]:
    """Vote for every order in ``order_ids`` with one signature; one :class:`Vote` each."""
    root, paths = merkle_tree(order_ids)
    sig = key.sign(committee.vote_signing_input(root))
    count = len(order_ids)
    return [Vote(validator, root, sig, i, count, path) for i, path in enumerate(paths)]


class VerifiedRoots:
    """The (validator, root, signature) triples already verified: a bounded LRU set."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[int, bytes, bytes], None] = OrderedDict()

    def check(self, committee: Committee, vote: Vote) -> bool:
        """Whether ``vote``'s root signature verifies under its validator's key."""
        entry = (vote.validator, vote.root, vote.sig)
        if entry in self._seen:
            self._seen.move_to_end(entry)
            return True
        key = committee.members[vote.validator].key
        if not verify(key, committee.vote_signing_input(vote.root), vote.sig):
            return False
        self._seen[entry] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


def check_vote(committee: Committee, order_id: bytes, vote: Vote, roots: VerifiedRoots) -> None:
    """Raise :class:`Reject` unless ``vote`` is a valid vote for ``order_id``."""
    # [REJECT] The vote's validator is a committee member.
    if vote.validator >= len(committee.members):
        raise Reject(
            f"vote by validator {vote.validator}, the committee has {len(committee.members)}"
        )
    # [REJECT] Every path entry is a 32-byte hash.
    if any(len(h) != HASH_LEN for h in vote.path):
        raise Reject("a vote's path holds a hash that is not 32 bytes")
    # [REJECT] The path leads from the order id to the vote's root.
    if root_from_path(order_id, vote.index, vote.count, vote.path) != vote.root:
        raise Reject(f"validator {vote.validator}'s path does not lead to its root")
    # [REJECT] The validator's signature over the root verifies.
    if not roots.check(committee, vote):
        raise Reject(f"validator {vote.validator}'s vote signature does not verify")


@dataclass(frozen=True)
class CertificateWire:
    """A certificate on the wire: the signed order and a quorum of votes."""

    kind: str = fld(len_min=1, len_max=16)
    order: bytes = fld(len_min=1, len_max=ORDER_BYTES_MAX)
    sigs: tuple[bytes, ...] = fld(items_min=1, items_max=2, item_len_max=SIGNATURE_LEN)
    v: int = fld(value_min=0, value_max=255)
    votes: tuple[Vote, ...] = fld(items_min=1, items_max=VALIDATORS_MAX)


@dataclass(frozen=True)
class Certificate:
    """A certified order: final. ``raw`` is the exact bytes that were checked or built."""

    raw: bytes
    order: Order
    order_id: bytes
    kind: str
    signers: frozenset[int]
    """The validators whose votes it carries."""

    @property
    def created_ms(self) -> int:
        return self.order.created_ms


def certify(committee: Committee, signed: SignedOrder, votes: Sequence[Vote]) -> Certificate:
    """Assemble a certificate from votes already checked; votes sorted by validator.

    Raises :class:`ValueError` when the votes lack a quorum or name a validator twice.
    """
    ordered = sorted(votes, key=lambda v: v.validator)
    signers = [v.validator for v in ordered]
    if len(set(signers)) != len(signers):
        raise ValueError("a validator's vote appears twice")
    weight = sum(committee.members[i].weight for i in signers)
    if weight < committee.quorum:
        raise ValueError(f"votes of weight {weight} are below the quorum {committee.quorum}")
    wire = CertificateWire(
        kind=signed.kind,
        order=signed.order_bytes,
        sigs=signed.sigs,
        v=ORDER_VERSION,
        votes=tuple(ordered),
    )
    return Certificate(
        encode_record(wire), signed.order, signed.id, signed.kind, frozenset(signers)
    )


def is_certificate(raw: bytes) -> bool:
    """Whether ``raw`` begins as a certificate does (not whether it is a valid one)."""
    return raw[: len(CERTIFICATE_FIRST_KEY)] == CERTIFICATE_FIRST_KEY


def verify_certificate(
    raw: bytes, committee: Committee, roots: VerifiedRoots, now_ms: int | None = None
) -> Certificate:
    """Decode a certificate and check its quorum of votes. Raises :class:`Reject`.

    ``now_ms`` None skips the future-date rule, for certificates read back from storage
    (a certificate once valid stays final).
    """
    # [REJECT] The certificate is the canonical encoding of a CertificateWire.
    try:
        wire = decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
    except DecodeError as exc:
        raise Reject(f"malformed certificate: {exc}") from exc
    # [REJECT] The version is one this node speaks.
    if wire.v != ORDER_VERSION:
        raise Reject(f"certificate version {wire.v} is not {ORDER_VERSION}")
    order, oid = open_order(
        wire.kind, wire.order, committee.network, _NO_CLOCK_MS if now_ms is None else now_ms
    )
    # [REJECT] There is one owner signature per owner.
    if len(wire.sigs) != len(owners(order)):
        raise Reject(f"certificate of a {wire.kind} with {len(wire.sigs)} owner signatures")
    signers = [v.validator for v in wire.votes]
    # [REJECT] Votes are sorted by validator index, one per validator.
    if any(a >= b for a, b in itertools.pairwise(signers)):
        raise Reject("certificate votes are not sorted by validator, one each")
    for vote in wire.votes:
        check_vote(committee, oid, vote, roots)
    weight = sum(committee.members[i].weight for i in signers)
    # [REJECT] The voters hold a quorum of the committee's weight.
    if weight < committee.quorum:
        raise Reject(f"certificate votes weigh {weight}, the quorum is {committee.quorum}")
    return Certificate(raw, order, oid, wire.kind, frozenset(signers))


def item_id(raw: bytes) -> bytes:
    """The sync item id of a message held for sync: a certificate's order id (so that two
    certificates of one order are one item), otherwise the envelope's message id.

    Raises :class:`DecodeError` for bytes that begin as a certificate but are not one.
    """
    if not is_certificate(raw):
        return message_id(raw)
    fast = _order_id_prefix(raw)
    if fast is not None:
        return fast
    wire = decode_record(CertificateWire, raw, bytes_max=CERTIFICATE_BYTES_MAX)
    return order_id(wire.kind, wire.order)


_ORDER_KEY = b"\xa5order"


def _order_id_prefix(raw: bytes) -> bytes | None:
    """The order id read from the first two fields of a certificate's canonical bytes
    (``kind``, ``order``), without decoding its votes; None when they are not laid out
    as the canonical encoding lays them (the caller then decodes it all)."""
    pos = len(CERTIFICATE_FIRST_KEY)
    if pos >= len(raw) or not 0xA1 <= raw[pos] <= 0xB0:  # fixstr of 1 to 16 bytes
        return None
    end = pos + 1 + (raw[pos] - 0xA0)
    kind = raw[pos + 1 : end]
    if not kind.isascii() or raw[end : end + len(_ORDER_KEY)] != _ORDER_KEY:
        return None
    pos = end + len(_ORDER_KEY)
    if raw[pos : pos + 1] == b"\xc4":
        size, start = raw[pos + 1] if pos + 1 < len(raw) else -1, pos + 2
    elif raw[pos : pos + 1] == b"\xc5":
        size, start = int.from_bytes(raw[pos + 1 : pos + 3], "big"), pos + 3
        if size < 0x100:
            return None
    else:
        return None
    if size < 1 or start + size > len(raw):
        return None
    return order_id(kind.decode("ascii"), raw[start : start + size])
