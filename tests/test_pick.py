"""The pick loop against the simulated gripper and arm on 127.0.0.1, with a synthetic camera.

The detector here returns the synthetic scene's ground-truth grasps (the state machine is under
test, not the model); the calibration is a known eye-to-hand camera straight above the table.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from langgrasp.calibration.io import Calibration, HandEyeCalibration, save_calibration
from langgrasp.calibration.transforms import invert_transform, make_transform
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.cameras import SyntheticCamera
from langgrasp.runtime.config import robot_config_from_dict
from langgrasp.runtime.devices import Arm, ArmState, ArmStatus
from langgrasp.runtime.modbus import ModbusConfig
from langgrasp.runtime.modbus_arm import ArmCommand
from langgrasp.runtime.oracle import GroundTruthDetector
from langgrasp.runtime.pick import LoopState, PickLoop, build_loop
from langgrasp.runtime.robotiq import RobotiqCommand, RobotiqConfig, RobotiqGripper
from langgrasp.runtime.safety import SafetyConfig
from langgrasp.runtime.sim.arm import ArmSim
from langgrasp.runtime.sim.robotiq import RobotiqSim
from langgrasp.runtime.sim.server import SimServer

SEED = 3  # a bar with five grasps, 28 mm wide
TARGET = "bar"
SCENE = SceneConfig().resized(320, 240)
TABLE_Z = 0.0  # the table surface in the base frame (camera 0.65 m above it)
T_BASE_CAM = make_transform(
    np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
    [0.35, 0.0, TABLE_Z + SCENE.camera_height_m],
)
"""Straight down: image x along base -y, image y along base -x."""
QUANTUM_M = 2e-4  # arm registers hold 0.1 mm; allow two counts
WAIT_S = 30.0  # generous limit for waits on events (never a timing assertion)


class HoleCamera(SyntheticCamera):
    """Depth holes over the whole target object (a shiny or dark object)."""

    def read(self, timeout_s: float = 1.0):
        frame = super().read(timeout_s)
        ys, xs = np.nonzero(frame.ground_truth.mask)
        frame.depth_m[ys.min() - 8 : ys.max() + 9, xs.min() - 8 : xs.max() + 9] = 0.0
        return frame


class RgbOnlyCamera(SyntheticCamera):
    """Frames without depth (like an image folder or a webcam)."""

    has_depth = False

    def read(self, timeout_s: float = 1.0):
        frame = super().read(timeout_s)
        frame.depth_m = None
        return frame


@dataclass
class Rig:
    gripper: RobotiqSim
    arm: ArmSim
    gripper_server: SimServer
    arm_server: SimServer
    tmp_path: Path

    def calibration(self, setup: str = "eye-to-hand") -> Path:
        camera = SyntheticCamera(SEED, SCENE).intrinsics
        transform = T_BASE_CAM
        if setup == "eye-in-hand":  # the camera on the flange, frames taken at home
            transform = invert_transform(self.arm.home_pose) @ T_BASE_CAM
        hand_eye = HandEyeCalibration(setup, transform, "park")
        path = self.tmp_path / f"{setup}.json"
        return save_calibration(path, Calibration(camera, serial="SYNTHETIC", hand_eye=hand_eye))

    def config(self, **tables) -> dict:
        data = {
            "camera": {"kind": "synthetic", "seed": SEED, "width": 320, "height": 240},
            "calibration": {"path": str(self.calibration())},
            "gripper": {
                "poll_period_s": 0.005,
                "modbus": {
                    "transport": "rtu-over-tcp",
                    "port": self.gripper_server.port,
                    "device_id": 9,
                    "timeout_s": 2.0,
                },
            },
            "arm": {
                "poll_interval_s": 0.005,
                "ack_timeout_s": 5.0,
                "modbus": {"port": self.arm_server.port, "timeout_s": 2.0},
            },
            "motion": {
                "travel_speed": 1.0,
                "approach_speed": 1.0,
                "poll_interval_s": 0.005,
                "move_timeout_s": 60.0,
            },
            "safety": {
                "workspace_min_m": [0.05, -0.4, -0.05],
                "workspace_max_m": [0.65, 0.4, 0.5],
                "max_speed": 1.0,
                "watchdog_timeout_s": 10.0,
            },
            "place": {"position_m": [0.45, -0.3, 0.0], "release_height_m": 0.08},
            "loop": {"frame_timeout_s": 0.2, "reconnect_first_s": 0.01, "reconnect_max_s": 0.05},
            "audit": {"path": "audit.jsonl"},
        }
        for name, table in tables.items():
            if table is None:
                data.pop(name, None)
            else:
                data[name] = {**data.get(name, {}), **table}
        return data

    def loop(self, execute=True, camera=None, auto_confirm=False, **tables) -> PickLoop:
        config = robot_config_from_dict(self.config(**tables), self.tmp_path / "robot.toml")
        camera = camera or SyntheticCamera(SEED, SCENE)
        return build_loop(
            config,
            execute=execute,
            auto_confirm=auto_confirm,
            detector=GroundTruthDetector(camera),
            camera=camera,
        )


def make_rig(tmp_path: Path, arm_speed_m_s: float = 20.0) -> Rig:
    gripper = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)
    arm = ArmSim(speed_m_s=arm_speed_m_s, angular_speed_rad_s=100.0 * arm_speed_m_s)
    gripper_server = gripper.serve()
    try:
        arm_server = arm.serve()
    except Exception:
        gripper_server.stop()
        raise
    return Rig(gripper, arm, gripper_server, arm_server, tmp_path)


@pytest.fixture
def rig(tmp_path):
    rig = make_rig(tmp_path)
    yield rig
    rig.arm_server.stop()
    rig.gripper_server.stop()


@pytest.fixture
def slow_rig(tmp_path):
    """An arm that needs seconds per move, so a test can act while it moves."""
    rig = make_rig(tmp_path, arm_speed_m_s=0.02)
    yield rig
    rig.arm_server.stop()
    rig.gripper_server.stop()


def gripper_gotos(sim: RobotiqSim) -> list[tuple[bool, int]]:
    """(rGTO, rPR) of every command written after the activation."""
    commands = [RobotiqCommand.from_registers(values) for _, values in sim.writes]
    first = next(i for i, c in enumerate(commands) if c.activate and not c.go) + 1
    return [(c.go, c.position) for c in commands[first:]]


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def positions(targets) -> np.ndarray:
    return np.array([t[:3, 3] for t in targets])


# -- happy path ---------------------------------------------------------------------------------


def test_pick_and_place_sends_the_right_sequence(rig):
    changes = []
    with rig.loop() as loop:
        loop.add_listener(changes.append)
        reply = loop.command("um, pick up the bar please")
        assert reply.ok, reply.message
        assert reply.state == "awaiting_confirm"
        assert loop.detector.commands == ["pick up the bar"]
        offered = loop.last_report.chosen
        assert offered.rank == 1 and offered.usable
        rig.gripper.set_object(offered.pose.opening_m * 0.6)
        reply = loop.command("yes")
        assert reply.ok, reply.message
        assert loop.wait_until_settled(WAIT_S)
        report = loop.last_report
        assert report.outcome == "placed", report.message
        assert loop.state is LoopState.IDLE
        status = loop.status(refresh=True)
    pose = offered.pose
    lift = pose.T_base_grasp[:3, 3] + [0, 0, 0.1]
    release = np.array([0.45, -0.3, 0.08])
    above = release + np.array([0.0, 0.0, 0.1])
    expected = [pose.T_base_pregrasp[:3, 3], pose.T_base_grasp[:3, 3], lift, above, release, above]
    np.testing.assert_allclose(positions(rig.arm.targets), expected, atol=QUANTUM_M)
    assert rig.arm.commands[-1].command == ArmCommand.HOME
    assert rig.arm.stops == 0
    # grasp orientation: tool pointing down, opening axis at the grasp's yaw
    np.testing.assert_allclose(rig.arm.targets[1][:3, :3], pose.T_base_grasp[:3, :3], atol=2e-3)
    # gripper: open a little wider than the grasp, close, open to release
    open_ticks = RobotiqConfig().ticks_for_width(min(pose.opening_m + 0.01, 0.085))
    assert gripper_gotos(rig.gripper) == [(True, open_ticks), (True, 255), (True, open_ticks)]
    # listeners saw the states in order; the report and status are JSON-ready
    states = [c.state for c in changes]
    order = ["pregrasp", "descend", "close", "verify", "lift", "place", "release", "home", "idle"]
    assert [s for s in states if s in order][-len(order) :] == order
    assert report.device_writes and {w["device"] for w in report.device_writes} == {
        "arm",
        "gripper",
    }
    assert "placed" in report.format()
    json.dumps(report.to_dict())
    json.dumps(status)
    assert status["gripper"]["state"] == "at_position" and status["arm"]["state"] == "idle"
    records = [json.loads(line) for line in (rig.tmp_path / "audit.jsonl").read_text().splitlines()]
    events = {r["event"] for r in records}
    assert {"command", "detection", "safety", "state", "device_write", "report"} <= events
    assert all(r["decision"] == "allowed" for r in records if r["event"] == "safety")


def test_dry_run_computes_everything_and_sends_nothing(rig):
    with rig.loop(execute=False) as loop:
        assert loop.command("pick the bar").ok
        reply = loop.command("confirm")
        assert "dry run" in reply.message
        assert loop.wait_until_settled(WAIT_S)
        report = loop.last_report
    assert report.outcome == "placed" and report.dry_run
    assert "nothing was sent" in report.message
    assert rig.arm.commands == [] and rig.arm.stops == 0
    assert rig.gripper.writes == []  # not even the activation
    ops = [(w["device"], w["op"], w.get("step")) for w in report.would_send]
    arm_steps = [step for device, op, step in ops if device == "arm" and op == "move_to"]
    assert arm_steps == ["pregrasp", "descend", "lift", "place_above", "place", "retreat"]
    assert ("arm", "home", "home") in ops
    assert report.device_writes == []


def test_next_offers_the_next_ranked_grasp_and_confirm_executes_it(rig):
    with rig.loop() as loop:
        assert loop.command("grab the bar").ok
        first = loop.last_report.chosen
        reply = loop.command("next one")
        assert reply.ok and "#2" in reply.message
        second = loop.last_report.chosen
        assert second.rank == 2
        assert loop.status()["offered"] == 2
        rig.gripper.set_object(second.pose.opening_m * 0.6)
        assert loop.command("do it").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.last_report.outcome == "placed"
        assert not loop.command("next").ok  # nothing offered any more
    np.testing.assert_allclose(
        rig.arm.targets[0][:3, 3], second.pose.T_base_pregrasp[:3, 3], atol=QUANTUM_M
    )
    assert not np.allclose(first.pose.position_m, second.pose.position_m)


def test_auto_confirm_above_the_quality_threshold(rig):
    rig.gripper.set_object(0.02)
    with rig.loop(safety={"auto_confirm_quality": 0.9}) as loop:
        reply = loop.command("pick the bar")
        assert reply.ok and reply.message.startswith("auto-confirmed")
        assert loop.wait_until_settled(WAIT_S)
        assert loop.last_report.outcome == "placed"


def test_missed_grasp_reopens_and_moves_back_up(rig):
    with rig.loop() as loop:  # nothing between the fingers: they close fully
        assert loop.command("pick the bar").ok
        pose = loop.last_report.chosen.pose
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        report = loop.last_report
    assert report.outcome == "missed" and "without holding" in report.message
    np.testing.assert_allclose(
        positions(rig.arm.targets),
        [pose.T_base_pregrasp[:3, 3], pose.T_base_grasp[:3, 3], pose.T_base_pregrasp[:3, 3]],
        atol=QUANTUM_M,
    )


def test_object_lost_during_the_lift_stops_the_pick(rig):
    with rig.loop() as loop:
        loop.add_listener(lambda c: c.state == "lift" and rig.gripper.set_object(None))
        assert loop.command("pick the bar").ok
        rig.gripper.set_object(loop.last_report.chosen.pose.opening_m * 0.6)
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED
        assert loop.last_report.outcome == "dropped"
    assert len(rig.arm.targets) == 3  # pre-grasp, grasp, lift; never went to the place pose


# -- stop and faults ----------------------------------------------------------------------------


def test_stop_during_a_motion_stops_the_arm_at_once(slow_rig):
    rig = slow_rig
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        result = {}
        thread = threading.Thread(target=lambda: result.update(reply=loop.command("stop!")))
        thread.start()  # stop comes from another thread while the worker waits on the motion
        thread.join(WAIT_S)
        assert result["reply"].ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED
        assert loop.last_report.outcome == "stopped"
    assert rig.arm.stops >= 1
    assert rig.arm.state.name == "STOPPED"
    assert len(rig.arm.targets) == 1  # only the pre-grasp was ever sent
    assert (True, 255) not in gripper_gotos(rig.gripper)  # never closed


def test_arm_server_dies_mid_pick_then_reconnects(slow_rig):
    rig = slow_rig
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        rig.arm_server.stop()
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
        message = loop.last_report.message
        assert "arm" in message and "reconnects" in message
        status = loop.status()
        assert (
            status["arm"]["lost"] and "reconnects on the next command" in status["arm"]["message"]
        )
        assert not status["gripper"]["lost"]  # only the arm's link went down
        assert (True, 255) not in gripper_gotos(rig.gripper)  # never closed
        # the controller comes back on the same port: the next command reconnects
        rig.arm = ArmSim(speed_m_s=20.0)
        rig.arm_server = SimServer(rig.arm.sim_device(), port=rig.arm_server.port).start()
        assert loop.command("home").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.IDLE, loop.status()["message"]
        assert not loop.status()["arm"]["lost"]
    assert rig.arm.commands[-1].command == ArmCommand.HOME


def gripper_lost_and_back(rig: Rig, loop: PickLoop, sim: RobotiqSim) -> None:
    """The gripper's link goes down, the loop notices, ``sim`` answers on the same port again."""
    port = rig.gripper_server.port
    rig.gripper_server.stop()
    assert loop.status(refresh=True)["gripper"]["lost"]  # the refresh could not read it
    rig.gripper = sim
    rig.gripper_server = SimServer(sim.sim_device(), port=port, framer="rtu", name="robotiq")
    rig.gripper_server.start()
    sim.clear_writes()


