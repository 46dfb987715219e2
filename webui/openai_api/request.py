"""The request's options: model, language and script, hotwords, response format, granularities."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..context import AppContext
from ..modules import script as script_mod
from ..modules.diarize.base import DiarizationError, DiarizeOptions
from .errors import OpenAIError
from .references import Reference, read_references
from .upload import Form

# OpenAI's own transcription models: a client written for OpenAI sends one of these; it means
# the server's default model.
OPENAI_MODELS = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                           "gpt-4o-mini-transcribe-2025-12-15", "gpt-transcribe"})
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("segment", "word")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class Asked:
    model: str            # a name from ctx.models() ("" : the default)
    language: str
    script: str
    hotwords: str
    response_format: str
    words: bool
    diarize: DiarizeOptions | None = None  # diarized_json, a speaker count or known speakers given
    accurate: bool = False
    references: tuple[Reference, ...] = ()  # known_speaker_names[] with their clips (not decoded yet)


def read_options(ctx: AppContext, form: Form) -> Asked:
    """The job's options from the form fields (OpenAIError 400 naming the bad one)."""
    model = form.get("model").strip()
    offered = [m.name for m in ctx.models()]
    if model in OPENAI_MODELS:
        model = ""
    elif model and model not in offered:
        raise OpenAIError(400, f"The model {model[:80]!r} does not exist on this server; choose one of: "
                               f"{', '.join(offered)} (or whisper-1 for the default).", param="model",
                          code="model_not_found")
    fmt = form.get("response_format", "json").strip().lower() or "json"
    if fmt not in RESPONSE_FORMATS:
        raise OpenAIError(400, f"response_format {fmt[:40]!r} is not supported; use one of "
                               f"{', '.join(RESPONSE_FORMATS)}.", param="response_format")
    references = read_references(form)
    diarize = _diarize_options(form, fmt, bool(references))
    if form.get("stream").strip().lower() in ("true", "1"):
        raise OpenAIError(400, "Streaming is not supported; send stream=false.", param="stream")
    temperature = form.get("temperature").strip()
    if temperature:
        try:
            float(temperature)  # accepted and ignored: decoding is deterministic here
        except ValueError:
            raise OpenAIError(400, f"temperature {temperature[:20]!r} is not a number.", param="temperature") from None
    granularities = [g.strip().lower() for g in form.all("timestamp_granularities[]", "timestamp_granularities")]
    for g in granularities:
        if g not in GRANULARITIES:
            raise OpenAIError(400, f"timestamp_granularities {g[:20]!r} must be 'segment' or 'word'.",
                              param="timestamp_granularities")
    language = form.get("language").strip().replace("_", "-")
    chinese = ""
    if language.lower().startswith("zh-"):
        chinese = script_mod.canonical(language)
        if chinese not in script_mod.SCRIPTS:
            raise OpenAIError(400, f"language {language[:20]!r}: use zh, zh-CN, zh-TW or zh-HK.", param="language")
        language = "zh"
    language = language.lower()
    if language and language != "auto" and not _LANGUAGE.match(language):
        raise OpenAIError(400, f"language {language[:20]!r} must be an ISO-639-1 code such as 'en', or 'auto'.",
                          param="language")
    chosen = form.get("script").strip()
    if chosen:
        chinese = script_mod.canonical(chosen)
        if chinese not in script_mod.SCRIPTS:
            raise OpenAIError(400, f"script {chosen[:20]!r} must be one of {', '.join(script_mod.SCRIPTS)}.",
                              param="script")
    hotwords = " ".join(p.strip() for p in [form.get("prompt"), *form.all("keywords[]", "keywords")] if p.strip())
    accurate = form.get("accurate").strip().lower() in ("true", "1", "yes")
    return Asked(model, language, chinese, hotwords, fmt, "word" in granularities, diarize, accurate, references)


def _diarize_options(form: Form, fmt: str, known: bool) -> DiarizeOptions | None:
    """Speakers are found for diarized_json, `diarize=true`, any speaker count, or known speakers."""
    counts = {}
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        text = form.get(name).strip()
        if text:
            if not text.isdigit() or not 1 <= int(text) <= 50:
                raise OpenAIError(400, f"{name} must be a whole number from 1 to 50, not {text[:20]!r}.", param=name)
            counts[name] = int(text)
    asked = known or form.get("diarize").strip().lower() in ("true", "1", "yes")
    if fmt != "diarized_json" and not counts and not asked:
        return None
    options = DiarizeOptions(**counts)
    try:
        options.bounds()
    except DiarizationError as exc:
        raise OpenAIError(400, str(exc), param="min_speakers") from None
    return options


