"""Command line: python -m webui.cli transcribe FILE... [--format F] [--out DIR] ..."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from .offline import enforce_offline

enforce_offline()

from .modules import audio, checkpoint  # noqa: E402
from .modules.engines import EngineError, EngineSettings, get_engine  # noqa: E402
from .modules.events import Finished, Progress, SegmentDone, run_warnings  # noqa: E402
from .modules.options import PipelineOptions  # noqa: E402
from .modules.pipeline import transcribe  # noqa: E402
from .modules.script import SCRIPTS, canonical as script_name  # noqa: E402
from .modules.diarize.base import DiarizationError, DiarizeOptions  # noqa: E402
from .modules.transcript import FORMATS, Transcript, render, write  # noqa: E402
from .modules.vad_view import engine_cap_for, inspect_vad  # noqa: E402
from .modules.vads import VAD_BACKENDS, VadOptions  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webui.cli", description="Transcribe long recordings offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)  # what shapes the plan: both commands take it
    common.add_argument("--model", default="", help="model name or local folder (default: bundled Whisper base)")
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    common.add_argument("--max-segment", default="auto", help="auto (45/60/90 s by length) or seconds")
    common.add_argument("--silence-db", type=float, default=-30.0, help="silencedetect noise floor (dB)")
    common.add_argument("--silence-min", type=float, default=1.2, help="silencedetect minimum silence (s)")
    common.add_argument("--vad", choices=VAD_BACKENDS, default="librosa",
                        help="VAD inside segments (default librosa: frame energy, fast, with Silero taking out music and other stretches without a voice)")
    p = sub.add_parser("plan", parents=[common], help="everything before the model (probe, decode and silence "
                       "scan, cut plan, VAD): the plan and each stage's time, to check a recording first")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    t = sub.add_parser("transcribe", parents=[common], help="transcribe one or more files")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.add_argument("--format", choices=FORMATS + ("rttm", "all"), default="txt",
                   help="output format (default txt); rttm: the speaker turns (with --diarize); all: every one")
    t.add_argument("--out", type=Path, default=Path("."), help="output folder (default: current)")
    t.add_argument("--language", default="auto",
                   help="auto (the first input's language; an input plainly in another is written in that one), en, zh, ...")
    t.add_argument("--hotwords", default="")
    t.add_argument("--no-itn", action="store_true", help="skip inverse text normalisation")
    t.add_argument("--script", type=script_name, choices=SCRIPTS, default="zh",
                   help="how Chinese is written: zh Simplified (default), zh-TW / zh-HK Traditional (Taiwan / "
                        "Hong Kong forms), keep as the model wrote it; other languages are never converted")
    t.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="audio decoded, batched and checkpointed at once (default 300 on the CPU, 1200 on a GPU)")
    t.add_argument("--no-resume", action="store_true",
                   help="start afresh even when OUT holds a checkpoint of an interrupted run of the same file "
                        "and options (by default that run is resumed at its first unfinished window)")
    t.add_argument("--accurate", action="store_true",
                   help="fewer errors for more time: beam 5 for every language and temperature fallback "
                        "(default: greedy, beam 5 for Japanese and Korean)")
    t.add_argument("--diarize", action="store_true",
                   help="label who speaks (offline CAM++ speaker embeddings, one clustering per recording); "
                        "the count is found automatically unless given below; voice profiles are the web "
                        "app's and the API's (per user), so the CLI labels Speaker 1, 2, ...")
    t.add_argument("--speakers", type=int, default=None, metavar="N", help="exactly N speakers (implies --diarize)")
    t.add_argument("--min-speakers", type=int, default=None, metavar="N", help="at least N (implies --diarize)")
    t.add_argument("--max-speakers", type=int, default=None, metavar="N", help="at most N (implies --diarize)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--ray", default="", metavar="ADDRESS",
                   help="run on a Ray cluster: auto (the one this machine belongs to), host:port, or local "
                        "(a private one on this machine); one actor per GPU (or CPU core) holds the model. "
                        "Several files are spread over the actors, longest first; one file has its windows "
                        "spread (same transcript as without --ray). Off by default")
    return parser


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    max_segment = args.max_segment if args.max_segment == "auto" else float(args.max_segment)
    planning = PipelineOptions(
        engine=EngineSettings(model=args.model, device=args.device), max_segment=max_segment,
        silence_noise_db=args.silence_db, silence_min=args.silence_min, vad=VadOptions(backend=args.vad),
    )
    if args.command == "plan":
        return planning
    return replace(planning, engine=replace(planning.engine, language=args.language, hotwords=args.hotwords),
                   itn=not args.no_itn, script=args.script, window_seconds=args.window, accurate=args.accurate,
                   diarize=diarize_options(args))


def diarize_options(args: argparse.Namespace) -> DiarizeOptions | None:
    """None unless asked for; a speaker count implies --diarize. DiarizationError for bad counts."""
    counts = (args.speakers, args.min_speakers, args.max_speakers)
    if not args.diarize and all(c is None for c in counts):
        return None
    options = DiarizeOptions(num_speakers=args.speakers, min_speakers=args.min_speakers,
                             max_speakers=args.max_speakers)
    options.bounds()
    return options


def plan_command(path: str, options: PipelineOptions, as_json: bool) -> int:
    """`plan FILE`: the segments, windows and speech found, and each stage's wall time against
    the recording's length (no model is loaded: the engine's input cap is known without it)."""
    import time

    started = time.perf_counter()
    result = inspect_vad(path, options, engine_cap_for(options.engine))
    wall = time.perf_counter() - started
    duration = result.info.duration
    stages = {**result.seconds_by_stage, "total": round(wall, 3)}
    if as_json:
        print(json.dumps({
            "file": path, "duration": round(duration, 3), "max_segment_seconds": result.max_seconds,
            "segments": [{"start": v.segment.start, "end": v.segment.end, "speech_seconds": v.speech_seconds,
                          "spans": [list(s) for s in v.spans]} for v in result.segments],
            "windows": [list(w) for w in result.windows], "seconds_by_stage": stages,
            "realtime_by_stage": {k: round(duration / v) if v else None for k, v in stages.items()},
        }, ensure_ascii=False, indent=2))
        return 0
    lengths = result.lengths
    print(f"{path}: {duration / 60:.1f} min · {len(lengths)} segments of at most {result.max_seconds:g} s "
          f"(min {min(lengths, default=0):.1f} s, mean {sum(lengths) / max(1, len(lengths)):.1f} s) · "
          f"{len(result.windows)} windows · speech {result.speech_seconds / 60:.1f} min")
    print(f"{'stage':<24}{'seconds':>10}{'× real time':>14}")
    for stage, seconds in stages.items():
        print(f"{stage:<24}{seconds:>10.3f}{(duration / seconds if seconds else 0):>14.0f}")
    return 0


def run_one(path: str, options: PipelineOptions, formats: tuple[str, ...], out_dir: Path, quiet: bool,
            resume: bool = True, runner=None) -> list[Path]:
    """Transcribe one file, checkpointing every finished window beside the output; the
    checkpoint goes once the outputs are written, and stays (for a resume) if anything fails."""
    from tqdm import tqdm

    stem = Path(path).stem or "transcript"
    sidecar = _GuardedSidecar(checkpoint.Sidecar(out_dir / f"{stem}.checkpoint.jsonl"), path)
    audio.probe(path)  # a bad file fails here with one clear line, before any checkpoint work
    previous = checkpoint.resume_from(path, options, *sidecar.load()) if resume else None
    if previous is not None:
        print(f"resuming {path}: {len(previous.done)} of {len(previous.plan.windows)} windows done "
              f"(checkpoint {sidecar.path}; --no-resume starts afresh)", file=sys.stderr)
    elif sidecar.path.exists():
        print(f"{sidecar.path} is not resumed ({'--no-resume' if not resume else 'another file or other options'});"
              " starting afresh", file=sys.stderr)
    bar = None
    written: list[Path] = []
    events = checkpoint.persist((runner or transcribe)(path, options, resume=previous), sidecar, path, options,
                                resuming=previous is not None)
    try:
        for event in events:
            if isinstance(event, Progress) and event.stage == "scan" and event.done == 1 and not quiet:
                bar = tqdm(total=0, unit="seg", desc=Path(path).name[:40], file=sys.stderr)
            elif isinstance(event, SegmentDone) and bar is not None:
                bar.total = event.total
                bar.n = event.done
                bar.refresh()
            elif isinstance(event, Finished):
                for note in run_warnings(event.stats):
                    print(f"warning: {path}: {note}", file=sys.stderr)
                try:
                    written = [write(event.transcript, fmt, out_dir, stem) for fmt in formats]
                except OSError as exc:
                    raise _rescue(event.transcript, formats, stem, out_dir, exc, sidecar) from exc
    finally:
        if bar is not None:
            bar.close()
    try:
        sidecar.remove()
    except OSError as exc:
        print(f"warning: {path}: could not remove the checkpoint {sidecar.path} ({exc.strerror or exc})",
              file=sys.stderr)
    return written


class _GuardedSidecar:
    """The checkpoint sidecar, except that a folder which cannot take it (full, read-only) costs one
    warning line and the resume point, never the run nor a traceback per window."""

    def __init__(self, sidecar: checkpoint.Sidecar, source: str) -> None:
        self._sidecar, self._source = sidecar, source
        self.path = sidecar.path
        self.failed = False

    def load(self):
        return self._sidecar.load()

    def remove(self) -> None:
        self._sidecar.remove()

    def begin(self, head: dict) -> None:
        self._try(self._sidecar.begin, head)
        if self.failed:  # a header cut short is no checkpoint; an empty file would only confuse a rerun
            try:
                self._sidecar.remove()
            except OSError:
                pass

    def add(self, window: dict) -> None:
        if not self.failed:
            self._try(self._sidecar.add, window)

    def _try(self, store, record: dict) -> None:
        try:
            store(record)
        except OSError as exc:
            if not self.failed:
                print(f"warning: {self._source}: cannot write the checkpoint {self.path} ({exc.strerror or exc}); "
                      "going on without a resume point", file=sys.stderr)
            self.failed = True


def rescue_dir() -> Path:
    """Where the CLI puts outputs its --out folder would not take: WEBUI_CACHE_DIR (as the model
    cache), else $XDG_CACHE_HOME/longform-asr, else ~/.cache/longform-asr; then rescued/."""
    base = os.environ.get("WEBUI_CACHE_DIR")
    if base:
        return Path(base) / "rescued"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "longform-asr" / "rescued"


class NotWritten(OSError):
    """The outputs did not reach --out; str() is the one line the CLI prints."""

    def __str__(self) -> str:
        return str(self.args[0])


def _rescue(transcript: Transcript, formats: tuple[str, ...], stem: str, out_dir: Path, exc: OSError,
            sidecar: _GuardedSidecar) -> NotWritten:
    """Outputs --out would not take: written to the rescue folder instead (under a stem no earlier
    rescue uses), or, if that fails too, the TXT printed on stdout. Returns the error to raise."""
    reason = exc.strerror or str(exc)
    kept = ""
    if not sidecar.failed and sidecar.path.exists():
        kept = (f"; the checkpoint {sidecar.path} is kept: once {out_dir} takes files again, run the same "
                "command to write the outputs there without transcribing again")
    folder = rescue_dir()
    try:
        unique, n = stem, 2
        while any((folder / f"{unique}.{fmt}").exists() for fmt in formats):
            unique, n = f"{stem}-{n}", n + 1
        saved = [write(transcript, fmt, folder, unique) for fmt in formats]
    except OSError as second:
        sys.stdout.write(render(transcript, "txt"))
        sys.stdout.flush()
        return NotWritten(f"could not write the transcript to {out_dir} ({reason}) nor to {folder} "
                          f"({second.strerror or second}); its TXT is printed on stdout above{kept}")
    names = ", ".join(str(p) if i == 0 else p.name for i, p in enumerate(saved))
    return NotWritten(f"could not write the transcript to {out_dir} ({reason}); saved it to {names} instead{kept}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except DiarizationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"error: --max-segment must be 'auto' or a number of seconds, not {args.max_segment!r}", file=sys.stderr)
        return 2
    if args.command == "plan":
        try:
            return plan_command(args.file, options, args.json)
        except (audio.InputError, EngineError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.format == "rttm" and options.diarize is None:
        print("error: --format rttm holds speaker turns: add --diarize", file=sys.stderr)
        return 2
    formats = (FORMATS + (("rttm",) if options.diarize else ())) if args.format == "all" else (args.format,)
    if args.ray:
        return ray_command(args, options, formats)
    try:
        get_engine(options.engine)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for path in args.files:
        try:
            for written in run_one(path, options, formats, args.out, args.quiet, resume=not args.no_resume):
                print(written)
        except audio.InputError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
        except (EngineError, OSError, ValueError) as exc:
            failures += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"error: {path}: interrupted; finished windows are kept, run the same command to resume",
                  file=sys.stderr)
            return 130
        except Exception as exc:  # a bug must still leave one line and the checkpoint, not a traceback
            failures += 1
            print(f"error: {path}: unexpected {type(exc).__name__}: {exc} (finished windows are kept; "
                  "run the same command to resume)", file=sys.stderr)
    return 1 if failures else 0


def ray_command(args: argparse.Namespace, options: PipelineOptions, formats: tuple[str, ...]) -> int:
    """--ray: one file has its windows spread over the actors (checkpointed and resumed as without
    Ray); several files are spread over the actors whole, longest first."""
    try:
        from .modules import ray_backend
    except ImportError as exc:
        print(f"error: --ray needs the ray package ({exc})", file=sys.stderr)
        return 2
    try:
        pool = ray_backend.Pool.start(args.ray, options.engine)
    except Exception as exc:
        print(f"error: could not start the Ray workers at {args.ray!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    failures = 0
    try:
        if len(args.files) == 1:
            path = args.files[0]
            try:
                for written in run_one(path, options, formats, args.out, args.quiet, resume=not args.no_resume,
                                       runner=lambda p, o, resume: ray_backend.transcribe(p, o, pool, resume=resume)):
                    print(written)
            except (audio.InputError, EngineError, OSError, ValueError) as exc:
                failures += 1
                print(f"error: {path}: {exc}", file=sys.stderr)
        else:
            for path, result in ray_backend.transcribe_files(args.files, options, pool):
                if isinstance(result, Exception):
                    failures += 1
                    print(f"error: {path}: {result}", file=sys.stderr)
                    continue
                stem = Path(path).stem or "transcript"
                for note in run_warnings(result.stats):
                    print(f"warning: {path}: {note}", file=sys.stderr)
                try:
                    for fmt in formats:
                        print(write(result.transcript, fmt, args.out, stem))
                except OSError as exc:
                    failures += 1
                    print(f"error: {path}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted; finished windows are kept, run the same command to resume", file=sys.stderr)
        return 130
    finally:
        pool.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
