"""Model checkpoints: a folder with ``model.safetensors`` and ``config.json``, never a pickle.

Layout of a checkpoint folder::

    <dir>/model.safetensors   every tensor of LGGD.state_dict(), frozen CLIP included, so a
                              checkpoint runs without the user's CLIP weights
    <dir>/config.json         {"format": "langgrasp-checkpoint", "format_version": 1,
                               "model": LGGDConfig.to_dict(), "freeze_clip": bool,
                               "meta": {...}}   (meta: step, epoch, metrics, ... JSON only)

Both files are written to temporary names and renamed, weights first, so a crash leaves either
the previous complete checkpoint or the new one. Training state (optimizer, scheduler, RNG) is
stored next to these files by the training loop; this module only knows the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from langgrasp.detector.config import LGGDConfig
from langgrasp.detector.model.encoders import build_clip
from langgrasp.detector.model.lggd import LGGD
from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_bytes

CHECKPOINT_FORMAT = "langgrasp-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``safetensors.torch.save_file`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(
    directory: str | os.PathLike, model: LGGD, meta: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` (weights + config) into ``directory``, creating it; returns the folder.

    Args:
        directory: Checkpoint folder.
        model: The model; its ``config`` is stored with the weights.
        meta: JSON-serialisable extras (step, epoch, metrics, source dataset, ...).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # state_dict() may share storage between entries; safetensors refuses shared tensors.
    state = {k: v.clone() for k, v in model.state_dict().items()}
    atomic_save_tensors(state, out / WEIGHTS_FILE)
    config = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": model.config.to_dict(),
        "freeze_clip": bool(model.clip_frozen),
        "meta": meta or {},
    }
    atomic_write_bytes(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return out


def _checkpoint_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS_FILE, CONFIG_FILE):
        p = p.parent
    if not p.is_dir():
        raise InputError(
            f"checkpoint {str(path)!r} not found: pass a checkpoint folder holding {WEIGHTS_FILE} "
            f"and {CONFIG_FILE} (as written by `langgrasp train`)"
        )
    missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (p / f).is_file()]
    if missing:
        raise InputError(f"checkpoint folder {str(p)!r} lacks {', '.join(missing)}")
    return p


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed and checked ``config.json`` of a checkpoint folder (or of its files)."""
    p = _checkpoint_dir(path) / CONFIG_FILE
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{p} is not valid JSON ({err}); the checkpoint is corrupt") from err
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{p} is not a langgrasp checkpoint (no format {CHECKPOINT_FORMAT!r})")
    if config.get("format_version") != CHECKPOINT_VERSION:
        raise InputError(
            f"{p} has checkpoint format version {config.get('format_version')!r}; this langgrasp "
            f"reads version {CHECKPOINT_VERSION}"
        )
    return config


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[LGGD, dict[str, Any]]:
    """Load a checkpoint folder into a new model in eval mode; returns ``(model, meta)``.

    No CLIP weights are looked up: the checkpoint holds every tensor.

    Raises:
        InputError: Missing files, a corrupt or foreign file, or weights that do not fit the
            stored config.
    """
    directory = _checkpoint_dir(path)
    config = read_checkpoint_config(directory)
    model_config = LGGDConfig.from_dict(config["model"])
    clip = build_clip(model_config.clip, model_config.input_size, model_config.context_length)
    model = LGGD(model_config, clip, freeze_clip=bool(config.get("freeze_clip", True)))
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        weights = directory / WEIGHTS_FILE
        raise InputError(f"cannot read {weights}: {err}; the file is corrupt") from err
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{directory / WEIGHTS_FILE} does not match the {model_config.name} config: "
            f"{len(result.missing_keys)} missing tensors (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )
    model.to(map_location).eval()
    return model, dict(config.get("meta", {}))
