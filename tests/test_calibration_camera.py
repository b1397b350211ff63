"""Camera model: projection/deprojection for every RealSense distortion model, factory values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from langgrasp.calibration.camera import (
    DISTORTION_MODELS,
    CameraIntrinsics,
    intrinsics_from_realsense,
    intrinsics_from_realsense_object,
    realsense_model_name,
)
from langgrasp.errors import InputError

COEFFS = {
    "none": (0.0, 0.0, 0.0, 0.0, 0.0),
    "brown_conrady": (-0.12, 0.08, 0.0012, -0.0008, -0.01),
    "inverse_brown_conrady": (0.1, -0.05, -0.001, 0.0006, 0.01),
    "modified_brown_conrady": (-0.1, 0.04, 0.001, 0.0005, 0.0),
    "kannala_brandt4": (0.05, -0.02, 0.004, -0.001, 0.0),
    "ftheta": (0.9, 0.0, 0.0, 0.0, 0.0),
}


def camera(model: str) -> CameraIntrinsics:
    return CameraIntrinsics(640, 480, 600.0, 598.0, 321.3, 242.7, model, COEFFS[model])


def grid_points() -> np.ndarray:
    """Camera-frame points whose images cover the whole 640x480 frame."""
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, 9), np.linspace(-0.38, 0.38, 7))
    depth = np.linspace(0.3, 1.2, u.size)
    return np.column_stack([u.ravel() * depth, v.ravel() * depth, depth])


@pytest.mark.parametrize("model", DISTORTION_MODELS)
def test_deprojection_inverts_projection(model):
    cam = camera(model)
    points = grid_points()
    pixels = cam.project(points)
    assert np.all(np.abs(pixels - [320, 240]) < [400, 300])  # stays near the frame
    back = cam.deproject(pixels, points[:, 2])
    np.testing.assert_allclose(back, points, atol=1e-9)
    np.testing.assert_allclose(cam.distort_normalized(cam.normalize(pixels)), pixels, atol=1e-6)


def test_brown_conrady_is_opencvs_model():
    cam = camera("brown_conrady")
    points = grid_points()
    expected, _ = cv2.projectPoints(
        points, np.zeros(3), np.zeros(3), cam.matrix, cam.opencv_distortion()
    )
    np.testing.assert_allclose(cam.project(points), expected.reshape(-1, 2), atol=1e-9)


def test_kannala_brandt4_is_opencvs_fisheye_model():
    cam = camera("kannala_brandt4")
    points = grid_points()
    expected, _ = cv2.fisheye.projectPoints(
        points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.matrix, np.array(cam.coeffs[:4])
    )
    np.testing.assert_allclose(cam.project(points), expected.reshape(-1, 2), atol=1e-6)


def test_inverse_brown_conrady_deprojects_in_closed_form_as_librealsense():
    cam = camera("inverse_brown_conrady")
    k1, k2, p1, p2, k3 = cam.coeffs
    pixel = np.array([[500.0, 80.0]])
    x, y = (pixel[0, 0] - cam.cx) / cam.fx, (pixel[0, 1] - cam.cy) / cam.fy
    r2 = x * x + y * y
    f = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2  # rsutil.h rs2_deproject_pixel_to_point
    ux = x * f + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    uy = y * f + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)
    np.testing.assert_allclose(cam.deproject(pixel, 0.7), [[ux * 0.7, uy * 0.7, 0.7]], atol=1e-12)


def test_no_distortion_is_plain_pinhole():
    cam = camera("none")
    point = cam.deproject(np.array([[421.3, 142.7]]), 2.0)
    np.testing.assert_allclose(point, [[100 / 600 * 2, -100 / 598 * 2, 2.0]])


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (4, "brown_conrady"),
        (2, "inverse_brown_conrady"),
        ("distortion.inverse_brown_conrady", "inverse_brown_conrady"),
        ("RS2_DISTORTION_KANNALA_BRANDT4", "kannala_brandt4"),
        ("Modified Brown Conrady", "modified_brown_conrady"),
        ("none", "none"),
    ],
)
def test_realsense_model_names(model, name):
    assert realsense_model_name(model) == name


def test_realsense_factory_fields_become_intrinsics():
    # The fields of pyrealsense2.intrinsics (runtime.md 1.2); an enum prints as distortion.X.
    fake = SimpleNamespace(
        width=1280,
        height=720,
        fx=910.5,
        fy=909.8,
        ppx=641.2,
        ppy=362.9,
        model="distortion.inverse_brown_conrady",
        coeffs=[0.0, 0.0, 0.0, 0.0, 0.0],
    )
    cam = intrinsics_from_realsense_object(fake)
    assert (cam.width, cam.height, cam.fx, cam.cy) == (1280, 720, 910.5, 362.9)
    assert cam.model == "inverse_brown_conrady"
    assert cam.opencv_distortion().tolist() == [0.0] * 5  # zero coefficients are OpenCV-usable
    direct = intrinsics_from_realsense(1280, 720, 910.5, 909.8, 641.2, 362.9, 4, [0.1] * 5)
    assert direct.model == "brown_conrady"
    with pytest.raises(InputError, match="unknown RealSense distortion"):
        intrinsics_from_realsense(1280, 720, 910.5, 909.8, 641.2, 362.9, 9, [0.0] * 5)


def test_dict_round_trip_and_units_in_keys():
    cam = camera("brown_conrady")
    data = cam.to_dict()
    assert {"width_px", "fx_px", "cx_px", "distortion_model"} <= data.keys()
    assert CameraIntrinsics.from_dict(data) == cam
    with pytest.raises(InputError, match="missing field 'fy_px'"):
        CameraIntrinsics.from_dict({k: v for k, v in data.items() if k != "fy_px"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fx": -1.0}, "positive"),
        ({"fy": math.nan}, "finite"),
        ({"width": 0}, "positive whole number"),
        ({"model": "fisheye"}, "unknown distortion model"),
        ({"coeffs": (0.1,)}, "needs 5 coefficients"),
    ],
)
def test_invalid_intrinsics_are_rejected(kwargs, message):
    base = {"width": 640, "height": 480, "fx": 600.0, "fy": 600.0, "cx": 320.0, "cy": 240.0}
    base.setdefault("model", "brown_conrady")
    with pytest.raises(InputError, match=message):
        CameraIntrinsics(**{**base, **kwargs})


def test_non_opencv_models_refuse_opencv_coefficients():
    with pytest.raises(InputError, match="no OpenCV equivalent"):
        camera("inverse_brown_conrady").opencv_distortion()
    with pytest.raises(InputError, match="behind the camera"):
        camera("none").project(np.array([[0.0, 0.0, -1.0]]))
