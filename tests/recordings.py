"""Build long test recordings from real speech clips and silences at known times.

Written block by block, so a long recording never sits whole in memory. Also used by the
benchmark scripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16_000
DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Placed:
    start: float        # where the clip's speech begins in the recording (s)
    end: float          # where it ends
    text: str
    name: str = ""      # which clip (its file name), where known
    offset: float = 0.0  # where the clip's audio (leading silence included) begins (s)


def load_clips(data: Path = DATA) -> list[tuple[np.ndarray, str]]:
    from webui.modules.audio import decode

    clips = []
    for line in (data / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            clips.append((decode(data / entry["audio"]), entry["text"]))
    return clips


def speech_bounds(clip: np.ndarray, below_peak_db: float = 30.0, min_run: float = 0.2) -> tuple[float, float]:
    """Start and end of the sustained sound in a clip: 20 ms frames louder than the loudest
    frame minus `below_peak_db`, ignoring lip clicks shorter than `min_run` seconds."""
    hop = SR // 50
    frames = clip[: clip.size - clip.size % hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames * frames, axis=1)) + 1e-9
    loud = (20 * np.log10(rms / rms.max()) > -below_peak_db).astype(float)
    run = max(1, int(min_run * 50))
    # Speech, not a click: most of the next `run` frames are loud.
    sustained = np.flatnonzero(np.convolve(loud, np.ones(run), mode="full")[run - 1:] >= 0.6 * run)
    first = sustained[0] + int(np.argmax(loud[sustained[0]:]))
    last = np.flatnonzero(loud)[-1]
    return first * hop / SR, (last + 1) * hop / SR


def build(path: Path, minutes: float, seed: int = 0, gap=(3.0, 12.0), noise_db: float = -65.0,
          clips: list[tuple[np.ndarray, str]] | None = None) -> list[Placed]:
    """Clips in shuffled order separated by random pauses (and a long break every ~8 min)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    clips = clips or load_clips()
    total = int(minutes * 60 * SR)
    placed: list[Placed] = []
    cursor = 0
    next_break = 8 * 60 * SR
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        def write_pause(samples: int) -> None:
            out.write((rng.standard_normal(samples) * 10 ** (noise_db / 20)).astype(np.float32))

        while True:
            pause = int(rng.uniform(*gap) * SR)
            if cursor >= next_break:
                pause = int(rng.uniform(30, 60) * SR)  # a coffee break
                next_break += 8 * 60 * SR
            clip, text = clips[int(rng.integers(len(clips)))]
            if cursor + pause + clip.size > total:
                write_pause(total - cursor)
                break
            write_pause(pause)
            cursor += pause
            lo, hi = speech_bounds(clip)
            noisy = clip + (rng.standard_normal(clip.size) * 10 ** (noise_db / 20)).astype(np.float32)
            out.write(np.clip(noisy, -1, 1))
            placed.append(Placed(round(cursor / SR + lo, 3), round(cursor / SR + hi, 3), text, offset=cursor / SR))
            cursor += clip.size
    return placed
