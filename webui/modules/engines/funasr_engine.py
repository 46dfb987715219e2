"""FunASR engine: SenseVoiceSmall, Paraformer(-zh) and Fun-ASR-Nano through funasr.AutoModel.

funasr is only ever given a local folder: hub names are resolved here first (folder, then
local caches, then a Hugging Face download when the hub answers within seconds), because
funasr itself retries a dead hub for ~22 s and then reports a misleading "not registered".
After loading, the checkpoint is checked against the model, because funasr only prints
"miss key in ckpt" and carries on with random weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
import yaml

from .. import gpu
from ..transcript import is_cjk, join_texts
from .base import SAMPLE_RATE, EngineError, EngineOutput, EngineSettings, LocalText, LocalWord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownModel:
    hf_id: str
    ms_id: str  # where funasr's default (ModelScope) cache keeps it


KNOWN_MODELS: Mapping[str, KnownModel] = {
    "Fun-ASR-Nano-2512": KnownModel("FunAudioLLM/Fun-ASR-Nano-2512", "FunAudioLLM/Fun-ASR-Nano-2512"),
    "SenseVoiceSmall": KnownModel("FunAudioLLM/SenseVoiceSmall", "iic/SenseVoiceSmall"),
    "paraformer-zh": KnownModel(
        "funasr/paraformer-zh", "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
    ),
}


@dataclass(frozen=True)
class Family:
    name: str
    # SenseVoice (CTC) and Paraformer (non-autoregressive) run one encoder pass whatever the
    # length, so 90 s is safe. Nano decodes autoregressively with an LLM: cost grows with the
    # text and long inputs invite repetition, so it gets the 30 s its own VAD recipe uses.
    max_input_seconds: float
    # Our language codes -> what the model's `language=` expects; empty: no language option.
    languages: Mapping[str, str]


SENSEVOICE = Family("sensevoice", 90.0, {c: c for c in ("auto", "zh", "en", "yue", "ja", "ko")})
PARAFORMER = Family("paraformer", 90.0, {})
NANO = Family("nano", 30.0, {"zh": "中文", "en": "英文", "ja": "日文"})

FAMILY_OF_CLASS: Mapping[str, Family] = {
    "SenseVoiceSmall": SENSEVOICE,
    "Paraformer": PARAFORMER,
    "SeacoParaformer": PARAFORMER,
    "BiCifParaformer": PARAFORMER,
    "ContextualParaformer": PARAFORMER,
    "FunASRNano": NANO,
}
# Model class -> name of the keyword its inference() reads hotwords from.
HOTWORD_ARG: Mapping[str, str] = {"SeacoParaformer": "hotword", "ContextualParaformer": "hotword", "FunASRNano": "hotwords"}

MIN_INPUT_SAMPLES = SAMPLE_RATE // 10  # kaldi fbank fails below a frame; 0.1 s holds no words
PIECE_PAUSE_S = 0.5  # a gap this long between Paraformer tokens starts a new piece
PIECE_MAX_S = 12.0  # Paraformer has no punctuation: cap a piece so subtitles stay readable
CALIBRATION_SHORT_S = 4.0

_TAG = re.compile(r"<\|([^|]*)\|>")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class CallOptions:
    language: str  # our code for this call; 'auto' means the model detects it
    model_kwargs: Mapping[str, Any]  # extra keywords for model.inference


@dataclass(frozen=True)
class BatchCost:
    """GPU bytes a batch needs: shared once, plus per item (fixed + per padded second)."""

    bytes_per_second: float
    fixed_bytes_per_item: float
    shared_bytes: float


# ----------------------------------------------------------------------------- locating


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.yaml").is_file() or (path / "configuration.json").is_file())


def _offline_setting() -> str:
    """The environment variable that puts the hubs offline, or '' when none does."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_OFFLINE")
    return next((v for v in names if os.environ.get(v, "").strip().lower() in _TRUE), "")


