"""The bundled Whisper engine: each input of a batch is timed as if it ran alone."""

import numpy as np

from tests.conftest import DATA
from webui.modules.audio import decode


def test_word_times_do_not_leak_between_inputs_or_calls(whisper_engine):
    hum = (0.01 * np.sin(np.arange(32_000) * 2 * np.pi * 60 / 16_000)).astype(np.float32)
    jfk = np.concatenate([hum, decode(DATA / "jfk.flac")])  # speech from about 1.9 s
    other = decode(DATA / "two_cities.wav")[: 28 * 16_000]

    def first_word(batch, k):
        return whisper_engine.transcribe_batch(batch, "en")[k].pieces[0].words[0]

    alone = first_word([jfk], 0)
    assert 1.5 < alone.start < 2.3, alone  # not smeared back over the hum
    assert first_word([other, jfk], 1) == alone  # after a long input in the same batch
    assert first_word([jfk], 0) == alone  # and in the next call


def test_chinese_japanese_and_korean_decode_with_a_beam_and_the_rest_greedily(whisper_engine):
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    assert whisper_engine.beam_size is None  # the default: by language
    for language, beam in (("zh", 5), ("zh-TW", 5), ("yue", 5), ("ja", 5), ("ko", 5), ("en", 1), ("de", 1), ("", 1)):
        assert whisper_engine.beam_for(language) == beam, language
        assert whisper_engine._options(language).beam_size == beam
    fixed = WhisperEngine.__new__(WhisperEngine)  # an engine given its own beam keeps it everywhere
    fixed.beam_size = 2
    assert {fixed.beam_for(lang) for lang in ("zh", "en", "")} == {2}
