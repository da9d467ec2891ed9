"""The ``toktok`` command."""

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from importlib.metadata import entry_points
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from node import clinode, devnet
from node.clinode import RemoteError, add_run_flags, call, require_node, running_node
from node.config import NodeConfig, write_config
from node.home import PASSPHRASE_ENV, Home, HomeError, default_account, unlock_account
from node.logs import setup_logging
from node.progress import progress_bar as shared_progress_bar
from node.publish import PublishMeta, follow_message, publish_file
from node.render import duration_text, held_video_json, manifest_json, total_bytes
from node.video import VideoError, export, write_sample
from protocol.accounts import InvalidAccount, account_from_text, account_to_text
from protocol.cid import cid_to_text
from protocol.envelope import SignedMessage
from protocol.errors import ProtocolError
from storage.errors import DamagedRecord, StoreError
from storage.kv import Batch
from storage.manifests import StoredManifest, manifest_chunks
from storage.stores import Stores

COMMANDS_GROUP = "toktok.commands"
HOME_ENV = "TOKTOK_HOME"
PASSPHRASE_LEN_MIN = 8

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A failure to report to the user as one line, with exit status 2."""


def say(*parts: str | tuple[str, str]) -> None:
    """Print one line of literal text; a ``(text, style)`` part is styled.

    Titles, tags and names come from peers: printed as markup, ``[/]`` in a title would
    raise and ``[red]`` would restyle the output. ``Text`` is never parsed for markup.
    """
    out.print(Text.assemble(*parts))


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def os_error_text(exc: OSError) -> str:
    """One line for a failed file operation: the path and the system's reason."""
    if exc.strerror is None or exc.filename is None:
        return " ".join(str(exc).split())
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {exc.strerror}"
    return f"{exc.filename}: {exc.strerror}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def read_passphrase(*, confirm: bool) -> str:
    """The passphrase from $TOKTOK_PASSPHRASE, or asked on the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise CliError(f"no terminal to ask for the passphrase: set {PASSPHRASE_ENV}")
        value = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("passphrase again: ") != value:
            raise CliError("the two passphrases differ")
    if confirm and len(value) < PASSPHRASE_LEN_MIN:
        raise CliError(f"a passphrase needs at least {PASSPHRASE_LEN_MIN} characters")
    return value


def progress_bar() -> AbstractContextManager[Callable[[str, float], None]]:
    """The progress bar of this command's long work, on stderr."""
    return shared_progress_bar(err)


# ------------------------------------------------------------------------------ commands


def log_own(stores: Stores, message: SignedMessage) -> None:
    """Add a message made here to the message log, which the node syncs to its peers."""
    batch = Batch()
    if stores.messages.stage(batch, message):
        stores.kv.write(batch)


def cmd_init(args: argparse.Namespace) -> int:
    home = Home(args.home)
    passphrase = read_passphrase(confirm=True)
    key = home.init(account_name=args.name, passphrase=passphrase)
    write_config(home.path, NodeConfig())
    say(f"initialised {home.path}")
    say(f"account {args.name}: {key.account_id}")
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    with Home(args.home).open() as stores:
        name, public_key = default_account(stores)
    say(f"{name} {account_to_text(public_key)}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    try:
        with progress_bar() as update:
            write_sample(
                args.out,
                seconds=args.seconds,
                height=args.height,
                progress=lambda fraction: update("encode", fraction),
            )
    except OSError as exc:
        # FFmpeg opens the output when the first packet is written, and its error then
        # names no file: name it here.
        if exc.filename is not None:
            raise
        raise CliError(f"{args.out}: {exc.strerror or exc}") from exc
    say(str(args.out))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    meta = PublishMeta(
        title=args.title,
        description=args.description,
        tags=tuple(args.tag),
        license=args.license,
    )
    if not args.file.is_file():
        raise CliError(f"{args.file}: no such file")
    client = running_node(args.home)
    if client is not None:
        with progress_bar() as update:
            result = clinode.stream(
                client,
                "publish",
                update,
                file=str(args.file.resolve()),
                title=meta.title,
                description=meta.description,
                tags=list(meta.tags),
                license=meta.license,
                as_account=args.account,
                passphrase=read_passphrase(confirm=False),
            )
        if args.json:
            out.print_json(json.dumps(result["video"]))
        print(result["id"])
        return 0
    with Home(args.home).open() as stores:
        key = unlock_account(stores, read_passphrase(confirm=False), args.account)
        with progress_bar() as update:
            message = publish_file(stores, key, args.file, meta, now_ms=now_ms(), progress=update)
        log_own(stores, message)
    if args.json:
        out.print_json(json.dumps(manifest_json(StoredManifest(message))))
    print(message.id.hex())
    return 0


def _find(stores: Stores, text: str) -> StoredManifest:
    try:
        mid = stores.manifests.resolve(text)
    except KeyError as exc:
        raise CliError(exc.args[0]) from exc
    stored = stores.manifests.get(mid)
    if stored is None:
        raise CliError(f"no stored video with id {text}")
    return stored


def cmd_show(args: argparse.Namespace) -> int:
    with Home(args.home).open() as stores:
        stored = _find(stores, args.id)
        data = manifest_json(stored)
    if args.json:
        out.print_json(json.dumps(data))
        return 0
    m = stored.manifest
    say((m.title, "bold"), f"  ({duration_text(m.duration_ms)})")
    say(f"id        {data['id']}")
    say(f"creator   {data['author']}")
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.created_ms / 1000))
    say(f"created   {created} UTC")
    if m.tags:
        say("tags      " + " ".join(f"#{t}" for t in m.tags))
    say(f"source    sha256 {data['source_sha256']} ({m.source_size} bytes)")
    say(f"thumbnail {data['thumbnail']['cid']}")
    for r in m.renditions:
        say(
            f"rendition {r.name}: {r.width}x{r.height} {r.codecs}, "
            f"{len(r.segments)} segments, {r.bandwidth // 1000} kbit/s peak"
        )
    say(f"size      {total_bytes(m)} bytes in {len(set(manifest_chunks(m)))} chunks")
    return 0


