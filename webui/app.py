"""Builds the Gradio page from the tab modules in ui/; `python -m webui.app` starts it (see server.py).

Layout only: each tab wires its own events (Transcribe and Batch also pick up, when a page
opens, the user's job or batch still running); this module puts the tabs in order and fills the
page from the saved settings whenever a browser opens it.
"""

from __future__ import annotations

from .offline import enforce_offline

enforce_offline()

import os  # noqa: E402

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no version check or telemetry at import/launch

import sys  # noqa: E402

import gradio as gr  # noqa: E402

from .context import AppContext  # noqa: E402
from .ui import batch, gradio_api, history, system, transcribe, vad  # noqa: E402
from .ui.common import OnLoad, account_html  # noqa: E402


def build_ui(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Long-form transcription", analytics_enabled=False) as demo:
        with gr.Row():
            gr.Markdown("## Long-form transcription\nOffline speech-to-text for long recordings, with timestamps.")
            account = gr.HTML(elem_id="account", js_on_load=None)  # who is logged in, and Log out
        with gr.Tabs(elem_id="tabs"):
            loads = [OnLoad([account], lambda request: (account_html(ctx, request),)),
                     transcribe.build(ctx, demo), batch.build(ctx, demo), history.build(ctx)]
            vad.build(ctx)
            loads.append(system.build(ctx))
        gradio_api.build(ctx)

        def on_load(request: gr.Request) -> tuple:
            # Read at each page load, so a settings change shows in every new tab.
            return tuple(value for load in loads for value in load.values(request))

        demo.load(on_load, outputs=[c for load in loads for c in load.outputs], api_visibility="private")
    return demo


if __name__ == "__main__":
    from .server import main

    sys.exit(main())