def activation_writes(sim: RobotiqSim) -> list[RobotiqCommand]:
    commands = [RobotiqCommand.from_registers(values) for _, values in sim.writes]
    return [c for c in commands if c.activate and not c.go]


@pytest.mark.parametrize(
    ("fault", "needle"), [(None, "not activated (state reset)"), (14, "gFLT 14")]
)
def test_reconnected_gripper_needing_activation_waits_for_the_operator(rig, fault, needle):
    with rig.loop() as loop:
        fresh = RobotiqSim(finger_speed_m_s=5.0, activation_s=0.01)  # power-cycled: reset
        if fault is not None:  # the same unit, now with a fault that needs re-activation
            fresh = rig.gripper
            fresh.inject_fault(fault)
        gripper_lost_and_back(rig, loop, fresh)
        for line in ("pick the bar", "open"):
            reply = loop.command(line)
            assert loop.wait_until_settled(WAIT_S)
            message = reply.message if line != "open" else loop.status()["message"]
            assert needle in message and "say 'activate'" in message, message
            assert loop.state is LoopState.IDLE
        assert fresh.writes == []  # no activation (nor anything else) was sent
        assert loop.last_report.outcome == "refused"
        reply = loop.command("activate the gripper")
        assert reply.ok and "open and close fully" in reply.message
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.IDLE, loop.status()["message"]
        assert len(activation_writes(fresh)) == 1
        assert loop.command("pick the bar").ok
        fresh.set_object(loop.last_report.chosen.pose.opening_m * 0.6)
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.last_report.outcome == "placed", loop.last_report.message
    assert len(activation_writes(fresh)) == 1  # only the operator's


