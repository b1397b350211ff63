"""robot.toml: everything ``langgrasp run`` needs, read into typed configs.

Tables (``examples/robot.toml`` documents every key):

* ``[camera]``: the frame source (``cameras.CameraConfig``).
* ``[bundle]``: the exported model (path, execution providers, precision, threads).
* ``[calibration]``: path to calibration.json (optional: without it the loop reports 2D grasps
  and refuses to move).
* ``[gripper]``: a Robotiq gripper (``robotiq.RobotiqConfig``), optional.
* ``[arm]``: an arm behind a Modbus register protocol (``modbus_arm.ModbusArmConfig``), optional.
* ``[geometry]``: how a grasp becomes a 3D pose (``geometry.GraspGeometryConfig``).
* ``[motion]``: lift height, speeds, timeouts, the eye-in-hand capture pose.
* ``[safety]``: workspace box, maximum opening, minimum quality, auto-confirm, watchdog
  (``safety.SafetyConfig``). The dry run is not a key: only ``langgrasp run --execute`` arms the
  devices.
* ``[place]``: where a picked object is put down (optional: without it the pick ends holding
  the object above the grasp).
* ``[loop]``: candidates offered, camera and device reconnection.
* ``[audit]``: the JSONL audit log.

Relative paths resolve against the folder of the TOML file. Lengths are metres, angles radians,
times seconds, speeds and forces fractions in [0, 1]; poses are in the robot base frame. Every
error names the file, the table and the key; an unknown key lists the known ones.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgrasp.errors import InputError
from langgrasp.runtime.geometry import GraspGeometryConfig
from langgrasp.runtime.safety import SafetyConfig

if TYPE_CHECKING:
    from langgrasp.runtime.cameras import CameraConfig
    from langgrasp.runtime.modbus_arm import ModbusArmConfig
    from langgrasp.runtime.robotiq import RobotiqConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the same parser, packaged as tomli
    import tomli as tomllib

TABLES = (
    "camera",
    "bundle",
    "calibration",
    "gripper",
    "arm",
    "geometry",
    "motion",
    "safety",
    "place",
    "loop",
    "audit",
)
"""Top-level tables of robot.toml."""

OFF = "off"
"""Value that switches an optional number off (TOML has no null), e.g. auto_confirm_quality."""


class RobotConfigError(InputError):
    """robot.toml is missing, unreadable or has a wrong value; the message names file and key."""


@dataclass(frozen=True)
class BundleConfig:
    """``[bundle]``: the exported model the detector loads.

    Attributes:
        path: Bundle folder written by ``langgrasp export``.
        providers: Execution providers in order of preference (``tensorrt``, ``cuda``, ``cpu``).
        precision: Frame graph: ``auto``, ``fp32``, ``fp16`` or ``int8``.
        threads: onnxruntime intra-op threads; None = one per core.
    """

    path: Path
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    precision: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "fp16", "int8"):
            raise InputError(f"precision must be auto, fp32, fp16 or int8, got {self.precision!r}")
        if not self.providers:
            raise InputError('providers: name at least one execution provider, e.g. ["cpu"]')


@dataclass(frozen=True)
class CalibrationConfig:
    """``[calibration]``: where calibration.json is.

    Attributes:
        path: calibration.json from ``langgrasp calibrate``.
    """

    path: Path


@dataclass(frozen=True)
class MotionConfig:
    """``[motion]``: how the arm and gripper move during a pick.

    Attributes:
        lift_height_m: Lift after closing, along base +z, metres.
        travel_speed: Speed fraction for moves away from the object (pre-grasp, lift, place,
            home), (0, 1].
        approach_speed: Speed fraction near the object (descend, retreat), (0, 1].
        move_timeout_s: Longest wait for one arm move to finish, seconds.
        gripper_timeout_s: Longest wait for the fingers to stop, seconds.
        activate_timeout_s: Longest wait for the gripper activation, seconds.
        grip_speed: Finger speed fraction, [0, 1].
        grip_force: Finger force fraction, [0, 1].
        opening_margin_m: Pre-grasp opening beyond the grasp's width (split over both jaws),
            metres; capped by ``safety.max_opening_m``.
        poll_interval_s: Status poll period while waiting for a motion, seconds.
        capture_position_m: Eye-in-hand: tool position ``(x, y, z)`` where frames are taken
            (tool pointing down), metres; None = take the frame wherever the arm is.
        capture_yaw_rad: Eye-in-hand: tool yaw about base z at the capture pose, radians.
        home_after: Send the arm home at the end of a pick.
    """

    lift_height_m: float = 0.10
    travel_speed: float = 0.5
    approach_speed: float = 0.1
    move_timeout_s: float = 30.0
    gripper_timeout_s: float = 5.0
    activate_timeout_s: float = 10.0
    grip_speed: float = 1.0
    grip_force: float = 0.5
    opening_margin_m: float = 0.01
    poll_interval_s: float = 0.01
    capture_position_m: tuple[float, float, float] | None = None
    capture_yaw_rad: float = 0.0
    home_after: bool = True

    def __post_init__(self) -> None:
        for name in ("travel_speed", "approach_speed"):
            if not 0 < getattr(self, name) <= 1:
                raise InputError(f"{name} must be within (0, 1], got {getattr(self, name)}")
        for name in ("grip_speed", "grip_force"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        for name in ("move_timeout_s", "gripper_timeout_s", "activate_timeout_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if not 0 < self.poll_interval_s <= 1:
            raise InputError(f"poll_interval_s must be within (0, 1] s, got {self.poll_interval_s}")
        if self.lift_height_m < 0 or self.opening_margin_m < 0:
            raise InputError("lift_height_m and opening_margin_m must be >= 0 metres")


@dataclass(frozen=True)
class PlaceConfig:
    """``[place]``: where the object is put down (robot base frame).

    Attributes:
        position_m: ``(x, y, z)`` of the spot the object is put on (e.g. the bin floor), metres.
        yaw_rad: Tool yaw about base z while placing, radians (tool pointing down).
        release_height_m: The gripper opens this far above ``position_m``, metres.
    """

    position_m: tuple[float, float, float]
    yaw_rad: float = 0.0
    release_height_m: float = 0.05

    def __post_init__(self) -> None:
        if self.release_height_m < 0:
            raise InputError(f"release_height_m must be >= 0 metres, got {self.release_height_m}")


@dataclass(frozen=True)
class LoopConfig:
    """``[loop]``: candidates, frames and reconnection.

    Attributes:
        max_candidates: Ranked grasps turned into 3D candidates per detection.
        frame_timeout_s: Longest wait for a camera frame, seconds.
        camera_reconnect_attempts: Reconnections tried when the camera stops delivering.
        device_reconnect_attempts: Reconnections tried for a gripper or arm lost earlier,
            on the next command.
        reconnect_first_s: First pause between reconnection attempts (doubles each time), s.
        reconnect_max_s: Longest pause between reconnection attempts, seconds.
    """

    max_candidates: int = 5
    frame_timeout_s: float = 2.0
    camera_reconnect_attempts: int = 3
    device_reconnect_attempts: int = 3
    reconnect_first_s: float = 0.1
    reconnect_max_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise InputError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.camera_reconnect_attempts < 0 or self.device_reconnect_attempts < 0:
            raise InputError("reconnect attempts must be >= 0")
        if not 0 < self.reconnect_first_s <= self.reconnect_max_s:
            raise InputError("need 0 < reconnect_first_s <= reconnect_max_s")
        if not self.frame_timeout_s > 0:
            raise InputError(f"frame_timeout_s must be > 0 s, got {self.frame_timeout_s}")


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: the JSONL audit log.

    Attributes:
        path: JSONL file appended to; None keeps records in memory only.
        reads: Also log every register read (large; writes are always logged).
    """

    path: Path | None = None
    reads: bool = False


