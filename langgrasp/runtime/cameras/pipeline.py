"""What the live RealSense camera and recording playback share: one pipeline code path.

``PipelineCamera`` runs an ``rs.pipeline``: depth post-filters, ``rs.align`` to colour, the depth
scale read from the device, a background capture thread and the copy-out into ``Frame``s.
``langgrasp.runtime.cameras.realsense`` subclasses it for a connected device and for ``.db3`` /
``.bag`` recordings, so recordings written by ``record_rgbd`` test the code the robot runs
(shared/research/runtime.md 1.4, 7).

Frames and units: ``Frame.rgb`` ``(H, W, 3)`` uint8 RGB; ``Frame.depth_m`` ``(H, W)`` float32
metres along the colour camera's optical axis, aligned to colour (colour intrinsics, colour pixel
grid), 0 = no depth. Raw z16 values are multiplied by the depth scale the device reports after
start; it is 0.001 m on most D400 cameras but 0.0001 m on the D405, so it is never assumed
(runtime.md 1.2, 1.5).

Threading: the capture thread waits on the pipeline, converts each complete frameset to a
``Frame`` (copying the data out at once: holding SDK frames starves the SDK's small frame pool,
runtime.md 1.5) and hands it to ``read`` through a ``FrameBuffer``. A live camera keeps only the
newest frame; a recording played without real-time pacing hands over every frame in order (the
thread waits while ``read`` lags), so playback is frame by frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics, intrinsics_from_realsense_object
from langgrasp.errors import InputError, check_int
from langgrasp.runtime.camera import (
    Camera,
    CameraEndedError,
    CameraError,
    CameraStatus,
    CameraTimeoutError,
    Frame,
)

log = logging.getLogger(__name__)

POST_FILTERS = ("decimation", "spatial", "temporal", "hole_filling")
"""Depth post-filters by name (``rs.<name>_filter``), applied in the order given, before align.

Intel's suggested order is decimation, spatial, temporal, hole_filling. Decimation lowers the
depth resolution, but alignment to colour brings depth back onto the colour grid, so frames keep
the colour stream's size and intrinsics (read from the aligned colour frame's profile).
"""

COLOUR_CHANNELS = {
    "rgb8": slice(None),
    "bgr8": slice(None, None, -1),
    "rgba8": slice(0, 3),
    "bgra8": slice(2, None, -1),
}
"""Colour formats the cameras convert, with the channel slice that gives RGB."""

DEFAULT_FRAME_TIMEOUT_S = 5.0
"""No frameset for this long counts as one failure; the SDK's default wait is 5000 ms
(runtime.md 1.5)."""

DEFAULT_MAX_FAILURES = 10
"""Consecutive failures before the camera reports an error; LeRobot's RealSense camera gives up
after 10 (runtime.md 6)."""

POLL_S = 0.1
"""Longest single wait of the capture thread, so that ``close`` and end of file are noticed fast."""

JOIN_TIMEOUT_S = 2.0
"""How long ``close`` waits for the capture thread to finish."""

PAIR_TOLERANCE_PERIODS = 1.0
"""Colour and depth further apart than this many frame periods are not one frameset (the
syncer pairs frames within half a period)."""

PLAYBACK_BUFFER_FRAMES = 4
"""Frames a recording played frame by frame may run ahead of ``read``: slack for the player's
resume, which waits until a frame or two have moved on."""

MS_PER_S = 1000.0


def import_realsense() -> Any:
    """The ``pyrealsense2`` module, or a ``CameraError`` that says how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraError(
            f"pyrealsense2 cannot be imported ({exc}); install it with "
            "pip install 'langgrasp[runtime]' (on Linux it also needs libusb-1.0; "
            "aarch64 wheels exist for Python 3.9, 3.10 and 3.12 only)"
        ) from exc
    return rs


def check_filters(filters: Sequence[str], has_depth: bool) -> tuple[str, ...]:
    """``filters`` as a tuple of ``POST_FILTERS`` names; ``InputError`` for unknown ones."""
    filters = (filters,) if isinstance(filters, str) else tuple(filters)
    unknown = [f for f in filters if f not in POST_FILTERS]
    if unknown:
        raise InputError(
            f"unknown depth post-filter(s) {', '.join(map(repr, unknown))}; "
            f"use any of {', '.join(POST_FILTERS)}"
        )
    if filters and not has_depth:
        raise InputError("depth post-filters need the depth stream; set depth = true or drop them")
    return filters


