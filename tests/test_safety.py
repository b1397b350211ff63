"""Safety gate, guarded devices and watchdog; property test: nothing outside the box is sent."""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np
import pytest

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.io import Calibration, HandEyeCalibration
from langgrasp.calibration.transforms import make_transform
from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.devices import (
    Arm,
    ArmState,
    ArmStatus,
    Gripper,
    GripperState,
    GripperStatus,
)
from langgrasp.runtime.geometry import GraspGeometryConfig, GraspGeometryError, grasp_pose
from langgrasp.runtime.safety import (
    GuardedArm,
    GuardedGripper,
    SafetyConfig,
    SafetyError,
    SafetyGate,
    StopLatchedError,
    Watchdog,
)

BOX = SafetyConfig(
    workspace_min_m=(-0.5, -0.5, 0.0),
    workspace_max_m=(0.5, 0.5, 0.6),
    max_opening_m=0.085,
    min_quality=0.3,
    max_speed=0.5,
)


class RecordingArm(Arm):
    """An in-process arm that records every target that reaches it (and can report a pose)."""

    name = "recording-arm"

    def __init__(self, pose: np.ndarray | None = None) -> None:
        self.targets: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []  # where the arm was when each target arrived
        self.homes = 0
        self.stops = 0
        self.pose = pose

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def move_to(self, T_base_ee, speed=0.25, wait=True, timeout_s=30.0) -> ArmStatus:  # noqa: N803
        self.targets.append(np.array(T_base_ee, dtype=float))
        if self.pose is not None:
            self.starts.append(self.pose[:3, 3].copy())
        self.pose = np.array(T_base_ee, dtype=float)
        return ArmStatus(ArmState.IDLE, self.pose)

    def home(self, wait=True, timeout_s=30.0) -> ArmStatus:
        self.homes += 1
        return ArmStatus(ArmState.IDLE, self.pose)

    def stop(self) -> None:
        self.stops += 1

    def status(self) -> ArmStatus:
        return ArmStatus(ArmState.IDLE, self.pose)


class RecordingGripper(Gripper):
    """An in-process gripper that records every opening that reaches it."""

    name = "recording-gripper"
    max_width_m = 0.14

    def __init__(self) -> None:
        self.widths: list[float] = []
        self.stops = 0

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def activate(self, timeout_s=10.0) -> GripperStatus:
        return self.status()

    def move_to(self, width_m, speed=1.0, force=0.5) -> None:
        self.widths.append(width_m)

    def stop(self) -> None:
        self.stops += 1

    def status(self) -> GripperStatus:
        return GripperStatus(GripperState.AT_POSITION, 0.0, None)

    def wait(self, timeout_s=5.0) -> GripperStatus:
        return self.status()


def top_down(position, yaw=0.0) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
    return make_transform(rotation, position)


# -- config -------------------------------------------------------------------------------------


def test_config_rejects_inverted_box_and_bad_limits():
    with pytest.raises(InputError, match="must be below workspace_max_m"):
        SafetyConfig(workspace_min_m=(0, 0, 0), workspace_max_m=(1, -1, 1))
    with pytest.raises(InputError, match="3 finite numbers"):
        SafetyConfig(workspace_min_m=(0, 0, float("nan")))
    with pytest.raises(InputError, match="auto_confirm_quality"):
        SafetyConfig(min_quality=0.5, auto_confirm_quality=0.4)
    with pytest.raises(InputError, match="max_speed"):
        SafetyConfig(max_speed=0.0)
    assert SafetyConfig(workspace_min_m=[0, 0, 0], workspace_max_m=[1, 1, 1]).workspace_min_m == (
        0.0,
        0.0,
        0.0,
    )


# -- gate ---------------------------------------------------------------------------------------


def test_gate_accepts_inside_and_refuses_outside_with_reasons():
    audit = AuditLog(None)
    gate = SafetyGate(BOX, audit)
    pose = gate.check_pose(top_down([0.1, 0.2, 0.3]), "pregrasp")
    np.testing.assert_allclose(pose[:3, 3], [0.1, 0.2, 0.3])
    with pytest.raises(SafetyError, match="outside the workspace box"):
        gate.check_pose(top_down([0.1, 0.2, -0.01]), "descend")
    with pytest.raises(SafetyError, match=r"starts at .* outside the workspace box"):
        gate.check_pose(top_down([0.1, 0.2, 0.3]), "lift", start=np.array([0.9, 0.0, 0.3]))
    bad = top_down([0.1, 0.2, 0.3])
    bad[0, 3] = float("nan")
    with pytest.raises(SafetyError, match="NaN"):
        gate.check_pose(bad, "nan")
    sheared = top_down([0.1, 0.2, 0.3])
    sheared[:3, :3] *= 1.5
    with pytest.raises(SafetyError, match="not a rotation"):
        gate.check_pose(sheared, "scaled")
    with pytest.raises(SafetyError, match="max_speed"):
        gate.check_pose(top_down([0.1, 0.2, 0.3]), "fast", speed=0.9)
    decisions = [(r["step"], r["decision"]) for r in audit.tail(20, "safety")]
    assert decisions == [
        ("pregrasp", "allowed"),
        ("descend", "refused"),
        ("lift", "refused"),
        ("nan", "refused"),
        ("scaled", "refused"),
        ("fast", "refused"),
    ]


