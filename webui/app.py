"""The web application: Gradio Blocks over the job queue, the pipeline, History and gpu.

    python -m webui.app [--host 127.0.0.1] [--port 7860] [--auth user:pass] [--settings FILE] [--history FILE]

Layout and event wiring only: transcription goes through `jobs.JobQueue` (one job at a time
on the GPU, shared by every browser session and the API), search and housekeeping through
`history.History`, memory figures and cleanup through `gpu`, settings through `settings`.
"""

from __future__ import annotations

from .offline import enforce_offline

enforce_offline()

import argparse  # noqa: E402
import html  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no version check or telemetry at import/launch

import gradio as gr  # noqa: E402

from . import api  # noqa: E402
from .modules import itn  # noqa: E402
from .modules import settings as settings_mod  # noqa: E402
from .modules.audio import InputError  # noqa: E402
from .modules.engines import EngineError, loaded_engine  # noqa: E402
from .modules.history import History  # noqa: E402
from .modules.vad import VAD_BACKENDS
from .modules.vad_view import VadInspection, engine_cap_for, inspect_vad
from .modules.jobs import (  # noqa: E402
    CANCELLED, DONE, QUEUED, RUNNING, JobQueue, JobState,
    list_media, write_batch_outputs, write_transcript_files,
)
from .modules.settings import AppSettings  # noqa: E402
from .modules.transcript import FORMATS, render  # noqa: E402

log = logging.getLogger("webui.app")

POLL_SECONDS = 0.5
LANGUAGES = ["auto", "en", "zh", "yue", "ja", "ko", "de", "fr", "es", "it", "pt", "ru", "nl", "ar", "hi"]
MAX_SEGMENT_CHOICES = ["auto", "45", "60", "90"]
HISTORY_HEADERS = ["ID", "Created (UTC)", "File", "Duration", "Model", "Status", "Text"]
BATCH_HEADERS = ["#", "File", "Status", "Progress", "Queue", "Length", "Text or message"]
VAD_HEADERS = ["#", "Start", "End", "Length (s)", "Speech (s)", "Speech spans"]

CSS = """
.job-status { font-size: 0.95rem; padding: 6px 2px; min-height: 3.2em; }
.job-status .line { margin-bottom: 6px; }
.job-status .bar { height: 12px; background: var(--neutral-200, #e5e7eb); border-radius: 6px; overflow: hidden; }
.job-status .fill { height: 100%; background: var(--color-accent, #f97316); transition: width 0.4s; }
.job-status.done .fill { background: #16a34a; }
.job-status.failed .fill, .job-status.cancelled .fill { background: #dc2626; }
.job-status .error { color: #b91c1c; font-weight: 600; }
.muted { color: var(--body-text-color-subdued, #6b7280); }
"""


# --- application state ---------------------------------------------------------------


@dataclass
class AppContext:
    """Everything the handlers share: settings (saved on change), History and the job queue."""

    settings: AppSettings
    settings_path: Path
    history: History
    queue: JobQueue
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings_path: Path, history_path: str | None = None) -> "AppContext":
        current = settings_mod.load(settings_path)
        if history_path:
            current = current.with_changes(history_path=history_path)
        history = History(current.history_path)
        itn.set_enabled(current.itn)
        return cls(current, settings_path, history, JobQueue(history))

    @property
    def results_dir(self) -> Path:
        return Path(self.settings.results_dir).resolve()

    def update(self, new: AppSettings) -> str:
        """Save and apply new settings; returns a note on what changed."""
        with self._lock:
            old = self.settings
            if new.history_path != old.history_path:
                self.history.path = new.history_path  # creates/migrates the new file first
            settings_mod.save(new, self.settings_path)
            self.settings = new
            itn.set_enabled(new.itn)
        notes = [f"Saved to {self.settings_path}."]
        if new.engine_settings() != old.engine_settings():
            notes.append("Model settings apply from the next job.")
        if new.upload_dir != old.upload_dir:
            notes.append("The upload folder changes after a restart.")
        return " ".join(notes)


