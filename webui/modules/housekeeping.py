"""Bounded disk: uploads and result files older than the retention period, or beyond the size
quota (oldest first), are deleted, except those of unfinished jobs; old History archives are
deleted and the database is VACUUMed. `Housekeeper` runs both on a timer inside the app."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .history import History

log = logging.getLogger(__name__)

DAY = 86400.0


@dataclass(frozen=True)
class PruneReport:
    deleted_files: int
    deleted_bytes: int
    kept_bytes: int


def prune_files(folders: Iterable[Path], retention_seconds: float, quota_bytes: int, keep: set[Path],
                now: float | None = None) -> PruneReport:
    """Delete files under `folders` older than the retention, then the oldest until the rest fit
    in the quota. Files in `keep` (resolved paths of unfinished jobs) are never deleted, and
    symbolic links are removed as links, never followed. Empty folders left behind go too."""
    now = time.time() if now is None else now
    files = []
    for folder in folders:
        for path in _walk(folder):
            try:
                info = path.lstat()
            except OSError:
                continue
            files.append((info.st_mtime, info.st_size, path))
    files.sort()  # oldest first
    total = sum(size for _, size, _ in files)
    deleted = deleted_bytes = 0
    for mtime, size, path in files:
        if now - mtime <= retention_seconds and total <= quota_bytes:
            break
        if path.resolve() in keep:
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)
            continue
        deleted, deleted_bytes, total = deleted + 1, deleted_bytes + size, total - size
    for folder in folders:
        _remove_empty_dirs(folder)
    return PruneReport(deleted, deleted_bytes, total)


ORPHAN_SECONDS = 50 * 60  # with a pass every 10 minutes, an unused upload is gone within the hour


def prune_orphan_uploads(upload_dir: Path, used: set[Path], max_age: float = ORPHAN_SECONDS,
                         now: float | None = None) -> PruneReport:
    """Delete uploads older than `max_age` that no job uses (`used`: resolved paths of every job
    in History and the queue): an upload never submitted, or refused, must not sit on the disk
    until the retention runs out."""
    now = time.time() if now is None else now
    deleted = deleted_bytes = kept = 0
    for path in _walk(upload_dir):
        try:
            info = path.lstat()
        except OSError:
            continue
        if now - info.st_mtime <= max_age or path.resolve() in used:
            kept += info.st_size
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)
            continue
        deleted, deleted_bytes = deleted + 1, deleted_bytes + info.st_size
    _remove_empty_dirs(upload_dir)
    return PruneReport(deleted, deleted_bytes, kept)


def delete_old_archives(history_path: Path, older_than_days: float, now: float | None = None) -> int:
    """history_*.db archives beside the database, older than `older_than_days`, are deleted."""
    now = time.time() if now is None else now
    deleted = 0
    for archive in history_path.parent.glob(f"{history_path.stem}_*.db"):
        try:
            if now - archive.stat().st_mtime > older_than_days * DAY:
                archive.unlink()
                deleted += 1
        except OSError as exc:
            log.warning("could not delete archive %s: %s", archive, exc)
    return deleted


class Housekeeper:
    """A daemon thread: file pruning every `every` seconds, archives and VACUUM once a day."""

    def __init__(self, task: Callable[[bool], None], every: float = 3600.0) -> None:
        self._task, self._every = task, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._last_daily = 0.0

    def start(self) -> "Housekeeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            daily = time.monotonic() - self._last_daily >= DAY or not self._last_daily
            try:
                self._task(daily)
                if daily:
                    self._last_daily = time.monotonic()
            except Exception:  # housekeeping must never take the app down
                log.exception("housekeeping failed")
            self._stop.wait(self._every)


def daily_database_care(history: History, archive_days: float) -> None:
    delete_old_archives(history.path, archive_days)
    history.vacuum()


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            yield Path(root) / name
        for name in dirs:
            if (Path(root) / name).is_symlink():
                yield Path(root) / name  # a link to a folder is removed as a link


def _remove_empty_dirs(folder: Path) -> None:
    for root, dirs, names in os.walk(folder, topdown=False):
        if Path(root) != folder and not os.listdir(root):
            try:
                os.rmdir(root)
            except OSError:
                pass
