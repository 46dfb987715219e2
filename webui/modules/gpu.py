"""The one module that touches torch.cuda and NVML: device choice, memory figures, cleanup, OOM backoff.

Everything here works without a GPU: figures are zeros on the CPU, cleanup is a gc pass, and
batch sizing / OOM backoff take injected probes and callables so tests can drive them.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

import torch

from .engines.base import EngineError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

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
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if kind == "cuda":
        if int(index or 0) >= count:
            seen = f"only {count} CUDA GPU(s) are visible" if count else "no CUDA GPU is visible"
            raise EngineError(f"Device {name!r} was requested but {seen}; use 'auto' or 'cpu'.")
        return f"cuda:{int(index or 0)}"
    if kind == "mps" and not torch.backends.mps.is_available():
        raise EngineError("Device 'mps' was requested but Apple MPS is not available; use 'auto' or 'cpu'.")
    return kind


def torch_cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def cuda_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def cap_process_memory(device: str, limit_bytes: int) -> None:
    """Keep torch's allocations on `device` under `limit_bytes` (the VRAM cap): torch then
    raises its out-of-memory error before the cap is passed, and CudaMemoryProbe sizes inside it."""
    total = torch.cuda.get_device_properties(cuda_index(device)).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit_bytes / total), cuda_index(device))


def supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


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
        handle = _nvml_handle(self.index)
        free = int(_nvml().nvmlDeviceGetMemoryInfo(handle).free)
        if self.limit_bytes:
            free = min(free, max(0, self.limit_bytes - process_used_bytes(self.index)))
        return free


def process_used_bytes(index: int = 0) -> int:
    """GPU memory this process holds on the card, every allocator included (NVML)."""
    import os

    pynvml = _nvml()
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(_nvml_handle(index))
    return int(sum(p.usedGpuMemory or 0 for p in procs if p.pid == os.getpid()))


def _nvml():
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _nvml_handle(index: int):
    """NVML's handle for torch's device `index`: matched by PCI id, since NVML numbering
    ignores CUDA_VISIBLE_DEVICES and torch's does not (without torch CUDA: NVML's own index)."""
    pynvml = _nvml()
    if not torch.cuda.is_available():
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    props = torch.cuda.get_device_properties(index)
    bus_id = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)


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

    @property
    def fragmentation(self) -> int:
        """Reserved by torch's caching allocator but not holding tensors."""
        return self.reserved - self.allocated


@dataclass(frozen=True)
class CleanupReport:
    before: MemoryStats
    after: MemoryStats
    freed_bytes: int  # this process's GPU memory before - after (NVML; torch's reserved without it)


def _nvml_used(index: int) -> int | None:
    try:
        return int(_nvml().nvmlDeviceGetMemoryInfo(_nvml_handle(index)).used)
    except Exception:  # optional figure: no pynvml, no driver, or an old torch without PCI ids
        return None


def memory_stats() -> MemoryStats:
    if not torch.cuda.is_available():
        return MemoryStats(device="cpu")
    index = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    return MemoryStats(
        device=f"cuda:{index}",
        allocated=torch.cuda.memory_allocated(index),
        reserved=torch.cuda.memory_reserved(index),
        peak=torch.cuda.max_memory_allocated(index),
        peak_reserved=torch.cuda.max_memory_reserved(index),
        free=int(free),
        total=int(total),
        nvml_used=_nvml_used(index),
        process_used=_optional(lambda: process_used_bytes(index)),
    )


def _optional(figure: Callable[[], int]) -> int | None:
    try:
        return figure()
    except Exception:  # no pynvml, no driver, a sandbox without process accounting
        return None


def cleanup_after_batch() -> None:
    """Drop a batch's intermediates; cheap enough to run after every batch."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def reset_compiled() -> None:
    """Drop torch.compile's graphs and caches (they keep the compiled model's weights alive)."""
    import torch._dynamo

    torch._dynamo.reset()


def deep_cleanup(trim: Callable[[], None] | None = None) -> CleanupReport:
    """Return cached memory to the driver and reset peak counters (between jobs). `trim` lets
    the loaded engine drop caches torch cannot see (CTranslate2's allocator). The freed figure
    is this process's NVML total where NVML can say, else torch's reserved memory."""
    before = memory_stats()
    if trim is not None:
        trim()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()
    after = memory_stats()
    if before.process_used is not None and after.process_used is not None:
        freed = before.process_used - after.process_used
    else:
        freed = before.reserved - after.reserved
    return CleanupReport(before=before, after=after, freed_bytes=max(0, freed))


def limit_process_memory(max_bytes: int) -> float:
    """Cap this process's CUDA allocations (e.g. to mimic a 24 GB card); returns the fraction set."""
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    fraction = min(1.0, max_bytes / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return fraction


def peak_allocated_during(fn: Callable[[], T]) -> tuple[T, int]:
    """Run fn and report how far CUDA allocated memory rose above where it started (0 on CPU)."""
    if not torch.cuda.is_available():
        return fn(), 0
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return result, max(0, torch.cuda.max_memory_allocated() - start)


@dataclass(frozen=True)
class OomEvent:
    attempted: int  # items in the call that ran out of memory
    retry_with: int  # items per call from now on
    error: str


_oom_lock = threading.Lock()
_oom_count = 0


def oom_event_count() -> int:
    """Out-of-memory errors absorbed by run_with_oom_backoff since the process started."""
    return _oom_count


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, EngineError):  # our own "does not fit even alone" must not be retried
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_with_oom_backoff(
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    on_oom: Callable[[OomEvent], None] | None = None,
) -> list[R]:
    """fn(chunk) -> one output per item; on OOM free memory, halve the chunk and retry.

    Outputs come back in input order and no item is dropped. Once a chunk size has failed
    the smaller size is kept for the rest of the items, since the pressure usually persists.
    """
    global _oom_count
    outputs: list[R] = []
    chunk = max(1, len(items))
    start = 0
    while start < len(items):
        part = list(items[start:start + chunk])
        error = ""
        try:
            result = fn(part)
        except Exception as exc:
            if not is_oom(exc):
                raise
            if len(part) == 1:
                cleanup_after_batch()
                raise EngineError(
                    "A single input does not fit in GPU memory even on its own "
                    f"({exc}). Use shorter segments, fp16 precision, a smaller model or the CPU."
                ) from exc
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if error:
            # Outside the except block, so the traceback's tensors can actually be freed.
            cleanup_after_batch()
            chunk = max(1, len(part) // 2)
            with _oom_lock:
                _oom_count += 1
            event = OomEvent(attempted=len(part), retry_with=chunk, error=error)
            log.warning("out of memory with %d items; retrying with %d (%s)", event.attempted, chunk, error)
            if on_oom is not None:
                on_oom(event)
            continue
        if len(result) != len(part):
            raise EngineError(f"the model returned {len(result)} results for {len(part)} inputs")
        outputs.extend(result)
        start += len(part)
    return outputs
