"""The embedded default: a whole pick on a synthetic scene with simulated devices, no hardware.

``langgrasp demo`` (and ``make demo``) starts the Robotiq and arm simulators on 127.0.0.1,
renders a table-top scene with the synthetic RGB-D camera, runs the shipped demo bundle
(``lggd-tiny`` trained on synthetic scenes, ``langgrasp/assets/demo-tiny``; its manifest records
how it was trained and its metrics) through the real pick loop with ``--execute`` semantics
against the simulators, prints the pick report and writes an overlay picture. Torch-free.

The set-up (all in the robot base frame, metres, z up): the table top is the plane z = 0; the
camera is fixed (eye-to-hand) ``CAMERA_HEIGHT_M`` above the point ``CAMERA_XY_M``, looking straight
down, image x along base -y and image y along base -x. ``demo_calibration`` is that camera's
calibration.json; ``examples/synthetic_calibration.json`` is the same, written to a file, for
``langgrasp run --config examples/robot.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.io import Calibration, HandEyeCalibration
from langgrasp.datasets.synthetic import SceneConfig, SceneSample
from langgrasp.errors import InputError

DEMO_BUNDLE = Path(__file__).resolve().parents[1] / "assets" / "demo-tiny"
"""The shipped demo bundle (``langgrasp export`` of a synthetic-trained lggd-tiny)."""

DEMO_IMAGE_SIZE = (320, 240)
"""Width, height of the demo camera: the D435-like default camera at half resolution, the size
the demo bundle was trained at."""

CAMERA_XY_M = (0.45, 0.0)
"""Where the demo camera hangs over the table, base frame x, y (metres)."""

WORKSPACE_MARGIN_M = 0.05
"""Extra room around the camera's view of the table in the demo's workspace box."""

WORKSPACE_TOP_M = 0.40
"""Top of the demo's workspace box above the table (pre-grasp and lift heights fit under it)."""

PLACE_POSITION_M = (0.45, 0.35, 0.0)
"""Where the demo puts the object down: beside the camera's view, on the table."""

ANGULAR_PER_LINEAR = 4.0
"""Simulated arm: rotation speed (rad/s) per unit of tool speed (m/s), about a UR's default
ratio (1.05 rad/s joint speed to 0.25 m/s tool speed)."""


def demo_scene_config() -> SceneConfig:
    """The demo camera and scene parameters: ``SceneConfig`` at ``DEMO_IMAGE_SIZE``."""
    return SceneConfig().resized(*DEMO_IMAGE_SIZE)


def camera_pose(scene: SceneConfig) -> np.ndarray:
    """``T_base_cam`` (4x4, metres) of the demo camera: straight down, ``camera_height_m`` up.

    Camera axes in the base frame: x_cam = -y_base, y_cam = -x_base, z_cam = -z_base (a proper
    rotation: x_cam × y_cam = z_cam).
    """
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    pose[:3, 3] = (CAMERA_XY_M[0], CAMERA_XY_M[1], scene.camera_height_m)
    return pose


def demo_calibration(scene: SceneConfig | None = None) -> Calibration:
    """The exact calibration of the synthetic camera (eye-to-hand, no distortion)."""
    scene = scene or demo_scene_config()
    camera = CameraIntrinsics(scene.width, scene.height, scene.fx, scene.fy, scene.cx, scene.cy)
    hand_eye = HandEyeCalibration(
        setup="eye-to-hand",
        transform=camera_pose(scene),
        method="synthetic (exact)",
        residuals={"note": "the synthetic camera's true pose; no measurement"},
    )
    return Calibration(
        camera=camera,
        serial=None,
        intrinsics_source="synthetic",
        hand_eye=hand_eye,
        created="2026-11-21T00:00:00+00:00",
    )


