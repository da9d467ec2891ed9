"""Feed ranking: each score part, the ordering rules, the explanations, what never appears,
determinism, bounded reads, and resistance to a planted cluster of fake accounts.

Run with ``-s`` to see the figures of the bounded-reads and fake-cluster tests.
"""

import ast
import dataclasses
import hashlib
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.ranking import (
    DAY_MS,
    DEFAULT_PARAMS,
    FOLLOWED_BY_FOLLOWS,
    HOUR_MS,
    LIKED_BY_FOLLOWS,
    LIKED_BY_TRUSTED,
    MINUTE_MS,
    POSTED,
    YOU_FOLLOW,
    YOU_LIKED_CREATOR,
    YOU_WATCHED_CREATOR,
    RankedItem,
    RankingParams,
    Reason,
    VideoInfo,
    age_text,
    halve,
    rank_feed,
    recency,
    saturate,
    trust_scores,
)
from tests.socialfakes import CountingView, MemorySocial, SybilWorld, acct, sybil_world, vid

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_790_000_000_000
VIEWER = acct("viewer")
P = DEFAULT_PARAMS


def post(view: MemorySocial, creator: bytes, name: str, age_ms: int = 0) -> VideoInfo:
    return view.publish(VideoInfo(vid(name), creator, NOW - age_ms))


def item_of(feed: list[RankedItem], video: VideoInfo) -> RankedItem:
    [found] = [item for item in feed if item.video.id == video.id]
    return found


def reason(item: RankedItem, code: str) -> Reason | None:
    found = [r for r in item.reasons if r.code == code]
    assert len(found) <= 1
    return found[0] if found else None


def ids(feed: list[RankedItem]) -> list[bytes]:
    return [item.video.id for item in feed]


# Score parts, one by one.


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [(0, 1.0), (P.recency_half_life_ms, 0.5), (2 * P.recency_half_life_ms, 0.25),
     (10 * P.recency_half_life_ms, 2.0**-10), (-HOUR_MS, 1.0)],
)  # fmt: skip
def test_recency_halves_at_each_half_life(age_ms: int, expected: float) -> None:
    assert recency(age_ms) == expected


def test_halve_agrees_with_pow() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        age, half = rng.randrange(10**11), rng.randrange(1, 10**9)
        assert halve(age, half) == pytest.approx(2.0 ** (-age / half), rel=1e-15, abs=1e-300)
    assert halve(10**9, 1) == 0.0


def test_saturate() -> None:
    assert saturate(0, 3) == 0.0
    assert saturate(3, 3) == 0.5
    assert saturate(-1, 3) == 0.0
    assert 0.99 < saturate(10**6, 3) < 1


def test_recency_part_orders_a_creators_videos() -> None:
    g = MemorySocial()
    creator = acct("creator")
    g.follow(VIEWER, creator)
    new, old = post(g, creator, "new"), post(g, creator, "old", P.recency_half_life_ms)
    feed = rank_feed(g, VIEWER, NOW)
    assert item_of(feed, new).parts["recency"] == 1.0
    assert item_of(feed, old).parts["recency"] == 0.5
    assert ids(feed) == [new.id, old.id]


def test_follow_part() -> None:
    g = MemorySocial()
    followed, liked = acct("followed"), acct("liked")
    g.follow(VIEWER, followed)
    a, b = post(g, followed, "a"), post(g, liked, "b", DAY_MS)
    g.like(VIEWER, b.id, NOW)
    feed = rank_feed(g, VIEWER, NOW)
    assert item_of(feed, a).parts["follow"] == 1.0
    assert item_of(feed, b).parts["follow"] == 0.0


@pytest.mark.parametrize("likes", [1, 2, 4])
def test_affinity_grows_with_the_viewers_likes_and_decays(likes: int) -> None:
    def affinity(liked_age_ms: int) -> float:
        g = MemorySocial()
        creator = acct("creator")
        for i in range(likes):
            g.like(VIEWER, post(g, creator, f"liked {i}", 9 * DAY_MS).id, NOW - liked_age_ms)
        fresh = post(g, creator, "fresh")
        return item_of(rank_feed(g, VIEWER, NOW), fresh).parts["affinity"]

    assert affinity(0) == saturate(likes, P.affinity_saturation)
    assert affinity(P.affinity_half_life_ms) == saturate(likes / 2, P.affinity_saturation)
    assert affinity(0) > affinity(P.affinity_half_life_ms)


