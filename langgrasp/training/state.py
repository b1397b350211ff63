"""Training checkpoints: everything needed to continue a run exactly, without pickle.

Run folder layout (``TrainConfig.out``)::

    checkpoints/step-00001200/       one training checkpoint (complete, or absent)
        model.safetensors            the model, as langgrasp.detector.checkpoint.save_checkpoint
        config.json                  writes it (loadable on its own with load_checkpoint)
        train_state.safetensors      optimizer tensors and the epoch's data order (int64)
        train_state.json             progress (step, epoch, batch in epoch, best metric, ...),
                                     optimizer structure, loss scaler, schedule, data order info
        rng-rank0.safetensors        random generator states of process 0 (torch, CUDA, numpy,
        rng-rank0.json               augmentation; python's in the JSON), one pair per process
    checkpoints/latest.json          {"checkpoint": "step-00001200", "step": 1200}: updated last
    best/                            the model with the best validation J@1 (save_checkpoint)

A checkpoint is written into ``checkpoints/.step-XXXXXXXX.tmp`` and renamed when complete, then
``latest.json`` is replaced atomically, then older checkpoints beyond ``keep_checkpoints`` are
deleted, so a crash at any moment leaves the previous checkpoint usable. A checkpoint of a step
that already has one (a stop right after an epoch end) moves the old copy to
``.step-XXXXXXXX.old`` first and deletes it only after ``latest.json`` moved. If ``latest.json`` is
missing or names a folder that is gone, :func:`find_latest` falls back to the newest complete
folder. Tensors are stored with safetensors and structure as JSON, so nothing is unpickled on
resume.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from langgrasp.detector.checkpoint import (
    WEIGHTS_FILE,
    atomic_save_tensors,
    save_checkpoint,
)
from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_bytes

STATE_FORMAT = "langgrasp-train-state"
STATE_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
LATEST_FILE = "latest.json"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
CHECKPOINT_PREFIX = "step-"


@dataclass
class Progress:
    """Where a run stands; JSON-ready.

    Attributes:
        step: Optimizer steps done.
        epoch: The epoch being trained (or next to train when ``batch_in_epoch`` is 0).
        batch_in_epoch: Batches of ``epoch`` this process has consumed.
        samples: Training samples consumed by all processes (skipped ones excluded).
        train_seconds: Wall time spent in training steps, over all invocations.
        best_metric: Best validation J@1 so far (None: no validation yet).
        best_step: Step of the best checkpoint.
        bad_steps: Consecutive steps skipped for a non-finite loss or gradient.
        total_bad_steps: All steps skipped for a non-finite loss or gradient.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_steps: int = 0
    total_bad_steps: int = 0


# ----------------------------------------------------------------------------- random states


def capture_rng(generators: dict[str, torch.Generator]) -> tuple[dict[str, torch.Tensor], dict]:
    """Random states of python, numpy, torch (CPU and CUDA) and named ``generators``.

    Returns:
        ``(tensors, info)``: tensors for safetensors and JSON-ready values.
    """
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
    }
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    for name, generator in generators.items():
        tensors[f"generator.{name}"] = generator.get_state()
    info = {
        "python": [version, list(python_state), gauss],
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": cached},
    }
    return tensors, info


