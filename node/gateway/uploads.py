"""Video files that browsers upload in pieces, until the node's ingest has read them.

An upload is declared first (its size and name), then sent in order, a piece of at most
PIECE_BYTES_MAX per request at the offset received so far (a page that lost a reply asks
for the upload's state and resumes from ``received``). Once whole, the gateway publishes it
with the control route ``publish`` and this module follows that route's progress into the
upload's state, which the page polls. The file is removed when the ingest has finished
with it (success or failure), when its upload is abandoned (DELETE, or nothing received
for UPLOAD_IDLE_S), and at the next start after a crash.

Phases: ``receiving`` -> ``received`` -> ``publishing`` (then the publish route's own
phases, ``transcode`` and ``store``) -> ``done`` or ``failed``.
"""

import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.control import ControlError
from node.httpserver import Refusal

log = logging.getLogger("toktok.gateway")

PIECE_BYTES_MAX = 4 * 1024 * 1024
UPLOADS_MAX = 4
"""Uploads under way at once (receiving, waiting to be published, or publishing)."""
FINISHED_KEPT = 16
"""Finished uploads whose outcome stays readable (the oldest is forgotten past it)."""
UPLOAD_IDLE_S = 600.0
"""An upload that receives nothing for this long, before it is published, is abandoned."""
NAME_CHARS_MAX = 255
FILE_PREFIX = "upload-"
ID_BYTES = 16

RECEIVING = "receiving"
RECEIVED = "received"
PUBLISHING = "publishing"
DONE = "done"
FAILED = "failed"
_FINISHED = (DONE, FAILED)
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_ID = re.compile(rf"[0-9a-f]{{{2 * ID_BYTES}}}")


class UploadError(Refusal):
    """An upload request refused, with its HTTP ``status``."""


