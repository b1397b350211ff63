"""An arm driven through Modbus registers by a program on its controller (UR profile built in).

langgrasp is the Modbus client; a small program on the robot controller (a URScript program on a
UR, ``docs/ur_pick_server.script``; a PLC program for other arms) polls the registers and moves
the arm. The protocol, register table and handshake are documented in ``docs/arm_protocol.md``.

Registers (``RegisterMap``, offsets from ``base``; UR: general-purpose registers 128-255,
shared/research/runtime.md 3.2):

* client-written: target pose x, y, z (int16, 0.1 mm) and rx, ry, rz (int16, mrad; axis-angle
  rotation vector, as UR poses are), speed (per mille of the controller program's maximum tool
  speed), command (move / home / stop) and sequence number (written last);
* controller-written: ack (last sequence accepted), state (idle / moving / done / stopped /
  fault) and fault code;
* optional read-only pose readback (UR: 400-405, TCP pose in 0.1 mm and mrad, runtime.md 3.2).

Handshake: write pose and speed, then command and a new sequence number; the controller writes
state = moving and then ack = sequence; it writes state = done when the tool arrived. A stop is a
single write of the stop command, honoured at once.

Frames and units: poses are ``T_base_ee`` 4x4 matrices in metres, the tool (TCP) frame in the
robot base frame, exactly as the controller's own ``movel`` targets and TCP readback.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from langgrasp.calibration.transforms import ROTATION_TOLERANCE
from langgrasp.errors import InputError
from langgrasp.runtime.devices import (
    Arm,
    ArmState,
    ArmStatus,
    DeviceDisconnectedError,
    DeviceError,
    DeviceFaultError,
    DeviceTimeoutError,
)
from langgrasp.runtime.modbus import IoHook, ModbusConfig, ModbusLink, from_signed16, to_signed16
from langgrasp.runtime.robotiq import modbus_config_from_dict

log = logging.getLogger(__name__)

UR_GENERAL_PURPOSE_FIRST = 128
"""First of the UR controller's 128 general-purpose registers 128-255 (runtime.md 3.2)."""
UR_GENERAL_PURPOSE_LAST = 255
UR_TCP_POSE_REGISTER = 400
"""UR read-only registers 400-405: actual TCP x, y, z (0.1 mm) and rx, ry, rz (mrad), base frame
(runtime.md 3.2)."""
UR_MODBUS_PORT = 502
"""The UR controller's Modbus TCP server always listens on port 502 (runtime.md 3.2)."""

POSITION_UNIT_M = 1e-4
"""Metres per count of a position register: 0.1 mm, the UR TCP-pose register scale."""
ROTATION_UNIT_RAD = 1e-3
"""Radians per count of a rotation register: 1 mrad, the UR TCP-pose register scale."""
INT16_MIN, INT16_MAX = -0x8000, 0x7FFF
"""Range of a register read as two's complement (URScript decodes ``v - 65536`` above 32767)."""
SPEED_FULL_SCALE = 1000
"""Speed register value for the controller program's maximum tool speed (per mille)."""
SEQUENCE_MODULUS = 0xFFFF
"""Sequence numbers run 1..65535 and wrap to 1; 0 means "nothing sent yet"."""
POSE_FIELDS = ("x", "y", "z", "rx", "ry", "rz")
POSE_REGISTERS = len(POSE_FIELDS)

RIGID_TOLERANCE = ROTATION_TOLERANCE
"""Largest deviation of R^T R from identity (and of the last row from [0, 0, 0, 1]) accepted as a
rigid transform: the same as the safety gate's check (``calibration.transforms.as_pose_matrix``),
so a pose the gate allows is never refused here; about the 1 mrad register resolution."""
SMALL_ANGLE_RAD = 1e-9
"""Below this rotation angle the rotation-vector formulas use their first-order forms."""
MAX_POSITION_UNIT_M = 1e-3
"""Coarsest position scale accepted (1 mm per count): coarser would move the tool far from the
gate-checked target."""
MAX_ROTATION_UNIT_RAD = 1e-2
"""Coarsest rotation scale accepted (10 mrad per count, about 0.6 degrees)."""
ROUND_TRIP_SLACK = 1e-9
"""Floating-point slack on the one-count round-trip check of ``quantize_pose``."""


