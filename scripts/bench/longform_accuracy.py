"""Accuracy on one long recording that mixes every kind of tests/longform_kinds.py: dialogue
(two speakers taking turns), continuous speech with no pause to cut at, 10 % of room-noise
silence, a music bed under the speech, a telephone-band call, more dialogue; one container
(mp4 with an h264 video track by default). The pipeline runs in a fresh process (default
options, ITN on, the bundled Whisper model on the CPU); then every clip is transcribed alone.

Per section: minutes, WER of the long run against the same clips transcribed alone (same
reference words), planned cuts with speech within 3 s and the words dropped or duplicated
around them, clip onsets that start a line within ±0.5 s, wall seconds spent on the section
(the silence scan shared out by length, each window's time by how much of the window lies in
the section), RTFx, peak RSS of the run so far. The same builders and checks as
tests/test_longform_kinds.py (tests/longform_kinds.py).

    .venv/bin/python scripts/bench/longform_accuracy.py --minutes 150
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def child(path: str, out: str, window_seconds: float | None) -> None:
    """One measured run in this process; writes JSON to `out`."""
    from webui.offline import enforce_offline

    enforce_offline()
    from webui.modules.engines import get_engine
    from webui.modules.events import Finished, Planned, SegmentDone, WindowDone
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    options = PipelineOptions(window_seconds=window_seconds)
    engine = get_engine(options.engine)
    started = time.perf_counter()
    planned = finished = None
    scanned = 0.0
    results, windows = [], []
    for event in transcribe(path, options, engine=engine):
        now = time.perf_counter() - started
        if isinstance(event, Planned):
            planned, scanned = event, now
        elif isinstance(event, SegmentDone):
            results.append((event.result.segment.start, now))
        elif isinstance(event, WindowDone):
            windows.append((event.index, now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        elif isinstance(event, Finished):
            finished = event
    wall = time.perf_counter() - started
    assert planned is not None and finished is not None
    Path(out).write_text(json.dumps({
        "segments": [[s.index, s.start, s.end] for s in planned.segments],
        "windows": [list(w) for w in planned.windows],
        "transcript": finished.transcript.to_dict(),
        "stats": {"batches": finished.stats.batches, "second_passes": finished.stats.second_passes,
                  "itn_fallbacks": finished.stats.itn_fallbacks, "seconds_by_stage": finished.stats.seconds_by_stage},
        "scan_seconds": scanned,
        "results": results,
        "window_done": windows,
        "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def load_run(data: dict):
    from tests.longform_kinds import Run
    from webui.modules.transcript import Segment, Transcript

    planned = SimpleNamespace(segments=tuple(Segment(i, a, b) for i, a, b in data["segments"]),
                              windows=tuple(tuple(w) for w in data["windows"]))
    finished = SimpleNamespace(transcript=Transcript.from_dict(data["transcript"]), stats=data["stats"])
    return Run(planned, finished, data["wall_seconds"], [tuple(r) for r in data["results"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=150.0, help="length of the recording (default 150)")
    parser.add_argument("--container", default="mp4", choices=["mp4", "mp3", "opus", "flac", "wav"])
    parser.add_argument("--window-seconds", type=float, default=None, help="pipeline window (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the recording in this folder and keep it (and run.json)")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.window_seconds)
        return

    from tests import longform_kinds as lk

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clips = lk.load_clip_set()
        started = time.perf_counter()
        rec = lk.build_mixed(folder, clips, args.minutes, args.seed, args.container)
        print(f"built {rec.path.name}: {rec.duration / 60:.1f} min, {len(rec.placed)} clips, "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        out = Path(tmp) / "run.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(rec.path), str(out)]
        if args.window_seconds:
            argv += ["--window-seconds", str(args.window_seconds)]
        proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                              text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"the pipeline run failed:\n{proc.stderr[-3000:]}")
        data = json.loads(out.read_text())
        if args.keep:
            (args.keep / "run.json").write_text(json.dumps(data))
        run = load_run(data)
        print(f"pipeline: {data['wall_seconds']:.0f} s, peak RSS {data['peak_rss_mb']:.0f} MB, stats {data['stats']}",
              flush=True)

        from webui.modules.engines.base import EngineSettings
        from webui.modules.engines.whisper_ct2 import WhisperEngine

        started = time.perf_counter()
        alone = lk.alone_baseline(rec, clips, WhisperEngine(EngineSettings(device="cpu")), {}, Path(tmp))
        print(f"clips alone: {len(alone)} transcribed in {time.perf_counter() - started:.0f} s", flush=True)

        # Wall time and peak RSS by section: the scan shared out by length, each window's time
        # (decode, VAD, model, second pass) by how much of the window lies in the section.
        wall = {s: data["scan_seconds"] * (s.end - s.start) / rec.duration for s in rec.sections}
        rss = {s: 0.0 for s in rec.sections}
        previous = data["scan_seconds"]
        for index, at, peak in data["window_done"]:
            first, last = run.planned.windows[index]
            lo, hi = run.planned.segments[first].start, run.planned.segments[last - 1].end
            for section in rec.sections:
                overlap = max(0.0, min(hi, section.end) - max(lo, section.start))
                if overlap > 0:
                    wall[section] += (at - previous) * overlap / (hi - lo)
                    rss[section] = max(rss[section], peak)
            previous = at

        rows = [(section, lk.score(rec, run, alone, section)) for section in rec.sections]
        whole = lk.score(rec, run, alone)
        header = (f"{'kind/section':<16} {'minutes':>7} {'words':>6} {'WER long':>9} {'alone':>7} {'diff':>6} "
                  f"{'cuts':>5} {'dropped':>7} {'dup':>4} {'onsets ±0.5 s':>14} {'wall s':>7} {'RTFx':>6} "
                  f"{'peak RSS MB':>11}")
        print("\n" + header + "\n" + "-" * len(header))
        for section, s in rows:
            seconds = wall[section]
            print(_row(section.kind, s, seconds, (section.end - section.start) / max(seconds, 1e-9), rss[section]))
        print("-" * len(header))
        print(_row("whole", whole, data["wall_seconds"], rec.duration / data["wall_seconds"], data["peak_rss_mb"]))
        problems = [line for _, s in rows for line in lk.describe(s)[1:]]
        if problems:
            print("\nwhere it went wrong:")
            print("\n".join(line[:400] for line in problems))


def _row(name: str, s, seconds: float, rtfx: float, rss: float) -> str:
    dropped = sum(len(c.dropped) for c in s.cuts)
    duplicated = sum(len(c.duplicated) for c in s.cuts)
    cuts = sum(len(c.times) for c in s.cuts)
    hits = f"{s.onsets - len(s.onset_misses)}/{s.onsets}"
    wer = (f"{s.wer_long:9.2%} {s.wer_alone:7.2%} {(s.wer_long - s.wer_alone) * 100:+6.2f}" if s.ref_words
           else f"{'-':>9} {'-':>7} {'-':>6}")
    return (f"{name:<16} {s.minutes:7.1f} {s.ref_words:6d} {wer} {cuts:5d} {dropped:7d} {duplicated:4d} {hits:>14} "
            f"{seconds:7.0f} {rtfx:6.1f} {rss:11.0f}")


if __name__ == "__main__":
    main()
