"""A register-level Robotiq 2F-85 / 2F-140 / Hand-E simulator (shared/research/runtime.md 3.1).

``RobotiqSim`` behaves like the gripper on its Modbus registers: command registers 1000-1002
(written with FC16), read-only status registers 2000-2002, unit 9. The model is updated lazily
from the elapsed time (``clock``) whenever the registers are accessed:

* Activation: a rising edge of rACT gives gSTA 1 for ``activation_s``, then gSTA 3 with the
  fingers open. A go-to before that is ignored with gFLT 5 (during the activation) or 7 (rACT
  off), like the device.
* Motion: a go-to moves gPO toward rPR at a speed set by rSP (gOBJ 0), and ends with gOBJ 3 at
  the position. An object of ``object_width_m`` between the fingers stops a closing motion at the
  object's width with gOBJ 2 (held); removing it (``set_object(None)``) lets the fingers close on
  (gOBJ 3, "object lost"). rGTO 0 stops the fingers.
* Faults on demand (``inject_fault``): codes 8 and 10-15 stop the fingers and refuse go-tos until
  ``clear_fault`` or, for 10-15, a new activation (rising edge of rACT).

Not modelled: contact while opening (gOBJ 1), auto-release (rATR), motor current other than a
holding current, the communication-loss fault 9 (injectable only).

The fingers' mechanical ends read ``open_ticks`` / ``closed_ticks`` (like a real unit that never
reads exactly 0 or 255); the opening is linear from the model's stroke at ``open_ticks`` to 0 at
``closed_ticks``. Every write to the command registers is recorded in ``writes``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from langgrasp.errors import InputError
from langgrasp.runtime.robotiq import (
    COMMAND_REGISTER,
    DEFAULT_DEVICE_ID,
    FAULTS,
    OBJ_AT_POSITION,
    OBJ_CONTACT_CLOSING,
    OBJ_MOVING,
    POSITION_CLOSED,
    POSITION_OPEN,
    REGISTER_COUNT,
    STA_ACTIVATING,
    STA_ACTIVE,
    STA_RESET,
    STATUS_REGISTER,
    RobotiqCommand,
    RobotiqRawStatus,
    get_model,
)
from langgrasp.runtime.sim.server import SimServer

REACTIVATION_FAULTS = frozenset(range(10, 16))
"""gFLT codes cleared only by a rising edge of rACT (runtime.md 3.1)."""

BLOCKING_FAULTS = REACTIVATION_FAULTS | {8}
"""Faults that stop the fingers and make the simulator ignore go-tos (8: over-temperature)."""

FAULT_ACTIVATION_PENDING = 5  # go-to during the activation (runtime.md 3.1)
FAULT_NOT_ACTIVATED = 7  # go-to with rACT off (runtime.md 3.1)

HOLDING_CURRENT_MAX = 60
"""gCU (units of ~10 mA) while holding at full force. An estimate: the sim only needs gCU > 0."""

BYTE_MAX = 255
MIN_DEVICE_ID, MAX_DEVICE_ID = 1, 247  # Modbus serial line addresses (Modbus over serial line 2.2)


class RobotiqSim:
    """A simulated Robotiq gripper behind one Modbus unit id (see the module docstring).

    Args:
        model: ``"2f-85"``, ``"2f-140"`` or ``"hand-e"`` (sets the stroke and speed range).
        device_id: Modbus unit id.
        object_width_m: Width of the object between the fingers, metres; None = nothing.
        finger_speed_m_s: Finger speed at rSP 255, metres per second; None = the model's
            maximum. Lower rSP scales it down in the model's min/max ratio. Tests use a large
            value so a full stroke takes milliseconds.
        activation_s: Duration of the activation; None = one open-and-close stroke at full speed.
        open_ticks: gPO at the open end stop.
        closed_ticks: gPO at the closed end stop (nothing between the fingers).
        clock: Time source in seconds (``time.monotonic``); tests pass a manual clock.
    """

    def __init__(
        self,
        model: str = "2f-85",
        device_id: int = DEFAULT_DEVICE_ID,
        object_width_m: float | None = None,
        finger_speed_m_s: float | None = None,
        activation_s: float | None = None,
        open_ticks: int = POSITION_OPEN,
        closed_ticks: int = POSITION_CLOSED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = get_model(model)
        if not MIN_DEVICE_ID <= device_id <= MAX_DEVICE_ID:
            raise InputError(f"device_id must be {MIN_DEVICE_ID}-{MAX_DEVICE_ID}, got {device_id}")
        if not 0 <= open_ticks < closed_ticks <= BYTE_MAX:
            raise InputError("need 0 <= open_ticks < closed_ticks <= 255")
        speed = self.model.speed_max_m_s if finger_speed_m_s is None else finger_speed_m_s
        if not speed > 0:
            raise InputError(f"finger_speed_m_s must be > 0, got {finger_speed_m_s}")
        self.device_id = device_id
        self.finger_speed_m_s = float(speed)
        self.activation_s = (
            2 * self.model.stroke_m / self.finger_speed_m_s
            if activation_s is None
            else activation_s
        )
        if self.activation_s < 0:
            raise InputError(f"activation_s must be >= 0, got {activation_s}")
        self.open_ticks = open_ticks
        self.closed_ticks = closed_ticks
        self._clock = clock
        self._lock = threading.Lock()
        self._writes: list[tuple[int, list[int]]] = []
        self._command = RobotiqCommand()
        self._status = RobotiqRawStatus(position=open_ticks)
        self._position = float(open_ticks)  # gPO, fractional while moving
        self._target = float(open_ticks)
        self._moving = False
        self._activation_end: float | None = None
        self._last_t = clock()
        self._object_ticks: float | None = None
        self.set_object(object_width_m)

    # -- test controls ------------------------------------------------------------------------

    @property
    def writes(self) -> list[tuple[int, list[int]]]:
        """Every write to the command registers so far: ``(address, values)``, oldest first."""
        with self._lock:
            return [(address, list(values)) for address, values in self._writes]

    def clear_writes(self) -> None:
        """Forget the recorded writes."""
        with self._lock:
            self._writes.clear()

    def set_object(self, width_m: float | None) -> None:
        """Put an object of ``width_m`` metres between the fingers, or remove it (None).

        Removing (or narrowing) a held object lets the fingers close on toward rPR.
        """
        if width_m is not None and not 0.0 <= width_m <= self.model.stroke_m:
            raise InputError(
                f"object width {width_m} m is outside [0, {self.model.stroke_m}] m for a "
                f"{self.model.name}"
            )
        with self._lock:
            self._advance(self._clock())
            self._object_ticks = None if width_m is None else self._ticks_for_width(width_m)
            held = self._status.object == OBJ_CONTACT_CLOSING
            if held and (self._object_ticks is None or self._object_ticks > self._position):
                self._start_motion(self._target)

    def inject_fault(self, code: int) -> None:
        """Report gFLT ``code`` (one of ``FAULTS``); blocking codes stop the fingers."""
        if code not in FAULTS:
            raise InputError(f"unknown Robotiq fault code {code}; known: {sorted(FAULTS)}")
        with self._lock:
            self._advance(self._clock())
            if code in BLOCKING_FAULTS:
                self._halt()
            self._status = replace(self._status, fault=code)

    def clear_fault(self) -> None:
        """Clear the fault code (the device does this itself for minor faults)."""
        with self._lock:
            self._status = replace(self._status, fault=0)

    def snapshot(self) -> RobotiqRawStatus:
        """The status registers as a read would return them now."""
        with self._lock:
            self._advance(self._clock())
            return self._status

    # -- Modbus -------------------------------------------------------------------------------

    def sim_device(self) -> Any:
        """A ``pymodbus.simulator.SimDevice`` serving this gripper's registers."""
        from pymodbus.simulator import DataType, SimData, SimDevice

        return SimDevice(
            id=self.device_id,
            simdata=[
                SimData(COMMAND_REGISTER, count=REGISTER_COUNT, datatype=DataType.REGISTERS),
                SimData(
                    STATUS_REGISTER,
                    count=REGISTER_COUNT,
                    datatype=DataType.REGISTERS,
                    readonly=True,
                ),
            ],
            action=self._action,
        )

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Start a started ``SimServer`` with RTU framing over TCP (like the UR RS485 tunnel)."""
        server = SimServer(self.sim_device(), host=host, port=port, framer="rtu", name="robotiq")
        return server.start()

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> None:
        """SimDevice hook: apply a command write, then refresh the status registers."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            if set_values is not None:
                values = [int(v) for v in set_values]
                self._writes.append((address, values))
                offset = COMMAND_REGISTER - start_address
                command = list(registers[offset : offset + REGISTER_COUNT])
                first = address - COMMAND_REGISTER
                command[first : first + len(values)] = values
                self._apply(RobotiqCommand.from_registers(command), now)
            offset = STATUS_REGISTER - start_address
            registers[offset : offset + REGISTER_COUNT] = self._status.to_registers()

    # -- model (call with the lock held) ------------------------------------------------------

    def _apply(self, command: RobotiqCommand, now: float) -> None:
        previous, self._command = self._command, command
        status = self._status
        if not command.activate:
            self._halt()
            fault = status.fault
            if fault not in REACTIVATION_FAULTS:  # minor faults clear; major ones need rACT
                fault = FAULT_NOT_ACTIVATED if command.go else 0
            self._activation_end = None
            self._status = replace(
                status,
                activated=False,
                go=False,
                activation=STA_RESET,
                object=OBJ_MOVING,
                fault=fault,
            )
            return
        if not previous.activate:  # rising edge: (re)activate, clearing every fault
            self._halt()
            self._activation_end = now + self.activation_s
            self._status = replace(
                status,
                activated=True,
                go=False,
                activation=STA_ACTIVATING,
                fault=0,
                requested_position=0,
                current=0,
            )
            if command.go:
                self._status = replace(self._status, fault=FAULT_ACTIVATION_PENDING)
            self._advance(now)
            return
        if status.activation != STA_ACTIVE:
            if command.go:
                self._status = replace(status, fault=FAULT_ACTIVATION_PENDING)
            return
        if status.fault in BLOCKING_FAULTS:
            return
        if not command.go:
            self._halt()
            self._status = replace(status, go=False, fault=0)
            return
        target = min(max(command.position, self.open_ticks), self.closed_ticks)
        self._status = replace(status, go=True, requested_position=command.position, fault=0)
        self._start_motion(float(target))
        self._advance(now)

    def _start_motion(self, target: float) -> None:
        self._target = target
        self._moving = True
        self._status = replace(self._status, object=OBJ_MOVING, current=0)

    def _halt(self) -> None:
        self._moving = False
        self._target = self._position

    def _advance(self, now: float) -> None:
        """Bring the status up to ``now``."""
        dt = max(0.0, now - self._last_t)
        self._last_t = now
        end = self._activation_end
        if end is not None and now >= end:
            self._activation_end = None
            self._position = self._target = float(self.open_ticks)
            self._status = replace(self._status, activation=STA_ACTIVE, object=OBJ_MOVING)
        if self._moving:
            self._move(dt)
        self._status = replace(self._status, position=round(self._position))

    def _move(self, dt: float) -> None:
        step = self._ticks_per_s() * dt
        contact = self._object_ticks
        # An object narrower than the opening and wider than the target stops the closing
        # fingers when they reach its width within this step.
        if contact is not None and self._position < contact <= min(
            self._target, self._position + step
        ):
            self._position = contact
            self._moving = False
            current = round(HOLDING_CURRENT_MAX * self._command.force / BYTE_MAX)
            self._status = replace(self._status, object=OBJ_CONTACT_CLOSING, current=current)
            return
        remaining = self._target - self._position
        if abs(remaining) <= step:
            self._position = self._target
            self._moving = False
            self._status = replace(self._status, object=OBJ_AT_POSITION, current=0)
        else:
            self._position += step if remaining > 0 else -step

    def _ticks_per_s(self) -> float:
        ratio = self.model.speed_min_m_s / self.model.speed_max_m_s
        fraction = ratio + (1 - ratio) * self._command.speed / BYTE_MAX
        metres_per_tick = self.model.stroke_m / (self.closed_ticks - self.open_ticks)
        return self.finger_speed_m_s * fraction / metres_per_tick

    def _ticks_for_width(self, width_m: float) -> float:
        closed_fraction = 1.0 - width_m / self.model.stroke_m
        return self.open_ticks + closed_fraction * (self.closed_ticks - self.open_ticks)
