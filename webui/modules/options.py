"""PipelineOptions: every pipeline setting, with its default, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Union

from .diarize.base import DiarizeOptions
from .engines.base import EngineSettings
from .segment import AUTO
from .vads import VadOptions


@dataclass(frozen=True)
class PipelineOptions:
    engine: EngineSettings = field(default_factory=EngineSettings)
    max_segment: Union[float, str] = AUTO     # "auto" (45/60/90 s by length) or seconds
    silence_noise_db: float = -30.0           # silencedetect noise floor
    silence_min: float = 1.2                  # silencedetect minimum silence (s)
    vad: VadOptions = field(default_factory=VadOptions)
    itn: bool = True                          # this job's ITN switch (the only one)
    script: str = "zh"                        # Chinese script: zh (Simplified) | zh-TW | zh-HK | keep
    # Audio decoded, batched and checkpointed at once; None: 5 min on the CPU (batches are
    # small), 20 min on a GPU (room for large batches). Either way a constant, not the length.
    # Windows are independent (nothing carried across), so a resumed run redoes at most one.
    window_seconds: float | None = None
    # A short first window: first text within seconds (longer while its speech fits one input:
    # window_plan.filled_windows)
    first_window_seconds: float = 30.0
    snap_seconds: float = 0.5                 # pull a text start onto a VAD speech onset this close
    pack: bool = True                         # join neighbouring segments' speech up to the engine's maximum
    # One input per utterance instead; None: by the recording's language (Japanese and Korean:
    # windows.UTTERANCE_LANGUAGES).
    utterance_inputs: bool | None = None
    retry_tail_seconds: float = 2.0           # re-run speech left untranscribed after an early end (0: off)
    # Accurate mode: fewer errors for more time (Whisper: beam 5 for every language, temperature
    # fallback: engines/whisper_ct2.py). The engine reads it from `engine.accurate`, which follows this.
    accurate: bool = False
    # Who spoke (diarize/): None = off. Off by default: on the CPU it adds about a fifth to a
    # run's time, and a lecture or a dictation has one voice.
    diarize: DiarizeOptions | None = None

    def __post_init__(self) -> None:
        if self.engine.accurate != self.accurate:
            object.__setattr__(self, "engine", replace(self.engine, accurate=self.accurate))


# The two presets a user picks from (CLI --accurate, the UI and the APIs' `accurate`).
PRESETS = {"default": False, "accurate": True}


def with_preset(options: PipelineOptions, preset: str | bool) -> PipelineOptions:
    """`options` in the named preset ("default" or "accurate"; True/False work too)."""
    accurate = PRESETS[preset] if isinstance(preset, str) else bool(preset)
    return replace(options, accurate=accurate)


def options_from_record(data: dict) -> PipelineOptions:
    """PipelineOptions from the JSON stored with a job (`asdict`); unknown keys are ignored,
    so a record written by an older or newer version still loads."""
    def build(cls, values: Any):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    top = {k: v for k, v in data.items() if k not in ("engine", "vad", "diarize")}
    engine = build(EngineSettings, data.get("engine"))
    top.setdefault("accurate", engine.accurate)
    diarize = build(DiarizeOptions, data["diarize"]) if isinstance(data.get("diarize"), dict) else None
    return replace(build(PipelineOptions, top), engine=engine, vad=build(VadOptions, data.get("vad")), diarize=diarize)


MAX_PAGE_SPEAKERS = 20  # the page offers 1..20 speakers; the CLI and the APIs allow more


def diarize_choice(on: object, count: object, low: object = None, high: object = None) -> DiarizeOptions | None:
    """The page's "Who spoke" choices as DiarizeOptions (None when off). `count` is "auto" or an
    exact number; `low`/`high` optional bounds ("any" or empty: none). The values come from a web page: ValueError,
    one sentence for the page, for anything but whole numbers 1..20 with min ≤ max."""
    if not on:
        return None
    auto = str(count or "").strip().lower() in ("", "auto")
    exact = None if auto else _speaker_count(count, "The number of speakers")
    least, most = _speaker_count(low, "The minimum number of speakers"), \
        _speaker_count(high, "The maximum number of speakers")
    if least is not None and most is not None and least > most:
        raise ValueError(f"The minimum number of speakers ({least}) is above the maximum ({most}).")
    if exact is not None:  # an exact count decides; bounds it contradicts are a mistake worth saying
        if (least is not None and exact < least) or (most is not None and exact > most):
            raise ValueError(f"{exact} speakers is outside the minimum and maximum you set.")
        return DiarizeOptions(num_speakers=exact)
    return DiarizeOptions(min_speakers=least, max_speakers=most)


def _speaker_count(value: object, what: str) -> int | None:
    """A whole number 1..MAX_PAGE_SPEAKERS from a page value (None: left empty)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "any")):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or not 1 <= number <= MAX_PAGE_SPEAKERS:
        raise ValueError(f"{what} must be a whole number from 1 to {MAX_PAGE_SPEAKERS}, "
                         f"not {str(value)[:20]!r}.")
    return int(number)
