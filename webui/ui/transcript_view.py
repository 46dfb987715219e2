"""The transcript view shared by the Transcribe and History tabs: a job's lines synced to its
audio (click a line to play from it; the line playing is highlighted and kept in view), speed,
search, and for the job's owner or the admin an editor whose every save is a new revision.

The page side is assets/transcript_view.js inside a gr.HTML; this module renders the lines
(every text escaped), points the player at the job's compressed copy (proxy_audio, served by
the owner-checked file route with range requests) and stores revisions (revisions.py), checking
the visitor and every line again: nothing the page sends is trusted.
"""

from __future__ import annotations

import asyncio
import html
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from ..context import LOCAL, AppContext, Visitor
from ..modules import proxy_audio, revisions
from ..modules.exports import write_transcript_files
from ..modules.history import JobRecord, RevisionConflict
from ..modules.revisions import EditError, Line
from ..modules.transcript import FORMATS
from .common import PRIVATE, fmt_seconds, md_text
from .speaker_view import speakers_html

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
JS = (ASSETS / "transcript_view.js").read_text(encoding="utf-8")
CSS = (ASSETS / "transcript_view.css").read_text(encoding="utf-8")
SPEEDS = ("0.5", "0.75", "1", "1.25", "1.5", "2")
FINISHED = ("done", "cancelled", "failed")
PLAYER_WAIT_SECONDS = 900.0  # a page waits this long for the player's copy, then says so


@dataclass(frozen=True)
class Shown:
    """What one view shows."""

    lines: list[Line]
    revision: int = 0            # the revision shown (0: the model's output)
    latest: int = 0              # the newest saved (what a save must build on)
    editable: bool = False
    note: str = ""
    player_url: str | None = None
    player_note: str = ""
    duration: float = 0.0
    file_name: str = ""
    extra: dict = field(default_factory=dict)
    speakers: str = ""           # talk time and turns (speaker_view.speakers_html: escaped there)
    language: str = ""           # the recording's: the browser picks glyphs and voices by it


def file_url(path: Path) -> str:
    """The file route's URL for a path in the results folder (file_guard checks its owner)."""
    return "/gradio_api/file=" + quote(str(path))


def view_html(shown: Shown) -> str:
    """The view's HTML. Every text and attribute that came from a model or a person is escaped."""
    e = html.escape
    if shown.player_url:
        player = f'<audio class="tv-audio" controls preload="metadata" src="{e(shown.player_url)}"></audio>'
    else:
        player = f'<span class="tv-player-note">{e(shown.player_note)}</span>'
    speeds = "".join(f'<option value="{s}"{" selected" if s == "1" else ""}>{s}×</option>' for s in SPEEDS)
    playing = ""  # speed and following only mean something with a player
    if shown.player_url:
        playing = (f'<label>Speed <select class="tv-speed" aria-label="Playback speed">{speeds}</select></label>'
                   '<label><input type="checkbox" class="tv-follow" checked> Follow playback</label>')
    edit = '<button type="button" class="tv-edit">Edit</button>' if shown.editable else ""
    editbar = ""
    if shown.editable:
        editbar = (
            '<div class="tv-editbar" hidden><b>Editing</b>'
            '<span>Click a line to change its text or its speaker badge.</span>'
            '<button type="button" class="tv-split">Split line at cursor</button>'
            '<button type="button" class="tv-merge">Merge with next line</button>'
            '<span>Rename speaker <select class="tv-rename-from" aria-label="Speaker to rename"></select> to '
            '<input class="tv-rename-to" aria-label="New name" maxlength="40" size="12"> '
            '<button type="button" class="tv-rename">Rename everywhere</button></span>'
            f'<button type="button" class="tv-save tv-primary">Save as revision {shown.latest + 1}</button>'
            '<button type="button" class="tv-cancel">Discard changes</button>'
            '<span class="tv-edit-msg" role="status"></span></div>')
    items = []
    for line in shown.lines:
        speaker = e(line.speaker or "")
        items.append(
            f'<li class="tv-line" data-start="{line.start:.3f}" data-end="{line.end:.3f}">'
            f'<button type="button" class="tv-time" title="Play from {fmt_seconds(line.start)}">'
            f'{fmt_seconds(line.start)}</button> <span class="tv-speaker">{speaker}</span> '
            f'{_other_language(line.language, shown.language)}'
            f'<span class="tv-text"{_lang(line.language)}>{e(line.text)}</span></li>')
    return (
        f'<div class="tv" data-latest="{shown.latest}" data-editable="{1 if shown.editable else 0}" '
        f'data-duration="{shown.duration:.3f}">'
        f'<div class="tv-bar">{player}{playing}<span class="tv-find">'
        '<input class="tv-search" type="search" placeholder="Search the transcript" aria-label="Search the transcript">'
        '<button type="button" class="tv-prev" title="Previous hit" aria-label="Previous hit">▲</button>'
        '<button type="button" class="tv-next" title="Next hit" aria-label="Next hit">▼</button>'
        '<span class="tv-hits" role="status"></span></span>'
        f'{edit}</div>{editbar}<div class="tv-note">{e(shown.note)}</div>{shown.speakers}'
        f'<ol class="tv-lines"{_lang(shown.language)}>{"".join(items)}</ol></div>')


