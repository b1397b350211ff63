"""One camera config for every backend, and ``open_camera`` to build the camera it describes.

``CameraConfig`` is the ``[camera]`` table of ``robot.toml``: ``kind`` picks the backend and the
other keys configure it (each key applies to the kinds listed in ``FIELD_KINDS``)::

    [camera]
    kind = "realsense"      # realsense | playback | folder | video | synthetic
    serial = "123456789012"
    width = 640
    height = 480
    fps = 30
    filters = ["spatial", "temporal"]

``CameraConfig.from_dict`` rejects unknown keys and keys the chosen kind does not use, naming the
valid ones, so a typo fails when the config is loaded rather than on the robot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.errors import InputError
from langgrasp.runtime.camera import Camera
from langgrasp.runtime.cameras.files import ImageFolderCamera, VideoCamera
from langgrasp.runtime.cameras.pipeline import (
    DEFAULT_FRAME_TIMEOUT_S,
    DEFAULT_MAX_FAILURES,
    check_filters,
)
from langgrasp.runtime.cameras.realsense import (
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_WARMUP_FRAMES,
    DEFAULT_WIDTH,
    RealSenseCamera,
    RealSenseConfig,
    RealSensePlayback,
)
from langgrasp.runtime.cameras.synthetic import SyntheticCamera

KINDS = ("realsense", "playback", "folder", "video", "synthetic")
"""Camera backends: live RealSense, RealSense recording, image folder, video file, synthetic."""

FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "kind": KINDS,
    "serial": ("realsense",),
    "width": ("realsense", "synthetic"),
    "height": ("realsense", "synthetic"),
    "fps": ("realsense", "synthetic"),
    "depth": ("realsense",),
    "depth_width": ("realsense",),
    "depth_height": ("realsense",),
    "filters": ("realsense", "playback"),
    "frame_timeout_s": ("realsense", "playback"),
    "warmup_frames": ("realsense",),
    "max_failures": ("realsense", "playback"),
    "path": ("playback", "folder", "video"),
    "loop": ("playback", "folder", "video"),
    "real_time": ("playback",),
    "intrinsics": ("folder", "video"),
    "seed": ("synthetic",),
    "split": ("synthetic",),
}
"""The kinds each ``CameraConfig`` field applies to."""

_NEEDS_PATH = ("playback", "folder", "video")


@dataclass(frozen=True)
class CameraConfig:
    """Which camera to open and how (see ``FIELD_KINDS`` for the kinds each field applies to).

    Attributes:
        kind: Backend, one of ``KINDS``.
        serial: realsense: serial number to open; None opens the first camera found.
        width: realsense: colour width in pixels (default 640); synthetic: image width (the
            scene camera's field of view is kept). Set together with ``height``.
        height: Image height in pixels, see ``width``.
        fps: realsense: stream rate, a whole number (default 30); synthetic: pacing, frames per
            second (default: none, frames as fast as they are read).
        depth: realsense: stream depth aligned to colour; False gives RGB-only frames.
        depth_width: realsense: depth stream width in pixels if it differs from colour.
        depth_height: realsense: depth stream height in pixels if it differs from colour.
        filters: realsense, playback: depth post-filters (``POST_FILTERS``), in order.
        frame_timeout_s: realsense, playback: seconds without frames that count as one failure.
        warmup_frames: realsense: framesets dropped after start.
        max_failures: realsense, playback: consecutive failures before reads raise.
        path: playback: the ``.db3``/``.bag`` recording; folder: the image folder; video: the
            video file.
        loop: playback, folder, video: start over at the end instead of ending.
        real_time: playback: pace frames as they were recorded, keeping only the newest.
        intrinsics: folder, video: intrinsics of the camera that took the images, if known.
        seed: synthetic: seed of the first scene.
        split: synthetic: a synthetic split name, or None for every object combination.
    """

    kind: str = "synthetic"
    serial: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    depth: bool = True
    depth_width: int | None = None
    depth_height: int | None = None
    filters: tuple[str, ...] = ()
    frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S
    warmup_frames: int = DEFAULT_WARMUP_FRAMES
    max_failures: int = DEFAULT_MAX_FAILURES
    path: Path | None = None
    loop: bool = False
    real_time: bool = False
    intrinsics: CameraIntrinsics | None = None
    seed: int = 0
    split: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown camera kind {self.kind!r}; use one of {', '.join(KINDS)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if self.kind not in FIELD_KINDS[f.name] and value != f.default:
                raise InputError(_not_for_kind(f.name, self.kind))
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        elif self.kind in _NEEDS_PATH:
            raise InputError(f"a {self.kind} camera needs a path")
        if (self.width is None) != (self.height is None):
            raise InputError("set both width and height, or neither")
        object.__setattr__(self, "filters", check_filters(self.filters, self.depth))
        if self.kind == "realsense":
            self.realsense_config()  # validates the live camera's fields
        if self.kind == "synthetic":
            SyntheticCamera(self.seed, self.scene_config(), self.split, self.fps)

    def realsense_config(self) -> RealSenseConfig:
        """The live camera settings (defaults 640x480 at 30 fps)."""
        return RealSenseConfig(
            serial=self.serial,
            width=DEFAULT_WIDTH if self.width is None else self.width,
            height=DEFAULT_HEIGHT if self.height is None else self.height,
            fps=DEFAULT_FPS if self.fps is None else self.fps,  # type: ignore[arg-type]
            depth=self.depth,
            depth_width=self.depth_width,
            depth_height=self.depth_height,
            filters=self.filters,
            frame_timeout_s=self.frame_timeout_s,
            warmup_frames=self.warmup_frames,
            max_failures=self.max_failures,
        )

    def scene_config(self) -> SceneConfig:
        """The synthetic scene camera, resized to ``width`` x ``height`` when they are set."""
        if self.width is None or self.height is None:
            return SceneConfig()
        return SceneConfig().resized(self.width, self.height)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str = "[camera]", base_dir: Path | None = None
    ) -> CameraConfig:
        """Parse a ``[camera]`` table.

        Args:
            data: The table: ``kind`` plus the keys of that kind (``FIELD_KINDS``); ``filters`` is
                a list of names; ``intrinsics`` is a table with the keys of
                ``CameraIntrinsics.to_dict`` (``width_px``, ``fx_px``, ...).
            where: Where the table came from, e.g. ``"robot.toml [camera]"``; starts each error.
            base_dir: Folder that relative ``path`` values are relative to (the config file's);
                None leaves them relative to the working directory.

        Raises:
            InputError: unknown keys (the message lists the known ones), keys the kind does not
                use, values of the wrong type, or values the backend refuses.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: expected a table of camera settings, got {data!r}")
        unknown = sorted(set(data) - set(FIELD_KINDS))
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known keys: "
                + ", ".join(FIELD_KINDS)
            )
        kind = data.get("kind", cls.kind)
        if kind not in KINDS:
            raise InputError(
                f"{where}: unknown camera kind {kind!r}; use one of {', '.join(KINDS)}"
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            if kind not in FIELD_KINDS[key]:
                raise InputError(f"{where}: {_not_for_kind(key, kind)}")
            values[key] = _PARSERS[key](value, key, where)
        if "path" in values and base_dir is not None and not values["path"].is_absolute():
            values["path"] = Path(base_dir) / values["path"]
        try:
            return cls(**values)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None


def _not_for_kind(key: str, kind: str) -> str:
    takes = ", ".join(k for k, kinds in FIELD_KINDS.items() if kind in kinds)
    return (
        f"{key!r} does not apply to a {kind} camera (it is for: {', '.join(FIELD_KINDS[key])}); "
        f"a {kind} camera takes: {takes}"
    )


def _wrong(key: str, where: str, expected: str, value: Any) -> InputError:
    return InputError(f"{where}: {key} must be {expected}, got {value!r}")


def _string(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(key, where, "a string", value)
    return value


def _integer(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, where, "a whole number", value)
    return value


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(key, where, "a number", value)
    return value


def _boolean(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong(key, where, "true or false", value)
    return value


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, where, "a list of names", value)
    return tuple(value)


def _path(value: Any, key: str, where: str) -> Path:
    return Path(_string(value, key, where)).expanduser()


def _intrinsics(value: Any, key: str, where: str) -> CameraIntrinsics:
    if not isinstance(value, Mapping):
        raise _wrong(key, where, "a table (width_px, height_px, fx_px, ...)", value)
    try:
        return CameraIntrinsics.from_dict(dict(value))
    except InputError as exc:
        raise InputError(f"{where}: {key}: {exc}") from None


_PARSERS: dict[str, Callable[[Any, str, str], Any]] = {
    "kind": _string,
    "serial": _string,
    "width": _integer,
    "height": _integer,
    "fps": _number,
    "depth": _boolean,
    "depth_width": _integer,
    "depth_height": _integer,
    "filters": _names,
    "frame_timeout_s": _number,
    "warmup_frames": _integer,
    "max_failures": _integer,
    "path": _path,
    "loop": _boolean,
    "real_time": _boolean,
    "intrinsics": _intrinsics,
    "seed": _integer,
    "split": _string,
}


def _open_playback(config: CameraConfig) -> Camera:
    return RealSensePlayback(
        config.path,  # type: ignore[arg-type]  # checked in __post_init__
        repeat=config.loop,
        real_time=config.real_time,
        filters=config.filters,
        frame_timeout_s=config.frame_timeout_s,
        max_failures=config.max_failures,
    )


_OPENERS: dict[str, Callable[[CameraConfig], Camera]] = {
    "realsense": lambda c: RealSenseCamera(c.realsense_config()),
    "playback": _open_playback,
    "folder": lambda c: ImageFolderCamera(c.path, c.loop, c.intrinsics),  # type: ignore[arg-type]
    "video": lambda c: VideoCamera(c.path, c.loop, c.intrinsics),  # type: ignore[arg-type]
    "synthetic": lambda c: SyntheticCamera(c.seed, c.scene_config(), c.split, c.fps),
}


def open_camera(config: CameraConfig) -> Camera:
    """The camera ``config`` describes, not yet connected.

    Call ``connect()`` (or use it in a ``with`` block) to start it; ``connect`` raises
    ``CameraError`` when the device or file is missing.
    """
    return _OPENERS[config.kind](config)