# --- small formatting helpers -----------------------------------------------------------


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{n} B"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def status_html(state: JobState | None, error: str = "") -> str:
    """The progress block: stage, percent, ETA or place in the queue, and a bar."""
    if error:
        return f'<div class="job-status failed"><div class="line error">{html.escape(error)}</div></div>'
    if state is None:
        return '<div class="job-status"><div class="line muted">Choose a recording and press Start.</div></div>'
    name = html.escape(state.file_name)
    percent = state.percent
    if state.status == QUEUED:
        line = (f"<b>Waiting</b> · {name} is {ordinal(state.ahead + 1)} in the queue "
                f"({html.escape(state.message)})")
        if state.eta_seconds is not None:
            line += f" · about {fmt_seconds(state.eta_seconds)} until done"
    elif state.status == RUNNING:
        stage = {"loading": "Loading the model", "scan": "Finding silences", "transcribe": "Transcribing",
                 "itn": "Normalising text"}.get(state.stage, state.stage.capitalize())
        line = f"<b>{stage}</b> · {name} · {percent:.0f}%"
        if state.segments_total:
            line += f" · segment {state.segments_done} of {state.segments_total}"
        line += f" · ETA {fmt_seconds(state.eta_seconds)}" if state.eta_seconds is not None else " · ETA –"
        if state.message == "cancelling…":
            line += " · cancelling…"
    elif state.status == DONE:
        percent = 100.0
        took = fmt_seconds(state.elapsed)
        line = f"<b>Done</b> · {name} · {fmt_seconds(state.duration)} of audio in {took}"
    elif state.status == CANCELLED:
        line = f"<b>Cancelled</b> · {name}"
        line += f" · {len(state.segments)} segment(s) kept" if state.segments else " · nothing was transcribed"
    else:
        line = f'<span class="error">Failed: {html.escape(state.error)}</span>'
    return (f'<div class="job-status {state.status}"><div class="line">{line}</div>'
            f'<div class="bar"><div class="fill" style="width:{percent:.1f}%"></div></div></div>')


def segments_text(state: JobState) -> str:
    if state.transcript is not None and state.status == DONE:
        return render(state.transcript, "txt")
    from .modules.transcript import format_timestamp

    return "\n".join(f"[{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}] {s.display_text}"
                     for s in state.segments)


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def _file_path(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return str(value) if value else None


def _paths(values) -> list[str]:
    if not values:
        return []
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [str(v) for v in values if v]


# --- the page --------------------------------------------------------------------------


def build_ui(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Long-form transcription", analytics_enabled=False) as demo:
        gr.Markdown("## Long-form transcription\nOffline speech-to-text for long recordings, with timestamps.")
        with gr.Tabs(elem_id="tabs"):
            tx = _transcribe_tab(ctx)
            batch_refresh = _batch_tab(ctx)
            hist = _history_tab(ctx)
            _vad_tab(ctx)
            system = _system_tab(ctx)
        _api_endpoint(ctx)

        def on_load():
            s = ctx.settings
            return (s.model, s.language, s.hotwords, s.itn, *system["values"](), system["memory"](),
                    hist["rows"](), batch_refresh())

        demo.load(on_load, outputs=[*tx["quick"], *system["fields"], system["memory_md"], hist["table"],
                                    batch_refresh.output], api_visibility="private")
    demo.queue(default_concurrency_limit=8)
    return demo


def _transcribe_tab(ctx: AppContext) -> dict:
    with gr.Tab("Transcribe", id="transcribe", elem_id="tab-transcribe"):
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                upload = gr.File(label="Recording (audio or video)", file_count="single", type="filepath",
                                 elem_id="tx-upload")
                mic = gr.Audio(sources=["microphone"], type="filepath", format="wav",
                               label="…or record from the microphone", elem_id="tx-mic")
                with gr.Accordion("Quick options", open=True):
                    model = gr.Textbox(label="Model", placeholder="whisper-base (bundled); or a FunASR model id / folder",
                                       elem_id="tx-model")
                    with gr.Row():
                        language = gr.Dropdown(LANGUAGES, value="auto", allow_custom_value=True, label="Language",
                                               elem_id="tx-language")
                        itn_box = gr.Checkbox(value=True, label="ITN (numbers as digits)", elem_id="tx-itn")
                    hotwords = gr.Textbox(label="Hotwords", placeholder="comma-separated names and terms",
                                          elem_id="tx-hotwords")
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="tx-start")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="tx-cancel")
            with gr.Column(scale=3, min_width=420):
                progress = gr.HTML(status_html(None), elem_id="tx-progress")
                text = gr.Textbox(label="Transcript", lines=14, max_lines=30, interactive=False,
                                  buttons=["copy"], elem_id="tx-text")
                player = gr.Audio(label="Audio", interactive=False, type="filepath", elem_id="tx-player")
                with gr.Row():
                    downloads = [gr.DownloadButton(f"{fmt.upper()}", value=None, interactive=False, size="sm",
                                                   elem_id=f"tx-dl-{fmt}") for fmt in FORMATS]
        job_id = gr.State("")

    def follow(jid: str):
        last_count = -1
        while True:
            state = ctx.queue.get(jid)
            if state is None:
                yield jid, status_html(None, "This job is no longer known to the server."), gr.skip(), gr.skip(), \
                    *[gr.skip()] * len(FORMATS)
                return
            count = len(state.segments) if not state.finished else -2
            new_text = segments_text(state) if count != last_count else gr.skip()
            last_count = count
            if not state.finished:
                yield jid, status_html(state), new_text, gr.skip(), *[gr.skip()] * len(FORMATS)
                time.sleep(POLL_SECONDS)
                continue
            buttons = [gr.DownloadButton(value=None, interactive=False)] * len(FORMATS)
            if state.transcript is not None and state.segments and state.status in (DONE, CANCELLED):
                files = write_transcript_files(state.transcript, ctx.results_dir / state.id, state.file_name)
                buttons = [gr.DownloadButton(value=str(files[f]), interactive=True) for f in FORMATS]
            yield jid, status_html(state), new_text, gr.skip(), *buttons
            return

    def start_job(upload_path, mic_path, model_name, lang, hot, itn_on, request: gr.Request):
        path = _file_path(upload_path) or _file_path(mic_path)
        cleared = [gr.DownloadButton(value=None, interactive=False)] * len(FORMATS)
        if not path:
            yield "", status_html(None, "Choose a recording first: upload a file or record from the microphone."), \
                gr.skip(), gr.skip(), *cleared
            return
        try:
            options = ctx.settings.to_pipeline_options(model=(model_name or "").strip(), language=lang or "auto",
                                                       hotwords=hot or "", itn=bool(itn_on))
            jid = ctx.queue.submit(path, options, owner=session_of(request))
        except InputError as exc:
            message = f"Cannot transcribe {Path(path).name}: {exc.reason}."
            gr.Warning(message)
            yield "", status_html(None, message), "", None, *cleared
            return
        except ValueError as exc:
            yield "", status_html(None, str(exc)), gr.skip(), gr.skip(), *cleared
            return
        yield jid, status_html(ctx.queue.get(jid)), "", path, *cleared
        yield from follow(jid)

    def cancel_job(jid: str):
        if jid and ctx.queue.cancel(jid):
            gr.Info("Cancelling…")

    outputs = [job_id, progress, text, player, *downloads]
    start.click(start_job, inputs=[upload, mic, model, language, hotwords, itn_box], outputs=outputs,
                concurrency_limit=None, show_progress="hidden", api_visibility="private")
    cancel.click(cancel_job, inputs=[job_id], outputs=None, concurrency_limit=None, api_visibility="private")
    return {"quick": [model, language, hotwords, itn_box]}


