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
