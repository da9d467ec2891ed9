"""Builders of valid records and messages for tests."""

import hashlib

from protocol.accounts import AccountKey
from protocol.cid import chunk_id
from protocol.envelope import SignedMessage, seal
from protocol.kinds import ChunkRef, Rendition, SegmentRef, VideoManifest

NOW_MS = 1_790_000_000_000


def account(n: int) -> AccountKey:
    """A deterministic account key number ``n``."""
    return AccountKey(hashlib.sha256(b"test account %d" % n).digest())


def fake_video(tag: bytes, segments: int = 3, segment_bytes: int = 1000) -> list[bytes]:
    """Chunk payloads standing in for a video: thumbnail, init, then segments."""
    return [
        hashlib.sha256(tag + b"-%d" % i).digest() * (segment_bytes // 32 + 1)
        for i in range(segments + 2)
    ]


def manifest_for(
    key: AccountKey, chunks: list[bytes], *, created_ms: int = NOW_MS, title: str = "a video"
) -> VideoManifest:
    """A valid one-rendition manifest naming ``chunks`` (thumbnail, init, segments...)."""
    thumb, init, *segments = chunks
    return VideoManifest(
        author=key.public_key,
        created_ms=created_ms,
        title=title,
        description="",
        tags=("test",),
        license="CC-BY-4.0",
        remix_of=b"",
        duration_ms=2000 * len(segments),
        source_sha256=hashlib.sha256(b"".join(chunks)).digest(),
        source_size=sum(map(len, chunks)),
        thumbnail=ChunkRef(cid=chunk_id(thumb), size=len(thumb)),
        renditions=(
            Rendition(
                name="360p",
                width=640,
                height=360,
                bandwidth=800_000,
                codecs="avc1.64001e,mp4a.40.2",
                init=ChunkRef(cid=chunk_id(init), size=len(init)),
                segments=tuple(
                    SegmentRef(cid=chunk_id(s), size=len(s), duration_ms=2000) for s in segments
                ),
            ),
        ),
    )


def sealed_manifest(key: AccountKey, chunks: list[bytes], **kwargs: object) -> SignedMessage:
    return seal(key, manifest_for(key, chunks, **kwargs))  # type: ignore[arg-type]
