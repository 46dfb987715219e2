"""Keep every library off the network: no model hub, no telemetry.

Called before funasr, huggingface_hub, modelscope or gradio are imported, since several of
them read these variables at import time.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MODELSCOPE_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
}


def enforce_offline(allow_hub: bool | None = None) -> None:
    """Set offline defaults unless the user opted in with WEBUI_ALLOW_HUB=1 (hub downloads)."""
    if allow_hub is None:
        allow_hub = os.environ.get("WEBUI_ALLOW_HUB") == "1"
    for key, value in OFFLINE_ENV.items():
        if allow_hub and key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_OFFLINE"):
            continue
        os.environ.setdefault(key, value)