def test_affinity_grows_with_more_likes() -> None:
    parts = []
    for likes in (1, 2, 4):
        g = MemorySocial()
        creator = acct("creator")
        for i in range(likes):
            g.like(VIEWER, post(g, creator, f"liked {i}", DAY_MS).id, NOW)
        fresh = post(g, creator, "fresh")
        parts.append(item_of(rank_feed(g, VIEWER, NOW), fresh).parts)
    assert parts[0]["affinity"] < parts[1]["affinity"] < parts[2]["affinity"] < 1


@pytest.mark.parametrize("views", [1, 3])
def test_affinity_counts_the_viewers_views_at_view_weight_with_the_like_decay(views: int) -> None:
    def item(viewed_age_ms: int) -> RankedItem:
        g = MemorySocial()
        creator = acct("creator")
        for i in range(views):
            g.watch(VIEWER, post(g, creator, f"watched {i}", 9 * DAY_MS).id, NOW - viewed_age_ms)
        fresh = post(g, creator, "fresh")
        return item_of(rank_feed(g, VIEWER, NOW), fresh)

    weight = P.view_weight
    assert item(0).parts["affinity"] == saturate(views * weight, P.affinity_saturation)
    halved = item(P.affinity_half_life_ms).parts["affinity"]
    assert halved == saturate(views * weight / 2, P.affinity_saturation)
    assert item(0).parts["affinity"] > halved > 0
    # The watched creator is found as a candidate although the viewer does not follow them.
    assert item(0).parts["follow"] == 0.0
    text = f"you watched {views} video{'s' if views > 1 else ''} by the creator"
    assert reason(item(0), YOU_WATCHED_CREATOR) == Reason(YOU_WATCHED_CREATOR, views, text)
    assert reason(item(0), YOU_LIKED_CREATOR) is None


def _affinity(params: RankingParams, *, like: bool, watch: bool) -> RankedItem:
    """The fresh video of a creator one of whose older videos the viewer liked and/or
    watched."""
    g = MemorySocial()
    creator = acct("creator")
    g.follow(VIEWER, creator)
    old = post(g, creator, "old", DAY_MS)
    if like:
        g.like(VIEWER, old.id, NOW)
    if watch:
        g.watch(VIEWER, old.id, NOW)
    fresh = post(g, creator, "fresh")
    return item_of(rank_feed(g, VIEWER, NOW, params=params), fresh)


def test_a_view_weighs_less_than_a_like_and_both_add_up() -> None:
    def affinity(params: RankingParams = P, **signals: bool) -> float:
        return _affinity(params, **signals).parts["affinity"]

    assert P.view_weight == 0.25
    viewed, liked = affinity(like=False, watch=True), affinity(like=True, watch=False)
    assert 0 < viewed < liked
    assert affinity(like=True, watch=True) == saturate(1.25, P.affinity_saturation)
    assert affinity(RankingParams(view_weight=1.0), like=False, watch=True) == liked
    both = _affinity(P, like=True, watch=True)
    assert [r.code for r in both.reasons][-3:] == [YOU_LIKED_CREATOR, YOU_WATCHED_CREATOR, POSTED]


def test_a_view_weight_of_zero_reads_no_views() -> None:
    g = MemorySocial()
    creator = acct("creator")
    g.follow(VIEWER, creator)
    g.watch(VIEWER, post(g, creator, "old", DAY_MS).id, NOW)
    fresh = post(g, creator, "fresh")
    counting = CountingView(g)
    item = item_of(rank_feed(counting, VIEWER, NOW, params=RankingParams(view_weight=0)), fresh)
    assert item.parts["affinity"] == 0.0
    assert reason(item, YOU_WATCHED_CREATOR) is None
    assert counting.calls["viewed"] == 0


