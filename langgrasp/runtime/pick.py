"""The pick loop: a typed or spoken command to a grasp, and a safe pick-and-place.

States (``LoopState``): ``idle`` -> ``detecting`` -> ``awaiting_confirm`` (the operator says
confirm or next, or the best grasp's quality reaches ``safety.auto_confirm_quality``) ->
``pregrasp`` (open the fingers, move above the grasp) -> ``descend`` -> ``close`` -> ``verify``
(gripper status HOLDING) -> ``lift`` -> ``place`` -> ``release`` (open, move back up) -> ``home``
-> ``idle``. ``stop`` halts at once from any state and any thread (arm stop + gripper stop, even
while a motion waits) and leaves ``stopped``; a fault leaves ``fault`` with a message that says
what happened and what to do.

Threads: public methods are thread-safe and return a ``Reply`` at once; ``pick`` detects in the
caller's thread (so its reply carries the candidates), motions run in a worker thread. Listeners
(``add_listener``) get a ``StateChange`` on every state change, from the thread that made it.
``status()`` is JSON-ready and never waits for a device (it shows the last values read).

Safety: the loop holds only a ``GuardedArm`` and a ``GuardedGripper`` (``runtime.safety``):
every arm target and gripper opening passes the safety gate right before it is sent. Dry run (the
default): everything is computed, checked and logged as ``would_send``; nothing is written to a
device. A ``Watchdog`` stops the arm when the loop stops polling it during a motion.

Faults: a Modbus timeout or disconnect stops what can be stopped and marks the devices for a
reconnect (with backoff) on the next command; gripper fault bits abort the pick; a camera that
stops delivering is reconnected a few times and reported as degraded; a target not found, an
RGB-only frame, a missing calibration, a depth hole under the grasp or a grasp outside the
workspace are reported to the operator and nothing moves.

Frames and units: grasps in image pixels; poses ``T_base_*`` 4x4 in the robot base frame,
metres; openings in metres; times in seconds (``*_ms`` in milliseconds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from langgrasp.calibration.io import Calibration
from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError, LanggraspError
from langgrasp.runtime.audit import AuditLog
from langgrasp.runtime.camera import Camera, CameraEndedError, CameraError, Frame
from langgrasp.runtime.devices import (
    Arm,
    ArmState,
    DeviceDisconnectedError,
    DeviceError,
    DeviceFaultError,
    DeviceTimeoutError,
    Gripper,
    GripperState,
    GripperStatus,
)
from langgrasp.runtime.geometry import (
    GraspGeometryConfig,
    GraspGeometryError,
    GraspPose,
    top_down_pose,
)
from langgrasp.runtime.geometry import grasp_pose as compute_grasp_pose
from langgrasp.runtime.intents import HELP_TEXT, IntentKind, detector_command, parse_intent
from langgrasp.runtime.safety import (
    GuardedArm,
    GuardedGripper,
    SafetyConfig,
    SafetyError,
    SafetyGate,
    StopLatchedError,
    Watchdog,
)

if TYPE_CHECKING:
    from langgrasp.runtime.config import LoopConfig, MotionConfig, PlaceConfig, RobotConfig
    from langgrasp.runtime.engine import Detection

log = logging.getLogger(__name__)

MS_PER_S = 1000.0

AUDIT_MEMORY_RECORDS = 20_000
"""Audit records ``build_loop`` keeps in memory, so a report finds all of a command's writes even
when register reads are audited too (a status poll every few milliseconds during motions)."""

NEEDS_ACTIVATION = frozenset({GripperState.RESET, GripperState.ACTIVATING, GripperState.FAULT})
"""Gripper states after which ``--execute`` runs the activation at start (the fingers move); after
a reconnect the loop only refuses gripper commands until the operator says "activate"."""


class LoopState(str, Enum):
    """Where the pick loop is (see the module docstring for the order)."""

    IDLE = "idle"
    DETECTING = "detecting"
    CAPTURE = "capture"  # eye-in-hand: moving to the capture pose
    AWAITING_CONFIRM = "awaiting_confirm"
    PREGRASP = "pregrasp"
    DESCEND = "descend"
    CLOSE = "close"
    VERIFY = "verify"
    LIFT = "lift"
    PLACE = "place"
    RELEASE = "release"
    HOME = "home"
    OPENING = "opening"  # operator "open"
    ACTIVATING = "activating"  # operator "activate"
    STOPPED = "stopped"
    FAULT = "fault"


class Detector(Protocol):
    """What the loop needs from a detector (``engine.GraspDetector`` or a test double)."""

    def detect(self, rgb: np.ndarray, command: str) -> Detection:
        """Ranked grasps for ``command`` on an ``(H, W, 3)`` uint8 RGB image."""
        ...


@dataclass(frozen=True)
class Reply:
    """The answer to one operator command.

    Attributes:
        ok: The command was accepted and did what it said.
        message: One or two sentences for the operator.
        state: The loop state after the command (``LoopState`` value).
        data: Extra JSON-ready details (candidates, status).
    """

    ok: bool
    message: str
    state: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "message": self.message, "state": self.state, "data": self.data}


@dataclass(frozen=True)
class StateChange:
    """Sent to listeners on every state change.

    Attributes:
        state: New state (``LoopState`` value).
        previous: Previous state.
        message: Why, for the operator.
        mono_s: ``time.monotonic()`` of the change.
    """

    state: str
    previous: str
    message: str
    mono_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "state": self.state,
            "previous": self.previous,
            "message": self.message,
            "mono_s": self.mono_s,
        }


@dataclass(frozen=True)
class Candidate:
    """One ranked grasp with its 3D pose, or the reason it cannot be executed.

    Attributes:
        rank: Detector rank, 1 = best.
        grasp: The grasp in image pixels.
        pose: Its pose in the base frame, None when it could not be computed.
        problem: Why it cannot be executed (no depth, outside the workspace, ...), None if it can.
    """

    rank: int
    grasp: Grasp
    pose: GraspPose | None
    problem: str | None

    @property
    def usable(self) -> bool:
        """True when the robot may execute it."""
        return self.problem is None and self.pose is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (pose as position, yaw, opening and the 4x4 matrices)."""
        pose = None
        if self.pose is not None:
            pose = {
                "position_m": self.pose.position_m.tolist(),
                "yaw_rad": self.pose.yaw_rad,
                "opening_m": self.pose.opening_m,
                "depth_m": self.pose.depth_m,
                "T_base_grasp": self.pose.T_base_grasp.tolist(),
                "T_base_pregrasp": self.pose.T_base_pregrasp.tolist(),
            }
        return {
            "rank": self.rank,
            "grasp": self.grasp.to_dict(),
            "quality": self.grasp.quality,
            "pose": pose,
            "usable": self.usable,
            "problem": self.problem,
        }

    def describe(self) -> str:
        """One line for the operator."""
        g = self.grasp
        text = f"#{self.rank} quality {g.quality:.2f} at ({g.x:.0f}, {g.y:.0f}) px"
        if self.pose is not None:
            p = self.pose.position_m
            text += (
                f", base ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m, yaw "
                f"{math.degrees(self.pose.yaw_rad):.0f} deg, "
                f"opening {self.pose.opening_m * 1e3:.0f} mm"
            )
        return text + (f" -- not executable: {self.problem}" if self.problem else "")


