"""The feed: every node ranks its viewer's feed from the social graph, and says why.

This is the one open ranking algorithm every node runs; docs/ranking.md explains it in
plain words. In short:

1. **Trust.** A random walk starts at the viewer and at each step follows one of the
   current account's follows, chosen uniformly, or stops. An account's trust is the chance
   that the walk stops there (personalized PageRank), computed exactly over a bounded
   neighbourhood: at most ``trust_hops`` steps and ``trust_accounts_max`` follow lists read.
   Following someone gives them trust; being followed by many accounts nobody trusts gives
   none, which is what keeps a cluster of fake accounts out.
2. **Candidates.** The videos of the accounts the viewer follows; of the accounts those
   follow (two hops); of creators whose videos the viewer liked or watched; and the videos
   liked by the accounts the viewer trusts most.
3. **Score** = recency × relevance × diversity, where relevance adds up weighted parts:
   the viewer follows the creator, affinity (the viewer's recent likes of the creator, and
   views of the creator's videos, which weigh less),
   social proof (how many followed accounts follow the creator) and engagement (the share
   of the viewer's trust that liked the video; no other like counts).
4. **Diversity.** Each further item of a creator is penalised, and a creator holds at most
   ``creator_items_max`` items of the feed.

Every read of the social graph goes through :class:`SocialView` with a limit from
:class:`RankingParams`, so the work per feed is bounded by the parameters and does not grow
with the size of the network. The function is pure: the same view, viewer, time and
parameters give the same feed, bit for bit, on every node (ties are broken by video id,
and every floating-point sum is taken in an order fixed by account or video ids).
"""

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Protocol

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class VideoInfo:
    """What ranking needs to know of one video."""

    id: bytes
    """The message id of the video's manifest."""
    creator: bytes
    """The creator's account public key (the manifest's author)."""
    created_ms: int
    """When the creator published it (the manifest's ``created_ms``)."""