@dataclass
class Upload:
    id: str
    name: str
    size: int
    path: Path
    touched_s: float
    received: int = 0
    phase: str = RECEIVING
    fraction: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    writing: bool = False
    finished: trio.Event = field(default_factory=trio.Event)
    """Set once the upload is done or failed."""

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "received": self.received,
            "size": self.size,
            "phase": self.phase,
            "fraction": self.fraction,
        }
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class Uploads:
    """The uploads of one node, their files in ``directory`` (made if missing)."""

    def __init__(
        self, directory: Path, *, size_max: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._dir = directory
        self._size_max = size_max
        self._clock = clock
        self._uploads: OrderedDict[str, Upload] = OrderedDict()

    def clear_leftovers(self) -> int:
        """Remove the upload files a previous run left (it stopped or crashed mid-upload);
        how many. Raises OSError when the directory cannot be made or listed."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        removed = 0
        for path in self._dir.glob(FILE_PREFIX + "*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def create(self, size: object, name: object) -> Upload:
        """Declare an upload. Raises UploadError: 400 for a bad size or name, 413 for a file
        over the limit, 429 when UPLOADS_MAX are under way."""
        # [REJECT] The size is a whole number of bytes within the node's limit.
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UploadError("size: the file's size in bytes, a whole number from 1", 400)
        if size > self._size_max:
            raise UploadError(
                f"size: the file is {size} bytes; this node takes videos of at most"
                f" {self._size_max} bytes (web.upload_mb_max)",
                413,
            )
        # [REJECT] The name is short text (shown back, and its extension kept for the probe).
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_CHARS_MAX:
            raise UploadError(f"name: the file's name, 1 to {NAME_CHARS_MAX} characters", 400)
        if not name.isprintable():
            raise UploadError("name: printable characters only", 400)
        self.sweep()
        # [REJECT] Too many uploads under way.
        if sum(1 for u in self._uploads.values() if u.phase not in _FINISHED) >= UPLOADS_MAX:
            raise UploadError(f"{UPLOADS_MAX} uploads are under way: wait for one to end", 429)
        upload_id = secrets.token_hex(ID_BYTES)
        suffix = Path(name).suffix
        suffix = suffix.lower() if _SUFFIX.fullmatch(suffix) else ""
        path = self._dir / f"{FILE_PREFIX}{upload_id}{suffix}"
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: a random name that exists already is a bug, never to be overwritten.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        upload = Upload(upload_id, name, size, path, self._clock())
        self._uploads[upload_id] = upload
        self._forget_finished()
        return upload

    def get(self, upload_id: str) -> Upload:
        """Raises UploadError (404) for an unknown (or forgotten) upload."""
        self.sweep()
        upload = self._uploads.get(upload_id) if _ID.fullmatch(upload_id) else None
        if upload is None:
            raise UploadError(f"no upload {upload_id!r} here (abandoned or finished long ago)", 404)
        return upload

    async def append(self, upload_id: str, offset: int, data: bytes) -> Upload:
        """Write the next piece. Raises UploadError: 404 unknown, 409 not receiving, another
        piece being written or ``offset`` not the bytes received so far, 400 an empty piece,
        413 a piece over PIECE_BYTES_MAX or past the declared size."""
        upload = self.get(upload_id)
        # [REJECT] The upload still takes bytes, one piece at a time, in order.
        if upload.phase != RECEIVING:
            raise UploadError(f"the upload is {upload.phase}: it takes no more bytes", 409)
        if upload.writing:
            raise UploadError("another piece of this upload is being written", 409)
        if offset != upload.received:
            raise UploadError(
                f"offset: {offset}, but {upload.received} bytes are received so far:"
                f" send the piece at offset {upload.received}",
                409,
            )
        # [REJECT] The piece is not empty, not too large, and does not pass the size.
        if not data:
            raise UploadError("an empty piece: send the file's next bytes", 400)
        if len(data) > PIECE_BYTES_MAX:
            raise UploadError(f"a piece is at most {PIECE_BYTES_MAX} bytes", 413)
        if upload.received + len(data) > upload.size:
            raise UploadError(f"the piece runs past the declared size of {upload.size} bytes", 413)
        upload.writing = True
        try:
            await trio.to_thread.run_sync(_write_at, upload.path, offset, data)
        except OSError as exc:
            # Out of space, say: the upload cannot go on, and what it holds is freed.
            self._finish(upload, error=f"cannot store the upload: {exc.strerror}")
            raise UploadError(f"cannot store the upload: {exc.strerror}", 507) from exc
        finally:
            upload.writing = False
        upload.received += len(data)
        upload.touched_s = self._clock()
        upload.fraction = round(upload.received / upload.size, 4)
        if upload.received == upload.size:
            upload.phase = RECEIVED
        return upload

    def begin_publish(self, upload_id: str) -> Upload:
        """Mark a whole upload as being published. Raises UploadError: 404 unknown, 409 not
        whole yet or published already."""
        upload = self.get(upload_id)
        # [REJECT] Only a whole file, not yet published, is published.
        if upload.phase == RECEIVING:
            raise UploadError(
                f"the upload has {upload.received} of {upload.size} bytes: send the rest first",
                409,
            )
        if upload.phase != RECEIVED:
            raise UploadError(f"the upload is {upload.phase} already", 409)
        upload.phase = PUBLISHING
        upload.fraction = 0.0
        return upload

    def publish_refused(self, upload: Upload) -> None:
        """The publish route refused before starting (bad metadata): the file may be
        published again with better metadata."""
        upload.phase = RECEIVED
        upload.fraction = 1.0

    async def follow(self, upload: Upload, progress: AsyncIterator[dict[str, Any]]) -> None:
        """Follow the publish route's progress into ``upload``; remove the file at the end.
        The top of a background task: nothing raised here escapes."""
        try:
            async for item in progress:
                if "result" in item:
                    self._finish(upload, result=item["result"])
                elif "error" in item:
                    self._finish(upload, error=str(item["error"]))
                else:
                    upload.phase = str(item.get("phase", PUBLISHING))
                    upload.fraction = float(item.get("fraction", 0.0))
            if upload.phase not in _FINISHED:
                self._finish(upload, error="the publish ended without a result")
        except ControlError as exc:
            self._finish(upload, error=exc.message)
        except Exception as exc:
            log.error("publish failed", exc_info=True, extra={"error": repr(exc)})
            self._finish(upload, error="internal error")
        finally:
            # First: under cancellation (the node stopping) the await below ends at once.
            _remove(upload.path)
            aclose = getattr(progress, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:  # still the top of the task
                    log.warning("closing a publish failed", extra={"error": repr(exc)})

    def abandon(self, upload_id: str) -> None:
        """Drop an upload and its file. Raises UploadError: 404 unknown, 409 publishing."""
        upload = self.get(upload_id)
        # [REJECT] A file being ingested stays until the ingest is done with it.
        if upload.phase not in (RECEIVING, RECEIVED, *_FINISHED):
            raise UploadError("the upload is being published: it ends on its own", 409)
        if upload.writing:
            raise UploadError("a piece of this upload is being written", 409)
        self._drop(upload)

    def sweep(self) -> None:
        """Abandon the uploads that received nothing for UPLOAD_IDLE_S."""
        now = self._clock()
        for upload in list(self._uploads.values()):
            idle = upload.phase in (RECEIVING, RECEIVED) and not upload.writing
            if idle and now - upload.touched_s >= UPLOAD_IDLE_S:
                log.info("upload abandoned", extra={"id": upload.id, "received": upload.received})
                self._drop(upload)

    def _finish(
        self, upload: Upload, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        upload.phase = DONE if error is None else FAILED
        upload.fraction = 1.0 if error is None else upload.fraction
        upload.result, upload.error = result, error
        upload.touched_s = self._clock()
        # A finished upload's file is of no more use: the ingest has read it, or never will.
        _remove(upload.path)
        upload.finished.set()
        self._forget_finished()

    def _forget_finished(self) -> None:
        finished = [u for u in self._uploads.values() if u.phase in _FINISHED]
        for upload in finished[: max(0, len(finished) - FINISHED_KEPT)]:
            self._drop(upload)

    def _drop(self, upload: Upload) -> None:
        self._uploads.pop(upload.id, None)
        _remove(upload.path)


def _remove(path: Path) -> None:
    """Delete an upload's file; a failure is logged (the next start clears the folder)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove an upload", extra={"path": str(path), "error": str(exc)})


def _write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        written = os.pwrite(fd, data, offset)
        while written < len(data):  # a short write: rare, but allowed
            written += os.pwrite(fd, data[written:], offset + written)
    finally:
        os.close(fd)
