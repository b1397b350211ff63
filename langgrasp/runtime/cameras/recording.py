"""Write RGB-D frames to a RealSense ``.db3`` recording without a camera.

``record_rgbd`` feeds the frames through a ``pyrealsense2.software_device`` wrapped in an
``rs.recorder`` (the verified recipe of shared/research/runtime.md 1.4). The file then plays back
through ``RealSensePlayback``, i.e. the same ``rs.pipeline`` + ``rs.align`` code the live camera
uses, so tests, the end-to-end test, the demo and the benchmarks exercise the real SDK path.

Frames and units: colour is recorded as rgb8, depth as z16 in ``depth_unit_m`` metres per unit
(the ``depth_units`` option the playback device reports as its depth scale). Depth is taken to be
aligned to colour already, so both streams get the same intrinsics and identity extrinsics.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.errors import InputError, check_int
from langgrasp.runtime.camera import CameraError
from langgrasp.runtime.cameras.pipeline import import_realsense

Z16_MAX = np.iinfo(np.uint16).max
"""Largest raw depth value of the z16 format (0 means no depth)."""

DEPTH_BYTES_PER_PIXEL = 2  # z16
COLOUR_BYTES_PER_PIXEL = 3  # rgb8
MS_PER_S = 1000.0
COEFFICIENTS_PER_MODEL = 5  # rs.intrinsics.coeffs always holds 5 values (runtime.md 1.2)
IDENTITY_ROTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # rs.extrinsics: column-major 3x3

DELIVERY_TIMEOUT_S = 5.0
"""How long to wait for the software sensors to hand every pushed frame to the recorder."""


def record_rgbd(
    path: Path | str,
    frames: Sequence[tuple[np.ndarray, np.ndarray]],
    intrinsics: CameraIntrinsics,
    depth_unit_m: float = 0.001,
    serial: str = "SYN0001",
    fps: int = 30,
    depth_intrinsics: CameraIntrinsics | None = None,
    paced: bool = False,
) -> Path:
    """Record aligned RGB-D frames into a RealSense ``.db3`` file (overwritten if it exists).

    Args:
        path: Output file; must end in ``.db3`` (pyrealsense2 >= 2.58 records nothing else,
            runtime.md 1.3). Missing parent folders are created.
        frames: ``(rgb, depth_m)`` pairs: ``rgb`` ``(H, W, 3)`` uint8 RGB, ``depth_m`` ``(H, W)``
            depth in metres along the optical axis, 0 = no depth, already aligned to ``rgb``.
        intrinsics: Intrinsics of both streams (``H``, ``W`` must match the images).
        depth_unit_m: Metres per z16 unit, the recorded depth scale: 0.001 for most D400
            cameras, 0.0001 for the D405 (runtime.md 1.2). Depth is rounded to this step;
            depth below half a step becomes 0 (no depth).
        serial: Serial number the recorded device reports.
        fps: Nominal frame rate; frame ``k`` is stamped ``k / fps`` seconds.
        depth_intrinsics: Intrinsics of a depth stream that is *not* aligned yet (its own size;
            identity extrinsics to colour), so that playback has to run ``rs.align``; None
            (default): depth is aligned and uses ``intrinsics``.
        paced: Push frames ``1 / fps`` seconds apart (recording then takes ``len(frames) / fps``
            seconds). Real-time playback paces by the time frames were *recorded*, not by their
            timestamps, so unpaced files play as one burst there (pyrealsense2 2.59.1); playback
            with ``real_time=False`` does not care.

    Returns:
        The path of the finished (flushed and closed) recording.

    Raises:
        InputError: A wrong path suffix, no frames, images of the wrong shape or dtype, negative
            or non-finite depth, or depth beyond the z16 range at this unit.
    """
    path = Path(path)
    if path.suffix != ".db3":
        raise InputError(
            f"RealSense recordings must end in .db3 (pyrealsense2 >= 2.58), got {path}"
        )
    if not depth_unit_m > 0:
        raise InputError(f"depth_unit_m must be a positive number of metres, got {depth_unit_m}")
    check_int("fps", fps, 1)
    if len(frames) == 0:
        raise InputError("record_rgbd needs at least one (rgb, depth_m) frame")
    depth_intrinsics = intrinsics if depth_intrinsics is None else depth_intrinsics
    raw = [
        _raw_frame(i, rgb, depth, intrinsics, depth_intrinsics, depth_unit_m)
        for i, (rgb, depth) in enumerate(frames)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _write(path, raw, (intrinsics, depth_intrinsics), depth_unit_m, serial, fps, paced)
    return path


def _raw_frame(
    index: int,
    rgb: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    depth_intrinsics: CameraIntrinsics,
    unit: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Checked, contiguous ``(rgb uint8, depth uint16)`` of frame ``index``."""
    size = (intrinsics.height, intrinsics.width)
    depth_size = (depth_intrinsics.height, depth_intrinsics.width)
    rgb = np.asarray(rgb)
    depth = np.asarray(depth_m)
    if rgb.dtype != np.uint8 or rgb.shape != (*size, 3):
        raise InputError(
            f"frame {index}: rgb must be uint8 of shape {(*size, 3)} (the intrinsics' size), "
            f"got {rgb.dtype} {rgb.shape}"
        )
    if depth.shape != depth_size or not np.issubdtype(depth.dtype, np.floating):
        raise InputError(
            f"frame {index}: depth_m must be float metres of shape {depth_size}, got "
            f"{depth.dtype} {depth.shape}"
        )
    if not np.all(np.isfinite(depth)) or np.any(depth < 0):
        raise InputError(f"frame {index}: depth_m must be finite and >= 0 (0 = no depth)")
    units = np.rint(depth / unit)
    if units.max(initial=0) > Z16_MAX:
        raise InputError(
            f"frame {index}: depth up to {depth.max():.3f} m does not fit z16 at {unit} m per "
            f"unit (at most {Z16_MAX * unit:.3f} m); use a larger depth_unit_m"
        )
    return np.ascontiguousarray(rgb), units.astype(np.uint16)


