"""Checkpoints: every finished window stored as it finishes, so a killed or failed run resumes
at its first unfinished window. The same records go to a sidecar file (CLI) or history.db (app).

A checkpoint is only used for the same file (size and a hash of a few blocks) run with the same
options (ITN and the Chinese script aside: they are applied once at the end); anything else starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator, Protocol

from .audio import AudioInfo
from .events import Event, Planned, Resume, WindowCounts, WindowDone
from .options import PipelineOptions
from .transcript import Scores, Segment, SegmentResult, TimedText, Word

log = logging.getLogger(__name__)

VERSION = 1
_BLOCK = 1 << 16


def file_identity(path: str | Path) -> str:
    """Size plus SHA-256 of the first, middle and last 64 KiB: cheap on a 3-hour file, and a
    changed or replaced recording is caught."""
    p = Path(path)
    size = p.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - _BLOCK // 2), max(0, size - _BLOCK)}):
            f.seek(offset)
            digest.update(f.read(_BLOCK))
    return f"{size}:{digest.hexdigest()[:32]}"


def options_key(options: PipelineOptions) -> str:
    """What the windows' text depends on: every option but ITN and the Chinese script (both
    applied once at the end). `script` is left out of the key altogether, so checkpoints written
    before the option existed still resume."""
    values = asdict(replace(options, itn=True))
    values.pop("script", None)
    data = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def header(path: str | Path, options: PipelineOptions, planned: Planned) -> dict:
    return {"version": VERSION, "identity": file_identity(path), "options": options_key(options),
            "plan": _plan_to_dict(planned)}


def resume_from(path: str | Path, options: PipelineOptions, head: dict | None, windows: list[dict]) -> Resume | None:
    """The Resume a stored checkpoint gives for this file and these options, or None."""
    if not head or head.get("version") != VERSION or head.get("options") != options_key(options):
        return None
    try:
        if head.get("identity") != file_identity(path):
            return None
        plan = _plan_from_dict(head["plan"])
        done = {w.index: w for w in map(_window_from_dict, windows) if 0 <= w.index < len(plan.windows)}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring an unreadable checkpoint for %s: %s", path, exc)
        return None
    return Resume(plan, tuple(done[k] for k in sorted(done)))


def stored_pieces(head: dict | None, windows: list[dict]) -> list[TimedText]:
    """The text a stored checkpoint holds, in time order (for a job that cannot be resumed)."""
    results = []
    for window in sorted(windows, key=lambda w: w.get("index", 0)):
        try:
            results.extend(_window_from_dict(window).results)
        except (KeyError, TypeError, ValueError):
            continue
    return [p for r in results for p in r.pieces]


class Store(Protocol):
    """Where a run's checkpoint lives."""

    def begin(self, head: dict) -> None: ...

    def add(self, window: dict) -> None: ...


def persist(events: Iterator[Event], store: Store, path: str | Path, options: PipelineOptions,
            resuming: bool) -> Iterator[Event]:
    """Pass the run's events through, storing the plan and every finished window as they come.
    A failing store is logged (once: a full disk stays full), never fatal: the run itself must
    not be lost to it."""
    failed = False
    for event in events:
        try:
            if isinstance(event, Planned) and not resuming:
                store.begin(header(path, options, event))
            elif isinstance(event, WindowDone):
                store.add(window_to_dict(event))
        except (OSError, sqlite3.Error) as exc:
            if not failed:
                log.warning("could not store the checkpoint of %s (%s); the run goes on without one", path, exc)
            failed = True
        except Exception:
            log.exception("could not store the checkpoint of %s", path)
        yield event


class Sidecar:
    """A JSON-lines file beside the CLI's output: the header, then one line per finished window,
    each flushed to disk before the run goes on. A line cut short by a kill is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def begin(self, head: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write(head, "w")

    def add(self, window: dict) -> None:
        self._write(window, "a")

    def load(self) -> tuple[dict | None, list[dict]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None, []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line of a killed run
        return (records[0], records[1:]) if records else (None, [])

    def _ends_mid_line(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:
            return False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self, record: dict, mode: str) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if mode == "a" and self._ends_mid_line():
            line = "\n" + line  # a killed run's half-written line must not swallow this one
        with open(self.path, mode, encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


def window_to_dict(window: WindowDone) -> dict:
    data = {"index": window.index, "language": window.language, "counts": asdict(window.counts),
            "results": [_result_to_dict(r) for r in window.results]}
    if window.speakers is not None:
        data["speakers"] = window.speakers
    return data


def _window_from_dict(data: dict) -> WindowDone:
    return WindowDone(int(data["index"]), tuple(_result_from_dict(r) for r in data["results"]),
                      str(data.get("language", "")), WindowCounts(**data["counts"]), data.get("speakers"))


def _result_to_dict(result: SegmentResult) -> dict:
    seg = result.segment
    return {"segment": [seg.index, seg.start, seg.end], "speech": result.speech_seconds,
            "language": result.language, "itn_applied": result.itn_applied,
            "pieces": [_piece_to_list(p) for p in result.pieces]}


def _piece_to_list(p: TimedText) -> list:
    """[start, end, text, text_itn], then the scores (or null) and the words as [start, end, text]
    where the engine gave them; compact, since a 3-hour job stores every word here."""
    out: list = [p.start, p.end, p.text, p.text_itn]
    if p.scores is not None or p.words:
        out.append(p.scores.to_dict() if p.scores is not None else None)
    if p.words:
        out.append([[w.start, w.end, w.text] for w in p.words])
    return out


def _result_from_dict(data: dict) -> SegmentResult:
    index, start, end = data["segment"]
    # Checkpoints written before scores or words were kept have fewer fields.
    pieces = tuple(TimedText(float(s), float(e), str(t), str(ti), Scores.from_dict(rest[0]) if rest else None,
                             tuple(Word(float(a), float(b), str(w)) for a, b, w in rest[1]) if len(rest) > 1 else ())
                   for s, e, t, ti, *rest in data["pieces"])
    return SegmentResult(Segment(int(index), float(start), float(end)), pieces, float(data["speech"]),
                         str(data.get("language", "")), bool(data.get("itn_applied", False)))


def _plan_to_dict(planned: Planned) -> dict:
    return {"info": asdict(planned.info), "segments": [[s.index, s.start, s.end] for s in planned.segments],
            "windows": [list(w) for w in planned.windows], "max_seconds": planned.max_seconds,
            "probed_seconds": planned.probed_seconds}


def _plan_from_dict(data: dict) -> Planned:
    segments = tuple(Segment(int(i), float(s), float(e)) for i, s, e in data["segments"])
    windows = tuple((int(a), int(b)) for a, b in data["windows"])
    return Planned(AudioInfo(**data["info"]), segments, windows, float(data["max_seconds"]),
                   float(data.get("probed_seconds", 0.0)))
