"""A small network whose node B serves the web app and holds none of a video's chunks.

Node A publishes the video; C joins and seeds it (placement, ``replicas = 1``, leaves out
the creator's node); B, whose node key is drawn to rank below A's and C's for the video,
joins through both, serves the web app (``--http``) and holds only the manifest, so a
browser's first play makes B fetch the chunks from the network on demand. Used by
tests/test_web_browser.py and bench/webrtc.py.
"""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cli_helpers import toktok
from tests.netharness import (
    NodeProc,
    fetcher_home,
    init_home,
    node_peer_id,
    start_node,
    stop_all,
    wait_for,
)


@dataclass
class WebNet:
    a: NodeProc
    b: NodeProc
    c: NodeProc
    video: str
    """The id of the video A published."""

    @property
    def base(self) -> str:
        """B's web address, without the sign-in fragment."""
        assert self.b.web is not None, "B runs with --http"
        return self.b.web.split("#", 1)[0]

    def api(self, path: str) -> Any:
        """B's JSON reply to ``GET path``; raises OSError when B answers an error."""
        try:
            with urllib.request.urlopen(self.base + path.lstrip("/"), timeout=10) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection's socket
            raise


@contextmanager
def web_network(root: Path, sample: Path, **b_settings: Any) -> Iterator[WebNet]:
    """A, C and B (node.toml ``b_settings`` on top) up, B holding the manifest; all
    stopped at the end."""
    nodes: list[NodeProc] = []
    try:
        a = start_node(init_home(root / "a", replicas=1), role="bootstrap")
        nodes.append(a)
        out = toktok(a.home, "publish", str(sample), "--title", "web test")
        video = out.stdout.strip().splitlines()[-1]
        c = start_node(init_home(root / "c", replicas=1), bootstrap=[a.addr])
        nodes.append(c)
        # B decides whether to seed when the manifest reaches it, among the peers it knows
        # then less the one that gossiped it: it joins through both, and its key ranks below
        # both A's and C's.
        seeders = [node_peer_id(a.home), node_peer_id(c.home)]
        b_home = fetcher_home(root / "b", bytes.fromhex(video), seeders, **b_settings)
        b = start_node(b_home, bootstrap=[a.addr, c.addr], extra=["--http", "127.0.0.1:0"])
        nodes.append(b)
        net = WebNet(a, b, c, video)
        wait_for(lambda: net.api(f"/api/videos/{video}"), timeout_s=30, what="the manifest on B")
        yield net
    finally:
        stop_all(nodes)
