"""The Robotiq simulator's register behaviour, driven through a raw ModbusLink on loopback."""

from __future__ import annotations

import pytest

from langgrasp.errors import InputError
from langgrasp.runtime.devices import DeviceError
from langgrasp.runtime.modbus import ModbusConfig, ModbusLink
from langgrasp.runtime.robotiq import RobotiqRawStatus
from langgrasp.runtime.sim.robotiq import RobotiqSim

CMD, STATUS = 1000, 2000
RESET, ACTIVATE = [0, 0, 0], [0x0100, 0, 0]
ACTIVATION_S = 0.5
SPEED_M_S = 0.085  # full 2F-85 stroke (255 ticks) in 1 s at rSP 255


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def goto(position: int, speed: int = 255, force: int = 255) -> list[int]:
    return [0x0900, position, (speed << 8) | force]


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def device(clock):
    """A factory (sim keyword arguments) -> (sim, link) with a manual clock."""
    started = []

    def make(**kwargs):
        kwargs = {"finger_speed_m_s": SPEED_M_S, "activation_s": ACTIVATION_S} | kwargs
        sim = RobotiqSim(clock=clock, **kwargs)
        server = sim.serve()
        link = ModbusLink(ModbusConfig(transport="rtu-over-tcp", port=server.port, device_id=9))
        link.connect()
        started.append((server, link))
        return sim, link

    yield make
    for server, link in started:
        link.close()
        server.stop()


def read(link: ModbusLink) -> RobotiqRawStatus:
    return RobotiqRawStatus.from_registers(link.read(STATUS, 3))


def activated(make, clock: ManualClock, **kwargs):
    sim, link = make(**kwargs)
    link.write(CMD, RESET)
    link.write(CMD, ACTIVATE)
    clock.advance(ACTIVATION_S)
    return sim, link


def test_activation_sequence_over_time(device, clock):
    _, link = device()
    assert link.read(STATUS, 3) == [0, 0, 0]  # reset state after power-up
    link.write(CMD, RESET)
    link.write(CMD, ACTIVATE)
    assert link.read(STATUS, 3)[0] == 0x1100  # gACT, gSTA 1: activating
    clock.advance(ACTIVATION_S * 0.9)
    assert read(link).activation == 1
    clock.advance(ACTIVATION_S * 0.1)
    assert link.read(STATUS, 3) == [0x3100, 0, 0]  # runtime.md 3.1: activation complete, open


def test_goto_before_activation_is_ignored_with_the_device_faults(device, clock):
    _, link = device()
    link.write(CMD, [0x0800, 200, 0xFFFF])  # rGTO without rACT
    assert read(link).fault == 7 and read(link).position == 0
    link.write(CMD, ACTIVATE)
    link.write(CMD, goto(200))  # during the activation
    status = read(link)
    assert (status.fault, status.activation, status.position) == (5, 1, 0)
    clock.advance(ACTIVATION_S)
    link.write(CMD, goto(200))
    clock.advance(1.0)
    status = read(link)
    assert (status.fault, status.object, status.position) == (0, 3, 200)


def test_finger_motion_over_time(device, clock):
    _, link = activated(device, clock)
    link.write(CMD, goto(228))
    moving = read(link)
    assert moving.go and moving.object == 0 and moving.requested_position == 228
    clock.advance(0.5)  # half the full stroke
    halfway = read(link)
    assert halfway.object == 0 and halfway.position == pytest.approx(127.5, abs=1)
    clock.advance(0.5)
    assert link.read(STATUS, 3) == [0xF900, 0x00E4, 0xE400]  # runtime.md 3.1 after a go-to 228


def test_speed_register_sets_finger_speed(device, clock):
    _, link = activated(device, clock)
    link.write(CMD, goto(255, speed=0))
    clock.advance(0.5)
    slow = read(link).position
    link.write(CMD, goto(0))
    clock.advance(2.0)
    link.write(CMD, goto(255, speed=255))
    clock.advance(0.5)
    fast = read(link).position
    # rSP 0 is the model's minimum speed: 20 of 150 mm/s on a 2F-85.
    assert slow == pytest.approx(fast * 20 / 150, abs=1)


