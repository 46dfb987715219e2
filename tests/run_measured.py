"""Run the pipeline on one file in this process and print the transcript and peak RSS as JSON.

Used by tests and benchmarks to measure a fresh process: `python -m tests.run_measured FILE`.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from webui.offline import enforce_offline

enforce_offline()

from webui.modules.pipeline import Finished, PipelineOptions, transcribe  # noqa: E402


def main(path: str) -> None:
    start = time.perf_counter()
    finished = None
    for event in transcribe(path, PipelineOptions(itn=False)):
        if isinstance(event, Finished):
            finished = event
    assert finished is not None
    print(json.dumps({
        "transcript": finished.transcript.to_dict(),
        "stats": {"segments": finished.stats.segments, "batches": finished.stats.batches,
                  "max_segment_seconds": finished.stats.max_segment_seconds},
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
