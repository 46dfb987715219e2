"""How Mandarin is cut and decoded, variant by variant: CER and encoder inputs on the real
Mandarin recordings of vs_faster_whisper.py (real_zh, long_zh, dialog_zh), bundled Whisper base,
CPU, in process, ITN off, one run per variant.

    now        the default: utterances packed into full inputs, timestamp tokens, greedy
    beam5      the same at beam 5
    no-ts      packed at beam 5 without timestamp tokens (as every other language decodes)
    utterance  one utterance per input at beam 5 (the default until 2026-12-06)

The second pass is today's in every row (Chinese judged by characters, stretched words, reruns
two utterances at a time), so `utterance` is not exactly the old code; the README's Mandarin
section gives the step-by-step history.

    .venv/bin/python scripts/bench/zh_variants.py
    .venv/bin/python scripts/bench/zh_variants.py --only dialog_zh --variants now,utterance
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("now", "beam5", "no-ts", "utterance")


def run(variant: str, path: Path) -> tuple[str, float]:
    """The transcript's text and the seconds it took."""
    from webui.modules.engines import load_engine
    from webui.modules.engines.base import EngineSettings
    from webui.modules.events import SegmentDone
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    options = PipelineOptions(engine=EngineSettings(device="cpu", language="auto"), itn=False,
                              utterance_inputs=True if variant == "utterance" else None)
    engine = load_engine(options.engine)  # a fresh one per variant (get_engine would reuse it)
    if variant != "now":
        engine.beam_size = 5
    if variant == "no-ts":  # Chinese otherwise always gets timestamp tokens (engines/whisper_ct2.py)
        engine._options = _without_timestamps(engine._options)
    started = time.perf_counter()
    try:
        texts = [e.result.text for e in transcribe(path, options, engine=engine) if isinstance(e, SegmentDone)]
    finally:
        engine.unload()
    return " ".join(texts), time.perf_counter() - started


def _without_timestamps(options_for):
    from dataclasses import replace

    return lambda language: replace(options_for(language), without_timestamps=True)


def main() -> None:
    import vs_faster_whisper as vs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="real_zh,long_zh,dialog_zh")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/lfbench"))
    parser.add_argument("--long-minutes", type=float, default=20.0)
    parser.add_argument("--dialog-minutes", type=float, default=15.0)
    args = parser.parse_args()
    from webui.offline import enforce_offline

    enforce_offline()
    vs.install_counters()  # counts every encoder input of the engines made below
    print(f"{'recording':10} {'variant':10} {'CER':>7} {'inputs':>6} {'tokens':>7} {'seconds':>8}")
    for name in args.only.split(","):
        path, reference = vs.build(name, args.work, args)
        for variant in args.variants.split(","):
            vs.Counts.inputs = vs.Counts.tokens = 0
            text, seconds = run(variant, path)
            cer = vs.error_rate(reference, text, "zh")
            print(f"{name:10} {variant:10} {cer:7.2%} {vs.Counts.inputs:6d} {vs.Counts.tokens:7d} {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
