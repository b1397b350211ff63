"""The capture folder: board images, the arm pose of each, and the camera they came from.

Layout (written by ``capture.run_capture``, read by hand-eye calibration)::

    captures/
      poses.json    [{"image": "000.png", "T_base_ee": [[4 numbers] x 4]}, ...]
      000.png ...   the frames, RGB
      camera.json   optional: {"serial": "...", "intrinsics": {...}} from the camera itself

``T_base_ee`` is the end effector (tool flange or TCP, the same one for every capture) pose in
the robot base frame: a 4x4 row-major homogeneous matrix with the translation in **metres**.
Poses are validated on reading (shape, rotation, units); see ``transforms.as_pose_matrix``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.storage import atomic_write_json, read_image, read_json
from langgrasp.calibration.transforms import as_pose_matrix, make_transform
from langgrasp.errors import InputError

POSES_FILE = "poses.json"
CAMERA_FILE = "camera.json"


@dataclass(frozen=True)
class Capture:
    """One capture: an image file name and the arm pose when it was taken.

    Attributes:
        image: File name relative to the capture folder.
        T_base_ee: ``(4, 4)`` end-effector pose in the base frame, metres.
    """

    image: str
    T_base_ee: np.ndarray

    def to_dict(self) -> dict:
        """The ``poses.json`` entry."""
        return {"image": self.image, "T_base_ee": np.round(self.T_base_ee, 9).tolist()}


def read_poses(folder: Path) -> list[Capture]:
    """Read and validate ``poses.json`` of a capture folder.

    Raises:
        InputError: missing file, wrong structure, a missing image, or a bad pose (transposed,
            not a rotation, millimetres); the message names the entry.
    """
    folder = Path(folder)
    data = read_json(folder / POSES_FILE, POSES_FILE)
    if not isinstance(data, list):
        raise InputError(
            f"{POSES_FILE} must be a list of {{'image': ..., 'T_base_ee': 4x4}} entries"
        )
    captures = []
    for index, entry in enumerate(data):
        where = f"{POSES_FILE} entry {index}"
        if not isinstance(entry, dict) or "image" not in entry or "T_base_ee" not in entry:
            raise InputError(f"{where}: needs the keys 'image' and 'T_base_ee'")
        name = str(entry["image"])
        if not (folder / name).is_file():
            raise InputError(f"{where}: image {name} is not in {folder}")
        captures.append(Capture(name, as_pose_matrix(entry["T_base_ee"], f"{where} ({name})")))
    return captures


def write_poses(folder: Path, captures: Sequence[Capture]) -> None:
    """Write ``poses.json`` atomically (the folder must exist)."""
    atomic_write_json(Path(folder) / POSES_FILE, [c.to_dict() for c in captures])


def load_capture_images(folder: Path, captures: Sequence[Capture]) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB image)`` for each capture, in order."""
    return [(c.image, read_image(Path(folder) / c.image)) for c in captures]


def read_camera_info(folder: Path) -> tuple[CameraIntrinsics | None, str | None]:
    """Intrinsics and serial recorded by the frame source, if the folder has ``camera.json``."""
    path = Path(folder) / CAMERA_FILE
    if not path.is_file():
        return None, None
    data = read_json(path, CAMERA_FILE)
    if not isinstance(data, dict):
        raise InputError(f"{CAMERA_FILE} must be a JSON object")
    intrinsics = data.get("intrinsics")
    serial = data.get("serial")
    return (
        None if intrinsics is None else CameraIntrinsics.from_dict(intrinsics),
        None if serial is None else str(serial),
    )


def write_camera_info(
    folder: Path, intrinsics: CameraIntrinsics | None, serial: str | None
) -> None:
    """Write ``camera.json`` (factory intrinsics and serial of the capturing camera)."""
    atomic_write_json(
        Path(folder) / CAMERA_FILE,
        {"serial": serial, "intrinsics": None if intrinsics is None else intrinsics.to_dict()},
    )


MAX_ROTATION_VECTOR_RAD = 2 * math.pi
"""Longest plausible typed rotation vector: pendants show angles up to a full turn (2 pi)."""

TYPED_POSE_HELP = (
    "Type the pose T_base_ee in metres, either as 6 numbers 'x y z rx ry rz' (translation in "
    "metres, rotation vector in radians, as a UR pendant shows it) or as 16 numbers: the 4x4 "
    "matrix row by row."
)


def parse_typed_pose(text: str) -> np.ndarray:
    """A pose typed by a technician: ``x y z rx ry rz`` or 16 row-major numbers, metres.

    Commas, brackets and semicolons are ignored, so a pasted ``[[...], ...]`` works.

    Returns:
        ``(4, 4)`` float64 ``T_base_ee``.

    Raises:
        InputError: not 6 or 16 numbers, or an invalid pose (see ``as_pose_matrix``).
    """
    cleaned = text
    for character in ",;[](){}":
        cleaned = cleaned.replace(character, " ")
    try:
        numbers = [float(token) for token in cleaned.split()]
    except ValueError as err:
        raise InputError(
            f"could not read numbers from {text.strip()!r}. {TYPED_POSE_HELP}"
        ) from err
    if len(numbers) == 16:
        return as_pose_matrix(np.array(numbers).reshape(4, 4), "typed pose")
    if len(numbers) == 6:
        if not all(math.isfinite(n) for n in numbers):
            raise InputError("typed pose contains NaN or infinite numbers")
        angle = math.hypot(*numbers[3:])
        if angle > MAX_ROTATION_VECTOR_RAD:
            raise InputError(
                f"the rotation vector is {angle:.1f} long, more than a full turn in radians; it "
                "looks like degrees: convert rx ry rz to radians (multiply by pi/180)"
            )
        pose = make_transform(np.array(numbers[3:]), numbers[:3])
        return as_pose_matrix(pose, "typed pose")
    raise InputError(f"got {len(numbers)} numbers. {TYPED_POSE_HELP}")