@pytest.mark.parametrize("width", [-0.001, 0.0851, float("nan"), float("inf"), "0.01"])
def test_gate_refuses_bad_openings(width):
    with pytest.raises(SafetyError, match="gripper opening"):
        SafetyGate(BOX).check_opening(width, "open")


@pytest.mark.parametrize("quality", [0.29, float("nan"), -1.0])
def test_gate_refuses_low_or_invalid_quality(quality):
    with pytest.raises(SafetyError, match="quality"):
        SafetyGate(BOX).check_quality(quality)
    assert SafetyGate(BOX).check_quality(0.3) == 0.3


# -- guarded devices ----------------------------------------------------------------------------


def test_dry_run_sends_nothing_but_logs_what_would_be_sent():
    audit = AuditLog(None)
    arm, gripper = RecordingArm(), RecordingGripper()
    gate = SafetyGate(BOX, audit)
    guarded_arm = GuardedArm(arm, gate, audit, execute=False)
    guarded_gripper = GuardedGripper(gripper, gate, audit, execute=False)
    guarded_arm.move_to(top_down([0.1, 0.0, 0.2]), 0.2, "pregrasp")
    guarded_arm.home()
    guarded_arm.stop()
    guarded_gripper.move_to(0.05, 1.0, 0.5, "pregrasp")
    guarded_gripper.close(1.0, 0.5)
    assert guarded_gripper.wait(1.0).state is GripperState.HOLDING  # assumed in a dry run
    guarded_gripper.stop()
    assert arm.targets == [] and arm.homes == 0 and arm.stops == 0
    assert gripper.widths == [] and gripper.stops == 0
    ops = [(r["device"], r["op"]) for r in audit.tail(20, "would_send")]
    assert ops == [
        ("recording-arm", "move_to"),
        ("recording-arm", "home"),
        ("recording-arm", "stop"),
        ("recording-gripper", "move_to"),
        ("recording-gripper", "move_to"),
        ("recording-gripper", "stop"),
    ]


def test_execute_sends_only_what_the_gate_allows():
    audit = AuditLog(None)
    arm = RecordingArm(pose=top_down([0.0, 0.0, 0.4]))
    gripper = RecordingGripper()
    gate = SafetyGate(BOX, audit)
    guarded_arm = GuardedArm(arm, gate, audit, execute=True)
    guarded_gripper = GuardedGripper(gripper, gate, audit, execute=True)
    guarded_arm.move_to(top_down([0.2, 0.0, 0.2]), 0.2, "pregrasp")
    with pytest.raises(SafetyError):
        guarded_arm.move_to(top_down([0.2, 0.0, 0.7]), 0.2, "too high")
    assert len(arm.targets) == 1
    # the arm reports a pose outside the box (moved by hand): no straight line from there
    arm.pose = top_down([0.8, 0.0, 0.3])
    with pytest.raises(SafetyError, match="starts at"):
        guarded_arm.move_to(top_down([0.2, 0.0, 0.2]), 0.2, "from outside")
    assert len(arm.targets) == 1
    guarded_gripper.open(1.0, 0.5)  # opens to min(unit stroke 0.14, max_opening_m 0.085)
    with pytest.raises(SafetyError):
        guarded_gripper.move_to(0.1, 1.0, 0.5, "too wide")
    assert gripper.widths == [0.085]
    guarded_arm.stop()
    guarded_gripper.stop()
    assert arm.stops == 1 and gripper.stops == 1


def test_guarded_devices_without_hardware_only_log():
    audit = AuditLog(None)
    gate = SafetyGate(BOX, audit)
    guarded = GuardedArm(None, gate, audit, execute=True)
    assert not guarded.present and not guarded.execute
    guarded.move_to(top_down([0.0, 0.0, 0.3]), 0.2, "pregrasp")
    np.testing.assert_allclose(guarded.status().pose[:3, 3], [0.0, 0.0, 0.3])
    assert audit.tail(5, "would_send")[-1]["op"] == "move_to"


