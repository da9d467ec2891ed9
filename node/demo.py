"""``make demo``: a local network of four nodes with a sample video, until Ctrl-C.

It runs ``toktok devnet --nodes 4 --sample`` (node/devnet.py) in a fresh demo home: n1 is
the bootstrap node and publishes a 10 s sample video, n2 to n4 join through it, learn of
each other by peer exchange and receive the manifest by gossip; placement then has them
seed the video. Once the network is up the demo shows, through the nodes' control
interfaces (a running node holds its store, so nothing else opens it), what n2 is
connected to, n3 fetching the video and what n3 then holds, n3 tipping the creator in
platform tokens (n1 to n4 are the ledger's validators), and prints what to try and how to
stop. n4 serves the web app (``--http``, default 127.0.0.1:8080): the demo prints its
sign-in address, to open in a browser.

The demo home (default ``.demo-home``) is deleted and made again on every run, but only
when an earlier run marked it as its own (:data:`DEMO_MARKER`): ``make demo
HOME_DEMO=~`` must not wipe a home directory. The homes stay after Ctrl-C, for
``toktok --home .demo-home/devnet/n2 videos`` and the like; ``make clean`` deletes them.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from node import devnet
from node.cli import main as toktok
from node.home import PASSPHRASE_ENV

DEMO_MARKER = ".toktok-demo"
"""A file the demo writes into its home, so a later run knows the directory is its own."""
DEMO_NODES = 4
DEMO_HTTP = "127.0.0.1:8080"
"""Where the last node of the demo serves the web app."""
DEVNET_DIR = "devnet"


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


def show(*argv: str) -> None:
    """Run one toktok command in this process, echoed as a user would type it."""
    print(f"\n$ {devnet.toktok_command()} {' '.join(argv)}", flush=True)
    status = toktok(list(argv))
    if status != 0:
        print(f"(exit status {status})", flush=True)


def tour(nodes: list[devnet.DevnetNode], video: str | None) -> None:
    """What the demo shows once the network is up: n2's peers, then n3 downloads the video
    from the others and lists what it holds, tips its creator (a ledger transfer that the
    validators n1 to n4 certify) and shows the creator's balance and n3's history."""
    first, second, third = (str(devnet.relative(n.home)) for n in nodes[:3])
    show("--home", second, "peers")
    if video is not None:
        show("--home", third, "fetch", video[:16])
    show("--home", third, "videos")
    if video is not None:
        # In-process commands read the passphrase from the environment, as devnet's nodes.
        os.environ.setdefault(PASSPHRASE_ENV, devnet.DEVNET_PASSPHRASE)
        show("--home", third, "tip", video[:16], "2500000")
        show("--home", first, "balance")
        show("--home", third, "history", "--limit", "3")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path(".demo-home"))
    parser.add_argument("--http", default=DEMO_HTTP, help="where the web app listens")
    args = parser.parse_args()
    try:
        fresh_home(args.home)
    except (NotADemoHome, OSError) as exc:
        sys.exit(f"demo: {exc}")
    options = devnet.DevnetOptions(
        nodes=DEMO_NODES,
        directory=args.home / DEVNET_DIR,
        sample=True,
        passphrase=devnet.passphrase_from_env(),
        json_lines=False,
        http=args.http,
    )
    try:
        status = devnet.run(options, on_ready=tour)
    except devnet.DevnetError as exc:
        sys.exit(f"demo: {exc}")
    homes = devnet.relative(args.home / DEVNET_DIR)
    print(
        f"\nThe node homes stay in {homes}: 'toktok --home {homes}/n2 videos' reads one "
        "offline; 'make demo' starts afresh, 'make clean' deletes them.",
        file=sys.stderr,
    )
    sys.exit(status)


if __name__ == "__main__":
    main()
