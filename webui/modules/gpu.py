"""The one module that touches torch.cuda and NVML: memory figures, cleanup, caps, measurements
(device choice: devices.py, out-of-memory back-off: oom.py; both re-exported here).

Everything here works without a GPU: figures are zeros on the CPU, cleanup is a gc pass, and
batch sizing takes injected probes so tests can drive it. Figures and cleanup touch torch.cuda
only once torch has set CUDA up itself (`_torch_live`): on the CTranslate2 path a torch call
would create a second CUDA context (0.3-0.5 GB) for nothing; NVML serves that path instead.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, TypeVar

from .devices import (  # noqa: F401
    DEVICES,
    cuda_index,
    is_cuda,
    resolve_device,
    supports_bf16,
    torch,
    torch_cuda_devices,
    torch_loaded,
)
from .oom import OomEvent, is_oom, oom_event_count, run_with_oom_backoff  # noqa: F401

T = TypeVar("T")

CONTEXT_ESTIMATE = 500 * 2**20  # a CUDA context, where NVML cannot measure this process's
PER_PROCESS = "per-process"
DEVICE_DELTA = "device delta (container: NVML shows host PIDs)"


def _torch_live() -> bool:
    """torch has initialised CUDA in this process (a torch engine, or a test's double)."""
    return torch_loaded() is not None and torch.cuda.is_initialized()


def _torch_indices(device: str | None) -> list[int]:
    """The devices a torch call is about: `device`'s, or else every device torch holds memory
    on (the loaded model's, whichever card that is), or else its current one."""
    if device is not None:
        return [cuda_index(device)] if is_cuda(device) else []
    used = [i for i in range(torch.cuda.device_count()) if torch.cuda.memory_reserved(i)]
    return used or [torch.cuda.current_device()]


# --- NVML: the card's figures, every allocator included --------------------------------------

def _nvml():
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _nvml_handle(index: int):
    """NVML's handle for CUDA device `index`. NVML numbers every card on the host, CUDA only the
    visible ones: matched by PCI id where torch has CUDA up, else through CUDA_VISIBLE_DEVICES
    (an index or a UUID), else NVML's own index (CUDA's default order can differ on mixed cards)."""
    pynvml = _nvml()
    if _torch_live():
        props = torch.cuda.get_device_properties(index)
        bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible):
        name = visible[index]
        return pynvml.nvmlDeviceGetHandleByIndex(int(name)) if name.isdigit() else \
            pynvml.nvmlDeviceGetHandleByUUID(name)
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _nvml_used(index: int) -> int | None:
    return _optional(lambda: int(_nvml().nvmlDeviceGetMemoryInfo(_nvml_handle(index)).used))


def _optional(figure: Callable[[], T]) -> T | None:
    try:
        return figure()
    except Exception:  # no pynvml, no driver, a sandbox without process accounting
        return None


_baselines: dict[int, int] = {}  # card index -> NVML used bytes before this process's first engine


@dataclass(frozen=True)
class ProcessUsage:
    bytes: int
    accounting: str  # PER_PROCESS, or DEVICE_DELTA where NVML's PIDs are not ours


def engine_loading(device: str) -> None:
    """An engine starts loading on `device`: note the card's used memory once (the baseline of
    device-delta accounting) and lift any VRAM cap an earlier engine left (each sets its own)."""
    if not is_cuda(device):
        return
    index = cuda_index(device)
    used = _nvml_used(index)
    if used is not None and index not in _baselines:
        _baselines[index] = used
    if _torch_live():
        torch.cuda.set_per_process_memory_fraction(1.0, index)


def process_usage(index: int = 0) -> ProcessUsage:
    """What this process holds on the card: NVML's entries for our PID; in a container NVML
    lists host PIDs, none of them ours, so then the card's used memory above the baseline."""
    pynvml, handle = _nvml(), _nvml_handle(index)
    mine = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()]
    if index not in _baselines or (mine and None not in mine):
        return ProcessUsage(int(sum(m or 0 for m in mine)), PER_PROCESS)
    used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    return ProcessUsage(max(0, used - _baselines[index]), DEVICE_DELTA)


def process_used_bytes(index: int = 0) -> int:
    return process_usage(index).bytes


# --- caps and probes --------------------------------------------------------------------------

def cap_process_memory(device: str, limit_bytes: int) -> float:
    """Keep this process under `limit_bytes` on `device` (the VRAM cap; 0 lifts it). torch limits
    only its own allocator, as a fraction of the card: what the process holds outside it (the
    CUDA context, library handles) comes off first. torch then raises its out-of-memory error
    before the cap is passed, and CudaMemoryProbe sizes inside it. Returns the fraction set."""
    index = cuda_index(device)
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = 1.0 if limit_bytes <= 0 else min(1.0, max(0.0, (limit_bytes - _outside_torch(index)) / total))
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction


