"""Command line: python -m webui.cli transcribe FILE... [--format F] [--out DIR] ..."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .offline import enforce_offline

enforce_offline()

from .modules import audio, itn  # noqa: E402
from .modules.engines import EngineError, EngineSettings, get_engine  # noqa: E402
from .modules.pipeline import Finished, PipelineOptions, Progress, SegmentDone, transcribe  # noqa: E402
from .modules.transcript import FORMATS, write  # noqa: E402
from .modules.vad import VAD_BACKENDS, VadOptions  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m webui.cli", description="Transcribe long recordings offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe one or more files")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.add_argument("--format", choices=FORMATS + ("all",), default="txt", help="output format (default txt)")
    t.add_argument("--out", type=Path, default=Path("."), help="output folder (default: current)")
    t.add_argument("--model", default="", help="model name or local folder (default: bundled Whisper base)")
    t.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    t.add_argument("--language", default="auto", help="auto, en, zh, ...")
    t.add_argument("--hotwords", default="")
    t.add_argument("--max-segment", default="auto", help="auto (45/60/90 s by length) or seconds")
    t.add_argument("--silence-db", type=float, default=-30.0, help="silencedetect noise floor (dB)")
    t.add_argument("--silence-min", type=float, default=1.2, help="silencedetect minimum silence (s)")
    t.add_argument("--vad", choices=VAD_BACKENDS, default="librosa", help="VAD inside segments (default librosa, fast)")
    t.add_argument("--no-itn", action="store_true", help="skip inverse text normalisation")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    max_segment = args.max_segment if args.max_segment == "auto" else float(args.max_segment)
    return PipelineOptions(
        engine=EngineSettings(model=args.model, device=args.device, language=args.language, hotwords=args.hotwords),
        max_segment=max_segment, silence_noise_db=args.silence_db, silence_min=args.silence_min,
        vad=VadOptions(backend=args.vad), itn=not args.no_itn,
    )


def run_one(path: str, options: PipelineOptions, formats: tuple[str, ...], out_dir: Path, quiet: bool) -> list[Path]:
    from tqdm import tqdm

    bar = None
    written: list[Path] = []
    try:
        for event in transcribe(path, options):
            if isinstance(event, Progress) and event.stage == "scan" and event.done == 1 and not quiet:
                bar = tqdm(total=0, unit="seg", desc=Path(path).name[:40], file=sys.stderr)
            elif isinstance(event, SegmentDone) and bar is not None:
                bar.total = event.total
                bar.n = event.done
                bar.refresh()
            elif isinstance(event, Finished):
                stem = Path(path).stem or "transcript"
                written = [write(event.transcript, fmt, out_dir, stem) for fmt in formats]
    finally:
        if bar is not None:
            bar.close()
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except ValueError:
        print(f"error: --max-segment must be 'auto' or a number of seconds, not {args.max_segment!r}", file=sys.stderr)
        return 2
    itn.set_enabled(options.itn)
    formats = FORMATS if args.format == "all" else (args.format,)
    try:
        get_engine(options.engine)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for path in args.files:
        try:
            for written in run_one(path, options, formats, args.out, args.quiet):
                print(written)
        except audio.InputError as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
        except (EngineError, OSError, ValueError) as exc:
            failures += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"error: {path}: interrupted", file=sys.stderr)
            return 130
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
