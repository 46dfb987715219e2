"""The hidden `/transcribe` endpoint for gradio_client: a file in; text, SRT and JSON out, through the same queue."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..modules.audio import InputError
from ..modules.jobs import DONE
from ..modules.options import diarize_choice
from ..modules.transcript import render
from .common import file_path, user_of


def build(ctx: AppContext) -> None:
    # Invisible components: they exist only to give the endpoint its inputs and outputs.
    with gr.Column(visible=False):
        a_file = gr.File(label="audio", type="filepath")
        a_model = gr.Textbox(label="model", value="")
        a_language = gr.Textbox(label="language", value="auto")
        a_hotwords = gr.Textbox(label="hotwords", value="")
        a_itn = gr.Checkbox(label="itn", value=True)
        a_script = gr.Textbox(label="script", value="")
        # Appended after the first six, so clients passing by position keep working. speakers: ""
        # for no labels, "auto" or an exact count for speaker labels; bounds imply labels.
        a_speakers = gr.Textbox(label="speakers", value="")
        a_min_speakers = gr.Textbox(label="min_speakers", value="")
        a_max_speakers = gr.Textbox(label="max_speakers", value="")
        a_accurate = gr.Checkbox(label="accurate", value=False)  # the accurate mode (options.PRESETS)
        a_text = gr.Textbox(label="text")
        a_srt = gr.Textbox(label="srt")
        a_json = gr.JSON(label="transcript")
        a_button = gr.Button("transcribe")

    def transcribe(path, model_name, language, hotwords, itn_on, chinese, speakers="", least="", most="",
                   accurate=False, request: gr.Request = None):
        path = file_path(path)
        if not path:
            raise gr.Error("No audio file given.")
        try:
            options = ctx.job_options(model=model_name or "", language=language or "", hotwords=hotwords or "",
                                      itn=bool(itn_on), script=chinese or "", accurate=bool(accurate))
            wanted = any(str(v or "").strip() for v in (speakers, least, most))
            options = replace(options, diarize=diarize_choice(wanted, speakers, least, most))
            jid = ctx.queue.submit(path, options, owner=user_of(ctx, request))
        except InputError as exc:
            raise gr.Error(f"Cannot transcribe {Path(path).name}: {exc.reason}") from None
        except ValueError as exc:  # a model not offered here, a limit (LimitError is a ValueError)
            raise gr.Error(str(exc)) from None
        state = ctx.queue.wait(jid)
        if state.status != DONE or state.transcript is None:
            raise gr.Error(state.error or f"job {state.status}")
        t = state.transcript
        return t.text_itn or t.text, render(t, "srt"), t.to_dict()

    a_button.click(transcribe, inputs=[a_file, a_model, a_language, a_hotwords, a_itn, a_script,
                                              a_speakers, a_min_speakers, a_max_speakers, a_accurate],
                   outputs=[a_text, a_srt, a_json], api_name="transcribe", concurrency_limit=None,
                   api_description="Transcribe one recording; returns (text, SRT, transcript JSON).")
