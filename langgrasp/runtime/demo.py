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

import contextlib
from collections.abc import Iterator
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


@dataclass(frozen=True)
class DemoCell:
    """A running simulated cell (see ``demo_cell``).

    Attributes:
        loop: The executing pick loop.
        gripper_sim: The Robotiq simulator (its ``writes`` record every command).
        arm_sim: The arm simulator (its ``targets`` record every target pose).
    """

    loop: Any
    gripper_sim: Any
    arm_sim: Any


def simulated_arm(speed_m_s: float = 1.0) -> Any:
    """An ``ArmSim`` at ``speed_m_s`` full tool speed (rotation scaled to match), demo home."""
    from langgrasp.runtime.sim.arm import ArmSim

    return ArmSim(
        speed_m_s=speed_m_s,
        angular_speed_rad_s=ANGULAR_PER_LINEAR * speed_m_s,
        home_pose=_home_pose(),
    )


@contextlib.contextmanager
def demo_cell(
    camera: Any,
    detector: Any,
    gripper_sim: Any = None,
    arm_sim: Any = None,
    audit: Any = None,
    auto_confirm: bool = True,
) -> Iterator[DemoCell]:
    """The demo's simulated cell around ``camera`` and ``detector``, closed on exit.

    Starts the simulators on free 127.0.0.1 ports, connects the real Robotiq and Modbus arm
    backends to them, activates the gripper (as ``langgrasp run --execute`` does at start) and
    builds an executing ``PickLoop`` with the demo's calibration, workspace box and place pose.
    ``camera`` must deliver frames of ``demo_scene_config()``'s size (e.g. the synthetic camera or
    a recording of it); it is closed with the cell.

    Args:
        camera: Frame source (connected or not).
        detector: Anything with ``detect(rgb, command)``.
        gripper_sim: A ``RobotiqSim``; default: one without an object between the fingers.
        arm_sim: An ``ArmSim``; default: ``simulated_arm()``.
        audit: An ``AuditLog``; default: in memory.
        auto_confirm: Execute the offered grasp without asking.
    """
    from langgrasp.runtime.audit import AuditLog
    from langgrasp.runtime.config import PlaceConfig
    from langgrasp.runtime.modbus import ModbusConfig
    from langgrasp.runtime.modbus_arm import ModbusArm, ModbusArmConfig
    from langgrasp.runtime.pick import PickLoop
    from langgrasp.runtime.robotiq import RobotiqConfig, RobotiqGripper
    from langgrasp.runtime.safety import SafetyConfig
    from langgrasp.runtime.sim.robotiq import RobotiqSim

    scene_config = demo_scene_config()
    gripper_sim = gripper_sim if gripper_sim is not None else RobotiqSim()
    arm_sim = arm_sim if arm_sim is not None else simulated_arm()
    audit = audit if audit is not None else AuditLog(None)
    low, high = workspace_box(scene_config)
    servers = []
    loop = None
    try:
        servers.append(gripper_sim.serve())
        servers.append(arm_sim.serve())
        gripper_link = ModbusConfig(
            transport="rtu-over-tcp", port=servers[0].port, device_id=gripper_sim.device_id
        )
        gripper = RobotiqGripper(
            replace(RobotiqConfig(), modbus=gripper_link), on_io=audit.device_io
        )
        arm_link = ModbusConfig(port=servers[1].port, device_id=arm_sim.device_id)
        arm = ModbusArm(replace(ModbusArmConfig(), modbus=arm_link), on_io=audit.device_io)
        camera.connect()
        gripper.connect()
        arm.connect()
        gripper.activate()
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
            auto_confirm=auto_confirm,
        )
        yield DemoCell(loop, gripper_sim, arm_sim)
    finally:
        if loop is not None:
            loop.close()
        camera.close()
        for server in servers:
            server.stop()
        audit.close()


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
    from langgrasp.runtime.engine import GraspDetector
    from langgrasp.runtime.sim.robotiq import RobotiqSim

    scene_config = demo_scene_config()
    detector = GraspDetector(bundle)
    camera = SyntheticCamera(seed=seed, scene_config=scene_config)
    camera.connect()
    scene = camera.read().ground_truth
    command = command if command is not None else scene.text
    gripper_sim = RobotiqSim(object_width_m=object_width_m(scene, scene_config))
    with demo_cell(
        camera,
        detector,
        gripper_sim=gripper_sim,
        arm_sim=simulated_arm(arm_speed_m_s),
        audit=AuditLog(audit_path),
    ) as cell:
        cell.loop.command(command)
        cell.loop.wait_until_settled()
        report = cell.loop.last_report
        detection = cell.loop.last_detection
    text = report.format() if report is not None else "no report"
    overlay_path = None
    if out is not None and detection is not None:
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


def _home_pose() -> np.ndarray:
    """The simulated arm's home: above the camera's view, tool pointing down."""
    from langgrasp.runtime.geometry import top_down_pose

    return top_down_pose((*CAMERA_XY_M, WORKSPACE_TOP_M - WORKSPACE_MARGIN_M), 0.0)