def _rs_intrinsics(rs: Any, intrinsics: CameraIntrinsics) -> Any:
    out = rs.intrinsics()
    out.width, out.height = intrinsics.width, intrinsics.height
    out.fx, out.fy, out.ppx, out.ppy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    out.model = getattr(rs.distortion, intrinsics.model)
    coeffs = list(intrinsics.coeffs[:COEFFICIENTS_PER_MODEL])
    out.coeffs = coeffs + [0.0] * (COEFFICIENTS_PER_MODEL - len(coeffs))
    return out


def _video_stream(rs: Any, kind: Any, uid: int, fmt: Any, bpp: int, intr: Any, fps: int) -> Any:
    stream = rs.video_stream()
    stream.type, stream.index, stream.uid = kind, 0, uid
    stream.width, stream.height, stream.fps = intr.width, intr.height, fps
    stream.bpp, stream.fmt, stream.intrinsics = bpp, fmt, intr
    return stream


class _Counter:
    """Frame sink of the software sensors: counts deliveries and releases each frame at once."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self._done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, frame: Any) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.expected:
                self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)


def _write(
    path: Path,
    raw: list[tuple[np.ndarray, np.ndarray]],
    intrinsics: tuple[CameraIntrinsics, CameraIntrinsics],
    unit: float,
    serial: str,
    fps: int,
    paced: bool,
) -> None:
    """Push ``raw`` frames through a recorded software device (runtime.md 1.4)."""
    rs = import_realsense()
    device = rs.software_device()
    device.register_info(rs.camera_info.serial_number, serial)
    depth_sensor, colour_sensor = device.add_sensor("Depth"), device.add_sensor("Color")
    colour_intr, depth_intr = (_rs_intrinsics(rs, i) for i in intrinsics)
    depth_profile = depth_sensor.add_video_stream(
        _video_stream(
            rs, rs.stream.depth, 0, rs.format.z16, DEPTH_BYTES_PER_PIXEL, depth_intr, fps
        ),
        True,
    ).as_video_stream_profile()
    colour_profile = colour_sensor.add_video_stream(
        _video_stream(
            rs, rs.stream.color, 1, rs.format.rgb8, COLOUR_BYTES_PER_PIXEL, colour_intr, fps
        ),
        True,
    ).as_video_stream_profile()
    # Identity extrinsics: depth is on the colour grid already. Recorded so that playback can
    # tell (without them the file has none and get_extrinsics_to fails).
    extrinsics = rs.extrinsics()
    extrinsics.rotation = list(IDENTITY_ROTATION)
    extrinsics.translation = [0.0, 0.0, 0.0]
    depth_profile.register_extrinsics_to(colour_profile, extrinsics)
    depth_sensor.add_read_only_option(rs.option.depth_units, unit)
    device.create_matcher(rs.matchers.dlr_c)

    recorder = rs.recorder(str(path), device)
    # A plain callback instead of a syncer: the recorder stores every sensor frame itself, and a
    # syncer would only add the partial-frameset behaviour of runtime.md 1.4.
    sink = _Counter(2 * len(raw))
    sensors = ((depth_sensor, depth_profile), (colour_sensor, colour_profile))
    for sensor, profile in sensors:
        sensor.open(profile)
        sensor.start(sink)
    try:
        start_s = time.monotonic()
        for number, (rgb, depth) in enumerate(raw):
            stamp_ms = number * MS_PER_S / fps
            if paced:
                time.sleep(max(0.0, start_s + stamp_ms / MS_PER_S - time.monotonic()))
            # Depth before colour, as a camera delivers them: files written colour first lost
            # their first pair in 12 of 30 playbacks (pyrealsense2 2.59.1), depth first in 0.
            for sensor, profile, pixels, bpp in (
                (depth_sensor, depth_profile, depth, DEPTH_BYTES_PER_PIXEL),
                (colour_sensor, colour_profile, rgb, COLOUR_BYTES_PER_PIXEL),
            ):
                frame = rs.software_video_frame()
                frame.pixels = pixels  # copied by the binding (runtime.md 1.4)
                frame.stride, frame.bpp = pixels.shape[1] * bpp, bpp
                frame.timestamp, frame.frame_number = stamp_ms, number
                frame.domain = rs.timestamp_domain.hardware_clock
                frame.profile = profile
                sensor.on_video_frame(frame)
        if not sink.wait(DELIVERY_TIMEOUT_S):
            raise CameraError(
                f"the software device delivered {sink.count} of {sink.expected} frames to the "
                f"recorder within {DELIVERY_TIMEOUT_S} s; {path} is incomplete"
            )
    finally:
        for sensor, _ in sensors:
            sensor.stop()
            sensor.close()
        # The recorder writes the file when it is destroyed: drop every reference now.
        recorder.pause()
        del recorder, sensors, depth_sensor, colour_sensor, depth_profile, colour_profile, device
        gc.collect()
