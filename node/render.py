"""How records look to people: JSON-ready dicts and short text forms."""

from typing import Any

from protocol.accounts import account_to_text
from protocol.cid import cid_to_text
from protocol.kinds import ChunkRef, SegmentRef, VideoManifest
from storage.manifests import ManifestStore, StoredManifest, manifest_chunk_refs, manifest_chunks


def chunk_json(ref: ChunkRef | SegmentRef) -> dict[str, Any]:
    return {"cid": cid_to_text(ref.cid), "size": ref.size}


def manifest_json(stored: StoredManifest) -> dict[str, Any]:
    """The full manifest with ids in their text forms."""
    m: VideoManifest = stored.manifest
    return {
        "id": stored.id.hex(),
        "author": account_to_text(m.author),
        "created_ms": m.created_ms,
        "title": m.title,
        "description": m.description,
        "tags": list(m.tags),
        "license": m.license,
        "remix_of": m.remix_of.hex(),
        "duration_ms": m.duration_ms,
        "source_sha256": m.source_sha256.hex(),
        "source_size": m.source_size,
        "thumbnail": chunk_json(m.thumbnail),
        "renditions": [
            {
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "bandwidth": r.bandwidth,
                "codecs": r.codecs,
                "init": chunk_json(r.init),
                "segments": [{**chunk_json(s), "duration_ms": s.duration_ms} for s in r.segments],
            }
            for r in m.renditions
        ],
        "envelope_bytes": len(stored.message.raw),
    }


def total_bytes(manifest: VideoManifest) -> int:
    """Bytes of every chunk the manifest names."""
    return sum(size for _, size in manifest_chunk_refs(manifest))


def short_account(public_key: bytes) -> str:
    text = account_to_text(public_key)
    return text[:10] + "…" + text[-4:]


def duration_text(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def held_video_json(stored: StoredManifest, manifests: ManifestStore) -> dict[str, Any]:
    """The manifest as :func:`manifest_json` gives it, with how many of the distinct chunks
    it names this node holds (``chunks_held``) out of how many (``chunks``)."""
    item = manifest_json(stored)
    item["chunks_held"] = manifests.chunks_held(stored.manifest)
    item["chunks"] = len(set(manifest_chunks(stored.manifest)))
    return item
