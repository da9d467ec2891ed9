"""The client of a running node's control interface, for the CLI: blocking, standard library only.

A running daemon leaves two files in its home (written by node.control; the layout lives
here so that the CLI need not import the server's dependencies)::

    HOME/control.token      the bearer token, 64 hex digits (mode 0600), kept across runs
    HOME/run/control.json   {"version", "port", "metrics_port", "pid", "peer_id", "addrs"}
                            while the daemon runs (mode 0600)

Calls go to 127.0.0.1 only. See node.control for the protocol.
"""

import http.client
import json
import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import quote

HOST = "127.0.0.1"
RUN_DIR = "run"
RUN_FILE = "control.json"
TOKEN_FILE = "control.token"
TOKEN_PATTERN = re.compile(r"[0-9a-f]{64}")
RUN_FILE_VERSION = 1
CALL_PREFIX = "/v1/"
NDJSON_TYPE = "application/x-ndjson"
CALL_TIMEOUT_S = 30.0
STREAM_READ_TIMEOUT_S = 60.0
RUN_FILE_BYTES_MAX = 64 * 1024
TOKEN_FILE_BYTES_MAX = 1024
RESPONSE_BYTES_MAX = 64 * 1024 * 1024
STREAM_LINE_BYTES_MAX = 1024 * 1024


class ControlClientError(Exception):
    """Base of the errors of talking to a running node."""


class NodeNotRunning(ControlClientError):
    """No node runs on this home: no run file, a stale one, or nobody on its port."""


class TokenFileError(ControlClientError):
    """HOME/control.token is missing, unreadable or does not hold a token."""


class ControlCallError(ControlClientError):
    """A call the node refused or that failed on the way.

    ``status`` is the HTTP status of the node's answer, or None when there was none (a
    timeout, a broken connection, an answer that is not ours).
    """

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def run_file_path(home: Path) -> Path:
    return home / RUN_DIR / RUN_FILE


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


@dataclass(frozen=True)
class RunInfo:
    """What HOME/run/control.json says about the running node."""

    port: int
    metrics_port: int | None
    pid: int
    peer_id: str
    addrs: tuple[str, ...]

    @classmethod
    def from_json(cls, data: object) -> "RunInfo":
        """Raises ValueError when ``data`` is not a run file's content."""
        if not isinstance(data, dict):
            raise ValueError("the run file does not hold a JSON object")
        port, metrics_port, pid = data.get("port"), data.get("metrics_port"), data.get("pid")
        peer_id, addrs = data.get("peer_id"), data.get("addrs")
        if not _is_port(port):
            raise ValueError(f"bad port in the run file: {port!r}")
        if not (metrics_port is None or _is_port(metrics_port)):
            raise ValueError(f"bad metrics_port in the run file: {metrics_port!r}")
        if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
            raise ValueError(f"bad pid in the run file: {pid!r}")
        if not isinstance(peer_id, str):
            raise ValueError(f"bad peer_id in the run file: {peer_id!r}")
        if not (isinstance(addrs, list) and all(isinstance(a, str) for a in addrs)):
            raise ValueError(f"bad addrs in the run file: {addrs!r}")
        return cls(port, metrics_port, pid, peer_id, tuple(addrs))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RUN_FILE_VERSION,
            "port": self.port,
            "metrics_port": self.metrics_port,
            "pid": self.pid,
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
        }


