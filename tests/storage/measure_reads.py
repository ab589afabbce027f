"""What reading one video from a bucket costs, by hand (it is no test):
``.venv/bin/python -m tests.storage.measure_reads VIDEO [CHUNK_FRAMES] [BLOCK_KIB]``.

A thin wrapper of the benchmark's storage figure (detector/bench/storage.py, which
`detector bench --figure storage` runs on its own videos) for any video: uploaded to
a bucket of moto's server on loopback, the figures printed as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from detector.bench.storage import measure_reads, moto_bucket


def main() -> None:
    video = Path(sys.argv[1])
    chunk_frames = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    block = int(sys.argv[3]) * 1024 if len(sys.argv) > 3 else 0
    with tempfile.TemporaryDirectory() as scratch, moto_bucket(Path(scratch)) as endpoint:
        print(json.dumps(measure_reads(video, chunk_frames, endpoint, block), indent=2))


if __name__ == "__main__":
    main()
