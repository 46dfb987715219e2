"""Moving old finished jobs out of history.db into an archive database (scripts/archive_history.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import history_db
from .history import History, _iso


def move_older_than(history: History, days: float, archive_path: str | Path, *, dry_run: bool = False) -> int:
    """Move finished jobs (done, failed, cancelled) created more than `days` days ago into
    the database at `archive_path` (created and migrated to this schema first); returns how
    many. Queued and running jobs and their checkpoints never move. With `dry_run`, only
    counts: nothing is created or changed.

    One BEGIN IMMEDIATE transaction holds the write lock on both files while the rows are
    copied (matching columns, ids kept) and deleted here, so the app may go on writing
    (its writers wait for the busy timeout). SQLite commits a WAL transaction over two files
    one file at a time, the connection's main file first; the connection is therefore opened
    on the archive with this database attached, so a crash between the two commits leaves a
    job in both files (the next run recognises it and only deletes it here), never in neither.
    A job whose id the archive already holds for a different job gets a new id there. The job
    with the highest id stays until a newer one exists, so the move never frees an id for reuse."""
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days < float("inf"):
        raise ValueError(f"days must be a non-negative number, not {days!r}")
    cutoff = _iso(datetime.now(timezone.utc) - timedelta(days=days))
    # The highest id stays: SQLite gives a new job max(id) + 1, so moving it would hand its id
    # to the next job, and the archive and this file would hold two jobs of one id.
    finished = ("{0}status IN ('done', 'failed', 'cancelled') AND {0}created_at < ?"
                " AND {0}id < (SELECT MAX(id) FROM {1}jobs)")
    with history._connect() as con:
        due = con.execute(f"SELECT COUNT(*) FROM jobs WHERE {finished.format('', '')}", (cutoff,)).fetchone()[0]
    if dry_run or not due:  # nothing to move: no empty archive file either
        return due
    archive = Path(archive_path)
    if archive.resolve() == history.path.resolve():
        raise ValueError(f"the archive must be another file than the history itself ({archive})")
    History(archive)  # create and migrate the archive; it also closes it again
    with history_db.connect(archive) as con:
        con.execute("ATTACH DATABASE ? AS live", (str(history.path),))
        columns = {}
        for table in ("jobs", "checkpoints", "checkpoint_windows", "revisions"):
            here = [r[1] for r in con.execute(f"PRAGMA live.table_info({table})")]
            there = {r[1] for r in con.execute(f"PRAGMA main.table_info({table})")}
            columns[table] = [c for c in here if c in there]  # identifiers from the schema itself
        jobs = ", ".join(columns["jobs"])
        jobs_but_id = ", ".join(c for c in columns["jobs"] if c != "id")
        con.execute("BEGIN IMMEDIATE")
        try:
            # kind 0: copy with its id; 1: the archive holds this same job already (an
            # interrupted earlier move): delete only; 2: the id is another job's there: new id.
            con.execute("DROP TABLE IF EXISTS temp.moving")
            con.execute(
                "CREATE TEMP TABLE moving AS SELECT j.id AS id, CASE"
                " WHEN a.id IS NULL THEN 0"
                " WHEN a.created_at = j.created_at AND a.file_name = j.file_name THEN 1"
                " ELSE 2 END AS kind"
                f" FROM live.jobs AS j LEFT JOIN main.jobs AS a ON a.id = j.id WHERE {finished.format('j.', 'live.')}",
                (cutoff,),
            )
            total = con.execute("SELECT COUNT(*) FROM temp.moving").fetchone()[0]
            copied = con.execute(
                f"INSERT INTO main.jobs ({jobs}) SELECT {jobs} FROM live.jobs"
                " WHERE id IN (SELECT id FROM temp.moving WHERE kind = 0)").rowcount
            copied += con.execute(
                f"INSERT INTO main.jobs ({jobs_but_id}) SELECT {jobs_but_id} FROM live.jobs"
                " WHERE id IN (SELECT id FROM temp.moving WHERE kind = 2) ORDER BY id").rowcount
            for table in ("checkpoints", "checkpoint_windows", "revisions"):  # leftovers; corrections
                cols = ", ".join(columns[table])
                con.execute(f"INSERT OR REPLACE INTO main.{table} ({cols}) SELECT {cols} FROM live.{table}"
                            " WHERE job_id IN (SELECT id FROM temp.moving WHERE kind = 0)")
            already = con.execute("SELECT COUNT(*) FROM temp.moving WHERE kind = 1").fetchone()[0]
            deleted = con.execute("DELETE FROM live.jobs WHERE id IN (SELECT id FROM temp.moving)").rowcount
            if copied + already != total or deleted != total:
                raise RuntimeError(f"archive move counted {total} jobs but copied {copied} (+{already} "
                                   f"already there) and deleted {deleted}; nothing was changed")
            con.execute("DROP TABLE temp.moving")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return total
