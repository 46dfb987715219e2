"""AppSettings: defaults, validation, JSON round trip (atomic), lenient loading, pipeline options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from webui.modules import settings as settings_mod
from webui.modules.options import PipelineOptions
from webui.modules.settings import AppSettings, load, parse_max_segment, save


def test_defaults_match_the_pipeline_defaults() -> None:
    s = AppSettings()
    assert (s.device, s.model, s.precision, s.max_segment, s.itn) == ("auto", "", "auto", "auto", True)
    assert s.batch_roots == ()
    options = s.to_pipeline_options()
    assert isinstance(options, PipelineOptions)
    assert options.engine == PipelineOptions().engine  # same engine defaults in both places
    assert options.max_segment == "auto" and options.itn is True


def test_to_pipeline_options_carries_every_setting_and_per_job_overrides() -> None:
    s = AppSettings(device="cpu", model="SenseVoiceSmall", precision="fp16", compile=True, memory_margin=0.3,
                    max_segment=60, itn=False, language="zh", hotwords="阿里巴巴")
    o = s.to_pipeline_options()
    e = o.engine
    assert (e.device, e.model, e.precision, e.compile, e.memory_margin, e.language, e.hotwords) == (
        "cpu", "SenseVoiceSmall", "fp16", True, 0.3, "zh", "阿里巴巴")
    assert o.max_segment == 60.0 and o.itn is False
    quick = s.to_pipeline_options(model="", language="en", hotwords="", itn=True)
    assert (quick.engine.model, quick.engine.language, quick.itn) == ("", "en", True)
    assert quick.engine.device == "cpu"  # untouched settings stay


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("", "auto"), ("60", 60.0), ("45 s", 45.0),
                                             (90, 90.0), (30.5, 30.5)])
def test_max_segment_parsing(value, expected) -> None:
    assert parse_max_segment(value) == expected


@pytest.mark.parametrize("value", ["soon", "2", 4.9, -10, True, "nan", "inf"])
def test_max_segment_rejects_nonsense(value) -> None:
    with pytest.raises(ValueError, match="maximum segment"):
        parse_max_segment(value)


@pytest.mark.parametrize("changes, field", [
    ({"device": "tpu"}, "device"), ({"precision": "fp8"}, "precision"), ({"memory_margin": 1.0}, "margin"),
    ({"memory_margin": "lots"}, "margin"), ({"compile": "yes"}, "compile"), ({"history_path": " "}, "history_path"),
])
def test_invalid_values_are_refused_with_the_field_named(changes, field) -> None:
    with pytest.raises(ValueError, match=field):
        AppSettings().with_changes(**changes)


def test_round_trip_is_atomic_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "settings.json"
    s = AppSettings(device="cpu", max_segment=90, itn=False, batch_roots=("/data/a", "/data/b"),
                    history_path=str(tmp_path / "h.db"), hotwords="Zürich, 北京")
    save(s, path)
    assert json.loads(path.read_text(encoding="utf-8"))["batch_roots"] == ["/data/a", "/data/b"]
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temporary file left behind
    assert load(path) == s
    # Saving again replaces the file whole.
    save(s.with_changes(device="auto"), path)
    assert load(path).device == "auto"


def test_missing_corrupt_or_partly_bad_files_fall_back_to_defaults(tmp_path: Path) -> None:
    assert load(tmp_path / "absent.json") == AppSettings()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert load(broken) == AppSettings()
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"device": "tpu", "itn": False, "unknown_key": 1, "max_segment": "60"}))
    loaded = load(partial)
    assert loaded.device == "auto"  # the bad value is dropped...
    assert loaded.itn is False and loaded.max_segment == 60.0  # ...the good ones kept


def test_settings_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env-settings.json"
    monkeypatch.setenv("WEBUI_SETTINGS", str(target))
    assert settings_mod.default_path() == target
    save(AppSettings(language="en"))
    assert target.exists() and load().language == "en"
    monkeypatch.delenv("WEBUI_SETTINGS")
    assert settings_mod.default_path() == Path("settings.json")


def test_batch_folders_must_lie_under_an_allowed_root(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for folder in (uploads, allowed / "sub", outside):
        folder.mkdir(parents=True)
    s = AppSettings(upload_dir=str(uploads))
    # None by default, and never the upload folder (every user's uploads), even when listed.
    assert s.allowed_roots() == []
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(uploads)
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(allowed / "sub")
    wide = s.with_changes(batch_roots=(str(uploads), str(tmp_path)))
    assert wide.allowed_roots() == [tmp_path.resolve()]
    (uploads / "bob").mkdir()
    with pytest.raises(ValueError, match="not under an allowed folder"):
        wide.check_batch_folder(uploads / "bob")  # under a wide root, but inside the upload area
    s = s.with_changes(batch_roots=(str(allowed),))
    assert s.check_batch_folder(allowed / "sub") == (allowed / "sub").resolve()
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(outside)
    # A path that climbs out with .. or a symlink is judged by where it really is.
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(allowed / "sub" / ".." / ".." / "outside")
    link = allowed / "escape"
    os.symlink(outside, link)
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(link)
    with pytest.raises(ValueError, match="not found"):
        s.check_batch_folder(allowed / "nope")
    with pytest.raises(ValueError, match="enter a folder"):
        s.check_batch_folder("  ")
    # A sibling whose name merely starts with the root's name is not inside it.
    (tmp_path / "allowed-not").mkdir()
    with pytest.raises(ValueError, match="not under an allowed folder"):
        s.check_batch_folder(tmp_path / "allowed-not")


def test_batch_roots_accept_text_with_one_folder_per_line() -> None:
    s = AppSettings(batch_roots="/a\n\n  /b  \n")  # type: ignore[arg-type]
    assert s.batch_roots == ("/a", "/b")


def test_vad_backend_setting_reaches_the_pipeline_and_is_checked(tmp_path):
    from webui.modules.settings import AppSettings

    assert AppSettings(vad="fsmn-vad").to_pipeline_options().vad.backend == "fsmn-vad"
    assert AppSettings().to_pipeline_options().vad.backend == "librosa"
    with pytest.raises(ValueError, match="VAD"):
        AppSettings(vad="webrtc")