def hub_reachable(host: str, timeout: float = 2.0) -> bool:
    """A TCP connect to host:443 within `timeout`; DNS runs in the thread so it is bounded too."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                answer.append(True)
        except Exception:  # DNS failure, refusal, timeout, or a test harness blocking sockets
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answer and answer[0])


def _cached_folder(known: KnownModel) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(known.hf_id, local_files_only=True))
        if _is_model_folder(path):
            return path
    except Exception:  # not cached, or not a valid repo id
        pass
    ms_root = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope" / "hub"))
    for path in (ms_root / "models" / known.ms_id, ms_root / known.ms_id):
        if _is_model_folder(path):
            return path
    return None


def locate_model(model: str, connect_timeout: float = 2.0) -> Path:
    """A local folder for `model`: a path, a cached download, or a fresh Hugging Face download."""
    if not model.strip():
        raise EngineError("No FunASR model was chosen: give a model folder or one of " + ", ".join(KNOWN_MODELS) + ".")
    path = Path(model).expanduser()
    if path.is_dir():
        if not _is_model_folder(path):
            raise EngineError(f"{path} is not a FunASR model folder (it has no config.yaml or configuration.json).")
        return path
    known = next((k for n, k in KNOWN_MODELS.items() if model in (n, k.hf_id, k.ms_id)), None)
    if known is None:
        if "/" not in model:
            raise EngineError(
                f"{model!r} is neither a folder nor a known model ({', '.join(KNOWN_MODELS)}) nor a hub id like 'org/name'."
            )
        known = KnownModel(model, model)
    cached = _cached_folder(known)
    if cached is not None:
        return cached

    from huggingface_hub import constants, snapshot_download

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    offline = _offline_setting()
    if offline or not hub_reachable(host, connect_timeout):
        raise EngineError(
            f"Model {model!r} is not on this machine and the model hub ({host}) "
            f"{f'is switched off ({offline}=1)' if offline else 'cannot be reached'}. On a machine with network run "
            f"`huggingface-cli download {known.hf_id} --local-dir SOME_FOLDER`, copy that folder here "
            "and choose the folder as the model (it needs config.yaml and model.pt)."
        )
    log.info("downloading %s from %s", known.hf_id, host)
    try:
        return Path(snapshot_download(known.hf_id))
    except Exception as exc:
        raise EngineError(f"Downloading {known.hf_id!r} from {host} failed: {exc}") from exc


def _file_path_metas(folder: Path) -> dict[str, Any]:
    """configuration.json's map of config/checkpoint/tokenizer files, as funasr reads it."""
    conf = folder / "configuration.json"
    if not conf.is_file():
        return {}
    return json.loads(conf.read_text(encoding="utf-8")).get("file_path_metas", {})


