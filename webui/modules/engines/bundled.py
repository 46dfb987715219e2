"""What is known of the bundled Whisper model without loading it, and without importing torch or
CTranslate2: the planning commands and the page ask these often and must start fast."""

from __future__ import annotations

from pathlib import Path

BUNDLED_NAME = "whisper-base"
WHISPER_INPUT_SECONDS = 30.0  # Whisper's encoder always takes 30 s


def is_whisper_folder(path: Path) -> bool:
    """A CTranslate2 Whisper conversion: the weights and a vocabulary."""
    return (path / "model.bin").exists() and any((path / n).exists() for n in ("vocabulary.json", "tokenizer.json"))
