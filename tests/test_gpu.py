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


def test_deep_cleanup_and_memory_stats_report():
    report = gpu.deep_cleanup()
    assert report.freed_bytes >= 0
    assert report.freed_bytes == max(0, report.before.reserved - report.after.reserved)
    stats = gpu.memory_stats()
    if torch.cuda.is_available():
        assert stats.device.startswith("cuda") and stats.total > 0
    else:
        assert stats == gpu.MemoryStats(device="cpu") and report.after.device == "cpu"
        assert stats.fragmentation == 0
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
