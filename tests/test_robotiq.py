"""Robotiq driver: register encoding vs documented frames, config, the driver on a loopback sim."""

from __future__ import annotations

import math
import threading
import time

import pytest

from langgrasp.errors import InputError
from langgrasp.runtime.devices import (
    DeviceDisconnectedError,
    DeviceError,
    DeviceFaultError,
    DeviceStoppedError,
    DeviceTimeoutError,
    GripperState,
)
from langgrasp.runtime.modbus import ModbusConfig, ModbusLink
from langgrasp.runtime.robotiq import (
    COMMAND_REGISTER,
    REGISTER_COUNT,
    STATUS_REGISTER,
    RobotiqCommand,
    RobotiqConfig,
    RobotiqGripper,
    RobotiqRawStatus,
    TickCalibration,
    activate_command,
    bytes_to_registers,
    coerce_value,
    fraction_to_byte,
    goto_command,
    modbus_config_from_dict,
    registers_to_bytes,
    reset_command,
)
from langgrasp.runtime.sim.robotiq import RobotiqSim
from langgrasp.runtime.sim.server import free_port

# Raw RTU frames from howardjchen/robotiq_850:README.md, quoted in shared/research/runtime.md 3.1.
FRAME_RESET = "09 10 03 E8 00 03 06 00 00 00 00 00 00 73 30"
FRAME_CLOSE_FULL = "09 10 03 E8 00 03 06 09 00 00 FF FF FF 42 29"
FRAME_STATUS_POLL = "09 03 07 D0 00 03 04 0E"

FAST_M_S = 8.5  # a full 2F-85 stroke in 10 ms
SLOW_M_S = 0.02  # a full 2F-85 stroke in ~4 s: time to interrupt a motion
TICK_M = 0.085 / 255  # one tick of a nominally calibrated 2F-85


def rtu_frame(request) -> str:
    """The RTU frame pymodbus sends for ``request``, as spaced upper-case hex."""
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU

    return FramerRTU(DecodePDU(False)).buildFrame(request).hex(" ").upper()


def write_frame(registers: list[int]) -> str:
    from pymodbus.pdu.register_message import WriteMultipleRegistersRequest

    return rtu_frame(
        WriteMultipleRegistersRequest(
            dev_id=9, address=COMMAND_REGISTER, count=REGISTER_COUNT, registers=registers
        )
    )


# -- register encoding ---------------------------------------------------------------------------


def test_close_full_speed_force_matches_documented_frame():
    registers = goto_command(255, 255, 255).to_registers()
    assert registers == [0x0900, 0x00FF, 0xFFFF]
    assert registers_to_bytes(registers) == bytes.fromhex("09 00 00 FF FF FF")
    assert write_frame(registers) == FRAME_CLOSE_FULL


def test_reset_and_activate_commands():
    assert reset_command().to_registers() == [0, 0, 0]
    assert write_frame(reset_command().to_registers()) == FRAME_RESET
    assert activate_command().to_registers() == [0x0100, 0, 0]


def test_status_poll_frame_reads_three_registers_at_2000():
    from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

    request = ReadHoldingRegistersRequest(dev_id=9, address=STATUS_REGISTER, count=REGISTER_COUNT)
    assert rtu_frame(request) == FRAME_STATUS_POLL


def test_command_fields_and_round_trip():
    command = RobotiqCommand(
        activate=True, go=True, auto_release=True, release_opening=True, position=0x12,
        speed=0x34, force=0x56,
    )  # fmt: skip
    assert command.to_bytes() == bytes([0x39, 0, 0, 0x12, 0x34, 0x56])
    assert RobotiqCommand.from_registers(command.to_registers()) == command
    assert goto_command(228, 0xFF, 0x80).to_registers() == [0x0900, 0x00E4, 0xFF80]


def test_status_decoding_of_documented_values():
    # runtime.md 3.1: 0x3100 after activation; 0xF900, 0x00E4, 0xE400 after a go-to 228.
    activated = RobotiqRawStatus.from_registers([0x3100, 0, 0])
    assert activated.active and not activated.go and activated.object == 0
    arrived = RobotiqRawStatus.from_registers([0xF900, 0x00E4, 0xE400])
    assert arrived.active and arrived.go and arrived.object == 3
    assert (arrived.requested_position, arrived.position, arrived.current) == (228, 228, 0)


def test_status_fault_nibbles_and_round_trip():
    status = RobotiqRawStatus.from_registers([0xB900, 0x1D80, 0x8705])
    assert (status.fault, status.controller_fault) == (13, 1)
    assert (status.object, status.requested_position, status.position, status.current) == (
        2, 0x80, 0x87, 5,
    )  # fmt: skip
    assert status.to_registers() == [0xB900, 0x1D80, 0x8705]


