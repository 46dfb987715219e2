"""The writers: TXT, SRT, VTT, JSON and RTTM (the diarizer's turns). Each line carries its
speaker where diarization ran: TXT and SRT as a "Speaker 1: " prefix, VTT as a voice tag."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no runtime import: transcript.py re-exports these names
    from .transcript import Transcript

FORMATS = ("txt", "srt", "vtt", "json")
EXTRA_FORMATS = ("rttm",)  # written when the transcript has speaker turns


def formats_for(t: "Transcript", wanted: tuple[str, ...] = FORMATS) -> tuple[str, ...]:
    """`wanted`, plus RTTM when diarization ran (what `--format all` writes)."""
    return tuple(wanted) + (("rttm",) if t.turns and "rttm" not in wanted else ())


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """SRT wants 00:01:02,345; VTT wants 00:01:02.345."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _said(s) -> str:
    """A line's text, after its speaker's name where diarization ran."""
    text = " ".join(s.display_text.split())
    return f"{s.speaker}: {text}" if s.speaker else text


def to_txt(t: "Transcript") -> str:
    lines = [f"[{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}] {_said(s)}" for s in t.segments]
    return "\n".join(lines) + ("\n" if lines else "")


def to_srt(t: "Transcript") -> str:
    blocks = [f"{i}\n{format_timestamp(s.start)} --> {format_timestamp(s.end)}\n{_said(s)}\n"
              for i, s in enumerate(t.segments, 1)]
    return "\n".join(blocks)


def to_vtt(t: "Transcript") -> str:
    blocks = [f"{format_timestamp(s.start, '.')} --> {format_timestamp(s.end, '.')}\n"
              f"{_voice(s.speaker)}{_vtt_text(s.display_text)}\n" for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _voice(speaker: str | None) -> str:
    # A voice span's annotation ends at '>' and may hold no '&' or '<' unescaped.
    return f"<v {_vtt_text(speaker)}>" if speaker else ""


def _vtt_text(text: str) -> str:
    """Cue text as WebVTT requires: '&' and '<' escaped (so '-->' and tags cannot appear),
    one line (a blank line would end the cue)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(escaped.split())


def to_json(t: "Transcript") -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2)


def to_rttm(t: "Transcript") -> str:
    """NIST RTTM: one SPEAKER line per turn as the diarizer found it (not the text lines).
    Fields are space-separated, so spaces in the file id and speaker names become '_'."""
    uri = "_".join(Path(t.file).stem.split()) or "recording"
    return "".join(f"SPEAKER {uri} 1 {turn.start:.3f} {max(0.0, turn.end - turn.start):.3f} <NA> <NA> "
                   f"{'_'.join(turn.speaker.split())} <NA> <NA>\n" for turn in t.turns)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json, "rttm": to_rttm}


def render(t: "Transcript", fmt: str) -> str:
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS + EXTRA_FORMATS)}")
    return WRITERS[fmt](t)


def write(t: "Transcript", fmt: str, out_dir: Path, stem: str) -> Path:
    """Write one format of `t` to OUT_DIR/STEM.FMT, atomically (write_atomic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.{fmt}"
    write_atomic(path, render(t, fmt))
    return path


def write_atomic(path: Path, text: str) -> None:
    """A temporary file, flushed to disk, renamed into place: a full disk or a kill leaves the
    previous file or none, never a truncated one. A full disk may only show at the flush or the
    fsync, so both come before the rename."""
    partial = path.with_name(f".{path.name}.part")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass  # e.g. a read-only folder: there is no partial file, and the first error is the one to tell


