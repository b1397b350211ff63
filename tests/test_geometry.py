"""Grasp to robot pose: depth statistic, deprojection, width, yaw, frames, via calibration.json."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.io import (
    Calibration,
    HandEyeCalibration,
    load_calibration,
    save_calibration,
)
from langgrasp.calibration.synthetic import look_at
from langgrasp.calibration.transforms import invert_transform, make_transform
from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError
from langgrasp.runtime.geometry import (
    GraspGeometryConfig,
    GraspGeometryError,
    grasp_depth,
    grasp_pose,
    jaw_region,
)

PINHOLE = CameraIntrinsics(320, 240, 300.0, 300.0, 161.0, 118.0)
TABLE_Z = 0.02  # table surface height in the base frame, metres
MEDIAN = GraspGeometryConfig(depth_percentile=50.0)


def plane_depth(camera: CameraIntrinsics, t_base_cam: np.ndarray, z: float = TABLE_Z) -> np.ndarray:
    """Depth image (metres along the optical axis) of the plane base-z = ``z``."""
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    rays = np.column_stack(
        [camera.normalize(np.column_stack([u.ravel(), v.ravel()])), np.ones(u.size)]
    )
    rays_base = rays @ t_base_cam[:3, :3].T
    depth = (z - t_base_cam[2, 3]) / rays_base[:, 2]
    return depth.reshape(camera.height, camera.width)


def straight_down(position) -> np.ndarray:
    """t_base_cam of a camera looking straight down, image x along base -y, image y along -x."""
    rotation = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    return make_transform(rotation, position)


def fixed_camera(camera, t_base_cam, tmp_path) -> Calibration:
    """An eye-to-hand calibration written to calibration.json and read back."""
    hand_eye = HandEyeCalibration("eye-to-hand", t_base_cam, "park")
    return load_calibration(
        save_calibration(tmp_path / "calibration.json", Calibration(camera, hand_eye=hand_eye))
    )


def test_straight_down_camera_matches_hand_computed_pose(tmp_path):
    t_base_cam = straight_down([0.5, 0.1, 0.62])
    calibration = fixed_camera(PINHOLE, t_base_cam, tmp_path)
    depth = plane_depth(PINHOLE, t_base_cam)
    grasp = Grasp(x=201.0, y=98.0, angle=0.5, width=45.0, height=20.0)
    pose = grasp_pose(grasp, depth, calibration)
    z = 0.62 - TABLE_Z  # camera height above the table
    # Hand computation: pixel offset / focal * depth in the camera frame; camera x = base -y and
    # camera y = base -x for this mounting.
    cam_x, cam_y = (201.0 - 161.0) / 300.0 * z, (98.0 - 118.0) / 300.0 * z
    expected = np.array([0.5 - cam_y, 0.1 - cam_x, TABLE_Z])
    np.testing.assert_allclose(pose.position_m, expected, atol=1e-9)
    assert pose.depth_m == pytest.approx(z, abs=1e-9)
    assert pose.opening_m == pytest.approx(45.0 / 300.0 * z, abs=1e-9)
    # Opening axis on screen (cos a, -sin a) -> camera (cos a, -sin a, 0) -> base (sin a, -cos a).
    expected_yaw = math.atan2(-math.cos(0.5), math.sin(0.5))  # already in [-pi/2, pi/2)
    assert pose.yaw_rad == pytest.approx(expected_yaw, abs=1e-9)
    rotation = pose.T_base_grasp[:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation[:, 2], [0, 0, -1])  # approach straight down
    np.testing.assert_allclose(
        rotation[:, 0], [math.cos(expected_yaw), math.sin(expected_yaw), 0], atol=1e-12
    )
    np.testing.assert_allclose(
        pose.T_base_pregrasp[:3, 3], expected + np.array([0, 0, 0.10]), atol=1e-9
    )
    np.testing.assert_allclose(pose.T_base_pregrasp[:3, :3], rotation)


def test_eye_in_hand_uses_the_arm_pose_at_capture(tmp_path):
    t_ee_cam = make_transform([0.0, 0.0, math.pi / 2], [0.03, -0.05, 0.08])
    t_base_cam = straight_down([0.45, -0.05, 0.55])
    t_base_ee = t_base_cam @ invert_transform(t_ee_cam)
    hand_eye = HandEyeCalibration("eye-in-hand", t_ee_cam, "tsai")
    path = save_calibration(tmp_path / "calibration.json", Calibration(PINHOLE, hand_eye=hand_eye))
    calibration = load_calibration(path)
    depth = plane_depth(PINHOLE, t_base_cam)
    grasp = Grasp(x=140.0, y=150.0, angle=-0.3, width=30.0, height=15.0)
    pose = grasp_pose(grasp, depth, calibration, T_base_ee=t_base_ee)
    reference = grasp_pose(grasp, depth, fixed_camera(PINHOLE, t_base_cam, tmp_path))
    np.testing.assert_allclose(pose.T_base_grasp, reference.T_base_grasp, atol=1e-9)
    with pytest.raises(InputError, match="needs the arm pose"):
        grasp_pose(grasp, depth, calibration)


def test_tilted_camera_lands_on_the_table(tmp_path):
    t_base_cam = look_at(np.array([0.2, -0.3, 0.7]), np.array([0.55, 0.05, TABLE_Z]), 0.3)
    calibration = fixed_camera(PINHOLE, t_base_cam, tmp_path)
    depth = plane_depth(PINHOLE, t_base_cam)
    grasp = Grasp(x=150.0, y=110.0, angle=1.0, width=20.0, height=10.0)
    pose = grasp_pose(grasp, depth, calibration, config=MEDIAN)
    # Hand computation: intersect the centre pixel's ray with the table plane.
    ray = t_base_cam[:3, :3] @ np.array([(150.0 - 161.0) / 300.0, (110.0 - 118.0) / 300.0, 1.0])
    origin = t_base_cam[:3, 3]
    expected = origin + ray * (TABLE_Z - origin[2]) / ray[2]
    np.testing.assert_allclose(pose.position_m, expected, atol=0.001)


def test_lens_distortion_is_removed_before_deprojection(tmp_path):
    camera = CameraIntrinsics(
        320, 240, 300.0, 300.0, 161.0, 118.0, "brown_conrady", (-0.3, 0.12, 0.002, -0.001, 0.0)
    )
    t_base_cam = straight_down([0.5, 0.1, 0.62])
    calibration = fixed_camera(camera, t_base_cam, tmp_path)
    depth = plane_depth(camera, t_base_cam)
    target_base = np.array([0.67, 0.35, TABLE_Z])  # a point near the image corner
    target_cam = invert_transform(t_base_cam) @ np.append(target_base, 1.0)
    pixel, _ = cv2.projectPoints(
        target_cam[None, :3], np.zeros(3), np.zeros(3), camera.matrix, camera.opencv_distortion()
    )
    x, y = pixel.reshape(2)
    pose = grasp_pose(Grasp(float(x), float(y), 0.0, 12.0, 8.0), depth, calibration, config=MEDIAN)
    np.testing.assert_allclose(pose.position_m, target_base, atol=0.001)
    pinhole_guess = np.array([(x - 161.0) / 300.0, (y - 118.0) / 300.0]) * 0.6
    assert np.linalg.norm(pinhole_guess - target_cam[:2]) > 0.01  # ignoring distortion would miss


def box_scene():
    """Table at 0.60 m with a box top at 0.52 m covering the left half of the grasp region."""
    depth = np.full((PINHOLE.height, PINHOLE.width), 0.60)
    depth[:, :160] = 0.52
    return depth, Grasp(x=160.0, y=120.0, angle=0.0, width=40.0, height=20.0)


def test_low_percentile_picks_the_object_top_and_ignores_holes():
    depth, grasp = box_scene()
    assert grasp_depth(grasp, depth, GraspGeometryConfig()) == pytest.approx(0.52)
    assert grasp_depth(grasp, depth, GraspGeometryConfig(depth_percentile=100)) == pytest.approx(
        0.60
    )
    holey = depth.copy()
    holey[::3, :] = 0.0  # a third of the rows are holes
    holey[1::7, :] = np.nan
    holey[2::11, :] = 0.01  # closer than the sensor's range: invalid
    assert grasp_depth(grasp, holey, GraspGeometryConfig()) == pytest.approx(0.52)


def test_not_enough_depth_is_refused_with_the_reason():
    depth, grasp = box_scene()
    depth[100:140, 130:190] = 0.0
    depth[110, 150] = 0.55
    with pytest.raises(GraspGeometryError, match=r"not enough depth at the grasp: 1 of \d+ pixels"):
        grasp_depth(grasp, depth, GraspGeometryConfig())
    outside = Grasp(x=-50.0, y=-50.0, angle=0.0, width=10.0, height=5.0)
    with pytest.raises(GraspGeometryError, match="outside"):
        grasp_depth(outside, depth, GraspGeometryConfig())


def test_jaw_region_is_the_central_part_of_the_rectangle():
    grasp = Grasp(x=50.0, y=40.0, angle=0.0, width=40.0, height=10.0)
    region = jaw_region(grasp, (80, 100), center_fraction=0.5)
    rows, cols = np.nonzero(region)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (40, 60, 35, 45)
    turned = jaw_region(Grasp(50.0, 40.0, math.pi / 2, 40.0, 10.0), (80, 100), 0.5)
    rows, cols = np.nonzero(turned)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (45, 55, 30, 50)


def test_bad_inputs(tmp_path):
    t_base_cam = straight_down([0.5, 0.1, 0.62])
    calibration = fixed_camera(PINHOLE, t_base_cam, tmp_path)
    depth = plane_depth(PINHOLE, t_base_cam)
    grasp = Grasp(160.0, 120.0, 0.0, 20.0, 10.0)
    with pytest.raises(InputError, match=r"calibration\.json is for 320x240"):
        grasp_pose(grasp, depth[:100], calibration)
    with pytest.raises(InputError, match="non-finite"):
        grasp_pose(Grasp(math.nan, 120.0, 0.0, 20.0, 10.0), depth, calibration)
    with pytest.raises(InputError, match="no hand-eye"):
        grasp_pose(grasp, depth, Calibration(PINHOLE))
    with pytest.raises(InputError, match="percentile"):
        GraspGeometryConfig(depth_percentile=120)


def test_side_view_cannot_grasp_top_down(tmp_path):
    # Camera looking horizontally along base +x; its image x axis is base -z (vertical).
    t_base_cam = look_at(np.array([0.0, 0.0, 0.3]), np.array([1.0, 0.0, 0.3]), 0.0)
    calibration = fixed_camera(PINHOLE, t_base_cam, tmp_path)
    depth = np.full((PINHOLE.height, PINHOLE.width), 0.8)
    with pytest.raises(GraspGeometryError, match="nearly vertical"):
        grasp_pose(Grasp(160.0, 120.0, 0.0, 30.0, 10.0), depth, calibration)


def test_depth_in_millimetres_is_named(tmp_path):
    t_base_cam = straight_down([0.5, 0.1, 0.62])
    calibration = fixed_camera(PINHOLE, t_base_cam, tmp_path)
    depth_mm = np.rint(plane_depth(PINHOLE, t_base_cam) * 1000).astype(np.uint16)  # raw z16
    grasp = Grasp(160.0, 120.0, 0.0, 20.0, 10.0)
    with pytest.raises(InputError, match="millimetres"):
        grasp_pose(grasp, depth_mm, calibration)
    # A real hole (all zeros) is still a geometry error, not a unit complaint.
    with pytest.raises(GraspGeometryError, match="not enough depth"):
        grasp_depth(grasp, np.zeros_like(depth_mm, dtype=float), GraspGeometryConfig())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pregrasp_height_m": -0.05}, "pregrasp_height_m must be >= 0"),
        ({"grasp_depth_offset_m": -0.01}, r"grasp_depth_offset_m must be within \[0, 0\.1\]"),
        ({"grasp_depth_offset_m": 0.2}, r"grasp_depth_offset_m must be within \[0, 0\.1\]"),
        ({"min_valid_pixels": 0, "min_valid_fraction": 0.0}, "at least one valid pixel"),
        ({"min_valid_fraction": 1.5}, r"min_valid_fraction must be within \[0, 1\]"),
        ({"max_depth_m": math.inf}, "max_depth_m must be a finite number"),
        ({"pregrasp_height_m": math.nan}, "pregrasp_height_m must be a finite number"),
        ({"min_valid_fraction": math.nan}, "min_valid_fraction must be a finite number"),
    ],
)
def test_config_rejects_unsafe_or_degenerate_values(kwargs, match):
    with pytest.raises(InputError, match=match):
        GraspGeometryConfig(**kwargs)


def test_config_bounds_are_inclusive():
    config = GraspGeometryConfig(
        pregrasp_height_m=0.0, grasp_depth_offset_m=0.1, min_valid_pixels=1, min_valid_fraction=0
    )
    assert config.grasp_depth_offset_m == 0.1 and config.min_valid_pixels == 1


def test_one_valid_pixel_is_enough_when_configured():
    depth = np.full((80, 100), np.nan)
    depth[40, 50] = 0.4
    config = GraspGeometryConfig(min_valid_pixels=1, min_valid_fraction=0.0)
    assert grasp_depth(Grasp(50.0, 40.0, 0.0, 40.0, 10.0), depth, config) == pytest.approx(0.4)
    depth[40, 50] = np.nan
    with pytest.raises(GraspGeometryError, match=r"0 of \d+ pixels .* 1 needed"):
        grasp_depth(Grasp(50.0, 40.0, 0.0, 40.0, 10.0), depth, config)
