"""Accurate mode as an option (PipelineOptions.accurate, the presets, CLI --accurate), and the
scoring of scripts/bench/vs_faster_whisper.py."""

import importlib.util
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from webui.modules.engines.base import EngineSettings
from webui.modules.options import PRESETS, PipelineOptions, options_from_record, with_preset

ROOT = Path(__file__).resolve().parent.parent


def test_accurate_reaches_the_engine_settings_and_survives_a_stored_record():
    assert PipelineOptions().accurate is False and PipelineOptions().engine.accurate is False
    accurate = PipelineOptions(accurate=True)
    assert accurate.engine.accurate is True
    assert replace(accurate, accurate=False).engine.accurate is False
    # A new engine (another language, another model) keeps the pipeline's choice.
    assert replace(accurate, engine=EngineSettings(language="zh")).engine.accurate is True
    assert options_from_record(asdict(accurate)) == accurate
    assert options_from_record(asdict(PipelineOptions())) == PipelineOptions()
    old = asdict(PipelineOptions())
    del old["accurate"], old["engine"]["accurate"]  # a record from before the option
    assert options_from_record(old) == PipelineOptions()


def test_presets():
    assert set(PRESETS) == {"default", "accurate"}
    assert with_preset(PipelineOptions(), "accurate").engine.accurate is True
    assert with_preset(PipelineOptions(accurate=True), "default") == PipelineOptions()
    assert with_preset(PipelineOptions(), True).accurate is True


def test_cli_accurate_flag():
    from webui.cli import build_parser, options_from_args

    parse = build_parser().parse_args
    assert options_from_args(parse(["transcribe", "a.wav"])).accurate is False
    options = options_from_args(parse(["transcribe", "a.wav", "--accurate", "--language", "en"]))
    assert options.accurate and options.engine.accurate and options.engine.language == "en"


def test_accurate_and_default_runs_never_share_a_checkpoint():
    from webui.modules.checkpoint import options_key

    assert options_key(PipelineOptions()) != options_key(PipelineOptions(accurate=True))


def _bench():
    spec = importlib.util.spec_from_file_location("vs_faster_whisper", ROOT / "scripts" / "bench" / "vs_faster_whisper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, expected", [
    ("Extension 1, 2, 3, 4 and password 4-2-4-2.", "extension one thousand two hundred thirty four and password "
                                                   "four thousand two hundred forty two"),
    ("Go forward 10 meters.", "go forward ten meters"),
    ("one two three", "one two three"),
    ("1 2 3", "one two three"),
    ("Press 1 to mute, 2 to lock; it's 28.8 kilobit & 10%", "press one to mute two to lock it's twenty eight "
                                                            "eight kilobit and ten percent"),
    ("'Quoted' call-forward", "quoted call forward"),
])
def test_bench_normaliser_treats_both_sides_alike(text, expected):
    assert _bench().normalise_en(text) == expected


def test_bench_error_rates():
    bench = _bench()
    assert bench.error_rate("Press 1, then 2.", "press one then two", zh=False) == 0.0
    assert bench.error_rate("go forward ten meters", "go forward", zh=False) == 0.5
    assert bench.error_rate("甚至出现交易几乎停滞的情况", "甚至出現交易几乎停滞的情况。", zh=True) == 0.0  # Traditional, punctuation
    assert bench.error_rate("换一首歌", "换一首", zh=True) == 0.25
    # French and Dutch: case, punctuation and the typographic apostrophe do not count; words do.
    assert bench.error_rate("Veuillez patienter pendant que l'on achemine votre appel.",
                            "veuillez patienter, pendant que l’on achemine votre appel", "fr") == 0.0
    assert bench.error_rate("Zie je dat zeepaardje?", "Zie je dat paard?", "nl") == 0.25
    assert bench.language_of("dialog_nl") == "nl" and bench.language_of("long_zh") == "zh"
    # Spanish: its transcript has no accents or tildes, so neither side's count; elsewhere they do.
    assert bench.language_of("asterisk_es") == "es" and bench.language_of("dialog_cs") == "cs"
    assert bench.error_rate("Por favor ingrese su contrasena", "Por favor, ingrese su contraseña.", "es") == 0.0
    assert bench.error_rate("cinq", "cinq", "fr") == 0.0 and bench.error_rate("a", "à", "fr") == 1.0
    assert bench.error_rate("нажмите решётку", "Нажмите решётку.", "ru") == 0.0
    # The Italian transcript's accents lost to "?" are put back before scoring.
    assert bench._repaired("accesso ? vuota, pu? essere", "it") == "accesso è vuota, può essere"
    assert bench._repaired("Sì? vuota ?", "es") == "Sì? vuota ?"
    # The "digits" column: number words 0-10 and digits are one word there, on both sides, and
    # only there; other words still count.
    assert bench.error_rate("Premi 1 poi 2", "premi uno poi due", "it") == 0.5
    assert bench.error_rate("Premi 1 poi 2", "premi uno poi due", "it", digits=True) == 0.0
    assert bench.error_rate("Нажмите 2, ёлка", "нажмите два елка", "ru", digits=True) == 0.0
    assert bench.error_rate("Marque 1 ahora mismo", "marque uno ahora tarde", "es", digits=True) == 0.25
    assert bench.error_rate("Press 1", "press one", zh=False, digits=True) == 0.0


def test_bench_counts_only_the_tokens_a_decode_generated():
    """A resumed decode's prompt carries its own text, which CTranslate2 gives back too."""
    bench = _bench()
    start = [50258, 50265, 50359, 50363]  # start of transcript, French, transcribe, no timestamps
    assert bench._prefix(start) == []
    assert bench._prefix(start + [883, 3192, 13]) == [883, 3192, 13]
    assert bench._prefix([50361, 400, 500] + start + [7]) == [7]  # hotwords before the start: not text


def test_bench_shifted_copy_is_the_recording_later(tmp_path):
    """--shifts: the copy is the same samples after `ms` of silence, built once."""
    import numpy as np
    import soundfile as sf

    bench = _bench()
    rng = np.random.default_rng(3)
    samples = (0.3 * np.sin(np.arange(16_000) * 0.05) + 0.05 * rng.standard_normal(16_000)).astype(np.float32)
    source = tmp_path / "talk.flac"
    sf.write(str(source), samples, 16_000, subtype="PCM_16")
    copy = bench.shifted(source, 13, tmp_path / "work")
    shifted, rate = sf.read(str(copy), dtype="float32")
    lead = 13 * 16  # 13 ms at 16 kHz
    assert rate == 16_000 and shifted.size == samples.size + lead
    assert not shifted[:lead].any()
    original, _ = sf.read(str(source), dtype="float32")
    assert np.abs(shifted[lead:] - original).max() < 1e-3  # 16-bit FLAC both ways
    stamp = copy.stat().st_mtime_ns
    assert bench.shifted(source, 13, tmp_path / "work") == copy and copy.stat().st_mtime_ns == stamp
    assert bench.shifted(source, 7, tmp_path / "work") != copy
