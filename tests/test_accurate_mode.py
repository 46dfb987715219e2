"""The accurate mode's committed part: a beam of 5 for every language (the default stays greedy
for English, beam 5 for Chinese, Japanese and Korean)."""

from __future__ import annotations

from webui.modules.engines.base import EngineSettings
from webui.modules.engines.whisper_ct2 import WhisperEngine
from webui.modules.options import PipelineOptions


def test_accurate_mode_widens_the_beam_for_every_language() -> None:
    default = WhisperEngine(EngineSettings(device="cpu"))
    accurate = WhisperEngine(PipelineOptions(engine=EngineSettings(device="cpu"), accurate=True).engine)
    assert (default.beam_for("en"), default.beam_for("zh"), default.beam_for("ja")) == (1, 1, 5)
    assert (accurate.beam_for("en"), accurate.beam_for("fr"), accurate.beam_for("zh")) == (5, 5, 5)
