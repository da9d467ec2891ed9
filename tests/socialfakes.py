"""In-memory social graphs for ranking tests, and a view that counts its reads.

:class:`MemorySocial` implements :class:`protocol.ranking.SocialView` with the orders the
interface promises, ties broken by the smaller id so that results are deterministic. It is
also a reference a stored implementation can be compared with, call by call.
"""

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field

from protocol.ranking import DAY_MS, HOUR_MS, SocialView, VideoInfo


def acct(name: str | int) -> bytes:
    """A 32-byte stand-in for an account public key."""
    return hashlib.sha256(b"account %s" % str(name).encode()).digest()


def vid(name: str | int) -> bytes:
    """A 32-byte stand-in for a manifest message id."""
    return hashlib.sha256(b"video %s" % str(name).encode()).digest()


class MemorySocial:
    """Active follows, likes, views and videos in dicts; each follow or like change
    overwrites the pair's state, as a newer follow/unfollow or like/unlike does in the
    store; a view keeps the latest time per (viewer, video), as the store's VIEW_TOTAL."""

    def __init__(self) -> None:
        self._following: dict[bytes, dict[bytes, int]] = {}  # author -> target -> followed_ms
        self._liked: dict[bytes, dict[bytes, int]] = {}  # author -> video -> liked_ms
        self._likers: dict[bytes, set[bytes]] = {}  # video -> authors
        self._viewed: dict[bytes, dict[bytes, int]] = {}  # viewer -> video -> last viewed ms
        self._videos: dict[bytes, VideoInfo] = {}
        self._by_creator: dict[bytes, set[bytes]] = {}
        self._withdrawn: set[bytes] = set()

    # Changes.

    def follow(self, author: bytes, target: bytes, at_ms: int = 0) -> None:
        self._following.setdefault(author, {})[target] = at_ms

    def unfollow(self, author: bytes, target: bytes) -> None:
        self._following.get(author, {}).pop(target, None)

    def like(self, author: bytes, video: bytes, at_ms: int = 0) -> None:
        self._liked.setdefault(author, {})[video] = at_ms
        self._likers.setdefault(video, set()).add(author)

    def unlike(self, author: bytes, video: bytes) -> None:
        self._liked.get(author, {}).pop(video, None)
        self._likers.get(video, set()).discard(author)

    def watch(self, viewer: bytes, video: bytes, at_ms: int = 0) -> None:
        """A view receipt: the video moves to ``at_ms`` unless it was watched later."""
        views = self._viewed.setdefault(viewer, {})
        views[video] = max(views.get(video, at_ms), at_ms)

    def publish(self, info: VideoInfo) -> VideoInfo:
        self._videos[info.id] = info
        self._by_creator.setdefault(info.creator, set()).add(info.id)
        return info

    def withdraw(self, video: bytes) -> None:
        """A tombstone: the video stays known but is never returned again."""
        self._withdrawn.add(video)

    # SocialView.

    def following(self, account: bytes, limit: int) -> list[bytes]:
        targets = self._following.get(account, {})
        return sorted(targets, key=lambda t: (-targets[t], t))[:limit]

    def liked(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        likes = self._liked.get(account, {})
        return [(v, likes[v]) for v in sorted(likes, key=lambda v: (-likes[v], v))[:limit]]

    def viewed(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        views = self._viewed.get(account, {})
        return [(v, views[v]) for v in sorted(views, key=lambda v: (-views[v], v))[:limit]]

    def likers(self, video: bytes, limit: int) -> list[bytes]:
        return sorted(self._likers.get(video, set()))[:limit]

    def like_count(self, video: bytes) -> int:
        return len(self._likers.get(video, set()))

    def videos_by(self, creator: bytes, limit: int) -> list[VideoInfo]:
        ids = self._by_creator.get(creator, set()) - self._withdrawn
        infos = [self._videos[v] for v in ids]
        return sorted(infos, key=lambda i: (-i.created_ms, i.id))[:limit]

    def video(self, video: bytes) -> VideoInfo | None:
        return None if video in self._withdrawn else self._videos.get(video)


@dataclass
class CountingView:
    """Passes every read on to ``inner`` and records it: calls per method, the largest limit
    asked for per method, and the items returned per method."""

    inner: SocialView
    calls: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    limits: dict[str, int] = field(default_factory=dict)

    def _count(self, method: str, limit: int | None, returned: int) -> None:
        self.calls[method] += 1
        self.items[method] += returned
        if limit is not None:
            self.limits[method] = max(self.limits.get(method, 0), limit)

    def following(self, account: bytes, limit: int) -> list[bytes]:
        out = self.inner.following(account, limit)
        self._count("following", limit, len(out))
        return out

    def liked(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        out = self.inner.liked(account, limit)
        self._count("liked", limit, len(out))
        return out

    def viewed(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        out = self.inner.viewed(account, limit)
        self._count("viewed", limit, len(out))
        return out

    def likers(self, video: bytes, limit: int) -> list[bytes]:
        out = self.inner.likers(video, limit)
        self._count("likers", limit, len(out))
        return out

    def like_count(self, video: bytes) -> int:
        self._count("like_count", None, 1)
        return self.inner.like_count(video)

    def videos_by(self, creator: bytes, limit: int) -> list[VideoInfo]:
        out = self.inner.videos_by(creator, limit)
        self._count("videos_by", limit, len(out))
        return out

    def video(self, video: bytes) -> VideoInfo | None:
        out = self.inner.video(video)
        self._count("video", None, 1)
        return out


@dataclass
class SybilWorld:
    """An honest power-law graph, maybe with a planted cluster of fake accounts."""

    view: MemorySocial
    honest: list[bytes]
    fakes: list[bytes]
    spam: VideoInfo | None
    """The video every fake likes (posted by ``fakes[0]`` half an hour before now)."""
    attackers: list[bytes]
    """Honest accounts that follow one fake each (none unless asked)."""


def sybil_world(
    seed: int, now_ms: int, *, honest_n: int = 3000, fakes_n: int = 1000, attack_edges: int = 0
) -> SybilWorld:
    """A seeded world; the same seed gives the same honest part whatever the cluster.

    Honest accounts join one by one and follow a Pareto-distributed number of accounts
    (about 4 on average, up to 60), mostly chosen in proportion to followers already held
    (preferential attachment), so a few accounts are very popular. Each posts 1 to 3 videos
    over the last 5 days and likes 3 to 20 videos, mostly of accounts it follows.

    The cluster: ``fakes_n`` fakes each follow 10 other fakes and the spam creator, and, to
    look honest, follow 3 popular honest accounts and like one video of each; all like the
    spam video. ``attack_edges`` honest accounts (not the same ones for another seed)
    are duped into following one of the fakes ``fakes[1:11]``.
    """
    rng = random.Random(seed)
    view = MemorySocial()
    honest = [acct(f"honest {i}") for i in range(honest_n)]
    follows: dict[bytes, list[bytes]] = {}
    pool: list[bytes] = []  # each account once, plus once per follower: attachment weights
    for i, account in enumerate(honest):
        wanted = min(60, int(rng.paretovariate(1.2) * 4)) if i else 0
        targets: dict[bytes, None] = {}
        for _ in range(wanted):
            target = rng.choice(pool) if rng.random() < 0.8 else honest[rng.randrange(i)]
            if target != account:
                targets[target] = None
        follows[account] = list(targets)
        for target in targets:
            view.follow(account, target, now_ms - rng.randrange(30 * DAY_MS))
            pool.append(target)
        pool.append(account)
    videos: dict[bytes, list[VideoInfo]] = {}
    for account in honest:
        videos[account] = [
            view.publish(
                VideoInfo(vid(f"{account.hex()} {j}"), account, now_ms - rng.randrange(5 * DAY_MS))
            )
            for j in range(rng.randint(1, 3))
        ]
    for account in honest:
        for _ in range(rng.randint(3, 20)):
            mine = follows[account]
            creator = rng.choice(mine) if mine and rng.random() < 0.7 else rng.choice(pool)
            if creator != account:
                video = rng.choice(videos[creator])
                view.like(account, video.id, now_ms - rng.randrange(5 * DAY_MS))
    fakes = [acct(f"fake {i}") for i in range(fakes_n)]
    spam = None
    if fakes:
        spam = view.publish(VideoInfo(vid("spam"), fakes[0], now_ms - HOUR_MS // 2))
        crowd = random.Random(f"{seed}/cluster")
        popular = sorted(set(pool[-2000:]))
        for fake in fakes:
            for target in [*crowd.sample(fakes, min(10, fakes_n)), fakes[0]]:
                if target != fake:
                    view.follow(fake, target, now_ms - crowd.randrange(DAY_MS))
            for target in crowd.sample(popular, 3):
                view.follow(fake, target, now_ms - crowd.randrange(DAY_MS))
                view.like(fake, crowd.choice(videos[target]).id, now_ms - crowd.randrange(DAY_MS))
            view.like(fake, spam.id, now_ms - crowd.randrange(HOUR_MS // 2))
    duping = random.Random(f"{seed}/attack")
    attackers = duping.sample(honest, attack_edges) if fakes_n > 1 else []
    for account in attackers:
        fake = fakes[duping.randrange(1, min(11, fakes_n))]
        view.follow(account, fake, now_ms - duping.randrange(DAY_MS))
    return SybilWorld(view, honest, fakes, spam, attackers)
