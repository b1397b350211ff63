"""Safety between the pick loop and the devices: a gate, guarded device wrappers and a watchdog.

Every arm target and gripper opening passes through a ``SafetyGate`` right before it is sent.
The pick loop never holds a raw ``Arm`` or ``Gripper``: it holds a ``GuardedArm`` and a
``GuardedGripper``, which keep the device private and run the gate, the dry-run switch and the
audit log on every command, so a target cannot reach the arm without being checked.

Checks (all in the robot base frame, metres):

* a target pose is a finite rigid transform whose position lies inside the workspace box;
* the straight-line path from where the arm is (its reported pose, else the last target sent) to
  the target starts inside the box too -- the box is convex, so a segment whose two endpoints are
  inside it lies entirely inside it;
* a gripper opening is finite and within ``[0, max_opening_m]``;
* a grasp's quality is finite and at least ``min_quality``; a speed is within ``(0, max_speed]``.

Dry run (the default; only ``langgrasp run --execute`` arms the devices): the checks still run
and each command that would have been sent is written to the audit log as ``would_send``; nothing
is written to a device.

Stop latch: ``stop()`` on a guarded device latches before it sends anything; every later motion
command is refused (``StopLatchedError``) until the operator's next command calls
``clear_stop()``. A command whose write raced a stop (the stop landed between the latch check and
the write) is halted again as soon as the write returns, so a stop is never lost.

The ``Watchdog`` calls a stop callback when the loop does not ``kick`` it within its timeout
while a motion runs (the loop kicks it on every status poll).
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from langgrasp.calibration.transforms import as_pose_matrix
from langgrasp.errors import InputError, LanggraspError
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.devices import (
    Arm,
    ArmState,
    ArmStatus,
    DeviceError,
    Gripper,
    GripperState,
    GripperStatus,
    retry_with_backoff,
)

log = logging.getLogger(__name__)

ROBOTIQ_2F85_STROKE_M = 0.085
"""Largest opening of a Robotiq 2F-85 (shared/research/runtime.md 3.1: stroke 0-85 mm)."""


class SafetyError(LanggraspError):
    """A command was refused by the safety gate; the message gives the reason. Nothing was sent."""


class StopLatchedError(SafetyError):
    """A motion command after a stop: refused until an operator command clears the stop latch."""


def _finite_number(value: Any) -> bool:
    """True for a finite real number of any numeric type (numpy scalars too), False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _vector3(value: Sequence[float], name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be 3 numbers [x, y, z] in metres, got {value!r}") from err
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be 3 finite numbers [x, y, z] in metres, got {value!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class SafetyConfig:
    """Limits checked before any command is sent (``[safety]`` in robot.toml).

    Attributes:
        workspace_min_m: Lower corner ``(x, y, z)`` of the workspace box, robot base frame, metres.
        workspace_max_m: Upper corner ``(x, y, z)`` of the box, metres. Every arm target and the
            start of every straight-line move must lie inside the box (faces included).
        max_opening_m: Largest gripper opening that may be commanded, metres.
        min_quality: Grasps below this quality are never executed, [0, 1].
        auto_confirm_quality: Execute without asking when the offered grasp's quality is at least
            this, [0, 1]; None (``"off"`` in robot.toml) always asks the operator.
        watchdog_timeout_s: The arm is stopped when the loop goes this long without a sign of
            life during a motion, seconds.
        max_speed: Largest speed fraction that may be commanded to the arm, (0, 1].
    """

    workspace_min_m: tuple[float, float, float] = (-0.6, -0.6, 0.0)
    workspace_max_m: tuple[float, float, float] = (0.6, 0.6, 0.6)
    max_opening_m: float = ROBOTIQ_2F85_STROKE_M
    min_quality: float = 0.3
    auto_confirm_quality: float | None = None
    watchdog_timeout_s: float = 1.0
    max_speed: float = 0.5

    def __post_init__(self) -> None:
        low = _vector3(self.workspace_min_m, "workspace_min_m")
        high = _vector3(self.workspace_max_m, "workspace_max_m")
        object.__setattr__(self, "workspace_min_m", low)
        object.__setattr__(self, "workspace_max_m", high)
        if not all(a < b for a, b in zip(low, high, strict=True)):
            raise InputError(
                f"workspace_min_m {list(low)} must be below workspace_max_m {list(high)} on every "
                "axis (x, y, z in the robot base frame, metres)"
            )
        if not (math.isfinite(self.max_opening_m) and self.max_opening_m > 0):
            raise InputError(f"max_opening_m must be > 0 metres, got {self.max_opening_m}")
        if not 0 <= self.min_quality <= 1:
            raise InputError(f"min_quality must be within [0, 1], got {self.min_quality}")
        auto = self.auto_confirm_quality
        if auto is not None and not (0 <= auto <= 1 and auto >= self.min_quality):
            raise InputError(
                f"auto_confirm_quality must be within [min_quality, 1] ({self.min_quality}-1) or "
                f'"off", got {auto}'
            )
        if not (math.isfinite(self.watchdog_timeout_s) and self.watchdog_timeout_s > 0):
            raise InputError(f"watchdog_timeout_s must be > 0, got {self.watchdog_timeout_s}")
        if not 0 < self.max_speed <= 1:
            raise InputError(f"max_speed must be within (0, 1], got {self.max_speed}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "workspace_min_m": list(self.workspace_min_m),
            "workspace_max_m": list(self.workspace_max_m),
            "max_opening_m": self.max_opening_m,
            "min_quality": self.min_quality,
            "auto_confirm_quality": self.auto_confirm_quality,
            "watchdog_timeout_s": self.watchdog_timeout_s,
            "max_speed": self.max_speed,
        }


def _fmt(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in point) + ") m"


class SafetyGate:
    """Checks commands against a ``SafetyConfig``; every decision goes to the audit log.

    Methods raise ``SafetyError`` (reason in the message) or return the checked value.
    """

    def __init__(self, config: SafetyConfig, audit: AuditLog | None = None) -> None:
        self.config = config
        self.audit = audit
        self._low = np.asarray(config.workspace_min_m, dtype=np.float64)
        self._high = np.asarray(config.workspace_max_m, dtype=np.float64)

    def inside(self, point: np.ndarray) -> bool:
        """True when the ``(3,)`` base-frame point (metres) is finite and inside the box."""
        p = np.asarray(point, dtype=np.float64)
        return bool(np.all(np.isfinite(p)) and np.all(p >= self._low) and np.all(p <= self._high))

    def pose_problem(self, T_base_ee: Any, start: np.ndarray | None = None) -> str | None:  # noqa: N803
        """Why the target pose (or the path to it) is unsafe, or None when it is fine.

        Args:
            T_base_ee: ``(4, 4)`` target tool pose in the base frame, metres.
            start: ``(3,)`` where the straight-line move starts (base frame, metres), or None
                when unknown (only the target is then checked).
        """
        try:
            pose = as_pose_matrix(T_base_ee, "target pose")
        except InputError as err:
            return str(err)
        position = pose[:3, 3]
        if not self.inside(position):
            return f"target {_fmt(position)} is outside the workspace box {self._box()}"
        if start is not None:
            start = np.asarray(start, dtype=np.float64)
            if not self.inside(start):
                return (
                    f"the straight-line path to {_fmt(position)} starts at {_fmt(start)}, outside "
                    f"the workspace box {self._box()}; jog the arm into the box first"
                )
        return None

    def check_pose(
        self,
        T_base_ee: Any,  # noqa: N803
        label: str,
        start: np.ndarray | None = None,
        speed: float | None = None,
    ) -> np.ndarray:
        """Validate an arm target (and the path to it) and return it as a float64 ``(4, 4)``.

        Raises:
            SafetyError: non-finite or non-rigid pose, target or path start outside the box,
                or a speed outside ``(0, max_speed]``.
        """
        problem = self.pose_problem(T_base_ee, start)
        if problem is None and speed is not None:
            problem = self.speed_problem(speed)
        pose = None if problem else as_pose_matrix(T_base_ee, "target pose")
        self._decide("arm", label, problem, position=None if pose is None else pose[:3, 3])
        assert pose is not None
        return pose

    def speed_problem(self, speed: float) -> str | None:
        """Why an arm speed fraction is refused, or None."""
        if not _finite_number(speed):
            return f"speed {speed!r} is not a finite number"
        if not 0 < speed <= self.config.max_speed:
            return f"speed {speed} is outside (0, {self.config.max_speed}] (safety.max_speed)"
        return None

    def opening_problem(self, width_m: float) -> str | None:
        """Why a gripper opening (metres) is refused, or None."""
        if not _finite_number(width_m):
            return f"gripper opening {width_m!r} is not a finite number"
        if not 0 <= width_m <= self.config.max_opening_m:
            return (
                f"gripper opening {width_m * 1000:.1f} mm is outside 0-"
                f"{self.config.max_opening_m * 1000:.1f} mm (safety.max_opening_m)"
            )
        return None

    def check_opening(self, width_m: float, label: str) -> float:
        """Validate a gripper opening in metres and return it as float.

        Raises:
            SafetyError: not finite, negative or above ``max_opening_m``.
        """
        self._decide("gripper", label, self.opening_problem(width_m), width_m=width_m)
        return float(width_m)

    def quality_problem(self, quality: float) -> str | None:
        """Why a grasp quality is too low to execute, or None."""
        if not _finite_number(quality):
            return f"grasp quality {quality!r} is not a finite number"
        if quality < self.config.min_quality:
            limit = self.config.min_quality
            return f"grasp quality {quality:.2f} is below safety.min_quality {limit}"
        return None

    def check_quality(self, quality: float, label: str = "grasp") -> float:
        """Validate a grasp quality in [0, 1].

        Raises:
            SafetyError: not finite or below ``min_quality``.
        """
        self._decide("grasp", label, self.quality_problem(quality), quality=quality)
        return float(quality)

    def refuse(self, device: str, label: str, reason: str) -> None:
        """Record a refusal decided elsewhere (e.g. an unencodable pose) and raise it.

        Raises:
            SafetyError: always, with ``reason``.
        """
        self._decide(device, label, reason)

    def _box(self) -> str:
        return f"[{_fmt(self._low)} .. {_fmt(self._high)}]"

    def _decide(self, device: str, label: str, problem: str | None, **fields: Any) -> None:
        if self.audit is not None:
            decision = "refused" if problem else "allowed"
            extra = {k: v for k, v in fields.items() if v is not None}
            self.audit.record(
                "safety", device=device, step=label, decision=decision, reason=problem, **extra
            )
        if problem:
            raise SafetyError(f"{label}: {problem}")


class _Latched:
    """Stop handling shared by the guarded devices: the latch, the stop itself, reconnection.

    Subclasses keep their device and return it (or None) from ``_device``.
    """

    def __init__(
        self, device: Any, kind: str, gate: SafetyGate, audit: AuditLog, execute: bool
    ) -> None:
        """Guard ``device`` (None: not configured, named ``kind``); send only when ``execute``."""
        self.gate = gate
        self.audit = audit
        self.execute = bool(execute and device is not None)
        self.name = device.name if device is not None else kind
        self._latch = _StopLatch(self.name)

    def _device(self) -> Any:
        raise NotImplementedError

    def stop(self) -> bool:
        """Latch the stop, then stop the device at once (logged only in a dry run). Never raises.

        Returns:
            False when the stop command could not be sent (the link is down).
        """
        self._latch.set()
        return self._send_stop()

    def _send_stop(self) -> bool:
        device = self._device()
        if not self.execute or device is None:
            self.audit.record("would_send", device=self.name, op="stop")
            return True
        try:
            device.stop()
        except Exception as err:  # stop must never raise; the caller reports the state
            log.warning("%s stop failed: %s", self.name, err)
            self.audit.record("fault", device=self.name, op="stop", error=str(err))
            return False
        return True

    def reconnect(self, attempts: int, first_delay_s: float, max_delay_s: float) -> None:
        """Reconnect with exponential backoff (see ``reconnect``)."""
        device = self._device()
        if device is not None:
            reconnect(device, attempts, first_delay_s, max_delay_s)

    def latch_stop(self) -> None:
        """Refuse motion commands from now on (no I/O; ``stop`` does this first, then sends)."""
        self._latch.set()

    def clear_stop(self) -> None:
        """An operator command: motion commands are allowed again."""
        self._latch.clear()

    @property
    def stop_latched(self) -> bool:
        """True between ``stop`` and ``clear_stop``."""
        return self._latch.is_set()


class GuardedArm(_Latched):
    """The only way the pick loop reaches the arm: every target passes the gate first.

    Args:
        arm: The device (None: no arm configured; motions are then computed and logged only).
        gate: The safety gate.
        audit: Where ``would_send`` records of the dry run go.
        execute: Send commands to the device (True) or only log them (False, the default).
    """

    def __init__(
        self, arm: Arm | None, gate: SafetyGate, audit: AuditLog, execute: bool = False
    ) -> None:
        super().__init__(arm, "arm", gate, audit, execute)
        self._arm = arm
        self._last_target: np.ndarray | None = None

    @property
    def present(self) -> bool:
        """True when a device is configured."""
        return self._arm is not None

    def connect(self) -> None:
        """Open the device link (reads are allowed in a dry run too)."""
        if self._arm is not None:
            self._arm.connect()

    def disconnect(self) -> None:
        """Close the device link; safe to call twice."""
        if self._arm is not None:
            self._arm.disconnect()

    def status(self) -> ArmStatus:
        """The arm's status; in a dry run without a device, the last target as the pose.

        Raises:
            DeviceError: the controller does not answer.
        """
        if self._arm is None:
            return ArmStatus(ArmState.IDLE, self._last_target, message="no arm configured")
        return self._arm.status()

    def read_pose(self) -> np.ndarray | None:
        """Current ``T_base_ee`` (4x4, metres) from the controller, None without readback."""
        if self._arm is None:
            return None
        return self._arm.status().pose

    def path_start(self) -> np.ndarray | None:
        """Where the next straight-line move starts: reported pose, else last target, else None."""
        pose = None
        if self._arm is not None and self.execute:
            pose = self._arm.status().pose
        if pose is not None:
            return np.asarray(pose, dtype=np.float64)[:3, 3]
        return None if self._last_target is None else self._last_target[:3, 3]

    def move_to(
        self,
        T_base_ee: Any,  # noqa: N803
        speed: float,
        label: str,
        wait: bool = False,
        timeout_s: float = 30.0,
    ) -> ArmStatus:
        """Check the target and the path to it, then send it (or log it in a dry run).

        Args:
            T_base_ee: ``(4, 4)`` target tool pose in the base frame, metres.
            speed: Fraction of the arm's maximum speed, ``(0, max_speed]``.
            label: The pick step, for the audit log ("pregrasp", "descend", ...).
            wait: Block until the controller reports done (passed to ``Arm.move_to``).
            timeout_s: Longest wait for acknowledgement and completion.

        Raises:
            SafetyError: the gate refused the target; nothing was sent.
            DeviceError: the device refused, faulted, timed out or disconnected.
        """
        start = self.path_start()
        quantize = getattr(self._arm, "quantize", None)
        if quantize is not None:  # gate-check the request and what the device will receive
            problem = self.gate.pose_problem(T_base_ee)
            if problem:
                self.gate.refuse("arm", label, problem)
            try:
                T_base_ee = quantize(T_base_ee)  # noqa: N806
            except InputError as err:
                self.gate.refuse("arm", label, str(err))
        pose = self.gate.check_pose(T_base_ee, label, start=start, speed=speed)
        self._latch.check(label)
        if not self.execute:
            self.audit.record(
                "would_send", device=self.name, op="move_to", step=label, pose=pose, speed=speed
            )
            self._last_target = pose
            return ArmStatus(ArmState.IDLE, pose, message="dry run: nothing sent")
        assert self._arm is not None
        self._last_target = pose
        with self._latch.sending(label, self._send_stop):
            return self._arm.move_to(pose, speed=speed, wait=wait, timeout_s=timeout_s)

    def arrived(self, status: ArmStatus, sequence: int) -> bool:
        """True when ``status`` says the move or home command ``sequence`` arrived.

        Uses the device's own ``arrived(status, sequence)`` when it has one (``ModbusArm``: state
        done with that ack; idle after a program restart is not an arrival), else idle with
        that sequence.
        """
        check = getattr(self._arm, "arrived", None)
        if check is not None:
            return bool(check(status, sequence))
        return status.state is ArmState.IDLE and status.sequence == sequence

    def home(self, label: str = "home", wait: bool = False, timeout_s: float = 30.0) -> ArmStatus:
        """Send the controller's home command (its home pose is configured on the controller).

        The path start is forgotten afterwards unless the controller reports its pose.
        """
        self._latch.check(label)
        self._last_target = None
        if not self.execute:
            self.audit.record("would_send", device=self.name, op="home", step=label)
            return ArmStatus(ArmState.IDLE, None, message="dry run: nothing sent")
        assert self._arm is not None
        with self._latch.sending(label, self._send_stop):
            return self._arm.home(wait=wait, timeout_s=timeout_s)

    def _device(self) -> Arm | None:
        return self._arm


class GuardedGripper(_Latched):
    """The only way the pick loop reaches the gripper: every opening passes the gate first.

    Args:
        gripper: The device (None: no gripper configured; commands are logged only).
        gate: The safety gate.
        audit: Where ``would_send`` records of the dry run go.
        execute: Send commands to the device (True) or only log them (False, the default).
    """

    def __init__(
        self, gripper: Gripper | None, gate: SafetyGate, audit: AuditLog, execute: bool = False
    ) -> None:
        super().__init__(gripper, "gripper", gate, audit, execute)
        self._gripper = gripper
        self._requested: float | None = None

    @property
    def present(self) -> bool:
        """True when a device is configured."""
        return self._gripper is not None

    @property
    def max_opening_m(self) -> float:
        """Largest opening allowed: the unit's stroke, capped by ``safety.max_opening_m``."""
        limit = self.gate.config.max_opening_m
        if self._gripper is not None and self._gripper.max_width_m > 0:
            return min(limit, self._gripper.max_width_m)
        return limit

    def connect(self) -> None:
        """Open the device link (no command is written)."""
        if self._gripper is not None:
            self._gripper.connect()

    def disconnect(self) -> None:
        """Close the device link; safe to call twice."""
        if self._gripper is not None:
            self._gripper.disconnect()

    def activate(self, timeout_s: float) -> GripperStatus:
        """Run the activation sequence (the fingers move), or log it in a dry run."""
        self._latch.check("activate")
        if not self.execute:
            self.audit.record("would_send", device=self.name, op="activate")
            return self._dry_status(GripperState.AT_POSITION)
        assert self._gripper is not None
        with self._latch.sending("activate", self._send_stop):
            return self._gripper.activate(timeout_s)

    def move_to(self, width_m: float, speed: float, force: float, label: str) -> None:
        """Check the opening (metres), then start the motion (or log it in a dry run).

        Raises:
            SafetyError: the gate refused the opening; nothing was sent.
            DeviceError: the device refused, faulted or disconnected.
        """
        width = self.gate.check_opening(width_m, label)
        self._latch.check(label)
        self._requested = width
        if not self.execute:
            self.audit.record(
                "would_send",
                device=self.name,
                op="move_to",
                step=label,
                width_m=width,
                speed=speed,
                force=force,
            )
            return
        assert self._gripper is not None
        with self._latch.sending(label, self._send_stop):
            self._gripper.move_to(width, speed, force)

    def open(self, speed: float, force: float, label: str = "open") -> None:
        """Open to ``max_opening_m``."""
        self.move_to(self.max_opening_m, speed, force, label)

    def close(self, speed: float, force: float, label: str = "close") -> None:
        """Close fully (stops on an object)."""
        self.move_to(0.0, speed, force, label)

    def wait(self, timeout_s: float) -> GripperStatus:
        """Wait for the fingers to stop; a dry run assumes they reach their target.

        In a dry run a full close is assumed to end on an object (``HOLDING``) so the rest of
        the pick can be computed and logged.
        """
        if not self.execute:
            if self._requested is not None and self._requested == 0.0:
                return self._dry_status(GripperState.HOLDING, "dry run: assumed holding")
            return self._dry_status(GripperState.AT_POSITION)
        assert self._gripper is not None
        return self._gripper.wait(timeout_s)

    def status(self) -> GripperStatus:
        """The gripper's status (a dry-run placeholder without a device)."""
        if self._gripper is None:
            return self._dry_status(GripperState.AT_POSITION, "no gripper configured")
        return self._gripper.status()

    def _device(self) -> Gripper | None:
        return self._gripper

    def _dry_status(self, state: GripperState, message: str = "dry run") -> GripperStatus:
        width = self._requested if self._requested is not None else 0.0
        return GripperStatus(state, width, self._requested, message=message)


class _StopLatch:
    """Set by a stop, cleared only by an operator command; motion writes check it.

    ``check`` refuses a command while set. ``sending`` wraps the write: when a stop was latched
    while the write was under way (it may have reached the device before the write did, so the
    device would run the command), the device is stopped again right after the write returns
    and ``StopLatchedError`` is raised.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._set = False

    def set(self) -> None:
        with self._lock:
            self._set = True

    def clear(self) -> None:
        with self._lock:
            self._set = False

    def is_set(self) -> bool:
        with self._lock:
            return self._set

    def check(self, label: str) -> None:
        if self.is_set():
            raise StopLatchedError(
                f"{self.name} {label}: refused after a stop; give a new command (pick, home, open)"
            )

    @contextlib.contextmanager
    def sending(self, label: str, halt: Callable[[], bool]) -> Iterator[None]:
        try:
            yield
        except BaseException:
            if self.is_set():
                halt()
            raise
        if self.is_set():
            halt()
            raise StopLatchedError(
                f"{self.name} {label}: a stop arrived while the command was being sent; "
                "stopped again"
            )


def reconnect(
    device: Arm | Gripper,
    attempts: int,
    first_delay_s: float,
    max_delay_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Disconnect and ``connect`` again, up to ``attempts`` times with doubling pauses.

    Raises:
        DeviceError: every attempt failed (the last error's message, with the count).
    """

    def again() -> None:
        device.disconnect()
        device.connect()

    _, error = retry_with_backoff(again, attempts, first_delay_s, max_delay_s, sleep)
    if error is not None:
        raise DeviceError(f"{device.name}: still unreachable after {attempts} attempts ({error})")


class Watchdog:
    """Calls ``on_timeout(label)`` once when not kicked within ``timeout_s`` while armed.

    ``arm(label)`` starts watching (a motion began), ``kick()`` says the loop is alive,
    ``disarm()`` stops watching. One daemon thread, started on first use; ``close()`` ends it.
    """

    def __init__(
        self, timeout_s: float, on_timeout: Callable[[str], None], name: str = "watchdog"
    ) -> None:
        if not timeout_s > 0:
            raise InputError(f"watchdog timeout must be > 0 seconds, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.on_timeout = on_timeout
        self.name = name
        self.fired: list[str] = []
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._label = ""
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def armed(self) -> bool:
        """True while watching a motion."""
        with self._cond:
            return self._deadline is not None

    def arm(self, label: str) -> None:
        """Start (or restart) watching; ``label`` names the motion in the stop reason."""
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._label = label
            self._deadline = time.monotonic() + self.timeout_s
            self._cond.notify_all()

    def kick(self) -> None:
        """The loop is alive: push the deadline ``timeout_s`` into the future (when armed)."""
        with self._cond:
            if self._deadline is not None:
                self._deadline = time.monotonic() + self.timeout_s

    def disarm(self) -> None:
        """Stop watching."""
        with self._cond:
            self._deadline = None
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread; safe to call twice."""
        with self._cond:
            self._closed = True
            self._deadline = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._deadline is None:
                    self._cond.wait()
                if self._closed:
                    return
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                label, self._deadline = self._label, None
            self.fired.append(label)
            try:
                self.on_timeout(label)
            except Exception:  # the watchdog thread must survive a failing callback
                log.exception("watchdog stop callback failed")