# -- watchdog -----------------------------------------------------------------------------------


def test_watchdog_fires_once_when_not_kicked():
    fired = threading.Event()
    labels = []

    def on_timeout(label):
        labels.append(label)
        fired.set()

    dog = Watchdog(0.05, on_timeout)
    try:
        dog.arm("descend")
        assert fired.wait(10.0)
        assert labels == ["descend"]
        assert not dog.armed  # fires once, then waits to be armed again
    finally:
        dog.close()


def test_watchdog_stays_quiet_while_kicked_or_disarmed():
    labels = []
    dog = Watchdog(5.0, labels.append)
    try:
        dog.arm("lift")
        for _ in range(20):
            dog.kick()
            threading.Event().wait(0.005)
        dog.disarm()
        dog.kick()  # a kick while disarmed does not arm it
        assert not dog.armed
    finally:
        dog.close()
    assert labels == []
    with pytest.raises(InputError):
        Watchdog(0.0, labels.append)


# -- property: nothing outside the box ever reaches the arm -------------------------------------

CAMERA = CameraIntrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)
GEOMETRY = GraspGeometryConfig(min_valid_pixels=3, pregrasp_height_m=0.1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def looking_down(rng: np.random.Generator) -> np.ndarray:
    """A camera above the box looking roughly down (tilt up to ~0.3 rad)."""
    down = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(0, 0.3)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    return tilt @ down


def random_calibration(rng: np.random.Generator) -> tuple[Calibration, np.ndarray | None]:
    """Eye-to-hand or eye-in-hand, plausible (above the box) or arbitrary; and T_base_ee."""
    plausible = rng.random() < 0.7
    if rng.random() < 0.5:
        rotation = looking_down(rng) if plausible else random_rotation(rng)
        position = (
            rng.uniform([-0.6, -0.6, 0.3], [0.6, 0.6, 1.2])
            if plausible
            else (rng.uniform(-2, 2, size=3))
        )
        hand_eye = HandEyeCalibration("eye-to-hand", make_transform(rotation, position), "park")
        return Calibration(CAMERA, hand_eye=hand_eye), None
    t_ee_cam = make_transform(
        random_rotation(rng) if not plausible else np.eye(3), rng.uniform(-0.1, 0.1, 3)
    )
    rotation = looking_down(rng) if plausible else random_rotation(rng)
    t_base_ee = make_transform(rotation, rng.uniform([-0.7, -0.7, 0.2], [0.7, 0.7, 1.0]))
    hand_eye = HandEyeCalibration("eye-in-hand", t_ee_cam, "park")
    return Calibration(CAMERA, hand_eye=hand_eye), t_base_ee


def random_depth(rng: np.random.Generator) -> np.ndarray:
    depth = np.full((CAMERA.height, CAMERA.width), rng.uniform(0.05, 2.0))
    depth += rng.normal(0, rng.choice([0.0, 0.01, 0.3]), depth.shape)
    holes = rng.random(depth.shape) < rng.choice([0.0, 0.2, 0.9])
    depth[holes] = rng.choice([0.0, np.nan, np.inf, -1.0])
    return depth


def random_grasp(rng: np.random.Generator) -> Grasp:
    values = [
        rng.uniform(-10, CAMERA.width + 10),
        rng.uniform(-10, CAMERA.height + 10),
        rng.uniform(-math.pi, math.pi),
        rng.uniform(0, 60),
        rng.uniform(1, 20),
        rng.uniform(-0.2, 1.2),
    ]
    if rng.random() < 0.05:
        values[rng.integers(len(values))] = rng.choice([np.nan, np.inf])
    return Grasp(*values)


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """Hostile raw targets: random rigid, scaled, NaN, huge."""
    pose = make_transform(random_rotation(rng), rng.uniform(-1.0, 1.0, 3))
    kind = rng.integers(4)
    if kind == 1:
        pose[:3, :3] *= rng.uniform(0.5, 2.0)
    elif kind == 2:
        pose[rng.integers(3), rng.integers(4)] = rng.choice([np.nan, np.inf])
    elif kind == 3:
        pose[:3, 3] *= 1e3
    return pose


def pick_targets(pose, lift_m: float) -> list[tuple[str, np.ndarray]]:
    lift = pose.T_base_grasp.copy()
    lift[2, 3] += lift_m
    return [("pregrasp", pose.T_base_pregrasp), ("descend", pose.T_base_grasp), ("lift", lift)]


def drive(
    guarded: GuardedArm, grip: GuardedGripper, rng: np.random.Generator, trials: int, jog=None
):
    """Random detections and calibrations through geometry, gate and guarded devices.

    ``jog(rng)``, when given, may move the arm by hand (anywhere) before a trial.
    """
    counts = {"geometry_refused": 0, "sent": 0, "gate_refused": 0, "poses": 0}
    for _ in range(trials):
        if jog is not None:
            jog(rng)
        calibration, t_base_ee = random_calibration(rng)
        try:
            pose = grasp_pose(
                random_grasp(rng), random_depth(rng), calibration, t_base_ee, GEOMETRY
            )
        except (GraspGeometryError, InputError):
            counts["geometry_refused"] += 1
            targets = [("raw", random_pose(rng))]
        else:
            counts["poses"] += 1
            targets = pick_targets(pose, rng.uniform(0, 0.3))
            with contextlib.suppress(SafetyError):
                grip.move_to(pose.opening_m + rng.uniform(-0.02, 0.02), 1.0, 0.5, "pregrasp")
        for label, target in targets:
            try:
                guarded.move_to(target, float(rng.choice([0.1, 0.3, 0.5, 0.5, 0.9, np.nan])), label)
                counts["sent"] += 1
            except SafetyError:
                counts["gate_refused"] += 1
    return counts


def assert_inside(points: list[np.ndarray], config: SafetyConfig) -> None:
    low, high = np.array(config.workspace_min_m), np.array(config.workspace_max_m)
    for p in points:
        assert np.all(np.isfinite(p)) and np.all(p >= low) and np.all(p <= high), p


def test_property_no_target_outside_the_box_reaches_the_arm():
    rng = np.random.default_rng(20240611)
    audit = AuditLog(None, tail_size=16)
    gate = SafetyGate(BOX, audit)
    arm, gripper = RecordingArm(pose=top_down([0.0, 0.0, 0.4])), RecordingGripper()
    guarded = GuardedArm(arm, gate, audit, execute=True)
    grip = GuardedGripper(gripper, gate, audit, execute=True)

    def jog(rng):  # now and then someone moves the arm by hand, maybe out of the box
        if rng.random() < 0.05:
            inside = rng.random() < 0.5
            low, high = (BOX.workspace_min_m, BOX.workspace_max_m) if inside else (-1.0, 1.0)
            arm.pose = top_down(rng.uniform(low, high, 3))

    counts = drive(guarded, grip, rng, trials=3000, jog=jog)
    # every received target is a finite rigid pose inside the box; consecutive targets are the
    # two ends of each straight-line move, so every path lies inside the (convex) box
    assert_inside([t[:3, 3] for t in arm.targets], BOX)
    assert_inside(arm.starts, BOX)
    for target in arm.targets:
        np.testing.assert_allclose(target[:3, :3].T @ target[:3, :3], np.eye(3), atol=1e-3)
    assert all(0 <= w <= BOX.max_opening_m for w in gripper.widths)
    # the property is not vacuous: many targets were sent and many were refused
    assert counts["sent"] == len(arm.targets) > 100
    assert counts["gate_refused"] > 1000 and counts["geometry_refused"] > 300
    assert counts["poses"] > 300 and len(gripper.widths) > 100
    refusals = [r["reason"] for r in audit.tail(16, "safety") if r["decision"] == "refused"]
    assert refusals and all(refusals)


def test_property_against_the_simulated_arm_controller():
    from langgrasp.runtime.modbus import ModbusConfig
    from langgrasp.runtime.modbus_arm import ModbusArm, ModbusArmConfig
    from langgrasp.runtime.sim.arm import ArmSim

    rng = np.random.default_rng(7)
    config = SafetyConfig(
        workspace_min_m=(-0.5, -0.5, 0.0), workspace_max_m=(0.5, 0.5, 0.6), max_speed=1.0
    )
    sim = ArmSim(speed_m_s=100.0, angular_speed_rad_s=1000.0)
    server = sim.serve()
    audit = AuditLog(None)
    arm = ModbusArm(ModbusArmConfig(modbus=ModbusConfig(port=server.port)), on_io=audit.device_io)
    try:
        arm.connect()
        guarded = GuardedArm(arm, SafetyGate(config, audit), audit, execute=True)
        grip = GuardedGripper(None, SafetyGate(config, audit), audit)
        counts = drive(guarded, grip, rng, trials=60)
    finally:
        arm.disconnect()
        server.stop()
    assert_inside([t[:3, 3] for t in sim.targets], config)
    assert len(sim.targets) == counts["sent"] > 5
    assert counts["gate_refused"] > 5


# -- numbers, stop latch, quantized targets (review fixes) ----------------------------------------


def test_numpy_scalars_are_numbers_but_bools_are_not():
    gate = SafetyGate(BOX)
    assert (
        gate.quality_problem(np.int64(1)) is None and gate.quality_problem(np.float64(0.9)) is None
    )
    assert gate.quality_problem(np.float32(0.9)) is None
    assert gate.opening_problem(np.float32(0.05)) is None
    assert gate.speed_problem(np.float32(0.3)) is None
    assert "not a finite number" in gate.opening_problem(np.float32("nan"))
    assert "not a finite number" in gate.quality_problem(True)


def test_stop_latches_until_an_operator_command_clears_it():
    audit = AuditLog(None)
    arm, gripper = RecordingArm(pose=top_down([0.0, 0.0, 0.4])), RecordingGripper()
    gate = SafetyGate(BOX, audit)
    guarded_arm = GuardedArm(arm, gate, audit, execute=True)
    guarded_gripper = GuardedGripper(gripper, gate, audit, execute=True)
    guarded_arm.stop()
    guarded_gripper.stop()
    with pytest.raises(StopLatchedError, match="after a stop"):
        guarded_arm.move_to(top_down([0.2, 0.0, 0.2]), 0.2, "pregrasp")
    with pytest.raises(StopLatchedError):
        guarded_arm.home()
    with pytest.raises(StopLatchedError):
        guarded_gripper.move_to(0.05, 1.0, 0.5, "preopen")
    with pytest.raises(StopLatchedError):
        guarded_gripper.activate(1.0)
    assert arm.targets == [] and arm.homes == 0 and gripper.widths == []
    guarded_arm.clear_stop()
    guarded_gripper.clear_stop()
    guarded_arm.move_to(top_down([0.2, 0.0, 0.2]), 0.2, "pregrasp")
    guarded_gripper.move_to(0.05, 1.0, 0.5, "preopen")
    assert len(arm.targets) == 1 and gripper.widths == [0.05]


class StopRacingArm(RecordingArm):
    """A stop lands (from another thread) after the latch check, before the write arrives."""

    def __init__(self, pose) -> None:
        super().__init__(pose)
        self.guard: GuardedArm | None = None

    def move_to(self, T_base_ee, speed=0.25, wait=True, timeout_s=30.0) -> ArmStatus:  # noqa: N803
        assert self.guard is not None
        thread = threading.Thread(target=self.guard.stop)
        thread.start()
        thread.join()
        return super().move_to(T_base_ee, speed, wait, timeout_s)


def test_a_stop_racing_the_write_halts_the_arm_again():
    audit = AuditLog(None)
    arm = StopRacingArm(pose=top_down([0.0, 0.0, 0.4]))
    guarded = GuardedArm(arm, SafetyGate(BOX, audit), audit, execute=True)
    arm.guard = guarded
    with pytest.raises(StopLatchedError, match="stopped again"):
        guarded.move_to(top_down([0.2, 0.0, 0.2]), 0.2, "pregrasp")
    assert len(arm.targets) == 1 and arm.stops == 2  # the racing stop, then the second one


def test_gate_checks_the_quantized_target_the_arm_will_receive():
    from langgrasp.runtime.modbus_arm import ModbusArm, ModbusArmConfig, RegisterMap

    audit = AuditLog(None)
    box = SafetyConfig(workspace_min_m=(-0.5, -0.5, 0.0), workspace_max_m=(0.4997, 0.5, 0.6))
    coarse = ModbusArm(ModbusArmConfig(registers=RegisterMap(position_unit_m=1e-3)))
    guarded = GuardedArm(coarse, SafetyGate(box, audit), audit, execute=False)
    guarded.move_to(top_down([0.4993, 0.0, 0.3]), 0.2, "rounds in")  # 1 mm counts: 0.499 m
    assert audit.tail(1, "would_send")[-1]["pose"][0][3] == pytest.approx(0.499)
    with pytest.raises(SafetyError, match=r"target \(0.500, "):
        guarded.move_to(top_down([0.4996, 0.0, 0.3]), 0.2, "rounds out")  # inside, sent 0.500
    with pytest.raises(SafetyError, match="outside the workspace"):
        guarded.move_to(top_down([0.5002, 0.0, 0.3]), 0.2, "outside")  # sent 0.500, still no
    assert len(audit.tail(10, "would_send")) == 1
