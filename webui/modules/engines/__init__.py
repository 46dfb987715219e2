"""Engine choice and the one loaded model kept per process."""

from __future__ import annotations

import threading
from pathlib import Path

from .base import Engine, EngineError, EngineSettings

_lock = threading.Lock()
_loaded: tuple[tuple, Engine] | None = None


def _key(settings: EngineSettings) -> tuple:
    # Options that need a different model object; language and hotwords are per call.
    return (settings.model, settings.device, settings.precision, settings.compile)


def is_bundled(model: str) -> bool:
    from .bundled import BUNDLED_NAME, is_whisper_folder

    return model in ("", BUNDLED_NAME) or (Path(model).is_dir() and is_whisper_folder(Path(model)))


def load_engine(settings: EngineSettings) -> Engine:
    if is_bundled(settings.model):
        from .whisper_ct2 import WhisperEngine

        return WhisperEngine(settings)
    from .funasr import FunASREngine

    return FunASREngine(settings)


def get_engine(settings: EngineSettings) -> Engine:
    """The loaded engine for these settings, loading it (and dropping any other) if needed."""
    global _loaded
    with _lock:
        if _loaded is not None and _loaded[0] == _key(settings):
            engine = _loaded[1]
            engine.settings = settings  # type: ignore[attr-defined]  # per-call options
            return engine
        if _loaded is not None:
            _loaded[1].unload()
            _loaded = None
        engine = load_engine(settings)
        _loaded = (_key(settings), engine)
        return engine


def loaded_engine() -> Engine | None:
    return _loaded[1] if _loaded else None


def unload_engine() -> bool:
    global _loaded
    with _lock:
        if _loaded is None:
            return False
        _loaded[1].unload()
        _loaded = None
        return True


__all__ = ["Engine", "EngineError", "EngineSettings", "get_engine", "load_engine", "loaded_engine", "unload_engine"]
