"""gpu.py without a GPU: OOM backoff, memory figures, CPU cleanup, device choice."""

from __future__ import annotations

import pytest
import torch

from webui.modules import gpu
from webui.modules.engines.base import EngineError


def oom_above(limit: int, calls: list[int], error: type[BaseException] = torch.cuda.OutOfMemoryError):
    def fn(chunk: list[int]) -> list[str]:
        calls.append(len(chunk))
        if len(chunk) > limit:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [f"out{x}" for x in chunk]
    return fn


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_oom_halves_the_chunk_and_keeps_every_item_in_order(error):
    items = list(range(37))
    calls: list[int] = []
    events: list[gpu.OomEvent] = []
    before = gpu.oom_event_count()
    out = gpu.run_with_oom_backoff(oom_above(5, calls, error), items, on_oom=events.append)
    assert out == [f"out{x}" for x in items]
    # 37 -> 18 -> 9 -> 4 fails three times, then stays at 4 for the rest
    assert [(e.attempted, e.retry_with) for e in events] == [(37, 18), (18, 9), (9, 4)]
    assert calls[:3] == [37, 18, 9] and set(calls[3:]) <= {4, 1}
    assert sum(calls[3:]) == 37
    assert gpu.oom_event_count() == before + 3


def test_a_single_item_that_does_not_fit_is_a_clear_error():
    with pytest.raises(EngineError, match="does not fit in GPU memory"):
        gpu.run_with_oom_backoff(oom_above(0, []), [1, 2, 3])


def test_other_errors_are_not_retried():
    calls: list[int] = []

    def fn(chunk):
        calls.append(len(chunk))
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        gpu.run_with_oom_backoff(fn, [1, 2, 3, 4])
    assert calls == [4]


def test_a_wrong_number_of_outputs_is_an_error():
    with pytest.raises(EngineError, match="2 results for 3 inputs"):
        gpu.run_with_oom_backoff(lambda chunk: chunk[:2], [1, 2, 3])


class FakeCuda:
    """torch.cuda as deep_cleanup and memory_stats use it, on one card: tensors hold `allocated`,
    the caching allocator keeps `reserved` (>= allocated) until empty_cache hands the rest back,
    and the process's NVML figure is what it reserved plus its CUDA context."""

    CONTEXT = 500 * 2**20

    def __init__(self) -> None:
        self.allocated, self.reserved = 1 * 2**30, 3 * 2**30
        self.peak, self.peak_reserved = 2 * 2**30, 3 * 2**30
        self.total = 24 * 2**30
        self.calls: list[str] = []

    def install(self, monkeypatch, nvml: bool) -> None:
        cuda = torch.cuda
        for name, fn in {
            "is_available": lambda: True,
            "is_initialized": lambda: True,
            "device_count": lambda: 1,
            "current_device": lambda: 0,
            "mem_get_info": lambda device=None: (self.total - self.reserved - self.CONTEXT, self.total),
            "memory_allocated": lambda device=None: self.allocated,
            "memory_reserved": lambda device=None: self.reserved,
            "max_memory_allocated": lambda device=None: self.peak,
            "max_memory_reserved": lambda device=None: self.peak_reserved,
            "synchronize": lambda device=None: self.calls.append("synchronize"),
            "empty_cache": self.empty_cache,
            "ipc_collect": lambda: self.calls.append("ipc_collect"),
            "reset_peak_memory_stats": self.reset_peak,
            "reset_accumulated_memory_stats": lambda device=None: self.calls.append("reset_accumulated"),
        }.items():
            monkeypatch.setattr(cuda, name, fn)

        def process_usage(index: int = 0) -> gpu.ProcessUsage:
            if not nvml:
                raise RuntimeError("no NVML here")
            return gpu.ProcessUsage(self.reserved + self.CONTEXT, gpu.PER_PROCESS)

        monkeypatch.setattr(gpu, "process_usage", process_usage)
        monkeypatch.setattr(gpu, "_nvml_used", lambda index: self.reserved + self.CONTEXT + 4 * 2**30 if nvml else None)

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")
        self.reserved = self.allocated  # the cached blocks go back to the driver

    def reset_peak(self, device=None) -> None:
        self.calls.append("reset_peak")
        self.peak, self.peak_reserved = self.allocated, self.reserved


@pytest.mark.parametrize("nvml", [False, True], ids=["torch-figures", "nvml-figures"])
def test_deep_cleanup_and_memory_stats_report(monkeypatch, nvml):
    fake = FakeCuda()
    fake.install(monkeypatch, nvml)
    trimmed: list[int] = []
    report = gpu.deep_cleanup(trim=lambda: trimmed.append(fake.reserved))

    before, after = report.before, report.after
    assert before.device == after.device == "cuda:0" and before.total == 24 * 2**30
    assert (before.allocated, before.reserved, before.peak) == (2**30, 3 * 2**30, 2 * 2**30)
    assert before.fragmentation == 2 * 2**30  # cached, holding no tensor
    assert trimmed == [3 * 2**30]  # the engine's own trim ran, before torch's cache was emptied
    # The cache went back to the driver: 2 GiB freed (NVML's figure, else torch's reserved),
    # reserved down to what tensors hold, peaks reset, free memory up by as much.
    assert report.freed_bytes == 2 * 2**30
    assert (after.allocated, after.reserved, after.peak, after.peak_reserved) == (2**30, 2**30, 2**30, 2**30)
    assert after.fragmentation == 0 and after.free == before.free + 2 * 2**30
    if nvml:
        assert (before.process_used, after.process_used) == (3 * 2**30 + FakeCuda.CONTEXT, 2**30 + FakeCuda.CONTEXT)
        assert after.nvml_used == before.nvml_used - 2 * 2**30
    else:
        assert before.process_used is None and before.nvml_used is None

    stats = gpu.memory_stats()
    assert stats == after  # nothing changed since


def test_memory_stats_on_the_cpu_are_zeros():
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine: the figures are real")
    report = gpu.deep_cleanup()
    assert report.freed_bytes == 0 and report.before == report.after == gpu.MemoryStats(device="cpu")
    assert gpu.memory_stats() == gpu.MemoryStats(device="cpu") and gpu.memory_stats().fragmentation == 0
    gpu.cleanup_after_batch()


def test_resolve_device():
    assert gpu.resolve_device("cpu") == "cpu"
    assert gpu.resolve_device("auto") in ("cuda:0", "mps", "cpu")
    assert gpu.resolve_device("cuda:1", cuda_devices=lambda: 2) == "cuda:1"
    assert gpu.resolve_device("CUDA", cuda_devices=lambda: 1) == "cuda:0"  # one spelling everywhere
    with pytest.raises(EngineError, match="only 1 CUDA GPU"):
        gpu.resolve_device("cuda:1", cuda_devices=lambda: 1)
    with pytest.raises(EngineError, match="Unknown device"):
        gpu.resolve_device("cpu:0")
    with pytest.raises(EngineError, match="Unknown device"):
        gpu.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            gpu.resolve_device("cuda")
