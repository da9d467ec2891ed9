"""SocialStore: follow state per pair of accounts, likes per video, and profiles.

Follows and reactions are last-write-wins registers: for each (author, target) pair the
message with the greatest ``(created_ms, message id)`` decides the state, whatever order
messages arrive in, so every node that has seen the same messages agrees. The winning
message is kept verbatim, so it can be served to peers that lack it.
"""

from dataclasses import dataclass

import msgpack

from protocol.envelope import SignedMessage
from protocol.kinds import Follow, Profile, Reaction, Unfollow
from storage.errors import DamagedRecord, StoreError
from storage.keys import Prefix
from storage.keys import key as _key
from storage.kv import KV, Batch
from storage.records import check_before_write, read_back


@dataclass(frozen=True, order=True)
class _Stamp:
    created_ms: int
    message_id: bytes


@dataclass(frozen=True)
class _Register:
    """The stored value of one pair: its state, the stamp that set it, the message."""

    active: bool
    stamp: _Stamp
    raw: bytes

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.active, self.stamp.created_ms, self.stamp.message_id, self.raw]
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> "_Register":
        try:
            active, created_ms, message_id, raw = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DamagedRecord(f"damaged social register: {exc}") from exc
        return cls(bool(active), _Stamp(created_ms, message_id), raw)


class SocialStore:
    """Follows, reactions and profiles over a :class:`KV`."""

    def __init__(self, kv: KV) -> None:
        self._kv = kv

    def apply(self, message: SignedMessage) -> bool:
        """Apply a validated follow, unfollow, reaction or profile message.

        Returns True when it changed what the store holds, False when a newer message for
        the same pair (or this very message) was already applied.
        """
        record = message.record
        check_before_write(message, StoreError)
        stamp = _Stamp(record.created_ms, message.id)
        if isinstance(record, Follow | Unfollow):
            return self._apply_follow(record, stamp, message.raw)
        if isinstance(record, Reaction):
            key = _key(Prefix.REACTION, record.manifest, record.author)
            register = _Register(record.reaction == "like", stamp, message.raw)
            batch = Batch()
            if not self._newer(key, register, batch):
                return False
            self._kv.write(batch)
            return True
        if isinstance(record, Profile):
            key = _key(Prefix.PROFILE, record.author)
            batch = Batch()
            if not self._newer(key, _Register(True, stamp, message.raw), batch):
                return False
            self._kv.write(batch)
            return True
        raise StoreError(f"the social store does not hold {message.kind} messages")

    def _newer(self, key: bytes, register: _Register, batch: Batch) -> bool:
        """Put ``register`` at ``key`` in ``batch`` if it wins over what is stored."""
        current = self._kv.get(key)
        if current is not None and _Register.decode(current).stamp >= register.stamp:
            return False
        batch.put(key, register.encode())
        return True

    def _apply_follow(self, record: Follow | Unfollow, stamp: _Stamp, raw: bytes) -> bool:
        key = _key(Prefix.SOCIAL_EDGE, record.author, record.target)
        following = isinstance(record, Follow)
        batch = Batch()
        if not self._newer(key, _Register(following, stamp, raw), batch):
            return False
        reverse = _key(Prefix.SOCIAL_REVERSE, record.target, record.author)
        if following:
            batch.put(reverse, b"")
        else:
            batch.delete(reverse)
        self._kv.write(batch)
        return True

    def is_following(self, author: bytes, target: bytes) -> bool:
        raw = self._kv.get(_key(Prefix.SOCIAL_EDGE, author, target))
        return raw is not None and _Register.decode(raw).active

    def following(self, author: bytes) -> list[bytes]:
        """Accounts ``author`` follows, in id order."""
        prefix = _key(Prefix.SOCIAL_EDGE, author)
        return [
            key[len(prefix) :]
            for key, value in self._kv.iterate(prefix)
            if _Register.decode(value).active
        ]

    def followers(self, target: bytes) -> list[bytes]:
        """Accounts following ``target``, in id order."""
        prefix = _key(Prefix.SOCIAL_REVERSE, target)
        return [key[len(prefix) :] for key, _ in self._kv.iterate(prefix, include_value=False)]

    def likes(self, manifest_id: bytes) -> list[bytes]:
        """Accounts whose latest reaction to the video is a like."""
        prefix = _key(Prefix.REACTION, manifest_id)
        return [
            key[len(prefix) :]
            for key, value in self._kv.iterate(prefix)
            if _Register.decode(value).active
        ]

    def profile(self, author: bytes) -> Profile | None:
        """The newest profile of ``author``, re-checked on read."""
        raw = self._kv.get(_key(Prefix.PROFILE, author))
        if raw is None:
            return None
        record = read_back(_Register.decode(raw).raw, Profile, "profile").record
        assert isinstance(record, Profile)
        return record
