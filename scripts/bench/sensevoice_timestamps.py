"""SenseVoice word times: time per item against batch size, funasr's own call against ours.

    .venv/bin/python scripts/bench/sensevoice_timestamps.py [--seconds 8] [--repeats 3]
        [--batches 1,2,4,8,16] [--vocab 80,25055]

funasr's SenseVoiceSmall.inference(output_timestamp=True) recomputes ctc.log_softmax over the
whole batch once per item, so time per item grows with the batch; engines/funasr/sensevoice.py
aligns each item on its own frames. Runs on one CPU thread with the tiny SenseVoice model the
tests build (tests/tiny_models.py: seeded random weights, a 64-wide encoder, 80 pieces). One
table per --vocab: 80 is the tiny model as built; a larger figure widens its CTC head to that
many outputs (25,055: SenseVoiceSmall's), the extra ones never winning, so the text stays the
same and each log_softmax costs what the published vocabulary costs (on a 64-wide encoder; the
published one is 512 wide). Every batch holds copies of one clip on which funasr's own alignment
of the junk text succeeds; the two paths' results are checked equal before they are timed.
Times are CPU time of this process (min of --repeats), steadier than wall time on a shared box.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import build_tiny_sensevoice, speech_like  # noqa: E402
from webui.modules.engines.base import EngineSettings  # noqa: E402
from webui.modules.engines.funasr import FunASREngine, sensevoice  # noqa: E402


def ms_per_item(run: Callable[[], object], items: int, repeats: int) -> float:
    run()  # warm-up: allocator, first-call paths
    times = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return 1000 * min(times) / items


def widen_ctc(model: torch.nn.Module, vocab: int) -> None:
    """A CTC head `vocab` wide whose extra outputs never win (bias -1e4): same text and times,
    the log_softmax cost of that vocabulary."""
    old = model.ctc.ctc_lo
    if vocab <= old.out_features:
        return
    new = torch.nn.Linear(old.in_features, vocab)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.fill_(-1e4)
        new.weight[: old.out_features] = old.weight
        new.bias[: old.out_features] = old.bias
    model.ctc.ctc_lo = new


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="clip length")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell (the fastest counts)")
    p.add_argument("--batches", default="1,2,4,8,16")
    p.add_argument("--vocab", default="80,25055", help="CTC widths, one table each")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        bench(build_tiny_sensevoice(Path(tmp) / "sensevoice"), args)


def bench(folder: Path, args: argparse.Namespace) -> None:
    engine = FunASREngine(EngineSettings(model=str(folder), device="cpu"))
    model = engine._model
    kwargs = {**engine._kwargs, **engine._options("auto").model_kwargs}
    kwargs.pop("batch_size", None)

    def before(data: list[torch.Tensor]) -> list[dict]:
        with torch.inference_mode():
            return model.inference(data_in=data, key=[f"k{i}" for i in range(len(data))], **kwargs)[0]

    def after(data: list[torch.Tensor]) -> list[dict]:
        with torch.inference_mode():
            return sensevoice.transcribe(model, data, [f"k{i}" for i in range(len(data))], kwargs, _raise)

    clip = next(c for c in (torch.from_numpy(speech_like(args.seconds, seed)) for seed in range(50))
                if _aligns(before, c))
    for vocab in (int(v) for v in args.vocab.split(",")):
        widen_ctc(model, vocab)
        print(f"\ntiny SenseVoice, CTC {model.ctc.ctc_lo.out_features} wide; CPU, 1 thread; "
              f"{args.seconds:g} s clips; CPU ms per item, fastest of {args.repeats}")
        print(f"{'batch':>5} {'before':>9} {'after':>9} {'before/after':>13}")
        for size in (int(b) for b in args.batches.split(",")):
            data = [clip] * size
            assert before(data) == after(data), "the two paths disagree"
            old, new = (ms_per_item(lambda: fn(data), size, args.repeats) for fn in (before, after))
            print(f"{size:>5} {old:>9.1f} {new:>9.1f} {old / new:>12.2f}x", flush=True)


def _aligns(before: Callable[[list[torch.Tensor]], list[dict]], clip: torch.Tensor) -> bool:
    try:
        return bool(before([clip])[0].get("timestamp"))
    except IndexError:  # funasr's alignment of junk text failed on this clip
        return False


def _raise(exc: BaseException) -> None:
    raise exc


if __name__ == "__main__":
    main()
