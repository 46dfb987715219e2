"""Voice-profile match threshold: FAR / FRR of cluster-vs-profile cosine similarity on held-out
pairs of real voices (tests/conversations.py; needs its Debian voice packages).

    .venv/bin/python scripts/bench/voice_match.py                 # 3 trials, prints the table
    .venv/bin/python scripts/bench/voice_match.py --trials 5

For every voice and trial its clips are shuffled and split in two disjoint halves. A profile is
made from one half, as the product makes it (voice_profiles.voice_of_samples: the VAD, CAM++
embeddings, their centroid): "clip" from about 8 s (one reference clip, as the OpenAI API takes
them), "job" from about 40 s (a speaker saved from a finished job). A test voice is about 30 s
of the other half, the centroid a cluster of that speaker would have in a new recording, clean
and degraded (telephone, Opus 16 kbit/s, reverb, pink noise at 10 dB SNR). Same voice: genuine
pairs; every other voice: impostor pairs. FAR = impostor pairs at or above the threshold;
FRR = genuine pairs below it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests import conversations as conv  # noqa: E402
from webui.modules.diarize.known import MATCH_THRESHOLD  # noqa: E402
from webui.modules.voice_profiles import voice_of_samples  # noqa: E402

SR = conv.SR
PROFILE_SECONDS = {"clip": 8.0, "job": 40.0}
TEST_SECONDS = 30.0
CONDITIONS = {
    "clean": lambda x: x,
    "telephone": conv.telephone,
    "opus16k": lambda x: conv.opus(x, "16k"),
    "reverb": lambda x: conv.reverb(x, 0.6),
    "noise10": lambda x: _noisy(x, 10.0),
}
SKIPPED: list[str] = []
THRESHOLDS = np.round(np.arange(0.30, 0.851, 0.05), 2)


def _noisy(x: np.ndarray, snr_db: float) -> np.ndarray:
    noise = conv._pink(x.size, 3)
    scale = conv._rms(x) / max(conv._rms(noise), 1e-9) * 10 ** (-snr_db / 20)
    return np.clip(x + noise * scale, -1, 1).astype(np.float32)


def _joined(clips: list[np.ndarray], seconds: float) -> np.ndarray:
    """Clips end to end with 0.3 s pauses until `seconds` (the last one cut)."""
    parts, total, gap = [], 0, np.zeros(int(0.3 * SR), np.float32)
    for c in clips:
        c = c / max(float(np.abs(c).max()), 1e-3) * 0.5
        parts += [c, gap]
        total += c.size + gap.size
        if total >= seconds * SR:
            break
    return np.concatenate(parts)[: int(seconds * SR)]


def _halves(voice: str, trial: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    clips = list(conv.voice(voice))
    order = np.random.default_rng(1000 * trial + sum(map(ord, voice))).permutation(len(clips))
    half = len(order) // 2
    return [clips[i] for i in order[:half]], [clips[i] for i in order[half:]]


def measure(voices: list[str], trials: int) -> tuple[list[tuple], list[tuple]]:
    """(genuine, impostor) pairs as (kind, condition, similarity, profile voice, test voice)."""
    profiles: dict[tuple[str, int, str], np.ndarray] = {}
    tests: dict[tuple[str, int, str], np.ndarray] = {}
    for v in voices:
        for t in range(trials):
            enrol, held_out = _halves(v, t)
            for kind, seconds in PROFILE_SECONDS.items():
                profiles[v, t, kind] = voice_of_samples(_joined(enrol, seconds), v).centroid
            audio = _joined(held_out, TEST_SECONDS)
            for cond, change in CONDITIONS.items():
                degraded = change(audio).astype(np.float32)
                if not np.isfinite(degraded).all() or np.abs(degraded).max() > 2.0:
                    SKIPPED.append(f"{v}/{t}/{cond}")  # an ffmpeg round trip that decoded to garbage
                    continue
                tests[v, t, cond] = voice_of_samples(degraded, v).centroid
        print(f"  {v}: done", file=sys.stderr, flush=True)
    genuine, impostor = [], []
    for (v, t, kind), p in profiles.items():
        for (w, u, cond), x in tests.items():
            if u != t:
                continue
            (genuine if v == w else impostor).append((kind, cond, float(p @ x), v, w))
    return genuine, impostor


def rates(genuine: list[tuple], impostor: list[tuple], threshold: float, cond: str | None = None,
          kind: str | None = None) -> tuple[float, float]:
    def pick(pairs):
        return np.array([s for k, c, s, *_ in pairs if (cond is None or c == cond) and (kind is None or k == kind)])

    g, i = pick(genuine), pick(impostor)
    return float(np.mean(i >= threshold)) if i.size else 0.0, float(np.mean(g < threshold)) if g.size else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--voices", default=",".join(conv.VOICES))
    args = ap.parse_args()
    voices = [v for v in args.voices.split(",") if v]
    if missing := conv.missing(voices):
        sys.exit(f"install the Debian packages {', '.join(missing)} first")
    began = time.perf_counter()
    genuine, impostor = measure(voices, args.trials)
    print(f"{len(voices)} voices x {args.trials} trials: {len(genuine)} genuine and {len(impostor)} impostor pairs "
          f"({time.perf_counter() - began:.0f} s)")
    print(f"test recordings skipped (degradation broke the audio): {', '.join(SKIPPED) or 'none'}\n")
    print("| threshold | FAR (all) | FRR (all) | FRR clip profile | FRR job profile |")
    print("|---|---|---|---|---|")
    for th in THRESHOLDS:
        far, frr = rates(genuine, impostor, th)
        used = " (used)" if abs(th - MATCH_THRESHOLD) < 1e-9 else ""
        print(f"| {th:.2f}{used} | {far:.2%} | {frr:.2%} | "
              f"{rates(genuine, impostor, th, kind='clip')[1]:.2%} | {rates(genuine, impostor, th, kind='job')[1]:.2%} |")
    print(f"\nAt {MATCH_THRESHOLD:.2f}, per condition of the test recording:\n")
    print("| condition | FAR | FRR | genuine min / median | impostor median / max |")
    print("|---|---|---|---|---|")
    for cond in CONDITIONS:
        far, frr = rates(genuine, impostor, MATCH_THRESHOLD, cond)
        g = np.array([s for _, c, s, *_ in genuine if c == cond])
        i = np.array([s for _, c, s, *_ in impostor if c == cond])
        print(f"| {cond} | {far:.2%} | {frr:.2%} | {g.min():.2f} / {np.median(g):.2f} | "
              f"{np.median(i):.2f} / {i.max():.2f} |")
    worst = sorted(impostor, key=lambda p: -p[2])[:3]
    print("\nhighest impostor pairs:", ", ".join(f"{v} profile ({k}) vs {w} ({c}) {s:.2f}" for k, c, s, v, w in worst))


if __name__ == "__main__":
    main()
