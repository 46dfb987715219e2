"""Diarization benchmark: accuracy and speed on the test conversations, the AMI sample and
(on demand) long meetings.

    .venv/bin/python scripts/bench/diarization.py                      # every short case + AMI
    .venv/bin/python scripts/bench/diarization.py --cases 3spk,ami --meetings 60,150
    .venv/bin/python scripts/bench/diarization.py --fresh        # time every case again (A/B runs)

Audio goes through the stage as the pipeline will feed it: 30 s windows, the default VAD's
speech spans per window (its time is not counted: the pipeline runs it anyway), one
embed_window call per window, one clustering at the end. DER is scored with a 0.25 s collar on
each side of every reference boundary (NIST's convention; pyannote.metrics' collar=0.5) and
without one. Embed RTF = embedding seconds / audio seconds (wall clock); "x RT" is audio
seconds / (embed + cluster) seconds. The voices need the Debian packages in tests/conversations.py.
Long meetings keep each window's embeddings and timings in a JSON-lines file beside their audio
(as the pipeline's checkpoint keeps them), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests import conversations as conv  # noqa: E402
from webui.modules.diarize import DiarizeOptions, WindowEmbeddings, cluster, embed_window, turns  # noqa: E402
from webui.modules.diarize.base import cpu_threads  # noqa: E402
from webui.modules.diarize.encoder import get_encoder  # noqa: E402
from webui.modules.vads import speech_spans  # noqa: E402

SR = conv.SR
WINDOW = 30.0
SHORT_CASES = ["2spk", "3spk", "4spk", "3spk_en", "same_gender", "short_turns", "telephone", "opus24", "reverb",
               "music15", "noise15", "one_speaker", "five_speakers", "five_speakers_max3", "music_only",
               "two_seconds", "ami"]
AMI_WHEEL = "pyannote.audio==4.0.7"  # holds pyannote/audio/sample/sample.{wav,rttm} (AMI, CC BY 4.0)


@dataclass
class Row:
    case: str
    true: int
    found: int
    der_collar: float | None
    der: float | None
    embed_s: float
    network_s: float
    cluster_s: float
    audio_s: float
    cpu_s: float
    vectors: int

    def cells(self) -> list[str]:
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        total = self.embed_s + self.cluster_s
        return [self.case, str(self.true), str(self.found), pct(self.der_collar), pct(self.der),
                f"{self.embed_s:.1f}", f"{self.cluster_s:.2f}", f"{self.audio_s:.0f}",
                f"{self.embed_s / self.audio_s:.4f}", f"{self.audio_s / max(total, 1e-9):.0f}",
                f"{self.cpu_s / self.audio_s:.4f}", f"{100 * self.network_s / max(self.embed_s, 1e-9):.0f}%"]


HEADER = ["case", "true", "found", "DER c0.25", "DER", "embed s", "cluster s", "audio s", "embed RTF", "x RT",
          "CPU RTF", "network share"]
NETWORK: dict = {"s": 0.0}  # seconds inside the encoder's network (of the embed seconds); the encoder


def blocks_of_array(audio: np.ndarray):
    step = int(WINDOW * SR)
    for lo in range(0, max(audio.size, 1), step):
        yield lo / SR, audio[lo:lo + step]


def blocks_of_file(path: Path):
    """30 s blocks read one at a time: a long meeting never sits whole in memory."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        start = 0.0
        while True:
            block = f.read(int(WINDOW * SR), dtype="float32")
            if not len(block):
                return
            yield start, block
            start += len(block) / SR


def run(name: str, blocks, reference, options: DiarizeOptions = DiarizeOptions(), store: Path | None = None) -> Row:
    """`store`: keep each window's embeddings and timings there as they finish (a JSON line
    each, as the pipeline's checkpoint would), so a long case resumes where it stopped."""
    done = _load(store)
    windows, embed_s, network_s, cpu_s, audio_s = [], 0.0, 0.0, 0.0, 0.0
    for n, (start, block) in enumerate(blocks):
        audio_s += block.size / SR
        if n in done:
            windows.append(WindowEmbeddings.from_dict(done[n]["embeddings"]))
            embed_s, network_s, cpu_s = embed_s + done[n]["embed_s"], network_s + done[n]["network_s"], cpu_s + done[n]["cpu_s"]
            continue
        spans = speech_spans(block, start)
        NETWORK["s"] = 0.0
        t, c = time.perf_counter(), time.process_time()
        windows.append(embed_window(block, start, spans, encoder=NETWORK.get("encoder")))
        took, cpu = time.perf_counter() - t, time.process_time() - c
        embed_s, network_s, cpu_s = embed_s + took, network_s + NETWORK["s"], cpu_s + cpu
        if store is not None:
            with open(store, "a") as out:
                out.write(json.dumps({"window": n, "embed_s": took, "network_s": NETWORK["s"], "cpu_s": cpu,
                                      "embeddings": windows[-1].to_dict()}) + "\n")
    t, c = time.perf_counter(), time.process_time()
    labels = cluster(windows, options)
    hyp = turns(windows, labels)
    cluster_s = time.perf_counter() - t
    cpu_s += time.process_time() - c
    scored = bool(reference)
    return Row(name, len({r.speaker for r in reference}), len({h.speaker for h in hyp}),
               conv.der(reference, hyp, 0.25).der if scored else None,
               conv.der(reference, hyp, 0.0).der if scored else None,
               embed_s, network_s, cluster_s, audio_s, cpu_s, sum(len(w) for w in windows))


