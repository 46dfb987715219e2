"""Cut planning: pure plans from silences, and the real ffmpeg scan on audio with known silences."""

import numpy as np
import pytest

from tests.conftest import quiet, tone, write_wav
from webui.modules.audio import ENVELOPE_HOP, Silence, parse_silences, scan_silences
from webui.modules.segment import SegmentLimits, auto_max_seconds, limits_for, plan_segments, quietest_point


def flat_envelope(duration: float, db: float = -20.0) -> np.ndarray:
    return np.full(int(duration / ENVELOPE_HOP) + 1, db, dtype=np.float32)


def assert_contiguous(segments, duration):
    assert segments[0].start == 0.0
    assert segments[-1].end == pytest.approx(duration, abs=1e-3)
    for a, b in zip(segments, segments[1:]):
        assert a.end == b.start


@pytest.mark.parametrize(
    "minutes, cap, expected",
    [(3, None, 45), (30, None, 45), (31, None, 60), (90, None, 60), (91, None, 90), (180, None, 90), (180, 30, 30), (10, 30, 30)],
)
def test_auto_maximum(minutes, cap, expected):
    assert auto_max_seconds(minutes * 60, cap) == expected


def test_fixed_maximum_respects_engine_cap_and_rejects_nonsense():
    assert limits_for(600, 40.0).max_seconds == 40
    assert limits_for(600, 40.0, engine_cap=30).max_seconds == 30
    with pytest.raises(ValueError):
        limits_for(600, 2.0)


def test_cuts_land_in_silences_and_segments_stay_in_range():
    duration = 300.0
    silences = [Silence(t, t + 1.5) for t in np.arange(10.0, 300.0, 12.0)]
    limits = SegmentLimits(25, 45)
    segments = plan_segments(duration, silences, flat_envelope(duration), limits)
    assert_contiguous(segments, duration)
    for seg in segments[:-1]:
        assert any(s.start <= seg.end <= s.end for s in silences), seg
        assert 25 - 1e-6 <= seg.duration <= 45 + 1e-6
    assert all(seg.duration >= 8 for seg in segments)


def test_stretch_without_silence_is_cut_at_its_quietest_window():
    duration = 100.0
    env = flat_envelope(duration)
    env[int(33.0 / ENVELOPE_HOP):int(33.4 / ENVELOPE_HOP)] = -60.0  # a short dip, no real silence
    segments = plan_segments(duration, [], env, SegmentLimits(25, 45))
    assert segments[0].end == pytest.approx(33.2, abs=0.2)
    assert max(s.duration for s in segments) <= 45


def test_quietest_point_prefers_the_dip():
    env = flat_envelope(60)
    env[400:404] = -80
    assert quietest_point(25, 45, env) == pytest.approx(40.2, abs=0.2)


def test_short_tail_is_merged_or_rebalanced():
    # 52 s with one silence at 44 s: a 8 s tail would be left; the planner must not leave < 8 s.
    silences = [Silence(44.0, 45.5), Silence(30.0, 31.5)]
    segments = plan_segments(52.0, silences, flat_envelope(52), SegmentLimits(25, 45))
    assert all(s.duration >= 8 for s in segments)
    assert all(s.duration <= 45 for s in segments)
    assert_contiguous(segments, 52.0)


def test_short_recording_is_one_segment():
    segments = plan_segments(12.0, [Silence(3, 5)], flat_envelope(12), SegmentLimits(25, 45))
    assert [(s.start, s.end) for s in segments] == [(0.0, 12.0)]


def test_parse_silences_pairs_lines_and_closes_an_open_one():
    lines = [
        "[silencedetect @ 0x1] silence_start: 1.5",
        "[silencedetect @ 0x1] silence_end: 3.25 | silence_duration: 1.75",
        "[silencedetect @ 0x1] silence_start: 9",
    ]
    assert parse_silences(lines, 10.0) == [Silence(1.5, 3.25), Silence(9.0, 10.0)]


def test_ffmpeg_scan_finds_known_silences(tmp_path):
    layout = [tone(20), quiet(3), tone(30, 300), quiet(2), tone(10, 500)]
    path = write_wav(tmp_path / "known.wav", np.concatenate(layout))
    scan = scan_silences(path)
    assert scan.duration == pytest.approx(65.0, abs=0.01)
    starts = [round(s.start, 1) for s in scan.silences]
    ends = [round(s.end, 1) for s in scan.silences]
    assert starts == [20.0, 53.0] and ends == [23.0, 55.0]
    assert len(scan.envelope_db) == pytest.approx(650, abs=2)
    assert scan.envelope_db[int(21 / ENVELOPE_HOP)] < -60 < scan.envelope_db[int(5 / ENVELOPE_HOP)]


def test_plan_on_real_scan_cuts_inside_the_silences(tmp_path):
    layout = [tone(30), quiet(2), tone(28, 300), quiet(2.5), tone(30, 500), quiet(2), tone(5, 600)]
    path = write_wav(tmp_path / "long.wav", np.concatenate(layout))
    scan = scan_silences(path)
    segments = plan_segments(scan.duration, scan.silences, scan.envelope_db, SegmentLimits(25, 45))
    assert [round(s.end, 1) for s in segments[:-1]] == [31.0, 61.2]  # mid-silence cuts
    assert len(segments) == 3  # the rest fits one segment: the last silence is not needed
