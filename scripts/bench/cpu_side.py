"""The CPU side of a run (everything before the model) against one plain ffmpeg decode.

    .venv/bin/python scripts/bench/cpu_side.py [--minutes 150] [--formats mp3,opus] [--keep DIR]

Builds a recording of real speech clips and silences (tests/recordings.build), encodes it to
each format, then for each: a plain `ffmpeg -i FILE -ac 1 -ar 16000 -f s16le -` to /dev/null,
and `python -m webui.cli plan FILE --json` (probe, one decode with the silence scan, cut plan,
VAD), each in a fresh process. Prints wall and CPU seconds (this process and its children: on one
core CPU seconds are what bounds throughput) and × real time per stage. Targets (issue 11): the
CPU side at >= 2000x real time on one core; plan's wall time within 1.5x of the plain decode.
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def timed(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child and its children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=150.0)
    parser.add_argument("--formats", default="mp3,opus")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the recordings (default: a temp one)")
    args = parser.parse_args()
    from tests.recordings import build, load_clips

    folder = args.keep or Path(tempfile.mkdtemp(prefix="cpu-side-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"meeting-{args.minutes:g}min.flac"
    if not source.exists():
        build(source, args.minutes, seed=11, clips=load_clips())
    codecs = {"mp3": ["-c:a", "libmp3lame", "-b:a", "64k"], "opus": ["-c:a", "libopus", "-b:a", "32k"],
              "m4a": ["-c:a", "aac", "-b:a", "64k"], "flac": ["-c:a", "flac"]}
    print(f"{'format':<6}{'what':<28}{'wall s':>9}{'cpu s':>9}{'× rt (cpu)':>12}")
    for fmt in args.formats.split(","):
        path = folder / f"{source.stem}.{fmt}"
        if not path.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *codecs[fmt],
                            str(path)], check=True)
        seconds = args.minutes * 60
        d_wall, d_cpu, _ = timed(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1",
                                  "-ar", "16000", "-f", "s16le", "-y", os.devnull])
        p_wall, p_cpu, out = timed([sys.executable, "-m", "webui.cli", "plan", str(path), "--json"])
        stages = json.loads(out)["seconds_by_stage"]
        print(f"{fmt:<6}{'plain ffmpeg decode':<28}{d_wall:>9.2f}{d_cpu:>9.2f}{seconds / d_cpu:>12.0f}")
        for stage, wall in stages.items():
            if stage != "total":
                print(f"{'':<6}{'  plan: ' + stage:<28}{wall:>9.2f}{'':>9}{seconds / max(wall, 1e-9):>12.0f}")
        print(f"{'':<6}{'plan, whole process':<28}{p_wall:>9.2f}{p_cpu:>9.2f}{seconds / p_cpu:>12.0f}")
        print(f"{'':<6}{'  in-process stages (wall)':<28}{stages['total']:>9.2f}{'':>9}"
              f"{seconds / stages['total']:>12.0f}")
        print(f"{'':<6}{'plan wall / decode wall':<28}{p_wall / d_wall:>9.2f}   (target <= 1.5; stages only: "
              f"{stages['total'] / d_wall:.2f})")


if __name__ == "__main__":
    main()
