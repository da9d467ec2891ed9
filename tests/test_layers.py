"""The layering rules of docs/architecture.md, checked on the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"protocol", "storage", "node", "bootstrap", "simulation"}
MAY_IMPORT = {
    "protocol": set(),
    "storage": {"protocol"},
    "node": {"protocol", "storage"},
    "bootstrap": {"protocol", "storage", "node"},
    "simulation": {"protocol", "storage"},
}
# Modules that would give protocol/ I/O, a clock or global randomness.
IMPURE = {"trio", "libp2p", "plyvel", "asyncio", "aiortc", "socket", "time", "random", "os"}
NO_NETWORK_RUNTIME = {"trio", "libp2p", "aiortc", "asyncio"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_layer_imports_only_point_down(layer: str) -> None:
    for path in modules(layer):
        wrong = (imports_of(path) & PROJECT) - MAY_IMPORT[layer] - {layer}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_protocol_is_pure() -> None:
    for path in modules("protocol"):
        impure = imports_of(path) & IMPURE
        assert not impure, f"{path.relative_to(ROOT)} imports {sorted(impure)}"


def test_simulation_has_no_network_runtime() -> None:
    for path in modules("simulation"):
        found = imports_of(path) & NO_NETWORK_RUNTIME
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


# aiortc is asyncio's; trio owns the node's thread. Only the bridge and the WebRTC service
# that runs on its loop may touch asyncio (docs/api.md, "Inside the node").
ASYNCIO_WORLD = {"asyncio", "aiortc", "aioice"}
ASYNCIO_ALLOWED = {"node/gateway/bridge.py", "node/gateway/rtc.py"}


@pytest.mark.parametrize("layer", sorted(PROJECT))
def test_only_the_bridge_touches_asyncio(layer: str) -> None:
    for path in modules(layer):
        name = str(path.relative_to(ROOT))
        found = imports_of(path) & ASYNCIO_WORLD
        assert name in ASYNCIO_ALLOWED or not found, f"{name} imports {sorted(found)}"