def test_views_of_unknown_or_withdrawn_videos_and_beyond_the_limit_count_nothing() -> None:
    g = MemorySocial()
    creator = acct("creator")
    g.follow(VIEWER, creator)
    watched = [post(g, creator, f"watched {i}", DAY_MS) for i in range(4)]
    for i, video in enumerate(watched):
        g.watch(VIEWER, video.id, NOW - i * MINUTE_MS)  # watched[0] most recently
    g.watch(VIEWER, vid("never published"), NOW)
    g.withdraw(watched[0].id)
    fresh = post(g, creator, "fresh")
    params = RankingParams(viewer_views_max=3)  # reads: unknown, watched[0], watched[1]
    item = item_of(rank_feed(g, VIEWER, NOW, params=params), fresh)
    assert reason(item, YOU_WATCHED_CREATOR) == Reason(
        YOU_WATCHED_CREATOR, 1, "you watched 1 video by the creator"
    )
    assert item.parts["affinity"] == saturate(
        P.view_weight * halve(MINUTE_MS, P.affinity_half_life_ms), P.affinity_saturation
    )


def test_a_rewatch_counts_the_video_once_at_its_latest_view() -> None:
    g = MemorySocial()
    creator = acct("creator")
    video = post(g, creator, "v", DAY_MS)
    g.watch(VIEWER, video.id, NOW - P.affinity_half_life_ms)
    g.watch(VIEWER, video.id, NOW)
    g.watch(VIEWER, video.id, NOW - 2 * P.affinity_half_life_ms)  # an older receipt, late
    assert g.viewed(VIEWER, 10) == [(video.id, NOW)]
    fresh = post(g, creator, "fresh")
    item = item_of(rank_feed(g, VIEWER, NOW), fresh)
    assert item.parts["affinity"] == saturate(P.view_weight, P.affinity_saturation)
    assert reason(item, YOU_WATCHED_CREATOR) == Reason(
        YOU_WATCHED_CREATOR, 1, "you watched 1 video by the creator"
    )


def test_social_part_counts_followed_accounts_that_follow_the_creator() -> None:
    g = MemorySocial()
    creator = acct("creator")
    for i in range(3):
        g.follow(VIEWER, acct(i))
        g.follow(acct(i), creator)
    for i in range(10):  # strangers following the creator prove nothing
        g.follow(acct(f"stranger {i}"), creator)
    video = post(g, creator, "v")
    item = item_of(rank_feed(g, VIEWER, NOW), video)
    assert item.parts["social"] == saturate(3, P.social_saturation) == 0.5
    assert item.parts["follow"] == 0.0


def test_engagement_counts_only_trusted_likers() -> None:
    g = MemorySocial()
    creator, friend = acct("creator"), acct("friend")
    g.follow(VIEWER, creator)
    g.follow(VIEWER, friend)
    video = post(g, creator, "v")
    for i in range(300):  # strangers, who even follow the viewer's friends: no trust
        g.like(acct(f"stranger {i}"), video.id, NOW)
        g.follow(acct(f"stranger {i}"), friend)
    item = item_of(rank_feed(g, VIEWER, NOW), video)
    assert item.parts["engagement"] == 0.0
    assert reason(item, LIKED_BY_TRUSTED) is None and reason(item, LIKED_BY_FOLLOWS) is None

    g.like(friend, video.id, NOW)
    item = item_of(rank_feed(g, VIEWER, NOW), video)
    # creator and friend hold equal trust, and they are all the trust there is to scan.
    assert item.parts["engagement"] == saturate(0.5, P.engagement_saturation)
    assert reason(item, LIKED_BY_FOLLOWS) == Reason(
        LIKED_BY_FOLLOWS, 1, "liked by 1 account you follow"
    )


def test_engagement_weighs_likers_by_trust() -> None:
    g = MemorySocial()
    near, far = acct("near"), acct("far")
    g.follow(VIEWER, near)
    g.follow(near, far)
    a, b = post(g, acct("a"), "a"), post(g, acct("b"), "b")
    g.like(near, a.id, NOW)
    g.like(far, b.id, NOW)
    feed = rank_feed(g, VIEWER, NOW)
    trust = trust_scores(g, VIEWER)
    assert trust[near] > trust[far] > 0
    assert item_of(feed, a).parts["engagement"] > item_of(feed, b).parts["engagement"] > 0
    assert ids(feed) == [a.id, b.id]