class ArmCommand(IntEnum):
    """Values of the command register."""

    NONE = 0
    MOVE = 1  # linear move (UR movel) to the pose registers
    HOME = 2  # the controller program's own home position
    STOP = 3  # halt at once; honoured whenever written, without a new sequence number


class ControllerState(IntEnum):
    """Values of the state register (written by the controller program)."""

    IDLE = 0
    MOVING = 1
    DONE = 2  # reached the target of the acknowledged sequence
    STOPPED = 3  # halted by a stop command
    FAULT = 4  # see the fault register


FAULT_UNREACHABLE = 1
FAULT_BAD_COMMAND = 2
FAULT_BAD_SPEED = 3
FAULT_MESSAGES = {
    FAULT_UNREACHABLE: "target outside the controller's safety limits or unreachable; pick "
    "another grasp or check the workspace box and the calibration",
    FAULT_BAD_COMMAND: "unknown command value; the controller program and langgrasp disagree on "
    "the protocol (see docs/arm_protocol.md)",
    FAULT_BAD_SPEED: "speed register out of 1-1000; the controller program and langgrasp "
    "disagree on the protocol (see docs/arm_protocol.md)",
}
"""Fault codes the reference controller program (docs/ur_pick_server.script) reports."""

_TO_ARM_STATE = {
    ControllerState.IDLE: ArmState.IDLE,
    ControllerState.MOVING: ArmState.MOVING,
    ControllerState.DONE: ArmState.IDLE,
    ControllerState.STOPPED: ArmState.STOPPED,
    ControllerState.FAULT: ArmState.FAULT,
}