def check_positive(name: str, value: float) -> None:
    """``InputError`` unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")


class FrameBuffer:
    """Hand-off from the capture thread to ``read``; also carries the end or an error.

    ``put(wait=False)`` drops the oldest unread frame when ``capacity`` are waiting (live, with
    capacity 1: only the newest counts). ``put(wait=True)`` waits until there is room (playback:
    every frame, in order).
    """

    def __init__(self, name: str, capacity: int = 1) -> None:
        self.name = name
        self.capacity = capacity
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._error: CameraError | None = None
        self._ended = False
        self._closed = False

    def put(self, frame: Frame, wait: bool) -> None:
        """Add ``frame``; dropped once the buffer is closed (the camera is closing)."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: len(self._frames) < self.capacity or self._closed)
            if self._closed:
                return
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
            self._frames.append(frame)
            self._cond.notify_all()

    def end(self) -> None:
        """Mark the source as finished: ``take`` raises ``CameraEndedError`` once it is empty."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, error: CameraError) -> None:
        """Make ``take`` raise ``error`` once the buffer is empty."""
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        """Wake a waiting ``put``; from now on frames are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def error(self) -> CameraError | None:
        """The error given to ``fail``, if any."""
        return self._error

    def take(self, timeout_s: float) -> Frame:
        """The oldest unread frame, or the end / error, waiting up to ``timeout_s`` seconds."""
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._frames) or self._ended or self._error or self._closed,
                timeout=max(0.0, timeout_s),
            )
            if self._frames:
                frame = self._frames.popleft()
                self._cond.notify_all()
                return frame
            if self._closed:
                raise CameraError(f"{self.name} was closed while waiting for a frame")
            if self._error is not None:
                raise CameraError(str(self._error))
            if self._ended:
                raise CameraEndedError(f"{self.name}: the recording has no more frames")
            raise CameraTimeoutError(f"{self.name}: no new frame within {timeout_s:g} s")


