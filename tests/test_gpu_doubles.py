"""gpu.py's and calibrate.py's CUDA code, run against doubles of torch.cuda and pynvml
(tests/cuda_doubles.py): which card each figure reads, the VRAM cap, device-delta accounting in
a container, calibration's peaks (across a deep cleanup too), OOM spellings and the lesson an
out-of-memory error teaches. The CTranslate2 engine on a double card is in test_ct2_gpu.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.cuda_doubles import CONTEXT, GB, FakeNvml, FakeTorchCuda, NvmlCard
from webui import metrics
from webui.modules import engines, gpu
from webui.modules.engines import calibrate
from webui.modules.engines.base import EngineError
from webui.modules.jobs import JobQueue

SR = 16_000
WEIGHTS, WORKSPACE, PER_SECOND, FIXED = 2 * GB, 300 * 10**6, 20e6, 150e6


def model_on(cuda: FakeTorchCuda, index: int, during=lambda: None):
    """A model's batch call on card `index`: workspace + per input (fixed + per padded second)
    while it runs, all of it handed back after; `during` runs at the peak's end."""
    def run(batch: list[np.ndarray]) -> list:
        need = int(WORKSPACE + len(batch) * (FIXED + PER_SECOND * max(a.size for a in batch) / SR))
        cuda.alloc(index, need)
        cuda.free(index, need)
        during()
        return list(batch)
    return run


def assert_true_cost(cost: calibrate.BatchCost) -> None:
    assert cost.bytes_per_second == pytest.approx(PER_SECOND, rel=1e-3), cost
    assert cost.fixed_bytes_per_item == pytest.approx(FIXED, rel=1e-3), cost
    assert cost.shared_bytes == pytest.approx(WORKSPACE, rel=1e-3), cost


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setattr(engines, "_loaded", None)


# --- 3. cuda:N: calibration, figures, metrics and cleanup read the engine's card -------------

def test_calibration_of_a_model_on_cuda_1_measures_cuda_1(monkeypatch, no_engine):
    cuda = FakeTorchCuda(cards=2).install(monkeypatch)
    cuda.alloc(1, WEIGHTS)
    assert_true_cost(calibrate.measure(model_on(cuda, 1), 30.0))  # as FunASR calls it: no device
    assert_true_cost(calibrate.measure_or_fallback(model_on(cuda, 1), 30.0, 24 * GB, device="cuda:1"))
    assert ("reset_peak_memory_stats", 0) not in cuda.calls  # card 0 was never part of it


def test_memory_figures_metrics_and_cleanup_follow_the_engines_card(monkeypatch):
    cuda = FakeTorchCuda(cards=2).install(monkeypatch)
    nvml = FakeNvml([NvmlCard(), NvmlCard()]).install(monkeypatch)
    cuda.alloc(1, 3 * GB)
    nvml.cards[1].mine = 3 * GB + CONTEXT
    monkeypatch.setattr(engines, "_loaded", (("key",), SimpleNamespace(name="m", device="cuda:1")))

    stats = gpu.memory_stats()
    assert (stats.device, stats.allocated, stats.process_used) == ("cuda:1", 3 * GB, 3 * GB + CONTEXT)
    gauges = {m.name: m.samples[0] for m in metrics.EngineCollector().collect() if m.name.startswith("asr_gpu")}
    assert gauges["asr_gpu_allocated_bytes"].labels == {"device": "cuda:1"}
    assert gauges["asr_gpu_allocated_bytes"].value == 3 * GB
    assert gauges["asr_gpu_process_bytes"].value == 3 * GB + CONTEXT
    for device in ("cuda:1", None):  # None: FunASR's call, on whichever card torch holds memory
        cuda.calls.clear()
        gpu.cleanup_after_batch(device)
        assert [c for c in cuda.calls if c[0] == "synchronize"] == [("synchronize", 1)]


# --- 4. a deep cleanup never resets the peaks a measurement is reading ------------------------

def test_a_deep_cleanup_during_calibration_leaves_its_peaks(monkeypatch, no_engine):
    cuda = FakeTorchCuda().install(monkeypatch)
    cuda.alloc(0, WEIGHTS)
    reports: list[gpu.CleanupReport] = []
    # The GPU monitor's cleanup lands while a calibration batch runs (memory is tight then).
    cost = calibrate.measure(model_on(cuda, 0, during=lambda: reports.append(gpu.deep_cleanup())), 30.0)
    assert_true_cost(cost)
    assert reports and all("calibration" in r.note for r in reports)
    cuda.calls.clear()
    assert gpu.deep_cleanup().note == ""  # afterwards peaks are reset again
    assert ("reset_peak_memory_stats", 0) in cuda.calls


def test_the_queues_deep_cleanup_keeps_the_peaks_while_a_job_runs(monkeypatch, no_engine):
    cuda = FakeTorchCuda().install(monkeypatch)
    queue = SimpleNamespace(gpu_lock=threading.Lock())
    with queue.gpu_lock:  # a job runs (it may be loading a model, calibrating)
        report, note = JobQueue.deep_cleanup(queue)
    assert "reset_peak_memory_stats" not in cuda.touched() and "peak counters" in note
    assert "empty_cache" in cuda.touched()  # torch's cache still went back
    report, note = JobQueue.deep_cleanup(queue)  # idle
    assert "reset_peak_memory_stats" in cuda.touched() and note == ""