class _Refresher:
    """A function plus the component it fills, so build_ui can wire it to page load."""

    def __init__(self, fn, output):
        self.fn, self.output = fn, output

    def __call__(self):
        return self.fn()


def _batch_tab(ctx: AppContext) -> _Refresher:
    with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
        gr.Markdown("Many files, processed one at a time with the settings from the System tab. "
                    "Every file is also recorded in History.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                files = gr.File(label="Recordings", file_count="multiple", type="filepath", elem_id="batch-files")
                folder = gr.Textbox(label="…or a folder on the server", elem_id="batch-folder",
                                    placeholder="a folder under one of the allowed folders below")
                roots = gr.Markdown(elem_id="batch-roots")
                with gr.Row():
                    start = gr.Button("Start batch", variant="primary", elem_id="batch-start")
                    cancel = gr.Button("Cancel batch", variant="stop", elem_id="batch-cancel")
            with gr.Column(scale=3, min_width=420):
                overall = gr.HTML('<div class="job-status"><div class="line muted">No batch yet.</div></div>',
                                  elem_id="batch-status")
                table = gr.Dataframe(headers=BATCH_HEADERS, value=[], interactive=False, wrap=True,
                                     column_widths=["5%", "24%", "11%", "12%", "9%", "10%", "29%"],
                                     elem_id="batch-table")
                with gr.Row():
                    dl_csv = gr.DownloadButton("Summary CSV", interactive=False, size="sm", elem_id="batch-dl-csv")
                    dl_json = gr.DownloadButton("Summary JSON", interactive=False, size="sm", elem_id="batch-dl-json")
                    dl_zip = gr.DownloadButton("All transcripts (zip)", interactive=False, size="sm",
                                               elem_id="batch-dl-zip")
        group_state = gr.State("")

    def roots_text() -> str:
        listed = "\n".join(f"- `{p}`" for p in ctx.settings.allowed_roots())
        return f"Allowed server folders:\n{listed}"

    def rows(states: list[JobState], refused: list[dict]) -> list[list]:
        out = []
        for i, s in enumerate(states, 1):
            queue = ordinal(s.ahead + 1) if s.status == QUEUED else ("now" if s.status == RUNNING else "")
            if s.status == DONE and s.transcript is not None:
                body = s.transcript.text_itn or s.transcript.text
                message = body[:80] + ("…" if len(body) > 80 else "")
            elif s.status == RUNNING and s.eta_seconds is not None:
                message = f"ETA {fmt_seconds(s.eta_seconds)}"
            else:
                message = s.error or s.message
            out.append([i, s.file_name, s.status, f"{s.percent:.0f}%", queue, fmt_seconds(s.duration), message])
        for j, r in enumerate(refused, len(states) + 1):
            out.append([j, r["file"], "refused", "", "", "", r["error"]])
        return out

    def overall_html(states: list[JobState], refused: list[dict]) -> str:
        total = len(states) + len(refused)
        finished = sum(s.finished for s in states) + len(refused)
        done = sum(s.status == DONE for s in states)
        percent = (sum(s.percent for s in states) + 100.0 * len(refused)) / total if total else 0.0
        running = next((s for s in states if s.status == RUNNING), None)
        line = f"<b>{finished} of {total} finished</b> · {done} transcribed · {percent:.0f}%"
        if running is not None:
            line += f" · now: {html.escape(running.file_name)} ({running.percent:.0f}%)"
        css = "done" if finished == total else "running"
        return (f'<div class="job-status {css}"><div class="line">{line}</div>'
                f'<div class="bar"><div class="fill" style="width:{percent:.1f}%"></div></div></div>')

    def start_batch(uploaded, folder_text, request: gr.Request):
        off = [gr.DownloadButton(value=None, interactive=False)] * 3
        paths = _paths(uploaded)
        if folder_text and folder_text.strip():
            try:
                found = list_media(ctx.settings.check_batch_folder(folder_text))
            except ValueError as exc:
                yield "", status_html(None, str(exc)), [], *off
                return
            if not found:
                yield "", status_html(None, f"No audio or video files in {folder_text.strip()}."), [], *off
                return
            paths += [str(p) for p in found]
        if not paths:
            yield "", status_html(None, "Add files or enter a server folder first."), [], *off
            return
        group = uuid.uuid4().hex[:12]
        options = ctx.settings.to_pipeline_options()
        refused: list[dict] = []
        latest: dict[str, JobState] = {}  # last state seen per job, in submission order
        for path in paths:
            try:
                jid = ctx.queue.submit(path, options, owner=session_of(request), group=group)
            except InputError as exc:
                refused.append({"file": Path(path).name, "error": exc.reason})
                continue
            latest[jid] = ctx.queue.get(jid)
        while True:
            for jid, old in latest.items():
                if not old.finished:
                    latest[jid] = ctx.queue.get(jid) or old
            states = list(latest.values())
            if all(s.finished for s in states):
                break
            yield group, overall_html(states, refused), rows(states, refused), *[gr.skip()] * 3
            time.sleep(POLL_SECONDS)
        out = write_batch_outputs(states, ctx.results_dir / f"batch-{group}", extra_rows=refused)
        buttons = [gr.DownloadButton(value=str(out[k]), interactive=True) for k in ("csv", "json", "zip")]
        yield group, overall_html(states, refused), rows(states, refused), *buttons

    def cancel_batch(group: str):
        if group:
            n = ctx.queue.cancel_group(group)
            if n:
                gr.Info(f"Cancelling {n} job(s)…")

    start.click(start_batch, inputs=[files, folder], outputs=[group_state, overall, table, dl_csv, dl_json, dl_zip],
                concurrency_limit=None, show_progress="hidden", api_visibility="private")
    cancel.click(cancel_batch, inputs=[group_state], outputs=None, concurrency_limit=None,
                 api_visibility="private")
    return _Refresher(roots_text, roots)


def _history_tab(ctx: AppContext) -> dict:
    with gr.Tab("History", id="history", elem_id="tab-history"):
        with gr.Row():
            q_text = gr.Textbox(label="Text", placeholder="words in the transcript or file name", elem_id="hist-text",
                                scale=3)
            q_name = gr.Textbox(label="File name", elem_id="hist-name", scale=2)
            q_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="hist-from", scale=1)
            q_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="hist-to", scale=1)
            q_archived = gr.Checkbox(label="Include archived", scale=1)
        with gr.Row():
            search = gr.Button("Search", variant="primary", elem_id="hist-search")
            search_msg = gr.Markdown(elem_id="hist-msg")
        table = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False, wrap=True, max_height=360,
                             column_widths=["6%", "15%", "17%", "8%", "12%", "9%", "33%"], elem_id="hist-table")
        with gr.Row():
            job = gr.Number(value=None, label="Job ID (or click a row)", precision=0, elem_id="hist-id", scale=1)
            view = gr.Button("View", elem_id="hist-view", scale=1)
            delete = gr.Button("Delete", variant="stop", elem_id="hist-delete", scale=1)
        details = gr.Markdown(elem_id="hist-details")
        with gr.Row():
            downloads = [gr.DownloadButton(fmt.upper(), interactive=False, size="sm", elem_id=f"hist-dl-{fmt}")
                         for fmt in FORMATS]
        job_text = gr.Textbox(label="Transcript", lines=8, max_lines=20, interactive=False, elem_id="hist-job-text")
        with gr.Accordion("Job settings", open=False):
            job_settings = gr.JSON(show_label=False)
        with gr.Accordion("Housekeeping", open=False):
            gr.Markdown(f"Database: `{ctx.history.path}` (WAL mode). Archived jobs are hidden from searches "
                        "unless 'Include archived' is ticked.")
            with gr.Row():
                days = gr.Number(value=30, precision=0, minimum=0, label="Archive jobs older than (days)",
                                 elem_id="hist-days")
                archive = gr.Button("Archive", elem_id="hist-archive")
                vacuum = gr.Button("VACUUM", elem_id="hist-vacuum")
            house_msg = gr.Markdown(elem_id="hist-house-msg")

    def rows(text="", name="", date_from="", date_to="", archived=False) -> list[list]:
        found = ctx.history.search(text=text or "", name=name or "", date_from=(date_from or "").strip() or None,
                                   date_to=(date_to or "").strip() or None, include_archived=bool(archived))
        out = []
        for r in found:
            body = r.text_itn or r.text or r.error
            out.append([r.id, r.created_at[:19].replace("T", " "), r.file_name, fmt_seconds(r.duration),
                        r.model, r.status + (" (archived)" if r.archived else ""),
                        body[:120] + ("…" if len(body) > 120 else "")])
        return out

    def do_search(text, name, date_from, date_to, archived):
        try:
            found = rows(text, name, date_from, date_to, archived)
        except ValueError as exc:
            return gr.skip(), f"**{exc}**"
        return found, f"{len(found)} job(s) found."

    def show(job_id):
        none = [gr.DownloadButton(value=None, interactive=False)] * len(FORMATS)
        if job_id is None:
            return "Enter a job ID or click a row.", *none, "", None
        record = ctx.history.get(int(job_id))
        if record is None:
            return f"No job {int(job_id)} in History.", *none, "", None
        lines = [
            f"**Job {record.id}: {record.file_name}** · {record.status}"
            + (" (archived)" if record.archived else ""),
            f"Duration {fmt_seconds(record.duration)} · model `{record.model}` · language {record.language or '–'}",
            f"Created {record.created_at[:19]} · started {(record.started_at or '–')[:19]} · "
            f"finished {(record.finished_at or '–')[:19]} (UTC)",
        ]
        if record.error:
            lines.append(f"Error: {record.error}")
        buttons = none
        body = ""
        if record.segments:
            transcript = record.to_transcript()
            files = write_transcript_files(transcript, ctx.results_dir / f"history-{record.id}", record.file_name)
            buttons = [gr.DownloadButton(value=str(files[f]), interactive=True) for f in FORMATS]
            body = render(transcript, "txt")
        if record.text_itn and record.text and record.text_itn != record.text:
            lines.append(f"Raw text (before ITN): {record.text}")
        return "  \n".join(lines), *buttons, body, record.settings

    def pick(evt: gr.SelectData):
        row = evt.row_value or []
        return int(row[0]) if row else gr.skip()

    def remove(job_id, text, name, date_from, date_to, archived):
        if job_id is None:
            return "Enter a job ID or click a row.", gr.skip()
        ok = ctx.history.delete(int(job_id))
        message = f"Deleted job {int(job_id)}." if ok else f"No job {int(job_id)} in History."
        try:
            return message, rows(text, name, date_from, date_to, archived)
        except ValueError:
            return message, gr.skip()

    def do_archive(n):
        try:
            count = ctx.history.archive_older_than(int(n if n is not None else -1))
        except ValueError as exc:
            return f"**{exc}**"
        return f"Archived {count} job(s) older than {int(n)} day(s)."

    def do_vacuum():
        before = _db_size(ctx.history.path)
        ctx.history.vacuum()
        after = _db_size(ctx.history.path)
        return f"VACUUM done: {fmt_bytes(before)} → {fmt_bytes(after)}."

    query = [q_text, q_name, q_from, q_to, q_archived]
    common = {"concurrency_limit": None, "api_visibility": "private"}
    search.click(do_search, inputs=query, outputs=[table, search_msg], **common)
    q_text.submit(do_search, inputs=query, outputs=[table, search_msg], **common)
    view_outputs = [details, *downloads, job_text, job_settings]
    view.click(show, inputs=[job], outputs=view_outputs, **common)
    table.select(pick, outputs=[job], **common).then(show, inputs=[job], outputs=view_outputs, **common)
    delete.click(remove, inputs=[job, *query], outputs=[details, table], **common)
    archive.click(do_archive, inputs=[days], outputs=[house_msg], **common).then(
        do_search, inputs=query, outputs=[table, search_msg], **common)
    vacuum.click(do_vacuum, outputs=[house_msg], **common)
    return {"table": table, "rows": rows}


