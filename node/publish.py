"""Publishing a video: ingest, store every chunk, then sign and store the manifest.

The order is what makes a crash harmless: chunks go in first (each in its own atomic
batch), and the manifest goes in last, in one batch with its indexes and the pins on its
chunks. A crash before that batch leaves only unpinned chunks, which the quota evicts; a
crash after it leaves a complete video. No manifest is ever stored without all its chunks.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.video import IngestResult, ingest
from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal
from protocol.kinds import ChunkRef, Rendition, SegmentRef, VideoManifest
from protocol.validate import validate_record, validate_tags, validate_title
from storage.chunks import PinReason
from storage.stores import Stores

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""Called with a phase name ("transcode", "store") and the fraction of it done."""


@dataclass(frozen=True)
class PublishMeta:
    """What the creator says about the video."""

    title: str
    description: str = ""
    tags: Sequence[str] = ()
    license: str = ""
    remix_of: bytes = b""


def check_meta(meta: PublishMeta) -> None:
    """Check the creator's text before any transcoding. Raises ``protocol.errors.Reject``."""
    validate_title(meta.title)
    validate_tags(list(meta.tags))


def build_manifest(
    result: IngestResult, author: bytes, meta: PublishMeta, now_ms: int
) -> VideoManifest:
    """The manifest record for an ingested video (not yet signed)."""
    renditions = tuple(
        Rendition(
            name=r.name,
            width=r.width,
            height=r.height,
            bandwidth=r.bandwidth,
            codecs=r.codecs,
            init=ChunkRef(cid=chunk_id(r.init), size=len(r.init)),
            segments=tuple(
                SegmentRef(cid=chunk_id(s.data), size=len(s.data), duration_ms=s.duration_ms)
                for s in r.segments
            ),
        )
        for r in result.renditions
    )
    thumb = result.thumbnail_jpeg
    return VideoManifest(
        author=author,
        created_ms=now_ms,
        title=meta.title,
        description=meta.description,
        tags=tuple(meta.tags),
        license=meta.license,
        remix_of=meta.remix_of,
        duration_ms=result.duration_ms,
        source_sha256=result.source_sha256,
        source_size=result.source_size,
        thumbnail=ChunkRef(cid=chunk_id(thumb), size=len(thumb)),
        renditions=renditions,
    )


def video_chunks(result: IngestResult) -> list[bytes]:
    """Every chunk of an ingested video, the thumbnail first."""
    chunks = [result.thumbnail_jpeg]
    for rendition in result.renditions:
        chunks.append(rendition.init)
        chunks.extend(segment.data for segment in rendition.segments)
    return chunks


def store_video(
    stores: Stores,
    result: IngestResult,
    message: SignedMessage,
    *,
    progress: Progress | None = None,
) -> None:
    """Store the chunks, then the manifest pinned as the node's own video."""
    chunks = video_chunks(result)
    log.info("storing video", extra={"event": "store_start", "chunks": len(chunks)})
    for done, data in enumerate(chunks, start=1):
        stores.chunks.put(chunk_id(data), data)
        if progress is not None:
            progress("store", done / len(chunks))
    stores.manifests.put(message, pin=PinReason.OWN)
    log.info("stored video", extra={"event": "store_done", "id": message.id.hex()})


def publish_file(
    stores: Stores,
    key: AccountKey,
    path: Path,
    meta: PublishMeta,
    *,
    now_ms: int,
    progress: Progress | None = None,
) -> SignedMessage:
    """Ingest ``path``, store it and its signed manifest; return the manifest message.

    Raises ``protocol.errors.Reject`` for bad metadata, ``node.video.VideoError`` for a
    file that is not a usable video, and ``storage.errors.StoreError`` subclasses when the
    store cannot take it (quota). Nothing is stored when it raises before the chunks.
    """
    check_meta(meta)

    def transcode_progress(fraction: float) -> None:
        if progress is not None:
            progress("transcode", fraction)

    result = ingest(path, progress=transcode_progress)
    manifest = build_manifest(result, key.public_key, meta, now_ms)
    validate_record(manifest, now_ms)
    message = seal(key, manifest)
    store_video(stores, result, message, progress=progress)
    return message