def test_stop_during_the_activation_halts_it_at_once(rig):
    # the activation's own limit is far above WAIT_S: only the stop can end its wait in time
    with rig.loop(motion={"activate_timeout_s": 600.0}) as loop:
        slow = RobotiqSim(finger_speed_m_s=5.0, activation_s=60.0)  # power-cycled, slow to activate
        gripper_lost_and_back(rig, loop, slow)
        assert loop.command("activate the gripper").ok
        wait_for(lambda: len(activation_writes(slow)) == 1, "rACT written")
        assert loop.state is LoopState.ACTIVATING
        assert loop.command("stop").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED, loop.status()["message"]
    assert slow.writes[-1] == (1000, [0, 0, 0])  # left in reset: the activation was halted
    assert not slow.snapshot().active


def test_over_temperature_after_a_reconnect_is_refused_until_it_clears(rig):
    with rig.loop() as loop:
        rig.gripper.inject_fault(8)
        gripper_lost_and_back(rig, loop, rig.gripper)
        reply = loop.command("pick the bar")
        assert not reply.ok and "over-temperature" in reply.message
        rig.gripper.clear_fault()  # cooled down: still activated, nothing to re-activate
        assert loop.command("pick the bar").ok
    assert rig.gripper.writes == []


def test_activate_is_logged_only_in_a_dry_run(rig):
    with rig.loop(execute=False) as loop:
        reply = loop.command("activate")
        assert reply.ok and "dry run" in reply.message
        assert loop.wait_until_settled(WAIT_S)
        ops = [r["op"] for r in loop.audit.tail(100, "would_send")]
    assert ops == ["activate"] and rig.gripper.writes == []


