"""One interface per device kind: ``Gripper`` and ``Arm``, their status types and errors.

Backends: ``runtime.robotiq`` (Robotiq 2F-85 / 2F-140 / Hand-E over Modbus RTU, RTU-over-TCP or
a Modbus TCP gateway) and ``runtime.modbus_arm`` (a register protocol to a robot-controller
program; UR profile). Simulators for both live in ``runtime.sim`` and speak the same registers on
127.0.0.1, so tests and the demo drive the real backends.

Units and frames: widths in metres (jaw-to-jaw opening), speed and force as fractions of the
device's range in [0, 1]; arm poses are ``T_base_ee`` 4x4 homogeneous matrices in metres, the
tool (end-effector) frame expressed in the robot base frame.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from langgrasp.errors import LanggraspError


class DeviceError(LanggraspError):
    """A device refused a command or reported a fault; the message says what to do."""


class DeviceTimeoutError(DeviceError):
    """A device did not answer, or a motion did not finish, within its timeout."""


class DeviceDisconnectedError(DeviceError):
    """The connection to a device is lost (server down, cable out, wrong address)."""


class DeviceFaultError(DeviceError):
    """The device reports a fault (gripper fault bits, arm protective stop)."""


class DeviceStoppedError(DeviceError):
    """A ``stop`` from another thread ended a sequence that was waiting on the device."""


def retry_with_backoff(
    action: Callable[[], None],
    attempts: int,
    first_delay_s: float,
    max_delay_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, DeviceError | None]:
    """Run ``action`` until it stops raising ``DeviceError``, pausing longer after each failure.

    The pause starts at ``first_delay_s`` and doubles up to ``max_delay_s``; there is no pause
    after the last attempt.

    Returns:
        ``(attempt, None)`` with the attempt that succeeded, or ``(attempts, last error)``.
    """
    delay = first_delay_s
    error: DeviceError | None = None
    for attempt in range(1, attempts + 1):
        try:
            action()
            return attempt, None
        except DeviceError as err:
            error = err
            if attempt < attempts:
                sleep(delay)
                delay = min(delay * 2, max_delay_s)
    return attempts, error


class GripperState(str, Enum):
    """What the gripper is doing (Robotiq ``gSTA``/``gOBJ``/``gFLT`` folded into one value)."""

    RESET = "reset"  # not activated (needs ``activate``)
    ACTIVATING = "activating"
    MOVING = "moving"  # fingers travelling to the requested width
    HOLDING = "holding"  # stopped by contact while closing: an object is held
    CONTACT_OPENING = "contact_opening"  # stopped by contact while opening
    AT_POSITION = "at_position"  # reached the requested width, no object
    FAULT = "fault"


@dataclass(frozen=True)
class GripperStatus:
    """One status read.

    Attributes:
        state: See ``GripperState``.
        width_m: Current opening in metres (from the position feedback and the unit's
            calibration).
        requested_width_m: Last requested opening in metres, None before the first command.
        fault_code: Device fault code, 0 when none.
        message: Human-readable state, naming the fault and what to do when there is one.
        raw: Backend registers or fields, for the audit log.
    """

    state: GripperState
    width_m: float
    requested_width_m: float | None
    fault_code: int = 0
    message: str = ""
    raw: tuple[int, ...] = ()

    @property
    def holding(self) -> bool:
        """True when the fingers stopped on an object while closing."""
        return self.state is GripperState.HOLDING

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "state": self.state.value,
            "width_m": self.width_m,
            "requested_width_m": self.requested_width_m,
            "fault_code": self.fault_code,
            "message": self.message,
        }


class Gripper(ABC):
    """A parallel gripper. Commands return once sent; ``wait`` blocks until motion ends.

    Backends set ``name`` and ``max_width_m`` (largest opening of this unit, metres).
    """

    name: str = "gripper"
    max_width_m: float = 0.0

    @abstractmethod
    def connect(self) -> None:
        """Open the link. Raises ``DeviceDisconnectedError`` with the address when it fails."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the link; safe to call twice."""

    @abstractmethod
    def activate(self, timeout_s: float = 10.0) -> GripperStatus:
        """Run the activation sequence (the fingers move!) and wait until it completes.

        ``stop`` from another thread halts the activation and ends this call.

        Raises:
            DeviceTimeoutError: not activated within ``timeout_s``.
            DeviceFaultError: the gripper reported a fault during activation.
            DeviceStoppedError: ``stop`` was called while the activation ran.
        """

    @abstractmethod
    def move_to(self, width_m: float, speed: float = 1.0, force: float = 0.5) -> None:
        """Start moving the fingers to an opening of ``width_m`` metres.

        Args:
            width_m: Target opening in [0, ``max_width_m``] metres.
            speed: Fraction of the unit's speed range, [0, 1].
            force: Fraction of the unit's force range, [0, 1].

        Raises:
            InputError: values out of range (nothing is sent).
            DeviceError: not activated, faulted or disconnected.
        """

    def open(self, speed: float = 1.0, force: float = 0.5) -> None:
        """Start opening fully."""
        self.move_to(self.max_width_m, speed, force)

    def close(self, speed: float = 1.0, force: float = 0.5) -> None:
        """Start closing fully (stops on an object: ``GripperState.HOLDING``)."""
        self.move_to(0.0, speed, force)

    @abstractmethod
    def stop(self) -> None:
        """Stop the fingers where they are."""

    @abstractmethod
    def status(self) -> GripperStatus:
        """Read the current status. Raises ``DeviceError`` when the device does not answer."""

    @abstractmethod
    def wait(self, timeout_s: float = 5.0) -> GripperStatus:
        """Poll until the fingers stop (at position, holding, contact) or a fault.

        Raises:
            DeviceTimeoutError: still moving after ``timeout_s``.
            DeviceFaultError: the gripper reported a fault.
        """

    def __enter__(self) -> Gripper:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


