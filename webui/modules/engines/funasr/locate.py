"""Where a Fun-ASR model lives: a local folder, a cached download, or (when the hub answers
within seconds) a fresh Hugging Face download; and what the folder's config names.

funasr is only ever given a local folder, because funasr itself retries a dead hub for ~22 s
and then reports a misleading "not registered".
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml

from ..base import EngineError

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


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


def check_folder(folder: Path) -> None:
    """Refuse a folder that would make funasr run code or read files outside it: funasr merges
    the folder's config into its arguments (so `trust_remote_code` / `remote_code` there would
    import a Python file), and joins configuration.json's file names to the folder (so an
    absolute name reads anywhere)."""
    for name in ("config.yaml", "configuration.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise EngineError(f"{path} cannot be read ({exc}).") from None
        if _asks_for_code(data):
            raise EngineError(f"{path} asks to run the model folder's own Python code (remote_code / "
                              "trust_remote_code); this app never runs code that comes with a model.")
    root = folder.resolve()
    for key, value in _file_path_metas(folder).items():
        for named in _names(value):
            target = (folder / named).resolve()
            if target != root and root not in target.parents:
                raise EngineError(f"{folder / 'configuration.json'} names {named!r} for {key!r}, which lies "
                                  "outside the model folder; refused.")


def _asks_for_code(data: Any) -> bool:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "trust_remote_code" and value not in (False, None, "", "false", "False", 0):
                return True
            if key == "remote_code" and value:
                return True
            if _asks_for_code(value):
                return True
    elif isinstance(data, list):
        return any(_asks_for_code(v) for v in data)
    return False


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _names(v)]
    return []


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


def model_class(folder: Path) -> str:
    named = _file_path_metas(folder).get("config")
    config = folder / (named if isinstance(named, str) else "config.yaml")
    if not config.is_file():
        raise EngineError(f"{folder} has no {config.name}, so the model architecture is unknown.")
    return str((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model", ""))