# ----------------------------------------------------------------------------------------------
# Rotation vectors (axis-angle, as UR poses use) without torch or scipy


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def rotvec_to_matrix(rotvec: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle rotation vector (Rodrigues' formula).

    Args:
        rotvec: ``(3,)`` rotation axis times angle, radians.

    Returns:
        ``(3, 3)`` rotation matrix.
    """
    r = np.asarray(rotvec, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(r))
    if angle < SMALL_ANGLE_RAD:
        return np.eye(3) + _skew(r)
    k = _skew(r / angle)
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def matrix_to_rotvec(rotation: np.ndarray) -> np.ndarray:
    """Axis-angle rotation vector of a rotation matrix, angle in [0, pi].

    Goes through a unit quaternion chosen by Shepperd's method (the largest of w, x, y, z is
    computed from the diagonal), which stays accurate near angle pi where the usual
    ``arccos((trace - 1) / 2)`` loses the axis. At exactly pi, ``r`` and ``-r`` are the same
    rotation; either may be returned.

    Args:
        rotation: ``(3, 3)`` rotation matrix.

    Returns:
        ``(3,)`` rotation vector in radians.
    """
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    pick = int(np.argmax([trace, m[0, 0], m[1, 1], m[2, 2]]))
    if pick == 0:
        w = 0.5 * math.sqrt(max(1.0 + trace, 0.0))
        x, y, z = (
            (m[2, 1] - m[1, 2]) / (4 * w),
            (m[0, 2] - m[2, 0]) / (4 * w),
            (m[1, 0] - m[0, 1]) / (4 * w),
        )
    elif pick == 1:
        x = 0.5 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 0.0))
        w, y, z = (
            (m[2, 1] - m[1, 2]) / (4 * x),
            (m[0, 1] + m[1, 0]) / (4 * x),
            (m[0, 2] + m[2, 0]) / (4 * x),
        )
    elif pick == 2:
        y = 0.5 * math.sqrt(max(1.0 - m[0, 0] + m[1, 1] - m[2, 2], 0.0))
        w, x, z = (
            (m[0, 2] - m[2, 0]) / (4 * y),
            (m[0, 1] + m[1, 0]) / (4 * y),
            (m[1, 2] + m[2, 1]) / (4 * y),
        )
    else:
        z = 0.5 * math.sqrt(max(1.0 - m[0, 0] - m[1, 1] + m[2, 2], 0.0))
        w, x, y = (
            (m[1, 0] - m[0, 1]) / (4 * z),
            (m[0, 2] + m[2, 0]) / (4 * z),
            (m[1, 2] + m[2, 1]) / (4 * z),
        )
    if w < 0:  # q and -q are the same rotation; w >= 0 gives the angle in [0, pi]
        w, x, y, z = -w, -x, -y, -z
    v = np.array([x, y, z])
    s = float(np.linalg.norm(v))
    angle = 2.0 * math.atan2(s, w)
    return v * (angle / s if s > SMALL_ANGLE_RAD else 2.0 / w)


def pose_to_vector(T: np.ndarray) -> np.ndarray:  # noqa: N803
    """``T_base_ee`` as a UR-style pose vector.

    Args:
        T: ``(4, 4)`` rigid transform, metres.

    Returns:
        ``(6,)`` x, y, z in metres and rx, ry, rz (rotation vector) in radians.
    """
    T = np.asarray(T, dtype=np.float64)  # noqa: N806
    return np.concatenate([T[:3, 3], matrix_to_rotvec(T[:3, :3])])


def vector_to_pose(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    """Inverse of ``pose_to_vector``: ``(6,)`` x, y, z (m), rx, ry, rz (rad) -> ``(4, 4)``."""
    v = np.asarray(vector, dtype=np.float64).reshape(POSE_REGISTERS)
    T = np.eye(4)  # noqa: N806
    T[:3, :3] = rotvec_to_matrix(v[3:])
    T[:3, 3] = v[:3]
    return T


def check_rigid_transform(T: Any, name: str = "pose") -> np.ndarray:  # noqa: N803
    """``T`` as a float ``(4, 4)`` array if it is a rigid transform, else ``InputError``."""
    array = np.asarray(T, dtype=np.float64) if not isinstance(T, str) else None
    if array is None or array.shape != (4, 4) or not np.all(np.isfinite(array)):
        raise InputError(f"{name} must be a finite 4x4 matrix (T_base_ee, metres), got {T!r}")
    rotation = array[:3, :3]
    if (
        np.abs(array[3] - [0.0, 0.0, 0.0, 1.0]).max() > RIGID_TOLERANCE
        or np.abs(rotation.T @ rotation - np.eye(3)).max() > RIGID_TOLERANCE
        or np.linalg.det(rotation) < 0
    ):
        raise InputError(
            f"{name} is not a rigid transform (its 3x3 block must be a rotation and its last row "
            "[0, 0, 0, 1]); re-orthonormalise it before sending"
        )
    return array


# ----------------------------------------------------------------------------------------------
# Register map


@dataclass(frozen=True)
class RegisterMap:
    """Where each field of the protocol lives (holding registers, 16 bit each).

    Client-written and controller-written registers are given as offsets from ``base``; the
    pose readback is an absolute address because controllers keep it elsewhere (UR: 400).

    Attributes:
        base: Address of offset 0.
        pose: Offset of the 6 consecutive target registers x, y, z, rx, ry, rz (int16).
        speed: Offset of the speed register, per mille (1-1000) of the program's maximum.
        command: Offset of the command register (``ArmCommand``).
        sequence: Offset of the sequence register; written last, after the command.
        ack: Offset of the controller-written last accepted sequence.
        state: Offset of the controller-written state (``ControllerState``).
        fault: Offset of the controller-written fault code (0 = none).
        readback: Absolute address of 6 read-only registers with the actual TCP pose, same scales
            as the target; None when the controller has none.
        position_unit_m: Metres per position count (0.1 mm on a UR).
        rotation_unit_rad: Radians per rotation count (1 mrad on a UR).
    """

    base: int = UR_GENERAL_PURPOSE_FIRST
    pose: int = 0
    speed: int = 6
    command: int = 7
    sequence: int = 8
    ack: int = 9
    state: int = 10
    fault: int = 11
    readback: int | None = UR_TCP_POSE_REGISTER
    position_unit_m: float = POSITION_UNIT_M
    rotation_unit_rad: float = ROTATION_UNIT_RAD

    OFFSETS: ClassVar[tuple[str, ...]] = (
        "pose",
        "speed",
        "command",
        "sequence",
        "ack",
        "state",
        "fault",
    )
    """Fields given as offsets from ``base``."""

    def __post_init__(self) -> None:
        for name in ("base", *self.OFFSETS):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"register {name} must be an integer >= 0, got {value!r}")
        if self.readback is not None and (
            isinstance(self.readback, bool)
            or not isinstance(self.readback, int)
            or self.readback < 0
        ):
            raise InputError(f"register readback must be an address or None, got {self.readback}")
        for name, limit in (
            ("position_unit_m", MAX_POSITION_UNIT_M),
            ("rotation_unit_rad", MAX_ROTATION_UNIT_RAD),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 < value <= limit
            ):
                raise InputError(
                    f"register {name} must be a finite number in (0, {limit:g}] per count, got "
                    f"{value!r} (UR: {POSITION_UNIT_M:g} m and {ROTATION_UNIT_RAD:g} rad)"
                )
        used = self.addresses()
        if self.register_numbers()[-1] > 0xFFFF:
            raise InputError(f"register addresses must be <= 65535, got {used}")
        seen: dict[int, str] = {}
        for name, address in used.items():
            count = POSE_REGISTERS if name in ("pose", "readback") else 1
            for a in range(address, address + count):
                if a in seen:
                    raise InputError(
                        f"register map overlaps: {name} and {seen[a]} both use register {a}"
                    )
                seen[a] = name

    def address(self, name: str) -> int:
        """Absolute address of a field: ``base + offset`` (``readback`` is absolute already)."""
        if name == "readback":
            if self.readback is None:
                raise InputError("this register map has no pose readback")
            return self.readback
        return self.base + getattr(self, name)

    def addresses(self) -> dict[str, int]:
        """Every field's first absolute address, readback included when present."""
        used = {name: self.base + getattr(self, name) for name in self.OFFSETS}
        if self.readback is not None:
            used["readback"] = self.readback
        return used

    def register_numbers(self) -> list[int]:
        """Every register the protocol uses, sorted (the 6-register blocks expanded)."""
        numbers = []
        for name, address in self.addresses().items():
            count = POSE_REGISTERS if name in ("pose", "readback") else 1
            numbers.extend(range(address, address + count))
        return sorted(numbers)


UR_PROFILE = RegisterMap()
"""Universal Robots: general-purpose registers 128-139 (of 128-255) + TCP readback 400-405."""

PROFILES = {"ur": UR_PROFILE}
"""Register maps by name, for ``profile = "..."`` in robot.toml."""


def encode_pose(T_base_ee: np.ndarray, register_map: RegisterMap = UR_PROFILE) -> list[int]:  # noqa: N803
    """The 6 register values (0-65535) for a target pose.

    Args:
        T_base_ee: ``(4, 4)`` rigid transform, metres.
        register_map: Supplies the scales.

    Returns:
        x, y, z in ``position_unit_m`` and rx, ry, rz in ``rotation_unit_rad`` as
        two's-complement register values. Counts are rounded; rotation counts are truncated
        towards zero instead where rounding would make the angle exceed pi, so a decoded pose
        encodes back to the same registers.

    Raises:
        InputError: not a rigid transform, or a component outside the int16 range (the message
            names it and the representable range).
    """
    vector = pose_to_vector(check_rigid_transform(T_base_ee, "target pose"))
    units = np.array([register_map.position_unit_m] * 3 + [register_map.rotation_unit_rad] * 3)
    counts = np.round(vector / units)
    if np.linalg.norm(counts[3:] * units[3:]) > math.pi:
        counts[3:] = np.fix(vector[3:] / units[3:])
    for name, value, count, unit in zip(POSE_FIELDS, vector, counts, units, strict=True):
        if not INT16_MIN <= count <= INT16_MAX:
            limit = INT16_MAX * unit
            kind = "m" if name in ("x", "y", "z") else "rad"
            raise InputError(
                f"target pose {name} = {value:.4f} {kind} cannot be encoded in a 16-bit register "
                f"(range +-{limit:.4f} {kind} at {unit:g} {kind} per count); nothing was sent"
            )
    return [from_signed16(int(c)) for c in counts]


def decode_pose(registers: Sequence[int], register_map: RegisterMap = UR_PROFILE) -> np.ndarray:
    """Inverse of ``encode_pose``: 6 register values -> ``(4, 4)`` ``T_base_ee`` in metres."""
    if len(registers) != POSE_REGISTERS:
        raise InputError(f"a pose takes {POSE_REGISTERS} registers, got {len(registers)}")
    signed = [to_signed16(int(v)) for v in registers]
    units = [register_map.position_unit_m] * 3 + [register_map.rotation_unit_rad] * 3
    return vector_to_pose([s * u for s, u in zip(signed, units, strict=True)])


def quantize_pose(T_base_ee: np.ndarray, register_map: RegisterMap = UR_PROFILE) -> np.ndarray:  # noqa: N803
    """The pose the controller will actually receive: ``decode_pose(encode_pose(T))``.

    Checks the round trip: each position within one count of the request, and the rotation
    within one count per component (the exponential map is 1-Lipschitz, so that bounds the
    rotation angle between the two by ``sqrt(3)`` counts).

    Args:
        T_base_ee: ``(4, 4)`` rigid transform, metres.
        register_map: Supplies the scales.

    Returns:
        ``(4, 4)`` decoded target, metres; gate-check this one, it is what gets sent.

    Raises:
        InputError: cannot be encoded, or the decoded pose is more than one count away.
    """
    wanted = check_rigid_transform(T_base_ee, "target pose")
    sent = decode_pose(encode_pose(wanted, register_map), register_map)
    position_error = float(np.abs(sent[:3, 3] - wanted[:3, 3]).max())
    rotation_error = float(np.linalg.norm(matrix_to_rotvec(wanted[:3, :3].T @ sent[:3, :3])))
    position_limit = register_map.position_unit_m + ROUND_TRIP_SLACK
    rotation_limit = math.sqrt(3.0) * register_map.rotation_unit_rad + ROUND_TRIP_SLACK
    if not (position_error <= position_limit and rotation_error <= rotation_limit):
        raise InputError(
            f"target pose does not survive the register encoding (position off by "
            f"{position_error:.4g} m, rotation by {rotation_error:.4g} rad; at most one count "
            "allowed); check position_unit_m / rotation_unit_rad; nothing was sent"
        )
    return sent


def speed_register(speed: float) -> int:
    """Speed fraction (0, 1] -> per-mille register value 1-1000."""
    return min(SPEED_FULL_SCALE, max(1, round(speed * SPEED_FULL_SCALE)))


# ----------------------------------------------------------------------------------------------
# Configuration (robot.toml [arm] table)


@dataclass(frozen=True)
class ModbusArmConfig:
    """How to reach and drive the controller program.

    Attributes:
        modbus: Where the controller's Modbus server is (UR: Modbus TCP, port 502).
        registers: The register map (``UR_PROFILE`` or a PLC's own).
        max_speed: Largest speed fraction ever sent, (0, 1]; ``move_to`` speeds above it are
            clamped to it (lower it while commissioning a cell). The speed register is per mille
            of the controller program's maximum tool speed (``MAX_SPEED_M_S`` in the URScript).
        ack_timeout_s: Longest wait for the controller to acknowledge a new sequence number.
        poll_interval_s: Pause between status reads while waiting.

    The home position is the controller program's (``HOME_JOINTS_RAD`` in the URScript): langgrasp
    sends the home command and waits.
    """

    modbus: ModbusConfig = field(default_factory=lambda: ModbusConfig(port=UR_MODBUS_PORT))
    registers: RegisterMap = UR_PROFILE
    max_speed: float = 1.0
    ack_timeout_s: float = 1.0
    poll_interval_s: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.max_speed <= 1:
            raise InputError(f"arm max_speed must be in (0, 1], got {self.max_speed}")
        if self.ack_timeout_s <= 0 or self.poll_interval_s <= 0:
            raise InputError("arm ack_timeout_s and poll_interval_s must be > 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "[arm]") -> ModbusArmConfig:
        """Parse the robot.toml ``[arm]`` table.

        Keys: ``modbus`` (table of ``ModbusConfig`` fields), ``profile`` (a ``PROFILES`` name,
        default ``"ur"``), ``registers`` (table overriding fields of the profile's
        ``RegisterMap``; ``readback = false`` for none), ``max_speed``, ``ack_timeout_s``,
        ``poll_interval_s``.

        Raises:
            InputError: an unknown key (the message lists the known ones), a wrong type or value.
        """
        data = dict(_table(data, where))
        _reject_unknown(data, ("modbus", "profile", "registers", *_scalar_fields(cls)), where)
        profile = data.pop("profile", "ur")
        if profile not in PROFILES:
            raise InputError(
                f"{where}: unknown register profile {profile!r}; use one of {sorted(PROFILES)} or "
                "give the registers in a registers table"
            )
        try:
            registers = _register_map(PROFILES[profile], data.pop("registers", {}))
            modbus = modbus_config_from_dict(
                _table(data.pop("modbus", {}), "modbus"),
                "modbus",
                ModbusConfig(port=UR_MODBUS_PORT),
            )
            for key, value in data.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InputError(f"{key} must be a number, got {value!r}")
            return cls(modbus=modbus, registers=registers, **data)
        except InputError as err:
            raise InputError(f"{where}: {err}") from err
        except TypeError as err:  # a wrong type inside ModbusConfig
            raise InputError(f"{where}: {err}") from err


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a table, got {value!r}")
    return value


def _scalar_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("modbus", "registers"))


def _reject_unknown(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known keys: {sorted(known)}")


def _register_map(profile: RegisterMap, overrides: Any) -> RegisterMap:
    overrides = dict(_table(overrides, "registers"))
    _reject_unknown(overrides, [f.name for f in dataclasses.fields(RegisterMap)], "registers")
    if overrides.get("readback", 0) is False:
        overrides["readback"] = None
    return dataclasses.replace(profile, **overrides)


# ----------------------------------------------------------------------------------------------
# The backend


@dataclass(frozen=True)
class ModbusArmStatus(ArmStatus):
    """``ArmStatus`` plus the raw controller state, which tells done from idle.

    Attributes:
        controller_state: The state register (``ControllerState`` value; unknown values kept).
    """

    controller_state: int = -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``controller_state`` as a name."""
        return {**super().to_dict(), "controller_state": _state_name(self.controller_state)}


class ModbusArm(Arm):
    """``Arm`` over the register protocol (see the module docstring and docs/arm_protocol.md).

    Thread-safe: ``stop`` may be called from any thread, also while another thread waits in
    ``move_to`` or ``home``; that call then raises ``DeviceError``. ``stop`` on a link marked
    lost (e.g. after one missing answer) reconnects once and still sends the stop. Every write
    is reported to ``on_io`` (e.g. ``AuditLog.device_io``).
    """

    name = "arm"

    def __init__(self, config: ModbusArmConfig | None = None, on_io: IoHook | None = None):
        self.config = config or ModbusArmConfig()
        self.map = self.config.registers
        self.link = ModbusLink(self.config.modbus, name=self.name, on_io=on_io)
        self._sequence = 0
        self._command_lock = threading.Lock()  # orders a command's writes against stop()
        self._motion_lock = threading.Lock()  # one move_to / home at a time
        self._stop_event = threading.Event()  # wakes waiting loops; decisions use the count
        self._stops = 0  # stop commands requested so far (under _command_lock)

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and read the controller's sequence register, so the next target is new.

        Raises:
            DeviceDisconnectedError: nothing answers at the configured address.
            DeviceError: the registers are not there (wrong map or unit id).
        """
        self.link.connect()
        self._sequence = self.link.read(self.map.address("sequence"), 1)[0]
        self._stop_if_moving()

    def _stop_if_moving(self) -> None:
        """A motion from before the link came up (lost link, earlier run) is stopped first.

        Raises:
            DeviceError: still moving ``ack_timeout_s`` after the stop command.
        """
        if self._read_status_registers()["state"] != ControllerState.MOVING:
            return
        log.warning("arm: the controller reports a motion on connecting; sending a stop")
        self.stop()
        deadline = time.monotonic() + self.config.ack_timeout_s
        while self._read_status_registers()["state"] == ControllerState.MOVING:
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"arm: still moving {self.config.ack_timeout_s} s after the stop sent on "
                    "connecting; use the emergency stop and check the controller program"
                )
            time.sleep(self.config.poll_interval_s)

    def disconnect(self) -> None:
        """Close the link; safe to call twice."""
        self.link.close()

    # -- motion ----------------------------------------------------------------------------

    def move_to(
        self,
        T_base_ee: np.ndarray,  # noqa: N803
        speed: float = 0.25,
        wait: bool = True,
        timeout_s: float = 30.0,
    ) -> ArmStatus:
        """Send a target tool pose; see ``Arm.move_to``.

        The pose is encoded (and refused with ``InputError`` if it cannot be) before anything is
        written. ``speed`` above ``config.max_speed`` is clamped to it.

        Raises:
            InputError: not a rigid transform, a component out of register range, or a speed
                outside (0, 1]; nothing is sent.
            DeviceTimeoutError: no acknowledgement within ``ack_timeout_s`` or not done within
                ``timeout_s``; a stop command has been sent.
            DeviceFaultError: the controller reports a fault.
            DeviceError: stopped by ``stop`` or by the controller before arriving.
            DeviceDisconnectedError: the connection was lost while moving.
        """
        pose_registers = encode_pose(quantize_pose(T_base_ee, self.map), self.map)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= 1:
            raise InputError(f"arm speed must be a fraction in (0, 1], got {speed!r}")
        if speed > self.config.max_speed:
            log.info("arm speed %.3f clamped to max_speed %.3f", speed, self.config.max_speed)
            speed = self.config.max_speed
        writes = [(self.map.address("pose") + i, v) for i, v in enumerate(pose_registers)]
        writes.append((self.map.address("speed"), speed_register(speed)))
        return self._run(ArmCommand.MOVE, writes, wait, timeout_s)

    def home(self, wait: bool = True, timeout_s: float = 30.0) -> ArmStatus:
        """Move to the controller program's home position (see ``move_to`` for errors)."""
        return self._run(ArmCommand.HOME, [], wait, timeout_s)

    def stop(self) -> None:
        """Write the stop command at once; a waiting ``move_to`` / ``home`` raises ``DeviceError``.

        A link marked lost (one missing answer is enough) is reconnected once first: a stop must
        not depend on the last request having been answered.

        Raises:
            DeviceError: the stop command could not be written (link down): the arm may still be
                moving; use the emergency stop.
        """
        with self._command_lock:
            self._stops += 1
            self._stop_event.set()
            if not self.link.connected:
                log.warning("arm: link lost; reconnecting once to send the stop")
                self.link.connect()
            self.link.write(self.map.address("command"), [int(ArmCommand.STOP)])

    def arrived(self, status: ArmStatus, sequence: int) -> bool:
        """True when ``status`` says the command ``sequence`` finished by arriving (state done).

        Idle with the same ack is a restarted controller program (it acknowledges the old
        sequence on start), not an arrival.
        """
        controller_state = getattr(status, "controller_state", -1)
        return status.sequence == sequence and controller_state == ControllerState.DONE

    def status(self) -> ArmStatus:
        """Read state, acknowledged sequence, fault and (when mapped) the actual pose.

        Raises:
            DeviceError: the controller does not answer (the link subclasses say why).
        """
        values = self._read_status_registers()
        pose = None
        raw = tuple(values.values())
        if self.map.readback is not None:
            readback = self.link.read(self.map.readback, POSE_REGISTERS)
            pose = decode_pose(readback, self.map)
            raw = raw + tuple(readback)
        return self._status(values, pose, raw)

    def quantize(self, T_base_ee: np.ndarray) -> np.ndarray:  # noqa: N803
        """The target the controller would receive (``quantize_pose``), for the safety gate."""
        return quantize_pose(T_base_ee, self.map)

    # -- internals -------------------------------------------------------------------------

    def _run(
        self, command: ArmCommand, writes: list[tuple[int, int]], wait: bool, timeout_s: float
    ) -> ArmStatus:
        if not timeout_s > 0:
            raise InputError(f"arm timeout_s must be > 0, got {timeout_s!r}")
        with self._motion_lock:
            with self._command_lock:
                # Only the wake-up event is reset; a stop from now on raises the count, which the
                # waits compare (a stop written before this point is the caller's to refuse).
                self._stop_event.clear()
                stops = self._stops
                sequence = self._sequence % SEQUENCE_MODULUS + 1
                self._write(writes)
                self._write(
                    [
                        (self.map.address("command"), int(command)),
                        (self.map.address("sequence"), sequence),
                    ]
                )
                self._sequence = sequence
            what = f"{command.name.lower()} (sequence {sequence})"
            try:
                self._wait_for_ack(sequence, what, timeout_s, stops)
                if not wait:
                    return self.status()
                self._wait_for_done(sequence, what, timeout_s, stops)
                return self.status()
            except (DeviceDisconnectedError, DeviceTimeoutError) as err:
                if self.link.connected:  # our own timeout: the link is fine
                    raise
                stop_note = self._stop_quietly()  # reconnects once to send it
                raise DeviceDisconnectedError(
                    f"{err}; the {what} was interrupted and the arm may still be moving: "
                    f"{stop_note}; check it before reconnecting"
                ) from err

    def _wait_for_ack(self, sequence: int, what: str, timeout_s: float, stops: int) -> None:
        deadline = time.monotonic() + min(self.config.ack_timeout_s, timeout_s)
        while True:
            values = self._read_status_registers()
            self._check_stop_requested(what, stops)
            if values["ack"] == sequence:
                self._check_outcome(values, what)
                return
            if time.monotonic() > deadline:
                stop_note = self._stop_quietly()
                raise DeviceTimeoutError(
                    f"arm: the controller did not acknowledge {what} within "
                    f"{min(self.config.ack_timeout_s, timeout_s)} s (ack register still "
                    f"{values['ack']}); is the controller program running? {stop_note}"
                )
            self._stop_event.wait(self.config.poll_interval_s)

    def _wait_for_done(self, sequence: int, what: str, timeout_s: float, stops: int) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            values = self._read_status_registers()
            self._check_stop_requested(what, stops)
            if values["state"] == ControllerState.DONE and values["ack"] == sequence:
                return
            self._check_outcome(values, what)
            if time.monotonic() > deadline:
                stop_note = self._stop_quietly()
                raise DeviceTimeoutError(
                    f"arm: {what} not done within {timeout_s} s (state "
                    f"{_state_name(values['state'])}); {stop_note}"
                )
            self._stop_event.wait(self.config.poll_interval_s)

    def _check_outcome(self, values: dict[str, int], what: str) -> None:
        """Raise if an acknowledged command ended other than by arriving."""
        state = values["state"]
        if state == ControllerState.STOPPED:
            raise DeviceError(
                f"arm: {what} was stopped by the controller before arriving; send a new target"
            )
        if state == ControllerState.IDLE:  # the program writes moving before the ack
            raise DeviceError(
                f"arm: the controller reports idle during {what}: its program was restarted "
                "(e.g. after a protective stop) and abandoned the motion; check the arm, then "
                "send a new target"
            )
        if state not in (ControllerState.MOVING, ControllerState.DONE):
            raise DeviceFaultError(f"arm: {what} failed: {self._fault_message(values)}")

    def _check_stop_requested(self, what: str, stops: int) -> None:
        if self._stops != stops:
            raise DeviceError(f"arm: {what} stopped by a stop command before it finished")

    def _stop_quietly(self) -> str:
        try:
            self.stop()
        except DeviceError as err:
            return f"the stop command could not be sent ({err}): use the emergency stop"
        return "a stop command was sent"

    def _read_status_registers(self) -> dict[str, int]:
        """Ack, state and fault, one request per run of consecutive addresses (UR: one)."""
        addresses = sorted((self.map.address(name), name) for name in ("ack", "state", "fault"))
        values: dict[str, int] = {}
        run: list[tuple[int, str]] = []
        for entry in [*addresses, None]:
            if entry is not None and (not run or entry[0] == run[-1][0] + 1):
                run.append(entry)
                continue
            block = self.link.read(run[0][0], len(run))
            values.update((name, value) for (_, name), value in zip(run, block, strict=True))
            run = [entry] if entry is not None else []
        return values

    def _write(self, writes: list[tuple[int, int]]) -> None:
        """Write (address, value) pairs in order, merging runs of consecutive addresses."""
        run: list[int] = []
        start = -1
        for address, value in writes:
            if run and address == start + len(run):
                run.append(value)
                continue
            if run:
                self.link.write(start, run)
            start, run = address, [value]
        if run:
            self.link.write(start, run)

    def _status(
        self, values: dict[str, int], pose: np.ndarray | None, raw: tuple[int, ...]
    ) -> ArmStatus:
        state_code = values["state"]
        try:
            controller_state = ControllerState(state_code)
        except ValueError:
            return ModbusArmStatus(
                ArmState.FAULT,
                pose,
                values["ack"],
                f"unknown controller state {state_code}; check the register map and the "
                "controller program version",
                raw,
                int(state_code),
            )
        message = controller_state.name.lower()
        if controller_state is ControllerState.FAULT:
            message = self._fault_message(values)
        return ModbusArmStatus(
            _TO_ARM_STATE[controller_state], pose, values["ack"], message, raw, int(state_code)
        )

    @staticmethod
    def _fault_message(values: dict[str, int]) -> str:
        state, code = values["state"], values["fault"]
        if state != ControllerState.FAULT:
            return f"unknown controller state {state} (fault register {code})"
        detail = FAULT_MESSAGES.get(code, "see the controller's log and pendant")
        return f"controller fault {code}: {detail}"


def _state_name(code: int) -> str:
    try:
        return ControllerState(code).name.lower()
    except ValueError:
        return f"unknown ({code})"
