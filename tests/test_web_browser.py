"""The web app end to end in a real browser: Debian's chromium, headless, on a small network.

Node A publishes a video; node B, which serves the web app (``--http``), holds only its
manifest (``replicas = 1``: placement picks a third node, C, to seed it), so the first
play fetches the chunks from the network on demand. The page signs in with the address B
printed, opens the feed, plays the video (the chunks verified in the page against the
signed manifest), seeks to the middle, likes it and follows its creator from the page;
the test reads B's state to see both. Then a page whose data channel flips a byte of a
segment, and one whose envelope is altered, must refuse to play.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium, player_state, until
from tests.cli_helpers import toktok
from tests.netharness import wait_for
from tests.webnet import WebNet, web_network

GUARD_S = 60
SECONDS = 12


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web") / "sample.mp4"
    toktok(
        path.parent / "unused", "sample", str(path), "--seconds", str(SECONDS), "--height", "360"
    )
    return path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, sample: Path) -> Iterator[WebNet]:
    with web_network(tmp_path_factory.mktemp("webnet"), sample) as net:
        yield net


def _api(net: WebNet, path: str) -> Any:
    try:
        return net.api(path)
    except OSError:
        return None


def test_watch_seek_like_and_follow_in_chromium(net: WebNet, tmp_path: Path) -> None:
    b, video = net.b, net.video
    creator = _api(net, f"/api/videos/{video}")["video"]["author"]
    with chromium() as browser:
        page = browser.new_page()
        page.goto(b.web or "")
        page.locator('[data-testid="signin-state"]').filter(has_text="signed in").wait_for()
        assert "#signin" not in page.url  # the token left the address bar
        page.goto(net.base + "#/feed")
        item = page.locator(f'[data-testid="feed-item"][data-video="{video}"]')
        item.first.click()
        until(page, "() => document.querySelector('video').currentTime > 1", "playback")
        state = player_state(page)
        assert state["video"] == video and not state["errors"]
        assert state["marks"]["click"] is not None and state["marks"]["firstFrame"] is not None

        # Seek to the middle: playback goes on from there.
        middle = SECONDS / 2
        page.evaluate(f"() => {{ document.querySelector('video').currentTime = {middle} }}")
        until(
            page,
            f"() => document.querySelector('video').currentTime > {middle + 1}",
            "playback after the seek",
        )
        assert player_state(page)["marks"]["seeked"] is not None

        page.locator('[data-testid="like-button"]').click()
        wait_for(
            lambda: (_api(net, f"/api/videos/{video}") or {}).get("liked"),
            timeout_s=20,
            what="the like in B's state",
        )
        page.locator('[data-testid="follow-button"]').click()
        wait_for(
            lambda: creator in b.call("following")["following"],
            timeout_s=20,
            what="the follow in B's state",
        )
        # Back on the feed, the video is in the ranked part now, with why it is there.
        page.goto(net.base + "#/feed")
        reasons = page.locator(f'[data-testid="feed-item"][data-video="{video}"] .reasons')
        reasons.filter(has_text="you follow the creator").wait_for(timeout=GUARD_S * 1000)
        page.go_back()
        until(page, "() => document.querySelector('video')?.currentTime > 0", "playback again")
        shot = tmp_path / "watch.png"
        page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # B held no chunk of the video: what played, it fetched from A on demand.
        node = _api(net, "/api/node") or {}
        seeded = net.b.status()["seeded"]  # placement had B seed it: the set-up went wrong
        assert node["segments"]["downloads_started"] >= 1, f"B seeded {seeded} videos"
        page.close()


# Flips the last byte of the first frame of the second chunk the page asks for (the first
# media segment; the first is the init segment), in place, before the player sees it.
TAMPER_SEGMENT = """
(() => {
  const create = RTCPeerConnection.prototype.createDataChannel
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args)
    const seen = []
    channel.addEventListener('message', (event) => {
      if (typeof event.data === 'string') return
      const bytes = new Uint8Array(event.data)
      const id = new DataView(event.data).getUint32(0)
      if (!seen.includes(id)) {
        seen.push(id)
        if (seen.length === 2) bytes[bytes.length - 1] ^= 0xff
      }
    })
    return channel
  }
})()
"""


def test_page_refuses_a_tampered_segment(net: WebNet) -> None:
    video = net.video
    with chromium() as browser:
        page = browser.new_page()
        page.add_init_script(TAMPER_SEGMENT)
        page.goto(net.base + f"#/watch/{video}")
        error = page.locator('[data-testid="player-error"]')
        error.filter(has_text="failed verification").wait_for(timeout=GUARD_S * 1000)
        state = player_state(page)
        assert any("failed verification" in e for e in state["errors"])
        assert state["appended"] == 0
        assert page.evaluate("() => document.querySelector('video').currentTime") == 0
        page.close()


def test_page_refuses_an_altered_envelope(net: WebNet) -> None:
    video = net.video
    with chromium() as browser:
        page = browser.new_page()

        def alter(route: Any) -> None:
            body = bytearray(route.fetch().body())
            body[-1] ^= 0x01
            route.fulfill(status=200, body=bytes(body), content_type="application/octet-stream")

        page.route(f"**/api/videos/{video}/envelope", alter)
        page.goto(net.base + f"#/watch/{video}")
        error = page.locator('[data-testid="player-error"]')
        error.filter(has_text="failed verification").wait_for(timeout=GUARD_S * 1000)
        assert player_state(page).get("appended", 0) == 0
        page.close()


def test_upload_from_the_page(net: WebNet, sample: Path) -> None:
    """The file goes up in pieces with a progress bar, ingest runs on B, and the new video
    is B's own: listed, and playable from the link the page gives."""
    b = net.b
    with chromium() as browser:
        page = browser.new_page()
        page.goto(b.web or "")
        page.locator('[data-testid="signin-state"]').filter(has_text="signed in").wait_for()
        page.goto(net.base + "#/upload")
        page.locator('[data-testid="upload-file"]').set_input_files(str(sample))
        page.locator('[data-testid="upload-title"]').fill("uploaded from chromium")
        page.locator('[data-testid="upload-button"]').click()
        link = page.locator('[data-testid="upload-link"]')
        link.wait_for(timeout=GUARD_S * 1000)
        assert (
            page.evaluate("() => document.querySelector('[data-testid=upload-progress]').value")
            == 1
        )
        video = link.get_attribute("href").rsplit("/", 1)[-1]  # type: ignore[union-attr]
        listed = _api(net, f"/api/videos/{video}") or {}
        assert listed["video"]["title"] == "uploaded from chromium"
        link.click()
        until(page, "() => document.querySelector('video').currentTime > 1", "playback")
        assert not player_state(page)["errors"]
        page.close()
