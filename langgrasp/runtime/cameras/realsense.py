"""Intel RealSense cameras: a connected device and recordings, through one pipeline code path.

``RealSenseCamera`` streams a connected camera; ``RealSensePlayback`` plays a ``.db3`` (or legacy
``.bag``) recording. Both are ``PipelineCamera``s (``pipeline``): the same ``rs.pipeline``,
post-filters, ``rs.align`` to colour, depth scale from the device, capture thread and copy-out.
Frames and units are described there: RGB uint8, depth float32 metres aligned to colour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgrasp.errors import InputError, check_int
from langgrasp.runtime.camera import CameraError
from langgrasp.runtime.cameras.pipeline import (
    DEFAULT_FRAME_TIMEOUT_S,
    DEFAULT_MAX_FAILURES,
    POST_FILTERS,
    PipelineCamera,
    check_filters,
    check_positive,
    import_realsense,
)

log = logging.getLogger(__name__)

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 640, 480, 30  # a mode every D400 colour sensor has

DEFAULT_WARMUP_FRAMES = 30
"""Framesets dropped after start while auto-exposure settles: 1 s at 30 fps, as LeRobot's
``warmup_s=1`` (runtime.md 6)."""

RECORDING_SUFFIXES = (".db3", ".bag")
"""ROS2 rosbag2 recordings (pyrealsense2 >= 2.58) and legacy ROS1 ``.bag`` (runtime.md 1.3)."""

RESUME_TIMEOUT_S = 11.0
"""Longest wait for the player's resume: the SDK gives up waiting on its own thread after 10 s."""


@dataclass(frozen=True)
class RealSenseConfig:
    """How to open and stream a live RealSense camera.

    Attributes:
        serial: Serial number of the camera to open; None opens the first one found.
        width: Colour width in pixels (also the depth width unless ``depth_width`` is set).
        height: Colour height in pixels (also the depth height unless ``depth_height`` is set).
        fps: Frame rate of both streams, frames per second.
        depth: Stream depth (z16) and align it to colour; False gives RGB-only frames.
        depth_width: Depth stream width in pixels when it differs from colour (D400 depth modes
            such as 848x480 next to 1280x720 colour); the aligned depth has the colour size.
        depth_height: Depth stream height in pixels, see ``depth_width``.
        filters: Depth post-filters from ``POST_FILTERS``, applied in this order.
        frame_timeout_s: Seconds without a frameset that count as one failure.
        warmup_frames: Framesets dropped after start (auto-exposure settling).
        max_failures: Consecutive failures after which ``read`` raises ``CameraError``.
    """

    serial: str | None = None
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: int = DEFAULT_FPS
    depth: bool = True
    depth_width: int | None = None
    depth_height: int | None = None
    filters: tuple[str, ...] = ()
    frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S
    warmup_frames: int = DEFAULT_WARMUP_FRAMES
    max_failures: int = DEFAULT_MAX_FAILURES

    def __post_init__(self) -> None:
        if self.serial is not None and (not isinstance(self.serial, str) or not self.serial):
            raise InputError(f"serial must be a non-empty string or None, got {self.serial!r}")
        for name in ("width", "height", "fps", "max_failures"):
            check_int(name, getattr(self, name), 1)
        for name in ("depth_width", "depth_height"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        check_int("warmup_frames", self.warmup_frames, 0)
        check_positive("frame_timeout_s", self.frame_timeout_s)
        object.__setattr__(self, "filters", check_filters(self.filters, self.depth))

    @property
    def depth_size(self) -> tuple[int, int]:
        """``(width, height)`` of the depth stream in pixels."""
        return (self.depth_width or self.width, self.depth_height or self.height)

    def describe(self) -> str:
        """The requested mode in words, for error messages."""
        mode = f"colour {self.width}x{self.height} rgb8"
        if self.depth:
            mode += " + depth {}x{} z16".format(*self.depth_size)
        return f"{mode} at {self.fps} fps"


class RealSenseCamera(PipelineCamera):
    """A connected RealSense camera: colour rgb8 + depth z16 aligned to colour.

    Example:
        >>> with RealSenseCamera(RealSenseConfig(serial="123456789")) as cam:  # doctest: +SKIP
        ...     frame = cam.read(timeout_s=1.0)
    """

    def __init__(self, config: RealSenseConfig | None = None) -> None:
        self.config = config if config is not None else RealSenseConfig()
        super().__init__(
            name=f"realsense:{self.config.serial or 'first'}",
            depth=self.config.depth,
            filters=self.config.filters,
            frame_timeout_s=self.config.frame_timeout_s,
            max_failures=self.config.max_failures,
            warmup_frames=self.config.warmup_frames,
        )

    def _configure(self, rs: Any, config: Any) -> None:
        cfg = self.config
        if cfg.serial is not None:
            config.enable_device(cfg.serial)
        config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8, cfg.fps)
        if cfg.depth:
            width, height = cfg.depth_size
            config.enable_stream(rs.stream.depth, width, height, rs.format.z16, cfg.fps)

    def _start(self, rs: Any, pipeline: Any, config: Any) -> Any:
        devices = list_devices()
        serials = [serial for serial, _ in devices]
        if not devices:
            raise CameraError(
                "no RealSense camera found: check the USB 3 cable and port, the udev rules "
                "(librealsense config/99-realsense-libusb.rules) and that no other program "
                "(realsense-viewer) holds the camera"
            )
        if self.config.serial is not None and self.config.serial not in serials:
            raise CameraError(
                f"no RealSense camera with serial {self.config.serial}; connected: "
                + ", ".join(f"{name} {serial}" for serial, name in devices)
            )
        if not config.can_resolve(pipeline):
            raise CameraError(
                f"{self.name} cannot stream {self.config.describe()}; list its modes with "
                "rs-enumerate-devices and change width/height/fps"
            )
        try:
            return pipeline.start(config)
        except RuntimeError as exc:
            raise CameraError(f"{self.name}: cannot start {self.config.describe()}: {exc}") from exc