def workspace_box(scene: SceneConfig | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(min_xyz, max_xyz)`` in the base frame covering the camera's view of the table."""
    scene = scene or demo_scene_config()
    half_x = scene.height / 2 / scene.fy * scene.camera_height_m + WORKSPACE_MARGIN_M
    half_y = scene.width / 2 / scene.fx * scene.camera_height_m + WORKSPACE_MARGIN_M
    x, y = CAMERA_XY_M
    return (
        (round(x - half_x, 3), round(y - half_y, 3), -WORKSPACE_MARGIN_M),
        (round(x + half_x, 3), round(max(y + half_y, PLACE_POSITION_M[1]), 3), WORKSPACE_TOP_M),
    )


def object_width_m(scene: SceneSample, scene_config: SceneConfig) -> float:
    """Width of the target between the fingers (metres) for the simulated gripper.

    The scene's ground-truth grasps open ``grasp_margin_m`` wider than the object; the narrowest
    one, less that margin, is what the fingers close on.
    """
    if not scene.grasps:
        raise InputError(f"scene {scene.seed} has no ground-truth grasp on its target")
    narrowest_px = min(g.width for g in scene.grasps)
    width = narrowest_px / scene_config.pixels_per_metre - scene_config.grasp_margin_m
    return max(width, 0.0)


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` did.

    Attributes:
        report: The pick report (``PickReport.to_dict()``).
        text: The report as printed.
        overlay: Path of the overlay picture, or None.
        scene_seed: Seed of the rendered scene.
    """

    report: dict[str, Any]
    text: str
    overlay: Path | None
    scene_seed: int


def run_demo(
    seed: int = 0,
    command: str | None = None,
    out: Path | None = Path("demo.png"),
    bundle: Path = DEMO_BUNDLE,
    audit_path: Path | None = None,
    arm_speed_m_s: float = 1.0,
) -> DemoResult:
    """Run one pick on a synthetic scene against simulated devices (see the module docstring).

    Args:
        seed: Scene seed.
        command: Operator command; default: the scene's own instruction.
        out: Overlay PNG to write, or None.
        bundle: Exported bundle folder.
        audit_path: JSONL audit log, or None (in memory).
        arm_speed_m_s: Simulated arm speed (the demo runs fast; a real arm is slower).

    Raises:
        LanggraspError: a missing bundle, or a device simulator that cannot start.
    """
    from langgrasp.detector.visualize import draw_overlay, save_image
    from langgrasp.runtime.audit import AuditLog
    from langgrasp.runtime.cameras.synthetic import SyntheticCamera
    from langgrasp.runtime.config import PlaceConfig
    from langgrasp.runtime.engine import GraspDetector
    from langgrasp.runtime.modbus import ModbusConfig
    from langgrasp.runtime.modbus_arm import ModbusArm, ModbusArmConfig
    from langgrasp.runtime.pick import PickLoop
    from langgrasp.runtime.robotiq import RobotiqConfig, RobotiqGripper
    from langgrasp.runtime.safety import SafetyConfig
    from langgrasp.runtime.sim.arm import ArmSim
    from langgrasp.runtime.sim.robotiq import RobotiqSim

    scene_config = demo_scene_config()
    detector = GraspDetector(bundle)
    camera = SyntheticCamera(seed=seed, scene_config=scene_config)
    camera.connect()
    scene = camera.read().ground_truth
    command = command if command is not None else scene.text
    low, high = workspace_box(scene_config)
    gripper_sim = RobotiqSim(object_width_m=object_width_m(scene, scene_config))
    arm_sim = ArmSim(
        speed_m_s=arm_speed_m_s,
        angular_speed_rad_s=ANGULAR_PER_LINEAR * arm_speed_m_s,
        home_pose=_home_pose(),
    )
    servers = [gripper_sim.serve(), arm_sim.serve()]
    audit = AuditLog(audit_path)
    loop = None
    try:
        gripper = RobotiqGripper(
            replace(
                RobotiqConfig(),
                modbus=ModbusConfig(transport="rtu-over-tcp", port=servers[0].port, device_id=9),
            ),
            on_io=audit.device_io,
        )
        arm = ModbusArm(
            replace(ModbusArmConfig(), modbus=ModbusConfig(port=servers[1].port, device_id=1)),
            on_io=audit.device_io,
        )
        gripper.connect()
        arm.connect()
        gripper.activate()  # as `langgrasp run --execute` does at start (the fingers move)
        loop = PickLoop(
            camera,
            detector,
            demo_calibration(scene_config),
            arm=arm,
            gripper=gripper,
            safety=SafetyConfig(workspace_min_m=low, workspace_max_m=high),
            place=PlaceConfig(position_m=PLACE_POSITION_M),
            audit=audit,
            execute=True,
            auto_confirm=True,
        )
        loop.command(command)
        loop.wait_until_settled()
        report = loop.last_report
        text = report.format() if report is not None else "no report"
        overlay_path = None
        if out is not None and loop.last_detection is not None:
            detection = loop.last_detection
            title = f"{command} -> {report.outcome if report else '?'}"
            picture = draw_overlay(
                scene.rgb,
                mask_prob=detection.mask_prob,
                grasps=detection.grasps,
                gt_grasps=scene.grasps,
                title=title,
            )
            overlay_path = save_image(out, picture)
        return DemoResult(
            report=report.to_dict() if report is not None else {},
            text=text,
            overlay=overlay_path,
            scene_seed=scene.seed,
        )
    finally:
        if loop is not None:
            loop.close()
        camera.close()
        for server in servers:
            server.stop()
        audit.close()


def _home_pose() -> np.ndarray:
    """The simulated arm's home: above the camera's view, tool pointing down."""
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])
    pose[:3, 3] = (CAMERA_XY_M[0], CAMERA_XY_M[1], WORKSPACE_TOP_M - WORKSPACE_MARGIN_M)
    return pose
