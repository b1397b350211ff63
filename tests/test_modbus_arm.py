"""ModbusArm against ArmSim on 127.0.0.1; pose encoding; rotation vectors; config; the URScript."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from langgrasp.errors import InputError
from langgrasp.runtime.devices import (
    ArmState,
    DeviceDisconnectedError,
    DeviceError,
    DeviceFaultError,
    DeviceTimeoutError,
)
from langgrasp.runtime.modbus import ModbusConfig
from langgrasp.runtime.modbus_arm import (
    FAULT_MESSAGES,
    INT16_MAX,
    POSITION_UNIT_M,
    ROTATION_UNIT_RAD,
    SPEED_FULL_SCALE,
    UR_GENERAL_PURPOSE_FIRST,
    UR_GENERAL_PURPOSE_LAST,
    UR_PROFILE,
    ArmCommand,
    ControllerState,
    ModbusArm,
    ModbusArmConfig,
    RegisterMap,
    decode_pose,
    encode_pose,
    matrix_to_rotvec,
    pose_to_vector,
    quantize_pose,
    rotvec_to_matrix,
    vector_to_pose,
)
from langgrasp.runtime.sim.arm import DEFAULT_SPEED_M_S, ArmSim

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "ur_pick_server.script"
FAST_M_S = 5.0  # simulated tool speed for moves that should finish at once
SLOW_M_S = 0.02  # ... and for moves that must still be running when the test acts
POSITION_TOL_M = POSITION_UNIT_M  # register resolution, with rounding on both sides
ROTATION_TOL = 2 * ROTATION_UNIT_RAD


def _pose(x: float, y: float, z: float, rotvec=(math.pi, 0.0, 0.0)) -> np.ndarray:
    return vector_to_pose([x, y, z, *rotvec])


def _rotation_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(matrix_to_rotvec(a[:3, :3].T @ b[:3, :3])))


def _assert_pose_close(a: np.ndarray, b: np.ndarray) -> None:
    assert np.abs(a[:3, 3] - b[:3, 3]).max() <= POSITION_TOL_M
    assert _rotation_error(a, b) <= ROTATION_TOL


@pytest.fixture
def rig(request):
    """(sim, server, connected arm, recorded writes); speed from ``@pytest.mark.parametrize``."""
    speed = getattr(request, "param", FAST_M_S)
    sim = ArmSim(speed_m_s=speed, angular_speed_rad_s=speed * 10)
    server = sim.serve()
    writes = []
    config = ModbusArmConfig(
        modbus=ModbusConfig(port=server.port, timeout_s=0.5), ack_timeout_s=0.3
    )
    arm = ModbusArm(config, on_io=writes.append)
    arm.connect()
    yield sim, server, arm, writes
    arm.disconnect()
    server.stop()


def _wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# -- rotation vectors ----------------------------------------------------------------------------


def test_rotation_vector_round_trip_matches_opencv():
    rng = np.random.default_rng(0)
    for _ in range(200):
        axis = rng.normal(size=3)
        rotvec = axis / np.linalg.norm(axis) * rng.uniform(0, math.pi)
        matrix = rotvec_to_matrix(rotvec)
        np.testing.assert_allclose(matrix, cv2.Rodrigues(rotvec)[0], atol=1e-12)
        np.testing.assert_allclose(matrix_to_rotvec(matrix), rotvec, atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, math.pi - 1e-3, math.pi - 1e-7, math.pi])
@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, -2, 0.5)])
def test_rotation_vector_round_trip_near_zero_and_pi(angle, axis):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    matrix = rotvec_to_matrix(axis * angle)
    back = matrix_to_rotvec(matrix)
    assert np.linalg.norm(back) <= math.pi + 1e-12
    np.testing.assert_allclose(rotvec_to_matrix(back), matrix, atol=1e-9)
    if angle < math.pi - 1e-6:  # at pi, r and -r are the same rotation
        np.testing.assert_allclose(back, axis * angle, atol=1e-8)
    else:
        assert min(np.abs(back - axis * angle).max(), np.abs(back + axis * angle).max()) < 1e-6


# -- encoding ------------------------------------------------------------------------------------


def test_encode_decode_round_trip_and_twos_complement():
    pose = _pose(-0.1, 0.25, 0.0123, rotvec=(0.1, -0.2, 2.5))
    registers = encode_pose(pose)
    assert registers[0] == 0x10000 - 1000  # -0.1 m = -1000 counts of 0.1 mm
    assert registers[1] == 2500 and registers[2] == 123
    assert registers[3:] == [100, 0x10000 - 200, 2500]
    _assert_pose_close(decode_pose(registers), pose)
    np.testing.assert_allclose(
        pose_to_vector(decode_pose(registers)), pose_to_vector(pose), atol=1e-4
    )


def test_decoded_poses_encode_to_the_same_registers():
    rng = np.random.default_rng(1)
    poses = [_pose(0.3, 0.0, 0.4), _pose(0.1, 0.2, 0.3, rotvec=(0.0, -math.pi, 0.0))]
    for _ in range(100):
        axis = rng.normal(size=3)
        angle = rng.choice([rng.uniform(0, math.pi), math.pi - rng.uniform(0, 2e-3)])
        poses.append(_pose(*rng.uniform(-1, 1, 3), rotvec=axis / np.linalg.norm(axis) * angle))
    for pose in poses:
        registers = encode_pose(pose)
        assert encode_pose(decode_pose(registers)) == registers
        _assert_pose_close(decode_pose(registers), pose)


def test_unencodable_poses_are_input_errors():
    limit = INT16_MAX * POSITION_UNIT_M
    with pytest.raises(InputError, match=r"x = 3\.3000 m .*\+-3\.2767 m"):
        encode_pose(_pose(3.3, 0, 0))
    encode_pose(_pose(limit, -limit, 0))  # the edges still fit
    with pytest.raises(InputError, match="rotation"):
        encode_pose(np.diag([2.0, 1.0, 1.0, 1.0]))  # a scaled "rotation"
    with pytest.raises(InputError, match="4x4"):
        encode_pose(np.eye(3))
    with pytest.raises(InputError, match="4x4"):
        encode_pose(np.full((4, 4), np.nan))
    # A PLC map in millimetres has ten times the range.
    encode_pose(_pose(30.0, 0, 0), RegisterMap(position_unit_m=1e-3))


def test_register_map_rejects_overlaps():
    with pytest.raises(InputError, match="overlaps"):
        RegisterMap(speed=3)  # inside the 6 pose registers
    with pytest.raises(InputError, match="overlaps"):
        RegisterMap(readback=UR_PROFILE.base + 11)
    with pytest.raises(InputError, match="65535"):
        RegisterMap(base=0xFFFF - 3)
    with pytest.raises(InputError, match="readback"):
        RegisterMap(readback=-1)
    assert UR_PROFILE.register_numbers() == [*range(128, 140), *range(400, 406)]
    written = [n for n in UR_PROFILE.register_numbers() if n < UR_PROFILE.address("readback")]
    assert UR_GENERAL_PURPOSE_FIRST <= min(written) <= max(written) <= UR_GENERAL_PURPOSE_LAST


# -- config ----------------------------------------------------------------------------------------


def test_config_from_dict():
    config = ModbusArmConfig.from_dict(
        {
            "profile": "ur",
            "max_speed": 0.5,
            "modbus": {"host": "10.0.0.2", "device_id": 255},
            "registers": {"base": 200, "readback": False},
        }
    )
    assert config.modbus.port == 502 and config.modbus.host == "10.0.0.2"
    assert config.registers.address("sequence") == 208 and config.registers.readback is None
    assert config.max_speed == 0.5
    assert ModbusArmConfig.from_dict({}).registers == UR_PROFILE


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"speed": 1}, r"\[arm\]: unknown keys \['speed'\]; known keys: .*'max_speed'"),
        ({"profile": "kuka"}, "unknown register profile 'kuka'"),
        ({"modbus": {"ip": "x"}}, r"modbus: unknown key\(s\) ip; known keys: .*host"),
        ({"registers": {"seq": 1}}, r"registers: unknown keys \['seq'\]"),
        ({"max_speed": 2.0}, r"max_speed must be in \(0, 1\]"),
        ({"max_speed": "fast"}, "must be a number"),
        ({"modbus": {"port": "x"}}, r"\[arm\]"),
        ({"registers": {"base": -1}}, "base must be an integer"),
    ],
)
def test_config_errors(table, message):
    with pytest.raises(InputError, match=message):
        ModbusArmConfig.from_dict(table)


# -- against the simulator -------------------------------------------------------------------------


def test_move_reaches_target_and_readback_matches(rig):
    sim, _, arm, writes = rig
    target = _pose(0.4, -0.1, 0.2, rotvec=(2.9, 0.3, -0.2))
    status = arm.move_to(target, speed=0.5)
    assert status.state is ArmState.IDLE and status.message == "done"
    assert status.sequence == 1
    _assert_pose_close(status.pose, target)
    _assert_pose_close(sim.targets[-1], target)
    _assert_pose_close(arm.read_pose(), target)
    (command,) = sim.commands
    assert command.command == ArmCommand.MOVE and command.speed == 0.5
    # Pose and speed in one request, then command and sequence in the next.
    assert [w["address"] for w in writes] == [128, 135]
    assert writes[0]["values"] == [*encode_pose(target), SPEED_FULL_SCALE // 2]
    assert writes[1]["values"] == [ArmCommand.MOVE, 1]
    home = arm.home()
    _assert_pose_close(home.pose, sim.home_pose)
    assert sim.commands[-1].command == ArmCommand.HOME and home.sequence == 2


def test_speed_is_clamped_and_bad_input_sends_nothing(rig):
    sim, server, _, _ = rig
    writes = []
    config = ModbusArmConfig(modbus=ModbusConfig(port=server.port), max_speed=0.2)
    arm = ModbusArm(config, on_io=writes.append)
    arm.connect()
    with pytest.raises(InputError, match="cannot be encoded"):
        arm.move_to(_pose(5.0, 0, 0))
    for speed in (0.0, 1.5, True):
        with pytest.raises(InputError, match="speed"):
            arm.move_to(_pose(0.3, 0, 0.3), speed=speed)
    with pytest.raises(InputError, match="timeout_s"):
        arm.move_to(_pose(0.3, 0, 0.3), timeout_s=0)
    assert writes == [] and sim.commands == []
    arm.move_to(_pose(0.3, 0, 0.3), speed=1.0)
    assert sim.commands[-1].speed == pytest.approx(0.2)
    arm.disconnect()


def test_a_new_connection_continues_the_sequence(rig):
    sim, server, arm, _ = rig
    arm.move_to(_pose(0.3, 0.05, 0.3))
    other = ModbusArm(ModbusArmConfig(modbus=ModbusConfig(port=server.port)))
    other.connect()
    other.move_to(_pose(0.3, -0.05, 0.3))
    assert [c.sequence for c in sim.commands] == [1, 2]
    other.disconnect()


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_stop_from_another_thread_ends_the_move_where_it_is(rig):
    sim, _, arm, _ = rig
    start = sim.pose
    target = start.copy()
    target[0, 3] += 0.5  # 25 s at the slow speed
    outcome = {}

    def mover() -> None:
        try:
            arm.move_to(target, speed=1.0, timeout_s=60)
        except DeviceError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=mover)
    thread.start()
    moved = start[0, 3] + 5 * POSITION_UNIT_M  # a few register counts, visible in the readback
    _wait_until(lambda: sim.state is ControllerState.MOVING and sim.pose[0, 3] > moved)
    arm.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert type(outcome["error"]) is DeviceError and "stopped" in str(outcome["error"])
    assert sim.stops == 1
    status = arm.status()
    assert status.state is ArmState.STOPPED
    assert start[0, 3] < status.pose[0, 3] < target[0, 3]
    time.sleep(0.05)
    np.testing.assert_array_equal(arm.status().pose, status.pose)  # stays where stopped
    _assert_pose_close(sim.pose, status.pose)


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_no_wait_returns_once_acknowledged(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[1, 3] += 0.5
    status = arm.move_to(target, wait=False)
    assert status.state is ArmState.MOVING and status.sequence == 1
    arm.stop()
    assert arm.status().state is ArmState.STOPPED


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_move_not_done_in_time_is_stopped(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[2, 3] -= 0.2
    with pytest.raises(DeviceTimeoutError, match=r"not done within 0\.1 s.*stop command was sent"):
        arm.move_to(target, timeout_s=0.1)
    assert sim.stops == 1 and sim.state is ControllerState.STOPPED


def test_fault_is_a_fault_error(rig):
    sim, _, arm, _ = rig
    sim.inject_fault(1)
    with pytest.raises(DeviceFaultError, match="controller fault 1: target outside"):
        arm.move_to(_pose(0.3, 0, 0.3))
    status = arm.status()
    assert status.state is ArmState.FAULT and FAULT_MESSAGES[1] in status.message
    sim.clear_fault()
    arm.move_to(_pose(0.3, 0, 0.3))


def test_stalled_controller_times_out_and_is_stopped(rig):
    sim, _, arm, _ = rig
    sim.stall()
    with pytest.raises(DeviceTimeoutError, match=r"did not acknowledge.*program running"):
        arm.move_to(_pose(0.3, 0, 0.3))
    assert sim.stops == 1 and sim.commands == []


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_server_stopped_mid_move_is_a_disconnect(rig):
    sim, server, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5

    def kill_server() -> None:
        _wait_until(lambda: sim.state is ControllerState.MOVING)
        server.stop()

    killer = threading.Thread(target=kill_server)
    killer.start()
    with pytest.raises(DeviceDisconnectedError, match="may still be moving"):
        arm.move_to(target, timeout_s=30)
    killer.join(10)  # SimServer.stop must not run in two threads at once (fixture teardown)
    with pytest.raises(DeviceError):
        arm.stop()  # the link is down: a stop cannot be sent, and says so


def test_plc_layout_with_separate_command_and_sequence():
    layout = RegisterMap(
        base=0, pose=10, speed=0, command=2, sequence=4, ack=20, state=21, fault=30, readback=None
    )
    sim = ArmSim(register_map=layout, device_id=3, speed_m_s=FAST_M_S)
    writes = []
    with sim.serve() as server:
        arm = ModbusArm(
            ModbusArmConfig(modbus=ModbusConfig(port=server.port, device_id=3), registers=layout),
            on_io=writes.append,
        )
        arm.connect()
        status = arm.move_to(_pose(0.2, 0.1, 0.3))
        assert status.pose is None and status.state is ArmState.IDLE
        _assert_pose_close(sim.pose, _pose(0.2, 0.1, 0.3))
        arm.disconnect()
    # Pose, speed, command, and the sequence strictly last.
    assert [w["address"] for w in writes] == [10, 0, 2, 4]


# -- the URScript program --------------------------------------------------------------------------


def _script_constants() -> dict[str, float]:
    text = SCRIPT.read_text(encoding="utf-8")
    pattern = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*(-?[0-9.]+)\s*(?:#.*)?$", re.M)
    return {name: float(value) for name, value in pattern.findall(text)}


def test_urscript_uses_the_ur_profile_registers_and_codes():
    constants = _script_constants()
    expected = {
        f"REG_{axis}": UR_PROFILE.address("pose") + i
        for i, axis in enumerate(("X", "Y", "Z", "RX", "RY", "RZ"))
    }
    for name in ("speed", "command", "sequence", "ack", "state", "fault"):
        expected[f"REG_{name.upper()}"] = UR_PROFILE.address(name)
    assert {k: v for k, v in constants.items() if k.startswith("REG_")} == expected
    for command in ArmCommand:
        assert constants[f"CMD_{command.name}"] == command.value
    for state in ControllerState:
        assert constants[f"STATE_{state.name}"] == state.value
    for code in FAULT_MESSAGES:
        assert code in {v for k, v in constants.items() if k.startswith("FAULT_")}
    assert constants["POSITION_UNIT_M"] == UR_PROFILE.position_unit_m
    assert constants["ROTATION_UNIT_RAD"] == UR_PROFILE.rotation_unit_rad
    assert constants["SPEED_FULL_SCALE"] == SPEED_FULL_SCALE
    assert constants["MAX_SPEED_M_S"] == DEFAULT_SPEED_M_S  # the simulator moves like the script


def test_urscript_program_shape():
    text = SCRIPT.read_text(encoding="utf-8")
    for needle in (
        "read_port_register(",
        "write_port_register(REG_ACK, sequence)",
        "v = v - 65536",
        "movel(target_pose",
        "stopl(",
        "kill motion_thread",
        "movej(HOME_JOINTS_RAD",
    ):
        assert needle in text, needle
    # Every block opened is closed (def/thread/if/while ... end).
    opened = len(re.findall(r"^\s*(def|thread|if|while)\b", text, re.M))
    closed = len(re.findall(r"^\s*end\s*$", text, re.M))
    assert opened == closed
    # State is reported before the ack inside the command branch.
    assert text.index("start_motion(False)") < text.index("write_port_register(REG_ACK, sequence)")


# -- safety fixes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("position_unit_m", float("inf")),
        ("position_unit_m", float("nan")),
        ("position_unit_m", 1.0),
        ("position_unit_m", 0.01),
        ("rotation_unit_rad", 0.1),
        ("rotation_unit_rad", float("inf")),
        ("rotation_unit_rad", "1e-3"),
    ],
)
def test_register_units_must_be_finite_and_fine_enough(field, value):
    with pytest.raises(InputError, match=field):
        ModbusArmConfig.from_dict({"registers": {field: value}})


def test_coarsest_units_still_round_trip_within_one_count():
    coarse = RegisterMap(position_unit_m=1e-3, rotation_unit_rad=1e-2)
    wanted = _pose(0.3471, -0.2604, 0.0953, (math.pi - 0.004, 0.003, 0.0))
    sent = quantize_pose(wanted, coarse)
    assert np.abs(sent[:3, 3] - wanted[:3, 3]).max() <= coarse.position_unit_m
    assert _rotation_error(sent, wanted) <= math.sqrt(3) * coarse.rotation_unit_rad
    np.testing.assert_array_equal(encode_pose(sent, coarse), encode_pose(wanted, coarse))


class _LoseOneReply:
    """The real client, except that the next read gets no answer (as a dropped TCP reply)."""

    def __init__(self, client):
        self._client, self._lost = client, False

    def __getattr__(self, name):
        return getattr(self._client, name)

    def read_holding_registers(self, *args, **kwargs):
        from pymodbus.exceptions import ModbusIOException

        if not self._lost:
            self._lost = True
            raise ModbusIOException("no response (simulated lost reply)")
        return self._client.read_holding_registers(*args, **kwargs)


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_stop_after_one_lost_reply_reconnects_and_still_stops(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5
    arm.move_to(target, wait=False)
    assert sim.state is ControllerState.MOVING
    arm.link._client = _LoseOneReply(arm.link._client)
    with pytest.raises(DeviceTimeoutError):
        arm.status()
    assert not arm.link.connected
    arm.stop()  # reconnects once, then sends the stop
    assert sim.stops == 1 and sim.state is ControllerState.STOPPED


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_lost_link_during_a_wait_sends_a_stop_after_reconnecting(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5
    arm.move_to(target, wait=False)
    arm.link._client = _LoseOneReply(arm.link._client)
    with pytest.raises(DeviceDisconnectedError, match="a stop command was sent"):
        arm.move_to(target, timeout_s=60)  # same target again, the wait loses one reply
    assert sim.stops == 1 and sim.state is ControllerState.STOPPED


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_controller_program_restart_is_not_an_arrival(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5
    status = arm.move_to(target, wait=False)
    assert not arm.arrived(status, status.sequence)  # moving
    sim.restart_program()
    idle = arm.status()
    assert idle.state is ArmState.IDLE and idle.sequence == status.sequence
    assert not arm.arrived(idle, status.sequence)


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_program_restart_during_a_waiting_move_is_an_error(rig):
    sim, _, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5

    def restart() -> None:
        _wait_until(lambda: sim.state is ControllerState.MOVING)
        sim.restart_program()

    restarter = threading.Thread(target=restart)
    restarter.start()
    with pytest.raises(DeviceError, match="restarted"):
        arm.move_to(target, wait=True, timeout_s=60)
    restarter.join()


def test_arrival_needs_done_and_the_same_sequence(rig):
    sim, _, arm, _ = rig
    status = arm.move_to(sim.pose, wait=True)  # already there: done at once
    assert arm.arrived(status, status.sequence)
    assert not arm.arrived(status, status.sequence + 1)


@pytest.mark.parametrize("rig", [SLOW_M_S], indirect=True)
def test_connecting_to_a_moving_arm_stops_it_first(rig):
    sim, server, arm, _ = rig
    target = sim.pose.copy()
    target[0, 3] += 0.5
    arm.move_to(target, wait=False)
    other = ModbusArm(ModbusArmConfig(modbus=ModbusConfig(port=server.port, timeout_s=0.5)))
    other.connect()
    other.disconnect()
    assert sim.stops == 1 and sim.state is ControllerState.STOPPED