class SocialView(Protocol):
    """The bounded reads of the social graph that ranking makes.

    Follows and likes are the active ones (the latest follow/unfollow or like/unlike of each
    pair wins). Each method returns at most ``limit`` items; ranking never asks for more than
    its :class:`RankingParams` allow.
    """

    def following(self, account: bytes, limit: int) -> list[bytes]:
        """The accounts ``account`` follows, most recently followed first."""
        ...

    def liked(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        """``(manifest id, liked_ms)`` of the account's likes, newest first."""
        ...

    def viewed(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        """``(manifest id, last viewed ms)`` of the videos the account sent view receipts
        of, most recently watched first, each video once."""
        ...

    def likers(self, video: bytes, limit: int) -> list[bytes]:
        """Accounts whose latest reaction to ``video`` is a like, in any order."""
        ...

    def like_count(self, video: bytes) -> int:
        """How many accounts like ``video`` now."""
        ...

    def videos_by(self, creator: bytes, limit: int) -> list[VideoInfo]:
        """The creator's videos, newest first, withdrawn ones left out."""
        ...

    def video(self, video: bytes) -> VideoInfo | None:
        """The video, or None when it is unknown or withdrawn (tombstoned)."""
        ...


@dataclass(frozen=True)
class RankingParams:
    """Every constant of the ranking. docs/ranking.md explains each in plain words.

    Raises :class:`ValueError` on construction when a value is out of its range.
    """

    # Scoring.
    recency_half_life_ms: int = DAY_MS
    """A video's recency halves every this many ms after it was posted."""
    affinity_half_life_ms: int = 30 * DAY_MS
    """A like (or view) of the viewer counts half as much toward affinity after this many
    ms."""
    affinity_saturation: float = 2.0
    """Decayed likes of a creator's videos that give half the full affinity."""
    view_weight: float = 0.25
    """What a video the viewer watched adds to affinity, as a share of a like."""
    social_saturation: float = 3.0
    """Followed accounts following the creator that give half the full social proof."""
    engagement_saturation: float = 0.05
    """Share of the scanned trust that, liking a video, gives half the full engagement."""
    follow_weight: float = 1.0
    affinity_weight: float = 1.0
    social_weight: float = 0.5
    engagement_weight: float = 2.0
    creator_decay: float = 0.5
    """Each earlier item of the same creator in the feed multiplies a score by this."""
    creator_items_max: int = 3
    """The most items one creator may hold in a feed."""
    # Trust (personalized PageRank).
    trust_damping: float = 0.85
    """The chance that the trust walk goes on at each step (it stops otherwise)."""
    trust_hops: int = 2
    """The longest trust walk, in steps; a walk still going after it is dropped. Two steps
    reach the accounts followed by the accounts you follow; a third would let an account
    two hops out lend trust to everyone it follows, which lets a fake cluster behind one
    mistaken follow multiply its likes (docs/ranking.md, "Fake accounts")."""
    trust_accounts_max: int = 100
    """Follow lists read for the trust walk besides the viewer's, most trusted first."""
    trust_following_max: int = 50
    """Follows read per account in the trust walk."""
    # Reads.
    viewer_following_max: int = 200
    """Follows of the viewer read."""
    viewer_likes_max: int = 50
    """Likes of the viewer read (newest first) to measure affinity."""
    viewer_views_max: int = 50
    """Videos the viewer watched read (most recently watched first) to measure affinity."""
    trusted_likers_max: int = 100
    """The most trusted accounts whose likes are read to measure engagement."""
    trusted_likes_max: int = 20
    """Likes read per trusted account (newest first)."""
    followed_creators_max: int = 100
    """Followed accounts whose videos are read, most trusted first."""
    two_hop_creators_max: int = 30
    """Accounts two hops out whose videos are read, most followed by the viewer's follows."""
    liked_creators_max: int = 20
    """Creators the viewer liked or watched lately (not followed) whose videos are read, by
    affinity."""
    liked_videos_max: int = 100
    """Videos liked by trusted accounts looked up as candidates, most engaged first."""
    videos_per_creator_max: int = 3
    """Videos read per creator (newest first)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_ms") or f.name.endswith("_saturation"):
                if value <= 0:
                    raise ValueError(f"{f.name} must be positive, got {value}")
            elif value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value}")
        if not 0 <= self.trust_damping < 1:
            raise ValueError(f"trust_damping must be in [0, 1), got {self.trust_damping}")
        if not 0 < self.creator_decay <= 1:
            raise ValueError(f"creator_decay must be in (0, 1], got {self.creator_decay}")


DEFAULT_PARAMS = RankingParams()

# Reason codes, one per kind of explanation (docs/ranking.md lists them).
YOU_FOLLOW = "you_follow"
FOLLOWED_BY_FOLLOWS = "followed_by_follows"
LIKED_BY_FOLLOWS = "liked_by_follows"
LIKED_BY_TRUSTED = "liked_by_trusted"
YOU_LIKED_CREATOR = "you_liked_creator"
YOU_WATCHED_CREATOR = "you_watched_creator"
POSTED = "posted"


@dataclass(frozen=True)
class Reason:
    """One explanation of why an item is in the feed.

    ``count`` is the number behind the text: accounts for ``followed_by_follows``,
    ``liked_by_follows`` and ``liked_by_trusted``, videos for ``you_liked_creator`` and
    ``you_watched_creator``, the video's age in ms for ``posted``, and None for
    ``you_follow``.
    """

    code: str
    count: int | None
    text: str


@dataclass(frozen=True)
class RankedItem:
    """A video in the feed, with its score, the parts of that score and the reasons.

    ``score == parts["recency"] * parts["relevance"] * parts["diversity"]``; relevance is
    the weighted sum of ``follow``, ``affinity``, ``social`` and ``engagement``.
    """

    video: VideoInfo
    score: float
    parts: dict[str, float]
    reasons: tuple[Reason, ...]


# 1/k! for the series of exp below: 18 terms leave an error under 1e-17 on [-ln 2, 0].
_EXP_TERMS = tuple(1.0 / math.factorial(k) for k in range(18))
_LN2 = 0.6931471805599453


def halve(age_ms: int, half_life_ms: int) -> float:
    """``2 ** -(age_ms / half_life_ms)``: 1 at age 0, 1/2 at one half-life; a negative age
    (a clock ahead of ours) counts as 0.

    Built from +, * and / only (which IEEE 754 rounds exactly) and an exact power of two,
    not from the math library's pow or exp, whose last bit differs between platforms: so
    every node computes the same bits and ranks ties the same way.
    """
    x = max(age_ms, 0) / half_life_ms
    whole = math.floor(x)
    if whole > 1100:
        return 0.0  # below the smallest double
    y = -(x - whole) * _LN2  # in (-ln 2, 0]: 2 ** -frac = exp(y)
    series = 0.0
    for coefficient in reversed(_EXP_TERMS):
        series = series * y + coefficient
    return math.ldexp(series, -whole)


def recency(age_ms: int, params: RankingParams = DEFAULT_PARAMS) -> float:
    """1 for a video posted now, halving every ``recency_half_life_ms``; a video from the
    future (a creator's clock ahead of ours) counts as posted now."""
    return halve(age_ms, params.recency_half_life_ms)


def saturate(amount: float, half: float) -> float:
    """``amount / (amount + half)``: 0 for nothing, 1/2 at ``half``, below 1 forever, so no
    single signal grows without bound."""
    return amount / (amount + half) if amount > 0 else 0.0


class _Reads:
    """The bounded reads of one ranking, each made at most once."""

    def __init__(
        self, view: SocialView, viewer: bytes, blocked: frozenset[bytes], params: RankingParams
    ) -> None:
        self.view = view
        self.viewer = viewer
        self.blocked = blocked - {viewer}  # blocking yourself would make no feed at all
        self.params = params
        self.follows: dict[bytes, list[bytes]] = {}
        self.videos: dict[bytes, VideoInfo | None] = {}
        self.follow_reads_left = params.trust_accounts_max

    def follows_of(self, account: bytes) -> list[bytes] | None:
        """The account's follows (blocked accounts and itself left out), or None when they
        are not read yet and the read budget is spent."""
        if account in self.follows:
            return self.follows[account]
        if account == self.viewer:
            limit = self.params.viewer_following_max
        elif self.follow_reads_left > 0:
            self.follow_reads_left -= 1
            limit = self.params.trust_following_max
        else:
            return None
        # dict.fromkeys drops duplicates and keeps the view's order (most recent first).
        read = self.view.following(account, limit)[:limit]
        kept = [a for a in dict.fromkeys(read) if a != account and a not in self.blocked]
        self.follows[account] = kept
        return kept

    def video(self, video_id: bytes) -> VideoInfo | None:
        if video_id not in self.videos:
            self.videos[video_id] = self.view.video(video_id)
        return self.videos[video_id]


def _walk(reads: _Reads) -> dict[bytes, float]:
    """Personalized PageRank from the viewer over the bounded neighbourhood."""
    go_on = reads.params.trust_damping
    trust: dict[bytes, float] = {}
    mass = {reads.viewer: 1.0}  # chance that the walk is at each account at this step
    for step in range(reads.params.trust_hops + 1):
        for account, m in mass.items():
            trust[account] = trust.get(account, 0.0) + (1.0 - go_on) * m
        if step == reads.params.trust_hops:
            break
        moved: dict[bytes, float] = {}
        # Most likely accounts first, so the read budget goes where the trust is; equal ones
        # in the order they were reached (the viewer's follows: most recent first). The
        # order depends on the graph only, so every float sum is taken in the same order.
        for account in sorted(mass, key=lambda a: -mass[a]):
            follows = reads.follows_of(account)
            if not follows:
                continue  # the walk stops for good at an account it cannot leave
            share = go_on * mass[account] / len(follows)
            for target in follows:
                moved[target] = moved.get(target, 0.0) + share
        mass = moved
    return trust


def trust_scores(
    view: SocialView,
    viewer: bytes,
    params: RankingParams = DEFAULT_PARAMS,
    *,
    blocked: frozenset[bytes] = frozenset(),
) -> dict[bytes, float]:
    """How much ``viewer`` trusts each account reached through its follows.

    The chance that a walk from the viewer stops at the account (personalized PageRank with
    damping ``trust_damping``, walks cut after ``trust_hops`` steps), so the values add up
    to at most 1; the viewer itself is included. Accounts the walk cannot reach, and
    ``blocked`` ones, are absent. Reads the viewer's follows and at most
    ``trust_accounts_max`` other follow lists, those of the most likely accounts first.
    Raises whatever ``view`` raises.
    """
    return _walk(_Reads(view, viewer, blocked, params))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def age_text(age_ms: int) -> str:
    """``age_ms`` in words, coarsest unit first: "just now", "5 min ago", "2 h ago", "3 d
    ago" (rounded down); a negative age (a clock ahead of ours) is "just now"."""
    if age_ms < MINUTE_MS:
        return "just now"
    if age_ms < HOUR_MS:
        return f"{age_ms // MINUTE_MS} min ago"
    if age_ms < DAY_MS:
        return f"{age_ms // HOUR_MS} h ago"
    return f"{age_ms // DAY_MS} d ago"


@dataclass
class _Signals:
    """What the reads taught about the viewer's neighbourhood, shared by every candidate."""

    trust: dict[bytes, float]
    followed: list[bytes]  # most recently followed first
    followed_set: frozenset[bytes]
    followers_of: dict[bytes, int]  # creator -> followed accounts following them
    affinity: dict[bytes, float]  # creator -> decayed likes (and weighted views) by the viewer
    viewer_likes: dict[bytes, int]  # creator -> the viewer's likes of their videos
    viewer_views: dict[bytes, int]  # creator -> their videos the viewer watched
    liked_trust: dict[bytes, float]  # video -> share of the scanned trust that likes it
    liked_trusted: dict[bytes, int]  # video -> scanned trusted accounts that like it
    liked_followed: dict[bytes, int]  # video -> followed accounts that like it


def _signals(reads: _Reads, now_ms: int) -> _Signals:
    p, viewer = reads.params, reads.viewer
    trust = _walk(reads)
    followed = reads.follows_of(viewer) or []
    followers_of: dict[bytes, int] = {}
    for account in followed:
        for creator in reads.follows.get(account, ()):  # only lists the walk read
            followers_of[creator] = followers_of.get(creator, 0) + 1
    affinity: dict[bytes, float] = {}
    viewer_likes: dict[bytes, int] = {}
    for video_id, liked_ms in reads.view.liked(viewer, p.viewer_likes_max)[: p.viewer_likes_max]:
        info = reads.video(video_id)
        if info is None:
            continue
        decayed = halve(now_ms - liked_ms, p.affinity_half_life_ms)
        affinity[info.creator] = affinity.get(info.creator, 0.0) + decayed
        viewer_likes[info.creator] = viewer_likes.get(info.creator, 0) + 1
    viewer_views: dict[bytes, int] = {}
    if p.view_weight > 0:
        viewed = reads.view.viewed(viewer, p.viewer_views_max)[: p.viewer_views_max]
        counted: set[bytes] = set()  # a view that lists a video twice counts it once
        for video_id, viewed_ms in viewed:
            info = None if video_id in counted else reads.video(video_id)
            counted.add(video_id)
            if info is None:
                continue
            decayed = p.view_weight * halve(now_ms - viewed_ms, p.affinity_half_life_ms)
            affinity[info.creator] = affinity.get(info.creator, 0.0) + decayed
            viewer_views[info.creator] = viewer_views.get(info.creator, 0) + 1
    followed_set = frozenset(followed)
    others = (a for a in trust if a != viewer)
    scanned = _top(others, p.trusted_likers_max, lambda a: (-trust[a],))
    total = math.fsum(trust[a] for a in scanned)
    if total <= 0:
        scanned = []  # no trust beyond the viewer (damping 0): no engagement to measure
    liked_trust: dict[bytes, float] = {}
    liked_trusted: dict[bytes, int] = {}
    liked_followed: dict[bytes, int] = {}
    for account in scanned:
        likes = reads.view.liked(account, p.trusted_likes_max)[: p.trusted_likes_max]
        share = trust[account] / total
        for video_id in dict.fromkeys(v for v, _ in likes):
            liked_trust[video_id] = liked_trust.get(video_id, 0.0) + share
            liked_trusted[video_id] = liked_trusted.get(video_id, 0) + 1
            if account in followed_set:
                liked_followed[video_id] = liked_followed.get(video_id, 0) + 1
    return _Signals(
        trust,
        followed,
        followed_set,
        followers_of,
        affinity,
        viewer_likes,
        viewer_views,
        liked_trust,
        liked_trusted,
        liked_followed,
    )


def _top(keys: Iterable[bytes], n: int, key: Callable[[bytes], tuple[float, ...]]) -> list[bytes]:
    """The first ``n`` keys in the order of ``key``, ties broken by the smaller key."""
    return heapq.nsmallest(n, keys, key=lambda k: (*key(k), k))


def _candidates(reads: _Reads, s: _Signals) -> dict[bytes, VideoInfo]:
    p, viewer = reads.params, reads.viewer
    # Most trusted first; equal ones most recently followed first (sorted() is stable).
    creators = sorted(s.followed, key=lambda c: -s.trust.get(c, 0.0))[: p.followed_creators_max]
    known = set(creators) | {viewer}
    two_hop = [c for c in s.followers_of if c not in known]
    creators += _top(
        two_hop, p.two_hop_creators_max, lambda c: (-s.followers_of[c], -s.trust.get(c, 0.0))
    )
    known.update(creators)
    liked = [c for c in s.affinity if c not in known]
    creators += _top(liked, p.liked_creators_max, lambda c: (-s.affinity[c],))
    found: dict[bytes, VideoInfo] = {}
    per_creator = p.videos_per_creator_max
    for creator in creators:
        if creator not in reads.blocked:
            for info in reads.view.videos_by(creator, per_creator)[:per_creator]:
                found[info.id] = info
    for video_id in _top(s.liked_trust, p.liked_videos_max, lambda v: (-s.liked_trust[v],)):
        liked_info = found.get(video_id) or reads.video(video_id)
        if liked_info is not None:
            found[video_id] = liked_info
    # The viewer's own videos are left out: a feed shows what others made.
    return {
        v: info
        for v, info in found.items()
        if info.creator != viewer and info.creator not in reads.blocked
    }


def _parts(info: VideoInfo, s: _Signals, now_ms: int, p: RankingParams) -> dict[str, float]:
    """The score parts of a candidate before diversity (its ``diversity`` part is 1)."""
    parts = {
        "recency": recency(now_ms - info.created_ms, p),
        "follow": 1.0 if info.creator in s.followed_set else 0.0,
        "affinity": saturate(s.affinity.get(info.creator, 0.0), p.affinity_saturation),
        "social": saturate(s.followers_of.get(info.creator, 0), p.social_saturation),
        "engagement": saturate(s.liked_trust.get(info.id, 0.0), p.engagement_saturation),
    }
    parts["relevance"] = (
        p.follow_weight * parts["follow"]
        + p.affinity_weight * parts["affinity"]
        + p.social_weight * parts["social"]
        + p.engagement_weight * parts["engagement"]
    )
    parts["diversity"] = 1.0
    return parts


def _reasons(info: VideoInfo, s: _Signals, now_ms: int) -> tuple[Reason, ...]:
    """Why the video is in the feed, in a fixed order, the age last."""
    reasons: list[Reason] = []
    if info.creator in s.followed_set:
        reasons.append(Reason(YOU_FOLLOW, None, "you follow the creator"))
    if n := s.followers_of.get(info.creator, 0):
        text = f"followed by {_plural(n, 'account')} you follow"
        reasons.append(Reason(FOLLOWED_BY_FOLLOWS, n, text))
    followed_likers = s.liked_followed.get(info.id, 0)
    if followed_likers:
        text = f"liked by {_plural(followed_likers, 'account')} you follow"
        reasons.append(Reason(LIKED_BY_FOLLOWS, followed_likers, text))
    # Accounts you follow are accounts you trust: say so only when it adds someone.
    if (n := s.liked_trusted.get(info.id, 0)) > followed_likers:
        reasons.append(Reason(LIKED_BY_TRUSTED, n, f"liked by {_plural(n, 'account')} you trust"))
    if n := s.viewer_likes.get(info.creator, 0):
        text = f"you liked {_plural(n, 'video')} by the creator"
        reasons.append(Reason(YOU_LIKED_CREATOR, n, text))
    if n := s.viewer_views.get(info.creator, 0):
        text = f"you watched {_plural(n, 'video')} by the creator"
        reasons.append(Reason(YOU_WATCHED_CREATOR, n, text))
    age_ms = now_ms - info.created_ms
    reasons.append(Reason(POSTED, max(age_ms, 0), f"posted {age_text(age_ms)}"))
    return tuple(reasons)


_Scored = tuple[VideoInfo, float, dict[str, float]]


def _diversify(scored: Iterable[_Scored], limit: int, p: RankingParams) -> list[_Scored]:
    """The best ``limit`` candidates after the creator penalty, best first.

    The j-th item (from 0) a creator places in the feed has its score multiplied by
    ``creator_decay ** j``, and a creator places at most ``creator_items_max``. Picking
    greedily the best penalised item each time gives scores that never increase, so the
    result is sorted by (score descending, video id ascending).
    """
    by_creator: dict[bytes, list[_Scored]] = {}
    for item in scored:
        by_creator.setdefault(item[0].creator, []).append(item)
    heap: list[tuple[float, bytes, bytes, int, float]] = []  # (-score, id, creator, j, factor)
    for creator, own in by_creator.items():
        own.sort(key=lambda item: (-item[1], item[0].id))
        if p.creator_items_max > 0:
            heap.append((-own[0][1], own[0][0].id, creator, 0, 1.0))
    heapq.heapify(heap)
    feed: list[_Scored] = []
    while heap and len(feed) < limit:
        neg_score, _, creator, j, factor = heapq.heappop(heap)
        info, _, parts = by_creator[creator][j]
        feed.append((info, -neg_score, dict(parts, diversity=factor)))
        if j + 1 < min(len(by_creator[creator]), p.creator_items_max):
            # Repeated products, not pow(), whose last bit may differ between platforms.
            nxt_info, nxt_score, _ = by_creator[creator][j + 1]
            nxt_factor = factor * p.creator_decay
            heapq.heappush(heap, (-nxt_score * nxt_factor, nxt_info.id, creator, j + 1, nxt_factor))
    return feed


def rank_feed(
    view: SocialView,
    viewer: bytes,
    now_ms: int,
    *,
    blocked: frozenset[bytes] = frozenset(),
    limit: int = 50,
    params: RankingParams = DEFAULT_PARAMS,
) -> list[RankedItem]:
    """The viewer's feed at ``now_ms``: at most ``limit`` items, best first.

    Never holds the viewer's own videos, a withdrawn video (``view`` does not return
    them), or anything by a ``blocked`` account; blocked accounts also give no trust, no
    likes and no follows. Raises :class:`ValueError` when ``limit`` is negative, and
    whatever ``view`` raises.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    reads = _Reads(view, viewer, blocked, params)
    signals = _signals(reads, now_ms)
    candidates = _candidates(reads, signals)
    scored = []
    for info in candidates.values():
        parts = _parts(info, signals, now_ms, params)
        scored.append((info, parts["recency"] * parts["relevance"], parts))
    # Reasons are written for the items shown only: most candidates are not.
    return [
        RankedItem(info, score, parts, _reasons(info, signals, now_ms))
        for info, score, parts in _diversify(scored, limit, params)
    ]
