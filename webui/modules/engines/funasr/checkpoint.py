"""Checkpoint checks: funasr only prints "miss key in ckpt" and carries on with random
weights, so after loading, the checkpoint is compared with the model and a mismatch is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..base import EngineError


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


def verify_checkpoint(model: torch.nn.Module, path: Path, excludes: Sequence[str]) -> None:
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
