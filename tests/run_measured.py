"""Run the pipeline on one file in this process and print the transcript, peak RSS and the
peak of Python-tracked memory (numpy's audio buffers included) as JSON.

Used by tests and benchmarks to measure a fresh process: `python -m tests.run_measured FILE`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc

from webui.offline import enforce_offline

enforce_offline()

from webui.modules.engines import get_engine  # noqa: E402
from webui.modules.events import Finished  # noqa: E402
from webui.modules.options import PipelineOptions  # noqa: E402
from webui.modules.pipeline import transcribe  # noqa: E402


def main(path: str) -> None:
    options = PipelineOptions(itn=False)
    engine = get_engine(options.engine)  # loaded before tracing: the model is not the pipeline's
    start = time.perf_counter()
    finished = None
    tracemalloc.start()  # numpy reports its buffers to tracemalloc: every array of audio counts
    for event in transcribe(path, options, engine=engine):
        if isinstance(event, Finished):
            finished = event
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert finished is not None
    print(json.dumps({
        "transcript": finished.transcript.to_dict(),
        "stats": {"segments": finished.stats.segments, "batches": finished.stats.batches,
                  "max_segment_seconds": finished.stats.max_segment_seconds},
        "wall_seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_traced_mb": traced_peak / 2**20,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
