"""The benchmark's scheduling figure: how long a short job waits behind a long one."""

from __future__ import annotations

import time
from typing import Any

from detector.bench.figures import Bench
from detector.bench.service import Client, Service


def short_job_wait(bench: Bench, service: Service, client: Client) -> dict[str, Any]:
    """Seconds from upload to success of a one-batch job submitted while a long
    job's chunks wait for the only detector: first come, first served
    (CHUNK_PRIORITY=false, the order before chunk priorities) and with them."""
    options = bench.options
    waits: dict[str, float] = {}
    for label, setting in (("first_come_first_served", "false"), ("chunk_priorities", "true")):
        service.restart("processor", CHUNK_PRIORITY=setting)  # the processor plans, and sets priorities
        long_job = client.upload(bench.videos.long, options.score_threshold)
        while client.frames_done(long_job) == 0:  # its first chunk is done; the others are queued
            service.check_running()
            time.sleep(0.2)
        _, seconds = client.run_job(bench.videos.warmup, options.score_threshold)
        client.wait(long_job)
        waits[label] = round(seconds, 2)
        bench.log(f"short job behind a long one, {label.replace('_', ' ')}: {seconds:.1f} s")
    before, after = waits["first_come_first_served"], waits["chunk_priorities"]
    return {
        "short_job_wait_s": {
            **waits,
            "long_job_chunks": -(-options.memory_frames * options.memory_factor // options.chunk_frames),
            "speedup": round(before / after, 2) if after else None,
        }
    }