def _load(store: Path | None) -> dict[int, dict]:
    done: dict[int, dict] = {}
    if store is not None and store.exists():
        for line in store.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            done[entry["window"]] = entry
    return done


def _time_network(encoder) -> None:
    frames = encoder.frames

    def timed(feats):
        t = time.perf_counter()
        try:
            return frames(feats)
        finally:
            NETWORK["s"] += time.perf_counter() - t

    encoder.frames = timed


def ami() -> tuple[np.ndarray, list]:
    folder = conv.cache_root() / "ami"
    wav, rttm = folder / "sample.wav", folder / "sample.rttm"
    if not (wav.exists() and rttm.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", AMI_WHEEL, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for member, target in (("pyannote/audio/sample/sample.wav", wav), ("pyannote/audio/sample/sample.rttm", rttm)):
                    target.write_bytes(z.read(member))
    ref = []
    for line in rttm.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            ref.append(conv.RefTurn(float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return conv.ffmpeg_decode(wav), ref


def bench_case(case: str, store: Path) -> Row:
    if case == "ami":
        audio, ref = ami()
        return run("ami (AMI sample)", blocks_of_array(audio), ref, store=store)
    base = case.removesuffix("_max3")
    c = conv.build(base)
    options = DiarizeOptions(max_speakers=3) if case.endswith("_max3") else DiarizeOptions()
    return run(case, blocks_of_array(c.audio), c.turns, options, store)


def _store(case: str, args) -> Path | None:
    """Where a case's finished windows are kept: named by the encoder, the threads and a hash
    of the diarize package's code, so results of other code are never mixed in."""
    import hashlib

    if args.fresh:
        return None
    code = hashlib.sha1(b"".join(p.read_bytes() for p in sorted((ROOT / "webui/modules/diarize").glob("*.py"))))
    folder = conv.cache_root() / "bench"
    folder.mkdir(exist_ok=True)
    return folder / f"{case}-{NETWORK['encoder'].backend}-t{cpu_threads()}-{code.hexdigest()[:10]}.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(SHORT_CASES))
    parser.add_argument("--meetings", default="", help="minutes of long meetings to build and run, e.g. 60,150")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the encoder (default: the stage's own, 1)")
    parser.add_argument("--backend", default="auto", help="auto | torch-bf16 | onnx | torch")
    parser.add_argument("--fresh", action="store_true", help="embed again: neither read nor write the kept windows")
    args = parser.parse_args()
    if args.threads:
        os.environ["WEBUI_DIARIZE_THREADS"] = str(args.threads)
    missing = conv.missing(conv.VOICES)
    if missing:
        sys.exit(f"install the voices first: apt-get install {' '.join(missing)}")
    t = time.perf_counter()
    encoder = get_encoder("cpu", args.backend)
    _time_network(encoder)
    NETWORK["encoder"] = encoder
    print(f"speaker encoder: {encoder.backend} on the CPU ({cpu_threads()} thread(s)), ready in {time.perf_counter() - t:.1f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    cases = [c for c in args.cases.split(",") if c]
    cases += [f"meeting{m}" for m in args.meetings.split(",") if m]
    for case in cases:
        if case.startswith("meeting"):
            path, ref = conv.meeting(float(case.removeprefix("meeting")))
            row = run(f"meeting {case.removeprefix('meeting')} min", blocks_of_file(path), ref, store=_store(case, args))
        else:
            row = bench_case(case, _store(case, args))
        rows.append(row)
        print("  " + " | ".join(row.cells()), flush=True)
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(other jobs share this machine: wall-clock figures are upper bounds; CPU RTF = CPU seconds / audio s)")
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1))


if __name__ == "__main__":
    main()
