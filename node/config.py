"""The node's configuration: ``HOME/node.toml``, with flags of ``toktok node run`` on top.

Every setting has a default, so a home without the file runs; ``toktok init`` writes the
file with the defaults spelled out, for the operator to edit. Unknown keys and values of
the wrong type are refused with the key's name, so a typo never passes silently.
"""

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import multiaddr

CONFIG_FILE = "node.toml"


class ConfigError(Exception):
    """A configuration file or flag that cannot be used, with the key it is about."""


@dataclass(frozen=True)
class GossipConfig:
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_ms: int = 1000
    batch_delay_ms: int = 5
    """How long a published message waits for others to share its gossip batch."""
    messages_per_peer_per_second: int = 100
    """py-libp2p's spam limit per peer and topic (it drops silently above it)."""
    invalid_max: int = 3
    """Invalid messages (forged, malformed, bad chunks) a peer may send before it is cut off."""
    ban_seconds: int = 600


@dataclass(frozen=True)
class WebConfig:
    """The web app and its JSON API (node/gateway/), with the WebRTC streaming behind it."""

    http: str = ""
    """HOST:PORT to serve the web app on (a loopback address); "": no web app."""
    upload_mb_max: int = 2048
    """The largest video file a browser may upload."""
    peer_connections_max: int = 64
    """WebRTC peer connections open at once, over all browsers."""
    peer_connections_per_client_max: int = 8
    """WebRTC peer connections open at once from one client address."""
    requests_in_flight_max: int = 8
    """Chunk requests one peer connection may have unanswered."""
    sessions_max: int = 16
    """Signed-in browser sessions kept at once (the oldest is signed out past it)."""


