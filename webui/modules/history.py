"""SQLite store of transcription jobs (history.db); with history_db.py, the only code that writes SQL.

Every operation opens its own short-lived connection, so the store is safe to call
from Gradio's handler threads and from several processes at once: SQLite's WAL mode
and busy timeout serialise the writers. Times are stored as ISO-8601 UTC strings of
fixed width, so string order is time order and a day range is a prefix comparison.
Text search uses LIKE rather than FTS5: FTS5's tokenizers cannot find a Chinese word
inside an unspaced sentence (unicode61) or anything shorter than three characters
(trigram), while a substring match is always right and fast enough for a job history.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from . import history_db
from .transcript import Transcript

STATUSES = history_db.STATUSES
_OPEN = "status IN ('queued', 'running')"  # a job still owned by a runner
_RUNNING = "status = 'running'"
# A job one of whose lines has the speaker: the newest revision's lines, else the job's own.
_SPOKEN_BY = ("EXISTS (SELECT 1 FROM json_each(COALESCE((SELECT r.segments FROM revisions AS r"
              " WHERE r.job_id = jobs.id ORDER BY r.number DESC LIMIT 1), jobs.segments)) AS line"
              " WHERE lower(json_extract(line.value, '$.speaker')) = lower(?))")


def _iso(moment: datetime | None = None) -> str:
    """Fixed-width UTC timestamp; a naive datetime is taken to be UTC already."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _day(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a date (want YYYY-MM-DD): {value!r}") from None


