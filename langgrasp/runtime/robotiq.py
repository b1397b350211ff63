"""Robotiq 2F-85 / 2F-140 / Hand-E grippers over Modbus (RTU, RTU-over-TCP or a TCP gateway).

Register map (shared/research/runtime.md 3.1, from the ROS-Industrial driver and pyRobotiqGripper):
the gripper is Modbus unit 9; a command is three holding registers written with FC16 at 1000,
the status three registers read at 2000, each register high byte first:

=====  ==========================================  ==========================================
byte   command (1000-1002)                         status (2000-2002)
=====  ==========================================  ==========================================
0      action request: rACT bit0, rGTO bit3,       gripper status: gACT bit0, gGTO bit3,
       rATR bit4, rARD bit5                        gSTA bits4-5, gOBJ bits6-7
1      reserved                                    reserved
2      reserved                                    fault: gFLT low nibble, kFLT high nibble
3      rPR position request (0 open, 255 closed)   gPR echo of rPR
4      rSP speed                                   gPO actual position (0 open, 255 closed)
5      rFR force                                   gCU motor current (x 10 mA)
=====  ==========================================  ==========================================

Activation writes a reset ``[0x0000, 0, 0]``, then ``[0x0100, 0, 0]`` (rACT) and polls until
gSTA is 3; a go-to is ``[0x0900, rPR, (rSP << 8) | rFR]`` and ends when gOBJ is not 0.

Positions are ticks 0-255; the opening in metres is linear in the ticks between the unit's
calibrated open and closed readings (``RobotiqConfig.open_ticks`` / ``closed_ticks``, measured with
``RobotiqGripper.calibrate``) and the openings measured there (``open_width_m`` /
``closed_width_m``). Speed and force are fractions of the model's range in [0, 1].
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from langgrasp.errors import InputError
from langgrasp.runtime.devices import (
    DeviceError,
    DeviceFaultError,
    DeviceStoppedError,
    DeviceTimeoutError,
    Gripper,
    GripperState,
    GripperStatus,
)
from langgrasp.runtime.modbus import IoHook, ModbusConfig, ModbusLink

log = logging.getLogger(__name__)

# Register map and serial settings: shared/research/runtime.md 0.9 and 3.1.
DEFAULT_DEVICE_ID = 9
DEFAULT_BAUDRATE = 115200
URCAP_TUNNEL_PORT = 54321  # UR "RS485 URCap" tool-RS485 tunnel (runtime.md 2.4)
COMMAND_REGISTER = 1000
STATUS_REGISTER = 2000
REGISTER_COUNT = 3

# Action request bits (command byte 0) and gripper status bits (status byte 0), runtime.md 3.1.
ACT_BIT = 0x01  # rACT / gACT
GTO_BIT = 0x08  # rGTO / gGTO
ATR_BIT = 0x10  # rATR: emergency auto-release
ARD_BIT = 0x20  # rARD: auto-release direction (1 = opening)
STA_SHIFT = 4  # gSTA: bits 4-5
OBJ_SHIFT = 6  # gOBJ: bits 6-7
TWO_BITS = 0x3
NIBBLE = 0xF
BYTE_MAX = 0xFF

# gSTA values (runtime.md 3.1); 2 is unused by the device.
STA_RESET = 0
STA_ACTIVATING = 1
STA_ACTIVE = 3

# gOBJ values (runtime.md 3.1).
OBJ_MOVING = 0
OBJ_CONTACT_OPENING = 1
OBJ_CONTACT_CLOSING = 2
OBJ_AT_POSITION = 3

POSITION_OPEN = 0  # rPR / gPO: fully open
POSITION_CLOSED = 255  # rPR / gPO: fully closed

FAULTS: dict[int, str] = {
    5: "action delayed: the activation must complete first; wait for activate() to return",
    7: "the activation bit is off: call activate() before moving the fingers",
    8: "over-temperature: let the gripper cool down before the next command",
    9: "no communication for at least 1 s: check the cable or tunnel and keep polling status",
    10: "under-voltage: check the 24 V supply, then re-activate (activate())",
    11: "automatic release in progress: wait until it completes, then re-activate",
    12: "internal fault: power-cycle the gripper and re-activate; contact Robotiq if it stays",
    13: "activation fault: remove anything blocking the fingers, then re-activate",
    14: "overcurrent: remove what jams the fingers, then re-activate",
    15: "automatic release done: re-activate (activate()) before the next command",
}
"""gFLT codes and what to do (runtime.md 3.1; 10-15 need a rising edge of rACT, i.e. activate)."""

FAULT_STATE_CODES = frozenset({5, 7, 8, 10, 11, 12, 13, 14, 15})
"""Codes reported as ``GripperState.FAULT``. Code 9 (no communication for 1 s) is only a warning
in the message: the gripper keeps working once polling resumes."""


@dataclass(frozen=True)
class RobotiqModel:
    """Nominal figures of one gripper model (metres, metres per second, newtons).

    Attributes:
        name: ``"2f-85"``, ``"2f-140"`` or ``"hand-e"``.
        stroke_m: Largest jaw-to-jaw opening.
        speed_min_m_s: Finger speed at rSP 0.
        speed_max_m_s: Finger speed at rSP 255.
        force_min_n: Grip force at rFR 0.
        force_max_n: Grip force at rFR 255.
    """

    name: str
    stroke_m: float
    speed_min_m_s: float
    speed_max_m_s: float
    force_min_n: float
    force_max_n: float

    def speed_m_s(self, fraction: float) -> float:
        """Nominal finger speed at ``fraction`` of the range (linear between min and max)."""
        return self.speed_min_m_s + fraction * (self.speed_max_m_s - self.speed_min_m_s)

    def force_n(self, fraction: float) -> float:
        """Nominal grip force at ``fraction`` of the range (the device's relation is not linear)."""
        return self.force_min_n + fraction * (self.force_max_n - self.force_min_n)


# Strokes and speeds: runtime.md 3.1 (2F-85 20-150 mm/s, 2F-140 30-250 mm/s from pyRobotiqGripper);
# Hand-E speed from castetsb/pyRobotiqGripper:pyrobotiqgripper/constants.py (GRIPPER_HANDE_V*).
# Forces: Robotiq 2F-85/2F-140 instruction manual (e-Series, 2019-02-06) and the Hand-E product
# page, as quoted by third parties; runtime.md 8 says to confirm against the manual.
MODELS: dict[str, RobotiqModel] = {
    "2f-85": RobotiqModel("2f-85", 0.085, 0.020, 0.150, 20.0, 235.0),
    "2f-140": RobotiqModel("2f-140", 0.140, 0.030, 0.250, 10.0, 125.0),
    "hand-e": RobotiqModel("hand-e", 0.050, 0.020, 0.150, 20.0, 185.0),
}


def get_model(name: str) -> RobotiqModel:
    """The ``RobotiqModel`` called ``name``; an ``InputError`` listing the models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(
            f"unknown Robotiq model {name!r}; use one of {', '.join(MODELS)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# Register encoding (pure)


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """Registers as bytes on the wire, high byte first: ``[0x0900, 0x00FF]`` -> ``09 00 00 FF``."""
    return b"".join(int(r).to_bytes(2, "big") for r in registers)


def bytes_to_registers(data: bytes) -> list[int]:
    """Inverse of ``registers_to_bytes``; ``data`` must have an even length."""
    if len(data) % 2:
        raise InputError(f"need an even number of bytes for registers, got {len(data)}")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _byte(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BYTE_MAX:
        raise InputError(f"{name} must be an integer 0-255, got {value!r}")
    return value


def _three(registers: Sequence[int]) -> bytes:
    if len(registers) != REGISTER_COUNT:
        raise InputError(f"need {REGISTER_COUNT} registers, got {len(registers)}")
    return registers_to_bytes(registers)


@dataclass(frozen=True)
class RobotiqCommand:
    """The command registers 1000-1002 (manual names in brackets).

    Attributes:
        activate: [rACT] 1 activates; must stay set while the gripper is in use.
        go: [rGTO] 1 moves to ``position``; 0 stops.
        auto_release: [rATR] emergency auto-release.
        release_opening: [rARD] auto-release direction, True = opening.
        position: [rPR] requested position, 0 (open) to 255 (closed).
        speed: [rSP] 0-255.
        force: [rFR] 0-255.
    """

    activate: bool = False
    go: bool = False
    auto_release: bool = False
    release_opening: bool = False
    position: int = 0
    speed: int = 0
    force: int = 0

    def __post_init__(self) -> None:
        _byte("position", self.position)
        _byte("speed", self.speed)
        _byte("force", self.force)

    def to_bytes(self) -> bytes:
        """The 6 command bytes (byte 0 first)."""
        action = (
            (ACT_BIT if self.activate else 0)
            | (GTO_BIT if self.go else 0)
            | (ATR_BIT if self.auto_release else 0)
            | (ARD_BIT if self.release_opening else 0)
        )
        return bytes([action, 0, 0, self.position, self.speed, self.force])

    def to_registers(self) -> list[int]:
        """The three register values written at 1000."""
        return bytes_to_registers(self.to_bytes())

    @classmethod
    def from_registers(cls, registers: Sequence[int]) -> RobotiqCommand:
        """Decode three command registers (reserved bytes are ignored)."""
        b = _three(registers)
        return cls(
            activate=bool(b[0] & ACT_BIT),
            go=bool(b[0] & GTO_BIT),
            auto_release=bool(b[0] & ATR_BIT),
            release_opening=bool(b[0] & ARD_BIT),
            position=b[3],
            speed=b[4],
            force=b[5],
        )


@dataclass(frozen=True)
class RobotiqRawStatus:
    """The status registers 2000-2002, decoded (manual names in brackets).

    Attributes:
        activated: [gACT] the activation bit is set.
        go: [gGTO] a go-to is in effect (0: stopped, or activating / auto-releasing).
        activation: [gSTA] 0 reset, 1 activating, 3 activation complete.
        object: [gOBJ] 0 moving, 1 contact while opening, 2 contact while closing (object held),
            3 at the requested position (no object).
        fault: [gFLT] gripper fault code, see ``FAULTS``.
        controller_fault: [kFLT] controller fault code (the optional controller's manual).
        requested_position: [gPR] echo of rPR.
        position: [gPO] actual position, 0 (open) to 255 (closed).
        current: [gCU] motor current in units of about 10 mA.
    """

    activated: bool = False
    go: bool = False
    activation: int = STA_RESET
    object: int = OBJ_MOVING
    fault: int = 0
    controller_fault: int = 0
    requested_position: int = 0
    position: int = 0
    current: int = 0

    def to_bytes(self) -> bytes:
        """The 6 status bytes (byte 0 first)."""
        status = (
            (ACT_BIT if self.activated else 0)
            | (GTO_BIT if self.go else 0)
            | (self.activation & TWO_BITS) << STA_SHIFT
            | (self.object & TWO_BITS) << OBJ_SHIFT
        )
        fault = (self.controller_fault & NIBBLE) << 4 | (self.fault & NIBBLE)
        return bytes([status, 0, fault, self.requested_position, self.position, self.current])

    def to_registers(self) -> list[int]:
        """The three register values read at 2000."""
        return bytes_to_registers(self.to_bytes())

    @classmethod
    def from_registers(cls, registers: Sequence[int]) -> RobotiqRawStatus:
        """Decode three status registers."""
        b = _three(registers)
        return cls(
            activated=bool(b[0] & ACT_BIT),
            go=bool(b[0] & GTO_BIT),
            activation=(b[0] >> STA_SHIFT) & TWO_BITS,
            object=(b[0] >> OBJ_SHIFT) & TWO_BITS,
            fault=b[2] & NIBBLE,
            controller_fault=b[2] >> 4,
            requested_position=b[3],
            position=b[4],
            current=b[5],
        )

    @property
    def active(self) -> bool:
        """Activation complete (gSTA 3) with the activation bit set."""
        return self.activated and self.activation == STA_ACTIVE


def reset_command() -> RobotiqCommand:
    """All zero: clears rACT (first half of the activation; also stops an activation)."""
    return RobotiqCommand()


def activate_command() -> RobotiqCommand:
    """The activation request (rACT only): the fingers open and close fully."""
    return RobotiqCommand(activate=True)


def goto_command(position: int, speed: int, force: int) -> RobotiqCommand:
    """A go-to (rACT + rGTO) to ``position`` at ``speed`` and ``force``, all 0-255."""
    return RobotiqCommand(activate=True, go=True, position=position, speed=speed, force=force)


def fraction_to_byte(name: str, fraction: float) -> int:
    """A fraction in [0, 1] as a register byte 0-255; an ``InputError`` outside the range."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise InputError(f"{name} must be a number in [0, 1], got {fraction!r}")
    if not 0.0 <= fraction <= 1.0:  # also rejects NaN
        raise InputError(f"{name} must be within [0, 1] (a fraction of the range), got {fraction}")
    return round(fraction * BYTE_MAX)


# ----------------------------------------------------------------------------------------------
# Configuration


def _default_modbus() -> ModbusConfig:
    """Robotiq behind the UR tool-RS485 tunnel: RTU over TCP, unit 9, 115200 baud on the wire."""
    return ModbusConfig(
        transport="rtu-over-tcp",
        port=URCAP_TUNNEL_PORT,
        baudrate=DEFAULT_BAUDRATE,
        device_id=DEFAULT_DEVICE_ID,
    )


@dataclass(frozen=True)
class TickCalibration:
    """Position readings (gPO, ticks 0-255) of one unit fully open and fully closed."""

    open_ticks: int
    closed_ticks: int

    def to_dict(self) -> dict[str, int]:
        """The ``[gripper]`` keys of robot.toml that take these values."""
        return asdict(self)


FLOAT_FIELDS = (
    "open_width_m",
    "closed_width_m",
    "poll_period_s",
    "activation_timeout_s",
    "motion_timeout_s",
)
"""``RobotiqConfig`` fields that are numbers and must be finite (metres or seconds)."""


@dataclass(frozen=True)
class RobotiqConfig:
    """One Robotiq gripper: model, link and per-unit calibration (robot.toml ``[gripper]``).

    The default calibration is the nominal one, ``open_ticks=0`` / ``closed_ticks=255`` and the
    model's stroke: a real unit reads a few ticks inside that (e.g. the ROS driver's 2F-85 maps
    gPO 13 to 87 mm and 230 to closed, runtime.md 3.1), so run ``RobotiqGripper.calibrate`` once
    per unit and store its ``open_ticks`` / ``closed_ticks``, and measure the openings there with a
    caliper for ``open_width_m`` / ``closed_width_m``.

    Attributes:
        model: One of ``MODELS``: ``"2f-85"``, ``"2f-140"``, ``"hand-e"``.
        modbus: Link settings; default RTU over TCP on port 54321 (UR RS485 URCap), unit 9.
        open_ticks: gPO reading when fully open.
        closed_ticks: gPO reading when fully closed (nothing between the fingers).
        open_width_m: Jaw opening at ``open_ticks``, metres; None = the model's stroke.
        closed_width_m: Jaw opening at ``closed_ticks``, metres.
        poll_period_s: Pause between status reads while waiting.
        activation_timeout_s: Default limit for ``activate``.
        motion_timeout_s: Default limit for ``wait`` (a 2F-140 needs ~4.7 s at minimum speed).
        name: Label in messages and the audit log.
    """

    model: str = "2f-85"
    modbus: ModbusConfig = field(default_factory=_default_modbus)
    open_ticks: int = POSITION_OPEN
    closed_ticks: int = POSITION_CLOSED
    open_width_m: float | None = None
    closed_width_m: float = 0.0
    poll_period_s: float = 0.02
    activation_timeout_s: float = 10.0
    motion_timeout_s: float = 10.0
    name: str = "gripper"

    def __post_init__(self) -> None:
        spec = get_model(self.model)
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            if value is None and name == "open_width_m":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")
        if self.open_width_m is None:
            object.__setattr__(self, "open_width_m", spec.stroke_m)
        _byte("open_ticks", self.open_ticks)
        _byte("closed_ticks", self.closed_ticks)
        if self.open_ticks >= self.closed_ticks:
            raise InputError(
                f"open_ticks ({self.open_ticks}) must be below closed_ticks ({self.closed_ticks}); "
                "0 is open and 255 closed on Robotiq grippers"
            )
        if not 0.0 <= self.closed_width_m < self.max_width_m:
            raise InputError(
                f"need 0 <= closed_width_m ({self.closed_width_m}) < open_width_m "
                f"({self.max_width_m}), in metres"
            )
        for name in ("poll_period_s", "activation_timeout_s", "motion_timeout_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0 seconds, got {getattr(self, name)}")

    @property
    def spec(self) -> RobotiqModel:
        """The model's nominal figures."""
        return MODELS[self.model]

    @property
    def max_width_m(self) -> float:
        """Largest opening of this unit (``open_width_m``), metres."""
        return float(self.open_width_m)  # type: ignore[arg-type]  # set in __post_init__

    def ticks_for_width(self, width_m: float) -> int:
        """Position request (rPR, 0-255) for an opening of ``width_m`` metres.

        Linear between the calibrated ends; a width at or beyond an end asks for the mechanical
        end (0 or 255), so ``close`` squeezes with full travel and ``open`` opens fully.
        """
        if width_m >= self.max_width_m:
            return POSITION_OPEN
        if width_m <= self.closed_width_m:
            return POSITION_CLOSED
        span_ticks = self.closed_ticks - self.open_ticks
        fraction = (self.max_width_m - width_m) / (self.max_width_m - self.closed_width_m)
        return min(BYTE_MAX, max(0, round(self.open_ticks + fraction * span_ticks)))

    def width_for_ticks(self, ticks: int) -> float:
        """Opening in metres at a position reading (gPO); never below 0."""
        fraction = (ticks - self.open_ticks) / (self.closed_ticks - self.open_ticks)
        return max(0.0, self.max_width_m - fraction * (self.max_width_m - self.closed_width_m))

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-ready form (``modbus`` as a nested table)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "modbus"} | {
            "modbus": asdict(self.modbus)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "[gripper]") -> RobotiqConfig:
        """Build from a robot.toml ``[gripper]`` table (``modbus`` as a nested table).

        Missing keys keep their defaults; ``modbus`` keys missing from the table keep the Robotiq
        defaults (RTU over TCP, port 54321, unit 9), not ``ModbusConfig``'s.

        Raises:
            InputError: Not a table, an unknown key (the message lists the known ones) or a
                value of the wrong type or range; ``where`` names the table in the message.
        """
        if not isinstance(data, dict):
            raise InputError(f"{where} must be a table, got {type(data).__name__}")
        values = dict(data)
        modbus = modbus_config_from_dict(values.pop("modbus", {}), f"{where}.modbus")
        _check_keys(values, [f.name for f in fields(cls) if f.name != "modbus"], where, "modbus")
        kinds = {"model": str, "name": str, "open_ticks": int, "closed_ticks": int}
        for key, value in values.items():
            values[key] = coerce_value(key, value, kinds.get(key, float), where)
        try:
            return cls(modbus=modbus, **values)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None


def _check_keys(data: dict[str, Any], known: list[str], where: str, *extra: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted([*known, *extra]))}"
        )


