"""Move old jobs out of History into a dated archive database beside it, delete old archives,
then VACUUM. Safe while the app runs.

    .venv/bin/python scripts/archive_history.py --days 90                 # history.db from ./settings.json
    .venv/bin/python scripts/archive_history.py --history /srv/asr/history.db --days 30 --dry-run

Finished jobs (done, failed, cancelled) created more than --days days ago move into
history_YYYYMMDD.db (today's date, beside history.db or in --archive-dir, same schema and job
ids; several runs on one day add to the same file). Queued and running jobs and their checkpoints never move. The
move is one SQLite transaction on the WAL database (the app's writers simply wait a moment),
and a crash can leave a job in both files but never in neither. Archives (history_*.db) in
that folder last written more than --archive-retention-days ago are deleted, and the database
is VACUUMed to give the space back.

Note: the app's own daily housekeeping also deletes history_*.db beside history.db once they
are older than its retention_days setting (default 7 days). To keep archives longer, raise
that setting or use --archive-dir with a folder of their own.

An archive opens like any history file, e.g. in Python: History("history_20250101.db").search(...).
Exit status: 0 done (or nothing to do), 1 an error, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webui.modules import housekeeping  # noqa: E402
from webui.modules import settings as settings_mod  # noqa: E402
from webui.modules.history import History  # noqa: E402

log = logging.getLogger("archive_history")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archive_history.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--history", type=Path, metavar="DB",
                       help="the history database (default: history_path of the app's settings file)")
    where.add_argument("--settings", type=Path, metavar="FILE",
                       help="the app's settings file (default $WEBUI_SETTINGS or ./settings.json; "
                            "a relative history_path is taken from the current folder, as the app does)")
    parser.add_argument("--days", type=_days, default=90.0, metavar="N",
                        help="move finished jobs created more than N days ago (default 90; fractions allowed)")
    parser.add_argument("--archive-dir", type=Path, metavar="DIR",
                        help="folder of the archives <history stem>_YYYYMMDD.db (default: beside the database)")
    parser.add_argument("--archive-retention-days", type=_days, default=365.0, metavar="M",
                        help="delete archives in that folder last written more than M days ago (default 365); "
                             "done before the move, so today's archive is never deleted")
    parser.add_argument("--keep-archives", action="store_true", help="delete no archive")
    parser.add_argument("--no-vacuum", action="store_true", help="skip the VACUUM after the move")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would move and list the archives, changing nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail")
    return parser


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"days must be 0 or more, not {text!r}")
    return value


def history_path(args: argparse.Namespace) -> Path:
    if args.history is not None:
        return args.history
    return Path(settings_mod.load(args.settings).history_path)


def archive_path(history: Path, folder: Path | None = None, when: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d", time.localtime(when))
    return (folder or history.parent) / f"{history.stem}_{stamp}.db"


def _size(path: Path) -> int:
    """The database with its WAL: what the folder holds for it."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s archive_history: %(message)s", stream=sys.stdout)
    path = history_path(args)
    if not path.is_file():
        print(f"error: no history database at {path} (use --history or --settings)", file=sys.stderr)
        return 1
    target = archive_path(path, args.archive_dir)
    # delete_old_archives looks for <stem>_*.db beside the path it is given: the archives' folder.
    beside_archives = target.parent / path.name
    try:
        history = History(path)  # an up-to-date schema first (the app would migrate it too)
        if args.dry_run:
            due = history.move_older_than(args.days, target, dry_run=True)
            log.info("dry run: %d finished job(s) older than %g days would move from %s to %s "
                     "(%d job(s) in all)", due, args.days, path, target, history.count())
            now = time.time()
            for old in sorted(target.parent.glob(f"{path.stem}_*.db")):
                age = (now - old.stat().st_mtime) / housekeeping.DAY
                fate = "would be deleted" if not args.keep_archives and age > args.archive_retention_days else "kept"
                log.info("dry run: archive %s, %.1f days old, %s: %s", old.name, age, _mb(_size(old)), fate)
            return 0
        if not args.keep_archives:
            deleted = housekeeping.delete_old_archives(beside_archives, args.archive_retention_days)
            if deleted or args.verbose:
                log.info("deleted %d archive(s) older than %g days in %s", deleted,
                         args.archive_retention_days, target.parent)
        before = _size(path)
        moved = history.move_older_than(args.days, target)
        log.info("moved %d finished job(s) older than %g days from %s to %s", moved, args.days, path,
                 target if moved else "(no archive written)")
        if not args.no_vacuum:
            history.vacuum()
            log.info("VACUUM %s: %s -> %s", path, _mb(before), _mb(_size(path)))
    except Exception as exc:  # sqlite3.Error, OSError, RuntimeError from the schema check
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