def _other_language(language: str, recording: str) -> str:
    """A badge on a line in another language than the recording's: where the model switched, for
    a proofreader to check (a line of an English meeting heard as French is written in French)."""
    if not language or language == recording:
        return ""
    code = html.escape(language)
    return f'<span class="tv-lang" title="Written as language {code}">{code}</span> '


def _lang(language: str) -> str:
    """An HTML lang attribute for a language the model named (its code, escaped), or none: Han
    characters take Chinese or Japanese glyph forms by it, and a screen reader its voice."""
    return f' lang="{html.escape(language)}"' if language else ""


class TranscriptPanel:
    """The view and its revision controls, for one tab (`prefix` names their elements)."""

    def __init__(self, ctx: AppContext, prefix: str) -> None:
        self.ctx, self.prefix = ctx, prefix

    def build(self) -> None:
        self.job = gr.State(None)  # the History id the view shows: the server's, not the page's word
        self.view = gr.HTML("", js_on_load=JS, elem_id=f"{self.prefix}-transcript", apply_default_css=False)
        with gr.Row(equal_height=False):
            self.revs = gr.Dropdown([], value=None, label="Revisions (newest first)", visible=False, scale=4,
                                    elem_id=f"{self.prefix}-revs")
            self.restore = gr.Button("Restore this revision", visible=False, scale=1, size="sm",
                                     elem_id=f"{self.prefix}-restore")
        self.msg = gr.Markdown(elem_id=f"{self.prefix}-edit-msg")

    @property
    def outputs(self) -> list:
        return [self.job, self.view, self.revs, self.restore, self.msg]

    def wire(self, downloads: list) -> list:
        """Save (from the page's editor) and Restore; both also refresh `downloads`. Returns the
        two events, for a tab that shows more of the revision (History's speakers)."""
        saved = self.view.save(self.save, inputs=[self.job], outputs=[*self.outputs, *downloads], **PRIVATE)
        restored = self.restore.click(self.restore_revision, inputs=[self.job, self.revs],
                                      outputs=[*self.outputs, *downloads], **PRIVATE)
        return [saved, restored]

    @staticmethod
    def cleared() -> list:
        return [None, "", gr.Dropdown(choices=[], value=None, visible=False), gr.Button(visible=False), ""]

    # --- what a view shows ---------------------------------------------------------------

    def may_edit(self, record: JobRecord, visitor: Visitor) -> bool:
        mine = record.owner == visitor.name or (visitor.name == LOCAL and not record.owner)
        return record.status in FINISHED and bool(record.segments) and (visitor.is_admin or mine)

    def _copy(self, record: JobRecord) -> Path:
        """Where the job's player copy lives: a results folder of its own, stable per job."""
        token = proxy_audio.folder_token(record.id, record.created_at, record.file_path)
        return self.ctx.results_dir / token / proxy_audio.FILE_NAME

    def player(self, record: JobRecord) -> proxy_audio.Player:
        target = self._copy(record)
        try:
            self.ctx.history.add_download(target.parent.name, record.owner)  # served to the job's owner only
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not record the player folder's owner: %s", exc)
            return proxy_audio.Player("failed", None, "The player is unavailable: History cannot be written.")
        source = Path(record.file_path) if record.file_path else None
        return proxy_audio.MAKER.request(source, target)

    def shown(self, record: JobRecord, visitor: Visitor, player: proxy_audio.Player | None = None) -> Shown:
        transcript, number = revisions.latest(self.ctx.history, record)
        saved = self.ctx.history.revisions(record.id)
        editable = self.may_edit(record, visitor)
        if number:
            info = saved[-1]
            when = info.created_at[:16].replace("T", " ")
            note = (f"Revision {number}, saved by {info.author or 'someone'} on {when} UTC ({info.note or 'corrections'});"
                    f" revision 0 is the model's output. Downloads are revision {number}.")
        else:
            note = "The model's output (revision 0): no corrections yet."
        if not editable and record.status in FINISHED:
            note += " Read-only: only the job's owner or an administrator can edit it."
        player = player or self.player(record)
        url = file_url(player.path) if player.state == "ready" and player.path else None
        return Shown(revisions.lines_of(transcript), number, number, editable, note, url, player.message,
                     transcript.duration, record.file_name, speakers=speakers_html(transcript),
                     language=transcript.language)

    def render(self, record: JobRecord, visitor: Visitor) -> tuple[list, proxy_audio.Player]:
        """The panel's outputs for a History record, and its player (pending: call `player_html` later)."""
        player = self.player(record)
        shown = self.shown(record, visitor, player)
        saved = self.ctx.history.revisions(record.id)
        choices = [(f"Revision {r.number} · {r.author or '–'} · {r.created_at[:16].replace('T', ' ')} UTC · "
                    f"{r.note}", r.number) for r in reversed(saved)] + [("Revision 0 · the model's output", 0)]
        offer = shown.editable and bool(saved)
        return [record.id, view_html(shown), gr.Dropdown(choices=choices, value=shown.latest, visible=offer),
                gr.Button(visible=offer), ""], player

    async def player_html(self, record: JobRecord, visitor: Visitor, keep_going) -> str | None:
        """Once the player's copy is ready (or cannot be made), the view again; None when the page
        moved on first (`keep_going()` false)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PLAYER_WAIT_SECONDS
        while keep_going() and loop.time() < deadline:
            player = await asyncio.to_thread(self.player, record)
            if player.state != "pending":
                return await asyncio.to_thread(lambda: view_html(self.shown(record, visitor, player)))
            await asyncio.to_thread(proxy_audio.MAKER.wait, self._copy(record), 2.0)
        return None

    def downloads(self, record: JobRecord, visitor: Visitor, suffix: str = "") -> list:
        """The download buttons with the newest revision's files (off, with a warning, on a full disk)."""
        transcript, number = revisions.latest(self.ctx.history, record)
        try:
            files = write_transcript_files(transcript, self.ctx.download_dir(visitor.name), record.file_name,
                                           revision=number)
        except OSError as exc:
            gr.Warning(f"{exc} The transcript is shown on the page.")
            return [gr.DownloadButton(f"{f.upper()}{suffix}", value=None, interactive=False) for f in FORMATS]
        return [gr.DownloadButton(f"{f.upper()}{suffix}", value=str(files[f]), interactive=True) for f in FORMATS]

    # --- saving and restoring ------------------------------------------------------------

    def _record(self, job_id, request) -> tuple[JobRecord | None, Visitor, str]:
        visitor = self.ctx.visitor(request)
        if not isinstance(job_id, int):
            return None, visitor, "Open a job first."
        record = self.ctx.history.get(job_id, owner=self.ctx.history_owner(visitor))
        if record is None:
            return None, visitor, f"No job {job_id} in History."
        if not self.may_edit(record, visitor):
            return None, visitor, "Only the job's owner or an administrator can change this transcript."
        return record, visitor, ""

    def _after_change(self, record: JobRecord, visitor: Visitor, message: str) -> list:
        outputs, _ = self.render(record, visitor)
        outputs[-1] = message
        return [*outputs, *self.downloads(record, visitor)]

    def _refused(self, message: str, downloads: int = len(FORMATS)) -> list:
        return [gr.skip()] * 4 + [f"**{md_text(message)}**"] + [gr.skip()] * downloads

    def save(self, job_id, evt: gr.EventData, request: gr.Request):
        record, visitor, problem = self._record(job_id, request)
        if record is None:
            return self._refused(problem)
        data = getattr(evt, "_data", None) or {}
        try:
            base = int(data.get("base", -1))
            length = record.duration or max((float(p["end"]) for p in record.segments), default=0.0)
            lines = revisions.validate(data.get("lines"), length)
        except (TypeError, ValueError) as exc:  # EditError is a ValueError
            return self._refused(str(exc) if isinstance(exc, EditError) else "The corrections could not be read.")
        before = revisions.lines_of(revisions.latest(self.ctx.history, record)[0])
        known = set(before)
        changed = sum(1 for line in lines if line not in known)
        if lines == before:
            return self._refused("Nothing changed, so no new revision was saved.")
        note = f"{changed} line(s) changed, {len(lines)} lines" if len(lines) == len(before) else \
            f"{changed} line(s) changed, {len(before)} → {len(lines)} lines"
        try:
            number = self.ctx.history.add_revision(record.id, [line.to_dict() for line in lines], visitor.name,
                                                   note, base=base)
        except RevisionConflict as exc:
            return self._refused(f"Revision {exc.latest} was saved meanwhile (another page?). Copy your changes, "
                                 "open the job again and redo them on the newest revision.")
        except (OSError, sqlite3.Error) as exc:
            return self._refused(f"History could not be written ({exc}); nothing was saved.")
        if number is None:
            return self._refused("This job cannot be edited now (it is gone or still running).")
        return self._after_change(record, visitor, f"Saved revision {number} ({note}).")

    def restore_revision(self, job_id, number, request: gr.Request):
        record, visitor, problem = self._record(job_id, request)
        if record is None:
            return self._refused(problem)
        if number == 0:
            lines = revisions.lines_of(record.to_transcript())
        else:
            saved = self.ctx.history.revision(record.id, number) if isinstance(number, int) else None
            if saved is None:
                return self._refused("Choose a revision to restore.")
            lines = [Line(float(d["start"]), float(d["end"]), str(d["text"]), d.get("speaker")) for d in saved[1]]
        try:
            new = self.ctx.history.add_revision(record.id, [line.to_dict() for line in lines], visitor.name,
                                                f"restored revision {number}")
        except (OSError, sqlite3.Error) as exc:
            return self._refused(f"History could not be written ({exc}); nothing was restored.")
        if new is None:
            return self._refused("This job cannot be edited now.")
        return self._after_change(record, visitor, f"Restored revision {number} as revision {new}.")
