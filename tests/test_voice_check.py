"""The energy VAD's voice check (vads/voice_check.py): Silero takes music out of the energy
regions and leaves speech in, on real music (Fish Fillets' tracks, Debian fillets-ng-data) and
real speech (tests/data), through the real Silero weights in the faster-whisper wheel."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SR, ffmpeg, quiet
from tests.conversations import FILLETS, music, telephone
from webui.modules.audio import decode
from webui.modules.vads import VadOptions, speech_spans
from webui.modules.vads.voice_check import EDGE, SMOOTHING, VOICELESS_SECONDS, WINDOW, voiceless, without

DATA = Path(__file__).parent / "data"
ENERGY_ONLY = VadOptions(voice_check=False)

needs_music = pytest.mark.skipif(not (FILLETS / "music").is_dir(), reason="needs fillets-ng-data (real music)")


def clip(name: str) -> np.ndarray:
    return decode(DATA / name)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def tune(seconds: float, track: str, like: np.ndarray, below_db: float = 3.0) -> np.ndarray:
    x = music(seconds, track)
    return (x * rms(like) / rms(x) * 10 ** (-below_db / 20)).astype(np.float32)


def seconds_in(spans, lo: float, hi: float) -> float:
    return sum(max(0.0, min(hi, s.end) - max(lo, s.start)) for s in spans)


def kept(spans, reference) -> float:
    """Share of the energy VAD's own speech (`reference` spans) that `spans` still cover."""
    total = sum(s.end - s.start for s in reference)
    return sum(seconds_in(spans, s.start, s.end) for s in reference) / total


@needs_music
def test_music_between_speech_is_taken_out_and_the_speech_kept():
    a, b = clip("jfk.flac"), clip("1089-134686-0000.flac")
    parts = [tune(12, "rybky01.ogg", a), a, tune(8, "rybky04.ogg", a), b, tune(6, "menu.ogg", a)]
    audio = np.concatenate(parts)
    edges = np.cumsum([0] + [p.size for p in parts]) / SR
    music_at = [(edges[0], edges[1]), (edges[2], edges[3]), (edges[4], edges[5])]
    checked, energy = speech_spans(audio, 0.0), speech_spans(audio, 0.0, ENERGY_ONLY)
    inside = [(lo + 0.5, hi - 0.5) for lo, hi in music_at]  # the speech's pad may reach into the music
    music_seconds = sum(hi - lo for lo, hi in inside)
    # energy alone hears the music as speech; Silero takes out all but a voice-like second or two
    # (rybky01 has a burst it scores 0.7)
    assert sum(seconds_in(energy, *m) for m in inside) > 0.6 * music_seconds
    assert sum(seconds_in(checked, *m) for m in inside) < 0.15 * music_seconds
    speech = speech_spans(a, edges[1], ENERGY_ONLY) + speech_spans(b, edges[3], ENERGY_ONLY)  # each clip alone
    assert kept(checked, speech) > 0.95


@needs_music
def test_speech_over_a_music_bed_is_kept():
    speech = np.concatenate([clip("1089-134686-0001.flac"), quiet(0.8), clip("english.wav"), quiet(0.8),
                             clip("two_cities.wav")])
    bed = tune(speech.size / SR, "rybky05.ogg", speech, below_db=18.0)
    audio = np.clip(speech + bed, -1, 1).astype(np.float32)
    reference = speech_spans(speech, 0.0, ENERGY_ONLY)
    assert kept(speech_spans(audio, 0.0), reference) > 0.95


@pytest.mark.parametrize("name", ["real_zh/BAC009S0764W0121.wav", "goforward.wav", "telephone"])
def test_mandarin_and_telephone_speech_is_kept(name):
    if name == "telephone":
        audio = telephone(np.concatenate([clip("librivox_sense_and_sensibility_01_austen_64kb-0870.wav"), quiet(1.5),
                                          clip("test_resources_librispeech-1995-1837-0001.wav")]))
    else:
        audio = np.concatenate([quiet(1.0), clip(name), quiet(2.0), clip(name)])
    reference = speech_spans(audio, 0.0, ENERGY_ONLY)
    assert reference
    assert kept(speech_spans(audio, 0.0), reference) > 0.95


