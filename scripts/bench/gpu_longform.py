r"""Long recordings on the GPU: funasr's own long-audio path against this project's pipeline.

Same model (SenseVoiceSmall's published architecture from .gpu/sensevoice, random weights
seeded by funasr, so text is junk but compute and memory are real), same recordings
(base.flac sentences tiled with random silences, as .gpu/bench_funasr_baseline.py builds them):

  (a) funasr:  AutoModel(model, vad_model=.gpu/vad).generate(input=path, batch_size_s=300)
  (b) ours:    webui.modules.pipeline.transcribe(path, options, engine=FunASREngine(...))

One model is loaded at a time, so peak memory figures are each path's own. Per recording it
reports wall time, RTF, peak allocated/reserved (torch), nvidia-smi peak, host RSS peak,
segments and batches, as JSON under --out and a table on stdout.

For the lent GPU machine (no network), from the repository root:
    mkdir -p .gpu && cp -r ../shared/gpu-kit/. .gpu/        # once, here; carry [".gpu"]
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$HOME/site" .gpu/whl/*.whl \
      && export PYTHONPATH="$HOME/site:$PYTHONPATH"
    python3 scripts/bench/gpu_longform.py --minutes 10,60,150 --out "$OUT"
The pipeline needs ffmpeg and ffprobe on PATH (--ffmpeg-dir adds a folder holding them).

--nano runs Fun-ASR-Nano instead, decoding a forced number of tokens per segment on a card
capped to 24 GB; it needs a Fun-ASR-Nano folder (--nano-dir), which the kit does not ship.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SR = 16_000
GIB = 2**30


@dataclass(frozen=True)
class OursResult:
    segments: int
    batches: int
    text_chars: int
    seconds_by_stage: dict = field(default_factory=dict)


def run_ours(path: Path, engine: Any) -> OursResult:
    """This project's pipeline on one recording: the one place to adapt if its API moves."""
    from webui.modules.events import Finished
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    # ITN off: funasr's path has none, and SenseVoice's own ITN is already in the model.
    # No second pass: random weights make text density meaningless, and it would only add work.
    options = PipelineOptions(engine=engine.settings, itn=False, retry_tail_seconds=0.0)
    finished = None
    for event in transcribe(path, options, engine=engine):
        if isinstance(event, Finished):
            finished = event
    if finished is None:
        raise RuntimeError("the pipeline ended without a Finished event")
    return OursResult(finished.stats.segments, finished.stats.batches, len(finished.transcript.text),
                      dict(finished.stats.seconds_by_stage))


# ----------------------------------------------------------------------------- measuring


class SmiPeak:
    """Peak `nvidia-smi` memory.used (MiB, whole card) sampled every 100 ms in a thread."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "SmiPeak":
        if shutil.which("nvidia-smi") is None:
            return self
        self._proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            value = line.strip().split()[0] if line.strip() else ""
            if value.isdigit():
                self.peak = max(self.peak or 0, int(value))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)


class RssPeak:
    """Peak resident memory of this process (bytes), from /proc every 100 ms in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._running = False
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _loop(self) -> None:
        while self._running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.1)

    def __enter__(self) -> "RssPeak":
        self._running = True
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(timeout=2)


@dataclass(frozen=True)
class Row:
    model: str
    path: str
    precision: str
    minutes: float
    audio_s: float
    wall_s: float
    rtf: float
    segments: int
    batches: int
    max_batch: int
    peak_alloc_gib: float
    peak_reserved_gib: float
    smi_peak_mib: int | None
    host_rss_peak_gib: float
    extra: dict = field(default_factory=dict)


def measure(label: tuple[str, str, str], minutes: float, audio_s: float, run: Callable[[], dict]) -> Row:
    """Run once with fresh peak counters; `run` returns segments/batches/max_batch (+ extras)."""
    from webui.modules import gpu

    gpu.deep_cleanup()  # also resets the peak counters
    with SmiPeak() as smi, RssPeak() as rss:
        started = time.perf_counter()
        counts = run()  # both paths end by reading text back, which waits for the GPU
        wall = time.perf_counter() - started
    stats = gpu.memory_stats()
    row = Row(
        model=label[0], path=label[1], precision=label[2], minutes=minutes, audio_s=round(audio_s, 1),
        wall_s=round(wall, 2), rtf=round(wall / audio_s, 5),
        segments=counts.pop("segments"), batches=counts.pop("batches"), max_batch=counts.pop("max_batch"),
        peak_alloc_gib=round(stats.peak / GIB, 3), peak_reserved_gib=round(stats.peak_reserved / GIB, 3),
        smi_peak_mib=smi.peak, host_rss_peak_gib=round(rss.peak / GIB, 2), extra=counts,
    )
    print(time.strftime("%H:%M:%S"), json.dumps(asdict(row)), flush=True)
    return row


