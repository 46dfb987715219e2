"""Runs CAM++: the per-chunk network (torch or ONNX Runtime), then its last layer in numpy.

Which runtime, on the CPU (measured, one thread; see cpu_threads for why one):
- torch in bfloat16 where the CPU has native bf16 (AVX512-BF16 / AMX; oneDNN says so): ~100x
  real time of speech, embeddings within cosine 0.997 of float32. The batch norms folded into
  the convolutions and the 2-D front end (~40 % of the network's time) on NHWC maps take another
  12-16 % off (A/B in one process, 2-core EPYC), the embeddings within cosine 0.999 of float32;
- else ONNX Runtime in float32: ~70x, the same numbers as torch to 1e-5 (torch float32: ~40x).
  The ONNX file is built once from the checked weights (needs the `onnx` package) and kept in
  the cache folder beside the bundled Whisper model, named by the weights' hash;
- else torch in float32.
On a GPU: torch in float32 (the network is small; the GPU is not the bottleneck).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from .base import DiarizationError, cpu_threads
from .weights import SHA256, load_model, verified_path

log = logging.getLogger(__name__)

ONNX_VERSION = 1  # bump when the exported graph changes
BACKENDS = ("auto", "torch-bf16", "onnx", "torch")
_lock = threading.Lock()
_encoders: dict[tuple[str, str], "Encoder"] = {}


def cache_dir() -> Path:
    """The same folder as the bundled Whisper model's (engines/whisper_ct2.py)."""
    return Path(os.environ.get("WEBUI_CACHE_DIR") or Path.home() / ".cache" / "longform-asr") / "diarize"


class Encoder:
    """features (batch, frames, 80) -> frame maps (batch, 512, ceil(frames / 2)); then
    `embed(stats)` applies the last layer to pooled (mean, std) statistics."""

    backend = "torch"

    def __init__(self, matrix: np.ndarray, offset: np.ndarray):
        self.matrix, self.offset = matrix, offset

    def frames(self, feats: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, stats: np.ndarray) -> np.ndarray:
        return stats @ self.matrix + self.offset


class TorchEncoder(Encoder):
    def __init__(self, device: str, bf16: bool = False):
        import torch

        from .campplus import folded

        model = load_model()
        super().__init__(*model.dense_affine())
        self.device = torch.device(device)
        self.model = folded(model).to(self.device)
        if self.device.type == "cpu":  # oneDNN's 2-D convolutions: ~15 % faster on NHWC maps
            self.model.head.to(memory_format=torch.channels_last)
        self.bf16 = bf16
        self.backend = "torch-bf16" if bf16 else "torch"

    def frames(self, feats: np.ndarray) -> np.ndarray:
        import torch

        with _torch_threads(self.device.type), torch.inference_mode(), \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.frames(torch.from_numpy(feats).to(self.device)).float().cpu().numpy()


_threads_lock = threading.Lock()


@contextlib.contextmanager
def _torch_threads(device_type: str):
    """torch's thread count is the process's: set ours for the call, then put it back."""
    import torch

    if device_type != "cpu":
        yield
        return
    with _threads_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(cpu_threads())
        try:
            yield
        finally:
            torch.set_num_threads(before)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions, where oneDNN's bf16 kernels beat float32 (emulated bf16
    elsewhere is slower than float32)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class OnnxEncoder(Encoder):
    backend = "onnx"

    def __init__(self, threads: int | None = None):
        import onnxruntime as ort

        verified_path()  # the ONNX file is only as good as the weights it was built from
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        for attempt in (1, 2):
            model_path, affine_path = _onnx_files()
            try:
                with np.load(affine_path) as affine:
                    matrix, offset = affine["matrix"], affine["offset"]
                self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
                break
            except Exception:  # a damaged cache file: build it again, once
                if attempt == 2:
                    raise
                model_path.unlink(missing_ok=True)
                affine_path.unlink(missing_ok=True)
        super().__init__(matrix, offset)

    def frames(self, feats: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": np.ascontiguousarray(feats, np.float32)})[0]


def _onnx_files() -> tuple[Path, Path]:
    """The exported network and its last layer, built on first use (atomic renames)."""
    folder = cache_dir()
    model_path = folder / f"campplus-frames-{SHA256[:16]}-v{ONNX_VERSION}.onnx"
    affine_path = model_path.with_suffix(".npz")
    if model_path.is_file() and affine_path.is_file():
        return model_path, affine_path
    import torch

    from .campplus import FrameNet

    model = load_model()
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(FrameNet(model), (torch.zeros(2, 150, 80),), buffer, input_names=["features"],
                          output_names=["frames"], opset_version=17, dynamo=False,
                          dynamic_axes={"features": {0: "batch", 1: "time"}, "frames": {0: "batch", 2: "time2"}})
    matrix, offset = model.dense_affine()
    for path, write in ((affine_path, lambda f: np.savez(f, matrix=matrix, offset=offset)),
                        (model_path, lambda f: f.write(buffer.getvalue()))):
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(staging, "wb") as out:
            write(out)
        os.replace(staging, path)
    return model_path, affine_path


def resolve(device: str | None) -> str:
    """'cpu', or 'cuda:N' (auto picks CUDA where torch sees one)."""
    name = (device or "cpu").strip().lower()
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise DiarizationError(f"diarization runs on 'cpu', 'cuda[:N]' or 'auto', not {device!r}")
    if not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count():
        raise DiarizationError(f"device {device!r} was requested for diarization but that GPU is not visible")
    return f"cuda:{int(index or 0)}"


def get_encoder(device: str | None = "cpu", backend: str = "auto") -> Encoder:
    """One encoder per (device, backend) for the process.
    backend: auto | torch-bf16 | onnx | torch (auto: the fastest this CPU has, see above)."""
    if backend not in BACKENDS:
        raise DiarizationError(f"unknown speaker encoder backend {backend!r}; choose from {', '.join(BACKENDS)}")
    device = resolve(device)
    with _lock:
        key = (device, backend)
        if key not in _encoders:
            _encoders[key] = _build(device, backend)
        return _encoders[key]


def _build(device: str, backend: str) -> Encoder:
    if device != "cpu" or backend == "torch":
        return TorchEncoder(device)
    if backend == "torch-bf16" or (backend == "auto" and cpu_has_bf16()):
        return TorchEncoder(device, bf16=True)
    try:
        return OnnxEncoder()
    except DiarizationError:
        raise
    except Exception as exc:  # no onnx / onnxruntime, or an export this torch cannot do
        if backend == "onnx":
            raise DiarizationError(f"the ONNX speaker encoder is unavailable: {exc}") from exc
        log.warning("speaker encoder: ONNX Runtime unavailable (%s); using torch on the CPU", exc)
        return TorchEncoder(device)
