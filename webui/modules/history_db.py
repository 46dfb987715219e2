"""The history database file itself: its schema, how a connection is opened, and the
one-time switch to WAL and migration when a process first opens the file.

WAL lets readers and one writer work at once; the busy timeout makes writers wait
their turn instead of failing. Both matter because the web server, the CLI and the
archive script may all open the same file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATUSES = ("queued", "running", "done", "failed", "cancelled")
BUSY_TIMEOUT_MS = 10_000

# MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        f"""CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL,
            file_path TEXT NOT NULL DEFAULT '',
            duration REAL,
            model TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{{}}',
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {STATUSES}),
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            text TEXT NOT NULL DEFAULT '',
            text_itn TEXT NOT NULL DEFAULT '',
            segments TEXT NOT NULL DEFAULT '[]',
            language TEXT NOT NULL DEFAULT '',
            archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1))
        )""",
        "CREATE INDEX jobs_created_at ON jobs (created_at)",
        "CREATE INDEX jobs_status ON jobs (status)",
    ],
    [  # checkpoints: a running job's plan and finished windows, dropped once it ends
        """CREATE TABLE checkpoints (
            job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            header TEXT NOT NULL
        )""",
        """CREATE TABLE checkpoint_windows (
            job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, idx)
        )""",
    ],
    [  # per-user History when the server has logins
        "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX jobs_owner ON jobs (owner)",
    ],
    [  # ids never reused (AUTOINCREMENT): a deleted job's id must not reach the next job, whose
       # row a still-running or resumed old job would otherwise write into
        f"""CREATE TABLE jobs_v4 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_name TEXT NOT NULL,
            file_path TEXT NOT NULL DEFAULT '',
            duration REAL,
            model TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{{}}',
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {STATUSES}),
            error TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            text TEXT NOT NULL DEFAULT '',
            text_itn TEXT NOT NULL DEFAULT '',
            segments TEXT NOT NULL DEFAULT '[]',
            language TEXT NOT NULL DEFAULT '',
            archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
            owner TEXT NOT NULL DEFAULT ''
        )""",
        "INSERT INTO jobs_v4 SELECT id, file_name, file_path, duration, model, settings, status, error, created_at,"
        " started_at, finished_at, text, text_itn, segments, language, archived, owner FROM jobs",
        "DROP TABLE jobs",
        "ALTER TABLE jobs_v4 RENAME TO jobs",
        "CREATE INDEX jobs_created_at ON jobs (created_at)",
        "CREATE INDEX jobs_status ON jobs (status)",
        "CREATE INDEX jobs_owner ON jobs (owner)",
    ],
    [  # whose each download folder is: the results folder is served, only to its owner
        """CREATE TABLE downloads (
            token TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ],
    [  # corrections: revision N (1, 2, ...) of a job's lines; the model's own (revision 0) stays in jobs
        """CREATE TABLE revisions (
            job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            number INTEGER NOT NULL CHECK (number >= 1),
            created_at TEXT NOT NULL,
            author TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            segments TEXT NOT NULL,
            PRIMARY KEY (job_id, number)
        )""",
    ],
    [  # the diarizer's speaker turns (RTTM, the page's talk-time summary); the lines carry their speaker
        "ALTER TABLE jobs ADD COLUMN speakers TEXT NOT NULL DEFAULT '[]'",
    ],
    [  # voice profiles (voice_profiles.py): a user's named voices, embeddings only, never audio;
       # and each job's speaker centroids, so a speaker of a finished job can become a profile
        """CREATE TABLE voice_profiles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            vector BLOB NOT NULL,
            embeddings INTEGER NOT NULL CHECK (embeddings >= 1),
            clips INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX voice_profiles_owner_name ON voice_profiles (owner, name COLLATE NOCASE)",
        "ALTER TABLE jobs ADD COLUMN voices TEXT NOT NULL DEFAULT '[]'",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


@contextmanager
def connect(path: str | Path) -> Iterator[sqlite3.Connection]:
    # isolation_level=None: each statement commits by itself; multi-statement
    # work (migrations, the archive move) opens its own transaction explicitly.
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA foreign_keys=ON")
        yield con
    finally:
        con.close()


def prepare(path: Path) -> None:
    """Create the file if needed, switch it to WAL and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as con:
        enable_wal(con)
        migrate(con, path)


def enable_wal(con: sqlite3.Connection) -> None:
    """Switch to WAL (persistent: stored in the file). The switch needs the file to itself and
    SQLite returns "database is locked" at once, without its busy handler, when another process
    is opening the same new file, so wait and retry here, up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def migrate(con: sqlite3.Connection, path: Path) -> None:
    # BEGIN IMMEDIATE takes the write lock before reading the version, so two
    # processes opening a fresh file cannot both apply the same migration.
    # Foreign keys off while a table is rebuilt: dropping the old jobs table must not cascade
    # into the checkpoints (the pragma cannot change inside a transaction).
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute("BEGIN IMMEDIATE")
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} has schema version {version}, but this code knows only up to "
                f"{SCHEMA_VERSION}; it was written by a newer version of the app"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                con.execute(statement)
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # int constant, not user data
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute("PRAGMA foreign_keys=ON")


class ServedElsewhere(RuntimeError):
    """Another live server process holds the history file."""


class ServerLock:
    """One server per history file: two would both resume the same unfinished jobs and run each
    twice. An exclusive flock on `<history>.lock` (released by the kernel when the process dies,
    so a killed server never leaves a stale lock); the file holds the holder's PID for the message."""

    def __init__(self, history_path: str | Path) -> None:
        import fcntl
        import os

        self.path = Path(f"{history_path}.lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ServedElsewhere(f"{history_path} is already served by PID {holder}; stop that server "
                                  "or give this one another history file (--history)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        import os

        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
