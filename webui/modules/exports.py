"""Files a finished job or batch is downloaded as: each transcript in every format (the JSON
says which revision it is), and a batch's summary (CSV, JSON) with all its transcripts and both
summaries in one zip."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .jobs import DONE, FAILED, JobState
from .transcript import FORMATS, Transcript, render
from .writers import write_atomic


class ExportError(OSError):
    """Downloads that could not be written (disk full, read-only folder): nothing half-written is
    left behind, and str() is a sentence the UI can show as it is. `errno` is the cause's."""

    def __init__(self, message: str, cause: OSError) -> None:
        super().__init__(cause.errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def safe_stem(name: str) -> str:
    stem = Path(name).stem or "transcript"
    cleaned = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in stem).strip(" .")
    return cleaned or "transcript"


def render_file(transcript: Transcript, fmt: str, revision: int | None = None) -> str:
    """One download's text; the JSON also says which revision it is (0: the model's output)."""
    if fmt == "json" and revision is not None:
        return json.dumps({**transcript.to_dict(), "revision": revision}, ensure_ascii=False, indent=2)
    return render(transcript, fmt)




def write_transcript_files(transcript: Transcript, out_dir: Path, stem: str,
                           formats: Sequence[str] = FORMATS, revision: int | None = None) -> dict[str, Path]:
    """The transcript in each format as `<out_dir>/<stem>.<fmt>`, each written atomically.
    ExportError if the folder will not take them."""
    paths: dict[str, Path] = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            paths[fmt] = out_dir / f"{safe_stem(stem)}.{fmt}"
            write_atomic(paths[fmt], render_file(transcript, fmt, revision))
    except OSError as exc:
        raise ExportError(f"Could not save the {transcript.file or stem} downloads in {out_dir}: {_reason(exc)}. "
                          "Free some space (or make the folder writable) and try again.", exc) from exc
    return paths


SUMMARY_FIELDS = ("file", "status", "duration_s", "processing_s", "model", "language", "characters",
                  "history_id", "error")


def summary_rows(states: Iterable[JobState]) -> list[dict]:
    rows = []
    for s in states:
        t = s.transcript if s.status == DONE else None
        rows.append({
            "file": s.file_name, "status": s.status, "duration_s": round(s.duration, 2),
            "processing_s": round(s.elapsed, 2) if s.started_at else None,
            "model": (t.model if t else s.model), "language": (t.language if t else ""),
            "characters": len((t.text_itn or t.text) if t else ""),
            "history_id": s.history_id, "error": s.error,
        })
    return rows


def write_batch_outputs(states: Sequence[JobState], out_dir: Path, extra_rows: Sequence[dict] = ()) -> dict[str, Path]:
    """summary.csv, summary.json and transcripts.zip (every finished transcript in every format).
    `extra_rows` are files refused before queueing (name, error), so the summary lists them too.

    All or nothing: the three are written to temporary files first and renamed into place only
    once all of them are on disk, so a full or read-only disk leaves no half-written summary or
    zip (and the previous ones, if any, as they were); ExportError then says why."""
    rows = summary_rows(states) + [{**{k: None for k in SUMMARY_FIELDS}, "status": FAILED, **r} for r in extra_rows]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    summary_csv = table.getvalue()
    summary_json = json.dumps(rows, ensure_ascii=False, indent=2)

    def write_zip(out) -> None:
        used: set[str] = set()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for s in states:
                if s.status != DONE or s.transcript is None:
                    continue
                stem = safe_stem(s.file_name)
                unique, n = stem, 2
                while unique in used:
                    unique, n = f"{stem}_{n}", n + 1
                used.add(unique)
                for fmt in FORMATS:
                    archive.writestr(f"{unique}.{fmt}", render_file(s.transcript, fmt))
            archive.writestr("summary.csv", summary_csv)
            archive.writestr("summary.json", summary_json)

    paths = {"csv": out_dir / "summary.csv", "json": out_dir / "summary.json", "zip": out_dir / "transcripts.zip"}
    writers: dict[str, Callable] = {
        "csv": lambda out: out.write(summary_csv.encode("utf-8")),
        "json": lambda out: out.write(summary_json.encode("utf-8")),
        "zip": write_zip,
    }
    partials = {kind: path.with_name(f".{path.name}.part") for kind, path in paths.items()}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for kind, partial in partials.items():
            with open(partial, "wb") as out:
                writers[kind](out)
                out.flush()
                os.fsync(out.fileno())
        for kind, partial in partials.items():
            os.replace(partial, paths[kind])
    except OSError as exc:
        raise ExportError(f"Could not save the batch summary and transcripts in {out_dir}: {_reason(exc)}. "
                          "Free some space (or make the folder writable) and try again.", exc) from exc
    finally:
        for partial in partials.values():
            try:
                partial.unlink(missing_ok=True)
            except OSError:
                pass
    return paths
