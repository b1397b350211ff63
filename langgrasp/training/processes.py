"""Process-level setup: ``torchrun`` (DDP) processes, devices, seeds, precision, stop signals.

Under ``torchrun`` the environment has ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; each process
then drives one GPU (``cuda:LOCAL_RANK``, NCCL) or, on CPU-only machines, one CPU process (gloo).
Without them everything runs in this process and the collective helpers do nothing.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from langgrasp.errors import InputError

log = logging.getLogger(__name__)

COLLECTIVE_TIMEOUT = timedelta(hours=2)
"""How long processes wait for each other, e.g. while the main process validates (PyTorch's
default of 10-30 minutes is too short for a full validation of a large split)."""


@dataclass(frozen=True)
class Processes:
    """This process's place in the job.

    Attributes:
        rank: Global rank (0 on the main process).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
        device: The torch device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, checkpoints and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process (collectives are needed)."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    def any(self, *flags: bool) -> list[bool]:
        """Element-wise OR of boolean flags over all processes (one collective)."""
        if not self.distributed:
            return list(flags)
        values = torch.tensor([int(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (``[value]`` for one process)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``TrainConfig.device`` (``auto``: CUDA when available, else CPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"unknown device {name!r} ({err}); use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but torch sees no CUDA GPU; use cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise InputError(f"device {name!r} is not supported for training; use cpu or cuda")
    return device


def setup_processes(device_name: str) -> Processes:
    """Join the ``torchrun`` process group if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return Processes(rank, world_size, local_rank, device)


def teardown_processes(processes: Processes) -> None:
    """Leave the process group (if this module's setup joined one)."""
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``TrainConfig.precision`` on ``device``; None means plain fp32."""
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def seed_everything(seed: int, rank: int, deterministic: bool) -> None:
    """Seed python, numpy (per process) and torch (the same everywhere: equal initial weights)."""
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed)  # the same initial weights in every process
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


@contextmanager
def stop_signals():
    """Turn the first SIGTERM/SIGINT into a clean stop request; a second SIGINT interrupts."""
    stop: dict[str, str] = {}
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop.get("signal") and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = name
        log.warning("%s received: stopping after this step with a checkpoint", name)

    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