# --- 5. the FunASR VRAM cap: room for the CUDA context, lifted for an engine without one ------

def test_the_vram_cap_leaves_room_for_the_context_and_is_lifted_after(monkeypatch):
    cuda = FakeTorchCuda(total=24 * GB).install(monkeypatch)
    nvml = FakeNvml().install(monkeypatch)
    cuda.alloc(0, WEIGHTS)
    nvml.cards[0].mine = WEIGHTS + CONTEXT  # NVML sees the context torch's figures leave out

    gpu.cap_process_memory("cuda:0", 10 * GB)
    # torch's allocator now stops where the process (context included) reaches the cap.
    assert cuda.cards[0].fraction * cuda.total + CONTEXT == pytest.approx(10 * GB)
    free = gpu.CudaMemoryProbe("cuda:0").free_bytes()
    assert free == pytest.approx(10 * GB - CONTEXT - WEIGHTS)

    assert gpu.cap_process_memory("cuda:0", 0) == 1.0 == cuda.cards[0].fraction  # the next engine: no cap
    gpu.cap_process_memory("cuda:0", 10 * GB)
    gpu.engine_loading("cuda:0")  # any engine starting to load lifts the last one's cap
    assert cuda.cards[0].fraction == 1.0
    assert gpu.limit_process_memory(12 * GB) == pytest.approx((12 * GB - CONTEXT) / (24 * GB))


def test_without_nvml_the_cap_still_leaves_room_for_a_typical_context(monkeypatch):
    cuda = FakeTorchCuda(total=24 * GB).install(monkeypatch)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # import pynvml fails
    cuda.alloc(0, WEIGHTS)
    assert gpu.cap_process_memory("cuda:0", 10 * GB) == pytest.approx((10 * GB - gpu.CONTEXT_ESTIMATE) / (24 * GB))
    assert gpu.memory_stats("cuda:0").process_used is None and gpu.memory_stats("cuda:0").accounting is None


# --- 2. in a container NVML lists host PIDs: device-delta accounting --------------------------

def test_in_a_container_this_process_is_the_device_delta(monkeypatch):
    nvml = FakeNvml(host_pids=True).install(monkeypatch)
    FakeTorchCuda(initialized=False).install(monkeypatch)
    nvml.cards[0].others = 5 * GB  # a co-tenant, there before us
    gpu.engine_loading("cuda:0")
    nvml.cards[0].mine = 3 * GB  # the engine's context, weights and cache

    assert gpu.process_used_bytes(0) == 3 * GB
    assert gpu.NvmlProcessProbe(0, 8 * GB).free_bytes() == 5 * GB  # the cap counts this process
    stats = gpu.memory_stats("cuda:0")
    assert (stats.process_used, stats.accounting, stats.nvml_used) == (3 * GB, gpu.DEVICE_DELTA, 8 * GB)


def test_with_our_own_pid_in_the_list_only_our_entry_counts(monkeypatch):
    nvml = FakeNvml().install(monkeypatch)
    nvml.cards[0].others, nvml.cards[0].mine = 5 * GB, 3 * GB
    gpu.engine_loading("cuda:0")
    assert gpu.process_usage(0) == gpu.ProcessUsage(3 * GB, gpu.PER_PROCESS)
    assert gpu.NvmlProcessProbe(0).free_bytes() == 16 * GB
    assert gpu.NvmlProcessProbe(0, 4 * GB).free_bytes() == 1 * GB


# --- 9. the rest of the CUDA code: handles, probes, peaks, fallbacks ---------------------------

