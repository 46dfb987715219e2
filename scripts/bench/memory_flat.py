"""Peak host memory against recording length: each length transcribed in a fresh process.

The brief's promise: memory does not grow with length. The peak is the model plus one full
batch (12 Whisper inputs decoded together on the CPU), so a recording too short or too sparse to
fill a batch peaks lower, and from the length where one does, the peak stays. Recordings are
built from the real speech clips in tests/data with pauses (and a break every 8 min).

    .venv/bin/python scripts/bench/memory_flat.py --minutes 3,60,180
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="3,60,180", help="comma-separated lengths")
    args = parser.parse_args()
    from tests.recordings import build, load_clips

    clips = load_clips()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (float(m) for m in args.minutes.split(",")):
            path = Path(tmp) / f"rec-{minutes:g}min.flac"
            placed = build(path, minutes, seed=11, clips=clips)
            proc = subprocess.run([sys.executable, "-m", "tests.run_measured", str(path)], capture_output=True,
                                  text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((minutes, len(placed), result))
            path.unlink()
    base = rows[0][2]["peak_rss_mb"]
    print(f"\n{'minutes':>8} {'utterances':>11} {'segments':>9} {'batches':>8} {'wall s':>8} {'RTFx':>6} {'peak RSS MB':>12} {'vs first':>9}")
    for minutes, count, r in rows:
        print(f"{minutes:8g} {count:11d} {r['stats']['segments']:9d} {r['stats']['batches']:8d} {r['wall_seconds']:8.1f} "
              f"{minutes * 60 / r['wall_seconds']:6.1f} {r['peak_rss_mb']:12.0f} {r['peak_rss_mb'] / base - 1:+9.1%}")


if __name__ == "__main__":
    main()
