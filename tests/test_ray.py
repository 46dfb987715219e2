"""The Ray backend (ray_backend.py) on a private local cluster (loopback, 2 CPUs, a small object
store): the folder mode and the one-recording mode give the local transcripts, and an actor
killed mid-run loses and doubles nothing."""

from __future__ import annotations

import time

import pytest

from tests.conftest import DATA
from tests.fakes import EchoEngine
from webui.modules import checkpoint
from webui.modules.engines.base import EngineSettings
from webui.modules.events import Finished, WindowDone
from webui.modules.options import PipelineOptions
from webui.modules.pipeline import transcribe

ray = pytest.importorskip("ray")
ray_backend = pytest.importorskip("webui.modules.ray_backend")

LONG = DATA / "two_cities.wav"  # 44 s of speech: several windows of 10 s
OPTIONS = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                          first_window_seconds=10.0)


class SlowEcho(EchoEngine):
    """EchoEngine that takes a while per batch, so a kill lands while windows are in flight."""

    def transcribe_batch(self, audios, language="auto"):
        time.sleep(0.5)
        return super().transcribe_batch(audios, language)


@pytest.fixture(scope="module")
def cluster():
    ray_backend.connect("local", object_store_mb=150)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def echo_pool(cluster):
    # no CPUs reserved: the two fake actors leave the cluster's 2 CPUs to the Whisper test's actors
    pool = ray_backend.Pool(EngineSettings(), 2, cpus_per_actor=0, factory="tests.test_ray:SlowEcho")
    yield pool
    pool.close()


def local(path, options=OPTIONS, engine=None):
    return list(transcribe(path, options, engine=engine or EchoEngine()))[-1]


def test_one_recording_over_two_actors_is_the_local_transcript(echo_pool, tmp_path):
    store = checkpoint.Sidecar(tmp_path / "cp.jsonl")
    events = list(checkpoint.persist(ray_backend.transcribe(LONG, OPTIONS, echo_pool), store, LONG, OPTIONS, False))
    expected = local(LONG)
    assert isinstance(events[-1], Finished)
    assert events[-1].transcript == expected.transcript
    assert sorted(e.index for e in events if isinstance(e, WindowDone)) == list(range(len(events[1].windows)))
    assert events[-1].stats.batches == expected.stats.batches
    # the checkpoint is the single-machine one: a resume from it redoes nothing
    resume = checkpoint.resume_from(LONG, OPTIONS, *store.load())
    assert resume is not None and len(resume.done) == len(events[1].windows)
    again = list(transcribe(LONG, OPTIONS, engine=EchoEngine(), resume=resume))[-1]
    assert again.transcript == expected.transcript and again.stats.resumed_windows == len(resume.done)


def test_an_actor_killed_after_its_first_window_loses_nothing(echo_pool):
    options = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=5.0, window_seconds=5.0,
                              first_window_seconds=5.0)  # more windows than two actors hold at once
    killed = False
    windows = []
    events = ray_backend.transcribe(LONG, options, echo_pool)
    for event in events:
        if isinstance(event, WindowDone):
            windows.append(event.index)
            if len(windows) == 2:  # window 0 ran alone on actor 0; now it holds more, in flight
                ray.kill(echo_pool.actors[0])
                killed = True
    assert killed and echo_pool.replaced >= 1
    assert len(windows) >= 6 and sorted(windows) == list(range(len(windows)))  # none lost, none doubled
    assert event.transcript == local(LONG, options).transcript


def test_files_spread_over_actors_longest_first(echo_pool):
    paths = [str(DATA / n) for n in ("goforward.wav", "english.wav", "jfk.flac", "no-such-file.wav")]
    got = dict(ray_backend.transcribe_files(paths, OPTIONS, echo_pool))
    assert set(got) == set(paths)
    assert isinstance(got[paths[-1]], Exception)  # the bad file fails alone
    for p in paths[:-1]:
        assert got[p].transcript == local(p).transcript


@pytest.mark.slow
def test_bundled_whisper_on_two_actors_matches_one_process(cluster):
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    # One input per batch: on the CPU the batch size follows the free host memory at that moment,
    # and Whisper's numbers (hence a timestamp here and there) follow the batch it ran in.
    settings = EngineSettings(device="cpu", cpu_batch_cap=1)
    options = PipelineOptions(engine=settings, max_segment=10.0, window_seconds=10.0, first_window_seconds=10.0)
    whisper_engine = WhisperEngine(settings)
    pool = ray_backend.Pool(settings, 2)
    try:
        expected = local(LONG, options, whisper_engine)
        got = list(ray_backend.transcribe(LONG, options, pool))[-1]
        assert got.transcript.to_dict() == expected.transcript.to_dict()
        files = [str(DATA / "goforward.wav"), str(DATA / "english.wav")]
        for path, finished in ray_backend.transcribe_files(files, options, pool):
            assert finished.transcript.to_dict() == local(path, options, whisper_engine).transcript.to_dict()
    finally:
        pool.close()


def test_speaker_embeddings_are_made_in_the_workers_and_label_as_one_process(echo_pool, tmp_path):
    """--ray with diarization: each window's embeddings come back from the actor that ran it
    (the driver computes none), the checkpoint holds them, and the labels are the local run's."""
    import numpy as np
    import soundfile as sf

    from tests.test_diarize_pipeline import FEMALE, MALE, _decode
    from webui.modules.diarize.base import DiarizeOptions

    parts = []
    for her, his in zip(FEMALE[:2], MALE[:2]):
        parts += [_decode(DATA / her), np.zeros(8000, np.float32), _decode(DATA / his), np.zeros(8000, np.float32)]
    path = tmp_path / "two.wav"
    sf.write(path, np.concatenate(parts), 16000)
    options = PipelineOptions(itn=False, retry_tail_seconds=0.0, max_segment=10.0, window_seconds=10.0,
                              first_window_seconds=10.0, diarize=DiarizeOptions())
    store = checkpoint.Sidecar(tmp_path / "cp.jsonl")
    events = list(checkpoint.persist(ray_backend.transcribe(path, options, echo_pool), store, path, options, False))
    windows = [e for e in events if isinstance(e, WindowDone)]
    assert len(windows) >= 2 and all(w.speakers and w.speakers["vectors"] for w in windows)
    expected = local(path, options)
    got = events[-1]
    assert got.transcript == expected.transcript and not got.stats.diarize_warning
    assert {t.speaker for t in got.transcript.turns} == {"Speaker 1", "Speaker 2"}
    assert [v.speaker for v in got.transcript.voices] == ["Speaker 1", "Speaker 2"]
    resume = checkpoint.resume_from(path, options, *store.load())
    assert [w.speakers for w in sorted(resume.done, key=lambda w: w.index)] == \
        [w.speakers for w in sorted(windows, key=lambda w: w.index)]