def restore_rng(
    tensors: dict[str, torch.Tensor], info: dict, generators: dict[str, torch.Generator]
) -> None:
    """Inverse of :func:`capture_rng`."""
    version, python_state, gauss = info["python"]
    random.setstate((version, tuple(python_state), gauss))
    numpy = info["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    for name, generator in generators.items():
        generator.set_state(tensors[f"generator.{name}"])


# ----------------------------------------------------------------------------- optimizer


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-ready structure."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    """Inverse of :func:`flatten_optimizer` (``betas`` become tuples again)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in structure["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in structure["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- writing


def checkpoint_name(step: int) -> str:
    """Folder name of the training checkpoint after ``step`` optimizer steps."""
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def pending_dir(run_dir: Path, step: int) -> Path:
    """Temporary folder a checkpoint is assembled in before the rename."""
    return run_dir / CHECKPOINTS_DIR / f".{checkpoint_name(step)}.tmp"


def prepare_pending(run_dir: Path, step: int) -> Path:
    """Create an empty temporary folder for the checkpoint of ``step`` (call on one process)."""
    tmp = pending_dir(run_dir, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def write_rng(folder: Path, rank: int, generators: dict[str, torch.Generator]) -> None:
    """Write this process's random states into a checkpoint folder."""
    tensors, info = capture_rng(generators)
    atomic_save_tensors(tensors, folder / f"rng-rank{rank}.safetensors")
    atomic_write_bytes(folder / f"rng-rank{rank}.json", _json_bytes(info))


def commit_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    order: torch.Tensor,
    keep: int,
) -> Path:
    """Write model and training state into the pending folder, rename it, move ``latest``.

    Call on one process after every process wrote its random states (:func:`write_rng`).

    Args:
        run_dir: Run folder.
        model: The model (not the DDP wrapper).
        optimizer: Its optimizer.
        state: JSON-ready training state; must hold ``progress`` (a :class:`Progress` dict).
        order: (N,) int64 data order of the epoch ``progress.epoch``.
        keep: Checkpoints to keep; older ones are deleted after ``latest`` moved.

    Returns:
        The checkpoint folder.
    """
    step = state["progress"]["step"]
    tmp = pending_dir(run_dir, step)
    save_checkpoint(tmp, model, {"step": step, "epoch": state["progress"]["epoch"]})
    tensors, structure = flatten_optimizer(optimizer.state_dict())
    atomic_save_tensors({**tensors, "data_order": order}, tmp / STATE_TENSORS)
    document = {"format": STATE_FORMAT, "format_version": STATE_VERSION, **state}
    document["optimizer"] = structure
    document["written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_bytes(tmp / STATE_JSON, _json_bytes(document))
    final = run_dir / CHECKPOINTS_DIR / checkpoint_name(step)
    if final.exists():  # the same step saved again (e.g. a stop right after an epoch end)
        # Move the old copy aside rather than delete it: until the new one is renamed in, it is
        # the only checkpoint of this step (find_latest falls back to it after a crash here).
        displaced = displaced_dir(final)
        if displaced.exists():
            shutil.rmtree(displaced)
        final.rename(displaced)
    tmp.rename(final)
    pointer = {"checkpoint": final.name, "step": step}
    atomic_write_bytes(run_dir / CHECKPOINTS_DIR / LATEST_FILE, _json_bytes(pointer))
    complete = complete_checkpoints(run_dir)
    # Checkpoints newer than this one are left from before a crash that hit between a rename and
    # the pointer update; the run has gone on from an older one, so they are stale.
    stale = [p for p in complete if p.name > final.name]
    older = [p for p in complete if p.name <= final.name]
    for old in [*stale, *older[:-keep]]:
        shutil.rmtree(old, ignore_errors=True)
    folder = run_dir / CHECKPOINTS_DIR
    for pattern in (f".{CHECKPOINT_PREFIX}*.tmp", f".{CHECKPOINT_PREFIX}*.old"):  # from crashes
        for leftover in folder.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)
    return final


def displaced_dir(final: Path) -> Path:
    """Where :func:`commit_checkpoint` moves an older copy of ``final`` (same step) aside."""
    return final.with_name(f".{final.name}.old")


def save_best(run_dir: Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Replace ``best/`` with ``model`` (written next to it first, then swapped in)."""
    best = run_dir / BEST_DIR
    tmp, old = best.with_name(".best.tmp"), best.with_name(".best.old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    save_checkpoint(tmp, model, meta)
    if best.exists():
        best.rename(old)
    tmp.rename(best)
    shutil.rmtree(old, ignore_errors=True)
    return best


def recover_best(run_dir: Path) -> None:
    """Put ``best/`` back if a crash happened between the two renames of :func:`save_best`."""
    best, old = run_dir / BEST_DIR, run_dir / ".best.old"
    if not best.exists() and old.exists():
        old.rename(best)


# ----------------------------------------------------------------------------- reading


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if _is_complete(p)]
    return sorted(found, key=lambda p: p.name)


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and (folder / STATE_JSON).is_file() and (folder / WEIGHTS_FILE).is_file()


def find_latest(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``latest.json``'s, else the newest complete one.

    When a crash hit while a checkpoint replaced an older copy of the same step (between the two
    renames of :func:`commit_checkpoint`), that older copy is used from where it was moved.
    """
    pointer = run_dir / CHECKPOINTS_DIR / LATEST_FILE
    complete = complete_checkpoints(run_dir)
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
        candidate = run_dir / CHECKPOINTS_DIR / name
        if candidate in complete:
            return candidate
        if candidate.parent == run_dir / CHECKPOINTS_DIR and _is_complete(displaced_dir(candidate)):
            return displaced_dir(candidate)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return complete[-1] if complete else None


@dataclass
class LoadedState:
    """A training checkpoint read back.

    Attributes:
        folder: The checkpoint folder.
        document: ``train_state.json`` (progress, optimizer structure, scaler, data order, ...).
        model: Model tensors (``state_dict`` keys).
        optimizer: ``optimizer.state_dict()`` ready for ``load_state_dict``.
        order: (N,) int64 data order of the epoch to continue.
        progress: The run's progress.
    """

    folder: Path
    document: dict[str, Any]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    order: torch.Tensor
    progress: Progress


def load_state(folder: Path) -> LoadedState:
    """Read a training checkpoint folder (see the module docstring).

    Raises:
        InputError: Missing or corrupt files, or a state written by another format version.
    """
    document = _read_json(folder / STATE_JSON)
    if document.get("format") != STATE_FORMAT or document.get("format_version") != STATE_VERSION:
        raise InputError(
            f"{folder / STATE_JSON} is not a version-{STATE_VERSION} {STATE_FORMAT} file"
        )
    tensors = _read_tensors(folder / STATE_TENSORS)
    return LoadedState(
        folder=folder,
        document=document,
        model=_read_tensors(folder / WEIGHTS_FILE),
        optimizer=unflatten_optimizer(tensors, document["optimizer"]),
        order=tensors["data_order"],
        progress=Progress(**document["progress"]),
    )


def load_rng(folder: Path, rank: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Random states of process ``rank`` from a checkpoint folder."""
    return (
        _read_tensors(folder / f"rng-rank{rank}.safetensors"),
        _read_json(folder / f"rng-rank{rank}.json"),
    )


def progress_dict(progress: Progress) -> dict[str, Any]:
    """``progress`` as a JSON-ready dict."""
    return asdict(progress)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"cannot read {path}: {err}; the checkpoint is incomplete or corrupt"
        ) from err


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"cannot read {path}: {err}; the checkpoint is incomplete or corrupt"
        ) from err


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, allow_nan=False) + "\n").encode()
