"""calibration.json: schema, round trip, and the loader's messages for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from langgrasp.calibration.board import get_board
from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.io import (
    FORMAT,
    VERSION,
    Calibration,
    HandEyeCalibration,
    calibration_from_dict,
    load_calibration,
    save_calibration,
)
from langgrasp.calibration.transforms import make_transform
from langgrasp.errors import InputError

CAMERA = CameraIntrinsics(
    640, 480, 612.0, 611.0, 318.0, 242.0, "brown_conrady", (-0.1, 0.05, 0, 0, 0)
)
T_EE_CAM = make_transform([0.01, -0.02, 1.57], [0.03, -0.05, 0.09])
T_BASE_BOARD = make_transform([np.pi, 0, 0.3], [0.5, 0.1, 0.0])


def eye_in_hand() -> Calibration:
    hand_eye = HandEyeCalibration(
        "eye-in-hand", T_EE_CAM, "park", get_board("charuco-a4"), T_BASE_BOARD, {"score_mm": 0.4}
    )
    return Calibration(
        CAMERA, "843112071234", "charuco-images", {"rms_reprojection_px": 0.2}, hand_eye
    )


def test_round_trip_keeps_everything(tmp_path):
    calibration = eye_in_hand()
    path = save_calibration(tmp_path / "cell" / "calibration.json", calibration)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["version"] == VERSION and data["length_unit"] == "m"
    assert data["camera"]["fx_px"] == 612.0 and data["camera"]["serial"] == "843112071234"
    assert "T_ee_cam" in data["hand_eye"] and "T_base_cam" not in data["hand_eye"]
    assert data["created"].endswith("Z")
    back = load_calibration(path)
    assert back.camera == CAMERA and back.serial == calibration.serial
    assert back.intrinsics_source == "charuco-images"
    np.testing.assert_allclose(back.hand_eye.transform, T_EE_CAM, atol=1e-12)
    np.testing.assert_allclose(back.hand_eye.board_pose, T_BASE_BOARD, atol=1e-12)
    assert back.hand_eye.board == get_board("charuco-a4") and back.hand_eye.method == "park"
    assert back.hand_eye.residuals == {"score_mm": 0.4}
    assert not list(path.parent.glob(".*tmp*"))


def test_base_from_camera_for_both_setups():
    T_base_ee = make_transform([0.2, 0.1, -0.3], [0.4, 0.2, 0.5])
    hand_eye = eye_in_hand().hand_eye
    np.testing.assert_allclose(hand_eye.T_base_cam(T_base_ee), T_base_ee @ T_EE_CAM)
    with pytest.raises(InputError, match="needs the arm pose"):
        hand_eye.T_base_cam()
    fixed = HandEyeCalibration("eye-to-hand", T_BASE_BOARD, "tsai")
    np.testing.assert_allclose(fixed.T_base_cam(), T_BASE_BOARD)
    np.testing.assert_allclose(fixed.T_base_cam(T_base_ee), T_BASE_BOARD)  # pose irrelevant
    assert "T_base_cam" in fixed.to_dict()


def test_intrinsics_only_calibration_asks_for_handeye(tmp_path):
    path = save_calibration(tmp_path / "c.json", Calibration(CAMERA))
    calibration = load_calibration(path)
    assert calibration.hand_eye is None
    with pytest.raises(InputError, match="langgrasp calibrate handeye"):
        calibration.require_hand_eye()


def mutated(change) -> dict:
    data = eye_in_hand().to_dict()
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a langgrasp calibration"),
        (lambda d: d.update(version=VERSION + 1), "upgrade langgrasp"),
        (lambda d: d.update(version="1"), "must be an integer"),
        (lambda d: d.update(length_unit="mm"), "metres"),
        (lambda d: d.pop("camera"), 'missing the "camera" block'),
        (lambda d: d["camera"].pop("cx_px"), "missing field 'cx_px'"),
        (lambda d: d["camera"].update(fx_px=-5), "positive"),
        (lambda d: d["camera"].update(distortion_model="fisheye"), "unknown distortion model"),
        (lambda d: d["hand_eye"].update(setup="eye-on-hand"), "setup must be one of"),
        (lambda d: d["hand_eye"].pop("T_ee_cam"), "needs hand_eye.T_ee_cam"),
        (
            lambda d: d["hand_eye"].update(T_ee_cam=np.array(d["hand_eye"]["T_ee_cam"]).T.tolist()),
            "transposed",
        ),
        (
            lambda d: d["hand_eye"]["T_ee_cam"][0].__setitem__(3, 30.0),
            "T_ee_cam: translation .* millimetres",
        ),
    ],
)
def test_loader_names_the_problem(tmp_path, change, message):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(mutated(change)))
    with pytest.raises(InputError, match=message):
        load_calibration(path)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_calibration(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not a langgrasp calibration"):
        calibration_from_dict([1, 2, 3])


def test_connected_camera_must_match():
    calibration = eye_in_hand()
    calibration.check_camera("843112071234", 640, 480)
    calibration.check_camera(None, 640, 480)  # serial unknown: only the size is checked
    with pytest.raises(InputError, match="camera 999 is connected"):
        calibration.check_camera("999", 640, 480)
    with pytest.raises(InputError, match="streams 1280x720"):
        calibration.check_camera("843112071234", 1280, 720)