def test_arm_controller_not_answering_stops_the_pick(rig):
    rig.arm.stall()
    with rig.loop(arm={"ack_timeout_s": 0.5}) as loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
        assert "did not acknowledge" in loop.last_report.message
    assert rig.arm.targets == [] and rig.arm.stops >= 1
    assert (True, 255) not in gripper_gotos(rig.gripper)


def test_gripper_fault_aborts_the_pick(rig):
    with rig.loop() as loop:
        loop.add_listener(lambda c: c.state == "close" and rig.gripper.inject_fault(14))
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
        message = loop.last_report.message
    assert "gFLT 14" in message and "overcurrent" in message and "aborted" in message
    assert len(rig.arm.targets) == 2  # pre-grasp and grasp; never lifted
    assert rig.arm.stops >= 1


def test_camera_stall_reconnects_or_reports_degraded(rig):
    camera = SyntheticCamera(SEED, SCENE)
    with rig.loop(camera=camera, loop={"camera_reconnect_attempts": 2}) as loop:
        writes = len(rig.gripper.writes)
        camera.stall()
        reply = loop.command("pick the bar")
        assert not reply.ok and "stopped delivering frames" in reply.message
        assert "nothing moved" in reply.message
        assert loop.status()["camera"]["degraded"]
        assert camera.connect_count == 3  # the first connect and two reconnections
        assert rig.arm.commands == [] and len(rig.gripper.writes) == writes
        camera.stall(until_reconnect=True)  # a USB drop that reopening fixes
        reply = loop.command("pick the bar")
        assert reply.ok, reply.message
        assert not loop.status()["camera"]["degraded"]


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("outside", "outside the workspace box"),
        ("holes", "not enough depth"),
        ("not_found", "not found"),
        ("rgb_only", "RGB only"),
        ("no_calibration", "no calibration"),
    ],
)
def test_nothing_moves_when_the_grasp_cannot_be_executed(rig, kind, needle):
    camera = {"holes": HoleCamera, "rgb_only": RgbOnlyCamera}.get(kind, SyntheticCamera)(
        SEED, SCENE
    )
    tables = {}
    if kind == "outside":  # the box ends 20 cm above the table
        tables = {"safety": {"workspace_min_m": [0.05, -0.4, 0.2]}, "place": None}
    if kind == "no_calibration":
        tables = {"calibration": None}
    command = "pick the unicorn" if kind == "not_found" else "pick the bar"
    with rig.loop(camera=camera, **tables) as loop:
        writes = len(rig.gripper.writes)
        reply = loop.command(command)
        assert not reply.ok and needle in reply.message
        assert loop.state is LoopState.IDLE
        assert not loop.command("confirm").ok
        assert loop.last_report.outcome in ("refused", "not_found")
        if kind in ("rgb_only", "no_calibration"):  # 2D grasps are still reported
            candidates = loop.status()["candidates"]
            assert candidates and all(c["pose"] is None and c["grasp"] for c in candidates)
    assert rig.arm.commands == [] and rig.arm.stops == 0
    assert len(rig.gripper.writes) == writes