def find_checkpoint(folder: Path) -> Path | None:
    """The file configuration.json names as init_param, else model.pt / model.pth."""
    named = _file_path_metas(folder).get("init_param")
    names = ([named] if isinstance(named, str) else []) + ["model.pt", "model.pth"]
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _model_class(folder: Path) -> str:
    named = _file_path_metas(folder).get("config")
    config = folder / (named if isinstance(named, str) else "config.yaml")
    if not config.is_file():
        raise EngineError(f"{folder} has no {config.name}, so the model architecture is unknown.")
    return str((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model", ""))


# ----------------------------------------------------------------------------- checkpoint


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, unwrapped the way funasr unwraps them, 'module.' stripped."""
    try:  # mmap reads only what is touched: we need names and shapes, not the data
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) format cannot be mmapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_problems(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], satisfied: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """(missing, wrong-shape) parameter names of `model` with respect to `state`.

    Tied parameters (same storage, e.g. an LLM's lm_head and embeddings) count as present
    when any one of their names is in the checkpoint; `satisfied` names were loaded elsewhere.
    """
    own = model.state_dict()
    aliases: dict[int, set[str]] = {}
    for name, tensor in own.items():
        if tensor.numel():
            aliases.setdefault(tensor.untyped_storage().data_ptr(), set()).add(name)
    missing, wrong = [], []
    for name, tensor in own.items():
        if name in state:
            if tuple(state[name].shape) != tuple(tensor.shape):
                wrong.append(f"{name} {tuple(state[name].shape)} != {tuple(tensor.shape)}")
            continue
        group = aliases.get(tensor.untyped_storage().data_ptr(), {name}) if tensor.numel() else {name}
        if not (group & state.keys()) and name not in satisfied:
            missing.append(name)
    return missing, wrong


def _verify_checkpoint(model: torch.nn.Module, path: Path, excludes: Sequence[str]) -> None:
    state = load_state(path)
    loaded_elsewhere = frozenset(getattr(model, "_externally_loaded_ctc_keys", ()))  # Nano's CTC file
    missing, wrong = checkpoint_problems(model, state, loaded_elsewhere)
    missing = [k for k in missing if not any(k.startswith(e) for e in excludes)]
    problems = [f"{len(missing)} missing: {', '.join(missing[:5])}"] if missing else []
    problems += [f"{len(wrong)} with the wrong shape: {', '.join(wrong[:3])}"] if wrong else []
    if problems:
        raise EngineError(
            f"The checkpoint {path} does not match the model its config describes "
            f"({'; '.join(problems)}). funasr would run with those weights random; "
            "use the model.pt that belongs to this config.yaml."
        )


# ----------------------------------------------------------------------------- output parsing


def split_sensevoice_tags(raw: str) -> tuple[str, str]:
    """'<|en|><|NEUTRAL|><|Speech|><|woitn|>hello' -> ('en', 'hello')."""
    language = next((t for t in _TAG.findall(raw) if t in SENSEVOICE.languages and t != "auto"), "")
    return language, join_texts(_TAG.sub(" ", raw).split())


def paraformer_pieces(text: str, timestamps_ms: Sequence[Sequence[int]], seconds: float) -> tuple[LocalText, ...]:
    """Pieces split at pauses, with word times, from Paraformer's space-separated tokens and
    their [start, end] ms."""
    tokens = text.split()
    if not tokens:
        return ()

    def clamp(ms: float) -> float:
        return min(max(ms / 1000, 0.0), seconds)

    spans = [(clamp(t[0]), clamp(t[1])) for t in timestamps_ms]
    if len(spans) != len(tokens):  # funasr merged or dropped tokens: one piece, no word times
        start, end = (spans[0][0], spans[-1][1]) if spans else (0.0, seconds)
        return (LocalText(start, max(start, end), join_texts(tokens)),)
    # LocalWord spelling: a leading space where the language separates words.
    words = [LocalWord(s, max(s, e), tok if is_cjk(tok[0]) else " " + tok) for tok, (s, e) in zip(tokens, spans)]
    groups, first = [], 0
    for i in range(1, len(words)):
        pause = words[i].start - words[i - 1].end
        if pause >= PIECE_PAUSE_S or words[i].end - words[first].start > PIECE_MAX_S:
            groups.append(words[first:i])
            first = i
    groups.append(words[first:])
    return tuple(LocalText(g[0].start, g[-1].end, "".join(w.text for w in g).strip(), tuple(g)) for g in groups)


def _zero_padded_frames(module: torch.nn.Module, args: Any, output: tuple) -> tuple:
    """Forward hook on Paraformer's encoder: zero the frames past each input's length.

    The CIF predictor's convolution reads one frame beyond the end; alone that frame is its
    zero padding, in a batch it is encoder output on padding, which changes the last token.
    """
    frames, lengths = output[0], output[1]
    keep = torch.arange(frames.size(1), device=frames.device)[None, :] < lengths[:, None]
    return (frames * keep[..., None].to(frames.dtype), *output[1:])


# ----------------------------------------------------------------------------- engine


class FunASREngine:
    """The Engine protocol over a funasr model; see base.Engine for the contract."""

    def __init__(
        self,
        settings: EngineSettings,
        probe: gpu.MemoryProbe | None = None,
        *,
        allow_random_weights: bool = False,
        connect_timeout: float = 2.0,
        inference_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`allow_random_weights` accepts a folder without model.pt (benchmarks of the
        architecture); `inference_options` are extra model.inference keywords for every call
        (the benchmark forces Nano's decode length with them)."""
        self.settings = settings
        self._inference_options = dict(inference_options or {})
        self.name = settings.model
        self.device = gpu.resolve_device(settings.device)
        self.precision, self._autocast_dtype = self._resolve_precision(settings.precision)
        self.folder = locate_model(settings.model, connect_timeout)
        self.model_class = _model_class(self.folder)
        if self.model_class not in FAMILY_OF_CLASS:
            raise EngineError(
                f"{self.folder} holds a {self.model_class or 'unnamed'} model; this engine runs "
                f"{', '.join(FAMILY_OF_CLASS)}."
            )
        self.family = FAMILY_OF_CLASS[self.model_class]
        self.max_input_seconds = self.family.max_input_seconds
        self.checkpoint = find_checkpoint(self.folder)
        if self.checkpoint is None and not allow_random_weights:
            raise EngineError(f"{self.folder} has no model.pt; without it the model would have random weights.")
        self._warned: set[str] = set()

        started = time.perf_counter()
        self._am: Any = self._build()
        self._model: torch.nn.Module | None = self._am.model
        self._kwargs: dict[str, Any] = dict(self._am.kwargs)
        if self.checkpoint is not None:
            _verify_checkpoint(self._model, self.checkpoint, self._kwargs.get("excludes") or [])
        self._prepare_frontend()
        if settings.compile:
            self._compile_encoder()
        if self.family is PARAFORMER:
            self._model.encoder.register_forward_hook(_zero_padded_frames)
        self._probe = probe or (gpu.CudaMemoryProbe(self.device) if self._on_cuda else None)
        self.batch_cost: BatchCost | None = self._calibrate() if self._on_cuda else None
        log.info("%s (%s) ready on %s/%s in %.1f s; cost %s", self.name, self.model_class, self.device,
                 self.precision, time.perf_counter() - started, self.batch_cost)

    # -- loading

    @property
    def _on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _resolve_precision(self, requested: str) -> tuple[str, torch.dtype | None]:
        wanted = requested or "auto"
        if wanted == "auto":
            wanted = "fp16" if self.device.startswith("cuda") else "fp32"
        if wanted == "fp32":
            return "fp32", None
        if wanted not in ("fp16", "bf16"):
            raise EngineError(f"Precision {requested!r} is not available for FunASR models; use fp32, fp16 or bf16.")
        if not self.device.startswith("cuda"):
            raise EngineError(f"{wanted} needs a CUDA GPU; on {self.device} use fp32.")
        if wanted == "bf16" and not gpu.supports_bf16():
            raise EngineError("This GPU does not support bf16; use fp16.")
        return wanted, torch.float16 if wanted == "fp16" else torch.bfloat16

    def _build(self) -> Any:
        from funasr import AutoModel

        extra = {"init_param": str(self.checkpoint)} if self.checkpoint else {}
        try:
            return AutoModel(
                model=str(self.folder), device=self.device, disable_update=True, disable_pbar=True,
                disable_log=True, log_level="WARNING",
                ncpu=torch.get_num_threads(),  # funasr otherwise sets torch's global thread count to 4
                **extra,
            )
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"funasr could not build the model in {self.folder}: {exc}") from exc

    def _prepare_frontend(self) -> None:
        from funasr.utils.load_utils import extract_fbank

        frontend = self._kwargs.get("frontend")
        if frontend is None:
            return
        if hasattr(frontend, "dither"):
            frontend.dither = 0.0  # training-time noise; at inference it only makes output vary run to run
        try:
            extract_fbank([torch.zeros(MIN_INPUT_SAMPLES)], frontend=frontend)
        except ImportError as exc:
            raise EngineError(
                "funasr has no fbank backend: torchaudio is absent, so install kaldi-native-fbank "
                f"(pip install kaldi-native-fbank). ({exc})"
            ) from exc

    def _compile_encoder(self) -> None:
        if not self._on_cuda:
            log.info("compile is only used on CUDA; running %s eagerly on %s", self.model_class, self.device)
            return
        name = "audio_encoder" if hasattr(self._model, "audio_encoder") else "encoder"
        # Dynamic shapes: one graph serves every batch size and padded length (batch 1 gets its own).
        setattr(self._model, name, torch.compile(getattr(self._model, name), dynamic=True))
        log.info("compiled %s.%s (dynamic shapes); the first batches will be slow", self.model_class, name)

    def _calibrate(self) -> BatchCost:
        """Measure peak memory for 1 and 2 items at a short and at the longest length."""
        def signal(seconds: float) -> np.ndarray:
            rng = np.random.default_rng(0)
            return rng.normal(0, 0.05, int(seconds * SAMPLE_RATE)).astype(np.float32)

        options = self._options("auto")
        short, long = signal(CALIBRATION_SHORT_S), signal(self.max_input_seconds)
        self._infer([short], options)  # first call: cuBLAS workspaces, compiled graphs
        self._infer([short, short], options)

        def per_item(x: np.ndarray) -> tuple[float, float]:
            gpu.cleanup_after_batch()
            _, one = gpu.peak_allocated_during(lambda: self._infer([x], options))
            gpu.cleanup_after_batch()
            _, two = gpu.peak_allocated_during(lambda: self._infer([x, x], options))
            return max(float(two - one), 1.0), float(one)

        cost_short, one_short = per_item(short)
        cost_long, _ = per_item(long)
        per_second = max(0.0, (cost_long - cost_short) / (self.max_input_seconds - CALIBRATION_SHORT_S))
        fixed = max(0.0, cost_short - per_second * CALIBRATION_SHORT_S)
        gpu.cleanup_after_batch()
        return BatchCost(per_second, fixed, max(0.0, one_short - cost_short))

    # -- Engine protocol

    def batch_limit(self, padded_seconds: float) -> int:
        if self.batch_cost is None or self._probe is None:
            return self.settings.cpu_batch_cap
        free = max(0, self._probe.free_bytes() - int(self.batch_cost.shared_bytes))
        return gpu.batch_size_for(
            padded_seconds, self.batch_cost.bytes_per_second, self.batch_cost.fixed_bytes_per_item,
            free, self.settings.memory_margin,
        )

    def transcribe_batch(self, audios: Sequence[np.ndarray], language: str = "auto") -> list[EngineOutput]:
        if self._model is None:
            raise EngineError(f"{self.name} was unloaded; load the engine again.")
        arrays = [np.ascontiguousarray(a, dtype=np.float32).reshape(-1) for a in audios]
        options = self._options(language)
        return gpu.run_with_oom_backoff(lambda chunk: self._infer(chunk, options), arrays)

    def release(self) -> None:
        gpu.cleanup_after_batch()

    def unload(self) -> None:
        self._am = None
        self._model = None
        self._kwargs = {}
        gpu.cleanup_after_batch()

    # -- inference

    def _language(self, requested: str) -> str:
        """Our code for this call: the call's language, else the settings', else auto."""
        code = requested if requested and requested != "auto" else (self.settings.language or "auto")
        if code != "auto" and self.family.languages and code not in self.family.languages:
            self._warn_once(f"{self.model_class} has no language {code!r}; detecting it instead")
            return "auto"
        return code

    def _options(self, language: str) -> CallOptions:
        code = self._language(language)
        kwargs: dict[str, Any] = {}
        if self.family is SENSEVOICE:
            kwargs.update(language=code, use_itn=self.settings.use_model_itn)
        elif self.family is NANO:
            kwargs.update(language=self.family.languages.get(code), itn=self.settings.use_model_itn,
                          llm_dtype=self.precision)
        else:
            kwargs.update(output_timestamp=True)
        hotwords = [w.strip() for w in re.split(r"[,，\n]+", self.settings.hotwords) if w.strip()]
        if hotwords and self.model_class not in HOTWORD_ARG:
            self._warn_once(f"{self.model_class} takes no hotwords; ignoring them")
        elif hotwords:
            kwargs[HOTWORD_ARG[self.model_class]] = hotwords if self.family is NANO else " ".join(hotwords)
        return CallOptions(code, {**kwargs, **self._inference_options})

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)

    def _infer(self, arrays: list[np.ndarray], options: CallOptions) -> list[EngineOutput]:
        """One model.inference call over the inputs long enough to hold speech."""
        runnable = [i for i, a in enumerate(arrays) if a.size >= MIN_INPUT_SAMPLES]
        results: dict[str, dict] = {}
        if runnable:
            # Straight to model.inference: AutoModel.generate deep-copies its config on every
            # call, forces batch_size=1 on CPU and empties the CUDA cache after every batch.
            kwargs = {**self._kwargs, **options.model_kwargs}
            kwargs.pop("batch_size", None)
            autocast = (torch.autocast("cuda", dtype=self._autocast_dtype) if self._autocast_dtype
                        else contextlib.nullcontext())
            with torch.inference_mode(), autocast:
                res = self._model.inference(
                    data_in=[torch.from_numpy(arrays[i]) for i in runnable], key=[f"in{i}" for i in runnable], **kwargs
                )
            # (results, meta) normally; Paraformer returns [] when no input yields a token.
            batch = res[0] if isinstance(res, (tuple, list)) and len(res) == 2 and isinstance(res[1], dict) else res
            results = {r["key"]: r for r in batch if isinstance(r, dict) and "key" in r}
        return [self._output(results.get(f"in{i}"), a.size / SAMPLE_RATE, options.language) for i, a in enumerate(arrays)]

    def _output(self, result: dict | None, seconds: float, code: str) -> EngineOutput:
        requested = "" if code == "auto" else code
        raw = str((result or {}).get("text", ""))
        if self.family is PARAFORMER:
            return EngineOutput(paraformer_pieces(raw, (result or {}).get("timestamp") or [], seconds), requested)
        language, text = split_sensevoice_tags(raw) if self.family is SENSEVOICE else ("", raw.strip())
        pieces = (LocalText(0.0, seconds, text),) if text else ()
        return EngineOutput(pieces, language or requested, itn_applied=self.settings.use_model_itn)
