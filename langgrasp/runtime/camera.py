"""One camera interface for every frame source the runtime reads.

Backends (``langgrasp.runtime.cameras``): RealSense live and playback (``.db3`` / ``.bag``), an
image folder or video file (RGB only), and a synthetic scene camera (RGB-D with known
intrinsics). The pick loop, the calibration capture and the benchmarks see only ``Camera`` and
``Frame``.

Frames and units: ``rgb`` is ``(H, W, 3)`` uint8 in RGB order; ``depth_m`` is ``(H, W)`` float32
in metres along the colour camera's optical axis, **aligned to the colour image** (one pixel
grid, the colour stream's intrinsics), 0 where the sensor has no depth. Frame data is always a
copy owned by the ``Frame`` (never a view into an SDK buffer), so frames may be kept.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.errors import LanggraspError


class CameraError(LanggraspError):
    """The camera cannot be opened or stopped delivering; the message says what to check."""


class CameraTimeoutError(CameraError):
    """No new frame arrived within the timeout (cable, USB bandwidth, or the stream stalled)."""


class CameraEndedError(CameraError):
    """A finite source (recording played without repeat, image folder) has no more frames."""


@dataclass
class Frame:
    """One captured frame, data copied out of the source.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        depth_m: ``(H, W)`` float32 depth in metres aligned to ``rgb``; 0 = no depth. None for
            RGB-only sources (the runtime then reports 2D grasps and refuses to move the robot).
        intrinsics: Intrinsics of the colour stream at this resolution (depth is aligned to it),
            None when the source does not know them (plain images or video).
        index: Frame number from the source (monotonic per source, may skip).
        timestamp_s: Source timestamp in seconds (device clock for RealSense, scene time for
            recordings and simulations); only differences are meaningful.
        received_s: ``time.monotonic()`` when the frame was copied out, for latency and age.
        serial: Camera serial number, None when the source has none.
        source: Short description of the source, e.g. ``"realsense:123456"`` or
            ``"playback:scene.db3"``.
        ground_truth: Synthetic scenes only: the rendered ``SceneSample`` (for reports and
            tests); None for real cameras.
    """

    rgb: np.ndarray
    depth_m: np.ndarray | None
    intrinsics: CameraIntrinsics | None
    index: int
    timestamp_s: float
    received_s: float = field(default_factory=time.monotonic)
    serial: str | None = None
    source: str = ""
    ground_truth: Any = None

    @property
    def has_depth(self) -> bool:
        """True when the frame carries a depth image."""
        return self.depth_m is not None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (int(self.rgb.shape[1]), int(self.rgb.shape[0]))

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the frame was received (``time.monotonic()`` clock)."""
        return (time.monotonic() if now is None else now) - self.received_s


@dataclass(frozen=True)
class CameraStatus:
    """What the operator sees about the camera.

    Attributes:
        connected: The source is open.
        degraded: Frames stopped or errors occurred recently; the loop is trying to recover.
        frames: Frames delivered since ``connect``.
        message: Human-readable state or the last error ("ok" when healthy).
    """

    connected: bool
    degraded: bool
    frames: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "connected": self.connected,
            "degraded": self.degraded,
            "frames": self.frames,
            "message": self.message,
        }


class Camera(ABC):
    """A frame source. Use as a context manager, or call ``connect`` and ``close``.

    Backends set ``name`` (a short description used in messages and audit records) and
    ``has_depth`` (whether ``read`` returns depth).
    """

    name: str = "camera"
    has_depth: bool = False

    @abstractmethod
    def connect(self) -> None:
        """Open the source and start streaming.

        Raises:
            CameraError: no device / file, or it cannot stream the configured mode; the message
                names what was asked for and what exists.
        """

    @abstractmethod
    def close(self) -> None:
        """Stop streaming and release the device; safe to call twice or when never connected."""

    @abstractmethod
    def read(self, timeout_s: float = 1.0) -> Frame:
        """The newest frame not returned before, waiting up to ``timeout_s`` for one.

        Raises:
            CameraTimeoutError: no new frame within ``timeout_s``.
            CameraEndedError: a finite source has no more frames.
            CameraError: the source failed (disconnected, or never connected).
        """

    @property
    @abstractmethod
    def is_connected(self) -> bool:
        """True between a successful ``connect`` and ``close``."""

    def status(self) -> CameraStatus:
        """Connection state for status displays; backends add detail."""
        return CameraStatus(self.is_connected, False, 0, "ok" if self.is_connected else "closed")

    def reconnect(self) -> None:
        """Close and open again (after a stall or a USB drop). Raises ``CameraError``."""
        self.close()
        self.connect()

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        """Colour-stream intrinsics once connected (calibration ``FrameSource`` attribute)."""
        return None

    @property
    def serial(self) -> str | None:
        """Device serial number once connected, None when the source has none."""
        return None

    def grab(self) -> np.ndarray:
        """The next frame's RGB image (the calibration capture's ``FrameSource`` protocol).

        Raises:
            StopIteration: a finite source has no more frames (``CameraEndedError``).
        """
        try:
            return self.read().rgb
        except CameraEndedError as exc:
            raise StopIteration(str(exc)) from exc

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
