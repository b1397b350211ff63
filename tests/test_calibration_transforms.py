"""Rigid transforms, pose validation (units, transposition) and motion-set diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from langgrasp.calibration.motion import (
    board_scale,
    motion_diversity,
    motion_mismatch_deg,
    require_diverse_motion,
)
from langgrasp.calibration.transforms import (
    as_pose_matrix,
    invert_transform,
    make_transform,
    mean_rotation,
    rotation_angle_deg,
    rotation_axis,
)
from langgrasp.errors import InputError


def random_pose(rng: np.random.Generator, scale: float = 0.5) -> np.ndarray:
    return make_transform(rng.normal(size=3), rng.normal(size=3) * scale)


def test_inverse_and_angles():
    rng = np.random.default_rng(0)
    pose = random_pose(rng)
    np.testing.assert_allclose(pose @ invert_transform(pose), np.eye(4), atol=1e-12)
    rotation = make_transform([0, 0, np.radians(30)], [0, 0, 0])[:3, :3]
    assert rotation_angle_deg(rotation) == pytest.approx(30)
    np.testing.assert_allclose(rotation_axis(rotation), [0, 0, 1], atol=1e-12)
    tilted = [make_transform([0, 0, a], [0, 0, 0])[:3, :3] for a in (-0.1, 0.1)]
    np.testing.assert_allclose(mean_rotation(tilted), np.eye(3), atol=1e-12)


def test_pose_validation_accepts_rounded_controller_output():
    pose = np.round(random_pose(np.random.default_rng(1)), 5)
    np.testing.assert_allclose(as_pose_matrix(pose.tolist(), "pose"), pose)


def _scaled_translation(pose):
    pose[:3, 3] *= 1000  # millimetres instead of metres
    return pose


def _scaled_rotation(pose):
    pose[:3, :3] *= 2
    return pose


def _with_nan(pose):
    pose[0, 0] = np.nan
    return pose


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:3], "4x4"),
        (lambda p: p.T, "transposed"),
        (_scaled_translation, "millimetres: divide"),
        (_scaled_rotation, "not a rotation"),
        (_with_nan, "NaN"),
    ],
)
def test_bad_poses_get_an_actionable_message(mutate, message):
    pose = make_transform([0.1, 0.2, 0.3], [0.4, -0.2, 0.5])
    with pytest.raises(InputError, match=message):
        as_pose_matrix(mutate(pose), "poses.json entry 0")


def _consistent_motion(rng, rotations):
    """Arm poses M_i and camera poses C_i = inv(M_i X)^-1-consistent with a fixed board."""
    X = random_pose(rng, 0.1)
    board = random_pose(rng)
    motion = [make_transform(r, rng.normal(size=3) * 0.3) for r in rotations]
    cameras = [invert_transform(m @ X) @ board for m in motion]
    return X, motion, cameras


def test_motion_diversity_detects_single_axis_rotation():
    rng = np.random.default_rng(2)
    single_axis = [np.array([0, 0, a]) for a in np.radians([0, 20, 40, 60, 80])]
    _, motion, _ = _consistent_motion(rng, single_axis)
    largest, spread = motion_diversity(motion, 10.0)
    assert largest == pytest.approx(80, abs=1e-6) and spread < 1e-3
    with pytest.raises(InputError, match="degenerate"):
        require_diverse_motion(largest, spread, 10.0, 5.0)
    varied = [rng.normal(size=3) * 0.5 for _ in range(6)]
    _, motion, _ = _consistent_motion(rng, varied)
    largest, spread = motion_diversity(motion, 10.0)
    assert spread > 15
    require_diverse_motion(largest, spread, 10.0, 5.0)
    with pytest.raises(InputError, match="hardly rotates"):
        require_diverse_motion(3.0, 0.0, 10.0, 5.0)


def test_mismatched_capture_is_found_and_scale_is_one_when_consistent():
    rng = np.random.default_rng(3)
    X, motion, cameras = _consistent_motion(rng, [rng.normal(size=3) * 0.5 for _ in range(7)])
    assert motion_mismatch_deg(motion, cameras).max() < 1e-6
    assert board_scale(X, motion, cameras) == pytest.approx(1.0, abs=1e-9)
    wrong = list(motion)
    wrong[4] = random_pose(rng)  # a mistyped pose
    mismatch = motion_mismatch_deg(wrong, cameras)
    assert mismatch.argmax() == 4 and mismatch[4] > 5 and np.delete(mismatch, 4).max() < 1e-6


def test_board_scale_sees_a_scaled_print():
    rng = np.random.default_rng(4)
    X, motion, cameras = _consistent_motion(rng, [rng.normal(size=3) * 0.5 for _ in range(7)])
    # A board printed at 97 %: PnP with the nominal size reports distances 1/0.97 too long.
    scaled = [make_transform(c[:3, :3], c[:3, 3] / 0.97) for c in cameras]
    assert board_scale(X, motion, scaled) == pytest.approx(0.97, abs=1e-9)