def coerce_value(key: str, value: Any, kind: type, where: str) -> Any:
    """Check one parsed TOML value against ``kind`` and convert it.

    An int is accepted for a float; a bool is never a number; a float must be finite (TOML allows
    ``inf`` and ``nan``); ``open_width_m`` may be None (the model's stroke).

    Args:
        key: The key, for the message.
        value: The parsed value.
        kind: ``int``, ``float`` or ``str``.
        where: File and table, for the message (e.g. ``"robot.toml [gripper]"``).

    Raises:
        InputError: naming ``where`` and ``key``, e.g. ``retries = 1.5`` for an int.
    """
    if key == "open_width_m" and value is None:
        return None
    ok = not isinstance(value, bool) and (
        isinstance(value, kind) or (kind is float and isinstance(value, int))
    )
    if not ok:
        raise InputError(f"{where}.{key} must be of type {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise InputError(f"{where}.{key} must be a finite number, got {value!r}")
    return kind(value)


def modbus_config_from_dict(
    data: Any, where: str, defaults: ModbusConfig | None = None
) -> ModbusConfig:
    """Build a ``ModbusConfig`` from a robot.toml ``modbus`` table.

    Keys missing from the table keep ``defaults``' values; each value must have the type of the
    ``ModbusConfig`` field (``retries = 1.5`` is refused) and floats must be finite.

    Args:
        data: The parsed table (a ``ModbusConfig`` is returned as is).
        where: File and table, for messages (e.g. ``"robot.toml [arm].modbus"``).
        defaults: Values for missing keys; None = the Robotiq defaults (RTU over TCP, port
            54321, unit 9).

    Raises:
        InputError: not a table, an unknown key (the known ones are listed), a wrong type or a
            value ``ModbusConfig`` refuses; the message starts with ``where``.
    """
    if isinstance(data, ModbusConfig):
        return data
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a table, got {type(data).__name__}")
    base = asdict(defaults if defaults is not None else _default_modbus())
    _check_keys(data, list(base), where)
    values = {key: coerce_value(key, value, type(base[key]), where) for key, value in data.items()}
    try:
        return ModbusConfig(**(base | values))
    except InputError as err:
        raise InputError(f"{where}: {err}") from None


# ----------------------------------------------------------------------------------------------
# Driver


class RobotiqGripper(Gripper):
    """A Robotiq gripper over a ``ModbusLink`` (see the module docstring for the registers).

    Commands return once written; ``wait`` polls the status until the fingers stop. ``stop`` may
    be called from another thread while ``wait`` polls (the link serialises requests).

    Args:
        config: Model, link and calibration.
        on_io: Called with every register write (``AuditLog.device_io``).
    """

    def __init__(self, config: RobotiqConfig | None = None, on_io: IoHook | None = None) -> None:
        self.config = config or RobotiqConfig()
        self.name = self.config.name
        self.max_width_m = self.config.max_width_m
        self.link = ModbusLink(self.config.modbus, name=self.name, on_io=on_io)
        self._lock = threading.RLock()
        self._activated = False
        self._stop_requested = threading.Event()  # set by stop(); ends an activation's waits
        self._last: RobotiqCommand | None = None  # last go-to written
        self._pending: int | None = None  # rPR of a go-to not yet seen finished
        self._requested_width_m: float | None = None

    # -- link ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the link (the gripper is not activated or moved)."""
        with self._lock:
            self._activated = False
            self.link.connect()

    def disconnect(self) -> None:
        """Close the link; safe to call twice."""
        self.link.close()

    # -- commands -----------------------------------------------------------------------------

    def activate(self, timeout_s: float | None = None) -> GripperStatus:
        """Reset, set rACT and wait for gSTA 3. The fingers open and close fully!

        Args:
            timeout_s: Limit for the whole sequence; None = ``config.activation_timeout_s``.

        Raises:
            DeviceTimeoutError: not activated in time.
            DeviceFaultError: the gripper reported a fault during activation.
            DeviceStoppedError: ``stop`` was called meanwhile; the gripper is left in reset.
        """
        limit = self.config.activation_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        with self._lock:
            self._stop_requested.clear()
            self._activated = False
            self._pending = None
            self._requested_width_m = None
            self._write(reset_command())
        # A stale "activated" status must not end the wait early: see the reset first.
        # Faults from before persist until the rising edge of rACT, so they do not count here.
        self._poll(
            lambda raw: not raw.activated and raw.activation == STA_RESET,
            deadline,
            "reset",
            faults_fatal=False,
            stoppable=True,
        )
        with self._lock:  # stop() holds the lock too: it either comes first or resets after this
            self._raise_if_stopped("activation")
            self._write(activate_command())
        raw = self._poll(lambda raw: raw.active, deadline, "activation", stoppable=True)
        with self._lock:
            self._activated = True
        log.info("%s: activated (%s)", self.name, self.config.modbus.describe())
        return self._status(raw)

    def move_to(self, width_m: float, speed: float = 1.0, force: float = 0.5) -> None:
        """Start moving to an opening of ``width_m`` metres (see ``Gripper.move_to``).

        Raises:
            InputError: ``width_m`` outside [0, ``max_width_m``], ``speed`` or ``force`` outside
                [0, 1] (nothing is written).
            DeviceError: the gripper is not activated (call ``activate``) or does not answer.
        """
        if isinstance(width_m, bool) or not isinstance(width_m, (int, float)):
            raise InputError(f"width_m must be a number of metres, got {width_m!r}")
        if not 0.0 <= width_m <= self.max_width_m:  # also rejects NaN
            raise InputError(
                f"gripper opening {width_m} m is outside [0, {self.max_width_m}] m for this "
                f"{self.config.model}"
            )
        sp = fraction_to_byte("speed", speed)
        fr = fraction_to_byte("force", force)
        self._goto(self.config.ticks_for_width(float(width_m)), sp, fr, float(width_m))

    def stop(self) -> None:
        """Stop the fingers where they are (rGTO cleared, rACT kept).

        A gripper that is not activated gets the reset command instead, which also halts an
        activation in progress (setting rACT there would start one); an ``activate`` waiting in
        another thread then raises ``DeviceStoppedError`` instead of polling until its timeout.
        """
        with self._lock:
            self._stop_requested.set()
            self._pending = None
            if not self._activated and not self._read_raw().active:
                self._write(reset_command())
                return
            last = self._last or activate_command()
            self._write(replace(last, activate=True, go=False))

    def status(self) -> GripperStatus:
        """Read and decode the status registers."""
        return self._status(self._read_raw())

    def wait(self, timeout_s: float | None = None) -> GripperStatus:
        """Poll until the last go-to finished (gPR echoes it and gOBJ != 0) or the fingers stop.

        Args:
            timeout_s: Limit; None = ``config.motion_timeout_s``.

        Raises:
            DeviceTimeoutError: still moving after ``timeout_s``.
            DeviceFaultError: the gripper reports a fault or lost its activation.
        """
        limit = self.config.motion_timeout_s if timeout_s is None else timeout_s
        raw = self._poll(self._finished, time.monotonic() + limit, "motion")
        with self._lock:
            self._pending = None
        return self._status(raw)

    def calibrate(
        self,
        speed: float = 1.0,
        force: float = 0.0,
        timeout_s: float | None = None,
        apply: bool = True,
    ) -> TickCalibration:
        """Open and close fully and read the position at both ends; ends open again.

        Nothing may be between the fingers. Store the result in robot.toml ``[gripper]``
        (``TickCalibration.to_dict``); the openings at both ends are measured by hand.

        Args:
            speed: Fraction of the speed range for the three motions.
            force: Fraction of the force range (low: gentle if something is in the way).
            timeout_s: Limit per motion; None = ``config.motion_timeout_s``.
            apply: Also use the new readings in this driver's ``config``.

        Raises:
            DeviceError: not activated, or the fingers stopped on something (nothing stored).
        """
        sp, fr = fraction_to_byte("speed", speed), fraction_to_byte("force", force)
        readings = []
        for target in (POSITION_OPEN, POSITION_CLOSED):
            self._goto(target, sp, fr, None)
            status = self.wait(timeout_s)
            if status.state is not GripperState.AT_POSITION:
                self._goto(POSITION_OPEN, sp, fr, None)
                raise DeviceError(
                    f"{self.name}: calibration stopped ({status.message}); clear the fingers' "
                    "path, remove any object and calibrate again"
                )
            readings.append(RobotiqRawStatus.from_registers(status.raw).position)
        self._goto(POSITION_OPEN, sp, fr, None)
        self.wait(timeout_s)
        try:
            result = TickCalibration(open_ticks=readings[0], closed_ticks=readings[1])
            calibrated = replace(self.config, **result.to_dict())
        except InputError as err:
            raise DeviceError(f"{self.name}: implausible calibration readings: {err}") from None
        if apply:
            self.config = calibrated
        return result

    # -- internals ----------------------------------------------------------------------------

    def _goto(self, position: int, speed: int, force: int, width_m: float | None) -> None:
        with self._lock:
            # Read the status before every go-to, not only the first: a gripper that lost power
            # while the Modbus link stayed up reads as reset, and a go-to (rACT=1, rGTO=1) would
            # start an activation on it, moving the fingers fully.
            if not self._read_raw().active:
                self._activated = False
                raise DeviceError(
                    f"{self.name}: the gripper is not activated (never activated, reset or "
                    "power-cycled); make sure it holds nothing, then activate it (the fingers "
                    "open and close fully)"
                )
            self._activated = True
            command = goto_command(position, speed, force)
            self._write(command)
            self._last = command
            self._pending = position
            self._requested_width_m = width_m

    def _write(self, command: RobotiqCommand) -> None:
        self.link.write(COMMAND_REGISTER, command.to_registers())

    def _read_raw(self) -> RobotiqRawStatus:
        return RobotiqRawStatus.from_registers(self.link.read(STATUS_REGISTER, REGISTER_COUNT))

    def _finished(self, raw: RobotiqRawStatus) -> bool:
        if not raw.activated:
            with self._lock:
                self._activated = False
            raise DeviceFaultError(
                f"{self.name}: the gripper is not activated (never activated, reset or "
                "power-cycled); call activate() before the next command"
            )
        if raw.activation != STA_ACTIVE:
            return False
        pending = self._pending
        if pending is None:  # nothing requested (or stopped): done once the fingers rest
            return not raw.go or raw.object != OBJ_MOVING
        # A status read right after the write may predate it: trust gOBJ only once gPR echoes
        # this request with rGTO in effect.
        return raw.go and raw.requested_position == pending and raw.object != OBJ_MOVING

    def _poll(
        self,
        done: Callable[[RobotiqRawStatus], bool],
        deadline: float,
        what: str,
        faults_fatal: bool = True,
        stoppable: bool = False,
    ) -> RobotiqRawStatus:
        """Read the status until ``done``; ``stoppable``: a ``stop`` meanwhile ends the wait."""
        while True:
            if stoppable:
                self._raise_if_stopped(what)
            raw = self._read_raw()
            if faults_fatal and raw.fault in FAULT_STATE_CODES:
                raise DeviceFaultError(f"{self.name}: fault during {what}: {_fault_text(raw)}")
            if done(raw):
                return raw
            if time.monotonic() >= deadline:
                raise DeviceTimeoutError(
                    f"{self.name}: {what} not finished in time; last status: "
                    f"{self._status(raw).message}"
                )
            time.sleep(self.config.poll_period_s)

    def _raise_if_stopped(self, what: str) -> None:
        if self._stop_requested.is_set():
            raise DeviceStoppedError(
                f"{self.name}: {what} ended by a stop; the gripper is in reset, activate it again"
            )

    def _status(self, raw: RobotiqRawStatus) -> GripperStatus:
        state, message = _describe(raw)
        if raw.fault and raw.fault not in FAULT_STATE_CODES:
            message += f"; warning: {_fault_text(raw)}"
        if raw.controller_fault:
            message += f"; controller fault kFLT {raw.controller_fault} (see its manual)"
        return GripperStatus(
            state=state,
            width_m=self.config.width_for_ticks(raw.position),
            requested_width_m=self._requested_width_m,
            fault_code=raw.fault,
            message=message,
            raw=tuple(raw.to_registers()),
        )


def _fault_text(raw: RobotiqRawStatus) -> str:
    return f"gFLT {raw.fault}: {FAULTS.get(raw.fault, 'unknown fault code; see the manual')}"


def _describe(raw: RobotiqRawStatus) -> tuple[GripperState, str]:
    """Fold gACT/gSTA/gGTO/gOBJ/gFLT into a ``GripperState`` and a message."""
    if raw.fault in FAULT_STATE_CODES:
        return GripperState.FAULT, _fault_text(raw)
    if not raw.activated:
        return GripperState.RESET, "not activated; call activate()"
    if raw.activation != STA_ACTIVE:
        return GripperState.ACTIVATING, "activation in progress"
    if not raw.go:
        return GripperState.AT_POSITION, f"ready, no go-to in effect, at position {raw.position}"
    states = {
        OBJ_MOVING: (GripperState.MOVING, f"moving to {raw.requested_position}"),
        OBJ_CONTACT_OPENING: (
            GripperState.CONTACT_OPENING,
            f"stopped by contact while opening, at {raw.position}",
        ),
        OBJ_CONTACT_CLOSING: (GripperState.HOLDING, f"holding an object at {raw.position}"),
        OBJ_AT_POSITION: (
            GripperState.AT_POSITION,
            f"at position {raw.position} (requested {raw.requested_position}), no object",
        ),
    }
    return states[raw.object]
