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
