"""Checks of a hand-eye motion set: rotation diversity, arm/camera agreement, board scale.

Notation (``transforms.py`` frames, metres): ``M_i`` are the arm poses as OpenCV's hand-eye
solver takes them (``T_base_ee`` for eye-in-hand, its inverse for eye-to-hand) and ``C_i`` the
board poses ``T_cam_board`` from PnP. For every capture pair the arm motion
``A = inv(M_i) M_j`` and the camera motion ``B = C_i inv(C_j)`` satisfy ``A X = X B`` with the
unknown hand-eye transform X. Hand-eye calibration is underdetermined when all rotations of A
turn about one axis (Tsai & Lenz 1989, Section IV; OpenCV ``calibrateHandEye`` docs: "at least
two motions with non parallel rotation axes").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from langgrasp.calibration.transforms import invert_transform, rotation_angle_deg, rotation_axis
from langgrasp.errors import InputError

CONDITION_LIMIT = 1e-3
"""Smallest/largest singular value ratio below which the scale fit is not trusted."""


def pair_rotations(poses: Sequence[np.ndarray], camera: bool) -> dict[tuple[int, int], np.ndarray]:
    """Relative rotations of all capture pairs i < j: ``inv(M_i) M_j`` or ``C_i inv(C_j)``."""
    pairs = {}
    for i, j in itertools.combinations(range(len(poses)), 2):
        a, b = poses[i][:3, :3], poses[j][:3, :3]
        pairs[(i, j)] = a @ b.T if camera else a.T @ b
    return pairs


def motion_mismatch_deg(
    motion: Sequence[np.ndarray], camera_poses: Sequence[np.ndarray]
) -> np.ndarray:
    """Per capture: median |rotation angle of arm motion - of camera motion| to the others, deg.

    ``A = X B X^-1`` rotates by the same angle as B whatever X is, so a large difference means
    the arm pose does not belong to the image (mistyped, stale, or a shuffled order).

    Args:
        motion: ``M_i``, ``(4, 4)`` each.
        camera_poses: ``C_i = T_cam_board``, ``(4, 4)`` each, same order.

    Returns:
        ``(N,)`` degrees.
    """
    arm = pair_rotations(motion, camera=False)
    cam = pair_rotations(camera_poses, camera=True)
    count = len(motion)
    table = np.zeros((count, count))
    for (i, j), rotation in arm.items():
        diff = abs(rotation_angle_deg(rotation) - rotation_angle_deg(cam[(i, j)]))
        table[i, j] = table[j, i] = diff
    if count < 2:
        return np.zeros(count)
    return np.array([np.median(np.delete(table[k], k)) for k in range(count)])


def motion_diversity(motion: Sequence[np.ndarray], min_rotation_deg: float) -> tuple[float, float]:
    """``(largest rotation between captures, spread of the rotation axes)``, degrees.

    The spread is ``atan(sqrt(λ2 / λ1))`` of the sign-free scatter matrix of the rotation axes
    (λ1 >= λ2 its two largest eigenvalues): 0 when every rotation turns about one axis, 45 for
    two perpendicular axes used equally. Only motions of at least ``min_rotation_deg`` count.
    """
    rotations = list(pair_rotations(motion, camera=False).values())
    angles = [rotation_angle_deg(r) for r in rotations]
    axes = [
        rotation_axis(r) for r, a in zip(rotations, angles, strict=True) if a >= min_rotation_deg
    ]
    largest = max(angles, default=0.0)
    if len(axes) < 2:
        return largest, 0.0
    scatter = np.mean([np.outer(a, a) for a in axes], axis=0)
    eigen = np.sort(np.linalg.eigvalsh(scatter))[::-1]
    return largest, math.degrees(math.atan(math.sqrt(max(eigen[1], 0.0) / eigen[0])))


def require_diverse_motion(
    largest_deg: float, spread_deg: float, min_rotation_deg: float, min_spread_deg: float
) -> None:
    """Raise ``InputError`` with advice for a degenerate motion set (see ``motion_diversity``)."""
    if largest_deg < min_rotation_deg:
        raise InputError(
            f"the arm hardly rotates between captures (largest rotation {largest_deg:.1f} "
            "degrees): hand-eye calibration needs rotations, not just moves. Tilt the tool "
            "15-30 degrees in different directions between captures"
        )
    if spread_deg < min_spread_deg:
        raise InputError(
            f"all rotations between captures turn about nearly the same axis (axis spread "
            f"{spread_deg:.1f} degrees, needs {min_spread_deg:g}): this motion set is degenerate "
            "(near-parallel rotation axes). Rotate about at least two different axes, e.g. tilt "
            "the tool forward/back AND left/right, not only turn it about one axis"
        )


def board_scale(
    transform: np.ndarray, motion: Sequence[np.ndarray], camera_poses: Sequence[np.ndarray]
) -> float | None:
    """Least-squares scale s of the camera translations in ``(R_A - I) t_X = s R_X t_B - t_A``.

    With the rotation of X fixed, the translation equations of all capture pairs are linear in
    ``t_X`` and s. s != 1 means the board is printed at another size than configured (a printer's
    "fit to page"), or the arm's length unit is off.

    Returns:
        s, or None when the equations cannot tell (too little rotation).
    """
    rows, rhs = [], []
    rotation_x = transform[:3, :3]
    for i, j in itertools.combinations(range(len(motion)), 2):
        a = invert_transform(motion[i]) @ motion[j]
        b = camera_poses[i] @ invert_transform(camera_poses[j])
        rows.append(np.column_stack([a[:3, :3] - np.eye(3), -(rotation_x @ b[:3, 3])]))
        rhs.append(-a[:3, 3])
    if not rows:
        return None
    matrix, vector = np.vstack(rows), np.concatenate(rhs)
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[-1] < CONDITION_LIMIT * singular[0]:
        return None
    return float(np.linalg.lstsq(matrix, vector, rcond=None)[0][3])
