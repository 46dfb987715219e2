"""A simulated GPU for tests without one: a linear memory model (peak = base + per item ×
batch) that raises the real out-of-memory exception types when a batch would not fit, and whose
free memory can change mid-run (another process taking or giving back memory)."""

from __future__ import annotations

import threading

import numpy as np
import torch

from webui.modules.engines.base import EngineOutput, LocalText
from webui.modules.engines.calibrate import BatchCost, MemoryBudget

GB = 10**9
SR = 16_000


class SimulatedCard:
    def __init__(self, total: int, base: int, per_second: float, fixed_per_item: float, cap: int | None = None,
                 ct2: bool = False) -> None:
        self.total, self.base, self.cap = total, base, cap
        self.per_second, self.fixed = per_second, fixed_per_item
        self.ct2 = ct2                # CTranslate2 reports OOM as a RuntimeError, torch as OutOfMemoryError
        self.cotenant = 0             # bytes another process holds
        self.peak = base
        self.ooms = 0
        self.lock = threading.Lock()

    def limit(self) -> int:
        """What this process may hold: the card minus the co-tenant, and never above the cap."""
        room = self.total - self.cotenant
        return min(room, self.cap) if self.cap is not None else room

    def free_bytes(self) -> int:  # the MemoryProbe protocol, as gpu.CudaMemoryProbe answers it
        return max(0, self.limit() - self.base)

    def run(self, seconds: list[float]) -> None:
        need = self.base + len(seconds) * (self.fixed + self.per_second * max(seconds))
        with self.lock:
            if need > self.limit():
                self.ooms += 1
                message = f"CUDA out of memory. Tried to allocate {need / GB:.2f} GB"
                raise RuntimeError("CUDA failed with error out of memory") if self.ct2 else torch.OutOfMemoryError(message)
            self.peak = max(self.peak, need)


class SimulatedEngine:
    """The Engine protocol on a SimulatedCard, batch-sized by the product's MemoryBudget; its
    cost model is the card's true cost times `estimate` (calibration is never exact)."""

    name = "simulated"
    device = "cuda"
    max_input_seconds = 30.0

    def __init__(self, card: SimulatedCard, estimate: float = 1.0, margin: float = 0.1) -> None:
        self.card, self.margin = card, margin
        self.budget = MemoryBudget(BatchCost(card.per_second * estimate, card.fixed * estimate, 0.0), card)
        self.batches: list[int] = []
        self.on_batch = lambda engine: None  # a test hook: runs after every successful batch

    def batch_limit(self, padded_seconds: float) -> int:
        return self.budget.batch_limit(padded_seconds, self.margin, 4)

    def transcribe_batch(self, audios, language: str = "auto") -> list[EngineOutput]:
        def run(chunk):
            self.card.run([a.size / SR for a in chunk])
            return [EngineOutput((LocalText(0.0, a.size / SR, f"len={a.size}"),), "en") for a in chunk]

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