def cmd_videos(args: argparse.Namespace) -> int:
    client = running_node(args.home)
    if client is not None:
        videos = call(client, "videos", limit=args.limit)["videos"]
    else:
        with Home(args.home).open() as stores:
            recent = stores.manifests.recent(limit=args.limit)
            videos = [held_video_json(stored, stores.manifests) for stored in recent]
    if args.json:
        out.print_json(json.dumps(videos))
        return 0
    if not videos:
        say("no videos stored yet: 'toktok publish FILE --title T' adds one")
        return 0
    table = Table("id", "title", "creator", "length", "created (UTC)", "held")
    for v in videos:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(v["created_ms"] / 1000))
        table.add_row(
            v["id"][:16],
            Text(v["title"]),
            v["author"][:10] + "…" + v["author"][-4:],
            duration_text(v["duration_ms"]),
            created,
            f"{v['chunks_held']}/{v['chunks']}",
        )
    out.print(table)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    client = require_node(args.home)
    with progress_bar() as update:
        result = clinode.stream(client, "fetch", update, id=args.id)
    say(f"fetched {result['id']}: {result['chunks_held']} chunks held")
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    result = call(require_node(args.home), "peers")
    if args.json:
        out.print_json(json.dumps(result))
        return 0
    for peer in result["peers"]:
        say(peer["peer_id"], "  ", " ".join(peer["addrs"][:2]))
    say(f"{len(result['peers'])} connected, {result['known']} known")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    result = call(require_node(args.home), "status")
    out.print_json(json.dumps(result))
    return 0


def cmd_devnet(args: argparse.Namespace) -> int:
    options = devnet.DevnetOptions(
        nodes=args.nodes,
        directory=args.dir,
        base_port=args.base_port,
        sample=args.sample,
        validators=args.validators,
        passphrase=os.environ.get(PASSPHRASE_ENV),
        log_level=args.log_level,
        http=args.http,
    )
    try:
        return devnet.run(options)
    except devnet.DevnetError as exc:
        raise CliError(str(exc)) from exc


