"""Benchmark: ingest a 60 s 720p30 sample into 360p + 720p CMAF renditions.

Run from the repository root: `python bench/ingest.py [--seconds 60] [--height 720]`.
Prints readable lines, then one JSON object as the last line. The goal is 3x real time on
a 2-core machine. Wall time depends on whatever else the machine runs, so CPU seconds are
reported too: they show the work done, whatever the contention.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# Let `python bench/ingest.py` find the package from a checkout that is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.video import ingest, write_sample

REALTIME_FACTOR_GOAL = 3.0


def cpu_seconds() -> float:
    """User plus system CPU time of this process and all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="toktok-bench-") as workdir:
        source = os.path.join(workdir, "sample.mp4")
        started = time.perf_counter()
        write_sample(source, seconds=args.seconds, height=args.height, fps=args.fps)
        print(
            f"sample: {args.seconds:g} s {args.height}p{args.fps}, "
            f"{os.path.getsize(source)} bytes, written in {time.perf_counter() - started:.1f} s"
        )

        cpu_before = cpu_seconds()
        started = time.perf_counter()
        result = ingest(source)
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before

    factor = args.seconds / wall
    total_bytes = 0
    for rendition in result.renditions:
        size = len(rendition.init) + sum(len(s.data) for s in rendition.segments)
        total_bytes += size
        print(
            f"{rendition.name}: {rendition.width}x{rendition.height} {rendition.codecs}, "
            f"{len(rendition.segments)} segments, {size} bytes, peak {rendition.bandwidth} bit/s"
        )
    verdict = "meets" if factor >= REALTIME_FACTOR_GOAL else "misses"
    print(
        f"ingest: {wall:.2f} s wall, {cpu:.2f} s CPU, {factor:.2f}x real time "
        f"({verdict} the {REALTIME_FACTOR_GOAL:g}x goal on {os.cpu_count()} CPUs)"
    )
    print(
        json.dumps(
            {
                "bench": "ingest",
                "video_seconds": args.seconds,
                "source": f"{args.height}p{args.fps}",
                "wall_seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 3),
                "realtime_factor": round(factor, 3),
                "renditions": [r.name for r in result.renditions],
                "segments": len(result.renditions[0].segments),
                "bytes": total_bytes,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
