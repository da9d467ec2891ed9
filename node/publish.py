"""Publishing a video: ingest, sign the manifest, store every chunk, then the manifest.

The order is what makes a crash harmless. A pending entry naming the chunks is written
first; each chunk then goes in (its own atomic batch), pinned so the quota cannot evict it
before the manifest lands; the manifest goes in last, in one batch with its indexes that
also removes the pending entry. A crash before that batch leaves a pending entry, and the
next open of the store unpins and drops those chunks; a crash after it leaves a complete
video. No manifest is ever stored without all its chunks, and nothing leaks.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.video import IngestResult, ingest
from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.codec import check_field
from protocol.envelope import SignedMessage, seal
from protocol.kinds import (
    ChunkRef,
    Follow,
    Reaction,
    Rendition,
    SegmentRef,
    Unfollow,
    VideoManifest,
    View,
)
from protocol.validate import validate_message, validate_record, validate_tags, validate_title
from storage.chunks import PinReason
from storage.errors import StoreError
from storage.manifests import manifest_chunks
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
    """Check the creator's text before any transcoding, against the field limits and rules.

    Raises ``protocol.errors.DecodeError`` (a limit) or ``protocol.errors.Reject`` (a rule).
    """
    check_field(VideoManifest, "title", meta.title)
    check_field(VideoManifest, "description", meta.description)
    check_field(VideoManifest, "tags", tuple(meta.tags))
    check_field(VideoManifest, "license", meta.license)
    check_field(VideoManifest, "remix_of", meta.remix_of)
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
    manifest = message.record
    assert isinstance(manifest, VideoManifest)
    # The manifest lists the chunks in video_chunks order with the ids build_manifest
    # hashed; put checks each id again (a mismatch would raise), so nothing is hashed a
    # third time here.
    cids = manifest_chunks(manifest)
    stores.manifests.begin(message)
    log.info("storing video", extra={"event": "store_start", "chunks": len(chunks)})
    try:
        for done, (cid, data) in enumerate(zip(cids, chunks, strict=True), start=1):
            stores.chunks.put(cid, data, pin=PinReason.OWN)
            if progress is not None:
                progress("store", done / len(chunks))
        stores.manifests.put(message, pin=PinReason.OWN)
    except StoreError:
        stores.manifests.recover()  # the store refused (quota, say): take the chunks back
        raise
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

    Raises ``protocol.errors.ProtocolError`` subclasses for bad metadata (or a video whose
    manifest would break a limit), ``node.video.VideoError`` for a file that is not a
    usable video, and ``storage.errors.StoreError`` subclasses when the store cannot take
    it (quota). When it raises, no manifest is stored, and a failure while storing chunks
    leaves a pending entry that the next open of the store undoes.
    """
    check_meta(meta)

    def transcode_progress(fraction: float) -> None:
        if progress is not None:
            progress("transcode", fraction)

    result = ingest(path, progress=transcode_progress)
    return finish_publish(stores, key, result, meta, now_ms=now_ms, progress=progress)


def finish_publish(
    stores: Stores,
    key: AccountKey,
    result: IngestResult,
    meta: PublishMeta,
    *,
    now_ms: int,
    progress: Progress | None = None,
) -> SignedMessage:
    """Sign the manifest of an ingested video and store it with its chunks.

    The second half of :func:`publish_file`, for a node that transcodes in a worker thread
    and stores from its own; raises as that does.
    """
    manifest = build_manifest(result, key.public_key, meta, now_ms)
    message = seal(key, manifest)
    # What every receiver will run: nothing is stored that a peer would refuse.
    validate_message(message.raw, now_ms)
    store_video(stores, result, message, progress=progress)
    return message


def follow_message(
    key: AccountKey, target: bytes, *, following: bool, now_ms: int
) -> SignedMessage:
    """A signed follow (or unfollow) of ``target`` by ``key``'s account, made now.

    Raises ``protocol.errors.ProtocolError`` subclasses when a rule refuses it (an account
    following itself).
    """
    cls = Follow if following else Unfollow
    record = cls(author=key.public_key, created_ms=now_ms, target=target)
    validate_record(record, now_ms)
    return seal(key, record)


def reaction_message(key: AccountKey, manifest: bytes, *, like: bool, now_ms: int) -> SignedMessage:
    """A signed like (or unlike) of the video ``manifest`` by ``key``'s account, made now.

    Raises ``protocol.errors.ProtocolError`` subclasses when a rule refuses it.
    """
    record = Reaction(
        author=key.public_key,
        created_ms=now_ms,
        manifest=manifest,
        reaction="like" if like else "unlike",
    )
    validate_record(record, now_ms)
    return seal(key, record)


def view_message(key: AccountKey, manifest: bytes, watched_ms: int, now_ms: int) -> SignedMessage:
    """A signed view receipt: ``key``'s account watched the video ``manifest`` for
    ``watched_ms``, made now. Receipts are public once gossiped.

    Raises ``protocol.errors.ProtocolError`` subclasses when a rule or a field limit refuses
    it (``watched_ms`` outside 1 to DURATION_MS_MAX).
    """
    record = View(
        author=key.public_key, created_ms=now_ms, manifest=manifest, watched_ms=watched_ms
    )
    check_field(View, "watched_ms", watched_ms)
    validate_record(record, now_ms)
    return seal(key, record)