def test_voiceless_stretches_need_a_second_and_give_up_their_edges():
    step = WINDOW / SR
    probs = np.array([0.9] * 30 + [0.05] * 100 + [0.9] * 30 + [0.1] * 50 + [0.9] * 30, dtype=np.float32)
    assert 50 * step < VOICELESS_SECONDS < 100 * step
    stretches = voiceless(probs)
    assert len(stretches) == 1  # the second dip (1.6 s) is a pause in speech
    lo, hi = stretches[0]
    slack = SMOOTHING / 2 * step  # the averaging moves an edge by up to half its width
    assert lo == pytest.approx(30 * step + EDGE, abs=slack) and hi == pytest.approx(130 * step - EDGE, abs=slack)
    # no speech beyond the audio's ends to leave an edge to
    assert voiceless(np.array([0.05] * 100, dtype=np.float32)) == [(0.0, pytest.approx(100 * step))]
    assert voiceless(np.array([0.05] * 100 + [0.9] * 30, dtype=np.float32))[0][0] == 0.0
    # music that flickers about the threshold is still one stretch
    flicker = np.where(np.arange(200) % 5 == 2, 0.2, 0.1).astype(np.float32)
    assert voiceless(flicker) == [(0.0, pytest.approx(200 * step))]
    assert voiceless(np.array([0.9] * 100, dtype=np.float32)) == []


def test_regions_less_holes():
    assert without([(0.0, 10.0)], [(2.0, 3.0), (5.0, 6.0)]) == [(0.0, 2.0), (3.0, 5.0), (6.0, 10.0)]
    assert without([(0.0, 4.0), (6.0, 9.0)], [(3.0, 7.0)]) == [(0.0, 3.0), (7.0, 9.0)]
    assert without([(1.0, 2.0)], [(0.0, 5.0)]) == []
    assert without([(1.0, 2.0), (8.0, 9.0)], []) == [(1.0, 2.0), (8.0, 9.0)]
    assert without([(1.0, 2.0)], [(2.0, 3.0)]) == [(1.0, 2.0)]
    # a hole the regions fill for less than MIN_CUT is left: a sliver at speech's edge, a blip
    assert without([(0.0, 10.0)], [(9.5, 12.0)]) == [(0.0, 10.0)]
    assert without([(0.0, 10.0), (11.0, 11.4)], [(10.5, 14.0)]) == [(0.0, 10.0), (11.0, 11.4)]
    # filled for more (music), everything in it goes, short regions and slivers alike
    assert without([(0.0, 10.0), (11.0, 11.4), (12.0, 13.5)], [(9.5, 14.0)]) == [(0.0, 9.5)]


@needs_music
def test_a_segment_of_music_alone_has_no_speech():
    a = clip("jfk.flac")
    assert speech_spans(tune(30, "rybky02.ogg", a), 0.0) == []
    assert speech_spans(tune(30, "rybky02.ogg", a), 0.0, ENERGY_ONLY)


def test_a_segment_heard_again_is_not_run_through_silero_again(monkeypatch):
    from webui.modules.vads import voice_check

    calls = []
    probabilities = voice_check.voice_probabilities
    monkeypatch.setattr(voice_check, "voice_probabilities", lambda audio: calls.append(audio.size) or probabilities(audio))
    voice_check.release()
    speech = clip("goforward.wav")
    first = speech_spans(speech, 0.0)  # the window plan hears it
    assert speech_spans(speech, 0.0) == first and len(calls) == 1  # the window's run hears it again
    speech_spans(speech[:-SR // 2], 0.0)  # other audio is heard afresh
    assert len(calls) == 2


@needs_music
def test_a_recording_of_music_alone_gets_an_empty_transcript_and_says_why(tmp_path):
    from tests.test_cli import run_cli

    song = tmp_path / "interlude.mp3"
    ffmpeg("-i", str(FILLETS / "music" / "rybky04.ogg"), "-t", "70", str(song))
    proc = run_cli(str(song), "--format", "json", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "interlude.json").read_text())["text"] == ""
    assert "No speech was heard in this recording" in proc.stderr
    # a recording with speech in it says nothing of the kind
    proc = run_cli(str(DATA / "jfk.flac"), "--format", "json", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0 and "No speech was heard" not in proc.stderr, proc.stderr
