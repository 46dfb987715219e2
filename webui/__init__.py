"""Long-recording transcription: the web app (webui.app), the CLI (webui.cli) and the pipeline
(webui.modules)."""

from .modules.hostmem import tune_host_allocator

ALLOCATOR_TUNED = tune_host_allocator()  # before numpy, torch or CTranslate2 start a thread
