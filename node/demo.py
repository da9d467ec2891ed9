"""``make demo``: a fresh node home, a sample video published, shown, exported and verified.

Until the network lands this shows the single-node half: ingest, signed manifest, chunk
store, export and integrity check, all through the ``toktok`` command.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from node.cli import main as toktok

DEMO_PASSPHRASE = "demo passphrase"
DEMO_MARKER = ".toktok-demo"
"""A file the demo writes into its home, so a later run knows the directory is its own."""


class NotADemoHome(Exception):
    """The demo was pointed at a path it did not create, and will not delete."""


def fresh_home(path: Path) -> None:
    """Make `path` an empty demo home holding only the marker, deleting an earlier one.

    A directory is deleted only if an earlier run marked it: `make demo HOME_DEMO=~` must
    not wipe a home directory. Raises NotADemoHome for anything else at `path` (an empty
    directory is used as it is).
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise NotADemoHome(f"{path} is not a plain directory; choose another --home")
    if path.is_dir():
        if (path / DEMO_MARKER).is_file():
            shutil.rmtree(path)
        elif any(path.iterdir()):
            raise NotADemoHome(
                f"refusing to delete {path}: it has no {DEMO_MARKER} file, so the demo did "
                "not create it; choose another --home, or delete it yourself"
            )
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text("made by 'make demo'; deleted by its next run\n")


def run(*argv: str) -> None:
    print(f"\n$ toktok {' '.join(argv)}", flush=True)
    status = toktok(list(argv))
    if status != 0:
        sys.exit(f"demo step failed with status {status}: toktok {' '.join(argv)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(".demo-home"))
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    try:
        fresh_home(args.home)
    except (NotADemoHome, OSError) as exc:
        sys.exit(f"demo: {exc}")
    os.environ.setdefault("TOKTOK_PASSPHRASE", DEMO_PASSPHRASE)
    home = str(args.home / "node")
    sample = str(args.home / "sample.mp4")
    exported = str(args.home / "exported-360p.mp4")
    run("--home", home, "init", "--name", "creator")
    run("--home", home, "sample", sample, "--seconds", str(args.seconds), "--height", "720")
    run("--home", home, "publish", sample, "--title", "A first toktok", "--tag", "demo")
    run("--home", home, "videos")
    video_id = _latest_id(home)
    run("--home", home, "show", video_id)
    run("--home", home, "export", video_id, exported, "--rendition", "360p")
    run("--home", home, "verify")
    print(f"\ndemo home: {args.home.resolve()} (exported video: {exported})")


def _latest_id(home: str) -> str:
    from node.home import Home

    with Home(Path(home)).open() as stores:
        latest = stores.manifests.recent(limit=1)
    if not latest:
        sys.exit("demo: the published video is missing")
    return latest[0].id.hex()


if __name__ == "__main__":
    main()
