"""CPU long-form benchmark: this pipeline vs faster-whisper's own BatchedInferencePipeline.

Same recording (built from the real speech clips in tests/data with pauses at known times),
same Whisper base weights (the bundled CTranslate2 model), int8 on the CPU. Each run is a
fresh process so peak RSS is its own. Prints a table.

    .venv/bin/python scripts/bench/cpu_longform.py --minutes 30
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def run_ours(path: str, batch: int) -> str:
    from webui.modules.engines.base import EngineSettings
    from webui.modules.events import Finished
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    options = PipelineOptions(engine=EngineSettings(device="cpu", cpu_batch_cap=batch), itn=False)
    for event in transcribe(path, options):
        if isinstance(event, Finished):
            return event.transcript.text
    raise RuntimeError("pipeline finished without a transcript")


def run_faster_whisper(path: str, batch: int, beam: int) -> str:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from webui.modules.engines.whisper_ct2 import bundled_model_dir

    model = WhisperModel(str(bundled_model_dir()), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)
    segments, _ = BatchedInferencePipeline(model).transcribe(path, batch_size=batch, beam_size=beam, language=None)
    return " ".join(s.text.strip() for s in segments)


def child(args: argparse.Namespace) -> None:
    """One measured run in this process; prints JSON."""
    from webui.offline import enforce_offline

    enforce_offline()
    start = time.perf_counter()
    if args.which == "ours":
        text = run_ours(args.audio, args.batch)
    else:
        text = run_faster_whisper(args.audio, args.batch, args.beam)
    wall = time.perf_counter() - start
    print(json.dumps({"text": text, "wall": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(audio: Path, which: str, batch: int, beam: int = 1) -> dict:
    argv = [sys.executable, __file__, "--child", which, "--audio", str(audio), "--batch", str(batch), "--beam", str(beam)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode:
        raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=8, help="batch size for both pipelines")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", choices=("ours", "fw"), help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--beam", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.which = args.child
        return child(args)

    import jiwer

    from tests.recordings import build

    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "meeting.flac"
        placed = build(audio, args.minutes, seed=args.seed)
        reference = normalise(" ".join(p.text for p in placed))
        duration = args.minutes * 60
        runs = [
            ("this pipeline (greedy)", measure(audio, "ours", args.batch)),
            ("faster-whisper Batched, beam 1", measure(audio, "fw", args.batch, beam=1)),
            ("faster-whisper Batched, beam 5 (its default)", measure(audio, "fw", args.batch, beam=5)),
        ]
    ours_wall = runs[0][1]["wall"]
    print(f"\nRecording: {args.minutes:g} min ({len(placed)} utterances), Whisper base int8, CPU x{os.cpu_count()}, batch {args.batch}")
    print(f"{'pipeline':46} {'wall s':>8} {'RTFx':>7} {'WER %':>7} {'peak RSS MB':>12} {'ours faster by':>15}")
    for name, r in runs:
        wer = jiwer.wer(reference, normalise(r["text"])) * 100
        print(f"{name:46} {r['wall']:8.1f} {duration / r['wall']:7.1f} {wer:7.2f} {r['rss_mb']:12.0f} {r['wall'] / ours_wall:14.2f}x")


if __name__ == "__main__":
    main()
