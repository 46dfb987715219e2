"""Energy finds sound, not voices: a jingle, a music bed between a host's lines or a hold tune
passes the energy VAD as speech. Whisper is then fed music (a 15-minute radio show: 959 s of
audio for 516 s of speech) and the second pass reruns every stretch of it where the text is
silent. Silero listens to the same segment and takes out of the energy regions each stretch
where it hears no voice for VOICELESS_SECONDS or longer; the energy VAD keeps its recall
everywhere else (`--vad silero-vad` alone: long_zh 28.7 % CER against 19.8 %). A stretch goes
only where energy took MIN_CUT or more of it for speech: music, not a click in a pause.

Silero is faster-whisper's ONNX copy (it ships in the faster-whisper wheel): it reads a segment's
32-ms windows in one batch, about 1 ms of CPU per second of audio, where the TorchScript
package reads them one at a time, about 6."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

import numpy as np

from ..audio import SAMPLE_RATE
from .base import Region
from .filters import uniform_filter1d
from .librosa_vad import _runs

WINDOW = 512               # samples: Silero's window at 16 kHz
NO_VOICE = 0.15            # Silero's speech probability under which a window holds no voice (its
                           # own threshold is 0.5: only what it is sure of is taken out)
VOICELESS_SECONDS = 2.0    # a shorter dip is a pause between words or turns, left to the energy VAD
EDGE = 0.3                 # seconds of each voiceless stretch left to the speech beside it
SMOOTHING = 9              # windows (0.29 s) the probability is averaged over
MIN_CUT = 1.0              # seconds of energy regions a voiceless stretch must hold to be taken out


HEARD = 4096               # segments whose stretches are remembered (35 s each: 40 hours)

_lock = threading.Lock()
_model = None  # faster_whisper.vad.SileroVADModel, loaded on first use, until release()
# audio digest -> its voiceless stretches: the window plan hears every segment of a recording
# before the windows' runs hear it again (window_plan.py), and Silero is the VAD's dearest part
_heard: OrderedDict[bytes, list[Region]] = OrderedDict()


def voice_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's speech probability for each WINDOW of 16 kHz mono `audio` (the last padded)."""
    global _model
    samples = np.pad(np.asarray(audio, dtype=np.float32).reshape(-1), (0, -audio.size % WINDOW))
    with _lock:
        if _model is None:
            from faster_whisper.utils import get_assets_path
            from faster_whisper.vad import SileroVADModel

            _model = SileroVADModel(os.path.join(get_assets_path(), "silero_vad_v6.onnx"))
        model = _model
    return np.asarray(model(samples)).reshape(-1)


def release() -> None:
    """Let the Silero session go (ONNX Runtime holds 3 file descriptors), and what it heard:
    when the job worker stops."""
    global _model
    with _lock:
        _model = None
        _heard.clear()


def voiceless(probabilities: np.ndarray) -> list[Region]:
    """Stretches (seconds) of VOICELESS_SECONDS or more under NO_VOICE, less EDGE where speech
    is beside them (not at the audio's ends: a segment is cut in silence)."""
    # over SMOOTHING windows: music flickers about NO_VOICE where a word holds well above it
    quiet = uniform_filter1d(probabilities, SMOOTHING) < NO_VOICE
    end = probabilities.size * WINDOW
    return [(lo / SAMPLE_RATE + (EDGE if lo else 0.0), hi / SAMPLE_RATE - (EDGE if hi < end else 0.0))
            for lo, hi in _runs(quiet, WINDOW) if (hi - lo) / SAMPLE_RATE >= VOICELESS_SECONDS]


def without(regions: list[Region], holes: list[Region]) -> list[Region]:
    """`regions` less the `holes` (both sorted and apart within themselves) that the regions fill
    for MIN_CUT seconds or more: a blip in a pause (a click, the tail of a breath) or a sliver at
    the edge of speech is not worth taking out, and taking it moves every cut after it."""
    filled = [(a, b) for a, b in holes if sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in regions) >= MIN_CUT]
    out: list[Region] = []
    for lo, hi in regions:
        for a, b in filled:
            if b <= lo or a >= hi:
                continue
            if a > lo:
                out.append((lo, a))
            lo = max(lo, b)
            if lo >= hi:
                break
        if lo < hi:
            out.append((lo, hi))
    return out


def voiced(audio: np.ndarray, regions: list[Region]) -> list[Region]:
    """The energy `regions` of `audio` less the stretches in which Silero hears no voice."""
    if not regions:
        return regions
    return without(regions, _voiceless_in(audio))


def _voiceless_in(audio: np.ndarray) -> list[Region]:
    key = hashlib.blake2b(np.ascontiguousarray(audio, dtype=np.float32).tobytes(), digest_size=16).digest()
    with _lock:
        if key in _heard:
            _heard.move_to_end(key)
            return _heard[key]
    stretches = voiceless(voice_probabilities(audio))
    with _lock:
        _heard[key] = stretches
        while len(_heard) > HEARD:
            _heard.popitem(last=False)
    return stretches