class PipelineCamera(Camera):
    """The code live cameras and recordings share: pipeline, filters, align, capture thread.

    Subclasses say where frames come from (``_configure``, ``_start``), how the source behaves
    (``_lossless``, ``_source_ended``, ``_start_over``) and what to do around streaming
    (``_streaming``, ``_before_stop``, ``_release``).
    """

    def __init__(
        self,
        name: str,
        depth: bool,
        filters: Sequence[str],
        frame_timeout_s: float,
        max_failures: int,
        warmup_frames: int,
    ) -> None:
        self.name = name
        self.has_depth = depth
        self._want_depth = depth
        self._filter_names = check_filters(filters, depth)
        check_positive("frame_timeout_s", frame_timeout_s)
        self._frame_timeout_s = float(frame_timeout_s)
        self._max_failures = check_int("max_failures", max_failures, 1)
        self._warmup_frames = check_int("warmup_frames", warmup_frames, 0)
        self._lock = threading.Lock()
        self._align: Any = None
        self._filters: list[Any] = []
        self._rs_config: Any = None
        self._pipeline: Any = None
        self._thread: threading.Thread | None = None
        self._buffer: FrameBuffer | None = None
        self._stop = threading.Event()
        self._reset_state()

    def _reset_state(self) -> None:
        self._failures = 0
        self._frames = 0
        self._message = "closed"
        self._intrinsics: CameraIntrinsics | None = None
        self._serial: str | None = None
        self.depth_scale_m: float | None = None
        """Metres per raw z16 unit, read from the device after start (None before)."""
        self._last_number = -1
        self._index_offset = 0

    # Source hooks -------------------------------------------------------------------------------

    def _configure(self, rs: Any, config: Any) -> None:
        """Select the device or file and the streams on ``config`` (an ``rs.config``)."""
        raise NotImplementedError

    def _start(self, rs: Any, pipeline: Any, config: Any) -> Any:
        """Start ``pipeline`` and return its ``rs.pipeline_profile``; raise ``CameraError``."""
        raise NotImplementedError

    def _lossless(self) -> bool:
        """Hand every frame to ``read`` in order (True) or only the newest one (False)."""
        return False

    def _source_ended(self) -> bool:
        """A finite source has delivered its last frame."""
        return False

    def _start_over(self, pipeline: Any) -> bool:
        """After the source ended: restart it and return True, or return False to end."""
        return False

    def _streaming(self) -> None:
        """Runs once the capture thread is consuming frames."""

    def _before_stop(self) -> None:
        """Runs in ``close`` while the capture thread still takes (and drops) frames."""

    def _release(self) -> None:
        """Drop the references to SDK objects after the pipeline stopped."""
        self._align = None
        self._filters = []
        self._rs_config = None

    # Camera interface ---------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True between a successful ``connect`` and ``close``."""
        return self._pipeline is not None

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        """Colour-stream intrinsics (depth is aligned to colour), None before ``connect``."""
        return self._intrinsics

    @property
    def serial(self) -> str | None:
        """Serial number the device (or the recorded device) reports."""
        return self._serial

    def connect(self) -> None:
        """Start the pipeline, read intrinsics and depth scale, warm up, start the capture thread.

        Does nothing when already connected.

        Raises:
            CameraError: no device or file, an unsupported mode or colour format, a device that
                reports no depth scale, or no frames during warm-up.
        """
        if self.is_connected:
            return
        rs = import_realsense()
        pipeline, config = rs.pipeline(), rs.config()
        self._reset_state()
        self._configure(rs, config)
        self._rs, self._rs_config = rs, config
        try:
            profile = self._start(rs, pipeline, config)
        except BaseException:
            self._release()
            raise
        try:
            self._setup(rs, profile)
            self._warm_up(pipeline)
        except BaseException:
            pipeline.stop()
            self._release()
            raise
        self._pipeline = pipeline
        self._buffer = FrameBuffer(self.name, PLAYBACK_BUFFER_FRAMES if self._lossless() else 1)
        self._stop = threading.Event()
        self._message = "ok"
        self._thread = threading.Thread(
            target=self._capture,
            args=(pipeline, self._buffer, self._stop),
            name=f"camera-{self.name}",
            daemon=True,
        )
        self._thread.start()
        try:
            self._streaming()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the capture thread and the pipeline; safe to call twice or before ``connect``."""
        if self._buffer is not None:
            self._buffer.close()  # the capture thread now drops frames instead of waiting
        self._before_stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning(
                    "%s: capture thread did not stop within %s s", self.name, JOIN_TIMEOUT_S
                )
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError as exc:  # already stopped by the SDK (device lost)
                log.debug("%s: pipeline.stop: %s", self.name, exc)
        # Release SDK objects here, in order, not whenever this camera is garbage collected:
        # a config destroyed later, while another pipeline played the same file, crashed.
        self._release()
        self._pipeline = self._thread = self._buffer = None
        with self._lock:
            self._message = "closed"

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The newest frame not returned before (every frame in order for paced-off playback).

        Args:
            timeout_s: Seconds to wait for a new frame.

        Raises:
            CameraTimeoutError: no new frame within ``timeout_s``.
            CameraEndedError: a recording played without repeat has no more frames.
            CameraError: not connected, or ``max_failures`` consecutive failures (call
                ``reconnect``).
        """
        buffer = self._buffer
        if buffer is None:
            raise CameraError(f"{self.name} is not connected; call connect() first")
        frame = buffer.take(timeout_s)
        with self._lock:
            self._frames += 1
        return frame

    def status(self) -> CameraStatus:
        """Connection state; degraded while failures are being counted or after giving up."""
        with self._lock:
            failed = self._buffer is not None and self._buffer.error is not None
            return CameraStatus(
                connected=self.is_connected,
                degraded=self.is_connected and (self._failures > 0 or failed),
                frames=self._frames,
                message=self._message,
            )

    # Start-up -----------------------------------------------------------------------------------

    def _setup(self, rs: Any, profile: Any) -> None:
        """Read streams, intrinsics, depth scale and serial from a started pipeline."""
        streams = {s.stream_type(): s for s in profile.get_streams()}
        colour = streams.get(rs.stream.color)
        if colour is None:
            raise CameraError(f"{self.name} has no colour stream")
        self._channels = COLOUR_CHANNELS.get(colour.format().name)
        if self._channels is None:
            raise CameraError(
                f"{self.name}: colour format {colour.format().name} is not supported; "
                f"use one of {', '.join(COLOUR_CHANNELS)}"
            )
        try:
            self._intrinsics = intrinsics_from_realsense_object(
                colour.as_video_stream_profile().get_intrinsics()
            )
        except (InputError, RuntimeError) as exc:
            raise CameraError(f"{self.name}: unusable colour intrinsics ({exc})") from exc
        device = profile.get_device()
        if device.supports(rs.camera_info.serial_number):
            self._serial = device.get_info(rs.camera_info.serial_number)
        self.has_depth = self._want_depth and rs.stream.depth in streams
        if self._want_depth and not self.has_depth:
            if self._filter_names:
                raise CameraError(f"{self.name} has no depth stream for the post-filters")
            log.warning("%s has no depth stream; frames will be RGB only", self.name)
        self._pair_tolerance_ms = PAIR_TOLERANCE_PERIODS * MS_PER_S / colour.fps()
        self._align = None
        if self.has_depth and self._needs_align(streams[rs.stream.depth], colour):
            self._align = rs.align(rs.stream.color)
        self._filters = [getattr(rs, f"{name}_filter")() for name in self._filter_names]
        if self.has_depth:
            self.depth_scale_m = self._read_depth_scale(device)

    def _needs_align(self, depth: Any, colour: Any) -> bool:
        """False when depth is already on the colour grid (e.g. ``record_rgbd`` recordings).

        That is: same intrinsics, identity extrinsics and no decimation. ``rs.align`` is not an
        identity there: it paints each depth pixel over a 2x2 footprint and keeps the nearest
        depth, which grows foreground objects by up to a pixel.
        """
        if "decimation" in self._filter_names:
            return True
        depth_intr = depth.as_video_stream_profile().get_intrinsics()
        colour_intr = colour.as_video_stream_profile().get_intrinsics()
        fields = ("width", "height", "fx", "fy", "ppx", "ppy", "model", "coeffs")
        if any(getattr(depth_intr, f) != getattr(colour_intr, f) for f in fields):
            return True
        try:
            extrinsics = depth.get_extrinsics_to(colour)
        except RuntimeError:  # none recorded: let align use what the SDK assumes
            return True
        identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        return tuple(extrinsics.rotation) != identity or any(extrinsics.translation)

    def _read_depth_scale(self, device: Any) -> float:
        """Metres per z16 unit, read after start (it read 0 before streaming in old SDKs, 1.5)."""
        try:
            scale = float(device.first_depth_sensor().get_depth_scale())
        except RuntimeError as exc:
            raise CameraError(f"{self.name}: cannot read the depth scale ({exc})") from exc
        if not scale > 0:
            raise CameraError(f"{self.name} reports depth scale {scale}; expected > 0 m per unit")
        return scale

    def _warm_up(self, pipeline: Any) -> None:
        timeout_ms = int(self._frame_timeout_s * MS_PER_S)
        for done in range(self._warmup_frames):
            try:
                pipeline.wait_for_frames(timeout_ms)
            except RuntimeError as exc:
                raise CameraError(
                    f"{self.name} started but delivered {done} of {self._warmup_frames} warm-up "
                    f"framesets ({exc}); check the USB 3 connection and bandwidth"
                ) from exc

    # Capture thread -----------------------------------------------------------------------------

    def _capture(self, pipeline: Any, buffer: FrameBuffer, stop: threading.Event) -> None:
        try:
            self._capture_loop(pipeline, buffer, stop)
        except Exception as exc:  # never die silently: read() must see it
            log.exception("%s: capture thread failed", self.name)
            buffer.fail(CameraError(f"{self.name}: capture thread failed ({exc!r}); reconnect"))

    def _capture_loop(self, pipeline: Any, buffer: FrameBuffer, stop: threading.Event) -> None:
        poll_ms = int(POLL_S * MS_PER_S)
        last_frame_s = time.monotonic()
        idle_at_end = 0
        while not stop.is_set():
            try:
                ok, frameset = pipeline.try_wait_for_frames(poll_ms)
                frame = self._to_frame(frameset) if ok else None
                del frameset  # release the SDK frame at once (runtime.md 1.5)
            except (RuntimeError, CameraError) as exc:
                if self._failed(buffer, f"capture error: {exc}"):
                    return
                stop.wait(POLL_S)
                continue
            if frame is not None:
                last_frame_s, idle_at_end = time.monotonic(), 0
                self._healthy()
                buffer.put(frame, wait=self._lossless())
            elif not ok and self._source_ended():
                # The player reports "stopped" while its last frames are still queued, so only a
                # second empty poll after the stop means that the file is done.
                idle_at_end += 1
                if idle_at_end >= 2:
                    if not self._start_over(pipeline):
                        buffer.end()
                        return
                    idle_at_end = 0
            elif time.monotonic() - last_frame_s >= self._frame_timeout_s:
                last_frame_s = time.monotonic()
                if self._failed(buffer, f"no frameset for {self._frame_timeout_s:g} s"):
                    return

    def _healthy(self) -> None:
        with self._lock:
            if self._failures:
                log.info("%s: frames again after %d failure(s)", self.name, self._failures)
            self._failures, self._message = 0, "ok"

    def _failed(self, buffer: FrameBuffer, reason: str) -> bool:
        """Count one failure; True (and ``buffer`` failed) when it is one too many."""
        with self._lock:
            self._failures += 1
            self._message = f"{reason} ({self._failures} of {self._max_failures} failures)"
            given_up = self._failures >= self._max_failures
        log.warning("%s: %s", self.name, self._message)
        if given_up:
            buffer.fail(
                CameraError(
                    f"{self.name} stopped delivering: {self._max_failures} failures in a row, "
                    f"last: {reason}; check the cable and USB 3 port, then reconnect"
                )
            )
        return given_up

    def _is_pair(self, frameset: Any) -> bool:
        """Colour is there, and depth too when streamed, both from about the same moment.

        The syncer can emit colour alone (runtime.md 1.4), and it paired frames of different
        moments when one stream ran ahead: at playback start, and when the SDK repeated a
        recording (pyrealsense2 2.59.1).
        """
        colour = frameset.get_color_frame()
        if not colour:
            return False
        if not self.has_depth:
            return True
        depth = frameset.get_depth_frame()
        if not depth:
            return False
        if colour.get_frame_timestamp_domain() != depth.get_frame_timestamp_domain():
            return True  # not comparable; trust the syncer
        return abs(colour.get_timestamp() - depth.get_timestamp()) <= self._pair_tolerance_ms

    def _to_frame(self, frameset: Any) -> Frame | None:
        """Filter, align and copy out one frameset; None for an incomplete or mismatched one."""
        if not self._is_pair(frameset):
            return None
        for post_filter in self._filters:
            frameset = post_filter.process(frameset).as_frameset()
        if self._align is not None:
            frameset = self._align.process(frameset)
        colour = frameset.get_color_frame()
        depth = frameset.get_depth_frame() if self.has_depth else None
        if not colour or (self.has_depth and not depth):
            return None
        rgb = np.asanyarray(colour.get_data())[..., self._channels].copy()
        depth_m = None
        if depth:
            raw = np.asanyarray(depth.get_data())
            depth_m = np.multiply(raw, np.float32(self.depth_scale_m), dtype=np.float32)
        return Frame(
            rgb=rgb,
            depth_m=depth_m,
            intrinsics=self._frame_intrinsics(colour, rgb.shape),
            index=self._monotonic_index(int(colour.get_frame_number())),
            timestamp_s=float(frameset.get_timestamp()) / MS_PER_S,
            serial=self._serial,
            source=self.name,
        )

    def _frame_intrinsics(self, colour: Any, shape: tuple[int, ...]) -> CameraIntrinsics:
        known = self._intrinsics
        if known is None or (known.height, known.width) != tuple(shape[:2]):
            known = intrinsics_from_realsense_object(
                colour.profile.as_video_stream_profile().get_intrinsics()
            )
            self._intrinsics = known
        return known

    def _monotonic_index(self, number: int) -> int:
        """Source frame number, kept increasing when a repeated recording starts over."""
        if number + self._index_offset <= self._last_number:
            self._index_offset = self._last_number + 1 - number
        self._last_number = number + self._index_offset
        return self._last_number
