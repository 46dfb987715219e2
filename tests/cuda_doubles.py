"""Doubles of torch.cuda, pynvml and CTranslate2's allocator, for driving gpu.py, calibrate.py
and whisper_ct2.py's real GPU code on a machine without a GPU.

- FakeTorchCuda: torch.cuda on N cards, torch's caching allocator per card (allocated, reserved,
  peak, the per-process fraction), every call recorded with the device it was about.
- FakeNvml: pynvml over the same cards. Each card's used memory is what this process holds
  (`mine`) plus other processes' (`others`); with `host_pids` the process list shows host PIDs,
  as NVML does inside a container, so none of them is os.getpid().
- Ct2Card: CTranslate2 on a FakeNvml card: a batch holds its cost only while it runs; after it,
  cub's caching allocator hands blocks over 16 MiB back to the driver and caches at most 200 MB.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from webui.modules import gpu

GB = 10**9
MiB = 2**20
CONTEXT = 400 * MiB  # a CUDA context: in NVML's figures, never in torch's
HOST_PID = 4_000_000  # this process as NVML sees it from the host: never os.getpid()
OTHER_PID = 1


@dataclass
class TorchCard:
    allocated: int = 0
    reserved: int = 0
    peak: int = 0
    fraction: float = 1.0


class FakeTorchCuda:
    def __init__(self, cards: int = 1, total: int = 24 * GB, initialized: bool = True) -> None:
        self.cards = [TorchCard() for _ in range(cards)]
        self.total, self.initialized, self.current = total, initialized, 0
        self.calls: list[tuple[str, int | None]] = []

    def index(self, device) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            return device
        if isinstance(device, torch.device):
            return self.current if device.index is None else device.index
        return int(str(device).partition(":")[2] or self.current)

    def alloc(self, index: int, nbytes: int) -> None:
        card = self.cards[index]
        card.allocated += nbytes
        card.reserved = max(card.reserved, card.allocated)
        card.peak = max(card.peak, card.allocated)

    def free(self, index: int, nbytes: int) -> None:
        self.cards[index].allocated -= nbytes

    def touched(self) -> set[str]:
        return {name for name, _ in self.calls}

    def _api(self) -> dict:
        c = self

        def reset_peak(device=None):
            card = c.cards[c.index(device)]
            card.peak = card.allocated

        def empty_cache():
            for card in c.cards:
                card.reserved = card.allocated

        def set_fraction(fraction, device=None):
            c.cards[c.index(device)].fraction = float(fraction)

        return {
            "is_initialized": lambda: c.initialized,
            "is_available": lambda: True,
            "device_count": lambda: len(c.cards),
            "current_device": lambda: c.current,
            "synchronize": lambda device=None: None,
            "empty_cache": empty_cache,
            "ipc_collect": lambda: None,
            "reset_peak_memory_stats": reset_peak,
            "reset_accumulated_memory_stats": lambda device=None: None,
            "memory_allocated": lambda device=None: c.cards[c.index(device)].allocated,
            "memory_reserved": lambda device=None: c.cards[c.index(device)].reserved,
            "max_memory_allocated": lambda device=None: c.cards[c.index(device)].peak,
            "max_memory_reserved": lambda device=None: c.cards[c.index(device)].reserved,
            "mem_get_info": lambda device=None: (c.total - CONTEXT - c.cards[c.index(device)].reserved, c.total),
            "get_device_properties": lambda device=None: SimpleNamespace(
                total_memory=c.total, pci_domain_id=0, pci_bus_id=0x10 + c.index(device), pci_device_id=0),
            "set_per_process_memory_fraction": set_fraction,
            "get_per_process_memory_fraction": lambda device=None: c.cards[c.index(device)].fraction,
        }

    def install(self, monkeypatch) -> "FakeTorchCuda":
        for name, impl in self._api().items():
            monkeypatch.setattr(torch.cuda, name, self._recorded(name, impl))
        return self

    def _recorded(self, name, impl):
        where = 1 if name == "set_per_process_memory_fraction" else 0  # the device argument

        def call(*args, **kwargs):
            device = kwargs.get("device", args[where] if len(args) > where else None)
            self.calls.append((name, None if device is None else self.index(device)))
            return impl(*args, **kwargs)
        return call


@dataclass
class NvmlCard:
    total: int = 24 * GB
    mine: int = 0
    others: int = 0
    uuid: str = ""


@dataclass
class FakeNvml:
    """pynvml as gpu.py calls it; `reads` counts memory-info reads (a sampler's among them)."""

    cards: list[NvmlCard] = field(default_factory=lambda: [NvmlCard()])
    host_pids: bool = False
    reads: int = 0

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        for i, card in enumerate(self.cards):
            card.uuid = card.uuid or f"GPU-fake-{i}"

    def install(self, monkeypatch) -> "FakeNvml":
        monkeypatch.setitem(sys.modules, "pynvml", self)  # gpu._nvml() imports it
        monkeypatch.setattr(gpu, "_baselines", {}, raising=False)
        return self

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int):
        return ("index", int(index))

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str):
        return ("index", int(bus_id.split(":")[1], 16) - 0x10)  # FakeTorchCuda's bus ids

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        return ("index", [c.uuid for c in self.cards].index(uuid))

    def nvmlDeviceGetMemoryInfo(self, handle):
        card = self.cards[handle[1]]
        with self.cond:
            self.reads += 1
            self.cond.notify_all()
        used = card.mine + card.others
        return SimpleNamespace(total=card.total, used=used, free=card.total - used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        card = self.cards[handle[1]]
        procs = [SimpleNamespace(pid=HOST_PID if self.host_pids else os.getpid(), usedGpuMemory=card.mine)]
        if card.others:
            procs.append(SimpleNamespace(pid=OTHER_PID, usedGpuMemory=card.others))
        return procs

    def wait_reads(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` more reads happened (gpu.device_peak_during's sampler saw the state), or
        `timeout`; at once when no sampler runs."""
        if not any(t.name == "gpu-peak" and t.is_alive() for t in threading.enumerate()):
            return
        with self.cond:
            target = self.reads + count
            self.cond.wait_for(lambda: self.reads >= target, timeout)


class Ct2Card:
    """CTranslate2's memory on FakeNvml card `index`. `load` puts the weights there; `batch(n)`
    holds workspace + n × per_input while it runs (until a running sampler has read it twice),
    then only what the caching allocator keeps: blocks of at most 16 MiB, 200 MB in all."""

    CACHED = 12 * MiB  # small blocks kept per input after a batch

    def __init__(self, nvml: FakeNvml, index: int = 0, weights: int = 300 * MiB,
                 per_input: int = 200 * MiB, workspace: int = 100 * MiB) -> None:
        self.nvml, self.card = nvml, nvml.cards[index]
        self.weights, self.per_input, self.workspace = weights, per_input, workspace
        self.cache = 0
        self.peaks: list[int] = []  # what this process held at each batch's peak
        self.full = False  # another process filled the card: every batch runs out of memory

    def load(self) -> None:
        self.card.mine = CONTEXT + self.weights

    def batch(self, n: int) -> None:
        if self.full:
            raise RuntimeError("CUDA failed with error out of memory")  # CTranslate2's spelling
        at_rest = CONTEXT + self.weights
        self.card.mine = at_rest + max(self.cache, self.workspace + n * self.per_input)
        self.peaks.append(self.card.mine)
        self.nvml.wait_reads(2)
        self.cache = min(200 * MiB, max(self.cache, n * self.CACHED))
        self.card.mine = at_rest + self.cache
