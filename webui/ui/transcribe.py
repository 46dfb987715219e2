"""The Transcribe tab: one recording through the shared job queue, with live progress and downloads.

The job on screen is the page's `job_id`; the live view follows it (status, text so far, the
downloads at the end) whichever way it got there: Start, a page opened while the user's job
runs, or a click in the list of the user's other jobs. Jobs belong to the user, not the page,
so closing or reloading the page costs nothing. Once the job has ended, its lines show in the
transcript view (transcript_view.py: the player, search, corrections) instead of the live box.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..modules.audio import InputError, probe
from ..modules.exports import write_transcript_files
from ..modules.jobs import DONE, JobState
from ..modules.options import diarize_choice
from ..modules.transcript import FORMATS
from .common import (
    ACCURATE_INFO, ACCURATE_LABEL, LANGUAGES, POLL_SECONDS, SCRIPT_CHOICES, QUIET, RECENT_SECONDS, OnLoad, Screens, file_path,
    fmt_seconds, fmt_size, has_partial,
    note_html, segments_text, status_html, status_word, user_jobs, user_of,
)
from .speaker_view import SpeakerChoice
from .transcript_view import TranscriptPanel

OTHERS_SECONDS = 2.0  # how often the list of the user's other jobs is refreshed
STARTING_JS = f"() => {json.dumps(note_html('<b>Starting…</b> sending the recording to the queue'))}"
# The live box follows new text to its end, unless the reader has scrolled up (Gradio's own
# autoscroll does not act on a read-only box updated by a generator).
FOLLOW_JS = """() => {
  const box = document.querySelector('#tx-text textarea');
  if (!box) return;
  if (!box.dataset.follow) {
    box.dataset.follow = '1';
    box.dataset.pinned = '1';
    box.addEventListener('scroll', () => {
      box.dataset.pinned = box.scrollTop + box.clientHeight >= box.scrollHeight - 24 ? '1' : '0';
    });
  }
  if (!box.value) box.dataset.pinned = '1';  // a new job starts at its end
  if (box.dataset.pinned !== '0') requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
}"""


def build(ctx: AppContext, demo: gr.Blocks) -> OnLoad:
    with gr.Tab("Transcribe", id="transcribe", elem_id="tab-transcribe"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                upload = gr.File(label="Recording (audio or video)", file_count="single", type="filepath",
                                 elem_id="tx-upload")
                mic = gr.Audio(sources=["microphone"], type="filepath", format="wav",
                               label="…or record from the microphone", elem_id="tx-mic")
                with gr.Accordion("Quick options", open=True):
                    model = gr.Dropdown([], label="Model (offered on this server)", elem_id="tx-model")
                    with gr.Row():
                        language = gr.Dropdown(LANGUAGES, value="auto", allow_custom_value=True, label="Language",
                                               info="auto follows a recording that changes language",
                                               elem_id="tx-language")
                        itn_box = gr.Checkbox(value=True, label="ITN (numbers as digits)", elem_id="tx-itn")
                    chinese = gr.Dropdown(SCRIPT_CHOICES, label="Chinese script", elem_id="tx-script")
                    hotwords = gr.Textbox(label="Hotwords", placeholder="comma-separated names and terms",
                                          elem_id="tx-hotwords")
                    accurate = gr.Checkbox(value=False, label=ACCURATE_LABEL, info=ACCURATE_INFO, elem_id="tx-accurate")
                    who = SpeakerChoice()
                    who.build("tx")
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="tx-start")
                    cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="tx-cancel")
            with gr.Column(scale=3, min_width=420):
                progress = gr.HTML(status_html(None), elem_id="tx-progress", elem_classes=["live-output"])
                others = gr.Radio([], value=None, visible=False, elem_id="tx-others",
                                  label="Your other jobs (click one to show it here)")
                text = gr.Textbox(label="Transcript so far", lines=14, max_lines=30, interactive=False,
                                  buttons=["copy"], autoscroll=True, elem_id="tx-text", elem_classes=["live-output"])
                with gr.Row(elem_classes=["dl-row"]):
                    downloads = [gr.DownloadButton(f"{fmt.upper()}", value=None, interactive=False, size="sm",
                                                   elem_id=f"tx-dl-{fmt}") for fmt in FORMATS]
                panel = TranscriptPanel(ctx, "tx")
                panel.build()
        job_id = gr.State("")
        timer = gr.Timer(OTHERS_SECONDS)

    v = _View(ctx, panel)
    panel.wire(downloads)
    view = [job_id, progress, text, *downloads, cancel, *panel.outputs]  # a job put on screen
    live = view                                                          # what following it updates
    start.click(None, js=STARTING_JS, outputs=[progress], **QUIET)  # at once, before the server answers
    started = start.click(v.submit, inputs=[upload, mic, model, language, hotwords, itn_box, chinese, accurate,
                                                  *who.inputs],
                          outputs=view, **QUIET)
    picked = demo.load(v.pick, outputs=view, **QUIET)
    chosen = others.input(v.show, inputs=[others], outputs=view, **QUIET)
    for event in (started, picked, chosen):
        event.then(v.follow, inputs=[job_id], outputs=live, **QUIET)
    gr.on([upload.change, mic.change], v.reset, inputs=[upload, mic], outputs=view, **QUIET)
    cancel.click(v.cancel, inputs=[job_id], outputs=None, **QUIET)
    text.change(None, js=FOLLOW_JS, **QUIET)
    timer.tick(v.others, inputs=[job_id], outputs=[others], **QUIET)
    picked.then(v.others, inputs=[job_id], outputs=[others], **QUIET)

    def defaults(request=None):
        # The System tab's settings are each new page's defaults; the job's own boxes decide for that job.
        s = ctx.settings
        names = [m.name for m in ctx.models()]
        return gr.Dropdown(choices=names, value=names[0]), s.language, s.hotwords, s.itn, s.script

    return OnLoad([model, language, hotwords, itn_box, chinese], defaults)


class _View:
    """The tab's handlers, over one context. Each returns the `view` or `live` outputs in order.
    Whatever puts a job on screen (or clears it) tells `screens`, so the loop following the job
    shown before stops; the job itself runs on."""

    def __init__(self, ctx: AppContext, panel: TranscriptPanel | None = None) -> None:
        self.ctx = ctx
        self.panel = panel or TranscriptPanel(ctx, "tx")
        self.screens = Screens()

    def submit(self, upload_path, mic_path, model_name, lang, hot, itn_on, chinese, accurate, diarize, speakers, least,
               most, request: gr.Request):
        """Start: queue the upload (or the microphone recording) and put the job on screen."""
        path = file_path(upload_path) or file_path(mic_path)
        if not path:
            return self._message(request, "Choose a recording first: upload a file or record from the microphone.")
        try:
            options = replace(self.ctx.job_options(model=model_name or "", language=lang or "", hotwords=hot or "",
                                                   itn=bool(itn_on), script=chinese or "", accurate=bool(accurate)),
                              diarize=diarize_choice(diarize, speakers, least, most))
            jid = self.ctx.queue.submit(path, options, owner=user_of(self.ctx, request))
        except InputError as exc:
            message = f"Cannot transcribe {Path(path).name}: {exc.reason}."
            gr.Warning(message)
            return self._message(request, message)
        except ValueError as exc:
            return self._message(request, str(exc))
        return self._on_screen(request, self.ctx.queue.get(jid))

    def pick(self, request: gr.Request):
        """A page opens: show the user's newest unfinished single-file job, else the one that
        finished last within the hour (with its downloads), else nothing."""
        singles = [s for s in user_jobs(self.ctx, request) if not s.group]
        unfinished = [s for s in singles if not s.finished]
        ended = [s for s in singles if s.finished and (s.finished_at or 0.0) >= time.time() - RECENT_SECONDS]
        if not unfinished and not ended:
            return [gr.skip()] * _OUTPUTS
        return self._on_screen(request, (unfinished or sorted(ended, key=lambda s: s.finished_at))[-1])

    def show(self, jid: str | None, request: gr.Request):
        """A click in the list of the user's other jobs (only theirs: the id comes from the page)."""
        state = next((s for s in user_jobs(self.ctx, request) if s.id == jid), None) if jid else None
        if state is None:
            return self._message(request, "That job is no longer known to the server.")
        return self._on_screen(request, state)

    def reset(self, upload_path, mic_path, request: gr.Request):
        """A new recording clears the screen (the job shown before keeps running, in the list)."""
        self.screens.show(request, "")
        path = file_path(upload_path) or file_path(mic_path)
        if not path:
            return self._cleared(status_html(None))
        try:
            info = probe(path)
            line = (f"<b>Ready</b> · {Path(path).name} · {fmt_size(Path(path).stat().st_size)} · "
                    f"{fmt_seconds(info.duration)} of audio. Press Start.")
            block = note_html(line)
        except InputError as exc:
            block = status_html(None, f"Cannot transcribe {Path(path).name}: {exc.reason}.")
        if self.screens.current(request):  # Start came right after the upload: its job stays on screen
            return [gr.skip()] * _OUTPUTS
        return self._cleared(block)

    async def follow(self, jid: str, request: gr.Request):
        """Poll the job on screen: the text only when lines were added, the downloads and the
        transcript view at the end, then the view again once its player is ready. The first
        update also re-asserts the job and its Cancel, should a late reset have cleared them."""
        skip, first, last_count = gr.skip(), True, None
        if not self.screens.shows(request, jid):
            yield [skip] * _OUTPUTS
            return
        while self.screens.shows(request, jid):
            state = self.ctx.queue.get(jid)
            if state is None:
                yield jid, status_html(None, "This job is no longer known to the server."), skip, *_downloads(), \
                    gr.Button(interactive=False), *[skip] * 5
                return
            if state.finished:
                ended, player = await asyncio.to_thread(self._ended, state, request)
                yield ended
                if player is not None and player[0].state == "pending":
                    html = await self.panel.player_html(player[1], self.ctx.visitor(request),
                                                        lambda: self.screens.shows(request, jid))
                    if html is not None:
                        yield [skip] * (_OUTPUTS - 4) + [html, skip, skip, skip]
                        return
                yield [skip] * _OUTPUTS  # Gradio sends a generator's last update again when it ends
                return
            count = (len(state.segments), len(state.preview), state.status)
            text = segments_text(state) if count != last_count else skip
            last_count = count
            yield (jid if first else skip), status_html(state), text, *[skip] * len(FORMATS), \
                (gr.Button(interactive=True) if first else skip), *[skip] * 5
            first = False
            await asyncio.sleep(POLL_SECONDS)
        # The page moved on: end on a no-op, since Gradio sends a generator's last update again when it ends.
        yield [skip] * _OUTPUTS

    def cancel(self, jid: str):
        if jid and self.ctx.queue.cancel(jid):
            gr.Info("Cancelling…")

    def others(self, jid: str, request: gr.Request):
        """The user's other queued and running jobs, as choices that put one on screen."""
        choices = [(_job_label(s), s.id) for s in user_jobs(self.ctx, request)
                   if not s.finished and s.id != jid]
        return gr.Radio(choices=choices, value=None, visible=bool(choices))

    def _on_screen(self, request: gr.Request, state: JobState) -> list:
        self.screens.show(request, state.id)
        if state.finished:
            return self._ended(state, request)[0]
        return [state.id, status_html(state), gr.Textbox(value=segments_text(state), visible=True), *_downloads(),
                gr.Button(interactive=True), *self.panel.cleared()]

    def _message(self, request: gr.Request, message: str) -> list:
        self.screens.show(request, "")
        return ["", status_html(None, message), gr.skip(), *_downloads(), gr.Button(interactive=False),
                *[gr.skip()] * 5]

    def _cleared(self, block: str) -> list:
        return ["", block, gr.Textbox(value="", visible=True), *_downloads(), gr.Button(interactive=False),
                *self.panel.cleared()]

    def _record(self, state: JobState):
        """The job's History record (None: History is not there, or never got the job)."""
        if state.history_id is None or self.ctx.history is None:
            return None
        return self.ctx.history.get(state.history_id)

    def _ended(self, state: JobState, request) -> tuple[list, tuple | None]:
        """A job that has ended: its status, downloads and transcript view (from History, so a
        saved correction shows everywhere); the live box goes. With (player, record) to wait for."""
        record = self._record(state) if state.transcript is not None and state.segments else None
        partial = state.status != DONE
        if record is None or not record.segments:  # History could not keep it: the text stays in the box
            return [state.id, status_html(state), gr.Textbox(value=segments_text(state), visible=True),
                    *self._finished_downloads(state), gr.Button(interactive=False), *self.panel.cleared()], None
        visitor = self.ctx.visitor(request)
        panel, player = self.panel.render(record, visitor)
        buttons = self.panel.downloads(record, visitor, " (partial)" if partial else "")
        return [state.id, status_html(state), gr.Textbox(value="", visible=False), *buttons,
                gr.Button(interactive=False), *panel], (player, record)

    def _finished_downloads(self, state: JobState) -> list:  # for the job's owner, who is watching it
        if state.transcript is None or not state.segments or not (state.status == DONE or has_partial(state)):
            return _downloads()
        try:
            files = write_transcript_files(state.transcript, self.ctx.download_dir(state.owner), state.file_name)
        except OSError as exc:  # a full results folder: the transcript stays on the page
            gr.Warning(f"{exc} The transcript is shown above: copy it from there.")
            return _downloads()
        return _downloads({f: str(files[f]) for f in FORMATS}, partial=state.status != DONE)


_OUTPUTS = 4 + len(FORMATS) + 5  # job id, status, text, downloads, cancel, the transcript view's


def _downloads(files: dict[str, str] | None = None, partial: bool = False) -> list:
    """The download buttons: empty and off, or one file each (labelled partial when the job stopped early)."""
    suffix = " (partial)" if partial else ""
    return [gr.DownloadButton(f"{fmt.upper()}{suffix}", value=(files or {}).get(fmt), interactive=bool(files))
            for fmt in FORMATS]


def _job_label(state: JobState) -> str:
    return f"{state.file_name} · {status_word(state)}" + (" · batch" if state.group else "")
