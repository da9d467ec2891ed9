"""Feed ranking over a node's real store: rank time per viewer, social events per second.

Run from the repository root: ``.venv/bin/python bench/feed.py [--scale 0.1]
[--cache DIR] [--viewers 200] [--events 10000] [--profile]``.

**The world.** A seeded synthetic network of ``--accounts`` accounts, each an Ed25519 key
derived from the seed, with ``--follows`` follow edges, ``--videos`` videos and
``--reactions`` likes, all timestamped within the 30 days before a fixed ``now``. Degrees
follow power laws: an edge's author is drawn by a Zipf law of exponent 0.6 over the
accounts in one random order (a few accounts follow thousands, most follow a handful) and
its target by a Zipf law of exponent 0.9 over another order (a few accounts are followed
by tens of thousands). Creators are drawn by a Zipf law of exponent 0.8 over the followed
order (popular accounts post more); a like's author by the follower law, its video by a
weight that is a Zipf popularity (exponent 0.9, random order) times a recency that halves
every week, liked some time after the video was posted (early, mostly). Pairs are
distinct; nobody follows themselves. ``--scale`` multiplies the four counts.

**The store.** Every follow, like and manifest is a real signed message (``seal``); the
store is a node's own (``Stores.open``, LevelDB), filled as a node learning them from the
network would hold them: manifests by ``ManifestStore.put(pin=None)`` (one rendition, two
segments, chunks not held), follows and likes by ``SocialStore.apply`` (one write per
message, with the graph's indexes), and every message in the message log (staged a
thousand to a write, which only the bulk load does); then it is closed and opened again,
as by a node's restart. ``setup_s`` is the time to plan, sign and load it all. With
``--cache DIR`` the built store is kept in DIR and reused when DIR holds one of the same
parameters; each run measures a copy of it (``setup_s`` is then the plan's and the copy's
time, ``build_s`` the original build's).

**Feed.** ``--viewers`` viewers, half drawn from the 1% of accounts that follow the most
("heavy"), half from every account that follows anyone ("light"). For each, one call of
``rank_feed(stores.graph, viewer, now, blocked=stores.graph.blocked(viewer), limit=50)``
is timed, wall clock, LevelDB reads included: ``feed_ms`` p50, p90, p99, max (nearest
rank) over the viewers, and per group. The first (``first_ms``) also opens the LevelDB
tables it reads, as the first feed after a node starts does. A second pass through a
counting proxy of the view gives ``view_calls_mean``, the SocialView calls per feed by
method. ``feed_json_ms`` is the control route's whole cost (``node.feedview.feed_json``:
the ranking plus each item's manifest read back, signature checked, for its title) for
the first ten viewers. ``--profile`` prints a cProfile of the slowest viewer's ranking, 20
times over, on stderr.

**Social events.** ``--events`` new follows, unfollows of existing edges, likes and
unlikes of existing likes (35/15/35/15%), signed beforehand, go through the node's real
path, ``Ingest.offer`` (signature and rules checked, the store and graph updated, the
message logged), every one of which must be NEW: ``events_per_s``, and the rates of the
first and second half (``events_per_s_halves``: the first warms LevelDB's caches). The
item set Ingest keeps is built from the message log first, as a node does on start
(``item_set_load_s``), and collected once, as a node's long is when events come. As many
other fresh events go through ``SocialStore.apply`` alone (the store and the graph, no
validation, no log): ``apply_per_s``. The plan of the world is frozen out of the garbage
collector (``gc.freeze``): it is this script's, and a node would not trace it.

**Size.** ``store_bytes`` is the sum of the LevelDB directory's files after the load and
the reopening (``bytes_per_message`` over every message); a full compaction changes it by
less than 1%. Each message is held twice, as its register's (or manifest's) bytes and in
the log.

Times are wall clock; beside them, ``feed_cpu_ms`` and ``events_per_cpu_s`` count this
thread's CPU time only, which other work on a shared machine does not inflate as much;
``load_avg_1m`` is the machine's load average before the measurements.

Goals (issue 5): feed p50 <= 50 ms, p99 <= 200 ms; >= 5,000 social events per second.
MB is 10**6 bytes. The last line printed is one JSON object with every figure.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node``, ``storage`` and ``protocol`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import cProfile
import gc
import hashlib
import io
import itertools
import json
import os
import pstats
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.progress import Progress

from bench.gossip import percentile
from bench.idle import measured
from node.feedview import feed_json
from node.ingest import Ingest, Verdict
from node.sync import NodeItemSet
from protocol.accounts import AccountKey
from protocol.envelope import SignedMessage, seal
from protocol.kinds import (
    Follow,
    Reaction,
    Unfollow,
    VideoManifest,
)
from protocol.ranking import SocialView, rank_feed
from storage.kv import Batch
from storage.socialgraph import GRAPH_VERSION
from storage.stores import SCHEMA_VERSION, Stores
from tests.factories import fake_video, manifest_for
from tests.socialfakes import CountingView

GOALS = {"feed_p50_ms": 50, "feed_p99_ms": 200, "events_per_s": 5000}
WORLD_VERSION = 2
"""The world's recipe; a cached store built by another is rebuilt."""
NOW_MS = 1_790_000_000_000
DAY_MS = 86_400_000
WINDOW_MS = 30 * DAY_MS
FOLLOWER_ZIPF = 0.6
FOLLOWED_ZIPF = 0.9
CREATOR_ZIPF = 0.8
VIDEO_ZIPF = 0.9
LIKE_HALF_LIFE_MS = 7 * DAY_MS
LOAD_CHUNK = 1000
"""Messages signed, then loaded, at a time; their log entries share one write."""
HEAVY_SHARE = 0.01
FEED_LIMIT = 50
FEED_JSON_VIEWERS = 10
PROFILE_ROUNDS = 20
EVENT_MIX = (("follow", 0.35), ("unfollow", 0.15), ("like", 0.35), ("unlike", 0.15))
MB = 10**6

