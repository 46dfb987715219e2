"""GET /metrics (Prometheus text) scraped from the real server after a job, its auth, the job
tally, the sampler's ring buffer and the System tab's chart data."""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.request
from types import SimpleNamespace

import pytest

from tests.conftest import DATA
from tests.test_api import Server, start_server

prometheus_client = pytest.importorskip("prometheus_client")

SERIES = {  # family name (as the parser names it) -> type
    "asr_queue_depth": "gauge", "asr_jobs_active": "gauge", "asr_jobs_finished": "counter",
    "asr_audio_seconds": "counter", "asr_processing_seconds": "counter", "asr_job_real_time_factor": "histogram",
    "asr_batch_size": "histogram", "asr_oom_backoffs": "counter", "asr_model_loaded": "gauge",
    "asr_gpu_allocated_bytes": "gauge", "asr_gpu_reserved_bytes": "gauge", "asr_gpu_peak_allocated_bytes": "gauge",
    "asr_gpu_device_free_bytes": "gauge", "asr_gpu_device_total_bytes": "gauge",
    "process_resident_memory_bytes": "gauge",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("metrics-server"))  # no logins: /metrics is open, as /api/*
    yield srv
    srv.stop()


def scrape(url: str, headers: dict | None = None) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(urllib.request.Request(f"{url}/metrics", headers=headers or {}), timeout=30) as r:
        assert r.headers["content-type"].startswith("text/plain")
        text = r.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict, sample_name: str, **labels) -> float:
    family_name = sample_name
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families:
            family_name = sample_name.removesuffix(suffix)
    matches = [s.value for s in families[family_name].samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (sample_name, labels, families[family_name].samples)
    return matches[0]


def test_scrape_after_a_job_counts_it(server: Server) -> None:
    before = scrape(server.url)
    assert value(before, "asr_jobs_finished_total", status="done") == 0
    out = subprocess.run(["curl", "-sS", "-F", f"file=@{DATA / 'jfk.flac'}", "-F", "model=whisper-1",
                          "-F", "language=en", "-F", "response_format=text",
                          f"{server.url}/v1/audio/transcriptions"], capture_output=True, text=True, timeout=120)
    assert "country" in out.stdout.lower(), out.stdout + out.stderr  # open without logins or keys
    families = scrape(server.url)
    for name, kind in SERIES.items():
        assert name in families, f"{name} missing"
        assert families[name].type == kind, name
    assert value(families, "asr_jobs_finished_total", status="done") == 1
    assert value(families, "asr_jobs_finished_total", status="failed") == 0
    assert value(families, "asr_audio_seconds_total") == pytest.approx(11.0, abs=0.1)
    assert value(families, "asr_processing_seconds_total") > 0
    assert value(families, "asr_job_real_time_factor_count") == 1
    assert value(families, "asr_job_real_time_factor_bucket", le="+Inf") == 1
    assert value(families, "asr_batch_size_count") >= 1 and value(families, "asr_batch_size_sum") >= 1
    assert value(families, "asr_queue_depth") == 0
    assert value(families, "asr_jobs_active", status="running") == 0
    assert value(families, "asr_oom_backoffs_total") == 0
    assert value(families, "asr_model_loaded", model="whisper-base", device="cpu") == 1
    assert value(families, "asr_gpu_reserved_bytes", device="cpu") == 0  # no GPU: zeros, labelled cpu
    assert value(families, "process_resident_memory_bytes") > 50e6
    again = scrape(server.url)  # a scrape counts nothing twice
    assert value(again, "asr_jobs_finished_total", status="done") == 1


def test_metrics_take_the_same_auth_as_api_routes() -> None:
    import gradio as gr
    from fastapi.testclient import TestClient

    from webui.api import create_app
    from webui.modules.jobs import JobQueue
    from webui.openai_api import ApiKey

    with gr.Blocks() as blocks:
        gr.Markdown("x")
    guarded = TestClient(create_app(blocks, JobQueue(), auth=[("ann", "s3cret")],
                                    api_keys=[ApiKey("sk-metrics-0000", "ann")]))
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer sk-wrong-0000"}).status_code == 401
    basic = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert guarded.get("/metrics", headers={"Authorization": basic}).status_code == 200
    response = guarded.get("/metrics", headers={"Authorization": "Bearer sk-metrics-0000"})
    assert response.status_code == 200 and "asr_queue_depth" in response.text
    assert guarded.get("/api/health", headers={"Authorization": "Bearer sk-metrics-0000"}).status_code == 200
    open_app = TestClient(create_app(blocks, JobQueue()))
    assert open_app.get("/metrics").status_code == 200
    # A registry of our own: nothing lands in prometheus_client's global one.
    assert not [n for n in prometheus_client.REGISTRY._names_to_collectors if n.startswith("asr_")]


def _state(jid: str, status: str, duration: float = 10.0, started: float = 100.0, finished: float = 102.0):
    return SimpleNamespace(id=jid, status=status, duration=duration, started_at=started, finished_at=finished,
                           finished=status in ("done", "failed", "cancelled"))


def test_the_tally_counts_each_finished_job_once() -> None:
    from webui.metrics import JobTally

    jobs = [_state("1", "done"), _state("2", "running"), _state("3", "cancelled")]
    queue = SimpleNamespace(jobs=lambda: list(jobs))
    tally = JobTally()
    tally.reconcile(queue)
    tally.reconcile(queue)
    assert tally.finished == {"done": 1, "failed": 0, "cancelled": 1}
    assert tally.audio_seconds == 10.0 and tally.processing_seconds == 2.0
    assert tally.rtf_sum == pytest.approx(0.2) and sum(tally.rtf_counts) == 1
    jobs[:] = [_state("2", "failed"), _state("4", "done", duration=20.0, finished=140.0)]  # 1 and 3 pruned
    tally.reconcile(queue)
    assert tally.finished == {"done": 2, "failed": 1, "cancelled": 1}
    assert tally.audio_seconds == 30.0 and tally._counted == {"2", "4"}  # forgotten once pruned: bounded


def test_ring_keeps_the_last_hour_and_the_sampler_fills_it() -> None:
    from webui.metrics import Ring, Sample, Sampler
    from webui.modules.jobs import JobQueue

    ring = Ring(window=60.0, every=10.0)
    now = time.time()
    for i in range(20):
        ring.add(Sample(now - 190 + 10 * i, i, 1, 0, None))
    kept = ring.samples(now)
    assert len(kept) <= 7 and all(now - s.time <= 60 for s in kept)
    ring.clear()
    sampler = Sampler(JobQueue(), ring, every=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while len(ring.samples()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sampler.stop()
    sample = ring.samples()[-1]
    assert sample.queue_depth == 0 and sample.gpu_process == 0  # the CPU: no GPU memory
    assert sample.host_rss and sample.host_rss > 10e6


def test_system_chart_shows_queue_and_host_rss_on_the_cpu() -> None:
    from webui import metrics
    from webui.modules.jobs import JobQueue
    from webui.ui.system import charts

    ring = metrics.Ring()
    now = time.time()
    ring.add(metrics.Sample(now - 20, 2, 3 * 2**30, 0, None))
    ring.add(metrics.Sample(now - 10, 1, 2**30, 0, None))
    memory, queue = charts(SimpleNamespace(queue=JobQueue()), ring)
    assert set(memory["series"]) == {"Host RSS"}  # no GPU here: no GPU line that is always zero
    assert memory[memory["series"] == "Host RSS"]["GiB"].tolist()[:2] == [3.0, 1.0]
    assert queue["jobs"].tolist()[:2] == [2, 1] and len(queue) in (2, 3)
    empty_memory, empty_queue = charts(SimpleNamespace(queue=JobQueue()), metrics.Ring())
    assert len(empty_queue) == 1 and (empty_memory["series"] == "Host RSS").any()  # a sample taken now