def _db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _vad_tab(ctx: AppContext) -> None:
    with gr.Tab("VAD inspection", id="vad", elem_id="tab-vad"):
        gr.Markdown("Runs only the silence scan, the segment cut plan and VAD (no model): "
                    "check how a recording will be split before transcribing it.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                vad_file = gr.File(label="Recording", type="filepath", elem_id="vad-file")
                vad_max = gr.Dropdown(MAX_SEGMENT_CHOICES, value="auto", allow_custom_value=True,
                                      label="Maximum segment length (s)", elem_id="vad-max")
                run = gr.Button("Inspect", variant="primary", elem_id="vad-run")
            with gr.Column(scale=3, min_width=420):
                summary = gr.Markdown(elem_id="vad-summary")
                gr.Markdown("Waveform in blue, detected speech shaded green, segment cuts in red (numbered).",
                            elem_classes=["muted"])
                plot = gr.Image(show_label=False, type="pil", interactive=False, format="png", elem_id="vad-plot")
                table = gr.Dataframe(headers=VAD_HEADERS, value=[], interactive=False, max_height=320,
                                     elem_id="vad-table")

    def inspect(path, max_text):
        path = _file_path(path)
        if not path:
            return "Choose a recording first.", None, []
        try:
            base = ctx.settings.with_changes(max_segment=max_text or "auto")
        except ValueError as exc:
            return f"**{exc}**", None, []
        options = base.to_pipeline_options()
        try:
            cap = engine_cap_for(options.engine)
            result = inspect_vad(path, options, cap)
        except InputError as exc:
            return f"**Cannot read {Path(path).name}: {exc.reason}.**", None, []
        except (EngineError, ValueError) as exc:
            return f"**{exc}**", None, []
        lengths = result.lengths
        cap_note = f"{cap:g} s (model limit)" if cap else "unknown until the model is loaded"
        text = (
            f"**{len(lengths)} segment(s)** over {fmt_seconds(result.info.duration)} "
            f"({result.info.duration:.1f} s) · effective maximum segment length **{result.max_seconds:g} s** "
            f"(setting: {base.max_segment}; engine cap: {cap_note})  \n"
            f"Segment lengths: min {min(lengths):.1f} s · mean {sum(lengths) / len(lengths):.1f} s · "
            f"max {max(lengths):.1f} s · speech {result.speech_seconds:.1f} s "
            f"({100 * result.speech_seconds / max(result.info.duration, 1e-9):.0f}%)"
        ) if lengths else "No segments."
        table_rows = [[v.segment.index + 1, round(v.segment.start, 2), round(v.segment.end, 2),
                       round(v.segment.duration, 2), round(v.speech_seconds, 2), len(v.spans)]
                      for v in result.segments]
        return text, vad_plot(result), table_rows

    run.click(inspect, inputs=[vad_file, vad_max], outputs=[summary, plot, table], concurrency_limit=2,
              api_visibility="private")


def vad_plot(result: VadInspection, width: int = 1200, height: int = 260):
    """The waveform outline with speech spans shaded and segment cuts drawn (a PIL image)."""
    from PIL import Image, ImageDraw

    margin_left, margin_bottom, margin_top = 8, 26, 18
    plot_w, plot_h = width - 2 * margin_left, height - margin_bottom - margin_top
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    duration = max(result.info.duration, 1e-6)

    def x_of(t: float) -> int:
        return margin_left + int(round(plot_w * min(max(t / duration, 0.0), 1.0)))

    mid = margin_top + plot_h // 2
    for view in result.segments:
        for start, end in view.spans:
            draw.rectangle([x_of(start), margin_top, max(x_of(end), x_of(start) + 1), margin_top + plot_h],
                           fill=(22, 163, 74, 60))
    peaks = result.peaks
    top = float(peaks.max()) if peaks.size else 0.0
    scale = (plot_h / 2 - 2) / top if top > 0 else 0.0
    columns = max(1, plot_w)
    for col in range(columns):
        lo = int(col * peaks.size / columns)
        hi = max(lo + 1, int((col + 1) * peaks.size / columns))
        value = float(peaks[lo:hi].max()) if peaks.size else 0.0
        half = max(1, int(value * scale))
        draw.line([(margin_left + col, mid - half), (margin_left + col, mid + half)], fill=(37, 99, 235))
    for view in result.segments:
        x = x_of(view.segment.start)
        draw.line([(x, margin_top - 4), (x, margin_top + plot_h)], fill=(220, 38, 38), width=2)
        draw.text((x + 3, 2), str(view.segment.index + 1), fill=(220, 38, 38))
    draw.line([(x_of(duration), margin_top - 4), (x_of(duration), margin_top + plot_h)], fill=(220, 38, 38), width=2)
    draw.line([(margin_left, margin_top + plot_h), (margin_left + plot_w, margin_top + plot_h)], fill=(120, 120, 120))
    step = _tick_step(duration)
    tick = 0.0
    while tick <= duration + 1e-9:
        x = x_of(tick)
        draw.line([(x, margin_top + plot_h), (x, margin_top + plot_h + 4)], fill=(120, 120, 120))
        label = fmt_seconds(tick) if duration >= 60 else f"{tick:g}s"
        draw.text((min(x + 2, width - 40), margin_top + plot_h + 7), label, fill=(80, 80, 80))
        tick += step
    return image


def _tick_step(duration: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 12:
            return float(step)
    return 7200.0


def _system_tab(ctx: AppContext) -> dict:
    with gr.Tab("System", id="system", elem_id="tab-system"):
        with gr.Row():
            with gr.Column(scale=3, min_width=420):
                gr.Markdown("### Settings\nSaved to the settings file and kept across restarts.")
                with gr.Row():
                    device = gr.Dropdown(list(settings_mod.DEVICES), label="Device", elem_id="sys-device")
                    precision = gr.Dropdown(list(settings_mod.PRECISIONS), label="Precision", elem_id="sys-precision")
                    compile_box = gr.Checkbox(label="torch.compile", elem_id="sys-compile")
                model = gr.Textbox(label="Model", placeholder="empty = bundled whisper-base; or a FunASR model id / folder",
                                   elem_id="sys-model")
                with gr.Row():
                    margin = gr.Slider(0.0, 0.9, step=0.05, label="Batching memory margin (fraction kept free)",
                                       elem_id="sys-margin")
                    max_segment = gr.Dropdown(MAX_SEGMENT_CHOICES, allow_custom_value=True,
                                              label="VAD maximum segment length (auto = 45/60/90 s by length)",
                                              elem_id="sys-max-segment")
                    vad = gr.Dropdown(list(VAD_BACKENDS), label="VAD inside segments (librosa: fast CPU)",
                                      elem_id="sys-vad")
                with gr.Row():
                    language = gr.Dropdown(LANGUAGES, allow_custom_value=True, label="Default language",
                                           elem_id="sys-language")
                    itn_box = gr.Checkbox(label="ITN on", elem_id="sys-itn")
                hotwords = gr.Textbox(label="Default hotwords", elem_id="sys-hotwords")
                history_path = gr.Textbox(label="History database (history.db)", elem_id="sys-history")
                roots = gr.Textbox(label="Batch folders (one per line; server folders a batch may read)", lines=2,
                                   elem_id="sys-roots")
                save = gr.Button("Save settings", variant="primary", elem_id="sys-save")
                save_msg = gr.Markdown(elem_id="sys-save-msg")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### GPU memory")
                memory = gr.Markdown(elem_id="sys-memory")
                refresh = gr.Button("Refresh", size="sm", elem_id="sys-refresh")
                cleanup = gr.Button("Deep GPU cleanup", variant="primary", elem_id="sys-cleanup")
                unload = gr.Button("Unload model", variant="stop", elem_id="sys-unload")
                action = gr.Markdown(elem_id="sys-action")

    fields = [device, precision, compile_box, model, margin, max_segment, vad, language, itn_box, hotwords,
              history_path, roots]

    def values():
        s = ctx.settings
        return (s.device, s.precision, s.compile, s.model, s.memory_margin, str(s.max_segment).removesuffix(".0"),
                s.vad, s.language, s.itn, s.hotwords, s.history_path, "\n".join(s.batch_roots))

    def memory_md() -> str:
        from .modules import gpu

        stats = gpu.memory_stats()
        engine = loaded_engine()
        model_line = f"{engine.name} on {engine.device}" if engine is not None else "none loaded"
        used = stats.nvml_used if stats.nvml_used is not None else stats.allocated
        rows = [
            ("Device", stats.device), ("Model", model_line),
            ("Used" + (" (all processes, NVML)" if stats.nvml_used is not None else " (torch)"), fmt_bytes(used)),
            ("Allocated (torch)", fmt_bytes(stats.allocated)), ("Reserved", fmt_bytes(stats.reserved)),
            ("Peak", fmt_bytes(stats.peak)), ("Free", fmt_bytes(stats.free)), ("Total", fmt_bytes(stats.total)),
            ("Jobs in queue", str(ctx.queue.queue_length())),
        ]
        table = "| | Memory |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        if stats.device == "cpu":
            table += "\n\nNo CUDA GPU: figures are zero."
        return table

    def do_save(dev, prec, comp, mdl, marg, maxseg, vad_name, lang, itn_on, hot, hist, root_text):
        try:
            new = ctx.settings.with_changes(
                device=dev or "auto", precision=prec or "auto", compile=bool(comp), model=mdl or "",
                memory_margin=float(marg if marg is not None else 0.15), max_segment=maxseg or "auto",
                vad=vad_name or "librosa",
                language=lang or "auto", itn=bool(itn_on), hotwords=hot or "", history_path=hist or "history.db",
                batch_roots=tuple((root_text or "").splitlines()),
            )
            note = ctx.update(new)
        except (ValueError, OSError, RuntimeError) as exc:
            return f"**Not saved: {exc}**"
        return note

    def do_cleanup():
        result = api.deep_cleanup_json()
        before, after = result["before"], result["after"]
        return (f"**Deep GPU cleanup done.** Freed {fmt_bytes(result['freed_bytes'])} "
                f"({result['freed_bytes']:,} bytes).  \nReserved: {fmt_bytes(before['reserved'])} → "
                f"{fmt_bytes(after['reserved'])} · allocated: {fmt_bytes(before['allocated'])} → "
                f"{fmt_bytes(after['allocated'])}"), memory_md()

    def do_unload():
        _, message = ctx.queue.unload_model()
        return message, memory_md()

    common = {"concurrency_limit": None, "api_visibility": "private"}
    save.click(do_save, inputs=fields, outputs=[save_msg], **common)
    refresh.click(memory_md, outputs=[memory], **common)
    cleanup.click(do_cleanup, outputs=[action, memory], **common)
    unload.click(do_unload, outputs=[action, memory], **common)
    return {"fields": fields, "values": values, "memory": memory_md, "memory_md": memory}


def _api_endpoint(ctx: AppContext) -> None:
    """`/transcribe` for gradio_client: a file in; text, SRT and JSON out (through the same queue)."""
    with gr.Column(visible=False):
        a_file = gr.File(label="audio", type="filepath")
        a_model = gr.Textbox(label="model", value="")
        a_language = gr.Textbox(label="language", value="auto")
        a_hotwords = gr.Textbox(label="hotwords", value="")
        a_itn = gr.Checkbox(label="itn", value=True)
        a_text = gr.Textbox(label="text")
        a_srt = gr.Textbox(label="srt")
        a_json = gr.JSON(label="transcript")
        a_button = gr.Button("transcribe")

    def transcribe(path, model_name, language, hotwords, itn_on, request: gr.Request):
        path = _file_path(path)
        if not path:
            raise gr.Error("No audio file given.")
        options = ctx.settings.to_pipeline_options(model=(model_name or "").strip(), language=language or "auto",
                                                   hotwords=hotwords or "", itn=bool(itn_on))
        try:
            jid = ctx.queue.submit(path, options, owner=f"api:{session_of(request)}")
        except InputError as exc:
            raise gr.Error(f"Cannot transcribe {Path(path).name}: {exc.reason}") from None
        state = ctx.queue.wait(jid)
        if state.status != DONE or state.transcript is None:
            raise gr.Error(state.error or f"job {state.status}")
        t = state.transcript
        return t.text_itn or t.text, render(t, "srt"), t.to_dict()

    a_button.click(transcribe, inputs=[a_file, a_model, a_language, a_hotwords, a_itn],
                   outputs=[a_text, a_srt, a_json], api_name="transcribe", concurrency_limit=None,
                   api_description="Transcribe one recording; returns (text, SRT, transcript JSON).")


# --- starting --------------------------------------------------------------------------


def parse_auth(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise argparse.ArgumentTypeError(f"--auth wants user:password, not {value!r}")
        pairs.append((user, password))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webui.app",
        description="Start the web application (Gradio page plus /api/health and /api/deep_cleanup).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--auth", action="append", metavar="USER:PASS",
                        help="require a login (Gradio auth; HTTP Basic for /api/*); repeat for more users")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default $WEBUI_SETTINGS or ./settings.json)")
    parser.add_argument("--history", default=None, help="history database (default: the settings' history_path)")
    return parser


def create_server(settings_path: Path | None = None, history_path: str | None = None,
                  auth: list[tuple[str, str]] | None = None):
    """(FastAPI app, context): everything main() runs, without starting the server."""
    ctx = AppContext.create(settings_path or settings_mod.default_path(), history_path)
    upload_dir = Path(ctx.settings.upload_dir).resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # uploads land here (an allowed batch root)
    demo = build_ui(ctx)
    app = api.create_app(demo, ctx.queue, device=lambda: ctx.settings.device, auth=auth,
                         allowed_paths=[str(ctx.results_dir)], css=CSS)
    return app, ctx


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        auth = parse_auth(args.auth)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, ctx = create_server(args.settings, args.history, auth)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Web UI on http://{shown}:{args.port}  (history: {ctx.history.path.resolve()}; "
          f"settings: {Path(ctx.settings_path).resolve()})",
          flush=True)
    try:
        api.serve(app, args.host, args.port)
    finally:
        ctx.queue.shutdown(timeout=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
