"""The History tab: search past jobs, view one (its lines with the player and, for its owner or
the admin, the editor: transcript_view.py) and re-download it, delete, archive and VACUUM."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..modules.revisions import speaker_of
from ..modules.transcript import FORMATS
from .common import PRIVATE, OnLoad, Screens, fmt_seconds, fmt_size, md_text, no_downloads, status_word
from .transcript_view import Line, Shown, TranscriptPanel, view_html
from .voice_profiles import ProfilesPanel

HISTORY_HEADERS = ["ID", "Created (UTC)", "File", "Duration", "Model", "Status", "Text"]
OWNER_AT = 3  # where the admin's Owner column goes (after File), on a server with logins
WIDTHS = ["6%", "15%", "17%", "8%", "12%", "9%", "33%"]
MAX_QUERY = 200  # characters of a speaker's name searched for: longer than any name stored


def build(ctx: AppContext) -> OnLoad:
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        with gr.Row():
            q_text = gr.Textbox(label="Text", placeholder="words in the transcript or file name", elem_id="hist-text",
                                scale=3)
            q_name = gr.Textbox(label="File name", elem_id="hist-name", scale=2)
            q_speaker = gr.Textbox(label="Speaker", placeholder="e.g. Speaker 2, or a name given since",
                                   elem_id="hist-speaker", scale=2)
            q_from = gr.Textbox(label="From (YYYY-MM-DD)", elem_id="hist-from", scale=1)
            q_to = gr.Textbox(label="To (YYYY-MM-DD)", elem_id="hist-to", scale=1)
            q_archived = gr.Checkbox(label="Include archived", scale=1)
        with gr.Row():
            search = gr.Button("Search", variant="primary", elem_id="hist-search")
            search_msg = gr.Markdown(elem_id="hist-msg")
        table = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False, wrap=True, max_height=360,
                             column_widths=WIDTHS, elem_id="hist-table")
        with gr.Row():
            job = gr.Textbox(value="", label="Job ID (or click a row)", placeholder="e.g. 12", elem_id="hist-id",
                             scale=1)
            view = gr.Button("View", elem_id="hist-view", scale=1)
            delete = gr.Button("Delete", variant="stop", elem_id="hist-delete", scale=1)
        details = gr.Markdown(elem_id="hist-details")
        with gr.Row(elem_classes=["dl-row"]):
            downloads = [gr.DownloadButton(fmt.upper(), interactive=False, size="sm", elem_id=f"hist-dl-{fmt}")
                         for fmt in FORMATS]
        panel = TranscriptPanel(ctx, "hist")
        panel.build()
        profiles = ProfilesPanel(ctx)
        profiles.build_save_row()
        with gr.Accordion("All job settings (as stored)", open=False):
            job_settings = gr.JSON(show_label=False, elem_id="hist-settings")
        profiles.build_manager()
        with gr.Accordion("Housekeeping", open=False):
            gr.Markdown(f"Database: `{ctx.history.path}` (WAL mode). Archived jobs are hidden from searches "
                        "unless 'Include archived' is ticked.")
            with gr.Row():
                days = gr.Number(value=30, precision=0, minimum=0, label="Archive jobs older than (days)",
                                 elem_id="hist-days")
                archive = gr.Button("Archive", elem_id="hist-archive")
                vacuum = gr.Button("VACUUM", elem_id="hist-vacuum")
            house_msg = gr.Markdown(elem_id="hist-house-msg")

    h = _Handlers(ctx, panel)
    query = [q_text, q_name, q_from, q_to, q_archived, q_speaker]
    search.click(h.search, inputs=query, outputs=[table, search_msg], **PRIVATE)
    for box in (q_text, q_speaker):
        box.submit(h.search, inputs=query, outputs=[table, search_msg], **PRIVATE)
    tab.select(h.search, inputs=query, outputs=[table, search_msg], **PRIVATE)  # fresh statuses on each visit
    tab.select(profiles.listing, outputs=[profiles.table, profiles.pick], **PRIVATE)
    speaker_row = profiles.wire(panel.job)
    for changed in panel.wire(downloads):  # a rename changes the speakers offered
        changed.then(profiles.job_speakers, inputs=[panel.job], outputs=speaker_row, **PRIVATE)
    view_outputs = [details, *downloads, *panel.outputs, job_settings]
    # The job at once (with its speakers to save); then, if its player's copy is still being made,
    # the lines again with the player.
    for shown in (view.click(h.show, inputs=[job], outputs=view_outputs, **PRIVATE),
                  table.select(_pick, outputs=[job], **PRIVATE).then(h.show, inputs=[job], outputs=view_outputs,
                                                                      **PRIVATE)):
        shown.then(profiles.job_speakers, inputs=[panel.job], outputs=speaker_row, **PRIVATE).then(
            h.player, inputs=[panel.job], outputs=[panel.view], **PRIVATE)
    delete.click(h.remove, inputs=[job, *query], outputs=[details, table], **PRIVATE)
    archive.click(h.archive, inputs=[days], outputs=[house_msg], **PRIVATE).then(
        h.search, inputs=query, outputs=[table, search_msg], **PRIVATE)
    vacuum.click(h.vacuum, outputs=[house_msg], **PRIVATE)
    return OnLoad([table, profiles.table, profiles.pick],
                  lambda request: (h.table(h.rows(request), request), *profiles.listing(request)))


def _pick(evt: gr.SelectData):
    """A click on a table row puts its job ID in the ID box."""
    row = evt.row_value or []
    return str(row[0]) if row else gr.skip()


def _job_number(text) -> int | None:
    """The job ID typed or picked (None when empty or not a number)."""
    text = str(text or "").strip()
    return int(text) if text.isdigit() else None


class _Handlers:
    """The tab's event handlers, over one context."""

    def __init__(self, ctx: AppContext, panel: TranscriptPanel) -> None:
        self.ctx, self.panel = ctx, panel
        self.screens = Screens()  # the job each page shows: its player wait stops when the page moves on

    def with_owner(self, request) -> bool:
        """The admin of a server with logins sees everyone's jobs, so each row says whose."""
        return self.ctx.logins and self.ctx.visitor(request).is_admin

    def table(self, rows: list[list], request):
        headers = list(HISTORY_HEADERS)
        widths = list(WIDTHS)
        if self.with_owner(request):
            headers.insert(OWNER_AT, "Owner")
            widths = ["6%", "14%", "15%", "8%", "7%", "11%", "9%", "30%"]
        return gr.Dataframe(value=rows, headers=headers, column_widths=widths)

    def owner(self, request) -> str | None:
        """Whose jobs this visitor sees: their own with logins, everyone's for an admin."""
        return self.ctx.history_owner(self.ctx.visitor(request))

    def rows(self, request, text="", name="", date_from="", date_to="", archived=False, speaker="") -> list[list]:
        found = self.ctx.history.search(text=text or "", name=name or "",
                                        date_from=(date_from or "").strip() or None,
                                        date_to=(date_to or "").strip() or None, include_archived=bool(archived),
                                        owner=self.owner(request), speaker=str(speaker or "")[:MAX_QUERY])
        live = {s.history_id: s for s in self.ctx.queue.jobs() if not s.finished}
        out = []
        for r in found:
            body = r.text_itn or r.text or r.error
            status = status_word(live[r.id]) if r.id in live else r.status
            row = [r.id, r.created_at[:19].replace("T", " "), r.file_name, fmt_seconds(r.duration), r.model,
                   status + (" (archived)" if r.archived else ""), body[:120] + ("…" if len(body) > 120 else "")]
            if self.with_owner(request):
                row.insert(OWNER_AT, r.owner or "–")
            out.append(row)
        return out

    def search(self, text, name, date_from, date_to, archived, speaker, request: gr.Request):
        try:
            found = self.rows(request, text, name, date_from, date_to, archived, speaker)
        except ValueError as exc:
            return gr.skip(), f"**{md_text(exc)}**"
        except sqlite3.Error as exc:  # a full or unreadable disk under history.db
            return gr.skip(), f"**History cannot be read right now ({md_text(exc)}).**"
        return self.table(found, request), f"{len(found)} job(s) found."

    def show(self, job_text, request: gr.Request):
        """The job's details, downloads and lines (with the player once its copy is made: `player`)."""
        none = no_downloads(len(FORMATS))
        job_id = _job_number(job_text)
        self.screens.show(request, str(job_id or ""))
        if job_id is None:
            return "Enter a job ID or click a row.", *none, *self.panel.cleared(), None
        visitor = self.ctx.visitor(request)
        record = self.ctx.history.get(job_id, owner=self.owner(request))  # another user's id finds nothing
        if record is None:
            return f"No job {job_id} in History.", *none, *self.panel.cleared(), None
        live = next((s for s in self.ctx.queue.jobs() if s.history_id == job_id and not s.finished), None)
        owner = f" · owner {md_text(record.owner or '–')}" if self.with_owner(request) else ""
        lines = [
            f"**Job {record.id}: {md_text(record.file_name)}** · {status_word(live) if live else record.status}"
            + (" (archived)" if record.archived else "") + owner,
            f"Duration {fmt_seconds(record.duration)} · model {md_text(record.model)} · "
            f"language {md_text(record.language or '–')}",
            _settings_line(record.settings),
            f"Created {record.created_at[:19]} · started {(record.started_at or '–')[:19]} · "
            f"finished {(record.finished_at or '–')[:19]} (UTC)",
        ]
        if record.error:
            lines.append(f"Error: {md_text(record.error)}")
        if live is not None:  # its lines so far; the player and the editor once it has ended
            shown = Shown([Line(p.start, p.end, p.display_text, speaker_of(p)) for p in live.lines],
                          note="The job is still running: its lines so far. Search works; the player and "
                               "corrections come once it has ended.", player_note="")
            return "  \n".join(lines), *none, job_id, view_html(shown), *self.panel.cleared()[2:], _shown_settings(record.settings)
        if not record.segments:
            return "  \n".join(lines), *none, *self.panel.cleared(), _shown_settings(record.settings)
        outputs, _ = self.panel.render(record, visitor)
        return "  \n".join(lines), *self.panel.downloads(record, visitor), *outputs, _shown_settings(record.settings)

    async def player(self, job_id, request: gr.Request):
        """After `show`: the lines again with the player, once its copy of the recording is made
        (once per job, in the background); nothing if it was ready already or the page moved on."""
        if not isinstance(job_id, int):
            return gr.skip()
        record = await asyncio.to_thread(self.ctx.history.get, job_id, self.owner(request))
        live = any(s.history_id == job_id and not s.finished for s in self.ctx.queue.jobs())
        if record is None or not record.segments or live:
            return gr.skip()
        if (await asyncio.to_thread(self.panel.player, record)).state != "pending":
            return gr.skip()
        key = str(job_id)
        html = await self.panel.player_html(record, self.ctx.visitor(request), lambda: self.screens.shows(request, key))
        return html if html is not None else gr.skip()

    def remove(self, job_text, text, name, date_from, date_to, archived, speaker, request: gr.Request):
        job_id = _job_number(job_text)
        if job_id is None:
            return "Enter a job ID or click a row.", gr.skip()
        message = self._delete(job_id, self.owner(request))
        try:
            return message, self.table(self.rows(request, text, name, date_from, date_to, archived, speaker), request)
        except ValueError:
            return message, gr.skip()

    def _delete(self, job_id: int, owner: str | None) -> str:
        """A finished job goes at once; a waiting one is cancelled, then deleted; a running one is
        cancelled and stays until it has stopped (its runner still writes to its row)."""
        record = self.ctx.history.get(job_id, owner=owner)
        if record is None:
            return f"No job {job_id} in History."
        if record.status in ("queued", "running"):
            status = self.ctx.queue.cancel_history_job(job_id)
            if status == "running":
                return f"Job {job_id} is running: it is being cancelled. Delete it once it shows cancelled."
            if status is None:
                return f"Job {job_id} is {record.status} and cannot be deleted until it has ended."
        ok = self.ctx.history.delete(job_id, owner=owner)
        return f"Deleted job {job_id}." if ok else f"Job {job_id} could not be deleted (it has not ended yet)."

    def archive(self, n, request: gr.Request):
        if not self.ctx.visitor(request).is_admin:
            return "**Only an administrator can archive History.**"
        try:
            count = self.ctx.history.archive_older_than(int(n if n is not None else -1))
        except ValueError as exc:
            return f"**{md_text(exc)}**"
        return f"Archived {count} job(s) older than {int(n)} day(s)."

    def vacuum(self, request: gr.Request):
        if not self.ctx.visitor(request).is_admin:
            return "**Only an administrator can VACUUM History.**"
        before = _db_size(self.ctx.history.path)
        self.ctx.history.vacuum()
        after = _db_size(self.ctx.history.path)
        return f"VACUUM done: {fmt_size(before)} → {fmt_size(after)}."