@dataclass
class PickReport:
    """What one command did: for the operator, the audit trail and the HTTP API.

    Attributes:
        command: The operator's words.
        target: The target phrase ("the red mug").
        detector_command: What the detector received ("pick up the red mug").
        dry_run: Nothing was sent to the devices.
        outcome: ``"awaiting_confirm"``, ``"placed"``, ``"held"`` (no place pose),
            ``"not_found"``, ``"refused"``, ``"missed"`` (closed on nothing), ``"dropped"``
            (lost during the lift), ``"stopped"``, ``"fault"``, ``"camera"`` or ``"detecting"``.
        message: What happened, for the operator.
        candidates: Every candidate considered.
        chosen: The candidate executed (or offered), None when none.
        steps: Motion steps taken: ``{"step", "device", "op", ...}``, in order.
        device_writes: Register writes sent during the command (from the audit log).
        would_send: Dry run: the commands that would have been sent (from the audit log).
        timings_ms: capture, detect, geometry, motion and total, milliseconds.
        started_mono_s: ``time.monotonic()`` when the command arrived.
    """

    command: str
    target: str | None
    detector_command: str | None
    dry_run: bool
    outcome: str = "detecting"
    message: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    device_writes: list[dict[str, Any]] = field(default_factory=list)
    would_send: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    started_mono_s: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "command": self.command,
            "target": self.target,
            "detector_command": self.detector_command,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "message": self.message,
            "chosen": None if self.chosen is None else self.chosen.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "steps": self.steps,
            "device_writes": self.device_writes,
            "would_send": self.would_send,
            "timings_ms": self.timings_ms,
        }

    def format(self) -> str:
        """A human-readable report (several lines)."""
        mode = "dry run, nothing sent" if self.dry_run else "executed"
        lines = [
            f"command: {self.command!r} -> detector: {self.detector_command!r} ({mode})",
            f"outcome: {self.outcome}: {self.message}",
        ]
        if self.chosen is not None:
            lines.append(f"grasp: {self.chosen.describe()}")
            if self.chosen.pose is not None:
                t = self.chosen.pose.T_base_grasp
                lines.append(
                    "T_base_grasp: " + np.array2string(t, precision=4, suppress_small=True)
                )
        elif self.candidates:
            lines.append("candidates:")
            lines.extend(f"  {c.describe()}" for c in self.candidates)
        if self.steps:
            lines.append("steps: " + ", ".join(f"{s['device']} {s['step']}" for s in self.steps))
        if self.dry_run:
            lines.append(f"would send: {len(self.would_send)} command(s)")
            lines.extend(f"  {_describe_command(c)}" for c in self.would_send)
        else:
            lines.append(f"device writes: {len(self.device_writes)}")
            lines.extend(
                f"  {w.get('device')} @{w.get('address')}: {w.get('values')}"
                for w in self.device_writes
            )
        if self.timings_ms:
            lines.append(
                "timings: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.timings_ms.items())
            )
        return "\n".join(lines)


def _describe_command(record: dict[str, Any]) -> str:
    """One ``would_send`` audit record as a short line."""
    text = f"{record.get('device')} {record.get('op')}"
    if record.get("step"):
        text += f" ({record['step']})"
    if record.get("pose") is not None:
        x, y, z = (row[3] for row in record["pose"][:3])
        text += f" to ({x:.3f}, {y:.3f}, {z:.3f}) m at speed {record.get('speed')}"
    if record.get("width_m") is not None:
        text += f" to {record['width_m'] * 1e3:.1f} mm"
    return text


class GripperNotActivatedError(DeviceError):
    """The gripper lost its activation (or faulted) and waits for the operator's "activate"."""


class _StoppedError(LanggraspError):
    """The operator (or the watchdog) stopped the loop."""


def raised(pose: np.ndarray, height_m: float) -> np.ndarray:
    """``pose`` moved ``height_m`` metres along base +z."""
    out = np.array(pose, dtype=np.float64, copy=True)
    out[2, 3] += height_m
    return out


