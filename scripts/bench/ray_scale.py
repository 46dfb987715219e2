"""Ray backend scaling: one ~10-minute recording (real speech clips from tests/data with pauses),
the bundled Whisper base on the CPU, windows spread over N = 1, 2 actors of a private local Ray
cluster; the single-process pipeline as the baseline. Prints a table of wall time and × real time,
and whether each transcript equals the single-process one.

On a 2-core machine two actors can at best double one actor's speed and compete with the driver
(decode, Ray's own processes): the numbers there show the overhead, not the scaling of a cluster.

    .venv/bin/python scripts/bench/ray_scale.py --minutes 10 --actors 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--window", type=float, default=60.0, help="window seconds (smaller: more parallel units)")
    parser.add_argument("--no-local", action="store_true", help="skip the single-process baseline")
    args = parser.parse_args()

    from tests.recordings import build
    from webui.modules import ray_backend
    from webui.modules.engines.base import EngineSettings
    from webui.modules.events import Finished
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    options = PipelineOptions(engine=EngineSettings(device="cpu"), itn=False, window_seconds=args.window)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        build(path, args.minutes)
        seconds = args.minutes * 60
        expected = None
        if not args.no_local:
            started = time.perf_counter()
            expected = [e for e in transcribe(path, options) if isinstance(e, Finished)][0].transcript
            wall = time.perf_counter() - started
            rows.append(("single process", wall, seconds / wall, "-"))
            print(rows[-1], flush=True)
        ray_backend.connect("local", object_store_mb=200)
        for n in args.actors:
            started = time.perf_counter()
            pool = ray_backend.Pool(EngineSettings(device="cpu"), n)
            ready = time.perf_counter() - started
            started = time.perf_counter()
            got = [e for e in ray_backend.transcribe(path, options, pool) if isinstance(e, Finished)][0].transcript
            wall = time.perf_counter() - started
            pool.close()
            same = "-" if expected is None else ("yes" if got.to_dict() == expected.to_dict() else "NO")
            rows.append((f"ray, {n} actor(s) (+{ready:.0f} s start)", wall, seconds / wall, same))
            print(rows[-1], flush=True)
    print(f"\n{args.minutes:g}-minute recording, window {args.window:g} s, Whisper base int8 CPU\n")
    print(f"| {'run':<36} | {'wall s':>8} | {'× real time':>11} | same transcript |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 13}|-----------------|")
    for name, wall, speed, same in rows:
        print(f"| {name:<36} | {wall:>8.1f} | {speed:>11.1f} | {same:<15} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