def _like(term: str) -> str:
    """A LIKE pattern matching `term` anywhere, with its own % _ and \\ taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class JobRecord:
    id: int
    file_name: str
    file_path: str
    duration: float | None
    model: str
    settings: dict
    status: str
    error: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    text: str
    text_itn: str
    segments: list[dict]
    language: str
    archived: bool
    owner: str = ""
    speakers: list[dict] = field(default_factory=list)  # the diarizer's turns, when it ran
    voices: list[dict] = field(default_factory=list)  # each speaker's centroid (transcript.SpeakerVoice)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "JobRecord":
        data = dict(row)
        data["settings"] = json.loads(data["settings"])
        data["segments"] = json.loads(data["segments"])
        data["speakers"] = json.loads(data.get("speakers") or "[]")
        data["voices"] = json.loads(data.get("voices") or "[]")
        data["archived"] = bool(data["archived"])
        return cls(**data)

    def to_transcript(self) -> Transcript:
        return Transcript.from_dict({
            "file": self.file_name, "duration": self.duration or 0.0, "model": self.model,
            "language": self.language, "text": self.text, "text_itn": self.text_itn,
            "segments": self.segments, "speakers": self.speakers,
        })


@dataclass(frozen=True)
class RevisionInfo:
    number: int
    created_at: str
    author: str
    note: str


class RevisionConflict(ValueError):
    """Another revision was saved since the editor opened the job; `latest` is its number."""

    def __init__(self, latest: int) -> None:
        super().__init__(f"revision {latest} was saved since this one was opened")
        self.latest = latest


class History:
    def __init__(self, path: str | Path) -> None:
        self.path = path

    @property
    def path(self) -> Path:
        return self._path

    @path.setter
    def path(self, value: str | Path) -> None:
        """Point the store at another file, creating and migrating it as needed. A file that
        cannot be opened raises (OSError, sqlite3.Error) and the store keeps its old file."""
        path = Path(value)
        previous = getattr(self, "_path", None)
        self._path = path
        try:
            history_db.prepare(path)
        except BaseException:
            if previous is not None:
                self._path = previous
            raise

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return history_db.connect(self._path)

    def _update(self, sql: str, params: Iterable) -> int:
        with self._connect() as con:
            return con.execute(sql, tuple(params)).rowcount

    # --- job lifecycle -------------------------------------------------------

    def create_job(self, file_name: str, file_path: str, model: str, settings: dict,
                   status: str = "queued", created_at: datetime | None = None, owner: str = "") -> int:
        """Record a new job and return its id; `created_at` (default now) is for imports and tests."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; choose from {', '.join(STATUSES)}")
        if not isinstance(settings, dict):
            raise ValueError(f"settings must be a dict, not {type(settings).__name__}")
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO jobs (file_name, file_path, model, settings, status, created_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (file_name, str(file_path), model, json.dumps(settings, ensure_ascii=False),
                 status, _iso(created_at), owner),
            )
            return int(cur.lastrowid)

    # A job writes only to its own row and only while that row is unfinished: ids are never
    # reused (AUTOINCREMENT), and a row that ended (or was deleted) takes no more writes.

    def mark_running(self, job_id: int) -> bool:
        """Returns False when the job no longer exists or has already ended."""
        return self._update(f"UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND {_OPEN}",
                            (_iso(), job_id)) > 0

    def finish_job(self, job_id: int, transcript: Transcript, status: str = "done", error: str = "") -> bool:
        """Store the transcript; a cancelled or failed job keeps the part it finished."""
        if status not in ("done", "cancelled", "failed"):
            raise ValueError(f"finish_job status must be 'done', 'cancelled' or 'failed', not {status!r}")
        data = transcript.to_dict()
        return self._update(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ?, duration = ?, text = ?,"
            f" text_itn = ?, language = ?, segments = ?, speakers = ?, voices = ? WHERE id = ? AND {_OPEN}",
            (status, error, _iso(), transcript.duration, transcript.text, transcript.text_itn, transcript.language,
             json.dumps(data["segments"], ensure_ascii=False), json.dumps(data.get("speakers", [])),
             json.dumps([asdict(v) for v in transcript.voices], ensure_ascii=False), job_id),
        ) > 0

    def fail_job(self, job_id: int, error: str, status: str = "failed") -> bool:
        if status not in ("failed", "cancelled"):
            raise ValueError(f"fail_job status must be 'failed' or 'cancelled', not {status!r}")
        return self._update(f"UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND {_OPEN}",
                            (status, error, _iso(), job_id)) > 0

    # --- checkpoints (see checkpoint.py for what the JSON holds) ----------------

    def begin_checkpoint(self, job_id: int, header: dict) -> bool:
        """False (nothing written) unless the job's row is running."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            if not con.execute(f"SELECT 1 FROM jobs WHERE id = ? AND {_RUNNING}", (job_id,)).fetchone():
                con.execute("ROLLBACK")
                return False
            con.execute("DELETE FROM checkpoint_windows WHERE job_id = ?", (job_id,))
            con.execute("INSERT OR REPLACE INTO checkpoints (job_id, header) VALUES (?, ?)",
                        (job_id, json.dumps(header, ensure_ascii=False)))
            con.execute("COMMIT")
        return True

    def add_checkpoint_window(self, job_id: int, window: dict) -> bool:
        """False (nothing written) unless the job's row is running."""
        return self._update(
            "INSERT OR REPLACE INTO checkpoint_windows (job_id, idx, data) SELECT ?, ?, ?"
            f" WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ? AND {_RUNNING})",
            (job_id, int(window["index"]), json.dumps(window, ensure_ascii=False), job_id)) > 0

    def checkpoint(self, job_id: int) -> tuple[dict | None, list[dict]]:
        """(header, windows) stored for the job; (None, []) when there is none."""
        with self._connect() as con:
            head = con.execute("SELECT header FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
            rows = con.execute("SELECT data FROM checkpoint_windows WHERE job_id = ? ORDER BY idx",
                               (job_id,)).fetchall()
        return (json.loads(head[0]) if head else None), [json.loads(r[0]) for r in rows]

    def drop_checkpoint(self, job_id: int) -> None:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            con.execute("DELETE FROM checkpoint_windows WHERE job_id = ?", (job_id,))
            con.execute("DELETE FROM checkpoints WHERE job_id = ?", (job_id,))
            con.execute("COMMIT")

    def unfinished(self) -> list[JobRecord]:
        """Jobs left queued or running by a process that stopped, oldest first."""
        with self._connect() as con:
            rows = con.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') AND archived = 0"
                               " ORDER BY created_at, id").fetchall()
        return [JobRecord.from_row(row) for row in rows]

    # --- queries -------------------------------------------------------------

    def get(self, job_id: int, owner: str | None = None) -> JobRecord | None:
        """The job, or None; with `owner`, only that user's job (another user's id finds nothing)."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        record = JobRecord.from_row(row) if row else None
        return record if record is not None and owner in (None, record.owner) else None

    def search(self, text: str = "", name: str = "", date_from: date | str | None = None,
               date_to: date | str | None = None, status: str | Iterable[str] | None = None,
               include_archived: bool = False, limit: int = 100, owner: str | None = None,
               speaker: str = "") -> list[JobRecord]:
        """Newest jobs first. Every whitespace-separated word of `text` must occur in the
        file name, text or ITN text; `name` is a substring of the file name; the date
        range is inclusive, in UTC days; `speaker` is a line's speaker (the whole name; A-Z in any case) in
        the job's newest revision, or in its own lines when it has none."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        where: list[str] = []
        params: list = []
        for word in text.split():
            where.append("(file_name LIKE ? ESCAPE '\\' OR text LIKE ? ESCAPE '\\'"
                         " OR text_itn LIKE ? ESCAPE '\\')")
            params += [_like(word)] * 3
        if name:
            where.append("file_name LIKE ? ESCAPE '\\'")
            params.append(_like(name))
        if speaker.strip():
            where.append(_SPOKEN_BY)
            params.append(" ".join(speaker.split()))  # stored names have their spaces collapsed too
        first = _day(date_from) if date_from else None
        last = _day(date_to) if date_to else None
        if first and last and first > last:
            raise ValueError(f"date_from {first} is after date_to {last}")
        if first:
            where.append("created_at >= ?")  # 'YYYY-MM-DD' sorts before any time that day
            params.append(first.isoformat())
        if last:
            where.append("created_at < ?")
            params.append((last + timedelta(days=1)).isoformat())
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown or not wanted:
                raise ValueError(f"unknown status {unknown or wanted!r}; choose from {', '.join(STATUSES)}")
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if not include_archived:
            where.append("archived = 0")
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._connect() as con:
            rows = con.execute(sql, (*params, limit)).fetchall()
        return [JobRecord.from_row(row) for row in rows]

    # --- revisions: corrections of a finished job's lines (revisions.py) -------

    def add_revision(self, job_id: int, segments: list[dict], author: str = "", note: str = "",
                     base: int | None = None) -> int | None:
        """Store the job's next revision (1, 2, ...; 0 is the model's own lines, never changed)
        and return its number; None when the job is gone or has not ended. With `base`, the
        revision the editor started from: RevisionConflict if another has been saved since."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if not con.execute(f"SELECT 1 FROM jobs WHERE id = ? AND NOT {_OPEN}", (job_id,)).fetchone():
                    con.execute("ROLLBACK")
                    return None
                latest = con.execute("SELECT COALESCE(MAX(number), 0) FROM revisions WHERE job_id = ?",
                                     (job_id,)).fetchone()[0]
                if base is not None and base != latest:
                    con.execute("ROLLBACK")
                    raise RevisionConflict(latest)
                con.execute("INSERT INTO revisions (job_id, number, created_at, author, note, segments)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (job_id, latest + 1, _iso(), author, note, json.dumps(segments, ensure_ascii=False)))
                con.execute("COMMIT")
            except RevisionConflict:
                raise
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        return latest + 1

    def revisions(self, job_id: int) -> list["RevisionInfo"]:
        """The job's saved revisions, oldest first (without their lines)."""
        with self._connect() as con:
            rows = con.execute("SELECT number, created_at, author, note FROM revisions WHERE job_id = ?"
                               " ORDER BY number", (job_id,)).fetchall()
        return [RevisionInfo(*row) for row in rows]

    def revision(self, job_id: int, number: int | None = None) -> tuple[int, list[dict]] | None:
        """(number, lines) of revision `number`, or of the latest when None; None when there is none."""
        sql = "SELECT number, segments FROM revisions WHERE job_id = ?"
        params: tuple = (job_id,)
        sql, params = (sql + " AND number = ?", (job_id, number)) if number is not None else \
            (sql + " ORDER BY number DESC LIMIT 1", params)
        with self._connect() as con:
            row = con.execute(sql, params).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def add_download(self, token: str, owner: str) -> None:
        self._update("INSERT OR REPLACE INTO downloads (token, owner, created_at) VALUES (?, ?, ?)",
                     (token, owner, _iso()))

    def download_owner(self, token: str) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT owner FROM downloads WHERE token = ?", (token,)).fetchone()
        return row[0] if row else None

    def recording_owners(self, path: str) -> set[str]:
        """The owners of the jobs of the recording at `path` (whose player may play it)."""
        with self._connect() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT owner FROM jobs WHERE file_path = ?", (path,))}

    def file_paths(self) -> set[str]:
        """The recording of every job, archived ones included (housekeeping keeps these)."""
        with self._connect() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT file_path FROM jobs WHERE file_path != ''")}

    def count(self, include_archived: bool = True) -> int:
        sql = "SELECT COUNT(*) FROM jobs" + ("" if include_archived else " WHERE archived = 0")
        with self._connect() as con:
            return con.execute(sql).fetchone()[0]

    # --- housekeeping --------------------------------------------------------

    def delete(self, job_id: int, owner: str | None = None) -> bool:
        """Delete a finished job (with `owner`, only if it is that user's); False if nothing
        matched. A queued or running job is never deleted: its runner still writes to it, so it
        must be cancelled first."""
        if owner is None:
            return self._update(f"DELETE FROM jobs WHERE id = ? AND NOT {_OPEN}", (job_id,)) > 0
        return self._update(f"DELETE FROM jobs WHERE id = ? AND owner = ? AND NOT {_OPEN}", (job_id, owner)) > 0

    def archive_older_than(self, days: int) -> int:
        """Hide jobs created more than `days` days ago from default searches; returns how many."""
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"days must be a non-negative integer, not {days!r}")
        cutoff = _iso(datetime.now(timezone.utc) - timedelta(days=days))
        return self._update("UPDATE jobs SET archived = 1 WHERE archived = 0 AND created_at < ?", (cutoff,))

    def vacuum(self) -> None:
        with self._connect() as con:
            con.execute("VACUUM")

    def move_older_than(self, days: float, archive_path: str | Path, *, dry_run: bool = False) -> int:
        """Move finished jobs created more than `days` days ago into the database at
        `archive_path`; returns how many (history_archive.move_older_than says how)."""
        from .history_archive import move_older_than

        return move_older_than(self, days, archive_path, dry_run=dry_run)