def cmd_export(args: argparse.Namespace) -> int:
    with Home(args.home).open() as stores:
        m = _find(stores, args.id).manifest
        names = [r.name for r in m.renditions]
        chosen = args.rendition or max(m.renditions, key=lambda r: r.height).name
        rendition = next((r for r in m.renditions if r.name == chosen), None)
        if rendition is None:
            raise CliError(f"no rendition {chosen!r}; this video has {', '.join(names)}")
        init = stores.chunks.get(rendition.init.cid)
        segments = (stores.chunks.get(s.cid) for s in rendition.segments)
        export(init, segments, args.out)
    say(f"wrote {args.out} ({rendition.name}, {duration_text(m.duration_ms)})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    problems: list[str] = []
    with Home(args.home).open() as stores, progress_bar() as update:
        total = max(stores.chunks.count, 1)
        checked = 0
        for cid, intact in stores.chunks.verify():
            checked += 1
            update("chunks", checked / total)
            if not intact:
                problems.append(f"damaged chunk {cid_to_text(cid)}")
        own_keys = {stores.keystore.public_key(n) for n in stores.keystore.names()}
        for mid in list(stores.manifests.ids()):
            try:
                stored = stores.manifests.get(mid)
            except DamagedRecord as exc:
                problems.append(str(exc))
                continue
            assert stored is not None
            # Videos from the network are held in part or not at all; our own are whole.
            own = stored.manifest.author in own_keys
            if own and not stores.manifests.has_all_chunks(stored.manifest):
                problems.append(f"incomplete video {mid.hex()}")
        problems.extend(stores.chunks.audit())
    for line in problems:
        say(line)
    if problems:
        say(f"{len(problems)} problems in {checked} chunks")
        return 1
    say(f"ok: {checked} chunks intact, every own video complete, accounting exact")
    return 0


def _social(args: argparse.Namespace, follow: bool) -> int:
    try:
        target = account_from_text(args.account)
    except InvalidAccount as exc:
        raise CliError(str(exc)) from exc
    client = running_node(args.home)
    if client is not None:
        call(
            client,
            "follow" if follow else "unfollow",
            account=args.account,
            passphrase=read_passphrase(confirm=False),
            as_account=args.as_account,
        )
        say(f"{'following' if follow else 'no longer following'} {args.account}")
        return 0
    with Home(args.home).open() as stores:
        key = unlock_account(stores, read_passphrase(confirm=False), args.as_account)
        stamp = stores.social.follow_stamp_ms(key.public_key, target, now_ms())
        message = follow_message(key, target, following=follow, now_ms=stamp)
        stores.apply_social(message)
    say(f"{'following' if follow else 'no longer following'} {args.account}")
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    return _social(args, follow=True)


def cmd_unfollow(args: argparse.Namespace) -> int:
    return _social(args, follow=False)


def cmd_following(args: argparse.Namespace) -> int:
    with Home(args.home).open() as stores:
        _, public_key = default_account(stores)
        for target in stores.social.following(public_key):
            say(account_to_text(target))
    return 0


# ------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    default_home = Path(os.environ.get(HOME_ENV, "~/.toktok"))
    parser = argparse.ArgumentParser(prog="toktok", description="toktok node")
    parser.add_argument("--home", type=Path, default=default_home, help="node home directory")
    parser.add_argument("--log-level", default=None, help="debug, info, warning (default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a node home and a first account")
    p.add_argument("--name", default="default", help="name of the first account")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("whoami", help="print the default account")
    p.set_defaults(func=cmd_whoami)

    p = sub.add_parser("sample", help="write a synthetic test video")
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--height", type=int, default=720)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("publish", help="transcode, store and sign a video")
    p.add_argument("file", type=Path)
    p.add_argument("--title", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--license", default="")
    p.add_argument("--account", default=None, help="account name (default: the home's)")
    p.add_argument("--json", action="store_true", help="print the full manifest")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("export", help="write a stored video as one MP4 file")
    p.add_argument("id")
    p.add_argument("out", type=Path)
    p.add_argument("--rendition", default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="re-hash every stored chunk")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("videos", help="list stored videos, newest first")
    p.add_argument("--limit", type=positive_int, default=50, help="at most this many (>= 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_videos)

    p = sub.add_parser("show", help="show one video's manifest")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    for name, func, text in (
        ("follow", cmd_follow, "follow an account"),
        ("unfollow", cmd_unfollow, "stop following an account"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("account")
        p.add_argument("--as", dest="as_account", default=None, help="acting account name")
        p.set_defaults(func=func)

    p = sub.add_parser("following", help="accounts the default account follows")
    p.set_defaults(func=cmd_following)

    p = sub.add_parser("fetch", help="download a whole video from the network (node running)")
    p.add_argument("id")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("peers", help="the running node's connected peers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_peers)

    p = sub.add_parser("status", help="the running node's state and counters")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("node", help="run a node until interrupted")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = actions.add_parser("run", help="run a node until interrupted")
    add_run_flags(r)
    r.set_defaults(func=clinode.cmd_node_run)

    p = sub.add_parser("devnet", help="run a local test network until interrupted")
    p.add_argument("--nodes", type=int, default=4, help="how many nodes (default 4)")
    p.add_argument("--sample", action="store_true", help="publish a sample video on n1")
    p.add_argument("--base-port", type=int, default=None, help="ports P, P+1... (default: free)")
    p.add_argument("--dir", type=Path, default=Path("devnet"), help="where the homes live")
    p.add_argument(
        "--validators", type=int, default=None, help="genesis committee size (default min(4, N))"
    )
    p.add_argument(
        "--http", default=None, metavar="HOST:PORT", help="the last node serves the web app here"
    )
    p.set_defaults(func=cmd_devnet)

    from node import clifeed, cliledger  # they import this module's helpers

    cliledger.register(sub)
    clifeed.register(sub)

    # Commands of the layers above node/ (bootstrap/, simulation/) plug in here.
    for entry in entry_points(group=COMMANDS_GROUP):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except (CliError, HomeError, VideoError, ProtocolError, StoreError, RemoteError) as exc:
        # One line, never wrapped to the terminal's width: scripts read it.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A path the user gave that cannot be read or written (PyAV's errors subclass it).
        print(f"error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    # Through node.cli, not __main__: plugins raise node.cli.CliError, which main catches.
    from node.cli import main as _main

    sys.exit(_main())