@pytest.mark.parametrize("bad", [[0, 0], [0, 0, 0, 0]])
def test_decoding_needs_three_registers(bad):
    with pytest.raises(InputError, match="3 registers"):
        RobotiqRawStatus.from_registers(bad)
    with pytest.raises(InputError, match="3 registers"):
        RobotiqCommand.from_registers(bad)


def test_bytes_registers_helpers():
    assert bytes_to_registers(bytes.fromhex("0900 00FF FFFF")) == [0x0900, 0x00FF, 0xFFFF]
    with pytest.raises(InputError, match="even"):
        bytes_to_registers(b"\x09")


@pytest.mark.parametrize("field", ["position", "speed", "force"])
@pytest.mark.parametrize("value", [-1, 256, 1.5, True])
def test_command_rejects_bytes_out_of_range(field, value):
    with pytest.raises(InputError, match=field):
        RobotiqCommand(**{field: value})


def test_fraction_to_byte():
    assert [fraction_to_byte("speed", f) for f in (0, 0.5, 1.0)] == [0, 128, 255]
    for bad in (-0.01, 1.01, math.nan, True, "1"):
        with pytest.raises(InputError, match="speed"):
            fraction_to_byte("speed", bad)


# -- configuration --------------------------------------------------------------------------------


def test_model_defaults():
    assert RobotiqConfig().max_width_m == pytest.approx(0.085)
    assert RobotiqConfig(model="2f-140").max_width_m == pytest.approx(0.140)
    assert RobotiqConfig(model="hand-e").max_width_m == pytest.approx(0.050)
    modbus = RobotiqConfig().modbus
    assert (modbus.transport, modbus.port, modbus.device_id, modbus.baudrate) == (
        "rtu-over-tcp", 54321, 9, 115200,
    )  # fmt: skip


def test_width_ticks_mapping_with_calibration():
    config = RobotiqConfig(open_ticks=13, closed_ticks=230, open_width_m=0.087)
    assert config.ticks_for_width(0.087) == 0  # at or beyond the ends: the mechanical end stops
    assert config.ticks_for_width(0.0) == 255
    assert config.ticks_for_width(0.0435) == round((13 + 230) / 2)
    assert config.width_for_ticks(13) == pytest.approx(0.087)
    assert config.width_for_ticks(230) == pytest.approx(0.0)
    assert config.width_for_ticks(255) == 0.0  # never negative
    for width in (0.01, 0.03, 0.05, 0.08):
        tick_m = 0.087 / (230 - 13)
        assert config.width_for_ticks(config.ticks_for_width(width)) == pytest.approx(
            width, abs=tick_m / 2 + 1e-12
        )


def test_config_from_dict_merges_robotiq_modbus_defaults():
    config = RobotiqConfig.from_dict(
        {
            "model": "2f-140",
            "open_ticks": 5,
            "closed_ticks": 229,
            "closed_width_m": 0,
            "modbus": {"host": "10.0.0.2"},
        }
    )
    assert config.model == "2f-140" and config.open_ticks == 5 and config.closed_width_m == 0.0
    assert config.modbus.host == "10.0.0.2" and config.modbus.device_id == 9
    assert config.modbus.port == 54321
    assert RobotiqConfig.from_dict(config.to_dict()) == config


def test_config_from_dict_unknown_key_lists_known_ones():
    with pytest.raises(InputError, match=r"\[gripper\].*open_tick.*known keys:.*open_ticks"):
        RobotiqConfig.from_dict({"open_tick": 3})
    with pytest.raises(InputError, match=r"\[gripper\]\.modbus.*slave.*known keys:.*device_id"):
        RobotiqConfig.from_dict({"modbus": {"slave": 9}})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"model": "2f-200"}, "unknown Robotiq model.*2f-85"),
        ({"open_ticks": "3"}, "open_ticks must be of type int"),
        ({"open_ticks": 200, "closed_ticks": 100}, "open_ticks .* below closed_ticks"),
        ({"closed_width_m": 0.1}, "closed_width_m"),
        ({"poll_period_s": 0}, "poll_period_s must be > 0"),
        ({"open_width_m": math.inf}, r"\[gripper\]\.open_width_m must be a finite number"),
        ({"motion_timeout_s": math.nan}, r"\[gripper\]\.motion_timeout_s must be a finite"),
        ({"modbus": {"timeout_s": math.nan}}, r"\[gripper\]\.modbus\.timeout_s must be a finite"),
        ({"modbus": {"retries": 1.5}}, r"modbus\.retries must be of type int"),
        ({"modbus": {"retries": True}}, r"modbus\.retries must be of type int"),
        ({"modbus": {"transport": "udp"}}, r"modbus.*unknown Modbus transport"),
        ({"modbus": "tcp"}, "must be a table"),
        ([], "must be a table"),
    ],
)
def test_config_from_dict_rejects_bad_values(data, match):
    with pytest.raises(InputError, match=match):
        RobotiqConfig.from_dict(data, where="robot.toml [gripper]")


