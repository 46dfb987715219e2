"""The Engine protocol: what the pipeline needs from a speech model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..transcript import Scores

SAMPLE_RATE = 16_000

# An input's utterances: local (start, end) seconds of its stretches of speech between pauses.
Utterances = Sequence[tuple[float, float]]


class EngineError(RuntimeError):
    """A model could not be found, loaded or run; the message is meant for the user."""


@dataclass(frozen=True)
class LocalWord:
    start: float
    end: float
    text: str  # as the model spells it, leading space included where the language uses spaces
    tokens: tuple[int, ...] | None = None  # the model's token ids for `text`, where it has them


@dataclass(frozen=True)
class LocalText:
    """Text with times relative to the start of the engine's input (seconds).

    `words`, where the model gives them, let the pipeline split the text at pauses; `scores`,
    where it reports them, are its decode's (transcript.Scores), `tokens` those of the whole text."""

    start: float
    end: float
    text: str
    words: tuple[LocalWord, ...] = ()
    scores: Scores | None = None


@dataclass(frozen=True)
class EngineOutput:
    pieces: tuple[LocalText, ...]
    language: str = ""
    # True when the model already applied its own inverse text normalisation.
    itn_applied: bool = False
    # Whisper's language ID of the input, its likeliest languages (code, probability), where the
    # language was followed input by input (engines/language_id.py)
    heard: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class EngineSettings:
    """User-facing options every engine understands (unknown ones are ignored)."""

    model: str = ""
    device: str = "auto"          # auto | cpu | cuda | mps
    precision: str = "auto"       # auto | fp32 | fp16 | bf16 | int8
    language: str = "auto"
    hotwords: str = ""
    # Accurate mode: slower decoding for fewer errors (Whisper: a beam of 5 for every language and
    # the temperature fallback). Per call, like language: it needs no other model object.
    accurate: bool = False
    use_model_itn: bool = True
    compile: bool = False
    memory_margin: float = 0.15   # fraction of free GPU memory kept free
    # Whisper's encoder attention needs ~90 MB per input on the CPU: 4 at a time keeps the peak low.
    # Its decoder's cost per step barely grows with the batch, so on the CPU Whisper decodes up to
    # cpu_decode_cap inputs together (greedy; beams cpu_batch_cap at a time), encoding them and
    # aligning their word times cpu_batch_cap at a time; other engines run cpu_batch_cap inputs
    # per batch. 12 holds the inputs of a 5-minute window (about 10 of 28 s) in one decode, where
    # 8 left a batch of 2 behind. The peak is the model plus one full batch: it does not grow
    # with length, and files too short to fill a batch peak lower.
    cpu_batch_cap: int = 4
    cpu_decode_cap: int = 12
    vram_limit_gb: float = 0.0    # the most GPU memory this app may hold (0: the whole card)


@runtime_checkable
class Engine(Protocol):
    name: str
    device: str
    # Longest input (seconds) the model accepts; the segment planner never exceeds it.
    max_input_seconds: float

    def batch_limit(self, padded_seconds: float) -> int:
        """How many inputs of this padded length fit in the next batch, given memory free now."""

    def transcribe_batch(self, audios: Sequence[np.ndarray], language: str = "auto") -> list[EngineOutput]:
        """16 kHz mono float32 arrays in, one EngineOutput per array, same order. An engine whose
        `takes_utterances` is true is also given each input's Utterances (`utterances=`)."""

    def release(self) -> None:
        """Drop per-batch intermediates (called after every batch)."""

    def trim(self) -> None:
        """Return device memory the runtime keeps cached (Deep cleanup; only between jobs)."""

    def unload(self) -> None:
        """Free the model itself."""