Pair = tuple[int, int]


@dataclass
class World:
    """The plan of the network: accounts by index, pairs of indexes, times in ms."""

    keys: list[AccountKey]
    follower_order: list[int]
    """Accounts from the one drawn most often as a follower (or liker) to the least."""
    follower_cum: list[float]
    followed_order: list[int]
    """Accounts from the one drawn most often as followed (or creator) to the least."""
    followed_cum: list[float]
    edges: dict[Pair, int] = field(default_factory=dict)
    """(author, target) -> followed_ms."""
    videos: list[tuple[int, int]] = field(default_factory=list)
    """(creator, created_ms) by video index."""
    video_cum: list[float] = field(default_factory=list)
    likes: dict[Pair, int] = field(default_factory=dict)
    """(account, video index) -> liked_ms."""


def zipf_cum(n: int, exponent: float) -> list[float]:
    """Cumulative weights of ranks 1..n under a Zipf law, for ``random.choices``."""
    return list(itertools.accumulate((r + 1) ** -exponent for r in range(n)))


Draw = Callable[[int], list[Pair]]


def edge_draw(w: World, rng: random.Random) -> Draw:
    """k candidate follow edges (fewer: self-follows are dropped)."""

    def draw(k: int) -> list[Pair]:
        authors = rng.choices(w.follower_order, cum_weights=w.follower_cum, k=k)
        targets = rng.choices(w.followed_order, cum_weights=w.followed_cum, k=k)
        return [(a, t) for a, t in zip(authors, targets, strict=True) if a != t]

    return draw


def like_draw(w: World, rng: random.Random) -> Draw:
    """k candidate (account, video index) likes."""
    indexes = range(len(w.videos))

    def draw(k: int) -> list[Pair]:
        accounts = rng.choices(w.follower_order, cum_weights=w.follower_cum, k=k)
        liked = rng.choices(indexes, cum_weights=w.video_cum, k=k)
        return list(zip(accounts, liked, strict=True))

    return draw


def draw_pairs(count: int, draw: Draw, taken: dict[Pair, int] | None = None) -> list[Pair]:
    """``count`` distinct pairs from ``draw``, none in ``taken``, in the order drawn."""
    out: dict[Pair, None] = {}
    while len(out) < count:
        for pair in draw(count - len(out)):
            if len(out) < count and pair not in out and (taken is None or pair not in taken):
                out[pair] = None
    return list(out)