def test_eye_in_hand_reads_the_arm_pose_at_capture(rig):
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        fixed = loop.last_report.chosen.pose
    eye_in_hand = {"path": str(rig.calibration("eye-in-hand"))}
    with rig.loop(calibration=eye_in_hand) as loop:
        assert loop.command("pick the bar").ok
        moving = loop.last_report.chosen.pose
        status = loop.status()
    np.testing.assert_allclose(status["detection"]["T_base_ee"], rig.arm.home_pose, atol=1e-3)
    np.testing.assert_allclose(moving.position_m, fixed.position_m, atol=1e-3)
    assert abs(moving.yaw_rad - fixed.yaw_rad) < 0.01


def test_place_outside_the_workspace_is_a_config_error(rig):
    from langgrasp.errors import InputError

    with pytest.raises(InputError, match=r"\[place\] place: target .* outside the workspace"):
        rig.loop(place={"position_m": [0.45, -0.6, 0.0]})


def test_busy_loop_refuses_new_commands_but_always_stops(slow_rig):
    rig = slow_rig
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        for command in ("pick the bar", "home", "open", "confirm"):
            reply = loop.command(command)
            assert not reply.ok and "busy" in reply.message
        assert loop.command("halt").ok
        assert loop.wait_until_settled(WAIT_S)


