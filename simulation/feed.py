"""Feed quality: what a node's feed shows, given what gossip and sync brought it.

At the end of a run, each of ``sample_nodes`` sampled nodes ranks its viewer's feed with
the real :func:`protocol.ranking.rank_feed` twice: over the videos the node holds, and
over every video published (the omniscient feed, what a node missing nothing would
show). The **overlap** of the two top-``limit`` lists, ``|node ∩ omniscient| / limit``
(divided by the omniscient feed's length when it holds fewer items), says how much a
node's missing messages cost its viewer.

The social world, built deterministically from the ``feed`` random streams:

- **Videos and creators.** Each item of each valid manifest message is a video by the
  account of the node that published it (a node hosts its creator's account), created
  at the item's publish time.
- **Popularity.** Creators are put in a random order (rank 0 the most popular), and
  every follow picks a creator by Zipf(``zipf_s``) over that order, so popularity does
  not depend on how much a creator posted.
- **Follows.** Each sampled viewer follows ``follows_per_account`` creators (drawn per
  viewer, distinct, never itself); each creator follows as many others, drawn the same
  way, so that two-hop candidates and trust beyond the first hop exist.
- **Likes.** Every account of the graph likes ``LIKES_PER_ACCOUNT`` videos of creators
  it follows, drawn uniformly, so engagement and "liked by" reasons exist.

Simplified: follows and likes are known to every node (the social-events topic is not
simulated), views are none, and nothing is withdrawn; only the videos a node holds
differ. Each ranked item's reasons are counted, to show that every item is explained.
"""

import hashlib
from collections.abc import Sequence
from random import Random

from protocol.ranking import Reason, VideoInfo, rank_feed
from simulation.dists import Zipf
from simulation.engine import US_PER_MS, Sim
from simulation.gossip import GossipSub
from simulation.metrics import Result, percentile
from simulation.network import Network
from simulation.scenario import FeedConfig
from simulation.sync import item_id

ACCOUNT_DOMAIN = b"toktok-sim/account/"
LIKES_PER_ACCOUNT = 5
# Distinct draws of follows stop after this many tries per follow (a small creator set).
DRAW_TRIES_PER_FOLLOW = 8


def account(node: int) -> bytes:
    """The 32-byte account public key hosted by ``node``."""
    return hashlib.sha256(ACCOUNT_DOMAIN + node.to_bytes(8, "big")).digest()


class SocialWorld:
    """Follows, likes and videos of the whole network, as every node knows them."""

    def __init__(self) -> None:
        self.follows: dict[bytes, list[bytes]] = {}  # most recently followed first
        self.likes: dict[bytes, list[tuple[bytes, int]]] = {}  # newest first
        self.likers: dict[bytes, list[bytes]] = {}  # sorted
        self.videos: dict[bytes, VideoInfo] = {}
        self.by_creator: dict[bytes, list[VideoInfo]] = {}  # newest first
        self.mid_of: dict[bytes, int] = {}


