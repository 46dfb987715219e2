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

from .modules.hostmem import tune_host_allocator  # noqa: E402

ALLOCATOR_TUNED = tune_host_allocator()  # before numpy, torch or CTranslate2 start a thread
