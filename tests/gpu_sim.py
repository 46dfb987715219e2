"""A simulated GPU for tests without one: a linear memory model (peak = base + per item ×
batch) that raises the real out-of-memory exception types when a batch does not fit, and whose
free memory can change mid-run (another process taking or giving back memory).

The product reads the card through its own probes and sets its own cap: `install` puts the card
behind the torch.cuda calls gpu.CudaMemoryProbe and gpu.cap_process_memory make, and behind the
NVML calls of gpu.NvmlProcessProbe. The card itself knows no VRAM cap: torch's allocator refuses
past the per-process fraction the product set (cap_process_memory), CTranslate2's refuses only
when the card is full, as on a real card. Every batch is recorded with the memory it needs, run
or refused, so a batch planned past the cap shows in `attempted_peak` even when it was refused."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import numpy as np
import torch

from webui.modules import gpu
from webui.modules.engines.base import EngineOutput, LocalText
from webui.modules.engines.calibrate import BatchCost, MemoryBudget
from webui.modules.engines.whisper_ct2 import cuda_budget

GB = 10**9
SR = 16_000
COTENANT_PID = 1  # the other process on the card, as NVML lists it


class SimulatedCard:
    def __init__(self, total: int, base: int, per_second: float, fixed_per_item: float, ct2: bool = False) -> None:
        self.total, self.base = total, base
        self.per_second, self.fixed = per_second, fixed_per_item
        self.ct2 = ct2                # CTranslate2 reports OOM as a RuntimeError, torch as OutOfMemoryError
        self.cotenant = 0             # bytes another process holds
        self.fraction: float | None = None  # torch's per-process fraction, once the product sets one
        self.peak = base              # the most this process held (batches that ran)
        self.attempted_peak = base    # the most a batch asked for, run or refused
        self.ooms = 0
        self.lock = threading.Lock()

    def need(self, seconds: list[float]) -> int:
        """Bytes the process holds while running a batch of inputs this long (padded to the longest)."""
        return int(self.base + len(seconds) * (self.fixed + self.per_second * max(seconds)))

    def allocator_limit(self) -> int:
        """What the allocator lets this process hold: the card less the co-tenant, and for torch
        no more than the per-process fraction. CTranslate2 has no such fraction."""
        room = self.total - self.cotenant
        if not self.ct2 and self.fraction is not None:
            room = min(room, int(self.fraction * self.total))
        return room

    def run(self, seconds: list[float]) -> None:
        need = self.need(seconds)
        with self.lock:
            self.attempted_peak = max(self.attempted_peak, need)
            if need > self.allocator_limit():
                self.ooms += 1
                message = f"CUDA out of memory. Tried to allocate {need / GB:.2f} GB"
                raise RuntimeError("CUDA failed with error out of memory") if self.ct2 else torch.OutOfMemoryError(message)
            self.peak = max(self.peak, need)

    # -- what the driver, torch.cuda and NVML report between batches (the process holds `base`)

    def card_free(self) -> int:
        return max(0, self.total - self.cotenant - self.base)

    def install(self, monkeypatch) -> "SimulatedCard":
        """Answer the torch.cuda and NVML calls of gpu.py's probes and cap from this card."""
        card = self

        def set_fraction(fraction: float, device=None) -> None:
            card.fraction = float(fraction)

        def processes(handle):
            procs = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=card.base)]
            if card.cotenant:
                procs.append(SimpleNamespace(pid=COTENANT_PID, usedGpuMemory=card.cotenant))
            return procs

        nvml = SimpleNamespace(
            nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(
                free=card.card_free(), used=card.total - card.card_free(), total=card.total),
            nvmlDeviceGetComputeRunningProcesses=processes,
        )
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (card.card_free(), card.total))
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: card.base)
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: card.base)
        monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction",
                            lambda device=None: 1.0 if card.fraction is None else card.fraction)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", set_fraction)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=card.total))
        monkeypatch.setattr(gpu, "_nvml", lambda: nvml)
        monkeypatch.setattr(gpu, "_nvml_handle", lambda index: ("simulated", index))
        return self


class SimulatedEngine:
    """The Engine protocol on an installed SimulatedCard, set up as the product's engines set
    themselves up: FunASREngine (torch) caps the process with gpu.cap_process_memory and reads
    gpu.CudaMemoryProbe, WhisperEngine (CTranslate2) takes whisper_ct2.cuda_budget (NVML inside
    the cap, which it watches and sizes conservatively for, since no allocator enforces it).
    Batches are sized by the product's MemoryBudget from a cost model that is the card's true
    cost times `estimate` (calibration is never exact)."""

    name = "simulated"
    device = "cuda:0"
    max_input_seconds = 30.0

    def __init__(self, card: SimulatedCard, estimate: float = 1.0, margin: float = 0.1, cap: int = 0) -> None:
        self.card, self.margin = card, margin
        cost = BatchCost(card.per_second * estimate, card.fixed * estimate, 0.0)
        if card.ct2:
            self.budget = cuda_budget(cost, 0, cap)
        else:
            if cap:
                gpu.cap_process_memory(self.device, cap)
            self.budget = MemoryBudget(cost, gpu.CudaMemoryProbe(self.device))
        self.batches: list[int] = []
        # (inputs, bytes the whole batch needs, co-tenant bytes when it started), as planned
        self.planned: list[tuple[int, int, int]] = []
        self.on_batch = lambda engine: None  # a test hook: runs after every successful batch

    def batch_limit(self, padded_seconds: float) -> int:
        return self.budget.batch_limit(padded_seconds, self.margin, 4)

    def transcribe_batch(self, audios, language: str = "auto") -> list[EngineOutput]:
        def run(chunk):
            self.card.run([a.size / SR for a in chunk])
            return [EngineOutput((LocalText(0.0, a.size / SR, f"len={a.size}"),), "en") for a in chunk]

        self.planned.append((len(audios), self.card.need([a.size / SR for a in audios]), self.card.cotenant))
        outputs = self.budget.run(run, list(audios))
        self.batches.append(len(audios))
        self.on_batch(self)
        return outputs

    def release(self) -> None:
        pass

    def unload(self) -> None:
        pass


def silent_audio(seconds: float) -> np.ndarray:
    """An array of the right length that costs no memory (a broadcast view of one sample)."""
    return np.broadcast_to(np.zeros(1, np.float32), (int(seconds * SR),))
