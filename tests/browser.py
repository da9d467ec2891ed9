"""Debian's chromium, headless, driven by Playwright for Python (never its own browsers).

Used by the browser tests and bench/webrtc.py. The flags: no sandbox (we run as root in
CI), nothing that reaches outside the machine, and the two that let WebRTC connect over
loopback (docs/api.md, "Streaming").
"""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path(os.environ.get("TOKTOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium, closed on the way out."""
    if not CHROMIUM.exists():
        raise AssertionError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def player_state(page: Page) -> dict[str, Any]:
    """The web app's ``window.toktok.player`` (docs/api.md), or {} before there is one."""
    state: dict[str, Any] | None = page.evaluate(
        "() => window.toktok && window.toktok.player || null"
    )
    return state or {}


def until(
    page: Page, script: str, what: str, *, timeout_s: float = 60.0, poll_ms: float = 50
) -> Any:
    """Poll ``script`` (a function expression) in the page until it returns something true;
    return that. The app's CSP forbids eval, so Playwright's wait_for_function cannot be
    used. Raises AssertionError, with the player's state, at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        page.wait_for_timeout(poll_ms)
    raise AssertionError(f"timed out waiting for {what}: {player_state(page)}")
