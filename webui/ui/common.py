"""Formatting helpers, constants and small types shared by the tabs."""

from __future__ import annotations

import html
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, NamedTuple

import gradio as gr

from ..context import LOCAL, AppContext
from ..modules import script
from ..modules.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobState
from ..modules.progress import work_line
from ..modules.transcript import format_timestamp, render

POLL_SECONDS = 0.5
RECENT_SECONDS = 3600  # a job or batch that ended this recently is shown again when a page opens
LANGUAGES = ["auto", "en", "zh", "yue", "ja", "ko", "de", "fr", "es", "it", "pt", "ru", "nl", "ar", "hi"]
SCRIPT_CHOICES = [(label, code) for code, label in script.LABELS.items()]  # Chinese output script
# The accurate mode's box on the Transcribe and Batch tabs (options.PRESETS: a beam of 5 for every
# language and Whisper's temperature fallback; the cost measured in the README's benchmarks).
ACCURATE_LABEL = "Accurate mode"
ACCURATE_INFO = "beam 5 and temperature fallback: fewer errors, 1.3-2x the time"
MAX_SEGMENT_CHOICES = ["auto", "45", "60", "90"]
# Handlers that only read or tidy up: never queued behind jobs, never in the public API.
PRIVATE = {"concurrency_limit": None, "api_visibility": "private"}
# ... and that draw our own progress, so Gradio's overlay (its queue place and ETA) stays off them.
QUIET = {**PRIVATE, "show_progress": "hidden"}

CSS = """
.job-status { font-size: 0.95rem; padding: 6px 2px; min-height: 3.2em; }
.job-status .line { margin-bottom: 6px; }
.job-status .bar { height: 12px; background: var(--neutral-200, #e5e7eb); border-radius: 6px; overflow: hidden; }
.job-status .fill { height: 100%; background: var(--color-accent, #f97316); transition: width 0.4s; }
.job-status.done .fill { background: #16a34a; }
.job-status.failed .fill, .job-status.cancelled .fill { background: #dc2626; }
.job-status .error { color: #b91c1c; font-weight: 600; }
.job-status .warning { color: #92400e; background: #fef3c7; border-left: 3px solid #d97706;
  padding: 3px 8px; margin-top: 6px; border-radius: 3px; }
.muted { color: var(--body-text-color-subdued, #6b7280); }
/* Gradio's file list labels 1024-based sizes "MB"; our own lines give decimal MB instead. */
.file-preview td.download a { font-size: 0; display: inline-block; }
.file-preview td.download a::after { content: "⇣"; font-size: var(--text-md, 14px); }
/* Our progress blocks are the progress view: no Gradio spinner or queue estimate over them. */
.live-output [data-testid="status-tracker"] { display: none !important; }
"""
CSS += (Path(__file__).resolve().parent / "assets" / "transcript_view.css").read_text(encoding="utf-8")

_STAGES = {"loading": "Loading the model", "scan": "Finding silences", "transcribe": "Transcribing",
           "itn": "Normalising text"}


class OnLoad(NamedTuple):
    """Components a tab fills when a page opens, and a function giving their values in the same order."""

    outputs: list
    values: Callable[[gr.Request], tuple]  # who opened the page decides some values


_MARKDOWN_SIGNS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&])")


def md_text(value: object) -> str:
    """Anything a user sent (names, hotwords, errors quoting them, settings), made literal text
    inside a Markdown component: every Markdown and HTML sign is backslash-escaped, so no element,
    link or emphasis can come from it, and line breaks become spaces."""
    text = " ".join(str(value).split())
    return _MARKDOWN_SIGNS.sub(r"\\\1", text)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_bytes(n: int | None) -> str:
    """Memory, 1024-based and labelled so (KiB, MiB, GiB), as GPU tools show it."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{n} B"


def fmt_size(n: int | None) -> str:
    """A file's size in decimal units (1 MB = 1,000,000 bytes), as file managers show it."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{n} B"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def progress_html(css: str, line: str, percent: float, notes: tuple[str, ...] = ()) -> str:
    """A status line over a progress bar (styled by CSS above), then any notes as warnings."""
    warnings = "".join(f'<div class="warning">{html.escape(n)}</div>' for n in notes)
    return (f'<div class="job-status {css}"><div class="line">{line}</div>'
            f'<div class="bar"><div class="fill" style="width:{percent:.1f}%"></div></div>{warnings}</div>')


def status_html(state: JobState | None, error: str = "") -> str:
    """The progress block: stage, percent, ETA or place in the queue, a bar, and any warnings."""
    if error:
        return f'<div class="job-status failed"><div class="line error">{html.escape(error)}</div></div>'
    if state is None:
        return note_html("Choose a recording and press Start.")
    percent = 100.0 if state.status == DONE else state.percent
    return progress_html(state.status, _status_line(state), percent, state.warnings if state.finished else ())


def note_html(text: str, css: str = "") -> str:
    """A one-line status block in the muted style (idle, starting, ready)."""
    return f'<div class="job-status {css}"><div class="line muted">{text}</div></div>'