def test_score_is_recency_times_relevance_times_diversity() -> None:
    world = sybil_world(3, NOW, honest_n=400, fakes_n=0)
    for viewer in world.honest[:20]:
        for item in rank_feed(world.view, viewer, NOW):
            p = item.parts
            assert p["relevance"] == (
                P.follow_weight * p["follow"]
                + P.affinity_weight * p["affinity"]
                + P.social_weight * p["social"]
                + P.engagement_weight * p["engagement"]
            )
            assert item.score == p["recency"] * p["relevance"] * p["diversity"]
            assert 0 <= p["engagement"] < 1 and 0 <= p["affinity"] < 1 and 0 <= p["social"] < 1


# Ordering rules.


def test_diversity_caps_and_penalises_a_creator() -> None:
    g = MemorySocial()
    prolific, other = acct("prolific"), acct("other")
    g.follow(VIEWER, prolific)
    g.follow(VIEWER, other)
    for i in range(10):
        post(g, prolific, f"p{i}", i * MINUTE_MS)
    lone = post(g, other, "o", 6 * HOUR_MS)
    params = RankingParams(videos_per_creator_max=10)
    feed = rank_feed(g, VIEWER, NOW, params=params)
    theirs = [item for item in feed if item.video.creator == prolific]
    assert len(theirs) == P.creator_items_max == 3
    assert [item.parts["diversity"] for item in theirs] == [1.0, 0.5, 0.25]
    # 6 h old, the lone video beats the prolific creator's third item but not its first.
    assert ids(feed) == [vid("p0"), lone.id, vid("p1"), vid("p2")]

    flat = dataclasses.replace(params, creator_items_max=10, creator_decay=1.0)
    assert ids(rank_feed(g, VIEWER, NOW, params=flat)) == [vid(f"p{i}") for i in range(10)] + [
        lone.id
    ]


def test_ties_are_broken_by_video_id() -> None:
    g = MemorySocial()
    made = []
    for i in range(6):
        g.follow(VIEWER, acct(i))
        made.append(post(g, acct(i), f"tie {i}", HOUR_MS))
    feed = rank_feed(g, VIEWER, NOW)
    assert len({item.score for item in feed}) == 1
    assert ids(feed) == sorted(v.id for v in made)


def test_feeds_are_sorted_and_diverse() -> None:
    world = sybil_world(4, NOW, honest_n=600, fakes_n=0)
    for viewer in world.honest[::30]:
        feed = rank_feed(world.view, viewer, NOW, limit=200)
        assert feed == sorted(feed, key=lambda i: (-i.score, i.video.id))
        creators = [item.video.creator for item in feed]
        assert max(creators.count(c) for c in creators) <= P.creator_items_max
        assert len(set(ids(feed))) == len(feed)
        assert rank_feed(world.view, viewer, NOW, limit=10) == feed[:10]