def plan_world(args: argparse.Namespace, bar: Progress) -> World:
    """The seeded world of the module's docstring (the same for the same arguments)."""
    rng = random.Random(args.seed)
    n = args.accounts
    task = bar.add_task("keys", total=n)
    keys = []
    for i in range(n):
        seed = hashlib.sha256(b"toktok-feed-bench %d %d" % (args.seed, i)).digest()
        keys.append(AccountKey(seed))
        if i % 1000 == 999:
            bar.advance(task, 1000)
    follower_order, followed_order = rng.sample(range(n), n), rng.sample(range(n), n)
    followed_cum = zipf_cum(n, FOLLOWED_ZIPF)
    w = World(keys, follower_order, zipf_cum(n, FOLLOWER_ZIPF), followed_order, followed_cum)
    w.edges = {
        e: NOW_MS - rng.randrange(WINDOW_MS) for e in draw_pairs(args.follows, edge_draw(w, rng))
    }
    creators = rng.choices(followed_order, cum_weights=zipf_cum(n, CREATOR_ZIPF), k=args.videos)
    w.videos = [(c, NOW_MS - rng.randrange(WINDOW_MS)) for c in creators]
    weights = [0.0] * len(w.videos)
    for r, v in enumerate(rng.sample(range(len(w.videos)), len(w.videos))):
        age_ms = NOW_MS - w.videos[v][1]
        weights[v] = (r + 1) ** -VIDEO_ZIPF * 0.5 ** (age_ms / LIKE_HALF_LIFE_MS)
    w.video_cum = list(itertools.accumulate(weights))
    for account, v in draw_pairs(args.reactions, like_draw(w, rng)):
        created_ms = w.videos[v][1]
        # Mostly soon after the video was posted: u**2 leans toward 0.
        w.likes[account, v] = created_ms + int((NOW_MS - created_ms) * rng.random() ** 2)
    return w


def manifest_record(key: AccountKey, n: int, created_ms: int) -> VideoManifest:
    """A small manifest: one rendition of two segments, whose chunks nobody holds."""
    chunks = fake_video(b"toktok-feed-bench video %d" % n, segments=2, segment_bytes=32)
    return manifest_for(key, chunks, created_ms=created_ms, title=f"bench video {n}")


def load(
    stores: Stores, what: str, count: int, make: Callable[[int], SignedMessage], bar: Progress
) -> list[bytes]:
    """Sign ``make(i)`` for i < count and store each message as a node would; return ids."""
    task = bar.add_task(what, total=count)
    ids = []
    for start in range(0, count, LOAD_CHUNK):
        messages = [make(i) for i in range(start, min(count, start + LOAD_CHUNK))]
        batch = Batch()
        for message in messages:
            if isinstance(message.record, VideoManifest):
                stores.manifests.put(message, pin=None)
            else:
                stores.social.apply(message)
            stores.messages.stage(batch, message)
            ids.append(message.id)
        stores.kv.write(batch)
        bar.advance(task, len(messages))
    return ids


def build(path: Path, w: World, bar: Progress) -> tuple[list[bytes], dict[str, float]]:
    """Fill a new store at ``path`` with the world; return video ids and seconds per phase."""
    seconds: dict[str, float] = {}
    with Stores.open(path) as stores:

        def manifest(i: int) -> SignedMessage:
            creator, created_ms = w.videos[i]
            return seal(w.keys[creator], manifest_record(w.keys[creator], i, created_ms))

        started = time.perf_counter()
        vids = load(stores, "manifests", len(w.videos), manifest, bar)
        seconds["manifests_s"] = time.perf_counter() - started
        edges = list(w.edges.items())

        def follow(i: int) -> SignedMessage:
            (a, t), ms = edges[i]
            key = w.keys[a]
            return seal(
                key, Follow(author=key.public_key, created_ms=ms, target=w.keys[t].public_key)
            )

        started = time.perf_counter()
        load(stores, "follows", len(edges), follow, bar)
        seconds["follows_s"] = time.perf_counter() - started
        likes = list(w.likes.items())

        def like(i: int) -> SignedMessage:
            (a, v), ms = likes[i]
            key = w.keys[a]
            return seal(
                key,
                Reaction(author=key.public_key, created_ms=ms, manifest=vids[v], reaction="like"),
            )

        started = time.perf_counter()
        load(stores, "likes", len(likes), like, bar)
        seconds["likes_s"] = time.perf_counter() - started
    # Opened again, as by a node's restart, the store writes its log's tail into a table
    # and drops the files compactions left, so its size on disk is what it holds.
    started = time.perf_counter()
    Stores.open(path).close()
    seconds["reopen_s"] = time.perf_counter() - started
    return vids, seconds


