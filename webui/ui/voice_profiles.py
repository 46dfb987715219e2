"""Voice profiles on the page (History tab): save a speaker of the job on screen as a named
profile, and manage one's own profiles: list, delete, add one from reference clips. The
profiles themselves (embeddings only, per user) are modules/voice_profiles.py's; everything the
page sends is checked there again, and every name shown here is escaped."""

from __future__ import annotations

import logging
import sqlite3

import gradio as gr

from ..context import AppContext
from ..modules import revisions
from ..modules import voice_profiles as vp
from .common import PRIVATE, md_text, paths

log = logging.getLogger(__name__)

PROFILE_HEADERS = ["ID", "Name", "Sources", "Created (UTC)"]
MAX_CLIPS = 20  # reference clips in one go: each is decoded and embedded on the CPU
# Embedding reference clips is CPU work: one at a time, whoever asks.
ONE_AT_A_TIME = {**PRIVATE, "concurrency_limit": 1}


class ProfilesPanel:
    """The save row of the job view and the "Voice profiles" accordion, over one context."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # --- layout ------------------------------------------------------------------------------

    def build_save_row(self) -> None:
        """Under the job's transcript: one of its speakers, saved under a name (shown for a
        finished job of the visitor's own that kept its speakers' voices)."""
        with gr.Group(visible=False, elem_id="hist-profile-save-box") as self.save_box:
            with gr.Row(equal_height=True):
                self.speaker = gr.Dropdown([], value=None, label="Save this speaker as a voice profile",
                                           elem_id="hist-profile-speaker", scale=2)
                self.name = gr.Textbox(label="Profile name", placeholder="e.g. Dr. Chen", max_lines=1,
                                       elem_id="hist-profile-name", scale=2)
                self.save = gr.Button("Save voice profile", elem_id="hist-profile-save", scale=1)
        self.save_msg = gr.Markdown(elem_id="hist-profile-msg")

    def build_manager(self) -> None:
        with gr.Accordion("Voice profiles", open=False, elem_id="profiles"):
            gr.Markdown("Your saved voices. A later job with speaker labels gives a speaker who matches one its "
                        "name. Only a voice's embedding is kept, never audio; only you see your profiles.")
            self.table = gr.Dataframe(headers=PROFILE_HEADERS, value=[], interactive=False, wrap=True,
                                      column_widths=["8%", "44%", "14%", "34%"], elem_id="profiles-table")
            with gr.Row(equal_height=True):
                self.pick = gr.Dropdown([], value=None, label="Profile", elem_id="profiles-pick", scale=3)
                self.delete = gr.Button("Delete profile", variant="stop", elem_id="profiles-delete", scale=1)
            with gr.Row(equal_height=True):
                self.clips = gr.File(label="Reference clips of one voice (a few seconds or more each)",
                                     file_count="multiple", type="filepath", elem_id="profiles-clips", scale=3)
                with gr.Column(scale=2):
                    self.clip_name = gr.Textbox(label="Profile name", max_lines=1, elem_id="profiles-clip-name")
                    self.add = gr.Button("Add from reference clips", elem_id="profiles-add")
            self.msg = gr.Markdown(elem_id="profiles-msg")

    def wire(self, job) -> list:
        """The events; `job` is the view's History id (the server's State). Returns the outputs a
        job shown, or changed, refreshes through `job_speakers`."""
        listing = [self.table, self.pick]
        self.save.click(self.save_speaker, inputs=[job, self.speaker, self.name],
                        outputs=[self.save_msg, *listing], **ONE_AT_A_TIME)
        self.delete.click(self.remove, inputs=[self.pick], outputs=[self.msg, *listing], **PRIVATE)
        self.add.click(self.add_clips, inputs=[self.clips, self.clip_name], outputs=[self.msg, *listing],
                       **ONE_AT_A_TIME)
        return [self.save_box, self.speaker, self.save_msg]

    # --- handlers ----------------------------------------------------------------------------

    def owner(self, request) -> str:
        return self.ctx.visitor(request).name  # everyone's own profiles, the admin's too

    def job_speakers(self, job_id, request: gr.Request):
        """The save row for the job on screen: its speakers as named now, or hidden."""
        hidden = gr.Group(visible=False), gr.Dropdown(choices=[], value=None), ""
        if not isinstance(job_id, int):
            return hidden
        visitor = self.ctx.visitor(request)
        record = self.ctx.history.get(job_id, owner=self.ctx.history_owner(visitor))
        if record is None or record.owner != visitor.name or not getattr(record, "voices", None):
            return hidden
        transcript, _ = revisions.latest(self.ctx.history, record)
        names = list(dict.fromkeys(p.speaker for p in transcript.segments if p.speaker))
        if not names:
            return hidden
        return gr.Group(visible=True), gr.Dropdown(choices=names, value=names[0]), ""

    def save_speaker(self, job_id, speaker, name, request: gr.Request):
        if not isinstance(job_id, int):
            return "**Open a job first.**", gr.skip(), gr.skip()
        return self._change(request, lambda owner: vp.save_from_job(
            self.ctx.history.path, owner, job_id, str(speaker or ""), name if isinstance(name, str) else ""),
            lambda p: f"Saved {md_text(speaker)} as the voice profile **{md_text(p.name)}**.")

    def add_clips(self, files, name, request: gr.Request):
        chosen = paths(files)
        if len(chosen) > MAX_CLIPS:
            return f"**{len(chosen)} clips: give at most {MAX_CLIPS} at a time.**", gr.skip(), gr.skip()
        return self._change(request, lambda owner: vp.save_from_clips(
            self.ctx.history.path, owner, name if isinstance(name, str) else "", chosen),
            lambda p: f"Saved the voice profile **{md_text(p.name)}** ({p.clips} source(s)).")

    def remove(self, profile_id, request: gr.Request):
        if not isinstance(profile_id, int) or isinstance(profile_id, bool):
            return "**Choose a profile to delete.**", gr.skip(), gr.skip()
        try:
            gone = vp.delete_profile(self.ctx.history.path, self.owner(request), profile_id)
        except (OSError, sqlite3.Error) as exc:
            return f"**Voice profiles cannot be changed right now ({md_text(exc)}).**", gr.skip(), gr.skip()
        message = "Deleted the voice profile." if gone else "**No such profile of yours (deleted already?).**"
        return message, *self.listing(request)

    def listing(self, request: gr.Request) -> tuple:
        """The visitor's profiles: the table and the delete choices."""
        try:
            found = vp.list_profiles(self.ctx.history.path, self.owner(request))
        except (OSError, sqlite3.Error) as exc:
            log.warning("voice profiles cannot be read: %s", exc)
            return gr.skip(), gr.skip()
        rows = [[p.id, p.name, p.clips, p.created[:19].replace("T", " ")] for p in found]
        return rows, gr.Dropdown(choices=[(f"{p.name} (#{p.id})", p.id) for p in found], value=None)

    def _change(self, request, change, said):
        """Run a save; ProfileError's sentence (or a storage failure) goes to the page as it is."""
        try:
            profile = change(self.owner(request))
        except vp.ProfileError as exc:
            return f"**{md_text(exc)}**", gr.skip(), gr.skip()
        except (OSError, sqlite3.Error) as exc:
            log.warning("voice profile not saved: %s", exc)
            return f"**The profile could not be saved ({md_text(exc)}).**", gr.skip(), gr.skip()
        return said(profile), *self.listing(request)