def test_limit() -> None:
    world = sybil_world(4, NOW, honest_n=300, fakes_n=0)
    assert rank_feed(world.view, world.honest[5], NOW, limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        rank_feed(world.view, world.honest[5], NOW, limit=-1)


# Explanations.


def test_every_reason_with_its_count_and_text() -> None:
    g = MemorySocial()
    creator = acct("creator")
    g.follow(VIEWER, creator)
    followed = [acct(f"followed {i}") for i in range(3)]
    for account in followed:
        g.follow(VIEWER, account)
        g.follow(account, creator)
    video = post(g, creator, "v", 2 * HOUR_MS + 5 * MINUTE_MS)
    older = post(g, creator, "older", 3 * DAY_MS)
    g.like(VIEWER, older.id, NOW - DAY_MS)
    for account in followed[:2]:
        g.like(account, video.id, NOW)
    for i in range(3):  # two hops out: trusted, not followed
        g.follow(followed[0], acct(f"far {i}"))
        g.like(acct(f"far {i}"), video.id, NOW)
    item = item_of(rank_feed(g, VIEWER, NOW), video)
    assert item.reasons == (
        Reason(YOU_FOLLOW, None, "you follow the creator"),
        Reason(FOLLOWED_BY_FOLLOWS, 3, "followed by 3 accounts you follow"),
        Reason(LIKED_BY_FOLLOWS, 2, "liked by 2 accounts you follow"),
        Reason(LIKED_BY_TRUSTED, 5, "liked by 5 accounts you trust"),
        Reason(YOU_LIKED_CREATOR, 1, "you liked 1 video by the creator"),
        Reason(POSTED, 2 * HOUR_MS + 5 * MINUTE_MS, "posted 2 h ago"),
    )


def test_singular_texts_and_redundant_trust_left_out() -> None:
    g = MemorySocial()
    friend, creator = acct("friend"), acct("creator")
    g.follow(VIEWER, friend)
    g.follow(friend, creator)
    video = post(g, creator, "v", 30 * MINUTE_MS)
    g.like(friend, video.id, NOW)
    g.like(VIEWER, post(g, creator, "w", DAY_MS).id, NOW)
    g.like(VIEWER, post(g, creator, "x", DAY_MS).id, NOW)
    item = item_of(rank_feed(g, VIEWER, NOW), video)
    # The one trusted liker is followed: "liked by 1 account you trust" would say nothing new.
    assert [r.text for r in item.reasons] == [
        "followed by 1 account you follow",
        "liked by 1 account you follow",
        "you liked 2 videos by the creator",
        "posted 30 min ago",
    ]


def test_every_item_says_why_it_is_there() -> None:
    world = sybil_world(6, NOW, honest_n=500, fakes_n=0)
    for viewer in world.honest[::25]:
        for item in rank_feed(world.view, viewer, NOW):
            codes = [r.code for r in item.reasons]
            assert codes[-1] == POSTED and len(codes) >= 2
            assert (YOU_FOLLOW in codes) == (item.parts["follow"] == 1.0)
            mine = YOU_LIKED_CREATOR in codes or YOU_WATCHED_CREATOR in codes
            assert mine == (item.parts["affinity"] > 0)
            assert (FOLLOWED_BY_FOLLOWS in codes) == (item.parts["social"] > 0)
            liked = LIKED_BY_FOLLOWS in codes or LIKED_BY_TRUSTED in codes
            assert liked == (item.parts["engagement"] > 0)


@pytest.mark.parametrize(
    ("age_ms", "text"),
    [(-5000, "just now"), (0, "just now"), (59_999, "just now"), (MINUTE_MS, "1 min ago"),
     (HOUR_MS - 1, "59 min ago"), (HOUR_MS, "1 h ago"), (DAY_MS - 1, "23 h ago"),
     (DAY_MS, "1 d ago"), (40 * DAY_MS, "40 d ago")],
)  # fmt: skip
def test_age_text(age_ms: int, text: str) -> None:
    assert age_text(age_ms) == text


# What never appears.


def test_withdrawn_videos_never_appear() -> None:
    g = MemorySocial()
    creator, friend = acct("creator"), acct("friend")
    g.follow(VIEWER, creator)
    g.follow(VIEWER, friend)
    kept, gone = post(g, creator, "kept"), post(g, creator, "gone")
    gone_liked = post(g, acct("x"), "gone liked")
    for video in (kept, gone, gone_liked):
        g.like(friend, video.id, NOW)
        g.like(VIEWER, video.id, NOW)
    g.withdraw(gone.id)
    g.withdraw(gone_liked.id)
    assert ids(rank_feed(g, VIEWER, NOW)) == [kept.id]


def test_blocked_accounts_never_appear_and_count_for_nothing() -> None:
    g = MemorySocial()
    pest, friend, creator = acct("pest"), acct("friend"), acct("creator")
    for account in (pest, friend, creator):
        g.follow(VIEWER, account)
    g.follow(pest, acct("pest's friend"))
    mine, theirs = post(g, creator, "mine"), post(g, pest, "theirs")
    g.like(friend, theirs.id, NOW)
    g.like(VIEWER, theirs.id, NOW)
    g.like(pest, mine.id, NOW)
    g.like(acct("pest's friend"), mine.id, NOW)
    blocked = frozenset({pest})
    feed = rank_feed(g, VIEWER, NOW, blocked=blocked)
    assert ids(feed) == [mine.id]
    assert item_of(feed, mine).parts["engagement"] == 0.0
    trust = trust_scores(g, VIEWER, blocked=blocked)
    assert pest not in trust and acct("pest's friend") not in trust
    assert pest in trust_scores(g, VIEWER)


def test_the_viewers_own_videos_are_left_out() -> None:
    g = MemorySocial()
    friend = acct("friend")
    g.follow(VIEWER, friend)
    g.follow(friend, VIEWER)
    own = post(g, VIEWER, "own")
    g.like(friend, own.id, NOW)
    g.like(VIEWER, own.id, NOW)
    assert rank_feed(g, VIEWER, NOW) == []
    assert ids(rank_feed(g, friend, NOW)) == [own.id]


# Trust.


def test_trust_is_personalized_pagerank_by_hand() -> None:
    g = MemorySocial()
    a, b, c = acct("a"), acct("b"), acct("c")
    g.follow(VIEWER, a)
    g.follow(VIEWER, b)
    g.follow(a, b)
    g.follow(a, VIEWER)
    g.follow(b, c)
    g.follow(c, acct("three hops"))
    # Step 0: the walk is at the viewer; step 1: a and b, 0.425 each; step 2: from a, half
    # of 0.85 * 0.425 to b and half back to the viewer, from b all of it to c. Each
    # account keeps 0.15 of what reaches it.
    trust = trust_scores(g, VIEWER)
    assert trust == pytest.approx(
        {
            VIEWER: 0.15 + 0.15 * 0.180625,
            a: 0.15 * 0.425,
            b: 0.15 * (0.425 + 0.180625),
            c: 0.15 * 0.36125,
        },
        rel=1e-12,
    )
    deeper = trust_scores(g, VIEWER, RankingParams(trust_hops=3))
    assert deeper[acct("three hops")] == pytest.approx(0.15 * 0.85 * 0.36125, rel=1e-12)


def test_trust_flows_only_along_follows() -> None:
    world = sybil_world(7, NOW, honest_n=300, fakes_n=0)
    viewer = world.honest[100]
    before = trust_scores(world.view, viewer)
    for i in range(200):  # strangers follow every trusted account: they gain nothing
        for account in sorted(before):
            world.view.follow(acct(f"stranger {i}"), account)
    assert trust_scores(world.view, viewer) == before
    assert sum(before.values()) <= 1.0
    assert max(before, key=lambda a: before[a]) == viewer


def test_trust_reads_the_most_likely_accounts_first() -> None:
    g = MemorySocial()
    a, b, x, y, z = (acct(name) for name in "abxyz")
    for follower, followed in [(VIEWER, a), (VIEWER, b), (a, x), (a, y), (b, y), (b, z)]:
        g.follow(follower, followed)
    for account in (x, y, z):
        g.follow(account, acct(f"after {account.hex()}"))
    counting = CountingView(g)
    # Reading a and b leaves one read: y, reached from both, is twice as likely as x or z.
    trust = trust_scores(counting, VIEWER, RankingParams(trust_accounts_max=3, trust_hops=3))
    assert counting.calls["following"] == 4
    assert acct(f"after {y.hex()}") in trust
    assert acct(f"after {x.hex()}") not in trust and acct(f"after {z.hex()}") not in trust


# Determinism and bounded reads.

_DIGEST_SCRIPT = """
import hashlib
from tests.socialfakes import sybil_world
from protocol.ranking import rank_feed
world = sybil_world(11, {now}, honest_n=500, fakes_n=50, attack_edges=5)
h = hashlib.sha256()
for viewer in world.honest[::10]:
    h.update(repr(rank_feed(world.view, viewer, {now})).encode())
print(h.hexdigest())
"""


def test_same_input_same_feed_whatever_the_hash_seed() -> None:
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT.format(now=NOW)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        digests.add(out.stdout.strip())
    world = sybil_world(11, NOW, honest_n=500, fakes_n=50, attack_edges=5)
    here = hashlib.sha256()
    for viewer in world.honest[::10]:
        here.update(repr(rank_feed(world.view, viewer, NOW)).encode())
    assert digests == {here.hexdigest()}


SMALL = RankingParams(
    trust_accounts_max=20, trust_following_max=10, viewer_following_max=12,
    viewer_likes_max=10, viewer_views_max=6, trusted_likers_max=25, trusted_likes_max=6,
    followed_creators_max=8, two_hop_creators_max=10, liked_creators_max=5,
    liked_videos_max=30, videos_per_creator_max=2,
)  # fmt: skip


def read_bounds(p: RankingParams) -> dict[str, tuple[int, int]]:
    """The most calls and returned items per SocialView method in one rank_feed."""
    creators = p.followed_creators_max + p.two_hop_creators_max + p.liked_creators_max
    return {
        "following": (
            1 + p.trust_accounts_max,
            p.viewer_following_max + p.trust_accounts_max * p.trust_following_max,
        ),
        "liked": (
            1 + p.trusted_likers_max,
            p.viewer_likes_max + p.trusted_likers_max * p.trusted_likes_max,
        ),
        "viewed": (1, p.viewer_views_max),
        "videos_by": (creators, creators * p.videos_per_creator_max),
        "video": (p.viewer_likes_max + p.viewer_views_max + p.liked_videos_max,) * 2,
    }


def dense_world(accounts: int, seed: int) -> MemorySocial:
    """Every account follows 15, likes 8 and posts 3, and the viewer watched 8 videos of
    creators nobody follows or likes: more than SMALL lets ranking read. (Only the viewer's
    views are ever read; its watched videos collide with no other read, so both network
    sizes make the same reads.)"""
    rng = random.Random(seed)
    g = MemorySocial()
    people = [VIEWER] + [acct(i) for i in range(accounts)]
    for n, person in enumerate(people):
        for j in range(3):
            post(g, person, f"{n}/{j}", rng.randrange(3 * DAY_MS))
    for person in people:
        for other in rng.sample(people, 15):
            g.follow(person, other, NOW - rng.randrange(DAY_MS))
        for _ in range(8):
            g.like(person, vid(f"{rng.randrange(len(people))}/{rng.randrange(3)}"), NOW)
    for k in range(8):
        watched = post(g, acct(f"watched creator {k}"), f"watched {k}", k * HOUR_MS)
        g.watch(VIEWER, watched.id, NOW - k * MINUTE_MS)
    return g


@pytest.mark.parametrize("hops", [2, 3])
def test_reads_are_bounded_and_do_not_grow_with_the_network(hops: int) -> None:
    params = dataclasses.replace(SMALL, trust_hops=hops)
    counted = {}
    for accounts in (400, 4000):
        view = CountingView(dense_world(accounts, seed=1))
        feed = rank_feed(view, VIEWER, NOW, params=params)
        assert len(feed) == 50
        for method, (calls_max, items_max) in read_bounds(params).items():
            assert view.calls[method] <= calls_max, method
            assert view.items[method] <= items_max, method
        assert view.limits == {
            "following": params.viewer_following_max,
            "liked": params.viewer_likes_max,
            "viewed": params.viewer_views_max,
            "videos_by": params.videos_per_creator_max,
        }
        assert view.calls["likers"] == view.calls["like_count"] == 0
        counted[accounts] = dict(view.calls), dict(view.items)
        print(f"\n{accounts} accounts, {hops} hops: calls {counted[accounts][0]}")
        print(f"  items {counted[accounts][1]}")
    # Every limit is reached in both networks, so ten times the accounts read the same.
    assert counted[4000] == counted[400]
    if hops == 3:
        assert counted[4000][0]["following"] == 1 + params.trust_accounts_max


def test_default_read_bounds() -> None:
    """The figures docs/ranking.md quotes for the default parameters."""
    assert read_bounds(DEFAULT_PARAMS) == {
        "following": (101, 5200),
        "liked": (101, 2050),
        "viewed": (1, 50),
        "videos_by": (150, 450),
        "video": (200, 200),
    }


def test_docs_list_every_parameter_with_its_default() -> None:
    text = (ROOT / "docs" / "ranking.md").read_text()
    table = text[text.index("## 10. Parameters") :]
    documented = {
        name: ast.literal_eval(value)
        for name, value in re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", table, re.MULTILINE)
    }
    assert documented == {f.name: f.default for f in dataclasses.fields(RankingParams)}
    for code in (YOU_FOLLOW, FOLLOWED_BY_FOLLOWS, LIKED_BY_FOLLOWS, LIKED_BY_TRUSTED,
                 YOU_LIKED_CREATOR, YOU_WATCHED_CREATOR, POSTED):  # fmt: skip
        assert f"| `{code}` |" in text


@pytest.mark.parametrize(
    "change",
    [{"recency_half_life_ms": 0}, {"engagement_saturation": 0.0}, {"trust_damping": 1.0},
     {"trust_damping": -0.1}, {"creator_decay": 0.0}, {"creator_decay": 1.5},
     {"trusted_likers_max": -1}, {"follow_weight": -1.0}],
)  # fmt: skip
def test_invalid_params(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(change))):
        RankingParams(**change)  # type: ignore[arg-type]


