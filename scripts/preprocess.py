"""Cut a long recording into segment files at silences, with the app's own cut planner.

    .venv/bin/python scripts/preprocess.py meeting.mp4 --out meeting_segments/
    .venv/bin/python scripts/preprocess.py lecture.m4a --format flac --max-segment 60
    .venv/bin/python scripts/preprocess.py talk.wav --dry-run          # print the plan only

The recording is decoded once (16 kHz mono, as the app transcribes it), the silence scan and
cut plan are those of the app (webui.modules.pipeline.plan, with the app's settings file for
the maximum segment length, silence floor and the model's input cap, unless overridden here),
and each segment is written as <stem>_NNNN.wav (16-bit PCM, 16 kHz mono) or .flac. Joined
end to end the segment files are the decoded recording, sample for sample.

manifest.jsonl in the output folder has one line per segment: its file, the original file's
name and path, start and end in seconds of the original recording (absolute, contiguous), the
sample range, and the plan's settings. A time t in a segment's transcript is at start + t in
the recording.

The segment files can be dropped into the web app's Batch tab (upload them, or point the
Batch folder at the output folder under an allowed root) or given to
`python -m webui.cli transcribe`.
Exit status: 0 done, 1 an error (unreadable input, output folder in use), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from webui.modules import pipeline  # noqa: E402
from webui.modules import settings as settings_mod  # noqa: E402
from webui.modules.audio import SAMPLE_RATE, InputError  # noqa: E402
from webui.modules.segment import limits_for  # noqa: E402
from webui.modules.spool import Spool  # noqa: E402

MANIFEST = "manifest.jsonl"
FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="preprocess.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="the recording (anything ffmpeg reads, video included)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for the segments and manifest.jsonl (default: <stem>_segments beside the input)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="wav", help="segment files (default wav)")
    parser.add_argument("--settings", type=Path, metavar="FILE",
                        help="the app's settings file the plan follows (default $WEBUI_SETTINGS or ./settings.json)")
    parser.add_argument("--max-segment", metavar="auto|SECONDS",
                        help="longest segment: auto (45 s up to 30 min, 60 s up to 90 min, 90 s beyond) or "
                             "seconds (default: the settings')")
    parser.add_argument("--engine-cap", type=float, metavar="SECONDS",
                        help="the model's longest input (default: that of the settings' model where known "
                             "without loading it, e.g. 30 for the bundled Whisper; 0: no cap)")
    parser.add_argument("--silence-db", type=float, default=-30.0, metavar="DB",
                        help="silencedetect noise floor (default -30)")
    parser.add_argument("--silence-min", type=float, default=1.2, metavar="SECONDS",
                        help="shortest silence to cut in (default 1.2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an output folder that already has a manifest (its old segment files are replaced)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    return parser


def plan_settings(args: argparse.Namespace) -> tuple[pipeline.PipelineOptions, float | None]:
    """The app's pipeline options and engine cap for its settings file, with this command's overrides."""
    from webui.modules.vad_view import engine_cap_for

    app = settings_mod.load(args.settings)
    options = app.to_pipeline_options()
    max_segment = app.max_segment if args.max_segment is None else settings_mod.parse_max_segment(args.max_segment)
    options = replace(options, max_segment=max_segment, silence_noise_db=args.silence_db,
                      silence_min=args.silence_min)
    if args.engine_cap is not None:
        cap = args.engine_cap or None
    else:
        cap = engine_cap_for(app.engine_settings())
    return options, cap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine_cap is not None and not (args.engine_cap == 0 or args.engine_cap >= 5):
        parser.error("--engine-cap must be 0 (no cap) or at least 5 seconds")
    try:
        options, cap = plan_settings(args)
    except ValueError as exc:
        parser.error(str(exc))
    source = args.input
    out = args.out or source.with_name(f"{source.stem}_segments")
    if not args.dry_run and (out / MANIFEST).exists() and not args.overwrite:
        print(f"error: {out} already holds a {MANIFEST}; use --overwrite or another --out", file=sys.stderr)
        return 1
    try:
        with Spool() as spool:
            planned = pipeline.plan(source, options, cap, "cpu", None if args.dry_run else spool)
            limits = limits_for(planned.info.duration, options.max_segment, cap)
            settings = {
                "max_segment": options.max_segment, "engine_cap": cap, "max_seconds": limits.max_seconds,
                "min_seconds": limits.min_seconds, "merge_below": limits.merge_below,
                "silence_noise_db": options.silence_noise_db, "silence_min": options.silence_min,
                "sample_rate": SAMPLE_RATE,
            }
            if args.dry_run:
                print_plan(planned, settings)
                return 0
            written = write_segments(source, out, args.format, planned, spool, settings)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(written)} segments of at most {settings['max_seconds']:g} s ({planned.info.duration:.3f} s in all) "
          f"written to {out}/ with {MANIFEST}")
    return 0


def print_plan(planned, settings: dict) -> None:
    info = planned.info
    print(f"{info.path}: {info.duration:.3f} s, {len(planned.segments)} segments "
          f"(plan: {json.dumps(settings)})")
    for seg in planned.segments:
        print(f"  {seg.index:4d}  {seg.start:10.3f} - {seg.end:10.3f}  ({seg.end - seg.start:6.3f} s)")


def write_segments(source: Path, out: Path, fmt: str, planned, spool: Spool, settings: dict) -> list[Path]:
    """Each planned segment from the decoded samples; the cuts are taken to whole samples, and
    the last segment runs to the last decoded sample, so nothing is lost or repeated."""
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    remove_previous(out)
    container, subtype = FORMATS[fmt]
    cuts = [int(round(seg.start * SAMPLE_RATE)) for seg in planned.segments] + [spool.samples]
    manifest_tmp = out / f".{MANIFEST}.tmp"
    written = []
    with open(manifest_tmp, "w", encoding="utf-8") as manifest:
        for seg, first, last in zip(planned.segments, cuts, cuts[1:]):
            name = f"{source.stem}_{seg.index:04d}.{fmt}"
            # Spool.read gives float32 = int16 / 32768 exactly, so this is the decoded int16 again.
            samples = np.rint(spool.read(first / SAMPLE_RATE, last / SAMPLE_RATE) * 32768).astype(np.int16)
            sf.write(str(out / name), samples, SAMPLE_RATE, format=container, subtype=subtype)
            written.append(out / name)
            manifest.write(json.dumps({
                "index": seg.index, "file": name, "source": source.name, "source_path": str(source.resolve()),
                "start": first / SAMPLE_RATE, "end": last / SAMPLE_RATE, "duration": (last - first) / SAMPLE_RATE,
                "start_sample": first, "end_sample": last, "plan": settings,
            }, ensure_ascii=False) + "\n")
    manifest_tmp.replace(out / MANIFEST)
    return written


def remove_previous(out: Path) -> None:
    """--overwrite: the segment files an earlier manifest lists go first (only names inside `out`)."""
    try:
        lines = (out / MANIFEST).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            name = Path(json.loads(line)["file"]).name
        except (ValueError, KeyError, TypeError):
            continue
        (out / name).unlink(missing_ok=True)
    (out / MANIFEST).unlink()


if __name__ == "__main__":
    sys.exit(main())
