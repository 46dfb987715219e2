"""WhisperEngine's GPU path on a double card (tests/cuda_doubles.py): faster-whisper's model and
forward pass replaced by CTranslate2's memory behaviour, NVML and torch.cuda by doubles. The
engine loads, calibrates and runs batches through its own code: calibration measures a batch's
peak (not the allocator's cache), the VRAM cap holds though no allocator enforces it, a container's
host PIDs fall back to device-delta accounting, and torch.cuda is never touched."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.cuda_doubles import CONTEXT, GB, MiB, Ct2Card, FakeNvml, FakeTorchCuda
from webui.modules import gpu
from webui.modules.engines import calibrate
from webui.modules.engines.base import EngineOutput, EngineSettings
from webui.modules.engines.whisper_ct2 import WhisperEngine

SR = 16_000


@pytest.fixture
def ct2(monkeypatch, tmp_path):
    """`load(**settings)` builds a WhisperEngine on cuda:0 of a double card."""
    import ctranslate2
    import faster_whisper

    nvml = FakeNvml().install(monkeypatch)
    cuda = FakeTorchCuda(initialized=False).install(monkeypatch)  # torch never set CUDA up
    card = Ct2Card(nvml)
    folder = tmp_path / "whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")

    class Model:  # faster_whisper.WhisperModel: the weights go onto the card
        def __init__(self, path, device, device_index, **options):
            assert (device, device_index) == ("cuda", 0)
            assert options.get("num_workers", 1) == 1  # a second worker would be a second copy on the card
            card.load()
            self.model = SimpleNamespace(unload_model=lambda to_cpu=False: None, load_model=lambda: None)

    def forward(engine, audios, language, follow=None):  # WhisperEngine._forward: one CTranslate2 batch
        card.batch(len(audios))
        return [EngineOutput((), language) for _ in audios]

    monkeypatch.setattr(faster_whisper, "WhisperModel", Model)
    monkeypatch.setattr(faster_whisper, "BatchedInferencePipeline", lambda model: None)
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(WhisperEngine, "_forward", forward)

    def load(**settings) -> WhisperEngine:
        return WhisperEngine(EngineSettings(model=str(folder), device="cuda", **settings))
    return SimpleNamespace(nvml=nvml, cuda=cuda, card=card, load=load)


def silence(n: int) -> list[np.ndarray]:
    return [np.zeros(30 * SR, np.float32)] * n


# --- 1. calibration measures the batch's peak, and the cap is enforced ---------------------------

def test_calibration_measures_a_batchs_peak_not_the_allocators_cache(ct2):
    engine = ct2.load()
    cost = engine.budget.cost
    # The cache after a batch of 3 and of 1 differs by 24 MiB; the batches cost 200 MiB per input.
    assert cost.fixed_bytes_per_item == pytest.approx(ct2.card.per_input, rel=0.05), cost
    assert cost.shared_bytes == pytest.approx(ct2.card.workspace, rel=0.25), cost
    assert cost.bytes_per_second == 0.0  # Whisper pads every input to 30 s


def test_the_vram_cap_holds_though_ctranslate2_never_refuses_past_it(ct2):
    cap = 4 * GB
    engine = ct2.load(vram_limit_gb=cap / 1e9)
    ct2.card.per_input = 500 * MiB  # speech decodes longer than calibration's silence: 2.5x the cost
    held = []
    for _ in range(8):
        engine.transcribe_batch(silence(engine.batch_limit(30.0)), "zh")
        held.append(ct2.card.peaks[-1])
    print("peaks", [round(p / GB, 2) for p in held], "factor", engine.budget.cap.factor)
    # The first batch, sized from calibration, may pass the cap: nothing refuses it. Its
    # measured peak teaches the budget, and no later batch passes the cap.
    assert max(held[1:]) <= cap, [round(p / GB, 2) for p in held]
    assert engine.budget.cap.factor > 1.0


def test_calibration_on_a_full_card_starts_small(ct2):
    ct2.card.full = True
    assert ct2.load().budget.cost == calibrate.BatchCost(0.0, 2e9, 0.0)


# --- 2. in a container: this process is the device delta since the engine began loading -----------

def test_in_a_container_the_cap_counts_what_the_engine_holds(ct2):
    ct2.nvml.host_pids = True  # NVML lists host PIDs: none is ours
    ct2.nvml.cards[0].others = 5 * GB  # a co-tenant, there before the engine loaded
    engine = ct2.load(vram_limit_gb=4.0)
    held = ct2.nvml.cards[0].mine  # context, weights, the allocator's cache
    assert held >= CONTEXT + ct2.card.weights
    assert gpu.process_used_bytes(0) == held
    assert engine.budget.probe.free_bytes() == 4 * GB - held  # not the whole cap
    stats = gpu.memory_stats(engine.device)
    assert (stats.process_used, stats.accounting) == (held, gpu.DEVICE_DELTA)
    # Calibration still measured the batches (the delta needs no PID).
    assert engine.budget.cost.fixed_bytes_per_item == pytest.approx(ct2.card.per_input, rel=0.05)


# --- 8. the CTranslate2 path never creates a torch CUDA context ------------------------------------

def test_the_ctranslate2_path_never_touches_torch_cuda(ct2):
    engine = ct2.load(vram_limit_gb=20.0)
    engine.transcribe_batch(silence(engine.batch_limit(30.0)), "en")
    engine.release()
    assert ct2.cuda.touched() <= {"is_initialized"}, sorted(ct2.cuda.touched())
    assert gpu.memory_stats(engine.device).process_used == ct2.nvml.cards[0].mine
    gpu.deep_cleanup(engine.trim, device=engine.device)
    gpu.cleanup_after_batch()
    engine.unload()
    assert ct2.cuda.touched() <= {"is_initialized"}, sorted(ct2.cuda.touched())
