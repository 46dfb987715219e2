"""Model VADs on real speech with inserted silences: they agree with librosa's energy split."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest

from webui.modules.vads.models import fsmn_vad_regions, silero_vad_regions

SR = 16_000
JFK = Path(__file__).resolve().parent / "data" / "jfk.flac"
# jfk.flac: speech 0.3-2.1 s, a pause 2.2-3.25 s ("...Americans, | ask not..."), speech to
# 10.2 s, then crowd noise. Cut inside the pause and drop the noisy tail.
CUT_S, END_S, PAD_S = 2.7, 10.3, 2.0
TOLERANCE_S = 0.3


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """2 s silence + speech + 2 s silence + speech + 2 s silence, and those silences' spans."""
    speech, _ = librosa.load(JFK, sr=SR, mono=True)
    cut, end, pad = int(CUT_S * SR), int(END_S * SR), np.zeros(int(PAD_S * SR), np.float32)
    audio = np.concatenate([pad, speech[:cut], pad, speech[cut:end], pad]).astype(np.float32)
    gap_start = PAD_S + CUT_S
    total = len(audio) / SR
    return audio, [(0.0, PAD_S), (gap_start, gap_start + PAD_S), (total - PAD_S, total)]


def librosa_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    spans = librosa.effects.split(audio, top_db=25, frame_length=2048, hop_length=512)
    return [(s / SR, e / SR) for s, e in spans]


def edges(regions: list[tuple[float, float]], silence: tuple[float, float]) -> tuple[float | None, float | None]:
    """Where speech stops before the silence's middle and starts again after it."""
    middle = sum(silence) / 2
    before = [end for _, end in regions if end <= middle]
    after = [start for start, _ in regions if start >= middle]
    return (max(before) if before else None, min(after) if after else None)


@pytest.mark.parametrize("vad", [fsmn_vad_regions, silero_vad_regions], ids=["fsmn", "silero"])
def test_model_vad_agrees_with_librosa_around_the_silences(clip, vad):
    audio, silences = clip
    regions, reference = vad(audio), librosa_regions(audio)
    assert regions and all(0 <= s < e <= len(audio) / SR for s, e in regions)
    for silence in silences:
        # nothing detected well inside an inserted silence
        assert not any(s < silence[1] - TOLERANCE_S and e > silence[0] + TOLERANCE_S for s, e in regions)
        got, want = edges(regions, silence), edges(reference, silence)
        assert (got[0] is None) == (want[0] is None) and (got[1] is None) == (want[1] is None)
        for g, w in zip(got, want):
            if w is not None:
                assert abs(g - w) <= TOLERANCE_S, (vad.__name__, silence, got, want)


def test_model_vads_find_nothing_in_silence():
    silence = np.zeros(3 * SR, np.float32)
    assert fsmn_vad_regions(silence) == []
    assert silero_vad_regions(silence) == []
    assert fsmn_vad_regions(np.zeros(100, np.float32)) == []