@dataclass(frozen=True)
class RobotConfig:
    """Everything in robot.toml (see the module docstring).

    Attributes:
        source: The TOML file this came from (None when built in code).
        camera: Frame source.
        bundle: Exported model; None when robot.toml has no ``[bundle]`` (a detector must then
            be passed to ``build_loop``).
        calibration: calibration.json location, or None (2D grasps only, the robot never moves).
        gripper: Gripper, or None.
        arm: Arm, or None.
        geometry: Grasp-to-pose settings.
        motion: Motion settings.
        safety: Safety limits.
        place: Place pose, or None.
        loop: Candidates, frames and reconnection.
        audit: Audit log.
    """

    camera: CameraConfig
    source: Path | None = None
    bundle: BundleConfig | None = None
    calibration: CalibrationConfig | None = None
    gripper: RobotiqConfig | None = None
    arm: ModbusArmConfig | None = None
    geometry: GraspGeometryConfig = field(default_factory=GraspGeometryConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    place: PlaceConfig | None = None
    loop: LoopConfig = field(default_factory=LoopConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)


# -- loading ------------------------------------------------------------------------------------


def load_robot_config(path: str | Path) -> RobotConfig:
    """Read and validate robot.toml.

    Args:
        path: The TOML file; relative paths inside it resolve against its folder.

    Raises:
        RobotConfigError: missing or unparsable file, unknown table or key, or a bad value;
            the message names the file, the table and the key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RobotConfigError(
            f"cannot read the robot config {path}: {err.strerror or err}; copy "
            "examples/robot.toml and edit it"
        ) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RobotConfigError(f"{path} is not valid TOML: {err}") from err
    return robot_config_from_dict(data, path)


def robot_config_from_dict(data: dict[str, Any], source: Path | None = None) -> RobotConfig:
    """Validate parsed robot.toml content (see ``load_robot_config``).

    Args:
        data: The parsed TOML document.
        source: The file it came from: messages name it and relative paths resolve against its
            folder (the working directory when None).
    """
    name = str(source) if source is not None else "robot config"
    folder = source.parent if source is not None else Path()
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise RobotConfigError(
            f"{name}: unknown table {_names(unknown)}; known tables: {', '.join(TABLES)}"
        )
    for table, value in data.items():
        if not isinstance(value, dict):
            raise RobotConfigError(f"{name}: {table} must be a table ([{table}]), got a value")
    if "camera" not in data:
        raise RobotConfigError(f"{name}: missing the [camera] table (the frame source)")
    ctx = _Context(name, folder)
    config = RobotConfig(
        source=source,
        camera=_foreign(ctx, data, "camera"),
        bundle=_parse(ctx, data, "bundle", BundleConfig, paths=("path",)),
        calibration=_parse(ctx, data, "calibration", CalibrationConfig, paths=("path",)),
        gripper=_foreign(ctx, data, "gripper"),
        arm=_foreign(ctx, data, "arm"),
        geometry=_parse(ctx, data, "geometry", GraspGeometryConfig, default=True),
        motion=_parse(ctx, data, "motion", MotionConfig, default=True),
        safety=_parse(ctx, data, "safety", SafetyConfig, default=True),
        place=_parse(ctx, data, "place", PlaceConfig),
        loop=_parse(ctx, data, "loop", LoopConfig, default=True),
        audit=_parse(ctx, data, "audit", AuditConfig, default=True, paths=("path",)),
    )
    _check_speeds(ctx, config.motion, config.safety)
    return config


def _check_speeds(ctx: _Context, motion: MotionConfig, safety: SafetyConfig) -> None:
    """Refuse motion speeds the safety layer would refuse on every move (after pre-opening)."""
    for key in ("travel_speed", "approach_speed"):
        speed = getattr(motion, key)
        if speed > safety.max_speed:
            raise RobotConfigError(
                f"{ctx.where('motion', key)} ({speed}) is above [safety] max_speed "
                f"({safety.max_speed}): every move at that speed would be refused; lower "
                f"{key} or raise max_speed"
            )


@dataclass(frozen=True)
class _Context:
    name: str
    folder: Path

    def where(self, table: str, key: str | None = None) -> str:
        return f"{self.name} [{table}]" + ("" if key is None else f" {key}")

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.folder / path


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _foreign(ctx: _Context, data: dict[str, Any], table: str) -> Any:
    """A table parsed by its backend's ``from_dict(data, where)`` (camera, gripper, arm)."""
    if table not in data:
        return None
    where = ctx.where(table)
    _require_finite(data[table], where)
    try:
        if table == "camera":
            from langgrasp.runtime.cameras import CameraConfig

            return CameraConfig.from_dict(data[table], where, base_dir=ctx.folder)
        if table == "gripper":
            from langgrasp.runtime.robotiq import RobotiqConfig

            return RobotiqConfig.from_dict(data[table], where)
        from langgrasp.runtime.modbus_arm import ModbusArmConfig

        return ModbusArmConfig.from_dict(data[table], where)
    except InputError as err:
        message = str(err)
        if ctx.name not in message:
            message = f"{where}: {message}"
        raise RobotConfigError(message) from err


def _require_finite(value: Any, where: str, key: str = "") -> None:
    """Refuse ``inf`` / ``nan`` anywhere in a table parsed by a backend (camera, gripper, arm).

    TOML allows them, and the backends' own checks (``x > 0``, ``a <= x <= b``) let some through.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise RobotConfigError(f"{where} {key} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for name, item in value.items():
            _require_finite(item, where, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _require_finite(item, where, f"{key}[{i}]")


def _parse(
    ctx: _Context,
    data: dict[str, Any],
    table: str,
    cls: type,
    default: bool = False,
    paths: tuple[str, ...] = (),
) -> Any:
    """Build dataclass ``cls`` from ``data[table]``; None (or the defaults) when absent."""
    if table not in data:
        return cls() if default else None
    values = data[table]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RobotConfigError(
            f"{ctx.where(table)}: unknown key {_names(unknown)}; known keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, f in fields.items():
        if key not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RobotConfigError(f"{ctx.where(table)}: missing key {key!r}")
            continue
        value = _convert(values[key], hints[key], ctx.where(table, key))
        if key in paths and value is not None:
            value = ctx.resolve(str(value))
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except InputError as err:
        raise RobotConfigError(f"{ctx.where(table)}: {err}") from err


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` (parsed TOML) against type ``hint`` and convert it."""
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]: "off" (or false) means None
        if value == OFF or value is False:
            return None
        inner = next(a for a in args if a is not type(None))
        return _convert(value, inner, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return _convert_tuple(value, args, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise RobotConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RobotConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RobotConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise RobotConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint in (str, Path):
        if not isinstance(value, str) or not value:
            raise RobotConfigError(f"{where} must be a non-empty string, got {value!r}")
        return value
    raise AssertionError(f"no TOML conversion for {hint}")  # a field type this module lacks


def _convert_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    variable = len(args) == 2 and args[1] is Ellipsis
    if isinstance(value, str) and variable and args[0] is str:
        value = [v.strip() for v in value.split(",") if v.strip()]  # "cuda,cpu" also accepted
    if not isinstance(value, list):
        raise RobotConfigError(f"{where} must be an array [...], got {value!r}")
    if not variable and len(value) != len(args):
        raise RobotConfigError(f"{where} must have {len(args)} values, got {len(value)}")
    kinds = [args[0]] * len(value) if variable else list(args)
    return tuple(
        _convert(item, kind, f"{where}[{i}]")
        for i, (item, kind) in enumerate(zip(value, kinds, strict=True))
    )