@dataclass(frozen=True)
class NodeConfig:
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/4001",)
    bootstrap: tuple[str, ...] = ()
    """Multiaddrs, with /p2p/<peer id>, of the nodes to join through (the seed list)."""
    control_port: int = 0
    """Loopback port of the control interface; 0 picks a free one (see HOME/run/)."""
    metrics_port: int = 0
    """Loopback port of the Prometheus endpoint; 0 serves /metrics on the control port."""
    peers_target: int = 8
    """Connections the node dials known peers for while it has fewer."""
    quota_mb: int = 10 * 1024
    replicas: int = 3
    """Nodes that seed each video, chosen by rendezvous hashing."""
    upload_kib_per_s: int = 0
    """Cap on the bytes per second this node serves to peers; 0: no cap."""
    sync_interval_s: int = 30
    peer_live_s: int = 600
    """A peer not seen for this long no longer counts for placement."""
    rebalance_s: int = 60
    """How often placement is computed again over the peers alive now."""
    dht_server: bool = True
    """Store DHT records for others; a node others cannot dial should say false."""
    bootstrap_role: bool = False
    """Run as a bootstrap node: DHT server and peer exchange for newcomers."""
    genesis: str = ""
    """The network's genesis.bin (relative to the home unless absolute); "": no ledger."""
    validator_key: str = ""
    """This node's validator key file (relative to the home unless absolute), which must
    hold a key of the genesis committee; "": not a validator."""
    gossip: GossipConfig = field(default_factory=GossipConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def override(self, **changes: Any) -> "NodeConfig":
        """A copy with the given settings replaced (None leaves a setting as it is)."""
        given = {k: v for k, v in changes.items() if v is not None}
        config = dataclasses.replace(self, **given)
        config.check()
        return config

    def check(self) -> None:
        """Raises :class:`ConfigError` for values no node can run with."""
        if not self.listen:
            raise ConfigError("listen: at least one address")
        for addr in self.listen:
            _check_multiaddr("listen", addr, peer_id=False)
        for addr in self.bootstrap:
            _check_multiaddr("bootstrap", addr, peer_id=True)
        for name in ("control_port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name}: a port number, 0 to 65535")
        if self.upload_kib_per_s < 0:
            raise ConfigError("upload_kib_per_s: 0 (no cap) or more")
        names = ("quota_mb", "replicas", "sync_interval_s", "peers_target")
        for name in (*names, "peer_live_s", "rebalance_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: at least 1")
        for name in ("genesis", "validator_key"):
            if getattr(self, name) != getattr(self, name).strip():
                raise ConfigError(f"{name}: a path without leading or trailing spaces")
        if self.validator_key and not self.genesis:
            raise ConfigError("validator_key: a validator needs the network's genesis too")
        _check_web(self.web)
        g = self.gossip
        if not 1 <= g.degree_low <= g.degree <= g.degree_high:
            raise ConfigError("gossip: degree_low <= degree <= degree_high, all at least 1")
        for f in dataclasses.fields(g):
            if getattr(g, f.name) < (0 if f.name == "batch_delay_ms" else 1):
                raise ConfigError(f"gossip.{f.name}: out of range")


def _check_web(web: WebConfig) -> None:
    if web.http:
        try:
            split_host_port(web.http)
        except ValueError as exc:
            raise ConfigError(f"web.http: {exc}") from exc
    for f in dataclasses.fields(web):
        if f.name != "http" and getattr(web, f.name) < 1:
            raise ConfigError(f"web.{f.name}: at least 1")


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a loopback address literal and a port.
    Raises ValueError naming what is wrong."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, not {text!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"the host must be an IP address literal, not {host!r}") from exc
    if not address.is_loopback:
        raise ValueError(f"the web app is served on loopback addresses only, not {host!r}")
    return host, int(port_text)


def _check_multiaddr(key: str, text: str, *, peer_id: bool) -> None:
    try:
        addr = multiaddr.Multiaddr(text)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ConfigError(f"{key}: not a multiaddr: {text!r} ({exc})") from exc
    protocols = [p.name for p in addr.protocols()]
    if protocols[:2] not in (["ip4", "tcp"], ["ip6", "tcp"]):
        raise ConfigError(f"{key}: expected /ip4/<address>/tcp/<port>...: {text!r}")
    ipaddress.ip_address(addr.value_for_protocol(protocols[0]))
    if peer_id and "p2p" not in protocols:
        raise ConfigError(f"{key}: the address must end with /p2p/<peer id>: {text!r}")


def load_config(home: Path) -> NodeConfig:
    """Read ``HOME/node.toml`` (defaults where it is silent, or when it is absent).

    Raises :class:`ConfigError` naming the file and the key at fault.
    """
    path = home / CONFIG_FILE
    if not path.exists():
        return NodeConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        config: NodeConfig = _from_table(NodeConfig, raw, "")
        config.check()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config


def _from_table(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name not in fields:
            raise ConfigError(f"unknown key {where}{name}")
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{name}: expected a table")
            values[name] = _from_table(type(default), value, f"{where}{name}.")
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}{name}: expected a list of strings")
            values[name] = tuple(value)
        elif type(value) is not type(default):
            expected = type(default).__name__
            raise ConfigError(f"{where}{name}: expected {expected}, got {value!r}")
        else:
            values[name] = value
    return cls(**values)


def render_config(config: NodeConfig) -> str:
    """The TOML text of ``config``, every setting spelled out, for ``toktok init``."""
    lines = ["# toktok node settings; flags of 'toktok node run' override them.", ""]
    lines += _render_table(config)
    lines += ["", "[gossip]"]
    lines += _render_table(config.gossip)
    lines += ["", "[web]"]
    lines += _render_table(config.web)
    return "\n".join(lines) + "\n"


def _render_table(obj: Any) -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            continue
        out.append(f"{f.name} = {_toml_value(value)}")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # Multiaddrs and the like: printable ASCII without quotes or backslashes.
        assert value.isprintable() and '"' not in value and "\\" not in value, value
        return f'"{value}"'
    assert isinstance(value, tuple)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def write_config(home: Path, config: NodeConfig) -> None:
    """Write ``HOME/node.toml`` unless it exists (an operator's edits are never lost)."""
    path = home / CONFIG_FILE
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_config(config), encoding="utf-8")
    tmp.replace(path)
