"""Video to the browser over WebRTC: first frame, seek, data-channel rate, viewers per node.

Run from the repository root: ``.venv/bin/python bench/webrtc.py [--rounds 5]``.

Three nodes on 127.0.0.1, as in tests/test_web_browser.py: A publishes a sample video
(``--seconds`` s, 720p, so 360p and 720p renditions), C seeds it, and B serves the web app
(``--http``) holding only the manifest at first (``replicas = 1`` and a node key that ranks
below C's). Debian's chromium, headless, driven by Playwright, is the browser.

- **First frame from a click** (the goal: <= 500 ms): the feed page is open, the bench
  clicks the video's item; from the click to the first frame presented
  (``requestVideoFrameCallback``), both as the page measures them
  (``window.toktok.player.marks``). The first round is cold: B fetches the chunks from
  the network on demand; later rounds are warm (held), reported apart.
- **First frame from page load**: the watch page opened by address; from navigation start
  to the first frame.
- **Seek latency** (goal: <= 300 ms): while playing, ``currentTime`` is set to points
  spread over the video; from the seek to the first frame after it.
- **Data-channel MB/s**: one connection fetches every chunk of the video five times over,
  4 in flight, without decoding (bench/webrtc_viewers.js); bytes over time from the first
  request (the connection is up), median of ``--passes``.
- **Concurrent viewers** (goal: >= 50): N simulated players on N peer connections in one
  page, joining ``--arrivals-per-s`` a second (10: fifty viewers arrive over 5 s), each
  draining its buffer at ``--bits-per-s`` (2 Mbit/s) for ``--viewer-seconds`` (30) and
  asking for the next chunk of the 720p rendition while it holds under 10 s ahead; it
  starts playing at 2 s buffered, as the web app does after its first segment. A stall is
  a buffer running dry while playing. N rises through ``--viewers``; the figure is the largest N
  with no stall and no error. B's CPU over each step, per viewer, is reported (cores used
  divided by N), beside what the whole machine used meanwhile (chromium runs the viewers
  on the same two cores).

Figures are medians over the rounds; MB is 10**6 bytes. Every process is stopped at the
end, on errors and on Ctrl-C too. The last line printed is one JSON object.
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root
# first, so that ``node`` and ``tests`` are the packages of this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Page
from rich.progress import Progress

from bench.idle import cpu_seconds, machine_cpu_s, measured
from node.config import WebConfig
from protocol.cid import cid_from_text
from tests.browser import chromium, player_state, until
from tests.cli_helpers import toktok
from tests.webnet import WebNet, web_network

VIEWERS_JS = Path(__file__).with_name("webrtc_viewers.js")
PAGE_TIMEOUT_S = 60.0
THROUGHPUT_REPEATS = 5


@contextmanager
def network(folder: Path, args: argparse.Namespace, bar: Progress) -> Iterator[WebNet]:
    sample = folder / "sample.mp4"
    task = bar.add_task("sample video and nodes", total=None)
    toktok(folder / "unused", "sample", str(sample), "--seconds", str(args.seconds))
    # Every viewer of the bench comes from one page, so from one client address.
    web = WebConfig(peer_connections_max=256, peer_connections_per_client_max=256)
    with web_network(folder, sample, web=web) as net:
        bar.update(task, total=1, completed=1)
        yield net


def marks(page: Page) -> dict[str, float | None]:
    value: dict[str, float | None] = player_state(page)["marks"]
    return value


def first_frames(net: WebNet, page: Page, rounds: int, bar: Progress) -> dict[str, Any]:
    task = bar.add_task("first frame (click, load) and seeks", total=rounds)
    click_ms: list[float] = []
    load_ms: list[float] = []
    seek_ms: list[float] = []
    duration_s = net.api(f"/api/videos/{net.video}")["video"]["duration_ms"] / 1000
    for _ in range(rounds):
        page.goto(net.base + "#/feed")
        page.reload()
        item = page.locator(f'[data-testid="feed-item"][data-video="{net.video}"]')
        item.first.click()
        until(page, "() => window.toktok?.player?.marks?.firstFrame", "the first frame")
        m = marks(page)
        assert m["click"] is not None and m["firstFrame"] is not None
        click_ms.append(m["firstFrame"] - m["click"])
        for fraction in (0.3, 0.7, 0.5):
            page.evaluate(
                f"() => {{ document.querySelector('video').currentTime = {duration_s * fraction} }}"
            )
            until(page, "() => window.toktok.player.marks.seeked", "playback after a seek")
            m = marks(page)
            assert m["seeked"] is not None and m["seekStart"] is not None
            seek_ms.append(m["seeked"] - m["seekStart"])
        # From page load: the watch page by its address, navigation start to first frame.
        page.goto("about:blank")
        page.goto(net.base + f"#/watch/{net.video}")
        until(page, "() => window.toktok?.player?.marks?.firstFrame", "the first frame")
        first = marks(page)["firstFrame"]
        assert first is not None
        load_ms.append(first)
        bar.advance(task)
    return {
        "first_frame_from_click_ms_cold": round(click_ms[0], 1),
        "first_frame_from_click_ms": _median(click_ms[1:] or click_ms),
        "first_frame_from_load_ms": _median(load_ms),
        "seek_ms": _median(seek_ms),
        "seek_ms_max": round(max(seek_ms), 1),
        "rounds": rounds,
    }


def chunk_cids(net: WebNet, rendition: str | None = None) -> tuple[list[str], int]:
    """The video's chunk cids in hex (one rendition, or all) and their total bytes."""
    video = net.api(f"/api/videos/{net.video}")["video"]
    cids: list[str] = []
    total = 0
    for r in video["renditions"]:
        if rendition is not None and r["name"] != rendition:
            continue
        for ref in [r["init"], *r["segments"]]:
            cids.append(cid_from_text(ref["cid"]).hex())
            total += ref["size"]
    return cids, total


