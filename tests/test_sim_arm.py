"""ArmSim on 127.0.0.1, driven register by register with a manual clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from langgrasp.errors import InputError
from langgrasp.runtime.devices import DeviceError
from langgrasp.runtime.modbus import ModbusConfig, ModbusLink
from langgrasp.runtime.modbus_arm import (
    FAULT_BAD_COMMAND,
    FAULT_BAD_SPEED,
    UR_PROFILE,
    ArmCommand,
    ControllerState,
    decode_pose,
    encode_pose,
    matrix_to_rotvec,
    rotvec_to_matrix,
)
from langgrasp.runtime.sim.arm import DEFAULT_HOME_POSE, ArmSim

SPEED_M_S = 0.1
ANGULAR_RAD_S = 1.0
POSE, SPEED, COMMAND, SEQUENCE, ACK, STATE, FAULT = (
    UR_PROFILE.address(n) for n in ("pose", "speed", "command", "sequence", "ack", "state", "fault")
)
READBACK = UR_PROFILE.address("readback")


class Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig():
    clock = Clock()
    sim = ArmSim(speed_m_s=SPEED_M_S, angular_speed_rad_s=ANGULAR_RAD_S, clock=clock)
    with sim.serve() as server:
        link = ModbusLink(ModbusConfig(port=server.port, device_id=sim.device_id))
        link.connect()
        yield sim, link, clock
        link.close()


def _send(link, command, sequence, pose=None, speed=1000) -> None:
    if pose is not None:
        link.write(POSE, [*encode_pose(pose), speed])
    link.write(COMMAND, [command, sequence])


def _status(link) -> tuple[int, int, int]:
    ack, state, fault = link.read(ACK, 3)
    return ack, state, fault


def _readback(link) -> np.ndarray:
    return decode_pose(link.read(READBACK, 6))


def _target(dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, turn=(0.0, 0.0, 0.0)):
    pose = DEFAULT_HOME_POSE.copy()
    pose[:3, 3] += [dx, dy, dz]
    pose[:3, :3] = pose[:3, :3] @ rotvec_to_matrix(turn)
    return decode_pose(encode_pose(pose))  # what the registers can carry


def test_starts_idle_at_home(rig):
    sim, link, _ = rig
    assert _status(link) == (0, ControllerState.IDLE, 0)
    np.testing.assert_allclose(_readback(link), sim.home_pose, atol=1e-9)
    assert sim.commands == [] and sim.targets == [] and sim.stops == 0


def test_move_interpolates_position_and_rotation_then_is_done(rig):
    sim, link, clock = rig
    target = _target(dx=0.1, turn=(0.0, 0.0, 0.5))  # 1 s by distance, 0.5 s by angle
    _send(link, ArmCommand.MOVE, 1, target, speed=1000)
    assert _status(link) == (1, ControllerState.MOVING, 0)
    clock.t += 0.5
    half = _readback(link)
    assert half[0, 3] == pytest.approx(DEFAULT_HOME_POSE[0, 3] + 0.05, abs=1e-4)
    turned = matrix_to_rotvec(sim.home_pose[:3, :3].T @ half[:3, :3])
    np.testing.assert_allclose(turned, [0.0, 0.0, 0.25], atol=2e-3)
    assert _status(link)[1] == ControllerState.MOVING
    clock.t += 0.51
    assert _status(link) == (1, ControllerState.DONE, 0)
    np.testing.assert_allclose(_readback(link), target, atol=1e-9)
    (recorded,) = sim.targets
    np.testing.assert_allclose(recorded, target, atol=1e-12)
    (command,) = sim.commands
    assert (command.sequence, command.command, command.speed) == (1, ArmCommand.MOVE, 1.0)
    assert command.t == 100.0


def test_half_speed_takes_twice_as_long(rig):
    _, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dz=-0.05), speed=500)
    clock.t += 0.9
    assert _status(link)[1] == ControllerState.MOVING
    clock.t += 0.11
    assert _status(link)[1] == ControllerState.DONE


def test_stop_halts_at_the_interpolated_pose(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dy=0.2))
    clock.t += 0.5
    link.write(COMMAND, [ArmCommand.STOP])  # no new sequence: honoured at once
    assert _status(link) == (1, ControllerState.STOPPED, 0)
    stopped = _readback(link)
    assert stopped[1, 3] == pytest.approx(DEFAULT_HOME_POSE[1, 3] + 0.05, abs=1e-4)
    clock.t += 10
    np.testing.assert_array_equal(_readback(link), stopped)
    assert sim.stops == 1 and sim.stop_times == [100.5]
    # A stop while idle is recorded but changes nothing.
    link.write(COMMAND, [ArmCommand.STOP])
    assert sim.stops == 2 and _status(link)[1] == ControllerState.STOPPED


def test_new_target_replaces_the_running_move(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.1))
    clock.t += 0.5
    second = _target(dx=0.05, dy=0.05)
    _send(link, ArmCommand.MOVE, 2, second)
    clock.t += 0.51  # from (0.35, 0) to (0.35, 0.05): 0.05 m in 0.5 s
    assert _status(link) == (2, ControllerState.DONE, 0)
    np.testing.assert_allclose(_readback(link), second, atol=1e-9)
    assert len(sim.targets) == 2


def test_home_and_stop_commands_with_a_sequence(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dz=-0.1))
    clock.t += 2
    _send(link, ArmCommand.HOME, 2)
    assert _status(link) == (2, ControllerState.MOVING, 0)
    clock.t += 2
    assert _status(link) == (2, ControllerState.DONE, 0)
    np.testing.assert_allclose(_readback(link), sim.home_pose, atol=1e-9)
    assert sim.commands[-1].command == ArmCommand.HOME
    np.testing.assert_allclose(sim.commands[-1].target, sim.home_pose)
    _send(link, ArmCommand.STOP, 3)
    assert _status(link) == (3, ControllerState.STOPPED, 0)
    assert len(sim.targets) == 1  # home is not a move target


def test_a_refused_command_also_halts_the_running_move(rig):
    _, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.1))
    clock.t += 0.5
    _send(link, ArmCommand.MOVE, 2, _target(dx=0.2), speed=0)
    assert _status(link) == (2, ControllerState.FAULT, FAULT_BAD_SPEED)
    halted = _readback(link)
    clock.t += 5
    np.testing.assert_array_equal(_readback(link), halted)
    assert halted[0, 3] == pytest.approx(DEFAULT_HOME_POSE[0, 3] + 0.05, abs=1e-4)


def test_rewriting_the_same_sequence_is_not_a_new_command(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.01))
    clock.t += 1
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.05))
    assert len(sim.commands) == 1 and _status(link)[1] == ControllerState.DONE


@pytest.mark.parametrize(
    ("command", "speed", "fault"),
    [(ArmCommand.NONE, 1000, FAULT_BAD_COMMAND), (9, 1000, FAULT_BAD_COMMAND),
     (ArmCommand.MOVE, 0, FAULT_BAD_SPEED), (ArmCommand.MOVE, 1001, FAULT_BAD_SPEED)],
)  # fmt: skip
def test_protocol_errors_are_faults_cleared_by_the_next_command(rig, command, speed, fault):
    _, link, clock = rig
    _send(link, command, 1, _target(dx=0.01), speed=speed)
    assert _status(link) == (1, ControllerState.FAULT, fault)
    _send(link, ArmCommand.MOVE, 2, _target(dx=0.01))
    clock.t += 1
    assert _status(link) == (2, ControllerState.DONE, 0)


def test_injected_fault_halts_and_latches(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.1))
    clock.t += 0.25
    sim.inject_fault(42)
    assert _status(link) == (1, ControllerState.FAULT, 42)
    halted = _readback(link)
    assert halted[0, 3] == pytest.approx(DEFAULT_HOME_POSE[0, 3] + 0.025, abs=1e-4)
    _send(link, ArmCommand.MOVE, 2, _target(dy=0.1))
    clock.t += 5
    assert _status(link) == (2, ControllerState.FAULT, 42)  # acknowledged, not executed
    np.testing.assert_array_equal(_readback(link), halted)
    sim.clear_fault()
    assert _status(link) == (2, ControllerState.IDLE, 0)
    with pytest.raises(InputError):
        sim.inject_fault(0)


def test_stall_never_acknowledges_but_counts_stops(rig):
    sim, link, clock = rig
    sim.stall()
    _send(link, ArmCommand.MOVE, 1, _target(dx=0.1))
    clock.t += 5
    assert _status(link) == (0, ControllerState.IDLE, 0)
    link.write(COMMAND, [ArmCommand.STOP])
    assert sim.stops == 1 and sim.commands == []
    sim.stall(False)
    _send(link, ArmCommand.MOVE, 2, _target(dx=0.1))
    assert _status(link)[0] == 2


def test_only_the_maps_registers_are_served(rig):
    _, link, _ = rig
    with pytest.raises(DeviceError, match="exception 2"):
        link.read(UR_PROFILE.address("fault") + 1, 1)


def test_constructor_checks():
    with pytest.raises(InputError, match="speeds"):
        ArmSim(speed_m_s=0)
    far = np.eye(4)
    far[0, 3] = 4.0  # beyond the int16 range of 0.1 mm registers
    with pytest.raises(InputError, match="cannot be encoded"):
        ArmSim(home_pose=far)
    home = ArmSim(home_pose=_pose_with_yaw(0.3, 0.1, 0.2, math.pi / 2)).home_pose
    assert home[0, 3] == pytest.approx(0.3)


def _pose_with_yaw(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotvec_to_matrix([0.0, 0.0, yaw])
    pose[:3, 3] = [x, y, z]
    return pose


def test_program_restart_halts_and_reports_idle_with_the_old_ack(rig):
    sim, link, clock = rig
    _send(link, ArmCommand.MOVE, 5, _target(dx=0.1))
    clock.t += 0.5  # half way
    assert _status(link) == (5, ControllerState.MOVING, 0)
    sim.restart_program()
    where = sim.pose
    assert _status(link) == (5, ControllerState.IDLE, 0)  # old ack, but not done
    clock.t += 5.0
    np.testing.assert_array_equal(sim.pose, where)  # halted where it was
