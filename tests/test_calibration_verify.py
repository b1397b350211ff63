"""Verification: a good calibration predicts the board corner, a wrong one is caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from langgrasp.calibration.board import get_board
from langgrasp.calibration.handeye import calibrate_hand_eye
from langgrasp.calibration.io import Calibration, HandEyeCalibration
from langgrasp.calibration.synthetic import SyntheticRig, default_truth
from langgrasp.calibration.transforms import make_transform
from langgrasp.calibration.verify import draw_verification, verify_view
from langgrasp.errors import InputError

BOARD = get_board("charuco-a4")


def calibrated(setup: str, seed: int):
    """A calibration from 12 synthetic captures, and the rig for fresh views."""
    rig = SyntheticRig(default_truth(setup), board=BOARD, seed=seed)
    captures, images = rig.take(12)
    report = calibrate_hand_eye(captures, images, rig.truth.camera, BOARD, setup)
    hand_eye = HandEyeCalibration(
        setup, report.transform, report.best.method, BOARD, report.best.board_pose
    )
    return Calibration(rig.truth.camera, rig.serial, "camera-factory", hand_eye=hand_eye), rig


@pytest.fixture(scope="module", params=["eye-in-hand", "eye-to-hand"])
def setup_and_rig(request):
    return calibrated(request.param, seed=41)


def test_fresh_view_is_predicted_to_a_fraction_of_a_pixel_and_mm(setup_and_rig):
    calibration, rig = setup_and_rig
    image = rig.grab()  # a pose that was not part of the calibration
    result, _ = verify_view(image, calibration, rig.read_pose())
    assert result.pixel_error < 1.0 and result.error_mm < 1.0
    assert result.corners_found == BOARD.corner_count and result.corner_id == 0
    data = result.to_dict()
    assert data["error_mm"] == result.error_mm and len(data["reference_base_m"]) == 3


def test_a_wrong_calibration_shows_its_error_in_mm_and_pixels(setup_and_rig):
    calibration, rig = setup_and_rig
    shifted = calibration.hand_eye.transform @ make_transform([0, 0, 0], [0.005, 0, 0])
    wrong = replace(calibration, hand_eye=replace(calibration.hand_eye, transform=shifted))
    image = rig.grab()
    result, _ = verify_view(image, wrong, rig.read_pose())
    assert result.error_mm == pytest.approx(5.0, abs=1.0)
    assert result.pixel_error > 3.0


def test_touched_point_is_the_reference(setup_and_rig):
    calibration, rig = setup_and_rig
    image = rig.grab()
    pose = rig.read_pose()
    truth = rig.truth
    # The board lies in the cell (eye-in-hand) or rides on the flange (eye-to-hand).
    on_flange = truth.setup == "eye-to-hand"
    board_in_base = pose @ truth.board_pose if on_flange else truth.board_pose
    corner = BOARD.corner_position(5)
    touched = board_in_base[:3, :3] @ corner + board_in_base[:3, 3]
    result, _ = verify_view(image, calibration, pose, touched_base=touched, corner_id=5)
    assert result.error_mm < 1.0 and result.pixel_error < 1.0
    off = touched + np.array([0.0, 0.0, 0.004])  # a touch 4 mm off shows as 4 mm
    result, _ = verify_view(image, calibration, pose, touched_base=off, corner_id=5)
    assert result.error_mm == pytest.approx(4.0, abs=1.0)
    with pytest.raises(InputError, match="millimetres"):
        verify_view(image, calibration, pose, touched_base=touched * 1000, corner_id=5)


def test_overlay_marks_seen_and_predicted(setup_and_rig):
    calibration, rig = setup_and_rig
    image = rig.grab()
    result, detection = verify_view(image, calibration, rig.read_pose())
    overlay = draw_verification(image, result, detection)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    red = (overlay[..., 0] > 200) & (overlay[..., 1] < 50)
    green = (overlay[..., 1] > 150) & (overlay[..., 0] < 50)
    assert red.sum() > 10 and green.sum() > 50
    x, y = np.round(result.predicted_px).astype(int)
    assert red[y - 8 : y + 9, x - 8 : x + 9].any()


def test_missing_inputs_are_explained(setup_and_rig):
    calibration, rig = setup_and_rig
    image = rig.grab()
    if calibration.hand_eye.setup == "eye-in-hand":
        with pytest.raises(InputError, match="needs the arm pose"):
            verify_view(image, calibration)
    else:
        with pytest.raises(InputError, match="T_base_ee is needed"):
            verify_view(image, calibration)
    with pytest.raises(InputError, match="board corners visible"):
        verify_view(np.full_like(image, 90), calibration, rig.read_pose())
    with pytest.raises(InputError, match="no hand-eye"):
        verify_view(image, Calibration(calibration.camera), rig.read_pose())


def test_arm_pose_in_millimetres_is_refused(setup_and_rig):
    calibration, rig = setup_and_rig
    image = rig.grab()
    pose_mm = rig.read_pose()
    pose_mm[:3, 3] *= 1000
    with pytest.raises(InputError, match="millimetres"):
        verify_view(image, calibration, pose_mm)
