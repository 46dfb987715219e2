"""The Batch tab: many uploads or a server folder, queued one job each, with a summary to download."""

from __future__ import annotations

import asyncio
import html
import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..modules.audio import InputError, list_media
from ..modules import revisions
from ..modules.exports import write_batch_outputs
from ..modules.jobs import DONE, RUNNING, JobState, LimitError
from ..modules.options import diarize_choice
from ..modules.progress import GroupMeters, clock_text
from .common import (
    ACCURATE_INFO, ACCURATE_LABEL, POLL_SECONDS, QUIET, SCRIPT_CHOICES, RECENT_SECONDS, OnLoad, Screens, fmt_seconds, fmt_size,
    md_text, no_downloads, note_html,
    paths, progress_html, status_html, user_jobs, user_of,
)
from .speaker_view import SpeakerChoice

BATCH_HEADERS = ["#", "File", "Status", "Audio done", "Time", "Text or message"]
SUMMARY_KINDS = ("csv", "json", "zip")
NO_BATCH = "No batch yet."
STARTING_JS = f"() => {json.dumps(note_html('<b>Starting the batch…</b> checking the files'))}"


def build(ctx: AppContext, demo: gr.Blocks) -> OnLoad:
    with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
        gr.Markdown("Many files, processed one at a time with the settings from the System tab. "
                    "Every file is also recorded in History.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                files = gr.File(label="Recordings", file_count="multiple", type="filepath", elem_id="batch-files")
                files_note = gr.Markdown(elem_id="batch-files-note", elem_classes=["muted"])
                folder = gr.Textbox(label="…or a folder on the server", elem_id="batch-folder",
                                    placeholder="a folder under one of the allowed folders below")
                roots = gr.Markdown(elem_id="batch-roots")
                chinese = gr.Dropdown(SCRIPT_CHOICES, label="Chinese script", elem_id="batch-script")
                accurate = gr.Checkbox(value=False, label=ACCURATE_LABEL, info=ACCURATE_INFO, elem_id="batch-accurate")
                who = SpeakerChoice()
                who.build("batch")
                with gr.Row():
                    start = gr.Button("Start batch", variant="primary", elem_id="batch-start")
                    cancel = gr.Button("Cancel batch", variant="stop", interactive=False, elem_id="batch-cancel")
            with gr.Column(scale=3, min_width=420):
                overall = gr.HTML(note_html(NO_BATCH), elem_id="batch-status", elem_classes=["live-output"])
                table = gr.Dataframe(headers=BATCH_HEADERS, value=[], interactive=False, wrap=True,
                                     column_widths=["4%", "22%", "11%", "19%", "14%", "30%"],
                                     elem_id="batch-table", elem_classes=["live-output"])
                with gr.Row(elem_classes=["dl-row"]):
                    dl_csv = gr.DownloadButton("Summary CSV", interactive=False, size="sm", elem_id="batch-dl-csv")
                    dl_json = gr.DownloadButton("Summary JSON", interactive=False, size="sm", elem_id="batch-dl-json")
                    dl_zip = gr.DownloadButton("All transcripts (zip)", interactive=False, size="sm",
                                               elem_id="batch-dl-zip")
        group_state = gr.State("")
        refused_state = gr.State([])  # files refused at submit: rows of the summary, never jobs

    def on_load(request=None) -> tuple:
        roots = ctx.settings.allowed_roots()
        if not roots:
            return "This server allows no server folders: upload the files instead.", ctx.settings.script
        listed = "\n".join(f"- {md_text(p)}" for p in roots)
        return f"Allowed server folders:\n{listed}", ctx.settings.script

    def cancel_batch(group: str):
        if group:
            n = ctx.queue.cancel_group(group)
            if n:
                gr.Info(f"Cancelling {n} job(s)…")

    b = _Batch(ctx)
    view = [group_state, refused_state, overall, table, dl_csv, dl_json, dl_zip, cancel]
    live = [overall, table, dl_csv, dl_json, dl_zip, cancel]
    start.click(None, js=STARTING_JS, outputs=[overall], **QUIET)
    started = start.click(b.submit, inputs=[files, folder, chinese, accurate, *who.inputs], outputs=view, **QUIET)
    picked = demo.load(b.pick, outputs=view, **QUIET)
    for event in (started, picked):
        event.then(b.follow, inputs=[group_state, refused_state], outputs=live, **QUIET)
    cancel.click(cancel_batch, inputs=[group_state], outputs=None, **QUIET)
    files.change(_files_note, inputs=[files], outputs=[files_note], **QUIET)
    return OnLoad([roots, chinese], on_load)


class _Batch:
    """The tab's handlers: submit a batch, find the user's latest one, follow one to its summary."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.screens = Screens()  # the batch each page shows: a new one stops following the old
        self.meters = GroupMeters()  # each batch's ETA, from the rate the batch has shown

    def submit(self, uploaded, folder_text, chinese, accurate, diarize, speakers, least, most, request: gr.Request):
        """Gather the files and queue one job each, all in one new group."""
        self.screens.show(request, "")
        try:
            chosen = _gather(self.ctx, uploaded, folder_text)
            options = replace(self.ctx.job_options(script=chinese or "", accurate=bool(accurate)),
                              diarize=diarize_choice(diarize, speakers, least, most))
        except ValueError as exc:
            return "", [], status_html(None, str(exc)), [], *no_downloads(len(SUMMARY_KINDS)), \
                gr.Button(interactive=False)
        group = uuid.uuid4().hex[:12]
        refused: list[dict] = []
        for path in chosen:
            try:
                self.ctx.queue.submit(path, options, owner=user_of(self.ctx, request), group=group)
            except (InputError, LimitError) as exc:  # unreadable, or over the operator's limits
                refused.append({"file": Path(path).name, "error": getattr(exc, "reason", str(exc))})
        states = self.ctx.queue.jobs(group=group)
        self.screens.show(request, group)
        return group, refused, _overall_html(states, refused, self.eta(group, states)), _rows(states, refused), \
            *no_downloads(len(SUMMARY_KINDS)), gr.Button(interactive=any(not s.finished for s in states))

    def pick(self, request: gr.Request):
        """A page opens: show the user's newest batch that runs or finished within the hour."""
        groups: dict[str, list[JobState]] = {}
        for s in user_jobs(self.ctx, request):
            if s.group:
                groups.setdefault(s.group, []).append(s)
        recent = [g for g, states in groups.items() if _recent(states)]
        if not recent:
            return [gr.skip()] * 8
        group = max(recent, key=lambda g: max(s.created_at for s in groups[g]))
        states = groups[group]
        self.screens.show(request, group)
        return group, [], _overall_html(states, [], self.eta(group, states)), _rows(states, []), \
            *no_downloads(len(SUMMARY_KINDS)), \
            gr.Button(interactive=any(not s.finished for s in states))

    def eta(self, group: str, states: list[JobState]) -> float | None:
        """Seconds until the batch is done, from the audio its jobs have done since it started."""
        total = sum(s.duration for s in states)
        done = sum(s.duration if s.finished else s.audio_done for s in states)
        working = any(s.started_at is not None for s in states)
        if all(s.finished for s in states):
            return None
        return self.meters.update(group, total, done, working)

    def revised(self, states: list[JobState]) -> list[JobState]:
        """The jobs with their newest revision (a correction saved since they ended goes in the zip)."""
        out = []
        for s in states:
            record = self.ctx.history.get(s.history_id) if s.status == DONE and s.history_id is not None else None
            if record is not None and record.segments:
                s = replace(s, transcript=revisions.latest(self.ctx.history, record)[0])
            out.append(s)
        return out

    async def follow(self, group: str, refused: list[dict], request: gr.Request):
        """Poll the batch's jobs; the summary downloads once all have finished."""
        if not self.screens.shows(request, group):
            yield [gr.skip()] * 6
            return
        while self.screens.shows(request, group):
            states = self.ctx.queue.jobs(group=group)
            if states and not all(s.finished for s in states):
                yield _overall_html(states, refused, self.eta(group, states)), _rows(states, refused), *[gr.skip()] * 4
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                out = await asyncio.to_thread(lambda: write_batch_outputs(
                    self.revised(states), self.ctx.download_dir(user_of(self.ctx, request)), extra_rows=refused))
                buttons = [gr.DownloadButton(value=str(out[k]), interactive=True) for k in SUMMARY_KINDS]
            except OSError as exc:  # a full results folder: the table stays, History has every transcript
                gr.Warning(f"{exc} Every transcript is also in History.")
                buttons = no_downloads(len(SUMMARY_KINDS))
            yield _overall_html(states, refused, self.eta(group, states)), _rows(states, refused), *buttons, \
                gr.Button(interactive=False)
            return
        yield [gr.skip()] * 6  # the page moved on: end on a no-op (Gradio repeats a generator's last update)


def _recent(states: list[JobState]) -> bool:
    """Unfinished, or finished within the last hour."""
    if not all(s.finished for s in states):
        return True
    return max(s.finished_at or 0.0 for s in states) >= time.time() - RECENT_SECONDS


def _files_note(values) -> str:
    chosen = [Path(p) for p in paths(values)]
    if not chosen:
        return ""
    total = sum(p.stat().st_size for p in chosen if p.exists())
    return f"{len(chosen)} file(s), {fmt_size(total)} in all."


def _gather(ctx: AppContext, uploaded, folder_text: str | None) -> list[str]:
    """The uploads plus the media in the server folder; ValueError says why there is nothing to run."""
    chosen = paths(uploaded)
    if folder_text and folder_text.strip():
        found = list_media(ctx.settings.check_batch_folder(folder_text))
        if not found:
            raise ValueError(f"No audio or video files in {folder_text.strip()}.")
        chosen += [str(p) for p in found]
    if not chosen:
        raise ValueError("Add files or enter a server folder first.")
    limit = ctx.settings.max_batch_files
    if len(chosen) > limit:
        raise ValueError(f"{len(chosen)} files: a batch on this server takes at most {limit}. Split it up.")
    return chosen


def _rows(states: list[JobState], refused: list[dict]) -> list[list]:
    """One row a file: its status, the audio done of its length, how long it took (or its ETA
    while it runs), and its text, error or place in the queue."""
    out = []
    for i, s in enumerate(states, 1):
        progress = f"{clock_text(s.audio_done if not s.finished else s.duration * s.percent / 100)} of " \
                   f"{clock_text(s.duration)} ({s.percent:.0f}%)"
        if s.status == RUNNING:
            took = f"ETA {fmt_seconds(s.eta_seconds)}" if s.eta_seconds is not None else "ETA estimating…"
        elif s.finished and s.started_at is not None:
            took = f"took {fmt_seconds(s.elapsed)}"
        else:
            took = "–"
        if s.status == DONE and s.transcript is not None:
            body = s.transcript.text_itn or s.transcript.text
            message = body[:80] + ("…" if len(body) > 80 else "")
        else:
            message = s.error or ("" if s.status == RUNNING else s.message)
        out.append([i, s.file_name, s.status, progress, took, message])
    for j, r in enumerate(refused, len(states) + 1):
        out.append([j, r["file"], "refused", "", "", r["error"]])
    return out


def _overall_html(states: list[JobState], refused: list[dict], eta: float | None = None) -> str:
    total = len(states) + len(refused)
    finished = sum(s.finished for s in states) + len(refused)
    done = sum(s.status == DONE for s in states)
    audio = sum(s.duration for s in states)
    audio_done = sum(s.duration if s.finished else s.audio_done for s in states)
    percent = 100.0 * audio_done / audio if audio > 0 else (100.0 if finished == total else 0.0)
    running = next((s for s in states if s.status == RUNNING), None)
    line = (f"<b>{finished} of {total} finished</b> · {done} transcribed · "
            f"{clock_text(audio_done)} of {clock_text(audio)} of audio ({percent:.0f}%)")
    if running is not None:
        line += f" · now: {html.escape(running.file_name)}"
    if finished < total:
        line += f" · ETA {fmt_seconds(eta)}" if eta is not None else " · ETA estimating…"
    return progress_html("done" if finished == total else "running", line, percent)