def _is_port(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (of any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # It exists; it belongs to someone else.
    return True


def read_token(home: Path) -> str:
    """The token in HOME/control.token. Raises TokenFileError."""
    path = token_path(home)
    try:
        with path.open("rb") as f:
            text = f.read(TOKEN_FILE_BYTES_MAX).decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the control token {path}: {exc}") from exc
    if not TOKEN_PATTERN.fullmatch(text):
        raise TokenFileError(
            f"{path} does not hold a control token ({TOKEN_PATTERN.pattern}); "
            "delete it and restart the node to make a new one"
        )
    return text


class ControlClient:
    """Calls to one running node. Each call opens its own connection."""

    def __init__(
        self,
        info: RunInfo,
        token: str,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        stream_read_timeout_s: float = STREAM_READ_TIMEOUT_S,
    ) -> None:
        self.info = info
        self._token = token
        self.timeout_s = timeout_s
        self.stream_read_timeout_s = stream_read_timeout_s

    @classmethod
    def from_home(
        cls,
        home: Path,
        *,
        timeout_s: float = CALL_TIMEOUT_S,
        stream_read_timeout_s: float = STREAM_READ_TIMEOUT_S,
    ) -> "ControlClient":
        """The client of the node running on ``home``.

        Raises NodeNotRunning when the run file is missing, unreadable, damaged or names a
        process that is gone, and TokenFileError when the token cannot be read.
        """
        path = run_file_path(home)
        try:
            with path.open("rb") as f:
                raw = f.read(RUN_FILE_BYTES_MAX + 1)
        except FileNotFoundError as exc:
            raise NodeNotRunning(f"no node is running on {home} (no {path})") from exc
        except OSError as exc:
            raise NodeNotRunning(f"cannot read {path}: {exc}") from exc
        try:
            if len(raw) > RUN_FILE_BYTES_MAX:
                raise ValueError(f"it is longer than {RUN_FILE_BYTES_MAX} bytes")
            info = RunInfo.from_json(json.loads(raw))
        except ValueError as exc:
            raise NodeNotRunning(f"{path} is damaged ({exc}); is a node running?") from exc
        if not pid_alive(info.pid):
            raise NodeNotRunning(f"the node that wrote {path} (pid {info.pid}) has stopped")
        token = read_token(home)
        return cls(info, token, timeout_s=timeout_s, stream_read_timeout_s=stream_read_timeout_s)

    def call(self, name: str, /, **params: Any) -> dict[str, Any]:
        """Call ``name`` with ``params`` and return its answer.

        Raises NodeNotRunning when nobody listens on the node's port, ControlCallError when
        the node refuses the call or it fails on the way (timeouts included).
        """
        conn = http.client.HTTPConnection(HOST, self.info.port, timeout=self.timeout_s)
        try:
            response = self._post(conn, name, params)
            body = _read_body(name, response)
            if response.status != 200:
                raise _refusal(name, response.status, body)
            if len(body) > RESPONSE_BYTES_MAX:
                raise ControlCallError(f"{name}: answer over {RESPONSE_BYTES_MAX} bytes", None)
            return _parse_object(name, body)
        finally:
            conn.close()

    def stream(self, name: str, /, **params: Any) -> Generator[dict[str, Any], None, None]:
        """Call ``name`` and iterate over the JSON objects it streams (one for a call that
        answers with a single object).

        The call itself raises as ``call`` does; the iterator raises ControlCallError when
        the stream reports an error or breaks off, or a read waits past
        ``stream_read_timeout_s``. There is no limit on the whole stream's time. Closing
        the generator early closes the connection, and the node then closes the call's
        iterator.
        """
        conn = http.client.HTTPConnection(HOST, self.info.port, timeout=self.stream_read_timeout_s)
        try:
            response = self._post(conn, name, params)
            if response.status != 200:
                raise _refusal(name, response.status, _read_body(name, response))
        except BaseException:
            conn.close()
            raise
        return _stream_items(name, conn, response)

    def _post(
        self, conn: http.client.HTTPConnection, name: str, params: dict[str, Any]
    ) -> http.client.HTTPResponse:
        body = json.dumps(params, allow_nan=False).encode()
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Accept": f"application/json, {NDJSON_TYPE}",
        }
        try:
            conn.request("POST", CALL_PREFIX + quote(name, safe=""), body=body, headers=headers)
            return conn.getresponse()
        except ConnectionRefusedError as exc:
            raise NodeNotRunning(
                f"no node answers on {HOST}:{self.info.port} (pid {self.info.pid}): {exc}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ControlCallError(f"{name}: the call failed on the way: {exc}", None) from exc


def _stream_items(
    name: str, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
) -> Generator[dict[str, Any], None, None]:
    try:
        while True:
            line = response.readline(STREAM_LINE_BYTES_MAX + 1)
            if not line:
                return
            if len(line) > STREAM_LINE_BYTES_MAX:
                raise ControlCallError(f"{name}: a line over {STREAM_LINE_BYTES_MAX} bytes", None)
            if not line.strip():
                continue
            item = _parse_object(name, line)
            if "error" in item:
                status = item.get("status")
                raise ControlCallError(
                    str(item["error"]), status if isinstance(status, int) else None
                )
            yield item
    except (OSError, http.client.HTTPException) as exc:
        raise ControlCallError(f"{name}: the stream broke off: {exc}", None) from exc
    finally:
        conn.close()


def _read_body(name: str, response: http.client.HTTPResponse) -> bytes:
    """The answer's body, one byte past RESPONSE_BYTES_MAX at most."""
    try:
        return response.read(RESPONSE_BYTES_MAX + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise ControlCallError(f"{name}: the answer broke off: {exc}", None) from exc


def _refusal(name: str, status: int, body: bytes) -> ControlCallError:
    try:
        message = json.loads(body)["error"]
    except (ValueError, TypeError, KeyError):
        message = None
    if not isinstance(message, str):
        message = f"{name}: HTTP {status}: {body[:200]!r}"
    return ControlCallError(message, status)


def _parse_object(name: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ControlCallError(f"{name}: the answer is not JSON: {exc}", None) from exc
    if not isinstance(value, dict):
        raise ControlCallError(f"{name}: the answer is not a JSON object", None)
    return value