class HeldView:
    """A :class:`protocol.ranking.SocialView` of one node: the whole social graph, but only
    the videos of the messages in ``held`` (every video when ``held`` is None)."""

    def __init__(self, world: SocialWorld, held: set[int] | None) -> None:
        self._w = world
        self._held = held

    def _holds(self, video: bytes) -> bool:
        return self._held is None or self._w.mid_of[video] in self._held

    def following(self, account: bytes, limit: int) -> list[bytes]:
        return self._w.follows.get(account, [])[:limit]

    def liked(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        return self._w.likes.get(account, [])[:limit]

    def viewed(self, account: bytes, limit: int) -> list[tuple[bytes, int]]:
        return []

    def likers(self, video: bytes, limit: int) -> list[bytes]:
        return self._w.likers.get(video, [])[:limit]

    def like_count(self, video: bytes) -> int:
        return len(self._w.likers.get(video, ()))

    def videos_by(self, creator: bytes, limit: int) -> list[VideoInfo]:
        found: list[VideoInfo] = []
        for info in self._w.by_creator.get(creator, ()):
            if len(found) >= limit:
                break
            if self._holds(info.id):
                found.append(info)
        return found

    def video(self, video: bytes) -> VideoInfo | None:
        info = self._w.videos.get(video)
        return info if info is not None and self._holds(video) else None


class FeedModel:
    """Feeds ranked at the end of the run at sampled nodes, against the omniscient feed."""

    name = "feed"

    def __init__(self, sim: Sim, net: Network, gossip: GossipSub, cfg: FeedConfig) -> None:
        self.sim = sim
        self.net = net
        self.gossip = gossip
        self.cfg = cfg
        count = min(cfg.sample_nodes, net.n)
        self.sampled = sorted(sim.rng("feed.sample").sample(range(net.n), count))
        self.ever_offline: set[int] = set()

    def start(self) -> None:
        self.net.watch_online(self._online)

    def _online(self, node: int, online: bool) -> None:
        if not online:
            self.ever_offline.add(node)

    def sample(self) -> dict[str, float]:
        return {}

    # -- the social world --------------------------------------------------------------

    def build_world(self) -> SocialWorld:
        """The videos published so far, and the follow and like graph over their creators."""
        world = SocialWorld()
        for msg in self.gossip.messages:
            if not msg.valid:
                continue
            creator = account(msg.origin)
            for index, published_us in enumerate(msg.item_times_us):
                vid = item_id(msg.mid, index)
                info = VideoInfo(id=vid, creator=creator, created_ms=published_us // US_PER_MS)
                world.videos[vid] = info
                world.by_creator.setdefault(creator, []).append(info)
                world.mid_of[vid] = msg.mid
        for videos in world.by_creator.values():
            videos.sort(key=lambda info: (-info.created_ms, info.id))
        creators = sorted(world.by_creator)
        if not creators:
            return world
        rng = self.sim.rng("feed")
        rng.shuffle(creators)  # popularity order, rank 0 first
        zipf = Zipf(len(creators), self.cfg.zipf_s)
        viewers = [account(node) for node in self.sampled]
        for follower in [*creators, *viewers]:  # a sampled creator's follows are its viewer's
            wanted = max(0, round(self.cfg.follows_per_account.sample(rng)))
            world.follows[follower] = self._draw(creators, zipf, follower, wanted, rng)
        for follower in sorted(world.follows):
            pool = [v for c in world.follows[follower] for v in world.by_creator[c]]
            if not pool:
                continue
            chosen = rng.sample(pool, min(LIKES_PER_ACCOUNT, len(pool)))
            likes = sorted(((v.id, v.created_ms) for v in chosen), key=lambda x: (-x[1], x[0]))
            world.likes[follower] = likes
            for vid, _ in likes:
                world.likers.setdefault(vid, []).append(follower)
        for likers in world.likers.values():
            likers.sort()
        return world

    @staticmethod
    def _draw(
        creators: Sequence[bytes], zipf: Zipf, follower: bytes, wanted: int, rng: Random
    ) -> list[bytes]:
        chosen: dict[bytes, None] = {}
        for _ in range(wanted * DRAW_TRIES_PER_FOLLOW):
            if len(chosen) >= wanted:
                break
            creator = creators[zipf.sample(rng)]
            if creator != follower:
                chosen[creator] = None
        return list(chosen)

    # -- figures -----------------------------------------------------------------------

    def finish(self, result: Result) -> None:
        if not self.sampled:
            return
        world = self.build_world()
        now_ms = self.sim.now // US_PER_MS
        limit = self.cfg.limit
        everything = HeldView(world, None)
        overlaps: list[float] = []
        churned: list[float] = []
        held_fractions: list[float] = []
        feed_lengths: list[int] = []
        reasons_per_item: list[int] = []
        codes: dict[str, int] = {}
        valid = [m for m in self.gossip.messages if m.valid]
        items_total = sum(len(m.items) for m in valid)
        for node in self.sampled:
            held = {m.mid for m in valid if m.done[node] > 0}
            held_items = sum(len(self.gossip.messages[mid].items) for mid in held)
            held_fractions.append(held_items / items_total if items_total else 1.0)
            viewer = account(node)
            mine = rank_feed(HeldView(world, held), viewer, now_ms, limit=limit)
            best = rank_feed(everything, viewer, now_ms, limit=limit)
            overlap = _overlap([i.video.id for i in mine], [i.video.id for i in best], limit)
            overlaps.append(overlap)
            if node in self.ever_offline:
                churned.append(overlap)
            feed_lengths.append(len(mine))
            for item in mine:
                reasons_per_item.append(len(item.reasons))
                _count_codes(item.reasons, codes)
        steady = [
            o
            for node, o in zip(self.sampled, overlaps, strict=True)
            if node not in self.ever_offline
        ]
        result.samples["feed_overlap"] = overlaps
        result.summary["feed"] = {
            "sampled": len(self.sampled),
            "creators": len(world.by_creator),
            "videos": len(world.videos),
            "follows": sum(len(f) for f in world.follows.values()),
            "likes": sum(len(likes) for likes in world.likes.values()),
            "overlap_mean": _mean(overlaps),
            "overlap_p10": percentile(overlaps, 10),
            "overlap_p50": percentile(overlaps, 50),
            "overlap_min": min(overlaps),
            "overlap_mean_churned": _mean(churned),
            "overlap_mean_steady": _mean(steady),
            "churned_sampled": len(churned),
            "held_fraction_mean": _mean(held_fractions),
            "feed_items_mean": _mean([float(n) for n in feed_lengths]),
            "reasons_per_item_mean": _mean([float(n) for n in reasons_per_item]),
            "reasons_per_item_min": min(reasons_per_item, default=0),
            "reason_codes": dict(sorted(codes.items())),
        }


def _overlap(mine: list[bytes], best: list[bytes], limit: int) -> float:
    """The share of the omniscient top ``limit`` that the node's feed also shows."""
    top = best[:limit]
    if not top:
        return 1.0
    return len(set(mine[:limit]) & set(top)) / len(top)


def _count_codes(reasons: tuple[Reason, ...], codes: dict[str, int]) -> None:
    for reason in reasons:
        codes[reason.code] = codes.get(reason.code, 0) + 1


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
