"""The robot runtime end to end, as on a robot PC, without hardware.

Synthetic RGB-D frames are recorded into a RealSense ``.db3`` through ``rs.software_device`` and
played back through the same pipeline code a live camera uses; the shipped demo bundle detects
the target; the pick loop drives the real Robotiq and Modbus arm backends against their
simulators on 127.0.0.1 under the demo's known calibration. The arm targets must land within
1 cm and 5 degrees of the scene's ground truth, and the gripper must see the Robotiq register
sequence of a pick: reset, activate, pre-open, close on the object, release.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from langgrasp.datasets.synthetic import render_scene
from langgrasp.runtime.demo import (
    DEMO_BUNDLE,
    camera_pose,
    demo_calibration,
    demo_cell,
    demo_scene_config,
    object_width_m,
    simulated_arm,
)
from langgrasp.runtime.engine import GraspDetector
from langgrasp.runtime.robotiq import RobotiqConfig
from langgrasp.runtime.sim.robotiq import RobotiqSim

pytest.importorskip("pyrealsense2", reason="pyrealsense2 needs libusb-1.0 (make install)")

from langgrasp.runtime.cameras.realsense import RealSensePlayback
from langgrasp.runtime.cameras.recording import record_rgbd

SEED = 16
"""A scene whose target the shipped demo bundle finds (its validation J@1 is far below 1, so
not every scene works; `tests/test_pick_end_to_end.py` pins one)."""

POSITION_TOLERANCE_M = 0.01  # issue 5: within 1 cm ...
YAW_TOLERANCE_DEG = 5.0  # ... and 5 degrees of the ground truth
FRAMES = 5  # recorded frames; the loop reads one per command
SIM_SPEED_M_S = 5.0  # fast simulated arm: the test checks targets, not motion time
PATCH = 2  # half size in pixels of the depth patch at a ground-truth grasp centre

ROBOTIQ_GO = 0x0900  # rACT | rGTO in the action-request byte (runtime.md 3.1)
ROBOTIQ_ACTIVATE = 0x0100  # rACT only
ROBOTIQ_CLOSED = 255  # rPR fully closed


def _expected(gt, scene, scene_config) -> tuple[np.ndarray, float]:
    """Base-frame point and yaw of a ground-truth grasp, without the runtime's geometry code.

    Depth: median of the valid pixels in a small patch at the grasp centre; deprojection: the
    pinhole model of the scene camera; pose: the demo camera's known ``T_base_cam``. The yaw is
    the image direction of the opening axis, (cos a, -sin a) with y down, rotated into the base.
    """
    u, v = round(gt.x), round(gt.y)
    patch = scene.depth[v - PATCH : v + PATCH + 1, u - PATCH : u + PATCH + 1]
    z = float(np.median(patch[patch > 0]))
    c = scene_config
    point_cam = np.array([(gt.x - c.cx) / c.fx * z, (gt.y - c.cy) / c.fy * z, z, 1.0])
    pose = camera_pose(c)
    axis = pose[:3, :3] @ np.array([math.cos(gt.angle), -math.sin(gt.angle), 0.0])
    return (pose @ point_cam)[:3], math.atan2(axis[1], axis[0])


def _pose_error(expected, position: np.ndarray, yaw: float) -> tuple[float, float]:
    """(metres, degrees) between an expected (point, yaw) and a target; yaw modulo a half turn."""
    point, expected_yaw = expected
    yaw_error = abs((expected_yaw - yaw + math.pi / 2) % math.pi - math.pi / 2)
    return float(np.linalg.norm(point - position)), math.degrees(yaw_error)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The scene, recorded as a RealSense .db3 at the demo camera's intrinsics."""
    scene_config = demo_scene_config()
    scene = render_scene(SEED, scene_config)
    calibration = demo_calibration(scene_config)
    path = tmp_path_factory.mktemp("rs") / "scene.db3"
    record_rgbd(path, [(scene.rgb, scene.depth)] * FRAMES, calibration.camera)
    return scene, scene_config, calibration, path


def test_pick_the_object_lands_on_the_ground_truth(recorded):
    scene, scene_config, _, path = recorded
    target = scene.objects[scene.target_index]
    command = f"pick the {target.colour} {target.name}"

    gripper_sim = RobotiqSim(object_width_m=object_width_m(scene, scene_config))
    arm_sim = simulated_arm(SIM_SPEED_M_S)
    camera = RealSensePlayback(path)
    detector = GraspDetector(DEMO_BUNDLE, providers=["cpu"])
    with demo_cell(camera, detector, gripper_sim=gripper_sim, arm_sim=arm_sim) as cell:
        reply = cell.loop.command(command)
        assert reply.ok, reply.message
        assert cell.loop.wait_until_settled(60.0)
        report = cell.loop.last_report

    assert report.outcome == "placed", report.format()
    # Arm: pre-grasp, then the grasp itself, straight below it.
    pregrasp, grasp = arm_sim.targets[0], arm_sim.targets[1]
    np.testing.assert_allclose(pregrasp[:2, 3], grasp[:2, 3], atol=1e-3)
    assert pregrasp[2, 3] > grasp[2, 3]
    yaw = math.atan2(grasp[1, 0], grasp[0, 0])
    errors = [
        _pose_error(_expected(gt, scene, scene_config), grasp[:3, 3], yaw) for gt in scene.grasps
    ]
    position_error, yaw_error = min(errors)
    assert position_error < POSITION_TOLERANCE_M, errors
    assert yaw_error < YAW_TOLERANCE_DEG, errors
    assert grasp[2, 2] == pytest.approx(-1.0, abs=1e-3)  # top-down approach

    # Gripper: reset, activate, pre-open to the grasp's opening, close, release (open again).
    writes = [values for address, values in gripper_sim.writes if address == 1000]
    assert writes[0] == [0, 0, 0]
    assert writes[1] == [ROBOTIQ_ACTIVATE, 0, 0]
    moves = writes[2:]
    assert [m[0] for m in moves] == [ROBOTIQ_GO] * 3
    preopen, close, release = (m[1] for m in moves)
    assert close == ROBOTIQ_CLOSED and preopen < close and release == preopen
    chosen = report.chosen.pose
    config = RobotiqConfig()
    assert config.width_for_ticks(preopen) >= chosen.opening_m
