"""Shared fixtures. Every test runs offline: sockets to anything but loopback fail at once,
so a model-hub fallback shows up as an error instead of a hang."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from webui.offline import enforce_offline

enforce_offline()
os.environ.setdefault("WEBUI_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache"))

DATA = Path(__file__).resolve().parent / "data"
SR = 16_000

_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests are offline: connection to {address!r} blocked")
    return _real_connect(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests are offline: connection to {address!r} blocked")
    return _real_create_connection(address, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.create_connection = _guarded_create_connection


def manifest() -> list[dict]:
    return [json.loads(line) for line in (DATA / "manifest.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def clips() -> list[dict]:
    return manifest()


def write_wav(path: Path, samples: np.ndarray, rate: int = SR) -> Path:
    import soundfile as sf

    sf.write(str(path), samples.astype(np.float32), rate, subtype="PCM_16")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture
def energy_vad(monkeypatch):
    """Tones stand in for speech: the energy VAD alone judges them. Its voice check would rightly
    hear no voice in a tone (tests/test_voice_check.py tests it on real speech and music)."""
    from webui.modules.vads import voice_check

    monkeypatch.setattr(voice_check, "voiced", lambda audio, regions: regions)


def tone(seconds: float, freq: float = 440.0, amp: float = 0.3, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def quiet(seconds: float, level_db: float = -70.0, rate: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * 10 ** (level_db / 20)).astype(np.float32)


@pytest.fixture(scope="session")
def whisper_engine():
    from webui.modules.engines.base import EngineSettings
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    return WhisperEngine(EngineSettings(device="cpu"))
