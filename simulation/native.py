"""The simulator's hot modules, compiled to C with mypyc (shipped with mypy).

``engine``, ``network`` and ``gossip`` carry nearly every event of a run. mypyc turns
them, unchanged, into extension modules that sit beside their sources and that Python
then imports instead; the pure modules stay the reference, and a run gives the same
output either way (tests/test_sim_native.py). ``make`` builds them where a C compiler
and Python's headers are present (``python -m simulation.native build``); without
them the simulator runs as plain Python, about half as fast.

A build records each source's hash in ``native.json``: ``simulation/__init__.py``
imports the pure modules when a compiled one no longer matches its source, so an edit
is never shadowed by a stale build (``make native`` brings the speed back), and with
``TOKTOK_SIM_PURE=1`` even when they match.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

HOT_MODULES = ("engine", "network", "gossip")
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "native.json"
PURE_ENV = "TOKTOK_SIM_PURE"
# The modules' shared runtime is the extension simulation/_native__mypyc: inside the
# package, so that it imports wherever the package does (an editable install too).
GROUP = "_native"
BUILD_SCRIPT = f"""
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="toktok-simulation-native",
    ext_modules=mypycify({{sources!r}}, opt_level="3", group_name="simulation.{GROUP}"),
    script_args=["build_ext", "--inplace", "--build-temp", "build/native"],
)
"""


def source_hash(name: str) -> str:
    """SHA-256 of the source of hot module ``name``."""
    return hashlib.sha256((PACKAGE_DIR / f"{name}.py").read_bytes()).hexdigest()


def compiled_files(name: str) -> list[Path]:
    """The extension modules built for ``name`` (none before a build)."""
    return sorted(PACKAGE_DIR.glob(f"{name}.*.so"))


def stale_modules() -> list[str]:
    """Hot modules whose compiled form no longer matches their source."""
    try:
        recorded = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        recorded = {}
    return [
        name
        for name in HOT_MODULES
        if compiled_files(name) and recorded.get(name) != source_hash(name)
    ]


def clean() -> None:
    """Remove every compiled hot module and the manifest."""
    for name in HOT_MODULES:
        for path in compiled_files(name):
            path.unlink()
    for path in PACKAGE_DIR.glob(f"{GROUP}__mypyc.*.so"):
        path.unlink()  # the runtime mypyc shares between the modules of one build
    MANIFEST.unlink(missing_ok=True)


def build() -> int:
    """Compile the hot modules in place; 0 on success, else mypyc's exit status."""
    clean()
    root = PACKAGE_DIR.parent
    sources = [f"simulation/{name}.py" for name in HOT_MODULES]
    script = BUILD_SCRIPT.replace("{sources!r}", repr(sources))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, check=False, stdout=subprocess.DEVNULL
    )
    if done.returncode != 0:
        clean()
        return done.returncode
    MANIFEST.write_text(json.dumps({name: source_hash(name) for name in HOT_MODULES}) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["build"]:
        status = build()
        if status:
            print(
                "simulation: native build failed; the simulator runs as plain Python",
                file=sys.stderr,
            )
        return 0
    if argv == ["clean"]:
        clean()
        return 0
    print("usage: python simulation/native.py build|clean", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
