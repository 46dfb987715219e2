"""Device choice: one spelling ('cpu', 'mps', 'cuda:N') for every engine. gpu.py re-exports it."""

from __future__ import annotations

import sys
from typing import Callable

from .engines.base import EngineError


class _LazyTorch:
    """torch, imported on first use: Whisper on the CPU (CTranslate2) never needs it, and its
    import is 1.3 s of CPU, a fifth of a 2.5-minute file's whole run."""

    def __getattr__(self, name: str):
        import torch

        return getattr(torch, name)


torch = _LazyTorch()


def torch_loaded():
    """The torch module when something in this process imported it, else None (then nothing
    can have initialised CUDA or raised a torch error through it)."""
    return sys.modules.get("torch")

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str = "auto", cuda_devices: Callable[[], int] | None = None) -> str:
    """One spelling for every engine: 'cpu', 'mps' or 'cuda:N'. 'auto' picks CUDA, then MPS,
    then the CPU; an explicit device that is absent is an error. `cuda_devices` counts the GPUs
    the engine's own runtime sees (CTranslate2 has its own CUDA, whatever torch's build is)."""
    name = (requested or "auto").strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise EngineError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)} (or cuda:N).")
    count = (cuda_devices or torch_cuda_devices)()
    if kind == "auto":
        if count:
            return "cuda:0"
        return "mps" if _mps_available() else "cpu"
    if kind == "cuda":
        if int(index or 0) >= count:
            seen = f"only {count} CUDA GPU(s) are visible" if count else "no CUDA GPU is visible"
            raise EngineError(f"Device {name!r} was requested but {seen}; use 'auto' or 'cpu'.")
        return f"cuda:{int(index or 0)}"
    if kind == "mps" and not _mps_available():
        raise EngineError("Device 'mps' was requested but Apple MPS is not available; use 'auto' or 'cpu'.")
    return kind


def _mps_available() -> bool:
    return sys.platform == "darwin" and torch.backends.mps.is_available()


def torch_cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def cuda_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