# ----------------------------------------------------------------------------- recordings


def make_recording(kit: Path, folder: Path, minutes: float, seed: int) -> tuple[Path, float]:
    """base.flac sentences in random order with 0.3-3 s silences and a -70 dBFS noise floor
    (the baseline's recipe and seeds, so its numbers compare)."""
    import numpy as np
    import soundfile as sf

    path = folder / f"rec_{minutes:g}min.wav"
    target = int(minutes * 60 * SR)
    if path.exists():
        return path, target / SR
    base, sr = sf.read(kit / "base.flac", dtype="float32")
    assert sr == SR, sr
    bounds = json.loads((kit / "bounds.json").read_text())["bounds"]
    rng = np.random.default_rng(seed)
    parts, n = [np.zeros(SR // 2, np.float32)], SR // 2
    while n < target:
        b0, b1 = bounds[rng.integers(len(bounds))]
        gap = np.zeros(int(rng.uniform(0.3, 3.0) * SR), np.float32)
        parts += [base[b0:b1], gap]
        n += (b1 - b0) + len(gap)
    audio = np.concatenate(parts)[:target]
    audio = audio + rng.normal(0, 3e-4, size=audio.shape).astype(np.float32)
    sf.write(path, np.clip(audio, -1, 1), SR, subtype="PCM_16")
    return path, target / SR


# ----------------------------------------------------------------------------- the two paths


def counting(model: Any) -> dict:
    """Count model.inference calls and their batch sizes (funasr's path hides both)."""
    counts = {"sizes": []}
    original = model.inference

    def inference(*args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("data_in", args[0] if args else None)
        counts["sizes"].append(len(data) if isinstance(data, (list, tuple)) else 1)
        return original(*args, **kwargs)

    model.inference = inference
    return counts


def bench_funasr(args: argparse.Namespace, model_dir: Path, recordings: list, name: str, precision: str,
                 generate_kwargs: dict) -> list[Row]:
    from funasr import AutoModel

    vad_kwargs = {"max_single_segment_time": 30_000} if name == "nano" else {}
    import torch

    # ncpu: funasr would otherwise set torch's process-wide thread count to 4 (at load and on
    # every generate), which then also governs our path and skews the comparison.
    am = AutoModel(model=str(model_dir), vad_model=str(args.kit / "vad"), vad_kwargs=vad_kwargs, device=args.device,
                   disable_update=True, disable_pbar=True, disable_log=True, seed=0, ncpu=torch.get_num_threads())
    counts = counting(am.model)
    am.generate(input=str(recordings[0][0]), batch_size_s=args.bs, **generate_kwargs)  # warm-up
    rows = []
    for minutes, (path, seconds) in zip(args.minute_list, recordings):
        counts["sizes"].clear()

        def run(path: Path = path) -> dict:
            am.generate(input=str(path), batch_size_s=args.bs, **generate_kwargs)
            return {"segments": sum(counts["sizes"]), "batches": len(counts["sizes"]),
                    "max_batch": max(counts["sizes"], default=0)}

        rows.append(measure((name, f"funasr_vad_bs{args.bs}", precision), minutes, seconds, run))
    am = None  # release funasr's model before the next path loads its own
    return rows


def bench_ours(args: argparse.Namespace, model_dir: Path, recordings: list, name: str, precision: str,
               inference_options: dict) -> list[Row]:
    from webui.modules.engines.base import EngineSettings
    from webui.modules.engines.funasr import FunASREngine

    settings = EngineSettings(model=str(model_dir), device=args.device, precision=precision, compile=args.compile)
    engine = FunASREngine(settings, allow_random_weights=True, inference_options=inference_options)
    print("calibrated batch cost:", engine.batch_cost, flush=True)
    sizes: list[int] = []
    transcribe_batch = engine.transcribe_batch

    def counted(audios, language="auto", **kwargs):
        sizes.append(len(audios))
        return transcribe_batch(audios, language, **kwargs)

    engine.transcribe_batch = counted  # type: ignore[method-assign]
    run_ours(recordings[0][0], engine)  # warm-up (and compile, when on)
    rows = []
    for minutes, (path, seconds) in zip(args.minute_list, recordings):
        sizes.clear()
        result: list[OursResult] = []

        def run(path: Path = path, result: list[OursResult] = result) -> dict:
            result.append(run_ours(path, engine))
            return {"segments": result[0].segments, "batches": result[0].batches, "max_batch": max(sizes, default=0),
                    "stages_s": result[0].seconds_by_stage}

        rows.append(measure((name, "ours" + ("_compiled" if args.compile else ""), engine.precision), minutes,
                            seconds, run))
    engine.unload()
    return rows


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary, _, details = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kit", type=Path, default=ROOT / ".gpu", help="gpu-kit copy (default: .gpu)")
    p.add_argument("--minutes", default="10,60,150", help="recording lengths, comma-separated")
    p.add_argument("--device", default="cuda")
    p.add_argument("--bs", type=int, default=300, help="funasr's batch_size_s")
    p.add_argument("--paths", default="funasr,ours", help="which of funasr,ours to run")
    p.add_argument("--precisions", default="fp32,fp16", help="precisions for our path (funasr's runs fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder on our path")
    p.add_argument("--ffmpeg-dir", type=Path, help="folder with ffmpeg and ffprobe, put first on PATH")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", tempfile.gettempdir())) / "gpu_longform")
    p.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()) / "longform_recs")
    p.add_argument("--nano", action="store_true", help="Fun-ASR-Nano instead of SenseVoiceSmall")
    p.add_argument("--nano-dir", type=Path, help="a Fun-ASR-Nano-2512 folder (config.yaml, LLM config, tokenizer)")
    p.add_argument("--nano-tokens", type=int, default=150, help="forced decode length per segment")
    p.add_argument("--nano-cap-gb", type=float, default=24.0, help="per-process GPU memory cap for --nano")
    args = p.parse_args(argv)
    args.minute_list = [float(m) for m in args.minutes.split(",") if m]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ffmpeg_dir:
        os.environ["PATH"] = f"{args.ffmpeg_dir}{os.pathsep}{os.environ['PATH']}"
    paths = set(args.paths.split(","))
    if "ours" in paths and not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        print("ffmpeg/ffprobe not found: the project's pipeline needs both; skipping our path "
              "(carry static binaries and pass --ffmpeg-dir).", flush=True)
        paths.discard("ours")
    if not (args.kit / "sensevoice" / "config.yaml").is_file():
        print(f"{args.kit} is not a gpu-kit copy (no sensevoice/config.yaml); see --help.")
        return 2

    import torch

    from webui.modules import gpu

    if args.nano:
        if args.nano_dir is None or not (args.nano_dir / "config.yaml").is_file():
            print("--nano: the gpu-kit ships no Fun-ASR-Nano architecture (config.yaml, Qwen3 LLM config, "
                  "tokenizer), so there is nothing to build; pass --nano-dir FOLDER with a Fun-ASR-Nano-2512 "
                  "folder (model.pt optional: without it the weights are random). Skipping.")
            return 0
        if torch.cuda.is_available():
            fraction = gpu.limit_process_memory(int(args.nano_cap_gb * 1e9))
            print(f"GPU capped at {args.nano_cap_gb:g} GB (fraction {fraction:.3f})")
        name, model_dir = "nano", args.nano_dir
        # Random weights stop at EOS whenever; forcing the length makes the decode cost real.
        forced = {"max_length": args.nano_tokens, "llm_kwargs": {"min_new_tokens": args.nano_tokens}}
    else:
        name, model_dir, forced = "sensevoice", args.kit / "sensevoice", {}

    args.out.mkdir(parents=True, exist_ok=True)
    args.tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    recordings = [make_recording(args.kit, args.tmp, m, 1000 + int(m * 10)) for m in args.minute_list]
    print(f"recordings ready in {time.perf_counter() - started:.1f} s", flush=True)

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    rows: list[Row] = []
    if "funasr" in paths:
        rows += bench_funasr(args, model_dir, recordings, name, "fp32", forced)
    if "ours" in paths:
        for precision in args.precisions.split(","):
            rows += bench_ours(args, model_dir, recordings, name, precision, forced)
    results = args.out / f"gpu_longform_{name}.json"
    results.write_text(json.dumps({"env": env, "args": {k: str(v) for k, v in vars(args).items()},
                                   "rows": [asdict(r) for r in rows]}, indent=1))

    columns = ["model", "path", "precision", "minutes", "wall_s", "rtf", "segments", "batches", "max_batch",
               "peak_alloc_gib", "peak_reserved_gib", "smi_peak_mib", "host_rss_peak_gib"]
    print("\n" + " | ".join(columns))
    for row in rows:
        print(" | ".join(str(getattr(row, c)) for c in columns))
    print(f"\n{results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
