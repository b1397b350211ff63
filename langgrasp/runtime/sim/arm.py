"""A simulated arm controller: the register protocol of ``runtime.modbus_arm`` on 127.0.0.1.

``ArmSim`` behaves like the controller program in docs/ur_pick_server.script: on a new sequence
number it writes state = moving and ack = sequence, moves the tool linearly (position interpolated
linearly, rotation about one fixed axis) at its tool speed, and writes state = done on arrival; a
stop command halts the tool where it is at that moment; the home command moves to ``home_pose``.
Tests can inject a fault (``inject_fault``), restart the program (``restart_program``: halted,
idle, the last sequence acknowledged) or make the program unresponsive (``stall``: new
sequences are never acknowledged). Every received command and target is recorded.

The registers are updated lazily, from the elapsed time, whenever a client reads or writes
(``SimDevice`` action hook, shared/research/runtime.md 2.4), so no ticking thread is needed.
Frames and units: ``T_base_ee`` 4x4 poses in metres, the tool frame in the robot base frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from langgrasp.errors import InputError
from langgrasp.runtime.modbus_arm import (
    FAULT_BAD_COMMAND,
    FAULT_BAD_SPEED,
    POSE_REGISTERS,
    SPEED_FULL_SCALE,
    UR_PROFILE,
    ArmCommand,
    ControllerState,
    RegisterMap,
    decode_pose,
    encode_pose,
    matrix_to_rotvec,
    rotvec_to_matrix,
)
from langgrasp.runtime.sim.server import SimServer

DEFAULT_SPEED_M_S = 0.25
"""Tool speed at speed register 1000, like ``MAX_SPEED_M_S`` in docs/ur_pick_server.script."""
DEFAULT_ANGULAR_SPEED_RAD_S = 1.0
"""Tool rotation speed at speed register 1000 (the slower of the two sets the move time)."""
DEFAULT_HOME_POSE = np.array(
    [
        [1.0, 0.0, 0.0, 0.30],
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, 0.40],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
"""Tool 0.3 m in front of the base, 0.4 m up, pointing straight down (a half turn about x)."""
WRITE_FUNCTION_CODES = (6, 16, 23)
"""Modbus write single register, write multiple registers, read/write multiple registers."""


@dataclass(frozen=True)
class SimArmCommand:
    """One command the simulated controller received.

    Attributes:
        t: ``clock()`` time of the write that carried the new sequence number.
        sequence: The sequence number.
        command: Raw command register value (``ArmCommand`` when valid).
        speed: Speed fraction from the speed register (per mille / 1000).
        target: ``(4, 4)`` decoded target for a move, the home pose for home, else None.
    """

    t: float
    sequence: int
    command: int
    speed: float
    target: np.ndarray | None


@dataclass
class _Motion:
    start: np.ndarray
    target: np.ndarray
    rotvec: np.ndarray  # rotation from start to target, in the start's orientation
    t0: float
    duration_s: float

    def pose_at(self, t: float) -> np.ndarray:
        s = 1.0 if self.duration_s <= 0 else min(max((t - self.t0) / self.duration_s, 0.0), 1.0)
        pose = np.eye(4)
        pose[:3, 3] = self.start[:3, 3] + s * (self.target[:3, 3] - self.start[:3, 3])
        pose[:3, :3] = self.start[:3, :3] @ rotvec_to_matrix(s * self.rotvec)
        return pose


class ArmSim:
    """The controller side of the arm register protocol, as a pymodbus ``SimDevice``.

    Args:
        register_map: Register layout (default: the UR profile, registers 128-139 + 400-405).
        device_id: Modbus unit id served.
        speed_m_s: Tool speed at speed register 1000, metres per second.
        angular_speed_rad_s: Tool rotation speed at speed register 1000, radians per second.
        home_pose: ``(4, 4)`` home ``T_base_ee`` (also the start pose); default
            ``DEFAULT_HOME_POSE``.
        clock: Monotonic time source in seconds (tests may pass a fake one).
    """

    def __init__(
        self,
        register_map: RegisterMap = UR_PROFILE,
        device_id: int = 1,
        speed_m_s: float = DEFAULT_SPEED_M_S,
        angular_speed_rad_s: float = DEFAULT_ANGULAR_SPEED_RAD_S,
        home_pose: np.ndarray | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed_m_s <= 0 or angular_speed_rad_s <= 0:
            raise InputError("simulated arm speeds must be > 0")
        self.map = register_map
        self.device_id = device_id
        self.speed_m_s = speed_m_s
        self.angular_speed_rad_s = angular_speed_rad_s
        home = DEFAULT_HOME_POSE if home_pose is None else home_pose
        # The home pose goes through the registers' resolution like any reported pose.
        self.home_pose = decode_pose(encode_pose(home, register_map), register_map)
        self.clock = clock
        self._lock = threading.Lock()
        self._pose = self.home_pose.copy()
        self._motion: _Motion | None = None
        self._state = ControllerState.IDLE
        self._fault = 0
        self._fault_latched = False
        self._stalled = False
        self._last_sequence = 0
        self._ack = 0
        self._targets: list[np.ndarray] = []
        self._commands: list[SimArmCommand] = []
        self._stop_times: list[float] = []

    # -- what tests look at (thread-safe copies) ---------------------------------------------

    @property
    def targets(self) -> list[np.ndarray]:
        """Every move target received, ``(4, 4)`` decoded from the registers, in order."""
        with self._lock:
            return [t.copy() for t in self._targets]

    @property
    def commands(self) -> list[SimArmCommand]:
        """Every command received with a new sequence number, in order."""
        with self._lock:
            return list(self._commands)

    @property
    def stops(self) -> int:
        """How many stop commands were written (with or without a new sequence)."""
        with self._lock:
            return len(self._stop_times)

    @property
    def stop_times(self) -> list[float]:
        """``clock()`` times of the stop writes."""
        with self._lock:
            return list(self._stop_times)

    @property
    def state(self) -> ControllerState:
        """Controller state now."""
        with self._lock:
            self._advance(self.clock())
            return self._state

    @property
    def fault_code(self) -> int:
        """Fault register now (0 = none)."""
        with self._lock:
            return self._fault

    @property
    def pose(self) -> np.ndarray:
        """``(4, 4)`` tool pose now (interpolated along the current motion)."""
        with self._lock:
            self._advance(self.clock())
            return self._pose.copy()

    # -- what tests do ---------------------------------------------------------------------

    def inject_fault(self, code: int) -> None:
        """Halt where the tool is and report fault ``code`` until ``clear_fault``.

        Like a protective stop: new commands are acknowledged but answered with the fault.
        """
        if not 0 < code <= 0xFFFF:
            raise InputError(f"fault code must be 1-65535, got {code}")
        with self._lock:
            self._halt(self.clock())
            self._state, self._fault, self._fault_latched = ControllerState.FAULT, code, True

    def clear_fault(self) -> None:
        """Leave the fault state (idle, fault 0)."""
        with self._lock:
            self._state, self._fault, self._fault_latched = ControllerState.IDLE, 0, False

    def restart_program(self) -> None:
        """The controller program restarts (e.g. after a protective stop is cleared).

        Like docs/ur_pick_server.script on start: the tool halts where it is, state = idle,
        fault = 0, and the sequence register's value is acknowledged without being executed.
        """
        with self._lock:
            now = self.clock()
            self._advance(now)
            self._halt(now)
            self._state, self._fault, self._fault_latched = ControllerState.IDLE, 0, False
            self._ack = self._last_sequence

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) handling new sequence numbers.

        Nothing is acknowledged, as when the controller program is not running; stop writes
        are still counted.
        """
        with self._lock:
            self._stalled = stalled

    # -- serving ---------------------------------------------------------------------------

    def sim_device(self) -> Any:
        """A pymodbus ``SimDevice`` covering the map's registers (one block per contiguous run)."""
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks = []
        numbers = self.map.register_numbers()
        start = previous = numbers[0]
        for number in [*numbers[1:], None]:
            if number is not None and number == previous + 1:
                previous = number
                continue
            count = previous - start + 1
            blocks.append(SimData(start, count=count, values=0, datatype=DataType.REGISTERS))
            if number is not None:
                start = previous = number
        return SimDevice(id=self.device_id, simdata=blocks, action=self._action)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Start a Modbus TCP server (like the UR controller's) for this arm; returns it running."""
        return SimServer(
            self.sim_device(), host=host, port=port, framer="socket", name="arm"
        ).start()

    # -- the controller program ------------------------------------------------------------

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        with self._lock:
            now = self.clock()
            self._advance(now)
            if set_values is not None and function_code in WRITE_FUNCTION_CODES:
                written = {address + i: int(v) for i, v in enumerate(set_values)}
                self._on_write(written, start_address, registers, now)
            self._publish(start_address, registers)

    def _on_write(
        self, written: dict[int, int], start: int, registers: list[int], now: float
    ) -> None:
        def value(name: str, offset: int = 0) -> int:
            address = self.map.address(name) + offset
            return written.get(address, registers[address - start])

        command_address = self.map.address("command")
        if written.get(command_address) == ArmCommand.STOP:
            self._stop_times.append(now)
            if self._state is ControllerState.MOVING:
                self._halt(now)
                self._state = ControllerState.STOPPED
        sequence = value("sequence")
        if self.map.address("sequence") not in written or sequence == self._last_sequence:
            return
        if self._stalled:
            return
        self._last_sequence = sequence
        command, speed = value("command"), value("speed") / SPEED_FULL_SCALE
        target = None
        if command == ArmCommand.MOVE:
            target = decode_pose([value("pose", i) for i in range(POSE_REGISTERS)], self.map)
            self._targets.append(target)
        elif command == ArmCommand.HOME:
            target, speed = self.home_pose, 1.0
        self._commands.append(SimArmCommand(now, sequence, command, speed, target))
        self._ack = sequence
        if self._fault_latched:
            return
        self._halt(now)  # a new command replaces the running motion, as in the URScript
        self._state, self._fault = ControllerState.IDLE, 0
        if command == ArmCommand.STOP:
            self._state = ControllerState.STOPPED
        elif target is None:
            self._state, self._fault = ControllerState.FAULT, FAULT_BAD_COMMAND
        elif not 0 < speed <= 1:
            self._state, self._fault = ControllerState.FAULT, FAULT_BAD_SPEED
        else:
            self._start_motion(target, speed, now)

    def _start_motion(self, target: np.ndarray, speed: float, now: float) -> None:
        start = self._pose.copy()
        rotvec = matrix_to_rotvec(start[:3, :3].T @ target[:3, :3])
        distance = float(np.linalg.norm(target[:3, 3] - start[:3, 3]))
        duration = max(
            distance / (self.speed_m_s * speed),
            float(np.linalg.norm(rotvec)) / (self.angular_speed_rad_s * speed),
        )
        self._motion = _Motion(start, target.copy(), rotvec, now, duration)
        self._state = ControllerState.MOVING
        self._advance(now)

    def _advance(self, now: float) -> None:
        if self._motion is None:
            return
        self._pose = self._motion.pose_at(now)
        if now - self._motion.t0 >= self._motion.duration_s:
            self._pose = self._motion.target.copy()
            self._motion = None
            if self._state is ControllerState.MOVING:
                self._state = ControllerState.DONE

    def _halt(self, now: float) -> None:
        if self._motion is not None:
            self._pose = self._motion.pose_at(now)
            self._motion = None

    def _publish(self, start: int, registers: list[int]) -> None:
        """Write the controller-owned registers (ack, state, fault, readback)."""
        registers[self.map.address("ack") - start] = self._ack
        registers[self.map.address("state") - start] = int(self._state)
        registers[self.map.address("fault") - start] = self._fault
        if self.map.readback is not None:
            offset = self.map.readback - start
            # Interpolated poses lie between two encodable ones, so they are encodable too.
            registers[offset : offset + POSE_REGISTERS] = encode_pose(self._pose, self.map)
