"""VAD inside a segment (vads/): speech spans in absolute time from every backend."""

import numpy as np
import pytest

from tests.conftest import SR, quiet, tone
from webui.modules.vads import VadOptions, speech_spans

# tones stand in for speech: the energy VAD alone (conftest.energy_vad)
pytestmark = pytest.mark.usefixtures("energy_vad")


def layout(*parts):
    return np.concatenate([tone(s, 300 + 50 * i) if kind == "s" else quiet(s) for i, (kind, s) in enumerate(parts)])


def test_spans_are_absolute():
    audio = layout(("q", 2.0), ("s", 3.0), ("q", 4.0), ("s", 2.0), ("q", 1.0))
    spans = speech_spans(audio, offset=100.0)
    assert len(spans) == 2
    assert spans[0].start == pytest.approx(102.0, abs=0.3) and spans[0].end == pytest.approx(105.0, abs=0.3)
    assert spans[1].start == pytest.approx(109.0, abs=0.3) and spans[1].end == pytest.approx(111.0, abs=0.3)


def test_digital_silence_and_empty_input():
    assert speech_spans(np.zeros(SR * 5, dtype=np.float32), 0.0) == []
    assert speech_spans(np.zeros(0, dtype=np.float32), 0.0) == []


def test_short_gaps_do_not_split_speech():
    audio = layout(("s", 1.0), ("q", 0.2), ("s", 1.0))
    assert len(speech_spans(audio, 0.0)) == 1


def test_top_db_is_settable():
    audio = np.concatenate([tone(2.0, amp=0.5), tone(2.0, amp=0.5 * 10 ** (-30 / 20))])
    loose = speech_spans(audio, 0.0, VadOptions(top_db=40))
    strict = speech_spans(audio, 0.0, VadOptions(top_db=20))
    assert loose[-1].end == pytest.approx(4.0, abs=0.3)
    assert strict[-1].end == pytest.approx(2.0, abs=0.3)


def test_model_vad_backends_feed_the_same_spans(clips):
    """fsmn-vad (real weights) through the same span logic: onsets agree with librosa's."""
    from tests.conftest import DATA
    from webui.modules.audio import decode

    speech = decode(DATA / "jfk.flac")
    audio = np.concatenate([quiet(2.0), speech, quiet(3.0), speech, quiet(2.0)])
    librosa_spans = speech_spans(audio, 10.0)
    fsmn_spans = speech_spans(audio, 10.0, VadOptions(backend="fsmn-vad"))
    second_onset = 10.0 + 2.0 + speech.size / SR + 3.0
    for spans in (librosa_spans, fsmn_spans):
        assert any(abs(s.start - second_onset - 0.3) <= 0.4 for s in spans), spans
        assert all(10.0 <= s.start < s.end <= 10.0 + audio.size / SR for s in spans)
    with pytest.raises(ValueError, match="unknown VAD"):
        speech_spans(audio, 0.0, VadOptions(backend="webrtc"))


def test_room_noise_alone_is_not_speech_but_quiet_speech_is():
    assert speech_spans(quiet(20.0, -65.0), 0.0) == []
    soft = np.concatenate([quiet(2.0, -65.0), tone(2.0, amp=10 ** (-42 / 20)), quiet(2.0, -65.0)])
    spans = speech_spans(soft, 0.0)
    assert len(spans) == 1 and spans[0].start == pytest.approx(2.0, abs=0.3)


def _level(seconds: float, db: float, freq: float = 220.0) -> np.ndarray:
    return tone(seconds, freq, amp=10 ** (db / 20))


def test_a_quiet_voice_after_a_loud_one_is_judged_against_its_own_level():
    # A near speaker at -6 dBFS, then a far one 14 dB quieter whose softer second half is 24 dB
    # under the near speaker: below the segment-wide threshold (25 dB under its loudest, almost).
    audio = np.concatenate([quiet(1.0, -65.0), _level(3.0, -6.0), quiet(1.0, -65.0),
                            _level(1.5, -20.0, 180.0), _level(1.5, -32.0, 180.0), quiet(2.0, -65.0)])
    far_end = 1.0 + 3.0 + 1.0 + 3.0
    spans = speech_spans(audio, 0.0)
    assert spans[-1].end == pytest.approx(far_end, abs=0.3), spans
    segment_wide = speech_spans(audio, 0.0, VadOptions(local_depth_db=0))  # the old behaviour
    assert segment_wide[-1].end == pytest.approx(far_end - 1.5, abs=0.3), segment_wide


def test_a_pause_in_room_noise_stays_a_pause_next_to_loud_speech():
    # Also after digital silence (an editor's fade, a muted start): zeros are not the room's floor.
    for noise_db in (-65.0, -50.0, -40.0):
        for lead in (0.0, 2.0):
            audio = np.concatenate([np.zeros(int(lead * SR), np.float32), _level(3.0, -6.0),
                                    quiet(3.0, noise_db), _level(3.0, -6.0)])
            spans = speech_spans(audio, -lead)
            assert len(spans) == 2, (noise_db, lead, spans)
            assert spans[0].end == pytest.approx(3.0, abs=0.3) and spans[1].start == pytest.approx(6.0, abs=0.3)


def test_numpy_filters_match_scipy_ndimage_and_frame_rms_matches_the_direct_mean():
    """The VAD's filters replace scipy.ndimage's (an import that costs more than the VAD of an
    hour) and frame_rms sums whole hops: the same numbers as the originals, zeros kept zeros."""
    import scipy.ndimage as nd

    from webui.modules.vads.filters import maximum_filter1d, uniform_filter1d
    from webui.modules.vads.librosa_vad import frame_rms

    rng = np.random.default_rng(3)
    for n in (1, 2, 17, 1001):
        for size in (1, 2, 3, 8, 51, 150, 2000):
            x = rng.random(n).astype(np.float32)
            assert np.array_equal(maximum_filter1d(x, size), nd.maximum_filter1d(x, size=size, mode="nearest"))
            y = x.astype(np.float64) ** 2
            np.testing.assert_allclose(uniform_filter1d(y, size), nd.uniform_filter1d(y, size=size, mode="nearest"),
                                       rtol=1e-9, atol=1e-12)
    for n in (100, 2048, 16000 * 45 + 123):
        audio = (rng.standard_normal(n) * 0.1).astype(np.float32)
        audio[: n // 3] = 0
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(audio, 1024), 2048)[::512]
        direct = np.sqrt(np.mean(np.square(frames), axis=1))
        ours = frame_rms(audio, 2048, 512)
        assert ours.shape == direct.shape and ours.dtype == direct.dtype
        np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-9)
        assert not ours[direct == 0].any()
