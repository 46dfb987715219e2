"""FunASREngine: SenseVoiceSmall, Paraformer(-zh) and Fun-ASR-Nano through funasr.AutoModel,
called batch by batch straight through model.inference."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ... import gpu
from .. import calibrate
from ..base import SAMPLE_RATE, EngineError, EngineOutput, EngineSettings, LocalText
from . import sensevoice
from .checkpoint import verify_checkpoint
from .locate import check_folder, find_checkpoint, locate_model, model_class
from .outputs import (FAMILY_OF_CLASS, HOTWORD_ARG, NANO, PARAFORMER, SENSEVOICE, paraformer_pieces,
                      sensevoice_pieces, split_sensevoice_tags, zero_padded_frames)

log = logging.getLogger(__name__)

MIN_INPUT_SAMPLES = SAMPLE_RATE // 10  # kaldi fbank fails below a frame; 0.1 s holds no words
NANO_MAX_LENGTH = 512  # Nano's LLM decode bound (new tokens): funasr's own default, unless the config sets one


@dataclass(frozen=True)
class CallOptions:
    language: str  # our code for this call; 'auto' means the model detects it
    model_kwargs: Mapping[str, Any]  # extra keywords for model.inference


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
        self.folder = locate_model(settings.model, connect_timeout)
        check_folder(self.folder)
        self.model_class = model_class(self.folder)
        if self.model_class not in FAMILY_OF_CLASS:
            raise EngineError(
                f"{self.folder} holds a {self.model_class or 'unnamed'} model; this engine runs "
                f"{', '.join(FAMILY_OF_CLASS)}."
            )
        self.family = FAMILY_OF_CLASS[self.model_class]
        self.precision, self._autocast_dtype = self._resolve_precision(settings.precision)
        self.max_input_seconds = self.family.max_input_seconds
        self.checkpoint = find_checkpoint(self.folder)
        if self.checkpoint is None and not allow_random_weights:
            raise EngineError(f"{self.folder} has no model.pt; without it the model would have random weights.")
        self._warned: set[str] = set()

        started = time.perf_counter()
        gpu.engine_loading(self.device)  # the card's baseline (container accounting); an old cap lifted
        self._am: Any = self._build()
        self._model: torch.nn.Module | None = self._am.model
        self._kwargs: dict[str, Any] = dict(self._am.kwargs)
        if self.checkpoint is not None:
            verify_checkpoint(self._model, self.checkpoint, self._kwargs.get("excludes") or [])
        self._prepare_frontend()
        if self.family is PARAFORMER:
            self._model.encoder.register_forward_hook(zero_padded_frames)
        self._eager: tuple[str, torch.nn.Module] | None = None  # the encoder before torch.compile
        if settings.compile:
            self._compile_encoder()
        if self._on_cuda and settings.vram_limit_gb:
            gpu.cap_process_memory(self.device, int(settings.vram_limit_gb * 1e9))
        probe = probe or (gpu.CudaMemoryProbe(self.device) if self._on_cuda else None)
        calibration = self._calibration_options()
        cost = (calibrate.measure_or_fallback(lambda batch: self._guarded(batch, calibration),
                                              self.max_input_seconds, gpu.total_bytes(self.device),
                                              device=self.device)
                if self._on_cuda else None)
        self.budget = calibrate.MemoryBudget(cost, probe)
        log.info("%s (%s) ready on %s/%s in %.1f s; cost %s", self.name, self.model_class, self.device,
                 self.precision, time.perf_counter() - started, cost)

    # -- loading

    @property
    def _on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _resolve_precision(self, requested: str) -> tuple[str, torch.dtype | None]:
        wanted = requested or "auto"
        if wanted == "auto":  # an LLM decoder (Nano) keeps its range in bf16 where the card has it
            llm_bf16 = self.family is NANO and gpu.supports_bf16()
            wanted = "fp32" if not self.device.startswith("cuda") else "bf16" if llm_bf16 else "fp16"
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
                trust_remote_code=False,  # never run code a model folder ships
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
        self._eager = (name, getattr(self._model, name))
        # Dynamic shapes: one graph serves every batch size and padded length (batch 1 gets its own).
        setattr(self._model, name, torch.compile(self._eager[1], dynamic=True))
        log.info("compiled %s.%s (dynamic shapes); the first batches will be slow", self.model_class, name)

    def _guarded(self, arrays: list[np.ndarray], options: CallOptions) -> list[EngineOutput]:
        """_infer, and if the compiled encoder fails (a graph break torch cannot handle, a
        missing compiler), the eager encoder for the rest of the process: never a failed job."""
        try:
            return self._infer(arrays, options)
        except Exception as exc:
            if self._eager is None or gpu.is_oom(exc):
                raise
            name, eager = self._eager
            self._eager = None
            log.warning("torch.compile failed for %s (%s); running it eagerly from now on", self.model_class, exc)
            setattr(self._model, name, eager)
            gpu.reset_compiled()
            return self._infer(arrays, options)

    # -- Engine protocol

    def batch_limit(self, padded_seconds: float) -> int:
        return self.budget.batch_limit(padded_seconds, self.settings.memory_margin, self.settings.cpu_batch_cap)

    def transcribe_batch(self, audios: Sequence[np.ndarray], language: str = "auto") -> list[EngineOutput]:
        if self._model is None:
            raise EngineError(f"{self.name} was unloaded; load the engine again.")
        arrays = [np.ascontiguousarray(a, dtype=np.float32).reshape(-1) for a in audios]
        options = self._options(language)
        return self.budget.run(lambda chunk: self._guarded(chunk, options), arrays)

    def release(self) -> None:
        gpu.cleanup_after_batch()

    def trim(self) -> None:
        gpu.cleanup_after_batch()  # torch's cache: gpu.deep_cleanup empties it after this

    def unload(self) -> None:
        self._am = None
        self._model = None
        self._kwargs = {}
        if self._eager is not None:
            gpu.reset_compiled()  # compiled graphs hold references to the model's weights
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
            kwargs.update(language=code, use_itn=self.settings.use_model_itn, output_timestamp=True)
        elif self.family is NANO:
            kwargs.update(language=self.family.languages.get(code), itn=self.settings.use_model_itn,
                          llm_dtype=self.precision, max_length=self._nano_max_length())
        else:
            kwargs.update(output_timestamp=True)
        hotwords = [w.strip() for w in re.split(r"[,，\n]+", self.settings.hotwords) if w.strip()]
        if hotwords and self.model_class not in HOTWORD_ARG:
            self._warn_once(f"{self.model_class} takes no hotwords; ignoring them")
        elif hotwords:
            kwargs[HOTWORD_ARG[self.model_class]] = hotwords if self.family is NANO else " ".join(hotwords)
        return CallOptions(code, {**kwargs, **self._inference_options})

    def _nano_max_length(self) -> int:
        """Passed on every call, so the bound calibration measures is the one that runs."""
        return int(self._kwargs.get("max_length") or NANO_MAX_LENGTH)

    def _calibration_options(self) -> CallOptions:
        """The options calibration runs with. Nano's LLM decodes to its bound (max_length new
        tokens, EOS held off) because calibration feeds noise, on which it stops after a few
        tokens: the KV cache a long text fills would never be measured, and batches sized on
        that cost run out of memory on real speech."""
        options = self._options("auto")
        if self.family is not NANO:
            return options
        bound = options.model_kwargs["max_length"]
        llm_kwargs = {**options.model_kwargs.get("llm_kwargs", {}), "min_new_tokens": bound}
        return CallOptions(options.language, {**options.model_kwargs, "llm_kwargs": llm_kwargs})

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
            data = [torch.from_numpy(arrays[i]) for i in runnable]
            keys = [f"in{i}" for i in runnable]
            with torch.inference_mode(), autocast:
                batch = self._run_model(data, keys, kwargs)
            results = {r["key"]: r for r in batch if isinstance(r, dict) and "key" in r}
        return [self._output(results.get(f"in{i}"), a.size / SAMPLE_RATE, options.language) for i, a in enumerate(arrays)]

    def _run_model(self, data: list[torch.Tensor], keys: list[str], kwargs: dict[str, Any]) -> list:
        if self.family is SENSEVOICE and kwargs.get("output_timestamp"):
            # Our per-item alignment, not funasr's whole-batch recompute per item (see sensevoice.py).
            return sensevoice.transcribe(self._model, data, keys, kwargs, self._word_timing_failed)
        res = self._model.inference(data_in=data, key=keys, **kwargs)
        # (results, meta) normally; Paraformer returns [] when no input yields a token.
        return res[0] if isinstance(res, (tuple, list)) and len(res) == 2 and isinstance(res[1], dict) else res

    def _word_timing_failed(self, exc: BaseException) -> None:
        # funasr's alignment can index past its tokens (a repeated token): the text is still good.
        self._warn_once(f"SenseVoice word timing failed ({exc!r}); some lines keep no word times")

    def _output(self, result: dict | None, seconds: float, code: str) -> EngineOutput:
        requested = "" if code == "auto" else code
        raw = str((result or {}).get("text", ""))
        if self.family is PARAFORMER:
            return EngineOutput(paraformer_pieces(raw, (result or {}).get("timestamp") or [], seconds), requested)
        if self.family is SENSEVOICE:
            language, text = split_sensevoice_tags(raw)
            pieces = sensevoice_pieces(text, (result or {}).get("words") or [], (result or {}).get("timestamp") or [],
                                       seconds)
        else:
            language, text = "", raw.strip()
            pieces = (LocalText(0.0, seconds, text),) if text else ()
        return EngineOutput(pieces, language or requested, itn_applied=self.settings.use_model_itn)