def test_nvml_handles_match_cuda_numbering(monkeypatch):
    nvml = FakeNvml([NvmlCard(), NvmlCard()]).install(monkeypatch)
    cuda = FakeTorchCuda(cards=2, initialized=False).install(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu._nvml_handle(1) == ("index", 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # CUDA's 0 is NVML's 1
    assert gpu._nvml_handle(0) == ("index", 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", nvml.cards[1].uuid)
    assert gpu._nvml_handle(0) == ("index", 1)
    assert cuda.touched() <= {"is_initialized"}  # without torch CUDA, no torch call
    cuda.initialized = True  # with it: by PCI id, whatever the environment says
    assert gpu._nvml_handle(1) == ("index", 1) and ("get_device_properties", 1) in cuda.calls


def test_the_cuda_probe_counts_torchs_cache_as_free_inside_the_cap(monkeypatch):
    cuda = FakeTorchCuda(total=24 * GB).install(monkeypatch)
    cuda.alloc(0, 6 * GB)
    cuda.free(0, 4 * GB)  # 4 GB cached by torch, holding no tensor
    assert gpu.CudaMemoryProbe("cuda:0").free_bytes() == 24 * GB - CONTEXT - 6 * GB + 4 * GB
    cuda.cards[0].fraction = 0.25
    assert gpu.CudaMemoryProbe("cuda:0").free_bytes() == 6 * GB - 2 * GB


def test_device_peak_and_the_cap_watch_see_a_batch_that_hands_its_memory_back(monkeypatch):
    nvml = FakeNvml().install(monkeypatch)
    FakeTorchCuda(initialized=False).install(monkeypatch)
    nvml.cards[0].mine = 1 * GB

    def batch() -> str:
        nvml.cards[0].mine = 4 * GB
        nvml.wait_reads(2)
        nvml.cards[0].mine = 1 * GB
        return "done"

    result, peak = gpu.device_peak_during(batch, 0)
    assert (result, peak.before, peak.peak, peak.rise) == ("done", 1 * GB, 4 * GB, 3 * GB)
    _, held = gpu.CapWatch(0, 2 * GB).peak_during(batch)
    assert (held.before, held.peak) == (1 * GB, 4 * GB)


def test_calibration_that_runs_out_of_memory_falls_back_and_other_errors_surface(monkeypatch, no_engine):
    FakeTorchCuda().install(monkeypatch)

    def full(batch):
        raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")

    cost = calibrate.measure_or_fallback(full, 30.0, 32 * GB)
    assert cost == calibrate.BatchCost(0.0, 1 * GB, 0.0)
    with pytest.raises(ValueError):
        calibrate.measure_or_fallback(lambda batch: (_ for _ in ()).throw(ValueError("bad")), 30.0, 32 * GB)


# --- 7. every spelling of "out of memory" -------------------------------------------------------

@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "CUBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED",  # CTranslate2
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
    "CUDA failed with error out of memory",  # CTranslate2
    "CUDA driver error: cudaErrorMemoryAllocation",
])
def test_every_allocation_failure_is_an_oom_and_is_backed_off(message):
    assert gpu.is_oom(RuntimeError(message))
    calls: list[int] = []

    def fn(chunk):
        calls.append(len(chunk))
        if len(chunk) > 2:
            raise RuntimeError(message)
        return chunk

    assert gpu.run_with_oom_backoff(fn, list(range(8))) == list(range(8)) and calls[:3] == [8, 4, 2]


@pytest.mark.parametrize("exc", [RuntimeError("CUDA error: device-side assert triggered"),
                                 EngineError("does not fit in GPU memory: out of memory"),
                                 ValueError("out of memory")])
def test_other_errors_are_not_oom(exc):
    assert not gpu.is_oom(exc)


# --- 6. what an out-of-memory error teaches the budget -------------------------------------------

@dataclass
class Probe:
    free: int

    def free_bytes(self) -> int:
        return self.free


def card_of(free: int, per_item: int, ooms: list[int]):
    def fn(chunk: list[int]) -> list[int]:
        if len(chunk) * per_item > free:
            ooms.append(len(chunk))
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(chunk) * per_item}")
        return chunk
    return fn


def test_an_8x_underestimate_settles_within_3_ooms():
    ooms: list[int] = []
    fn = card_of(40 * GB, 1 * GB, ooms)
    budget = calibrate.MemoryBudget(calibrate.BatchCost(0.0, GB / 8, 0.0), Probe(40 * GB))
    sizes = []
    for _ in range(budget.cap.relax_after):  # before any relaxing tries for more
        sizes.append(budget.batch_limit(30.0, 0.1, 4))
        assert budget.run(fn, list(range(sizes[-1]))) == list(range(sizes[-1]))
    assert len(ooms) <= 3, (ooms, sizes)
    assert all(n * GB <= 40 * GB for n in sizes[1:]), sizes  # settled: every later batch fits


def test_a_batch_that_hit_an_oom_is_no_success():
    ooms: list[int] = []
    budget = calibrate.MemoryBudget(calibrate.BatchCost(0.0, 0.8 * GB, 0.0), Probe(10 * GB))
    budget.cap.relax_after = 1  # one success at the limit would give room back
    n = budget.batch_limit(30.0, 0.1, 4)
    budget.run(card_of(10 * GB, 1 * GB, ooms), list(range(n)))
    assert ooms == [n]
    assert budget.cap.factor >= 4 / 3  # not relaxed by the batch that failed


# --- 9. the autocast path of the FunASR engine -----------------------------------------------------

def test_funasr_runs_its_batches_under_cuda_autocast(monkeypatch, tmp_path):
    from tiny_models import build_tiny_sensevoice
    from webui.modules.engines.base import EngineSettings
    from webui.modules.engines.funasr import FunASREngine

    engine = FunASREngine(EngineSettings(model=str(build_tiny_sensevoice(tmp_path / "sv")), device="cpu"),
                          probe=Probe(0))
    entered: list[tuple] = []

    class Autocast:
        def __init__(self, device_type, dtype=None):
            entered.append((device_type, dtype))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch, "autocast", Autocast)
    engine._autocast_dtype = torch.float16  # what fp16 on a CUDA device resolves to
    outputs = engine.transcribe_batch([np.zeros(SR, np.float32)] * 2, "en")
    assert len(outputs) == 2 and entered == [("cuda", torch.float16)]