def test_loop_needs_no_devices_for_a_dry_run():
    camera = SyntheticCamera(SEED, SCENE)  # no simulators, no robot.toml
    calibration = Calibration(
        camera.intrinsics, hand_eye=HandEyeCalibration("eye-to-hand", T_BASE_CAM, "park")
    )
    loop = PickLoop(camera, GroundTruthDetector(camera), calibration, audit=AuditLog(None))
    camera.connect()
    with loop:
        assert loop.command("pick the bar").ok
        assert loop.command("go").ok
        assert loop.wait_until_settled(WAIT_S)
        report = loop.last_report
        assert report.outcome == "held"  # no place pose
        assert loop.status()["arm"]["state"] == "absent"
        assert not loop.command("home").ok


class HangingArm(Arm):
    """An in-process arm whose status read hangs during a move until it is stopped."""

    name = "arm"

    def __init__(self) -> None:
        self.state = ArmState.IDLE
        self.stopped = threading.Event()
        self.stop_threads: list[str] = []

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def move_to(self, T_base_ee, speed=0.25, wait=True, timeout_s=30.0):  # noqa: N803
        self.state = ArmState.MOVING
        return ArmStatus(ArmState.MOVING, None)

    def home(self, wait=True, timeout_s=30.0):
        return self.move_to(None)

    def stop(self) -> None:
        self.stop_threads.append(threading.current_thread().name)
        self.state = ArmState.STOPPED
        self.stopped.set()

    def status(self):
        if self.state is ArmState.MOVING:  # the loop stalls here (a hung read)
            self.stopped.wait(WAIT_S)
        return ArmStatus(self.state, None)


def test_watchdog_stops_the_arm_when_the_loop_stalls(rig):
    arm = HangingArm()
    camera = SyntheticCamera(SEED, SCENE)
    camera.connect()
    calibration = Calibration(
        camera.intrinsics, hand_eye=HandEyeCalibration("eye-to-hand", T_BASE_CAM, "park")
    )
    gripper = RobotiqGripper(
        RobotiqConfig(
            modbus=ModbusConfig("rtu-over-tcp", port=rig.gripper_server.port, device_id=9)
        )
    )
    gripper.connect()
    gripper.activate(WAIT_S)
    loop = PickLoop(
        camera,
        GroundTruthDetector(camera),
        calibration,
        arm=arm,
        gripper=gripper,
        safety=SafetyConfig(
            workspace_min_m=(0.05, -0.4, -0.05),
            workspace_max_m=(0.65, 0.4, 0.5),
            watchdog_timeout_s=0.1,
        ),
        execute=True,
    )
    with loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
        assert "watchdog" in loop.last_report.message
    assert arm.stop_threads and arm.stop_threads[0] == "watchdog"


