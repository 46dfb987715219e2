"""Batch sizing through the product's path: `iter_batches` asking a real engine's
`batch_limit`, which reads free memory from a probe and applies the calibrated cost model."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from tiny_models import build_tiny_sensevoice
from webui.modules.batching import iter_batches
from webui.modules.engines.base import EngineSettings
from webui.modules.engines.calibrate import BatchCost, LearnedCap, MemoryBudget, batch_size_for
from webui.modules.engines.funasr import FunASREngine

GIB = 2**30


@dataclass
class FakeProbe:
    free: int

    def free_bytes(self) -> int:
        return self.free


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> FunASREngine:
    folder = build_tiny_sensevoice(tmp_path_factory.mktemp("tiny") / "sensevoice")
    return FunASREngine(EngineSettings(model=str(folder), device="cpu"), probe=FakeProbe(0))


def use(engine: FunASREngine, probe: FakeProbe, cost: BatchCost | None, **settings) -> None:
    """The engine's budget as it is after a CUDA calibration, with a fake card."""
    engine.budget = MemoryBudget(cost, probe)
    engine.settings = replace(engine.settings, **settings)


@pytest.mark.parametrize("free_gib", [0.5, 3, 20, 70])
def test_every_planned_batch_fits_the_budget(engine, free_gib):
    per_second, fixed, shared, margin = 6e6, 40e6, 300e6, 0.15
    use(engine, FakeProbe(int(free_gib * GIB)), BatchCost(per_second, fixed, shared), memory_margin=margin)
    durations = [1.0 + (i * 7.3) % 89 for i in range(400)]
    batches = [[durations[i] for i in b] for b in iter_batches(durations, engine.batch_limit)]
    budget = (free_gib * GIB - shared) * (1 - margin)
    assert sorted(d for b in batches for d in b) == sorted(durations)  # nothing lost or doubled
    for i, batch in enumerate(batches):
        assert batch == sorted(batch, reverse=True) and batch[0] == max(batch)  # padded to its first
        per_item = batch[0] * per_second + fixed
        assert len(batch) * per_item <= budget or len(batch) == 1
        if i < len(batches) - 1:  # and as large as allowed: one more item would not have fitted
            assert (len(batch) + 1) * per_item > budget


def test_batches_follow_memory_freed_or_taken_between_batches(engine):
    probe = FakeProbe(10 * GIB)
    use(engine, probe, BatchCost(0.0, 1 * GIB, 0.0), memory_margin=0.0)
    sizes = []
    for batch in iter_batches([30.0] * 20, engine.batch_limit):
        sizes.append(len(batch))
        probe.free = 2 * GIB  # another process took memory after the first batch
    assert sizes[0] == 10 and set(sizes[1:]) == {2}


def test_without_a_cost_model_the_cpu_cap_applies(engine):
    use(engine, FakeProbe(0), None, cpu_batch_cap=3)
    assert [len(b) for b in iter_batches([5.0] * 7, engine.batch_limit)] == [3, 3, 1]


def test_batch_size_is_at_least_one_and_validates_input():
    assert batch_size_for(90, 1e9, 1e9, free_bytes=10, margin=0.1) == 1
    assert batch_size_for(10, 1e6, 0, free_bytes=100 * 10**6, margin=0.0) == 10
    assert BatchCost(1e6, 0, shared_bytes=50 * 10**6).batch_size(10, 100 * 10**6, 0.0) == 5
    with pytest.raises(ValueError):
        batch_size_for(10, 1e6, 0, free_bytes=10**9, margin=1.0)
    with pytest.raises(ValueError):
        batch_size_for(0, 1e6, 0, free_bytes=10**9, margin=0.1)


def test_the_learned_lesson_lasts_follows_free_memory_and_relaxes_slowly():
    probe = FakeProbe(10 * GIB)
    budget = MemoryBudget(BatchCost(0.0, 1 * GIB, 0.0), probe)
    assert budget.batch_limit(30, 0.0, 4) == 10
    budget.cap.lowered(10)  # a batch of 10 ran out of memory: the model underestimates
    lowered = budget.batch_limit(30, 0.0, 4)
    assert lowered == 7  # a quarter smaller, and it lasts
    probe.free = 20 * GIB  # memory freed (a co-tenant left): batches grow with it, the lesson kept
    assert budget.batch_limit(30, 0.0, 4) == 15
    for _ in range(budget.cap.relax_after):
        budget.run(lambda chunk: chunk, list(range(budget.batch_limit(30, 0.0, 4))))
    assert budget.batch_limit(30, 0.0, 4) > 15  # relaxed after a run of successes


def test_without_a_cost_model_the_lesson_is_a_ceiling():
    budget = MemoryBudget(None, None)
    assert budget.batch_limit(30, 0.0, 8) == 8
    budget.cap.lowered(8)
    assert budget.batch_limit(30, 0.0, 8) == 6