class ArmState(str, Enum):
    """What the arm controller reports."""

    IDLE = "idle"  # ready, no motion
    MOVING = "moving"
    STOPPED = "stopped"  # halted by ``stop`` (or a controller stop); needs a new target
    FAULT = "fault"  # protective stop or controller error
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class ArmStatus:
    """One status read.

    Attributes:
        state: See ``ArmState``.
        pose: ``(4, 4)`` current ``T_base_ee`` in metres, None when the controller does not report
            it.
        sequence: Sequence number of the last target the controller acknowledged.
        message: Human-readable state or fault.
        raw: Backend registers, for the audit log.
    """

    state: ArmState
    pose: np.ndarray | None
    sequence: int = 0
    message: str = ""
    raw: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (pose as nested lists)."""
        return {
            "state": self.state.value,
            "pose": None if self.pose is None else np.asarray(self.pose).tolist(),
            "sequence": self.sequence,
            "message": self.message,
        }


class Arm(ABC):
    """A robot arm driven by target poses. ``move_to`` blocks until done unless ``wait=False``.

    Backends set ``name``.
    """

    name: str = "arm"

    @abstractmethod
    def connect(self) -> None:
        """Open the link. Raises ``DeviceDisconnectedError`` with the address when it fails."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the link; safe to call twice."""

    @abstractmethod
    def move_to(
        self,
        T_base_ee: np.ndarray,  # noqa: N803
        speed: float = 0.25,
        wait: bool = True,
        timeout_s: float = 30.0,
    ) -> ArmStatus:
        """Send a target tool pose and (by default) wait until the controller reports done.

        Args:
            T_base_ee: ``(4, 4)`` target tool pose in the base frame, metres.
            speed: Fraction of the configured maximum tool speed, (0, 1].
            wait: Block until done (True) or return after the controller acknowledged.
            timeout_s: Longest wait for acknowledgement and completion.

        Raises:
            InputError: a pose that is not a rigid transform or cannot be encoded (nothing sent).
            DeviceTimeoutError: no acknowledgement or completion in time (the arm is stopped).
            DeviceFaultError: the controller reports a fault.
            DeviceError: the motion was stopped before completion.
        """

    @abstractmethod
    def home(self, wait: bool = True, timeout_s: float = 30.0) -> ArmStatus:
        """Move to the controller's home pose."""

    @abstractmethod
    def stop(self) -> None:
        """Halt motion at once.

        Never raises for a reachable device; must be callable from another thread while
        ``move_to`` waits (that call then raises ``DeviceError``).
        """

    @abstractmethod
    def status(self) -> ArmStatus:
        """Read state and pose. Raises ``DeviceError`` when the controller does not answer."""

    def read_pose(self) -> np.ndarray | None:
        """Current ``T_base_ee`` (calibration ``PoseSource`` protocol); None without readback."""
        return self.status().pose

    def __enter__(self) -> Arm:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