def _outside_torch(index: int) -> int:
    reserved = torch.cuda.memory_reserved(index)
    held = _optional(lambda: process_used_bytes(index))
    if not held or held < reserved:  # NVML cannot see this process: a typical context
        return CONTEXT_ESTIMATE
    return held - reserved


def limit_process_memory(max_bytes: int) -> float:
    """Cap this process on torch's current device (e.g. to mimic a 24 GB card); the fraction set."""
    return cap_process_memory(f"cuda:{torch.cuda.current_device()}", max_bytes)


class MemoryProbe(Protocol):
    """How much accelerator memory the process could still allocate; injectable for tests."""

    def free_bytes(self) -> int: ...


@dataclass(frozen=True)
class CudaMemoryProbe:
    device: str = "cuda"

    def free_bytes(self) -> int:
        free, total = torch.cuda.mem_get_info(self.device)
        allocated = torch.cuda.memory_allocated(self.device)
        # Memory torch has reserved but not handed out is free for this process too...
        available = free + torch.cuda.memory_reserved(self.device) - allocated
        # ...up to the per-process cap, when one is set (set_per_process_memory_fraction).
        cap = torch.cuda.get_per_process_memory_fraction(self.device) * total
        return int(max(0, min(available, cap - allocated)))


def total_bytes(device: str = "cuda") -> int:
    return int(torch.cuda.mem_get_info(device)[1]) if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class NvmlProcessProbe:
    """Free memory for an engine that allocates outside torch (CTranslate2): the card's free
    memory from NVML, and no more than the VRAM cap minus what this process already holds."""

    index: int = 0
    limit_bytes: int = 0  # 0: no cap

    def free_bytes(self) -> int:
        free = int(_nvml().nvmlDeviceGetMemoryInfo(_nvml_handle(self.index)).free)
        if self.limit_bytes:
            free = min(free, max(0, self.limit_bytes - process_used_bytes(self.index)))
        return free


@dataclass(frozen=True)
class Peak:
    before: int  # bytes when the call started
    peak: int    # the most seen while it ran

    @property
    def rise(self) -> int:
        return max(0, self.peak - self.before)