def test_config_rejects_non_finite_numbers_built_in_code():
    with pytest.raises(InputError, match="open_width_m must be a finite number"):
        RobotiqConfig(open_width_m=math.inf)
    with pytest.raises(InputError, match="activation_timeout_s must be a finite number"):
        RobotiqConfig(activation_timeout_s=math.nan)


def test_modbus_table_parser_takes_other_defaults():
    defaults = ModbusConfig(port=502)
    config = modbus_config_from_dict({"host": "10.0.0.3", "retries": 2}, "[arm].modbus", defaults)
    assert config == ModbusConfig(host="10.0.0.3", port=502, retries=2)
    assert modbus_config_from_dict({}, "[gripper].modbus").port == 54321
    with pytest.raises(InputError, match=r"\[arm\]\.modbus\.retries must be of type int"):
        modbus_config_from_dict({"retries": 1.5}, "[arm].modbus", defaults)
    with pytest.raises(InputError, match=r"\[arm\]\.modbus: unknown key.*slave.*known keys"):
        modbus_config_from_dict({"slave": 1}, "[arm].modbus", defaults)
    assert coerce_value("timeout_s", 1, float, "[arm]") == 1.0
    with pytest.raises(InputError, match=r"\[arm\]\.timeout_s must be a finite number"):
        coerce_value("timeout_s", -math.inf, float, "[arm]")


# -- driver against the simulator on loopback ---------------------------------------------------


