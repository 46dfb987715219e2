"""The application state that the tabs, the gradio_client endpoint and the server share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .modules import settings as settings_mod
from .modules.history import History
from .modules.jobs import JobQueue
from .modules.settings import AppSettings


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
        notes = [f"Saved to {self.settings_path}."]
        if new.engine_settings() != old.engine_settings():
            notes.append("Model settings apply from the next job.")
        if new.upload_dir != old.upload_dir:
            notes.append("The upload folder changes after a restart.")
        return " ".join(notes)
