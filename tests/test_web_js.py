"""The web app's JavaScript, tested by node: ``tests/web/*.test.mjs`` (node:test).

They check the page's own canonical msgpack decoder, envelope and chunk verification
against the protocol vectors, the data-channel segment protocol, and that the static
files need nothing the page's Content-Security-Policy forbids. Each file runs as
``node tests/web/<file>``, which exits non-zero when a test fails. ``make test`` installs
node, so nothing here is skipped: a machine without it fails.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB_TESTS = sorted((ROOT / "tests" / "web").glob("*.test.mjs"))
RUN_TIMEOUT_S = 120
"""A bound on one file's run, so that a hang fails the test instead of the whole suite."""


def test_web_tests_exist() -> None:
    names = {p.name for p in WEB_TESTS}
    assert {"msgpack.test.mjs", "verify.test.mjs", "stream.test.mjs", "static.test.mjs"} <= names


@pytest.mark.parametrize("path", WEB_TESTS, ids=[p.name for p in WEB_TESTS])
def test_web_js(path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: install it (make test does)"
    run = subprocess.run(
        [node, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, f"{path.name} failed:\n{run.stdout}\n{run.stderr}"