def _shown_settings(settings: dict | None) -> dict | None:
    """The stored settings, but a known speaker's voice vector as its name only: a voiceprint is
    not for display (an admin sees other users' jobs)."""
    diarize = (settings or {}).get("diarize")
    if not isinstance(diarize, dict) or not diarize.get("known"):
        return settings
    names = [k.get("name") if isinstance(k, dict) else str(k) for k in diarize["known"]]
    return {**settings, "diarize": {**diarize, "known": names}}  # type: ignore[dict-item]


def _settings_line(settings: dict | None) -> str:
    """The settings a person chose, in words; the stored record is in the accordion below."""
    if not settings:
        return "Settings: not recorded"
    engine = settings.get("engine") or {}
    vad = settings.get("vad") or {}
    itn = "on" if settings.get("itn", True) else "off (raw text)"
    return md_text(f"Settings: device {engine.get('device', '–')} · precision {engine.get('precision', '–')} · "
                   f"ITN {itn} · hotwords {engine.get('hotwords') or '–'} · maximum segment "
                   f"{settings.get('max_segment', '–')} · VAD {vad.get('backend', '–')} · "
                   f"speaker labels {_speakers_words(settings.get('diarize'))}")


def _speakers_words(diarize) -> str:
    if not isinstance(diarize, dict):
        return "off"
    if diarize.get("num_speakers"):
        return f"on ({diarize['num_speakers']} speakers)"
    low, high = diarize.get("min_speakers"), diarize.get("max_speakers")
    return "on (" + (f"{low or 1}–{high or 'any'} speakers" if low or high else "number found") + ")"


def _db_size(path: Path) -> int:
    """Bytes on disk of the database and its write-ahead log."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