class PickLoop:
    """The pick state machine (see the module docstring).

    Args:
        camera: Connected frame source.
        detector: Anything with ``detect(rgb, command) -> Detection``.
        calibration: calibration.json content; None -> 2D grasps only, the robot never moves.
        arm: The arm, or None. The loop wraps it in a ``GuardedArm`` and never uses it directly.
        gripper: The gripper, or None (wrapped in a ``GuardedGripper``).
        geometry: Grasp-to-pose settings.
        motion: Speeds, heights, timeouts (``config.MotionConfig``; defaults when None).
        safety: Safety limits.
        place: Place pose (``config.PlaceConfig``), or None: the pick ends holding the object.
        loop: Candidates and reconnection (``config.LoopConfig``; defaults when None).
        audit: Audit log (in memory when None).
        execute: Send commands to the devices; False (the default) is a dry run.
        auto_confirm: Confirm the offered grasp without asking (still subject to the gate).

    Raises:
        InputError: the place pose lies outside the workspace box.
    """

    def __init__(
        self,
        camera: Camera,
        detector: Detector,
        calibration: Calibration | None,
        arm: Arm | None = None,
        gripper: Gripper | None = None,
        geometry: GraspGeometryConfig | None = None,
        motion: MotionConfig | None = None,
        safety: SafetyConfig | None = None,
        place: PlaceConfig | None = None,
        loop: LoopConfig | None = None,
        audit: AuditLog | None = None,
        execute: bool = False,
        auto_confirm: bool = False,
    ) -> None:
        from langgrasp.runtime.config import LoopConfig, MotionConfig

        self.camera = camera
        self.detector = detector
        self.calibration = calibration
        self.geometry = geometry or GraspGeometryConfig()
        self.motion = motion or MotionConfig()
        self.safety = safety or SafetyConfig()
        self.place = place
        self.settings = loop or LoopConfig()
        self.audit = audit or AuditLog(None, tail_size=AUDIT_MEMORY_RECORDS)
        self.execute = bool(execute)
        self.auto_confirm = bool(auto_confirm)
        self.gate = SafetyGate(self.safety, self.audit)
        self._arm = GuardedArm(arm, self.gate, self.audit, self.execute)
        self._gripper = GuardedGripper(gripper, self.gate, self.audit, self.execute)
        self._watchdog = Watchdog(self.safety.watchdog_timeout_s, self._watchdog_fired)
        self._lock = threading.RLock()
        self._stop_event = threading.Event()  # set by stop and the watchdog; wakes waits
        self._stop_generation = 0  # bumped by every stop, under _lock, before any device I/O
        self._run_generation = 0  # the generation the running command started under
        self._camera_lock = threading.Lock()
        self._listeners: list[Callable[[StateChange], None]] = []
        self._state = LoopState.IDLE
        self._message = "ready" + ("" if self.execute else " (dry run: nothing is sent)")
        self._detecting = False
        self._job: threading.Thread | None = None
        self._abort_reason: str | None = None
        self._active_device: str | None = None  # the device the running step talks to
        self._lost: set[str] = set()
        self._gripper_unready: str | None = None  # why a reconnected gripper needs "activate"
        self._device_status: dict[str, dict[str, Any]] = {}
        self._camera_problem: str | None = None
        self._candidates: list[Candidate] = []
        self._offered: int | None = None
        self._detection_summary: dict[str, Any] | None = None
        self.last_frame: Frame | None = None
        self.last_detection: Detection | None = None
        self.last_report: PickReport | None = None
        self._check_place()

    # -- public API ---------------------------------------------------------------------------

    @property
    def state(self) -> LoopState:
        """The current state."""
        with self._lock:
            return self._state

    @property
    def busy(self) -> bool:
        """True while a detection or a motion runs."""
        with self._lock:
            return self._detecting or (self._job is not None and self._job.is_alive())

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        """Call ``listener(StateChange)`` on every state change (from the changing thread)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[StateChange], None]) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def command(self, text: str) -> Reply:
        """Parse one operator line (typed or transcribed) and run it."""
        intent = parse_intent(text)
        self.audit.record("command", text=text, intent=intent.to_dict())
        handlers: dict[IntentKind, Callable[[], Reply]] = {
            IntentKind.NEXT: self.next,
            IntentKind.CONFIRM: self.confirm,
            IntentKind.STOP: self.stop,
            IntentKind.HOME: self.home,
            IntentKind.OPEN: self.open,
            IntentKind.ACTIVATE: self.activate,
            IntentKind.STATUS: self._status_reply,
            IntentKind.HELP: lambda: self._reply(True, HELP_TEXT),
        }
        if intent.kind is IntentKind.PICK:
            if intent.target is None:
                return self._reply(False, "say what to pick, e.g. 'pick the red mug'")
            return self.pick(intent.target, text)
        if intent.kind is IntentKind.EMPTY:
            return self._reply(True, "")
        if intent.kind is IntentKind.UNKNOWN:
            return self._reply(False, f"I did not understand {text.strip()!r}; {HELP_TEXT}")
        return handlers[intent.kind]()

    def pick(self, target: str, text: str | None = None) -> Reply:
        """Detect grasps on ``target`` ("the red mug") and offer the best executable one.

        Runs in the caller's thread (capture, detection, 3D poses); the motion starts on
        ``confirm`` (or at once with auto-confirm) in the worker thread.
        """
        with self._lock:
            if self.busy:
                return self._reply(False, f"busy ({self._state.value}); say stop first")
            self._detecting = True
            self._begin_command()
            report = PickReport(
                text or target, target, detector_command(target), dry_run=not self.execute
            )
            self.last_report = report
            self._candidates, self._offered = [], None
        try:
            reply = self._detect_and_offer(report)
        finally:
            with self._lock:
                self._detecting = False
        self._finish_report(report)
        if reply.ok and self._auto_confirm_ok(report):
            return self.confirm(auto=True)
        return reply

    def confirm(self, auto: bool = False) -> Reply:
        """Execute the offered grasp (starts the motion in the worker thread)."""
        with self._lock:
            if self.busy:
                return self._reply(False, f"busy ({self._state.value}); say stop first")
            if self._state is not LoopState.AWAITING_CONFIRM or self._offered is None:
                return self._reply(False, "nothing to confirm; say 'pick the ...' first")
            problem = self._motion_problem()
            if problem:
                return self._reply(False, problem)
            candidate = self._candidates[self._offered]
            report = self.last_report
            assert report is not None
            report.chosen = candidate
            self._begin_command()
            self._start_job("pick", lambda: self._run_pick(candidate, report), report)
        how = "auto-confirmed" if auto else "confirmed"
        dry = " (dry run: nothing is sent)" if not self.execute else ""
        return self._reply(True, f"{how} grasp {candidate.describe()}; moving{dry}")

    def next(self) -> Reply:
        """Offer the next-ranked executable candidate."""
        with self._lock:
            if self._state is not LoopState.AWAITING_CONFIRM or self._offered is None:
                return self._reply(False, "no grasp offered; say 'pick the ...' first")
            later = [i for i in range(self._offered + 1, len(self._candidates))]
            usable = [i for i in later if self._candidates[i].usable]
            if not usable:
                return self._reply(
                    False,
                    f"no other executable grasp (still offering "
                    f"#{self._candidates[self._offered].rank}); say confirm, stop, or pick again",
                )
            self._offered = usable[0]
            candidate = self._candidates[self._offered]
            if self.last_report is not None:
                self.last_report.chosen = candidate
            self.audit.record("offer", candidate=candidate.to_dict())
        return self._reply(True, f"offering {candidate.describe()}; say confirm, next or stop")

    def stop(self) -> Reply:
        """Halt at once: arm stop and gripper stop, from any state and any thread.

        The stopped state, a new stop generation and the devices' stop latches are set under
        the loop lock before any device I/O, so a ``confirm`` (or a worker step) racing this
        call either started before it, and is halted by it, or is refused.
        """
        what = "arm and gripper halted" if self.execute else "dry run: stop logged, nothing moved"
        with self._lock:
            moving = self._job is not None and self._job.is_alive()
            self._stop_generation += 1
            self._stop_event.set()
            self._arm.latch_stop()
            self._gripper.latch_stop()
            self._offered = None  # a stale offer can never be confirmed
            report = self.last_report
            if report is not None and report.outcome in ("awaiting_confirm", "detecting"):
                report.outcome, report.message = "stopped", "stopped by the operator"
            message = f"stopped{' during the motion' if moving else ''}: {what}; say home or pick"
            change = self._change_state(LoopState.STOPPED, message)
        self._watchdog.disarm()
        self._arm.stop()
        self._gripper.stop()
        self._notify(change)
        self.audit.record("stop", during_motion=moving)
        return self._reply(True, message)

    def home(self) -> Reply:
        """Send the arm to the controller's home position (worker thread)."""
        with self._lock:
            if self.busy:
                return self._reply(False, f"busy ({self._state.value}); say stop first")
            if not self._arm.present:
                return self._reply(False, "no [arm] in robot.toml; nothing to home")
            self._begin_command()
            self._start_job("home", self._run_home, None)
        return self._reply(True, "going home" + ("" if self.execute else " (dry run)"))

    def open(self) -> Reply:
        """Open the gripper fully (worker thread)."""
        with self._lock:
            if self.busy:
                return self._reply(False, f"busy ({self._state.value}); say stop first")
            if not self._gripper.present:
                return self._reply(False, "no [gripper] in robot.toml; nothing to open")
            self._begin_command()
            self._start_job("open", self._run_open, None)
        return self._reply(True, "opening the gripper" + ("" if self.execute else " (dry run)"))

    def activate(self) -> Reply:
        """Run the gripper activation (worker thread): the fingers open and close fully.

        The operator's remedy for a gripper that lost its activation (after a power or link
        loss) or reports a fault that needs it; the loop never activates on its own after start.
        """
        with self._lock:
            if self.busy:
                return self._reply(False, f"busy ({self._state.value}); say stop first")
            if not self._gripper.present:
                return self._reply(False, "no [gripper] in robot.toml; nothing to activate")
            self._begin_command()
            self._start_job("activate", self._run_activate, None)
        return self._reply(
            True,
            "activating the gripper: the fingers open and close fully"
            + ("" if self.execute else " (dry run)"),
        )

    def wait_until_settled(self, timeout_s: float | None = None) -> bool:
        """Block until no motion runs; True if settled within ``timeout_s``."""
        with self._lock:
            job = self._job
        if job is not None:
            job.join(timeout_s)
            return not job.is_alive()
        return True

    def status(self, refresh: bool = False) -> dict[str, Any]:
        """JSON-ready status: loop, camera, gripper, arm, last detection, candidates.

        Args:
            refresh: Read the devices now (a Modbus round trip each); otherwise the last values
                read by the loop are shown, so this never waits on a device.
        """
        if refresh and not self.busy:
            self._refresh_devices()
        with self._lock:
            offered = None if self._offered is None else self._candidates[self._offered].rank
            return {
                "state": self._state.value,
                "message": self._message,
                "busy": self.busy,
                "dry_run": not self.execute,
                "camera": self._camera_status(),
                "gripper": self._device_entry("gripper", self._gripper.present),
                "arm": self._device_entry("arm", self._arm.present),
                "calibration": self._calibration_entry(),
                "detection": self._detection_summary,
                "candidates": [c.to_dict() for c in self._candidates],
                "offered": offered,
                "report": None if self.last_report is None else self.last_report.to_dict(),
            }

    def grab_frame(self, timeout_s: float | None = None) -> Frame:
        """Read a new frame (for live views); thread-safe with the loop's own captures.

        ``last_frame`` stays the frame of the last detection (it pairs with ``last_detection``).

        Raises:
            CameraError: no frame in time or the camera failed.
        """
        with self._camera_lock:
            return self.camera.read(timeout_s or self.settings.frame_timeout_s)

    def close(self) -> None:
        """Stop any motion, then release the watchdog, camera, devices and audit log."""
        if self.busy:
            self.stop()
            self.wait_until_settled(self.motion.move_timeout_s)
        self._watchdog.close()
        for closer in (self.camera.close, self._arm.disconnect, self._gripper.disconnect):
            try:
                closer()
            except Exception as err:  # closing must not hide the real error of a run
                log.debug("close: %s", err)
        self.audit.close()

    def __enter__(self) -> PickLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- detection ----------------------------------------------------------------------------

    def _detect_and_offer(self, report: PickReport) -> Reply:
        self._active_device = None
        try:
            self._enter(LoopState.DETECTING, f"looking for {report.target}")
            self._ensure_devices()
            frame, T_base_ee = self._capture(report)  # noqa: N806
            self._check_stop()
            start = time.perf_counter()
            assert report.detector_command is not None
            detection = self.detector.detect(frame.rgb, report.detector_command)
            report.timings_ms["detect"] = (time.perf_counter() - start) * MS_PER_S
            start = time.perf_counter()
            why_2d = self._why_2d(frame, T_base_ee)
            candidates = [
                self._assess(rank, g, frame, T_base_ee, why_2d)
                for rank, g in enumerate(detection.grasps[: self.settings.max_candidates], 1)
            ]
            report.timings_ms["geometry"] = (time.perf_counter() - start) * MS_PER_S
        except (_StoppedError, StopLatchedError):
            return self._end_detection(report, "stopped", "stopped by the operator", ok=False)
        except CameraError as err:
            return self._end_detection(report, "camera", str(err), ok=False)
        except Exception as err:  # devices, detector, bugs: always end in a clear state
            state, outcome, message = self._failure("detection", err)
            report.outcome, report.message = outcome, message
            if not self._set_state_unless_stopped(state, message):
                report.outcome, report.message = "stopped", "stopped by the operator"
            return self._reply(False, message)
        if self._stopped():
            return self._end_detection(report, "stopped", "stopped by the operator", ok=False)
        return self._offer(report, frame, detection, candidates, T_base_ee)

    def _offer(
        self,
        report: PickReport,
        frame: Frame,
        detection: Detection,
        candidates: list[Candidate],
        T_base_ee: np.ndarray | None,  # noqa: N803
    ) -> Reply:
        with self._lock:
            self.last_frame, self.last_detection = frame, detection
            self._candidates = candidates
            report.candidates = candidates
            self._detection_summary = self._summarise(report, frame, detection, T_base_ee)
        self.audit.record("detection", **self._detection_summary)
        data = {"candidates": [c.to_dict() for c in candidates]}
        if not candidates:
            reason = detection.reason or "no grasp found"
            message = f"{report.target} not found ({reason}); nothing moved"
            return self._end_detection(report, "not_found", message, ok=False, data=data)
        usable = [i for i, c in enumerate(candidates) if c.usable]
        if not usable:
            reasons = "; ".join(f"#{c.rank}: {c.problem}" for c in candidates)
            message = (
                f"found {len(candidates)} grasp(s) but none can be executed ({reasons}); "
                "the robot will not move"
            )
            return self._end_detection(report, "refused", message, ok=False, data=data)
        with self._lock:
            self._offered = usable[0]
            chosen = candidates[usable[0]]
            report.chosen = chosen
        skipped = (
            ""
            if usable[0] == 0
            else f" (better-ranked ones not executable: {candidates[0].problem})"
        )
        message = (
            f"found {len(candidates)} grasp(s) for {report.target}; offering "
            f"{chosen.describe()}{skipped}; say confirm, next or stop"
        )
        report.outcome, report.message = "awaiting_confirm", message
        # A stop that arrived while the poses were computed wins: no offer to confirm.
        if not self._set_state_unless_stopped(LoopState.AWAITING_CONFIRM, message):
            return self._end_detection(report, "stopped", "stopped by the operator", ok=False)
        return self._reply(True, message, data)

    def _end_detection(
        self, report: PickReport, outcome: str, message: str, ok: bool, data: dict | None = None
    ) -> Reply:
        report.outcome, report.message = outcome, message
        self.audit.record("outcome", outcome=outcome, message=message)
        if outcome == "stopped":
            return self._reply(ok, message, data or {})
        self._set_state_unless_stopped(LoopState.IDLE, message)
        return self._reply(ok, message, data or {})

    def _capture(self, report: PickReport) -> tuple[Frame, np.ndarray | None]:
        """A fresh frame and (eye-in-hand) the arm pose when it was taken."""
        eye_in_hand = self._eye_in_hand()
        if eye_in_hand and self.motion.capture_position_m is not None:
            self._enter(LoopState.CAPTURE, "moving to the capture pose")
            self._move("capture", self._capture_pose(), self.motion.travel_speed, report)
            self._enter(LoopState.DETECTING, f"looking for {report.target}")
        start = time.perf_counter()
        frame = self._read_frame()
        report.timings_ms["capture"] = (time.perf_counter() - start) * MS_PER_S
        T_base_ee = None  # noqa: N806
        if eye_in_hand:
            T_base_ee = self._pose_at_capture()  # noqa: N806
        return frame, T_base_ee

    def _read_frame(self) -> Frame:
        """Read a frame; on failure reconnect the camera a few times, then raise ``CameraError``."""
        attempts = self.settings.camera_reconnect_attempts
        delay = self.settings.reconnect_first_s
        for attempt in range(attempts + 1):
            try:
                frame = self.grab_frame()
            except CameraEndedError as err:
                self._camera_problem = str(err)
                raise CameraError(f"the camera source ended ({err}); nothing moved") from err
            except CameraError as err:
                self._camera_problem = f"degraded: {err}"
                self.audit.record("fault", device="camera", error=str(err), attempt=attempt)
                if attempt == attempts:
                    raise CameraError(
                        f"the camera stopped delivering frames ({err}); tried reconnecting "
                        f"{attempts} time(s); check the cable and power, then pick again; "
                        "nothing moved"
                    ) from err
                if self._stop_event.wait(delay):
                    raise _StoppedError("stopped by the operator") from err
                delay = min(delay * 2, self.settings.reconnect_max_s)
                self._reconnect_camera()
                continue
            self._camera_problem = None
            return frame
        raise AssertionError("unreachable")

    def _reconnect_camera(self) -> None:
        try:
            with self._camera_lock:
                self.camera.reconnect()
        except CameraError as err:
            self._camera_problem = f"degraded: reconnect failed: {err}"
            log.warning("camera reconnect failed: %s", err)

    def _pose_at_capture(self) -> np.ndarray | None:
        try:
            pose = self._arm.read_pose()
        except DeviceError as err:
            self._mark_lost("arm", err)
            return None
        if pose is None and not self.execute and self.motion.capture_position_m is not None:
            return self._capture_pose()  # dry run: where the arm would have been
        return pose

    def _why_2d(self, frame: Frame, T_base_ee: np.ndarray | None) -> str | None:  # noqa: N803
        """Why grasps stay 2D (the robot will not move), or None when 3D poses can be computed."""
        if frame.depth_m is None:
            return f"the camera ({frame.source or self.camera.name}) gives RGB only, no depth"
        if self.calibration is None:
            return "no calibration: add [calibration] path = calibration.json to robot.toml"
        if self.calibration.hand_eye is None:
            return "calibration.json has no hand-eye block; run `langgrasp calibrate handeye`"
        width, height = frame.size
        try:
            self.calibration.check_camera(frame.serial, width, height)
        except InputError as err:
            return str(err)
        if self._eye_in_hand() and T_base_ee is None:
            return "eye-in-hand calibration, but the arm pose at capture time is unknown"
        return None

    def _assess(
        self,
        rank: int,
        grasp: Grasp,
        frame: Frame,
        T_base_ee: np.ndarray | None,  # noqa: N803
        why_2d: str | None,
    ) -> Candidate:
        if why_2d is not None:
            return Candidate(rank, grasp, None, why_2d)
        assert self.calibration is not None and frame.depth_m is not None
        try:
            pose = compute_grasp_pose(
                grasp, frame.depth_m, self.calibration, T_base_ee, self.geometry
            )
        except (GraspGeometryError, InputError) as err:
            return Candidate(rank, grasp, None, str(err))
        gate = self.gate
        problem = gate.quality_problem(grasp.quality) or gate.opening_problem(pose.opening_m)
        if problem is None and pose.opening_m > self._gripper.max_opening_m:
            problem = (
                f"needs an opening of {pose.opening_m * 1e3:.0f} mm, the gripper opens "
                f"{self._gripper.max_opening_m * 1e3:.0f} mm"
            )
        for label, target in self._grasp_targets(pose):
            if problem is None and (found := gate.pose_problem(target)):
                problem = f"{label}: {found}"
        return Candidate(rank, grasp, pose, problem)

    def _grasp_targets(self, pose: GraspPose) -> list[tuple[str, np.ndarray]]:
        return [
            ("pregrasp", pose.T_base_pregrasp),
            ("grasp", pose.T_base_grasp),
            ("lift", raised(pose.T_base_grasp, self.motion.lift_height_m)),
        ]

    def _summarise(
        self,
        report: PickReport,
        frame: Frame,
        detection: Detection,
        T_base_ee: np.ndarray | None,  # noqa: N803
    ) -> dict[str, Any]:
        return {
            "command": report.command,
            "target": report.target,
            "detector_command": report.detector_command,
            "reason": detection.reason,
            "grasps": len(detection.grasps),
            "mask_pixels": int(np.count_nonzero(detection.mask)),
            "mask_score": float(detection.mask_score),
            "frame": {
                "index": frame.index,
                "source": frame.source,
                "size": list(frame.size),
                "has_depth": frame.has_depth,
            },
            "T_base_ee": None if T_base_ee is None else np.asarray(T_base_ee).tolist(),
            "timings_ms": {**report.timings_ms, "detector": dict(detection.timings_ms)},
            "candidates": [c.to_dict() for c in report.candidates],
        }

    def _auto_confirm_ok(self, report: PickReport) -> bool:
        if report.outcome != "awaiting_confirm" or report.chosen is None:
            return False
        threshold = self.safety.auto_confirm_quality
        quality = report.chosen.grasp.quality
        return self.auto_confirm or (threshold is not None and quality >= threshold)

    # -- motion (worker thread) ---------------------------------------------------------------

    def _run_pick(self, candidate: Candidate, report: PickReport) -> tuple[LoopState, str, str]:
        pose = candidate.pose
        assert pose is not None
        self.gate.check_quality(candidate.grasp.quality, f"grasp #{candidate.rank}")
        motion = self.motion
        opening = min(pose.opening_m + motion.opening_margin_m, self._gripper.max_opening_m)
        self._enter(LoopState.PREGRASP, "opening the gripper and moving above the grasp")
        self._grip("preopen", opening, report)
        self._move("pregrasp", pose.T_base_pregrasp, motion.travel_speed, report)
        self._enter(LoopState.DESCEND, "descending to the grasp")
        self._move("descend", pose.T_base_grasp, motion.approach_speed, report)
        self._enter(LoopState.CLOSE, "closing the gripper")
        status = self._grip("close", 0.0, report)
        self._enter(LoopState.VERIFY, f"gripper: {status.message or status.state.value}")
        if status.state is not GripperState.HOLDING:
            return self._missed(pose, opening, status.message or status.state.value, report)
        self._enter(LoopState.LIFT, "lifting the object")
        self._move(
            "lift", raised(pose.T_base_grasp, motion.lift_height_m), motion.approach_speed, report
        )
        if self._gripper.execute:  # still holding after the lift?
            status = self._gripper.status()
            if status.state is not GripperState.HOLDING:
                return (
                    LoopState.STOPPED,
                    "dropped",
                    f"the object slipped out during the lift (gripper: {status.message}); the "
                    "arm waits above the grasp; say home or pick",
                )
        if self.place is None:
            message = "holding the object above the grasp; say open to release"
            return LoopState.IDLE, "held", message + self._dry_note()
        self._place(opening, report)
        if motion.home_after:
            self._go_home(report)
        return LoopState.IDLE, "placed", "object placed" + self._dry_note()

    def _place(self, opening: float, report: PickReport) -> None:
        place, motion = self.place, self.motion
        assert place is not None
        release = top_down_pose(place.position_m, place.yaw_rad)
        release[2, 3] += place.release_height_m
        above = raised(release, motion.lift_height_m)
        self._enter(LoopState.PLACE, "moving to the place pose")
        self._move("place_above", above, motion.travel_speed, report)
        self._move("place", release, motion.approach_speed, report)
        self._enter(LoopState.RELEASE, "releasing the object")
        self._grip("release", opening, report)
        self._move("retreat", above, motion.approach_speed, report)

    def _missed(
        self, pose: GraspPose, opening: float, gripper_message: str, report: PickReport
    ) -> tuple[LoopState, str, str]:
        self._grip("reopen", opening, report)
        self._move("retreat", pose.T_base_pregrasp, self.motion.approach_speed, report)
        return (
            LoopState.IDLE,
            "missed",
            f"the gripper closed without holding anything ({gripper_message}); opened it and "
            "moved back up; say pick to try again",
        )

    def _run_home(self) -> tuple[LoopState, str, str]:
        self._ensure_devices(gripper_needed=False)
        self._go_home(None)
        return LoopState.IDLE, "home", "at home" + self._dry_note()

    def _run_open(self) -> tuple[LoopState, str, str]:
        self._ensure_devices()
        self._enter(LoopState.OPENING, "opening the gripper")
        self._grip("open", self._gripper.max_opening_m, None)
        return LoopState.IDLE, "open", "gripper open" + self._dry_note()

    def _run_activate(self) -> tuple[LoopState, str, str]:
        self._ensure_devices(gripper_needed=False)
        self._enter(LoopState.ACTIVATING, "activating the gripper (the fingers open and close)")
        self._check_stop()
        self._active_device = "gripper"
        status = self._gripper.activate(self.motion.activate_timeout_s)
        self._device_status["gripper"] = status.to_dict()
        self._check_stop()
        with self._lock:
            self._gripper_unready = None
        return LoopState.IDLE, "activated", "gripper activated" + self._dry_note()

    def _go_home(self, report: PickReport | None) -> None:
        self._enter(LoopState.HOME, "moving home")
        self._check_stop()
        self._active_device = "arm"
        sent = self._arm.home(label="home", timeout_s=self.motion.move_timeout_s)
        self._check_stop()  # a stop that raced the write: halted again in _failure
        if report is not None:
            report.steps.append({"step": "home", "device": "arm", "op": "home"})
        if self._arm.execute:
            self._wait_arm("home", sent.sequence)

    def _move(
        self,
        label: str,
        T_base_ee: np.ndarray,  # noqa: N803
        speed: float,
        report: PickReport | None,
    ) -> None:
        """One guarded arm move; waits (polling, kicking the watchdog) until done."""
        self._check_stop()
        self._active_device = "arm"
        sent = self._arm.move_to(
            T_base_ee, speed, label, wait=False, timeout_s=self.motion.move_timeout_s
        )
        self._check_stop()  # a stop that raced the write: halted again in _failure
        if report is not None:
            report.steps.append(
                {
                    "step": label,
                    "device": "arm",
                    "op": "move_to",
                    "position_m": np.asarray(T_base_ee)[:3, 3].tolist(),
                    "speed": speed,
                }
            )
        if self._arm.execute:
            self._wait_arm(label, sent.sequence)

    def _wait_arm(self, label: str, sequence: int) -> None:
        """Poll until the command ``sequence`` arrived; anything else ends the step.

        Arrival is the device's word for it (``GuardedArm.arrived``: for the Modbus arm, state
        done with ``sequence`` acknowledged). Idle without arriving -- the controller program
        restarted and abandoned the motion -- is a failure that halts the pick.
        """
        deadline = time.monotonic() + self.motion.move_timeout_s
        self._watchdog.arm(label)
        try:
            while True:
                self._check_stop()
                status = self._arm.status()
                self._watchdog.kick()
                self._device_status["arm"] = status.to_dict()
                if self._arm.arrived(status, sequence):
                    return
                if status.state is ArmState.IDLE:
                    raise DeviceError(
                        f"arm: the controller went idle during {label} without arriving (its "
                        f"program restarted?: {status.message}); the pick is halted; check the "
                        "arm, then say home"
                    )
                if status.state is ArmState.STOPPED:
                    self._check_stop()
                    raise DeviceError(f"arm: stopped by the controller during {label}")
                if status.state is ArmState.FAULT:
                    raise DeviceFaultError(f"arm: fault during {label}: {status.message}")
                if status.state is ArmState.DISCONNECTED:
                    raise DeviceDisconnectedError(f"arm: controller disconnected during {label}")
                if time.monotonic() > deadline:
                    raise DeviceTimeoutError(
                        f"arm: {label} not finished within {self.motion.move_timeout_s} s"
                    )
                self._stop_event.wait(self.motion.poll_interval_s)
        finally:
            self._watchdog.disarm()

    def _grip(self, label: str, width_m: float, report: PickReport | None) -> GripperStatus:
        """One guarded gripper motion to ``width_m`` metres (0 = close on the object)."""
        self._check_stop()
        self._active_device = "gripper"
        motion = self.motion
        self._gripper.move_to(width_m, motion.grip_speed, motion.grip_force, label)
        self._check_stop()
        if report is not None:
            report.steps.append(
                {"step": label, "device": "gripper", "op": "move_to", "width_m": width_m}
            )
        status = self._gripper.wait(motion.gripper_timeout_s)
        self._device_status["gripper"] = status.to_dict()
        if status.state is GripperState.FAULT:
            raise DeviceFaultError(f"gripper: {status.message}")
        self._check_stop()
        return status

    def _check_stop(self) -> None:
        if self._stopped():
            raise _StoppedError(self._abort_reason or "stopped by the operator")

    def _stopped(self) -> bool:
        """True when a stop (or the watchdog) came after the running command started."""
        with self._lock:
            return self._stop_event.is_set() or self._stop_generation != self._run_generation

    def _begin_command(self) -> None:
        """An operator command starts (call with ``_lock`` held, after the busy check).

        Takes the current stop generation and clears the stop event and the devices' stop
        latches: this is the explicit operator command a latched stop waits for.
        """
        self._run_generation = self._stop_generation
        self._stop_event.clear()
        self._abort_reason = None
        self._arm.clear_stop()
        self._gripper.clear_stop()

    def _enter(self, state: LoopState, message: str) -> None:
        """Enter a step of the running command, unless a stop came first.

        Raises:
            _StoppedError: stopped; the state stays ``stopped``.
        """
        if not self._set_state_unless_stopped(state, message):
            raise _StoppedError(self._abort_reason or "stopped by the operator")

    def _set_state_unless_stopped(self, state: LoopState, message: str) -> bool:
        """Switch state unless the running command was stopped; True when switched."""
        with self._lock:
            if self._stop_event.is_set() or self._stop_generation != self._run_generation:
                return False
            change = self._change_state(state, message)
        self._notify(change)
        return True

    def _start_job(
        self, name: str, body: Callable[[], tuple[LoopState, str, str]], report: PickReport | None
    ) -> None:
        """Run ``body`` in the worker thread (call with ``_lock`` held, after the busy check)."""
        self._job = threading.Thread(
            target=self._job_main, args=(name, body, report), name=f"pick-{name}", daemon=True
        )
        self._job.start()

    def _job_main(
        self, name: str, body: Callable[[], tuple[LoopState, str, str]], report: PickReport | None
    ) -> None:
        start = time.perf_counter()
        self._active_device = None
        try:
            state, outcome, message = body()
        except Exception as err:  # every failure ends in a safe state with a message
            state, outcome, message = self._failure(name, err)
        finally:
            self._watchdog.disarm()
        if self._stopped() and state is not LoopState.FAULT:
            state, outcome = LoopState.STOPPED, "stopped"
            message = self._abort_reason or "stopped by the operator; say home or pick"
        if report is not None:
            report.timings_ms["motion"] = (time.perf_counter() - start) * MS_PER_S
            report.outcome, report.message = outcome, message
            self._finish_report(report)
        self.audit.record("outcome", job=name, outcome=outcome, message=message)
        with self._lock:  # not busy and in the final state at the same moment
            self._job = None
            if state is LoopState.IDLE:
                self._offered = None
            change = None
            if not (state is LoopState.STOPPED and self._state is LoopState.STOPPED):
                change = self._change_state(state, message)
        if change is not None:
            self._notify(change)

    def _failure(self, name: str, err: Exception) -> tuple[LoopState, str, str]:
        """Stop what can be stopped and describe the failure for the operator.

        Every path halts the arm and the gripper first, a stop too (a stop that raced a write
        may have reached the device before the command did); a link marked lost is reconnected
        once by the device's own stop.
        """
        if isinstance(err, GripperNotActivatedError):  # refused before anything was sent
            return LoopState.IDLE, "refused", str(err)
        if isinstance(err, (_StoppedError, StopLatchedError)) or (
            isinstance(err, DeviceError)
            and not isinstance(err, (DeviceFaultError, DeviceTimeoutError, DeviceDisconnectedError))
            and self._stopped()
        ):
            for device, sent in self._halt().items():
                if not sent:
                    self._mark_lost(device, DeviceError(f"{device}: the stop could not be sent"))
            if self._abort_reason:
                return LoopState.FAULT, "fault", self._abort_reason
            return LoopState.STOPPED, "stopped", "stopped by the operator; say home or pick"
        for name, sent in self._halt().items():
            if not sent:
                self._mark_lost(name, DeviceError(f"{name}: the stop command could not be sent"))
        if isinstance(err, (SafetyError, InputError)):  # refused before anything was sent
            return (
                LoopState.STOPPED,
                "refused",
                f"refused by the safety gate: {err}; nothing more was sent, arm and gripper "
                "stopped where they are",
            )
        if isinstance(err, DeviceFaultError):
            return (
                LoopState.FAULT,
                "fault",
                f"{err}; {name} aborted, arm and gripper stopped; clear the fault, then say home",
            )
        if isinstance(err, (DeviceTimeoutError, DeviceDisconnectedError)):
            self._mark_lost(self._active_device or "arm", err)
            if self._active_device is None:
                self._mark_lost("gripper", err)
            return (
                LoopState.FAULT,
                "fault",
                f"{err}; {name} aborted, stop sent where the link allowed; the next command "
                "reconnects",
            )
        if isinstance(err, DeviceError):
            return LoopState.FAULT, "fault", f"{err}; {name} aborted, arm and gripper stopped"
        if isinstance(err, LanggraspError):  # e.g. the detector refused the frame
            return LoopState.FAULT, "fault", f"{name} failed: {err}; arm and gripper stopped"
        log.exception("%s failed", name)
        return LoopState.FAULT, "fault", f"internal error during {name}: {err!r}; stopped"

    def _halt(self) -> dict[str, bool]:
        """Stop arm and gripper; returns whether each stop command could be sent."""
        self._watchdog.disarm()
        return {"arm": self._arm.stop(), "gripper": self._gripper.stop()}

    def _watchdog_fired(self, label: str) -> None:
        reason = (
            f"watchdog: the loop gave no sign of life for {self.safety.watchdog_timeout_s} s "
            f"during {label}; arm stopped"
        )
        self.audit.record("fault", device="loop", error=reason)
        self._abort_reason = reason
        self._stop_event.set()
        self._halt()

    # -- devices ------------------------------------------------------------------------------

    def _motion_problem(self) -> str | None:
        """Why a confirmed grasp cannot move the robot (with ``--execute``), or None."""
        if self.execute and not self._arm.present:
            return "no [arm] in robot.toml: the grasp was computed, but there is nothing to move"
        if self.execute and not self._gripper.present:
            return "no [gripper] in robot.toml: the grasp was computed, but nothing can hold it"
        return None

    def _ensure_devices(self, gripper_needed: bool = True) -> None:
        """Reconnect devices lost earlier, with backoff; never activates the gripper.

        A reconnected gripper (``--execute``) that needs activation -- it was power-cycled or
        reports a fault -- is remembered: commands that use it are refused until the operator
        says "activate" (activation moves the fingers fully: it could drop a held object, and
        it is the wrong remedy for faults such as over-temperature).

        Args:
            gripper_needed: The command moves the gripper (refused while it needs activation).

        Raises:
            DeviceError: with ``--execute``, a device is still unreachable (in a dry run it is
                only reported).
            GripperNotActivatedError: ``gripper_needed`` and the gripper needs activation.
        """
        s = self.settings
        checked = False  # the gripper's activation was read after a reconnect
        for name, device in (("arm", self._arm), ("gripper", self._gripper)):
            if name not in self._lost or not device.present:
                continue
            self._active_device = name
            try:
                device.reconnect(
                    s.device_reconnect_attempts, s.reconnect_first_s, s.reconnect_max_s
                )
            except DeviceError as err:
                self.audit.record("fault", device=name, error=str(err))
                if self.execute:
                    raise
                continue
            with self._lock:
                self._lost.discard(name)
                self._device_status.pop(name, None)
            self.audit.record("reconnected", device=name)
            if name == "gripper" and self.execute:
                checked = True
                self._check_gripper_activation()
        unready = gripper_needed and self._gripper_unready is not None
        if unready and (checked or self._check_gripper_activation()):  # read again: still?
            raise GripperNotActivatedError(str(self._gripper_unready))

    def _check_gripper_activation(self) -> bool:
        """Read the gripper; remember (and return True) when it needs the operator's activate."""
        self._active_device = "gripper"
        status = self._gripper.status()
        with self._lock:
            self._device_status["gripper"] = status.to_dict()
            if status.state not in NEEDS_ACTIVATION:
                self._gripper_unready = None
                return False
            then = (
                "make sure it holds nothing, then say 'activate' (the fingers open and close fully)"
            )
            if status.state is GripperState.FAULT:
                self._gripper_unready = (
                    f"the gripper reports a fault ({status.message}); nothing was sent. Do what "
                    f"the fault says; when it needs re-activation, {then}"
                )
            else:
                self._gripper_unready = (
                    f"the gripper is not activated (state {status.state.value}); nothing was "
                    f"sent. {then[0].upper()}{then[1:]}"
                )
        self.audit.record("fault", device="gripper", error=self._gripper_unready)
        return True

    def _mark_lost(self, name: str, err: Exception) -> None:
        with self._lock:
            self._lost.add(name)
            self._device_status[name] = {"state": "lost", "message": str(err)}

    def _refresh_devices(self) -> None:
        for name, device in (("arm", self._arm), ("gripper", self._gripper)):
            if not device.present:
                continue
            try:
                status = device.status().to_dict()
            except DeviceError as err:
                self._mark_lost(name, err)
                continue
            with self._lock:
                self._device_status[name] = status

    def _device_entry(self, name: str, present: bool) -> dict[str, Any]:
        if not present:
            return {"present": False, "state": "absent", "message": f"no [{name}] in robot.toml"}
        entry: dict[str, Any] = {"present": True, "lost": name in self._lost}
        entry.update(self._device_status.get(name, {"state": "unknown", "message": "not read"}))
        if name in self._lost:
            entry["message"] = f"{entry.get('message', '')}; reconnects on the next command"
        return entry

    def _camera_status(self) -> dict[str, Any]:
        status = self.camera.status().to_dict()
        if self._camera_problem:
            status["degraded"] = True
            status["message"] = self._camera_problem
        return status

    def _calibration_entry(self) -> dict[str, Any]:
        if self.calibration is None:
            return {"present": False, "setup": None}
        hand_eye = self.calibration.hand_eye
        return {"present": True, "setup": None if hand_eye is None else hand_eye.setup}

    def _eye_in_hand(self) -> bool:
        cal = self.calibration
        return cal is not None and cal.hand_eye is not None and cal.hand_eye.setup == "eye-in-hand"

    def _capture_pose(self) -> np.ndarray:
        assert self.motion.capture_position_m is not None
        return top_down_pose(self.motion.capture_position_m, self.motion.capture_yaw_rad)

    def _check_place(self) -> None:
        if self.place is None:
            return
        release = top_down_pose(self.place.position_m, self.place.yaw_rad)
        release[2, 3] += self.place.release_height_m
        for label, target in (
            ("place", release),
            ("above place", raised(release, self.motion.lift_height_m)),
        ):
            problem = self.gate.pose_problem(target)
            if problem:
                raise InputError(
                    f"[place] {label}: {problem}; move the place pose into [safety] workspace"
                )

    # -- state and reports --------------------------------------------------------------------

    def _change_state(self, state: LoopState, message: str) -> StateChange:
        """Switch state (call with ``_lock`` held); ``_notify`` the result after releasing it."""
        previous = self._state
        self._state, self._message = state, message
        return StateChange(state.value, previous.value, message, time.monotonic())

    def _notify(self, change: StateChange) -> None:
        self.audit.record(
            "state", state=change.state, previous=change.previous, message=change.message
        )
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:  # a broken listener must not break the loop
                log.exception("state listener failed")

    def _reply(self, ok: bool, message: str, data: dict[str, Any] | None = None) -> Reply:
        return Reply(ok, message, self.state.value, data or {})

    def _status_reply(self) -> Reply:
        status = self.status(refresh=True)  # read the devices first, then describe them
        return self._reply(True, self._status_line(), status)

    def _status_line(self) -> str:
        with self._lock:
            line = f"{self._state.value}: {self._message}"
        parts = [line, f"camera {self._camera_status()['message']}"]
        for name, device in (("gripper", self._gripper), ("arm", self._arm)):
            entry = self._device_entry(name, device.present)
            parts.append(f"{name} {entry.get('state')}")
        return "; ".join(parts) + ("" if self.execute else " (dry run)")

    def _dry_note(self) -> str:
        return "" if self.execute else " (dry run: nothing was sent)"

    def _finish_report(self, report: PickReport) -> None:
        """Copy the command's device writes (and dry-run commands) from the audit log."""
        since = report.started_mono_s
        everything = AUDIT_MEMORY_RECORDS
        report.device_writes = [
            r for r in self.audit.tail(everything, "device_write") if r["mono_s"] >= since
        ]
        report.would_send = [
            r for r in self.audit.tail(everything, "would_send") if r["mono_s"] >= since
        ]
        report.timings_ms["total"] = (time.monotonic() - since) * MS_PER_S
        self.audit.record(
            "report", **{k: v for k, v in report.to_dict().items() if k != "device_writes"}
        )