def list_devices() -> list[tuple[str, str]]:
    """``(serial, name)`` of every connected RealSense camera (empty without one)."""
    rs = import_realsense()
    found = []
    for device in rs.context().query_devices():
        found.append(
            (device.get_info(rs.camera_info.serial_number), device.get_info(rs.camera_info.name))
        )
    return found


class RealSensePlayback(PipelineCamera):
    """A RealSense recording (``.db3``, or legacy ``.bag``) played through the live code path.

    Frames keep the recorded device's intrinsics, depth scale and serial (runtime.md 1.3).

    Args:
        path: The recording.
        repeat: Start over at the end instead of raising ``CameraEndedError``.
        real_time: Pace frames as they were recorded and keep only the newest, like a live
            camera (the SDK may also drop frames at the start); False (default) delivers every
            frame, in order, as fast as ``read`` asks for them.
        filters: Depth post-filters from ``POST_FILTERS``.
        frame_timeout_s: Seconds without a frameset that count as one failure.
        max_failures: Consecutive failures after which ``read`` raises ``CameraError``.
    """

    def __init__(
        self,
        path: Path | str,
        repeat: bool = False,
        real_time: bool = False,
        filters: Sequence[str] = (),
        frame_timeout_s: float = DEFAULT_FRAME_TIMEOUT_S,
        max_failures: int = DEFAULT_MAX_FAILURES,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix not in RECORDING_SUFFIXES:
            raise InputError(
                f"{self.path}: RealSense recordings end in {' or '.join(RECORDING_SUFFIXES)}"
            )
        self.repeat = bool(repeat)
        self.real_time = bool(real_time)
        self._playback: Any = None
        self._resumer: threading.Thread | None = None
        super().__init__(
            name=f"playback:{self.path.name}",
            depth=True,
            filters=filters,
            frame_timeout_s=frame_timeout_s,
            max_failures=max_failures,
            warmup_frames=0,
        )

    def _configure(self, rs: Any, config: Any) -> None:
        if not self.path.is_file():
            raise CameraError(f"recording {self.path} does not exist")
        # The SDK's own repeat pairs the last colour frame with the first depth frame and
        # crashed in pipeline.stop() now and then (2.59.1); _start_over restarts the file instead.
        config.enable_device_from_file(str(self.path), repeat_playback=False)

    def _start(self, rs: Any, pipeline: Any, config: Any) -> Any:
        try:
            # Start paused, with pacing set, on the device the pipeline will open, and resume
            # once the capture thread reads (_streaming). Switching pacing after start lost the
            # first frames or all of a short file in 5 of 8 runs, and starting unpaused let
            # one stream run ahead of the other before both sensors were started (about 1 in
            # 150 starts delivered mismatched or missing first pairs; pyrealsense2 2.59.1).
            player = config.resolve(pipeline).get_device().as_playback()
            player.set_real_time(self.real_time)
            player.pause()
            profile = pipeline.start(config)
            self._playback = profile.get_device().as_playback()
        except RuntimeError as exc:
            raise CameraError(f"cannot play {self.path}: {exc}") from exc
        self._stopped = rs.playback_status.stopped
        return profile

    def _lossless(self) -> bool:
        return not self.real_time

    def _source_ended(self) -> bool:
        return self._playback is not None and self._playback.current_status() == self._stopped

    def _streaming(self) -> None:
        self._resume_player()

    def _resume_player(self) -> None:
        """Let the paused player run; needs a reader (its flush waits for frames to move)."""
        try:
            self._playback.resume()
        except RuntimeError as exc:
            log.warning("%s: resume: %s", self.name, exc)

    def _start_over(self, pipeline: Any) -> bool:
        if not self.repeat:
            return False
        pipeline.stop()
        self._flush_player()
        self._start(self._rs, pipeline, self._rs_config)
        # This thread must keep reading while the player resumes, so resume from another one.
        self._resumer = threading.Thread(target=self._resume_player, daemon=True)
        self._resumer.start()
        return True

    def _flush_player(self) -> None:
        """Wait until the player's own thread has finished stopping (pause() flushes it)."""
        if self._playback is not None:
            self._playback.pause()

    def _before_stop(self) -> None:
        # A resume in progress waits until frames move, so wait for it while they still do.
        if self._resumer is not None:
            self._resumer.join(RESUME_TIMEOUT_S)
            self._resumer = None

    @property
    def finished(self) -> bool:
        """The player has read the whole file (its last frames may still be on their way)."""
        return self._source_ended()

    def _release(self) -> None:
        # Destroying the player while its thread still ran the stop crashed the process now and
        # then ("pure virtual method called", 2.59.1): flush that thread first.
        self._flush_player()
        self._playback = None
        super()._release()


__all__ = [
    "POST_FILTERS",
    "RealSenseCamera",
    "RealSenseConfig",
    "RealSensePlayback",
    "list_devices",
]