def throughput(net: WebNet, page: Page, passes: int, bar: Progress) -> dict[str, Any]:
    task = bar.add_task("data channel MB/s", total=passes)
    cids, total = chunk_cids(net)
    # The video several times over: long enough that the channel's ramp-up counts little.
    cids, total = cids * THROUGHPUT_REPEATS, total * THROUGHPUT_REPEATS
    rates = []
    for _ in range(passes):
        result = page.evaluate(
            "(a) => window.toktokBench.throughput(a)",
            {"video": net.video, "cids": cids, "inFlight": 4},
        )
        assert result["bytes"] == total, (result, total)
        rates.append(result["bytes"] / result["ms"] / 1000)
        bar.advance(task)
    return {"datachannel_mb_per_s": _median(rates), "datachannel_bytes": total}


def viewers(net: WebNet, page: Page, args: argparse.Namespace, bar: Progress) -> dict[str, Any]:
    counts = [int(n) for n in args.viewers.split(",")]
    task = bar.add_task("concurrent viewers", total=len(counts))
    cids, _ = chunk_cids(net, "720p")
    steps = []
    held = 0
    for count in counts:
        cpu0, machine0, t0 = cpu_seconds(net.b.proc.pid), machine_cpu_s(), time.monotonic()
        results = page.evaluate(
            "(a) => window.toktokBench.viewers(a)",
            {
                "video": net.video,
                "cids": cids,
                "count": count,
                "arrivalsPerS": args.arrivals_per_s,
                "seconds": args.viewer_seconds,
                "bitsPerS": args.bits_per_s,
                "bufferS": 10,
                "startS": 2,
            },
        )
        wall = time.monotonic() - t0
        node_cores = (cpu_seconds(net.b.proc.pid) - cpu0) / wall
        machine_cores = (machine_cpu_s() - machine0) / wall
        stalls = sum(r["stalls"] for r in results)
        errors = [r["error"] for r in results if r["error"]]
        step = {
            "viewers": count,
            "stalls": stalls,
            "stall_ms": round(sum(r["stallMs"] for r in results), 1),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "start_ms_p50": _median([r["startMs"] for r in results if r["startMs"] is not None]),
            "node_cpu_cores": round(node_cores, 2),
            "node_cpu_per_viewer": round(node_cores / count, 4),
            "machine_cpu_cores": round(machine_cores, 2),
            "mbit_per_s_delivered": round(sum(r["bytes"] for r in results) * 8 / wall / 1e6, 1),
        }
        steps.append(step)
        bar.advance(task)
        if stalls or errors:
            break
        held = count
    ok = [s for s in steps if s["viewers"] == held]
    return {
        "viewers_without_stalls": held,
        "node_cpu_per_viewer": ok[0]["node_cpu_per_viewer"] if ok else None,
        "viewer_steps": steps,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def measure(args: argparse.Namespace, folder: Path, bar: Progress) -> dict[str, Any]:
    with network(folder, args, bar) as net, chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        page.goto(net.b.web or "")
        page.locator('[data-testid="signin-state"]').filter(has_text="signed in").wait_for()
        frames = first_frames(net, page, args.rounds, bar)
        page.goto(net.base + "#/node")
        # Through the debugging protocol: the page's CSP refuses inline scripts.
        page.evaluate(VIEWERS_JS.read_text())
        rate = throughput(net, page, args.passes, bar)
        load = viewers(net, page, args, bar)
        rtc = net.api("/api/node")["rtc"]
    return {
        **frames,
        **rate,
        **load,
        "bits_per_s_per_viewer": args.bits_per_s,
        "rtc": {k: v for k, v in rtc.items() if k != "limits"},
        "goals": {
            "first_frame_from_click_ms": 500,
            "seek_ms": 300,
            "viewers_without_stalls": 50,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of the sample video")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--viewers", default="10,25,50,75,100", help="steps of viewers")
    parser.add_argument("--viewer-seconds", type=float, default=30.0, help="each viewer's")
    parser.add_argument("--arrivals-per-s", type=float, default=10.0, help="viewers joining")
    parser.add_argument("--bits-per-s", type=int, default=2_000_000)
    args = parser.parse_args()
    result = measured("webrtc", args, measure)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