def _status_line(state: JobState) -> str:
    name = html.escape(state.file_name)
    if state.status == QUEUED:
        line = (f"<b>Waiting</b> · {name} is {ordinal(state.ahead + 1)} in the queue "
                f"({html.escape(state.message)})")
        if state.eta_seconds is not None:
            line += f" · about {fmt_seconds(state.eta_seconds)} until done"
        return line
    if state.status == RUNNING:
        stage = _STAGES.get(state.stage, state.stage.capitalize())
        line = f"<b>{stage}</b> · {name}"
        if state.stage in ("loading", "scan", "queued"):  # before the model: nothing to count yet
            line += f" · {fmt_seconds(state.duration)} of audio"
        else:  # one counter that moves with the work: seconds of audio done, of the total
            line += f" · {work_line(state.audio_done, state.duration)}"
            eta = state.eta_seconds  # from this job's own rate; none until it has one
            if state.stage != "itn":
                line += f" · ETA {fmt_seconds(eta)}" if eta is not None else " · ETA estimating…"
        if state.message == "cancelling…":
            line += " · cancelling…"
        return line
    if state.status == DONE:
        took = f"{fmt_seconds(state.duration)} of audio in {fmt_seconds(state.elapsed)}"
        if state.prior_seconds:
            took += " (over a restart)"
        return f"<b>Done</b> · {name} · {took}"
    kept = (f" · partial transcript kept: {len(state.segments)} line(s), downloads below are partial"
            if has_partial(state) else " · nothing was transcribed")
    if state.status == CANCELLED:
        return f"<b>Cancelled</b> · {name}{kept}"
    return f'<span class="error">Failed: {html.escape(state.error)}</span>{kept}'


def status_word(state: JobState) -> str:
    """A job's status in a few words: 'queued, 2nd in line', 'running 34%', or how it ended."""
    if state.status == QUEUED:
        return f"queued, {ordinal(state.ahead + 1)} in line"
    if state.status == RUNNING:
        return f"running {state.percent:.0f}%"
    return state.status


def has_partial(state: JobState) -> bool:
    """A cancelled or failed job that kept finished text (offered for download as partial)."""
    return state.status in (CANCELLED, FAILED) and state.transcript is not None and bool(state.segments)


def segments_text(state: JobState) -> str:
    """The final transcript once done; until then the lines so far (each finished batch's too),
    one timestamped line each, in time order."""
    if state.transcript is not None and state.status == DONE:
        return render(state.transcript, "txt")
    return "\n".join(f"[{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}] {s.display_text}"
                     for s in state.lines)


def user_of(ctx: AppContext, request: gr.Request | None) -> str:
    """Who owns the jobs a page submits: the login name with logins, else the one local user
    (everyone on the server). Not the browser session, which a reload replaces."""
    return ctx.visitor(request).name


def user_jobs(ctx: AppContext, request: gr.Request | None) -> list[JobState]:
    """The user's jobs, oldest first; locally also those recorded before jobs had owners."""
    user = user_of(ctx, request)
    return [s for s in ctx.queue.jobs() if s.owner == user or (user == LOCAL and not s.owner)]


class Screens:
    """What each open page shows (a job id, a batch group), by Gradio session: a loop following
    one stops as soon as its page has moved on (Start, another job, a new upload)."""

    def __init__(self, keep: int = 1000) -> None:
        self._shown: OrderedDict[str, str] = OrderedDict()
        self._keep = keep  # sessions remembered; a closed page's entry is dropped in time
        self._lock = threading.Lock()

    def show(self, request: gr.Request | None, key: str) -> None:
        session = getattr(request, "session_hash", None) or ""
        with self._lock:
            self._shown[session] = key
            self._shown.move_to_end(session)
            while len(self._shown) > self._keep:
                self._shown.popitem(last=False)

    def current(self, request: gr.Request | None) -> str:
        with self._lock:
            return self._shown.get(getattr(request, "session_hash", None) or "", "")

    def shows(self, request: gr.Request | None, key: str) -> bool:
        return bool(key) and self.current(request) == key


def file_path(value) -> str | None:
    """One path from a File/Audio value (a path, or a list holding one)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return str(value) if value else None


def paths(values) -> list[str]:
    """Every path from a multi-file value (None, one path or a list)."""
    if not values:
        return []
    if not isinstance(values, (list, tuple)):
        values = [values]
    return [str(v) for v in values if v]


def account_html(ctx: AppContext, request: gr.Request | None) -> str:
    """Who is logged in, and the way out (Gradio's /logout, there when the server has logins)."""
    if not ctx.logins:
        return '<div class="whoami muted">Local use: no logins on this server.</div>'
    visitor = ctx.visitor(request)
    role = " (administrator)" if visitor.is_admin else ""
    return (f'<div class="whoami">Logged in as <b>{html.escape(visitor.name)}</b>{role}'
            '<a href="/logout" id="logout">Log out</a></div>')


def no_downloads(count: int) -> list:
    """Updates that empty and disable `count` download buttons."""
    return [gr.DownloadButton(value=None, interactive=False)] * count