def wait_until(condition, limit_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds (fails the test after ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def make_gripper(port: int, **config) -> RobotiqGripper:
    modbus = ModbusConfig(transport="rtu-over-tcp", port=port, device_id=9, timeout_s=0.5)
    gripper = RobotiqGripper(RobotiqConfig(modbus=modbus, poll_period_s=0.002, **config))
    gripper.connect()
    return gripper


@pytest.fixture
def rig():
    """A factory (config keyword arguments, sim keyword arguments) -> (sim, connected gripper).

    ``rig.servers`` lists the servers started so far.
    """
    servers, grippers = [], []

    def make(config: dict | None = None, **sim_kwargs):
        sim_kwargs = {"finger_speed_m_s": FAST_M_S, "activation_s": 0.01} | sim_kwargs
        sim = RobotiqSim(**sim_kwargs)
        servers.append(sim.serve())
        grippers.append(make_gripper(servers[-1].port, **(config or {})))
        return sim, grippers[-1]

    make.servers = servers
    yield make
    for gripper in grippers:
        gripper.disconnect()
    for server in servers:
        server.stop()


def test_activation_writes_reset_then_activate(rig):
    sim, gripper = rig()
    status = gripper.activate(timeout_s=2.0)
    assert sim.writes == [(1000, [0, 0, 0]), (1000, [0x0100, 0, 0])]
    assert status.state is GripperState.AT_POSITION
    assert status.width_m == pytest.approx(0.085)
    assert status.raw == (0x3100, 0, 0)


def test_activation_timeout(rig):
    _, gripper = rig(activation_s=30.0)
    with pytest.raises(
        DeviceTimeoutError, match=r"activation not finished.*activation in progress"
    ):
        gripper.activate(timeout_s=0.05)
    assert gripper.status().state is GripperState.ACTIVATING


def test_close_and_open(rig):
    sim, gripper = rig()
    gripper.activate(timeout_s=2.0)
    gripper.close(speed=1.0, force=1.0)
    assert sim.writes[-1] == (1000, [0x0900, 0x00FF, 0xFFFF])
    closed = gripper.wait(timeout_s=2.0)
    assert closed.state is GripperState.AT_POSITION and closed.width_m == 0.0
    assert closed.requested_width_m == 0.0
    gripper.open(speed=0.0, force=0.0)
    assert sim.writes[-1] == (1000, [0x0900, 0x0000, 0x0000])
    opened = gripper.wait(timeout_s=5.0)
    assert opened.width_m == pytest.approx(0.085) and opened.requested_width_m == 0.085


def test_move_to_maps_width_with_the_unit_calibration(rig):
    # A unit whose fingers read 6 fully open and 230 fully closed, calibrated as such.
    sim, gripper = rig(
        config={"open_ticks": 6, "closed_ticks": 230}, open_ticks=6, closed_ticks=230
    )
    gripper.activate(timeout_s=2.0)
    tick_m = 0.085 / (230 - 6)
    for width in (0.07, 0.0321, 0.005):
        gripper.move_to(width)
        status = gripper.wait(timeout_s=2.0)
        assert status.state is GripperState.AT_POSITION
        assert status.width_m == pytest.approx(width, abs=tick_m)
        expected_ticks = round(6 + (0.085 - width) / 0.085 * 224)
        assert sim.writes[-1][1][1] == expected_ticks == sim.snapshot().position


def test_holding_an_object(rig):
    sim, gripper = rig(object_width_m=0.04)
    gripper.activate(timeout_s=2.0)
    gripper.close(force=1.0)
    status = gripper.wait(timeout_s=2.0)
    assert status.holding and status.state is GripperState.HOLDING
    assert status.width_m == pytest.approx(0.04, abs=TICK_M)
    sim.set_object(None)  # the object slips out: the fingers close on
    gripper.wait(timeout_s=2.0)
    lost = gripper.status()
    assert lost.state is GripperState.AT_POSITION and lost.width_m == 0.0


def test_fault_raises_with_message_and_reactivation_clears_it(rig):
    sim, gripper = rig(finger_speed_m_s=SLOW_M_S)
    gripper.activate(timeout_s=2.0)
    gripper.close()
    sim.inject_fault(14)
    with pytest.raises(DeviceFaultError, match=r"gFLT 14: overcurrent.*re-activate"):
        gripper.wait(timeout_s=2.0)
    status = gripper.status()
    assert status.state is GripperState.FAULT and status.fault_code == 14
    assert gripper.activate(timeout_s=2.0).fault_code == 0


def test_minor_fault_is_a_warning(rig):
    sim, gripper = rig()
    gripper.activate(timeout_s=2.0)
    sim.inject_fault(9)
    status = gripper.status()
    assert status.state is GripperState.AT_POSITION and status.fault_code == 9
    assert "warning: gFLT 9: no communication" in status.message


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda g: g.move_to(-0.001), "outside"),
        (lambda g: g.move_to(0.0851), "outside"),
        (lambda g: g.move_to(math.nan), "outside"),
        (lambda g: g.move_to("wide"), "width_m must be a number"),
        (lambda g: g.move_to(0.02, speed=1.5), "speed"),
        (lambda g: g.move_to(0.02, force=-0.1), "force"),
        (lambda g: g.close(speed=True), "speed"),
        (lambda g: g.calibrate(force=2.0), "force"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(rig, call, match):
    sim, gripper = rig()
    gripper.activate(timeout_s=2.0)
    sim.clear_writes()
    with pytest.raises(InputError, match=match):
        call(gripper)
    assert sim.writes == []


def test_move_before_activation_is_refused(rig):
    sim, gripper = rig()
    with pytest.raises(DeviceError, match="not activated"):
        gripper.close()
    assert sim.writes == []


def test_gripper_reset_behind_the_drivers_back_is_not_reactivated_by_a_move(rig):
    sim, gripper = rig()
    gripper.activate(timeout_s=2.0)
    other = ModbusLink(gripper.config.modbus, name="power-cycle")
    other.connect()
    other.write(1000, [0, 0, 0])  # as after a power cycle: rACT cleared, link still up
    other.close()
    before = len(sim.writes)
    with pytest.raises(DeviceError, match="not activated"):
        gripper.move_to(0.05)  # rACT=1 + rGTO=1 would start an activation here
    assert len(sim.writes) == before


def test_reconnected_driver_accepts_an_already_activated_gripper(rig):
    sim, gripper = rig()
    gripper.activate(timeout_s=2.0)
    gripper.connect()  # forgets the activation; the gripper itself stays activated
    gripper.move_to(0.05)
    assert sim.writes[-1][1][0] == 0x0900
    assert gripper.wait(timeout_s=2.0).state is GripperState.AT_POSITION


def test_lost_activation_during_wait_is_a_fault(rig):
    _, gripper = rig(finger_speed_m_s=SLOW_M_S)
    gripper.activate(timeout_s=2.0)
    gripper.close()
    other = ModbusLink(gripper.config.modbus, name="other")
    other.connect()
    other.write(COMMAND_REGISTER, [0, 0, 0])  # someone resets the gripper
    other.close()
    with pytest.raises(DeviceFaultError, match=r"not activated.*reset"):
        gripper.wait(timeout_s=2.0)


def test_stop_halts_the_fingers(rig):
    sim, gripper = rig(finger_speed_m_s=SLOW_M_S)
    gripper.activate(timeout_s=2.0)
    gripper.close(speed=1.0, force=1.0)
    wait_until(lambda: sim.snapshot().position >= 5)
    gripper.stop()
    assert sim.writes[-1] == (1000, [0x0100, 0x00FF, 0xFFFF])
    status = gripper.wait(timeout_s=1.0)
    assert status.state is GripperState.AT_POSITION
    assert 0.0 < status.width_m < 0.085
    assert gripper.status().width_m == status.width_m


def test_stop_from_another_thread_ends_wait(rig):
    _, gripper = rig(finger_speed_m_s=SLOW_M_S)
    gripper.activate(timeout_s=2.0)
    gripper.close()
    moving = gripper.status()
    assert moving.state is GripperState.MOVING
    stopper = threading.Timer(0.05, gripper.stop)
    stopper.start()
    status = gripper.wait(timeout_s=3.0)  # would time out if stop did not reach the gripper
    stopper.join()
    assert status.state is GripperState.AT_POSITION and status.width_m > 0.0


def test_stop_on_a_gripper_that_is_not_activated_resets_it(rig):
    sim, gripper = rig(activation_s=30.0)
    gripper.stop()
    assert sim.writes == [(1000, [0, 0, 0])]


def test_stop_from_another_thread_ends_an_activation(rig):
    sim, gripper = rig(activation_s=30.0)
    stopper = threading.Timer(0.05, gripper.stop)
    stopper.start()
    with pytest.raises(DeviceStoppedError, match="activation ended by a stop"):
        gripper.activate(timeout_s=5.0)  # without the stop ending the wait: DeviceTimeoutError
    stopper.join()
    assert sim.writes[-1] == (1000, [0, 0, 0])  # the stop reset the gripper: activation halted
    assert gripper.status().state is GripperState.RESET
    gripper.stop()  # a later stop on the reset gripper only resets it again
    assert [w for w in sim.writes if w != (1000, [0, 0, 0])] == [(1000, [0x0100, 0, 0])]


def test_server_stopped_mid_command(rig):
    _, gripper = rig(finger_speed_m_s=SLOW_M_S)
    gripper.activate(timeout_s=2.0)
    gripper.close()
    rig.servers[-1].stop()  # the device dies while the fingers move
    with pytest.raises(DeviceDisconnectedError, match="lost"):
        gripper.wait(timeout_s=2.0)
    assert not gripper.link.connected


def test_connect_to_nothing_fails_clearly():
    gripper = RobotiqGripper(
        RobotiqConfig(modbus=ModbusConfig(transport="rtu-over-tcp", port=free_port()))
    )
    with pytest.raises(DeviceDisconnectedError, match="cannot connect"):
        gripper.connect()


def test_calibrate_measures_the_end_stops(rig):
    sim, gripper = rig(open_ticks=4, closed_ticks=227)
    gripper.activate(timeout_s=2.0)
    result = gripper.calibrate(timeout_s=2.0)
    assert result == TickCalibration(open_ticks=4, closed_ticks=227)
    assert (gripper.config.open_ticks, gripper.config.closed_ticks) == (4, 227)
    assert gripper.status().width_m == pytest.approx(0.085)  # ends open
    assert [values[1] for _, values in sim.writes[2:]] == [0, 255, 0]


def test_calibrate_refuses_with_an_object_between_the_fingers(rig):
    _, gripper = rig(object_width_m=0.03)
    gripper.activate(timeout_s=2.0)
    with pytest.raises(DeviceError, match=r"calibration stopped.*holding.*remove any object"):
        gripper.calibrate(timeout_s=2.0)
    assert gripper.config.closed_ticks == 255  # nothing applied


def test_writes_reach_the_io_hook():
    sim = RobotiqSim(finger_speed_m_s=FAST_M_S, activation_s=0.0)
    records: list[dict] = []
    with sim.serve() as server:
        modbus = ModbusConfig(transport="rtu-over-tcp", port=server.port, device_id=9)
        gripper = RobotiqGripper(RobotiqConfig(modbus=modbus, name="left"), on_io=records.append)
        with gripper:
            gripper.activate(timeout_s=2.0)
            gripper.move_to(0.0425, speed=1.0, force=0.5)
    assert [r["values"] for r in records] == [
        [0, 0, 0], [0x0100, 0, 0], [0x0900, 128, 0xFF80],
    ]  # fmt: skip
    assert {(r["device"], r["op"], r["address"]) for r in records} == {("left", "write", 1000)}
