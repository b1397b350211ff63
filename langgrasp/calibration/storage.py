"""Files: atomic writes, JSON and images, with errors a technician can act on (torch-free).

The atomic writes are ``langgrasp.fileio``'s, re-exported here for the calibration modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from langgrasp.errors import InputError
from langgrasp.fileio import atomic_write_bytes, atomic_write_json

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "list_images",
    "read_image",
    "read_json",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; ``what`` names it in errors (e.g. ``"poses.json"``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{what} ({path}) is not valid JSON: {err}") from err


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path} (missing, or not an image OpenCV can decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image atomically; format by suffix."""
    path = Path(path)
    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise InputError(f"cannot encode an image as {path.suffix!r}; use .png")
    atomic_write_bytes(path, encoded.tobytes())
