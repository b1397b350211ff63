"""Crash-safe file writes shared by checkpoints, datasets and calibration (torch-free).

A reader (or a resumed run) sees either the previous complete file or the new one, never half a
file: data goes to a temporary file in the same folder, is flushed to disk, and is renamed over
the target (``os.replace`` is atomic on POSIX and on Windows within one volume).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (UTF-8, trailing newline) atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=indent) + "\n").encode("utf-8"))
