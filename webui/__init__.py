"""Long-recording transcription: the web app (webui.app), the CLI (webui.cli) and the pipeline
(webui.modules)."""

import os

# numpy's BLAS on one thread for the whole process, set before numpy loads it. The speaker
# encoder's block limits it to one thread anyway (diarize/base.py), and that limit is
# process-wide: Whisper's feature extraction, running in another window's thread meanwhile,
# computed its mel matmul on one thread or two depending on timing. Its features then differed
# in the last bits, and two --diarize runs of the same recording differed in a few words.
# Whisper's own work runs in CTranslate2's threads, which this setting does not touch.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _blas_threads_now() -> None:
    """The same where numpy was loaded first (a program or a test that imports it before us):
    its BLAS already has its threads, so they are set here (a Ray worker, which loads us
    first, then computes what this process computes)."""
    import sys

    if "numpy" not in sys.modules or not os.environ["OPENBLAS_NUM_THREADS"].isdigit():
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it, numpy's own default stays
        return
    threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


_blas_threads_now()

from .modules.hostmem import tune_host_allocator  # noqa: E402

ALLOCATOR_TUNED = tune_host_allocator()  # before numpy, torch or CTranslate2 start a thread
