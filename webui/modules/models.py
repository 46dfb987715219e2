"""The models a web visitor may choose: the bundled one, the operator's default, each model
folder under the models directory and the hub ids the operator listed. Anything else (a path,
an unlisted id) is refused; free paths come only from the CLI and the settings file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .engines.bundled import BUNDLED_NAME, is_whisper_folder


@dataclass(frozen=True)
class ModelChoice:
    name: str    # what the page lists and a client sends
    source: str  # what the engine loads: "" (the bundled model), a folder, or a hub id


def offered_models(default: str, models_dir: str | Path, hub_models: Sequence[str]) -> list[ModelChoice]:
    """The operator's default first, then the bundled model, the folders, the hub ids."""
    choices = [ModelChoice(BUNDLED_NAME, "")]
    if default and default != BUNDLED_NAME:
        choices.insert(0, ModelChoice(_name_of(default), default))
    folder = Path(models_dir).expanduser()
    if folder.is_dir():
        for sub in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
            if sub.is_dir() and not sub.name.startswith(".") and _is_model_folder(sub):
                choices.append(ModelChoice(sub.name, str(sub.resolve())))
    choices += [ModelChoice(hub_id, hub_id) for hub_id in hub_models]
    unique: dict[str, ModelChoice] = {}
    for choice in choices:
        unique.setdefault(choice.name, choice)  # the first of a name wins: the default, then bundled
    return list(unique.values())


def pick(name: str, choices: Sequence[ModelChoice]) -> str:
    """The source of the model called `name` (empty: the first, the default); ValueError names
    what is offered instead."""
    wanted = (name or "").strip()
    if not wanted:
        return choices[0].source
    for choice in choices:
        if choice.name == wanted:
            return choice.source
    offered = ", ".join(c.name for c in choices)
    raise ValueError(f"Model {wanted[:80]!r} is not offered on this server; choose one of: {offered}.")


def _is_model_folder(path: Path) -> bool:
    return is_whisper_folder(path) or (path / "config.yaml").is_file() or (path / "configuration.json").is_file()


def _name_of(model: str) -> str:
    path = Path(model)
    return path.name if path.is_absolute() or path.exists() else model