# -- building from robot.toml -----------------------------------------------------------------


def build_loop(
    config: RobotConfig,
    execute: bool = False,
    auto_confirm: bool = False,
    detector: Detector | None = None,
    camera: Camera | None = None,
) -> PickLoop:
    """Open everything robot.toml names and return a ready ``PickLoop``.

    Args:
        config: From ``load_robot_config``.
        execute: Arm the devices (``--execute``); the default is a dry run.
        auto_confirm: Confirm the offered grasp without asking (``--auto-confirm``).
        detector: Use this instead of loading ``[bundle]`` (tests, custom detectors).
        camera: Use this instead of opening ``[camera]``.

    Raises:
        LanggraspError: a camera, bundle, calibration or (with ``execute``) device that cannot
            be opened; the message says which and why.
    """
    from langgrasp.calibration.io import load_calibration

    audit = AuditLog(config.audit.path, tail_size=AUDIT_MEMORY_RECORDS)
    opened: list[Callable[[], None]] = [audit.close]
    try:
        if detector is None:
            detector = _open_detector(config)
        calibration = (
            None if config.calibration is None else load_calibration(config.calibration.path)
        )
        if camera is None:
            from langgrasp.runtime.cameras import open_camera

            camera = open_camera(config.camera)
        opened.append(camera.close)
        if not camera.is_connected:
            camera.connect()
        arm, gripper, unreachable = _open_devices(config, audit, execute, opened)
        loop = PickLoop(
            camera,
            detector,
            calibration,
            arm=arm,
            gripper=gripper,
            geometry=config.geometry,
            motion=config.motion,
            safety=config.safety,
            place=config.place,
            loop=config.loop,
            audit=audit,
            execute=execute,
            auto_confirm=auto_confirm,
        )
        for name, err in unreachable.items():
            loop._mark_lost(name, err)
    except BaseException:
        for closer in reversed(opened):
            try:
                closer()
            except Exception as err:  # keep the original error
                log.debug("cleanup: %s", err)
        raise
    audit.record(
        "start",
        config=None if config.source is None else str(config.source),
        execute=execute,
        safety=config.safety.to_dict(),
    )
    return loop