def world_params(args: argparse.Namespace) -> dict[str, int]:
    """What a cached store must have been built with to be reused."""
    return {
        "world": WORLD_VERSION,
        "schema": SCHEMA_VERSION,
        "graph": GRAPH_VERSION,
        "seed": args.seed,
        "accounts": args.accounts,
        "follows": args.follows,
        "videos": args.videos,
        "reactions": args.reactions,
    }


def prepare(
    args: argparse.Namespace, w: World, work: Path, bar: Progress
) -> tuple[Path, list[bytes], dict[str, Any]]:
    """A store holding the world, to measure and change (a copy of the cached one when
    ``--cache`` is given); the video ids; what the setup cost."""
    target = work / "store"
    if args.cache is None:
        started = time.perf_counter()
        vids, phases = build(target, w, bar)
        return target, vids, {"cached": False, "build_s": time.perf_counter() - started, **phases}
    cache = Path(args.cache)
    meta, store, ids, partial = (
        cache / n for n in ("params.json", "store", "videos.bin", "partial")
    )
    held: dict[str, Any] | None = None
    if meta.is_file() and store.is_dir() and ids.is_file():
        held = json.loads(meta.read_text())
        if not isinstance(held, dict) or held.get("params") != world_params(args):
            held = None
    cached = held is not None
    if held is None:
        meta.unlink(missing_ok=True)  # first, so that a build cut short is never reused
        ids.unlink(missing_ok=True)
        for path in (store, partial):
            if path.exists():
                shutil.rmtree(path)
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        vids, phases = build(partial, w, bar)
        held = {"params": world_params(args), "build_s": time.perf_counter() - started, **phases}
        ids.write_bytes(b"".join(vids))
        partial.rename(store)
        meta.write_text(json.dumps(held))
    started = time.perf_counter()
    shutil.copytree(store, target)
    copy_s = time.perf_counter() - started
    raw = ids.read_bytes()
    vids = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    figures = {k: v for k, v in held.items() if k != "params"}
    return target, vids, {"cached": cached, "copy_s": copy_s, **figures}


