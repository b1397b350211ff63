"""Run folders: the stored config, the checks before a run starts or resumes.

``<run>/config.json`` holds ``{"train": TrainConfig.to_dict(), "model": LGGDConfig.to_dict(),
"history": [one entry per start or resume]}``. A new run refuses a folder that already holds
checkpoints; ``--resume`` refuses settings that differ from the stored ones, except those in
``RESUMABLE_FIELDS`` (where the data lives, how often to log, how long to run, ...).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from langgrasp.detector.config import LGGDConfig, get_config
from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_json
from langgrasp.training import state as ckpt
from langgrasp.training.config import TrainConfig
from langgrasp.training.processes import Processes

RUN_CONFIG = "config.json"

RESUMABLE_FIELDS = frozenset(
    {
        "out", "data_root", "device", "num_workers", "epochs", "log_every", "checkpoint_every",
        "keep_checkpoints", "val_every", "val_max_samples", "val_batch_size", "max_bad_steps",
        "stop_after_steps", "time_limit_minutes",
    }
)  # fmt: skip
"""Fields that may change on ``--resume``; changing any other would not continue the same run."""


def resolve_model_config(config: TrainConfig) -> LGGDConfig:
    """The model config: the registered one with ``model_options`` replaced."""
    model = get_config(config.model)
    try:
        return dataclasses.replace(model, **config.model_options)
    except TypeError as err:
        known = ", ".join(f.name for f in dataclasses.fields(model))
        raise InputError(f"model_options: {err}; LGGDConfig fields: {known}") from err


def load_run_config(run_dir: Path) -> TrainConfig:
    """The training config stored in a run folder's ``config.json``."""
    path = run_dir / RUN_CONFIG
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))["train"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(
            f"cannot resume: {path} is missing or unreadable ({err}); is {run_dir} a run folder "
            "written by `langgrasp train`?"
        ) from err
    return TrainConfig.from_dict(stored)


def open_run_dir(
    run_dir: Path, config: TrainConfig, resume: bool, procs: Processes
) -> ckpt.LoadedState | None:
    """Check the run folder, write ``config.json``; returns the checkpoint to resume or None."""
    loaded = None
    if resume:
        folder = ckpt.find_latest(run_dir)
        if folder is None:
            raise InputError(
                f"nothing to resume in {run_dir}: no complete checkpoint under "
                f"{run_dir / ckpt.CHECKPOINTS_DIR}; start it without --resume"
            )
        stored = load_run_config(run_dir)
        changed = sorted(
            k for k, v in config.to_dict().items()
            if k not in RESUMABLE_FIELDS and stored.to_dict().get(k) != v
        )  # fmt: skip
        if changed:
            raise InputError(
                f"--resume continues the run in {run_dir} with its stored settings, but these "
                f"differ: {', '.join(changed)}; drop them, or start a new run with another --out"
            )
        loaded = ckpt.load_state(folder)
        if loaded.document["world_size"] != procs.world_size:
            raise InputError(
                f"{folder} was written by {loaded.document['world_size']} training processes, "
                f"this job has {procs.world_size}: data order and random states are per process, "
                "so resume with the same number of processes"
            )
    elif ckpt.complete_checkpoints(run_dir):
        raise InputError(
            f"{run_dir} already holds a training run; continue it with --resume, or choose "
            "another --out"
        )
    if procs.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.recover_best(run_dir)
        write_run_config(run_dir, config, procs, loaded)
    procs.barrier()
    return loaded


def write_run_config(run_dir: Path, config: TrainConfig, procs: Processes, loaded) -> None:
    """Write ``config.json``, appending this start or resume to the stored history."""
    from langgrasp import __version__

    path = run_dir / RUN_CONFIG
    history: list[dict[str, Any]] = []
    if loaded is not None and path.is_file():
        history = json.loads(path.read_text(encoding="utf-8")).get("history", [])
    history.append(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "resumed_from": None if loaded is None else loaded.folder.name,
            "processes": procs.world_size,
            "device": str(procs.device),
            "langgrasp": __version__,
            "torch": torch.__version__,
        }
    )
    document = {
        "train": config.to_dict(),
        "model": resolve_model_config(config).to_dict(),
        "history": history,
    }
    atomic_write_json(path, document)