def _open_detector(config: RobotConfig) -> Detector:
    if config.bundle is None:
        raise InputError(
            f"{config.source or 'robot config'}: no [bundle] table; set [bundle] path to the "
            "folder written by `langgrasp export`"
        )
    from langgrasp.runtime.engine import GraspDetector

    b = config.bundle
    return GraspDetector(
        b.path, providers=list(b.providers), precision=b.precision, threads=b.threads
    )


def _open_devices(
    config: RobotConfig, audit: AuditLog, execute: bool, opened: list[Callable[[], None]]
) -> tuple[Arm | None, Gripper | None, dict[str, DeviceError]]:
    """Create and connect the devices; in a dry run an unreachable device is only reported.

    Returns:
        The arm, the gripper, and the devices a dry run could not reach (name -> error).
    """
    arm = gripper = None
    if config.gripper is not None:
        from langgrasp.runtime.robotiq import RobotiqGripper

        gripper = RobotiqGripper(config.gripper, on_io=audit.device_io)
        gripper.link.audit_reads = config.audit.reads
    if config.arm is not None:
        from langgrasp.runtime.modbus_arm import ModbusArm

        arm = ModbusArm(config.arm, on_io=audit.device_io)
        arm.link.audit_reads = config.audit.reads
    unreachable: dict[str, DeviceError] = {}
    for kind, device in (("gripper", gripper), ("arm", arm)):
        if device is None:
            continue
        opened.append(device.disconnect)
        try:
            device.connect()
        except DeviceError as err:
            if execute:
                raise
            log.warning("dry run without the %s: %s", kind, err)
            audit.record("fault", device=kind, error=str(err))
            unreachable[kind] = err
    if execute and gripper is not None and gripper.status().state in NEEDS_ACTIVATION:
        gripper.activate(config.motion.activate_timeout_s)
    return arm, gripper, unreachable