# -- stop races and lost links (review fixes) ----------------------------------------------------


def _stop_from_another_thread(loop) -> None:
    thread = threading.Thread(target=loop.stop)
    thread.start()
    thread.join(WAIT_S)


def test_stop_between_the_stop_check_and_the_arm_write_is_not_lost(slow_rig):
    rig = slow_rig
    with rig.loop() as loop:
        check_pose = loop.gate.check_pose
        fired = []

        def stop_inside_the_gate(*args, **kwargs):
            if not fired:  # the worker is past its own stop check, about to write
                fired.append(True)
                _stop_from_another_thread(loop)
            return check_pose(*args, **kwargs)

        loop.gate.check_pose = stop_inside_the_gate
        assert loop.command("pick the bar").ok
        rig.gripper.set_object(0.02)
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED and loop.last_report.outcome == "stopped"
    assert rig.arm.commands == []  # the move was refused by the stop latch
    assert rig.arm.state.name == "IDLE"


def test_stop_between_the_stop_check_and_the_gripper_write_is_not_lost(rig):
    with rig.loop() as loop:
        check_opening = loop.gate.check_opening

        def stop_before_closing(width_m, label):
            if label == "close":
                _stop_from_another_thread(loop)
            return check_opening(width_m, label)

        loop.gate.check_opening = stop_before_closing
        assert loop.command("pick the bar").ok
        rig.gripper.set_object(0.02)
        assert loop.command("confirm").ok
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED
    assert (True, 255) not in gripper_gotos(rig.gripper)  # never closed


def test_confirm_racing_a_stop_is_refused(rig):
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        arm_stop = loop._arm.stop
        in_stop = threading.Event()

        def slow_stop():  # a stop whose Modbus round trip takes a while
            in_stop.set()
            time.sleep(0.2)
            return arm_stop()

        loop._arm.stop = slow_stop
        thread = threading.Thread(target=loop.stop)
        thread.start()
        assert in_stop.wait(WAIT_S)  # stop() is sending the arm stop now
        assert not loop.confirm().ok
        thread.join(WAIT_S)
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.STOPPED
        assert not loop.confirm().ok  # the stale offer stays dead
    assert rig.arm.targets == []


def test_one_lost_reply_mid_motion_still_stops_the_arm(slow_rig):
    from pymodbus.exceptions import ModbusIOException

    rig = slow_rig
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        assert loop.command("confirm").ok
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        client = loop._arm._arm.link._client
        read = client.read_holding_registers
        lost = []

        def lose_one(*args, **kwargs):
            if not lost:
                lost.append(True)
                raise ModbusIOException("no response (simulated lost reply)")
            return read(*args, **kwargs)

        client.read_holding_registers = lose_one
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
    assert lost and rig.arm.stops >= 1
    assert rig.arm.state.name == "STOPPED"


def test_controller_program_restart_mid_move_halts_the_pick(slow_rig):
    rig = slow_rig
    with rig.loop() as loop:
        assert loop.command("pick the bar").ok
        rig.gripper.set_object(0.02)
        assert loop.command("confirm").ok
        wait_for(lambda: rig.arm.state.name == "MOVING", "the arm to move")
        rig.arm.restart_program()  # halted where it is, state idle, old sequence acknowledged
        assert loop.wait_until_settled(WAIT_S)
        assert loop.state is LoopState.FAULT
        # Either the driver (idle while it waits) or the loop (idle without arriving) notices.
        message = loop.last_report.message
        assert "idle" in message and ("without arriving" in message or "restarted" in message)
        steps = [s["step"] for s in loop.last_report.steps]
    # Never descended (the pre-grasp step is listed or not, depending on who noticed first).
    assert steps in (["preopen"], ["preopen", "pregrasp"])
    assert len(rig.arm.targets) == 1
    assert (True, 255) not in gripper_gotos(rig.gripper)