def device_peak_during(fn: Callable[[], T], index: int, every: float = 0.005) -> tuple[T, Peak]:
    """Run fn while a thread reads the card's used memory (NVML) every `every` seconds. For
    CTranslate2 the peak is the batch's cost: its allocator hands blocks over 16 MiB back to the
    driver after the batch and caches at most 200 MB, so the figure after a batch is its cache."""
    pynvml, handle = _nvml(), _nvml_handle(index)
    start = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    seen = [start]  # the most so far
    stop = threading.Event()

    def sample() -> None:
        try:
            while not stop.wait(every):
                seen[0] = max(seen[0], int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
        except Exception:  # a driver hiccup: the peak so far stands
            return

    sampler = threading.Thread(target=sample, name="gpu-peak", daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        stop.set()
        sampler.join()
    return result, Peak(start, seen[0])


@dataclass(frozen=True)
class CapWatch:
    """A VRAM cap no allocator enforces (CTranslate2 has no per-process limit, unlike torch's
    fraction): each batch's peak is measured against it, so calibrate.MemoryBudget can learn
    from a batch that went over as it does from an out-of-memory error."""

    index: int
    limit_bytes: int

    def peak_during(self, fn: Callable[[], T]) -> tuple[T, Peak]:
        """fn's result, and what this process held before it and at its peak."""
        held = process_used_bytes(self.index)
        result, card = device_peak_during(fn, self.index)
        return result, Peak(held, held + card.rise)


# --- figures and cleanup ----------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryStats:
    """Bytes; all zeros with device 'cpu' when there is no CUDA."""

    device: str
    allocated: int = 0
    reserved: int = 0
    peak: int = 0  # max allocated since the last reset
    peak_reserved: int = 0
    free: int = 0
    total: int = 0
    # Used by every process on the card (NVML), None when pynvml or the driver can't say.
    nvml_used: int | None = None
    # Held by this process, every allocator included (torch, CTranslate2); NVML, or None.
    process_used: int | None = None
    accounting: str | None = None  # how process_used was found: PER_PROCESS or DEVICE_DELTA (System tab)

    @property
    def fragmentation(self) -> int:
        """Reserved by torch's caching allocator but not holding tensors."""
        return self.reserved - self.allocated


@dataclass(frozen=True)
class CleanupReport:
    before: MemoryStats
    after: MemoryStats
    freed_bytes: int  # this process's GPU memory before - after (NVML; torch's reserved without it)
    note: str = ""    # what was left alone, and why


def _stats_index(device: str | None) -> int | None:
    """The card memory_stats reads: `device`'s, else the loaded engine's, else torch's current."""
    if device is None:
        from .engines import loaded_engine  # here: the engines import this module

        device = getattr(loaded_engine(), "device", None)
    if device is not None and is_cuda(device):
        return cuda_index(device)
    if _torch_live():
        return torch.cuda.current_device()
    return 0 if device is None and torch.cuda.is_available() else None


def memory_stats(device: str | None = None) -> MemoryStats:
    index = _stats_index(device)
    if index is None:
        return MemoryStats(device="cpu")
    live = _torch_live()
    if live:
        free, total = torch.cuda.mem_get_info(index)
    else:
        info = _optional(lambda: _nvml().nvmlDeviceGetMemoryInfo(_nvml_handle(index)))
        free, total = (info.free, info.total) if info is not None else (0, 0)
    usage = _optional(lambda: process_usage(index))
    return MemoryStats(
        device=f"cuda:{index}",
        allocated=torch.cuda.memory_allocated(index) if live else 0,
        reserved=torch.cuda.memory_reserved(index) if live else 0,
        peak=torch.cuda.max_memory_allocated(index) if live else 0,
        peak_reserved=torch.cuda.max_memory_reserved(index) if live else 0,
        free=int(free),
        total=int(total),
        nvml_used=_nvml_used(index),
        process_used=usage.bytes if usage else None,
        accounting=usage.accounting if usage else None,
    )


def cleanup_after_batch(device: str | None = None) -> None:
    """Drop a batch's intermediates; cheap enough to run after every batch."""
    gc.collect()
    if _torch_live():
        for index in _torch_indices(device):
            torch.cuda.synchronize(index)
        torch.cuda.empty_cache()


def reset_compiled() -> None:
    """Drop torch.compile's graphs and caches (they keep the compiled model's weights alive)."""
    import torch._dynamo

    torch._dynamo.reset()


_measure_lock = threading.Lock()
_measuring = 0  # peak measurements in progress (calibration): their peak counters stay


@contextmanager
def measuring() -> Iterator[None]:
    """Mark a memory measurement in progress: deep_cleanup leaves the peak counters alone."""
    global _measuring
    with _measure_lock:
        _measuring += 1
    try:
        yield
    finally:
        with _measure_lock:
            _measuring -= 1


def _reset_peaks(indices: list[int]) -> bool:
    with _measure_lock:  # held across the reset, so no measurement starts half way through it
        if _measuring:
            return False
        for index in indices:
            torch.cuda.reset_peak_memory_stats(index)
            torch.cuda.reset_accumulated_memory_stats(index)
        return True


def deep_cleanup(trim: Callable[[], None] | None = None, reset_peaks: bool = True,
                 device: str | None = None) -> CleanupReport:
    """Return cached memory to the driver and reset peak counters (between jobs; `reset_peaks`
    False while one runs, and never during a measurement). `trim` lets the loaded engine drop
    caches torch cannot see (CTranslate2's allocator). The freed figure is this process's NVML
    total where NVML can say, else torch's reserved memory."""
    before = memory_stats(device)
    if trim is not None:
        trim()
    gc.collect()
    note = ""
    if _torch_live():
        indices = _torch_indices(device)
        for index in indices:
            torch.cuda.synchronize(index)
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
        if not reset_peaks:
            note = "Peak counters kept: a job is running."
        elif not _reset_peaks(indices):
            note = "Peak counters kept: a memory measurement (calibration) is in progress."
    after = memory_stats(device)
    if before.process_used is not None and after.process_used is not None:
        freed = before.process_used - after.process_used
    else:
        freed = before.reserved - after.reserved
    return CleanupReport(before=before, after=after, freed_bytes=max(0, freed), note=note)


def peak_allocated_during(fn: Callable[[], T], device: str | None = None) -> tuple[T, int]:
    """Run fn and report how far torch's allocated memory rose above where it started on
    `device` (default: the most on any device torch holds memory on); 0 without torch CUDA."""
    if not _torch_live():
        return fn(), 0
    with measuring():
        indices = _torch_indices(device)
        start = {}
        for index in indices:
            torch.cuda.synchronize(index)
            start[index] = torch.cuda.memory_allocated(index)
            torch.cuda.reset_peak_memory_stats(index)
        result = fn()
        rise = 0
        for index in indices:
            torch.cuda.synchronize(index)
            rise = max(rise, torch.cuda.max_memory_allocated(index) - start[index])
    return result, rise
