"""Application settings: one frozen dataclass, persisted as JSON (atomic write).

The file is `$WEBUI_SETTINGS` or ./settings.json. Unknown keys are ignored and a value that
does not validate falls back to its default (with a warning), so an old or hand-edited file
never stops the app from starting. Relative paths are taken from the current directory
(start_app.sh runs from the project root).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Union

from .engines.base import EngineSettings
from . import script as script_mod
from .options import PipelineOptions
from .segment import AUTO
from .vads import VAD_BACKENDS, VadOptions

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
MIN_SEGMENT_SECONDS = 5.0


def default_path() -> Path:
    return Path(os.environ.get("WEBUI_SETTINGS") or "settings.json")


@dataclass(frozen=True)
class AppSettings:
    """Every setting of the web application, with its default. All of them are the operator's:
    the settings file and the command line set them, and in the page only an admin may; a
    visitor's own choices (model from the offered list, language, ITN, hotwords) go with each job.
    """

    device: str = "auto"                      # auto | cuda | cpu | mps
    model: str = ""                           # "" = bundled whisper-base; FunASR id or local folder
    precision: str = "auto"                   # auto | fp32 | fp16 | bf16 | int8
    compile: bool = False                     # torch.compile (engines that support it)
    memory_margin: float = 0.15               # fraction of free GPU memory kept free when batching
    max_segment: Union[str, float] = AUTO     # "auto" (45/60/90 s by length) or fixed seconds
    vad: str = "librosa"                      # librosa (fast CPU) | fsmn-vad | silero-vad
    itn: bool = True                          # default of each job's ITN switch
    script: str = "zh"                        # Chinese script: zh (Simplified) | zh-TW | zh-HK | keep
    language: str = "auto"
    hotwords: str = ""
    history_path: str = "history.db"
    batch_roots: tuple[str, ...] = ()         # server folders a batch may read (besides uploads)
    upload_dir: str = "outputs/uploads"       # where browser uploads land (Gradio's temp dir)
    results_dir: str = "outputs/results"      # transcripts offered for download
    models_dir: str = "models"                # each model folder in it is offered in the page
    hub_models: tuple[str, ...] = ()          # hub ids offered in the page (downloaded if WEBUI_ALLOW_HUB=1)
    retention_days: float = 7.0               # uploads and results older than this are deleted
    disk_quota_gb: float = 20.0               # uploads + results beyond this: the oldest go first
    max_upload_mb: float = 8192.0             # a 10-hour 48 kHz stereo WAV is 6.9 GB
    upload_quota_gb: float = 20.0             # one user's page uploads on disk at once
    max_audio_hours: float = 12.0
    max_batch_files: int = 200
    max_jobs_per_user: int = 20               # waiting or running at once
    vram_limit_gb: float = 0.0                # the most GPU memory the app may hold (0: the whole card)

    def __post_init__(self) -> None:
        # Normalise in place (frozen, hence object.__setattr__) and validate every field.
        object.__setattr__(self, "device", str(self.device).strip().lower() or "auto")
        object.__setattr__(self, "precision", str(self.precision).strip().lower() or "auto")
        object.__setattr__(self, "model", str(self.model).strip())
        object.__setattr__(self, "language", str(self.language).strip() or "auto")
        object.__setattr__(self, "max_segment", parse_max_segment(self.max_segment))
        for name in ("batch_roots", "hub_models"):
            lines = getattr(self, name)
            if isinstance(lines, str):
                lines = lines.splitlines()
            object.__setattr__(self, name, tuple(str(r).strip() for r in lines if str(r).strip()))
        for name in ("retention_days", "disk_quota_gb", "max_upload_mb", "upload_quota_gb", "max_audio_hours",
                     "max_batch_files", "max_jobs_per_user"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        object.__setattr__(self, "script", script_mod.parse(self.script))
        if self.vad not in VAD_BACKENDS:
            raise ValueError(f"VAD must be one of {', '.join(VAD_BACKENDS)}, not {self.vad!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if isinstance(self.vram_limit_gb, bool) or not isinstance(self.vram_limit_gb, (int, float)) \
                or not 0 <= self.vram_limit_gb < float("inf"):
            raise ValueError(f"vram_limit_gb must be 0 (the whole card) or a number of GB, not {self.vram_limit_gb!r}")
        if isinstance(self.memory_margin, bool) or not isinstance(self.memory_margin, (int, float)):
            raise ValueError(f"memory margin must be a number, not {self.memory_margin!r}")
        if not 0.0 <= float(self.memory_margin) < 1.0:
            raise ValueError(f"memory margin must be in [0, 1), not {self.memory_margin}")
        object.__setattr__(self, "memory_margin", float(self.memory_margin))
        for name in ("compile", "itn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("history_path", "upload_dir", "results_dir", "models_dir"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} must not be empty")
            object.__setattr__(self, name, str(getattr(self, name)).strip())

    # --- derived values -------------------------------------------------------------

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            model=self.model, device=self.device, precision=self.precision, language=self.language,
            hotwords=self.hotwords, compile=self.compile, memory_margin=self.memory_margin,
            vram_limit_gb=self.vram_limit_gb,
        )

    def to_pipeline_options(self, **engine_changes: Any) -> PipelineOptions:
        """The pipeline options for these settings; `engine_changes` override per job
        (e.g. the quick options of the Transcribe tab), `itn=` overrides the ITN switch and
        `script=` the Chinese script."""
        itn = bool(engine_changes.pop("itn", self.itn))
        script = script_mod.parse(engine_changes.pop("script", self.script))
        # One ITN switch per job: the model's own ITN (SenseVoice, Nano) follows it too.
        engine = replace(self.engine_settings(), use_model_itn=itn, **engine_changes)
        return PipelineOptions(engine=engine, max_segment=self.max_segment, vad=VadOptions(backend=self.vad),
                               itn=bool(itn), script=script)

    def allowed_roots(self) -> list[Path]:
        """Folders a server-side batch may read: the configured roots (none by default). The upload
        folder never is one: it holds every user's uploads."""
        uploads = self.upload_root()
        roots = [Path(p).expanduser().resolve() for p in self.batch_roots]
        return [r for r in roots if r != uploads and uploads not in r.parents]

    def upload_root(self) -> Path:
        return Path(self.upload_dir).expanduser().resolve()

    def check_batch_folder(self, folder: str | Path) -> Path:
        """The resolved folder if it lies under an allowed root; ValueError with a clear reason otherwise."""
        text = str(folder).strip()
        if not text:
            raise ValueError("enter a folder path on the server")
        path = Path(text).expanduser()
        try:
            resolved = path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError, OSError):
            raise ValueError(f"folder not found: {text}") from None
        if not resolved.is_dir():
            raise ValueError(f"not a folder: {text}")
        roots = self.allowed_roots()
        uploads = self.upload_root()
        inside_uploads = resolved == uploads or uploads in resolved.parents
        if inside_uploads or not any(resolved == root or root in resolved.parents for root in roots):
            listed = ", ".join(str(r) for r in roots) or "none"
            raise ValueError(
                f"{resolved} is not under an allowed folder (allowed: {listed}). "
                "An administrator allows server folders under 'Batch folders' on the System tab."
            )
        return resolved

    # --- (de)serialisation ----------------------------------------------------------

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batch_roots"] = list(self.batch_roots)
        data["hub_models"] = list(self.hub_models)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AppSettings":
        """Lenient: unknown keys are dropped and invalid values replaced by defaults."""
        if not isinstance(data, dict):
            raise ValueError("settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**values)
        except (TypeError, ValueError):
            pass
        good: dict = {}
        for key, value in values.items():
            try:
                cls(**{**good, key: value})
            except (TypeError, ValueError) as exc:
                log.warning("settings: ignoring %s=%r (%s)", key, value, exc)
                continue
            good[key] = value
        return cls(**good)

    def with_changes(self, **changes: Any) -> "AppSettings":
        """A validated copy; ValueError names the bad field."""
        return replace(self, **changes)


def parse_max_segment(value: Any) -> Union[str, float]:
    """'auto' or a number of seconds (>= 5); accepts '60', '60 s', 60."""
    if isinstance(value, bool):
        raise ValueError(f"maximum segment length must be 'auto' or seconds, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().removesuffix("s").strip()
        if text in ("", AUTO):
            return AUTO
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"maximum segment length must be 'auto' or seconds, not {value!r}") from None
    if not seconds >= MIN_SEGMENT_SECONDS or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"maximum segment length must be at least {MIN_SEGMENT_SECONDS:g} s, not {value!r}")
    return seconds


def load(path: str | Path | None = None) -> AppSettings:
    """Settings from the file, or defaults when it is missing or unreadable (logged)."""
    p = Path(path) if path is not None else default_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppSettings()
    except OSError as exc:
        log.warning("could not read settings %s (%s); using defaults", p, exc)
        return AppSettings()
    try:
        return AppSettings.from_dict(json.loads(text))
    except (json.JSONDecodeError, ValueError) as exc:
        log.warning("settings file %s is not valid (%s); using defaults", p, exc)
        return AppSettings()


def save(settings: AppSettings, path: str | Path | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, then os.replace."""
    p = Path(path) if path is not None else default_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(settings.to_dict(), out, ensure_ascii=False, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


__all__ = ["AppSettings", "DEVICES", "PRECISIONS", "default_path", "load", "save", "parse_max_segment"]
