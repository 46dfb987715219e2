"""The application state that the tabs, the HTTP routes and the server share, and who may do
what with it: the visitor (login name, admin or not), the models offered, the per-job options."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .modules import history_db, housekeeping
from .modules import settings as settings_mod
from .modules.history import History
from .modules.jobs import JobQueue, Limits
from .modules.models import ModelChoice, offered_models, pick
from .modules.options import PipelineOptions, with_preset
from .modules.settings import AppSettings
from .upload_quota import UploadLedger

log = logging.getLogger(__name__)

LOCAL = "local"  # the one user of a server without logins


@dataclass(frozen=True)
class Visitor:
    name: str       # the login name; LOCAL without logins
    is_admin: bool  # may change the server's settings and sees every user's History


@dataclass
class AppContext:
    """Everything the handlers share: settings (saved on change), History and the job queue."""

    settings: AppSettings
    settings_path: Path
    history: History
    queue: JobQueue
    logins: bool = False                      # the server asks for a login (--auth)
    admins: frozenset[str] = frozenset()      # login names that are admins (--admin)
    local_admin: bool = True                  # without logins: the local user is the admin (loopback only)
    server_lock: history_db.ServerLock | None = None  # a server holds its history file for itself
    uploads: UploadLedger = field(default_factory=UploadLedger)  # whose each page upload is (quota)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _download_owners: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, settings_path: Path, history_path: str | None = None, **access) -> "AppContext":
        current = settings_mod.load(settings_path)
        if history_path:
            current = current.with_changes(history_path=history_path)
        history = History(current.history_path)
        ctx = cls(current, settings_path, history, JobQueue(history), **access)
        ctx._apply_limits()
        return ctx

    @property
    def results_dir(self) -> Path:
        return Path(self.settings.results_dir).resolve()

    def download_dir(self, owner: str) -> Path:
        """A new folder for one set of downloads, `owner`'s: its name cannot be guessed, and the
        file route serves it to that user (and the admin) only (file_guard.py)."""
        token = secrets.token_urlsafe(16)
        self._download_owners[token] = owner  # also kept in memory: History may be unwritable
        try:
            self.history.add_download(token, owner)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not record the download folder's owner in History: %s", exc)
        return self.results_dir / token

    def download_owner(self, token: str) -> str | None:
        owner = self._download_owners.get(token)
        if owner is None:
            try:
                owner = self.history.download_owner(token)
            except (OSError, sqlite3.Error):
                owner = None
        return owner

    # --- who is asking -----------------------------------------------------------------

    def visitor(self, request) -> Visitor:
        """The visitor behind a Gradio or FastAPI request (None: a local call)."""
        if not self.logins:
            return Visitor(LOCAL, self.local_admin)
        name = getattr(request, "username", None) or ""
        return Visitor(name, name in self.admins)

    def history_owner(self, visitor: Visitor) -> str | None:
        """Whose jobs the visitor sees in History: everyone's (None) for an admin or without logins."""
        return None if visitor.is_admin or not self.logins else visitor.name

    # --- what a visitor may ask for ----------------------------------------------------

    def models(self) -> list[ModelChoice]:
        s = self.settings
        return offered_models(s.model, s.models_dir, s.hub_models)

    def job_options(self, model: str = "", language: str = "", hotwords: str = "", itn: bool | None = None,
                    script: str = "", accurate: bool = False) -> PipelineOptions:
        """A job's options from a visitor's choices (empty: the server's default); the model must
        be one of `models()` and the script one of script.SCRIPTS (ValueError otherwise).
        `accurate`: the accurate mode (options.PRESETS), for this job only."""
        s = self.settings
        options = s.to_pipeline_options(model=pick(model, self.models()), language=(language or s.language).strip(),
                                        hotwords=hotwords or "", itn=s.itn if itn is None else bool(itn),
                                        script=script or s.script)
        return with_preset(options, bool(accurate))

    # --- changing settings -------------------------------------------------------------

    def update(self, new: AppSettings, visitor: Visitor) -> str:
        """Save and apply new settings (admins only: PermissionError); returns a note on what
        changed. A History file that cannot be opened is a ValueError and the old one is kept."""
        if not visitor.is_admin:
            raise PermissionError("Only an administrator can change the server's settings.")
        with self._lock:
            old = self.settings
            if new.history_path != old.history_path:
                busy = self.queue.unfinished_history_ids() | {r.id for r in self.history.unfinished()}
                if busy:  # their runners write to rows of this file; elsewhere they would hit other jobs' rows
                    raise ValueError(f"History database cannot change while jobs are queued or running "
                                     f"({len(busy)} unfinished); wait until they end or cancel them. "
                                     f"Still using {old.history_path}.")
                lock = None
                try:
                    if self.server_lock is not None:
                        lock = history_db.ServerLock(new.history_path)
                    self.history.path = new.history_path  # creates/migrates the new file first
                except (OSError, sqlite3.Error, RuntimeError) as exc:
                    if lock is not None:
                        lock.release()
                    raise ValueError(f"History database {new.history_path} cannot be used ({exc}); "
                                     f"still using {old.history_path}.") from None
                if lock is not None:
                    self.server_lock.release()
                    self.server_lock = lock
            settings_mod.save(new, self.settings_path)
            self.settings = new
            self._apply_limits()
        notes = [f"Saved to {self.settings_path}."]
        if new.engine_settings() != old.engine_settings():
            notes.append("Model settings apply from the next job.")
        if new.upload_dir != old.upload_dir:
            notes.append("The upload folder changes after a restart.")
        return " ".join(notes)

    def housekeeping(self, daily: bool) -> None:
        """Uploads and results pruned to the retention and quota (never an unfinished job's
        file); once a day old History archives deleted and the database VACUUMed."""
        s = self.settings
        keep = {Path(j.path).resolve() for j in self.queue.jobs() if not j.finished}
        keep |= {Path(r.file_path).resolve() for r in self.history.unfinished() if r.file_path}
        used = keep | {Path(p).resolve() for p in self.history.file_paths()}
        orphans = housekeeping.prune_orphan_uploads(Path(s.upload_dir).resolve(), used)
        if orphans.deleted_files:
            log.info("housekeeping: deleted %d upload(s) no job uses, %d bytes", orphans.deleted_files,
                     orphans.deleted_bytes)
        report = housekeeping.prune_files([Path(s.upload_dir).resolve(), self.results_dir],
                                          s.retention_days * housekeeping.DAY, int(s.disk_quota_gb * 1e9), keep)
        if report.deleted_files:
            log.info("housekeeping: deleted %d file(s), %d bytes; %d bytes kept", report.deleted_files,
                     report.deleted_bytes, report.kept_bytes)
        if daily:
            housekeeping.daily_database_care(self.history, s.retention_days)

    def _apply_limits(self) -> None:
        s = self.settings
        self.queue.limits = Limits(max_audio_seconds=s.max_audio_hours * 3600, max_jobs_per_owner=s.max_jobs_per_user)