# Fake accounts.


@pytest.fixture(scope="module")
def honest_only() -> SybilWorld:
    return sybil_world(1, NOW, fakes_n=0)


@pytest.fixture(scope="module")
def with_cluster() -> SybilWorld:
    return sybil_world(1, NOW)


def test_a_cluster_of_fakes_changes_nothing_for_viewers_who_do_not_follow_into_it(
    honest_only: SybilWorld, with_cluster: SybilWorld
) -> None:
    """1,000 fakes follow each other, follow and like popular honest accounts, and all
    like one spam video. No honest account follows them, so no honest viewer's trust
    reaches them: the spam never reaches a top 50, and every feed is exactly the feed of
    the same network without the cluster."""
    assert with_cluster.spam is not None
    viewers = random.Random(2).sample(with_cluster.honest, 150)
    for viewer in viewers:
        feed = rank_feed(with_cluster.view, viewer, NOW)
        assert with_cluster.spam.id not in ids(feed)
        assert feed == rank_feed(honest_only.view, viewer, NOW)
        assert not set(trust_scores(with_cluster.view, viewer)) & set(with_cluster.fakes)


def test_a_viewer_who_follows_into_the_cluster_may_see_the_spam(with_cluster: SybilWorld) -> None:
    """The mechanism is trust, not a list of bad accounts: follow fakes and you trust them."""
    assert with_cluster.spam is not None
    viewer = acct("credulous")
    for account in with_cluster.fakes[1:4] + with_cluster.honest[:10]:
        with_cluster.view.follow(viewer, account, NOW)
    try:
        item = item_of(rank_feed(with_cluster.view, viewer, NOW), with_cluster.spam)
        assert reason(item, LIKED_BY_FOLLOWS) == Reason(
            LIKED_BY_FOLLOWS, 3, "liked by 3 accounts you follow"
        )
    finally:
        for account in with_cluster.fakes[1:4] + with_cluster.honest[:10]:
            with_cluster.view.unfollow(viewer, account)


