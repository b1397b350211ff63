"""Rigid transforms: the one naming rule and the checks every pose goes through.

Naming: ``T_a_b`` is a 4x4 homogeneous matrix (float64, row-major) that maps points written in
frame ``b`` to frame ``a``: ``p_a = T_a_b @ p_b``. So ``T_base_ee`` is the end effector's pose in
the robot base frame (what a robot controller reports as the TCP pose), ``T_cam_board`` the board's
pose in the camera frame (what ``solvePnP`` returns) and ``T_ee_cam`` the camera's pose on the
flange. Chains read right to left: ``T_base_cam = T_base_ee @ T_ee_cam``.

Units: translations in **metres**, angles reported in **degrees** (rotations themselves are 3x3
matrices, or rotation vectors in radians where stated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from langgrasp.errors import InputError

ROTATION_TOLERANCE = 1e-3
"""Largest allowed |R^T R - I| entry and |det R - 1| for a matrix to count as a rotation.

Robot controllers print poses with 4-6 decimals; 1e-3 accepts that rounding and rejects scaled or
sheared matrices."""

MAX_PLAUSIBLE_TRANSLATION_M = 10.0
"""A translation longer than this is taken as a unit mistake (millimetres instead of metres).

The largest industrial arms reach under 5 m (e.g. FANUC M-2000iA/2300: 3.7 m, KUKA KR 1000 titan:
3.6 m, from the makers' data sheets) and cameras sit within a few metres of them, while a pose in
millimetres is hundreds to thousands of units long."""


def make_transform(rotation: np.ndarray, translation: Sequence[float] | np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation (or a 3-vector rotation vector in radians).

    Args:
        rotation: ``(3, 3)`` rotation matrix, or a rotation vector of shape ``(3,)``/``(3, 1)``
            (axis times angle in radians, OpenCV's ``rvec``).
        translation: 3 numbers in metres.

    Returns:
        ``(4, 4)`` float64 homogeneous transform.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.size == 3:
        rotation = cv2.Rodrigues(rotation.reshape(3, 1))[0]
    transform = np.eye(4)
    transform[:3, :3] = rotation.reshape(3, 3)
    transform[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return transform


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of a rigid ``(4, 4)`` transform (``T_b_a`` from ``T_a_b``), exact for rotations."""
    rotation, translation = transform[:3, :3], transform[:3, 3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -rotation.T @ translation
    return inverse


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Rotation angle of a ``(3, 3)`` rotation matrix in degrees, in [0, 180]."""
    cos_angle = (np.trace(rotation) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos_angle, -1.0, 1.0))))


def rotation_axis(rotation: np.ndarray) -> np.ndarray:
    """Unit rotation axis ``(3,)`` of a rotation matrix (zeros for the identity)."""
    rvec = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64))[0].reshape(3)
    norm = np.linalg.norm(rvec)
    return rvec / norm if norm > 0 else np.zeros(3)


def mean_rotation(rotations: Sequence[np.ndarray]) -> np.ndarray:
    """Chordal L2 mean of rotation matrices: the rotation closest to their average (via SVD)."""
    u, _, vt = np.linalg.svd(np.sum(np.asarray(rotations), axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def as_pose_matrix(value: object, where: str) -> np.ndarray:
    """Check that ``value`` is a rigid 4x4 transform in metres and return it as float64.

    Args:
        value: Nested lists or an array, 4x4, row-major.
        where: What the value is, for the error message (e.g. ``"poses.json entry 3 T_base_ee"``).

    Returns:
        ``(4, 4)`` float64 array.

    Raises:
        InputError: wrong shape, non-finite numbers, a transposed (column-major) matrix, a
            rotation block that is not a rotation, or a translation so long that it must be in
            millimetres; the message says how to fix it.
    """
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: expected a 4x4 matrix of numbers ({err})") from err
    if matrix.shape != (4, 4):
        raise InputError(
            f"{where}: expected a 4x4 matrix (4 rows of 4 numbers, row-major), got shape "
            f"{matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)):
        raise InputError(f"{where}: contains NaN or infinite numbers")
    if not np.allclose(matrix[3], [0, 0, 0, 1], atol=ROTATION_TOLERANCE):
        if np.allclose(matrix[:, 3], [0, 0, 0, 1], atol=ROTATION_TOLERANCE):
            raise InputError(
                f"{where}: the last row is not [0, 0, 0, 1] but the last column is, so the matrix "
                "is transposed (column-major); write it row-major: the translation goes in the "
                "last column"
            )
        raise InputError(f"{where}: the last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    orthogonality = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if orthogonality > ROTATION_TOLERANCE or abs(np.linalg.det(rotation) - 1) > ROTATION_TOLERANCE:
        raise InputError(
            f"{where}: the upper-left 3x3 block is not a rotation matrix (R^T R deviates from I "
            f"by {orthogonality:.3g}); copy all decimals of the pose, and give a rotation matrix, "
            "not Euler angles or a scaled matrix"
        )
    check_translation_units(matrix[:3, 3], where)
    matrix[3] = (0.0, 0.0, 0.0, 1.0)
    return matrix


def check_translation_units(translation: np.ndarray, where: str) -> None:
    """Raise ``InputError`` when a translation (metres expected) is implausibly long (mm?)."""
    length = float(np.linalg.norm(translation))
    if length > MAX_PLAUSIBLE_TRANSLATION_M:
        raise InputError(
            f"{where}: translation is {length:.1f} long, which is implausible in metres; it looks "
            "like millimetres: divide the x, y, z values by 1000 (all poses are in metres)"
        )