def test_object_stops_closing_fingers_and_is_held(device, clock):
    sim, link = activated(device, clock, object_width_m=0.04)
    link.write(CMD, goto(255, force=255))
    clock.advance(2.0)
    held = read(link)
    assert held.object == 2 and held.current > 0
    assert held.position == round(255 * (1 - 0.04 / 0.085))
    sim.set_object(None)  # dropped: the fingers close on to the requested position
    clock.advance(1.0)
    lost = read(link)
    assert (lost.object, lost.position, lost.current) == (3, 255, 0)


def test_object_wider_than_the_opening_is_not_touched(device, clock):
    sim, link = activated(device, clock)
    link.write(CMD, goto(200))
    clock.advance(1.0)
    sim.set_object(0.06)  # wider than the current opening: it cannot be between the fingers
    link.write(CMD, goto(255))
    clock.advance(1.0)
    assert (read(link).object, read(link).position) == (3, 255)


def test_opening_ignores_the_object(device, clock):
    _, link = activated(device, clock, object_width_m=0.04)
    link.write(CMD, goto(255))
    clock.advance(1.0)
    link.write(CMD, goto(0))
    clock.advance(1.0)
    assert (read(link).object, read(link).position) == (3, 0)


def test_rgto_zero_stops_the_fingers(device, clock):
    _, link = activated(device, clock)
    link.write(CMD, goto(255))
    clock.advance(0.25)
    link.write(CMD, [0x0100, 255, 0xFFFF])
    stopped = read(link)
    clock.advance(1.0)
    later = read(link)
    assert not later.go and later.position == stopped.position == pytest.approx(64, abs=1)


def test_mechanical_end_stops(device, clock):
    _, link = activated(device, clock, open_ticks=6, closed_ticks=230)
    assert read(link).position == 6  # open after activation
    link.write(CMD, goto(255))
    clock.advance(2.0)
    status = read(link)
    assert (status.object, status.requested_position, status.position) == (3, 255, 230)
    link.write(CMD, goto(0))
    clock.advance(2.0)
    assert read(link).position == 6


def test_injected_fault_blocks_until_reactivation(device, clock):
    sim, link = activated(device, clock)
    link.write(CMD, goto(255))
    clock.advance(0.25)
    sim.inject_fault(14)
    faulted = read(link)
    assert faulted.fault == 14
    link.write(CMD, goto(0))  # refused while the fault stands
    clock.advance(1.0)
    assert read(link).position == faulted.position
    link.write(CMD, RESET)
    assert read(link).fault == 14  # a reset alone does not clear a major fault
    link.write(CMD, ACTIVATE)
    clock.advance(ACTIVATION_S)
    assert link.read(STATUS, 3) == [0x3100, 0, 0]


def test_clear_fault(device, clock):
    sim, link = activated(device, clock)
    sim.inject_fault(8)
    assert read(link).fault == 8
    sim.clear_fault()
    link.write(CMD, goto(100))
    clock.advance(1.0)
    assert (read(link).fault, read(link).position) == (0, 100)


def test_fault_bad_code_rejected():
    with pytest.raises(InputError, match="unknown Robotiq fault code 3"):
        RobotiqSim().inject_fault(3)


def test_writes_are_recorded_exactly(device, clock):
    sim, link = activated(device, clock)
    link.write(1001, [100])  # one register: merged into the current command
    link.write(CMD, goto(50, speed=1, force=2))
    assert sim.writes == [
        (1000, RESET), (1000, ACTIVATE), (1001, [100]), (1000, [0x0900, 50, 0x0102]),
    ]  # fmt: skip
    sim.clear_writes()
    assert sim.writes == []


def test_status_registers_are_read_only(device, clock):
    sim, link = device()
    with pytest.raises(DeviceError, match="exception 2"):
        link.write(STATUS, [0x3100])
    assert sim.writes == []


def test_only_the_mapped_registers_exist(device, clock):
    _, link = device()
    with pytest.raises(DeviceError, match="illegal data address"):
        link.read(1500, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "3f"}, "unknown Robotiq model"),
        ({"device_id": 0}, "device_id"),
        ({"finger_speed_m_s": 0.0}, "finger_speed_m_s"),
        ({"open_ticks": 10, "closed_ticks": 10}, "open_ticks"),
        ({"model": "hand-e", "object_width_m": 0.06}, "outside"),
    ],
)
def test_constructor_checks(kwargs, match):
    with pytest.raises(InputError, match=match):
        RobotiqSim(**kwargs)


def test_default_activation_time_is_one_stroke_each_way():
    sim = RobotiqSim(model="2f-140")
    assert sim.activation_s == pytest.approx(2 * 0.140 / 0.250)