def test_a_duped_follow_lends_the_cluster_one_accounts_trust_whatever_its_size() -> None:
    """Ten honest accounts are duped into following a fake. A viewer who follows one of
    them trusts that fake as it trusts any account two hops out, and sees the spam as "liked
    by 1 account you trust" (one per duped follow): the other fakes add nothing, so the spam
    gets the same engagement from a cluster of 1,000 as from a cluster of 11."""
    big = sybil_world(1, NOW, attack_edges=10)
    small = sybil_world(1, NOW, fakes_n=11, attack_edges=10)
    assert big.spam is not None and small.spam is not None and big.attackers == small.attackers
    duped = set(big.attackers)
    near = [
        account
        for account in big.honest
        if account not in duped and duped & set(big.view.following(account, 1000))
    ]
    others = [account for account in big.honest if account not in duped]
    seen = 0
    for viewer in near + random.Random(3).sample(others, 100):
        big_feed = rank_feed(big.view, viewer, NOW)
        if viewer not in near:
            assert big.spam.id not in ids(big_feed)
            continue
        everything = rank_feed(big.view, viewer, NOW, limit=10_000)
        if big.spam.id not in ids(everything):
            continue
        spam = item_of(everything, big.spam)
        duped_fakes = {
            fake
            for account in duped & set(big.view.following(viewer, 1000))
            for fake in big.view.following(account, 1000)
            if fake in set(big.fakes)
        }
        trusted_likers = reason(spam, LIKED_BY_TRUSTED)
        assert trusted_likers is not None and trusted_likers.count == len(duped_fakes)
        small_spam = item_of(rank_feed(small.view, viewer, NOW, limit=10_000), small.spam)
        assert spam.parts["engagement"] == small_spam.parts["engagement"]
        seen += big.spam.id in ids(big_feed)
    print(f"\nspam in the top 50 of {seen} of {len(near)} viewers who follow a duped account")
    assert len(near) >= 30