def pick_viewers(w: World, count: int, seed: int) -> list[tuple[int, str]]:
    """(account, group): half "heavy", from the 1% of accounts that follow the most, half
    "light", from every account that follows anyone."""
    degree = Counter(a for a, _ in w.edges)
    ranked = sorted(degree, key=lambda a: (-degree[a], a))
    rng = random.Random(f"{seed} viewers")
    pool = ranked[: max(1, int(len(w.keys) * HEAVY_SHARE))]
    heavy = rng.sample(pool, min(count // 2, len(pool)))
    chosen = set(heavy)
    rest = [a for a in ranked if a not in chosen]
    light = rng.sample(rest, min(count - len(heavy), len(rest)))
    return [(a, "heavy") for a in heavy] + [(a, "light") for a in light]


def stats_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p90": round(percentile(values, 90), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.mean(values), 2),
    }


def rank(stores: Stores, viewer: bytes, view: SocialView | None = None) -> int:
    """Rank the viewer's feed as the control route does; return its length."""
    graph = stores.graph
    blocked = graph.blocked(viewer)
    return len(rank_feed(view or graph, viewer, NOW_MS, blocked=blocked, limit=FEED_LIMIT))


def measure_feed(
    stores: Stores, w: World, viewers: list[tuple[int, str]], profile: bool, bar: Progress
) -> dict[str, Any]:
    task = bar.add_task("feeds", total=2 * len(viewers) + len(viewers[:FEED_JSON_VIEWERS]))
    times: list[float] = []
    items = []
    cpu: list[float] = []
    for account, _ in viewers:
        started, cpu_started = time.perf_counter(), time.thread_time()
        items.append(rank(stores, w.keys[account].public_key))
        times.append(1000 * (time.perf_counter() - started))
        cpu.append(1000 * (time.thread_time() - cpu_started))
        bar.advance(task)
    calls: Counter[str] = Counter()
    for account, _ in viewers:
        counting = CountingView(stores.graph)
        rank(stores, w.keys[account].public_key, counting)
        calls.update(counting.calls)
        bar.advance(task)
    json_times = []
    for account, _ in viewers[:FEED_JSON_VIEWERS]:
        started = time.perf_counter()
        feed_json(stores, w.keys[account].public_key, NOW_MS, FEED_LIMIT)
        json_times.append(1000 * (time.perf_counter() - started))
        bar.advance(task)
    degree = Counter(a for a, _ in w.edges)
    groups = {}
    for group in ("heavy", "light"):
        mine = [i for i, (_, g) in enumerate(viewers) if g == group]
        if mine:
            groups[group] = {
                "viewers": len(mine),
                "follows_mean": round(statistics.mean(degree[viewers[i][0]] for i in mine), 1),
                "feed_ms": stats_ms([times[i] for i in mine]),
            }
    slowest = max(range(len(times)), key=times.__getitem__)
    if profile:
        profile_viewer(stores, w.keys[viewers[slowest][0]].public_key, times[slowest])
    n = len(viewers)
    return {
        "viewers": n,
        "limit": FEED_LIMIT,
        "feed_ms": stats_ms(times),
        "first_ms": round(times[0], 2),
        "feed_cpu_ms": stats_ms(cpu),
        "groups": groups,
        "items_mean": round(statistics.mean(items), 1),
        "view_calls_mean": round(sum(calls.values()) / n, 1),
        "view_calls_by_method": {k: round(v / n, 1) for k, v in sorted(calls.items())},
        "slowest_viewer_follows": degree[viewers[slowest][0]],
        "feed_json_ms": stats_ms(json_times),
    }


def profile_viewer(stores: Stores, viewer: bytes, first_ms: float) -> None:
    """Print on stderr where ranking ``viewer``'s feed spends its time: PROFILE_ROUNDS
    rankings, warm, so that one call's noise does not lead."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILE_ROUNDS):
        rank(stores, viewer)
    profiler.disable()
    out = io.StringIO()
    out.write(f"profile of the slowest viewer ({first_ms:.1f} ms when timed), ")
    out.write(f"{PROFILE_ROUNDS} rankings:\n")
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(15)
    print(out.getvalue(), file=sys.stderr)


def make_events(
    w: World, vids: list[bytes], count: int, seed: int, bar: Progress
) -> list[list[SignedMessage]]:
    """Two lists of ``count`` new social events each (EVENT_MIX, shuffled), signed; no pair
    appears twice, follows and likes are of new pairs, unfollows and unlikes of held ones."""
    rng = random.Random(f"{seed} events")
    rounds = []
    for _ in range(2):
        kinds = [k for k, share in EVENT_MIX for _ in range(round(count * share))][:count]
        kinds += ["like"] * (count - len(kinds))
        rng.shuffle(kinds)
        rounds.append(kinds)
    need = Counter(k for kinds in rounds for k in kinds)
    pairs = {
        "follow": iter(draw_pairs(need["follow"], edge_draw(w, rng), taken=w.edges)),
        "unfollow": iter(rng.sample(list(w.edges), need["unfollow"])),
        "like": iter(draw_pairs(need["like"], like_draw(w, rng), taken=w.likes)),
        "unlike": iter(rng.sample(list(w.likes), need["unlike"])),
    }
    task = bar.add_task("signing", total=2 * count)
    out = []
    ms = NOW_MS
    for kinds in rounds:
        messages = []
        for kind in kinds:
            ms += 1  # after every message of the world, so each one changes a register
            a, b = next(pairs[kind])
            key = w.keys[a]
            if kind in ("follow", "unfollow"):
                kind_type = Follow if kind == "follow" else Unfollow
                record: Follow | Unfollow | Reaction = kind_type(
                    author=key.public_key, created_ms=ms, target=w.keys[b].public_key
                )
            else:
                reaction = "like" if kind == "like" else "unlike"
                record = Reaction(
                    author=key.public_key, created_ms=ms, manifest=vids[b], reaction=reaction
                )
            messages.append(seal(key, record))
            bar.advance(task)
        out.append(messages)
    return out


def event_name(message: SignedMessage) -> str:
    """follow, unfollow, like or unlike."""
    record = message.record
    return record.reaction if isinstance(record, Reaction) else message.kind


def measure_events(
    stores: Stores, offered: list[SignedMessage], applied: list[SignedMessage], bar: Progress
) -> dict[str, Any]:
    """Offer one list to Ingest (the node's path), apply the other to SocialStore alone.

    Raises RuntimeError when an event is not new: it would not measure what it claims.
    """
    started = time.perf_counter()
    items = NodeItemSet.from_log(stores.messages)
    item_set_load_s = time.perf_counter() - started
    # The millions of objects just made would otherwise be traced by the next collections,
    # during the first events; a node's start is long over when events come.
    gc.collect()
    ingest = Ingest(stores, stores.messages, items)
    raws = [m.raw for m in offered]
    now_ms = max(m.record.created_ms for m in offered) + 60_000
    verdicts: Counter[str] = Counter()
    task = bar.add_task("Ingest.offer", total=len(raws))
    half = len(raws) // 2
    offer_started = halfway = time.perf_counter()
    cpu_started = time.thread_time()
    for i, raw in enumerate(raws):
        if i == half:
            halfway = time.perf_counter()
        verdicts[ingest.offer(raw, now_ms).verdict.value] += 1
        if i % 1000 == 999:
            bar.advance(task, 1000)
    ended = time.perf_counter()
    offer_cpu_s = time.thread_time() - cpu_started
    offer_s = ended - offer_started
    if verdicts[Verdict.NEW.value] != len(raws):
        raise RuntimeError(f"offered events were not all new: {dict(verdicts)}")
    task = bar.add_task("apply", total=len(applied))
    started = time.perf_counter()
    changed = 0
    for i, message in enumerate(applied):
        changed += stores.social.apply(message)
        if i % 1000 == 999:
            bar.advance(task, 1000)
    apply_s = time.perf_counter() - started
    if changed != len(applied):
        raise RuntimeError(f"{len(applied) - changed} applied events changed nothing")
    return {
        "events": len(raws),
        "mix": dict(Counter(event_name(m) for m in offered)),
        "item_set_load_s": round(item_set_load_s, 2),
        "offer_s": round(offer_s, 3),
        "events_per_s": round(len(raws) / offer_s),
        "events_per_cpu_s": round(len(raws) / offer_cpu_s),
        "events_per_s_halves": [
            round(half / (halfway - offer_started)),
            round((len(raws) - half) / (ended - halfway)),
        ],
        "apply_events": len(applied),
        "apply_s": round(apply_s, 3),
        "apply_per_s": round(len(applied) / apply_s),
    }


def dir_bytes(path: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(path) if e.is_file())


def measure(args: argparse.Namespace, work: Path, bar: Progress) -> dict[str, Any]:
    """Every figure of the module's docstring."""
    started = time.perf_counter()
    w = plan_world(args, bar)
    plan_s = time.perf_counter() - started
    # The plan's millions of objects are this script's, not the node's: the collector
    # skips them from now on, so its pauses are those a node would have.
    gc.freeze()
    path, vids, setup = prepare(args, w, work, bar)
    setup["plan_s"] = plan_s
    setup["setup_s"] = (
        plan_s + (0.0 if setup["cached"] else setup["build_s"]) + setup.get("copy_s", 0.0)
    )
    messages = len(w.videos) + len(w.edges) + len(w.likes)
    world = {
        "accounts": len(w.keys),
        "follows": len(w.edges),
        "videos": len(w.videos),
        "likes": len(w.likes),
        "messages": messages,
        "max_followers": max(Counter(t for _, t in w.edges).values()),
        "max_follows": max(Counter(a for a, _ in w.edges).values()),
        "max_likes_of_a_video": max(Counter(v for _, v in w.likes).values()),
    }
    store_bytes = dir_bytes(path)
    load_avg = round(os.getloadavg()[0], 2)  # other work on the machine slows every figure
    with Stores.open(path) as stores:
        world["log_items"] = stores.messages.count()
        viewers = pick_viewers(w, args.viewers, args.seed)
        feed = measure_feed(stores, w, viewers, args.profile, bar)
        offered, applied = make_events(w, vids, args.events, args.seed, bar)
        events = measure_events(stores, offered, applied, bar)
    return {
        "bench": "feed",
        "scale": args.scale,
        "seed": args.seed,
        "world": world,
        "setup": {k: round(v, 2) if isinstance(v, float) else v for k, v in setup.items()},
        "store_bytes": store_bytes,
        "bytes_per_message": round(store_bytes / messages, 1),
        "feed": feed,
        "social_events": events,
        "goals": GOALS,
        "meets": {
            "feed_p50_ms": feed["feed_ms"]["p50"] <= GOALS["feed_p50_ms"],
            "feed_p99_ms": feed["feed_ms"]["p99"] <= GOALS["feed_p99_ms"],
            "events_per_s": events["events_per_s"] >= GOALS["events_per_s"],
        },
        "cpus": os.cpu_count(),
        "load_avg_1m": load_avg,
    }


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report(r: dict[str, Any]) -> None:
    w, s, f, e = r["world"], r["setup"], r["feed"], r["social_events"]
    print(
        f"world: {w['accounts']} accounts, {w['follows']} follows, {w['videos']} videos, "
        f"{w['likes']} likes ({w['messages']} signed messages, {w['log_items']} in the log); "
        f"most followers {w['max_followers']}, most follows {w['max_follows']}, most likes "
        f"of a video {w['max_likes_of_a_video']}"
    )
    how = "reused from the cache" if s["cached"] else "built"
    loaded = w["messages"] / (s["manifests_s"] + s["follows_s"] + s["likes_s"])
    print(
        f"setup: {s['setup_s']:.1f} s this run ({how}; plan {s['plan_s']:.1f} s"
        + (f", copy {s['copy_s']:.1f} s" if "copy_s" in s else "")
        + f"); build {s['build_s']:.1f} s, loading {loaded:.0f} messages/s (manifests "
        f"{s['manifests_s']:.1f} s, follows {s['follows_s']:.1f} s, likes {s['likes_s']:.1f} s, "
        f"reopen {s['reopen_s']:.1f} s)"
    )
    print(
        f"store: {r['store_bytes'] / MB:.1f} MB on disk, {r['bytes_per_message']} bytes per message"
    )
    ms = f["feed_ms"]
    print(
        f"feed ({f['viewers']} viewers, top {f['limit']}, {f['items_mean']} items mean): "
        f"p50 {ms['p50']} ms ({verdict(r['meets']['feed_p50_ms'])} <= {GOALS['feed_p50_ms']}), "
        f"p90 {ms['p90']}, p99 {ms['p99']} ms ({verdict(r['meets']['feed_p99_ms'])} <= "
        f"{GOALS['feed_p99_ms']}), max {ms['max']}, first {f['first_ms']}; CPU p50 "
        f"{f['feed_cpu_ms']['p50']} ms, p99 {f['feed_cpu_ms']['p99']} ms"
    )
    for name, g in f["groups"].items():
        print(
            f"  {name}: {g['viewers']} viewers following {g['follows_mean']} mean: "
            f"p50 {g['feed_ms']['p50']} ms, p99 {g['feed_ms']['p99']} ms"
        )
    by_method = ", ".join(f"{k} {v}" for k, v in f["view_calls_by_method"].items())
    print(f"  SocialView calls per feed: {f['view_calls_mean']} ({by_method})")
    print(
        f"  feed_json (the control route, with titles), {FEED_JSON_VIEWERS} viewers: "
        f"p50 {f['feed_json_ms']['p50']} ms, max {f['feed_json_ms']['max']} ms"
    )
    print(
        f"social events: {e['events']} through Ingest.offer in {e['offer_s']} s = "
        f"{e['events_per_s']}/s ({verdict(r['meets']['events_per_s'])} >= "
        f"{GOALS['events_per_s']}); halves {e['events_per_s_halves'][0]}/s and "
        f"{e['events_per_s_halves'][1]}/s; {e['events_per_cpu_s']} per CPU second"
    )
    print(
        f"  SocialStore.apply alone {e['apply_per_s']}/s; item set loaded from the log in "
        f"{e['item_set_load_s']} s"
    )
    print(f"machine: {r['cpus']} CPUs, load average {r['load_avg_1m']} before the measurements")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=1_000_000)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--reactions", type=int, default=1_000_000, help="likes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the four counts")
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", default=None, help="keep the built store in DIR, reuse it")
    parser.add_argument("--profile", action="store_true", help="profile the slowest viewer")
    args = parser.parse_args(argv)
    for name in ("accounts", "follows", "videos", "reactions"):
        setattr(args, name, round(getattr(args, name) * args.scale))
    if (
        min(args.accounts, args.events) < 2
        or min(args.follows, args.videos, args.reactions, args.viewers) < 1
    ):
        parser.error("at least 2 accounts and 2 events, and 1 follow, video, like and viewer")
    if args.follows > args.accounts * (args.accounts - 1) // 2:
        parser.error("--follows: too many for --accounts")
    result = measured("feed", args, measure)
    report(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
