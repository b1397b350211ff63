"""RGB-only frame sources: a folder of images and a video file.

Neither has depth (``has_depth`` is False, ``Frame.depth_m`` is None): the runtime then reports
2D grasps and refuses to move the robot. Intrinsics are optional and only passed through.

Frames: ``Frame.rgb`` ``(H, W, 3)`` uint8 RGB (OpenCV's BGR is converted); ``Frame.index`` counts
from 0 and keeps increasing when a looping source starts over; ``Frame.timestamp_s`` is the
video position in seconds, or ``time.monotonic()`` at the read for image folders.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.runtime.camera import Camera, CameraEndedError, CameraError, CameraStatus, Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files an ``ImageFolderCamera`` reads (case-insensitive)."""

MS_PER_S = 1000.0


class _FileCamera(Camera):
    """What the folder and video sources share: state, status, size checks, frame building."""

    has_depth = False

    def __init__(self, name: str, loop: bool, intrinsics: CameraIntrinsics | None) -> None:
        self.name = name
        self.loop = bool(loop)
        self._intrinsics = intrinsics
        self._connected = False
        self._frames = 0
        self._message = "closed"

    @property
    def is_connected(self) -> bool:
        """True between a successful ``connect`` and ``close``."""
        return self._connected

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        """The intrinsics given at construction (None: unknown)."""
        return self._intrinsics

    def status(self) -> CameraStatus:
        """Connection state, frames delivered, and the last skipped input if any."""
        return CameraStatus(self._connected, False, self._frames, self._message)

    def _require_connected(self) -> None:
        if not self._connected:
            raise CameraError(f"{self.name} is not connected; call connect() first")

    def _size_problem(self, rgb: np.ndarray) -> str | None:
        """Why an image does not fit the intrinsics, or None."""
        if self._intrinsics is None:
            return None
        expected = (self._intrinsics.height, self._intrinsics.width)
        if rgb.shape[:2] == expected:
            return None
        return f"is {rgb.shape[1]}x{rgb.shape[0]}, the intrinsics are {expected[1]}x{expected[0]}"

    def _frame(self, bgr: np.ndarray, timestamp_s: float) -> Frame:
        frame = Frame(
            rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            depth_m=None,
            intrinsics=self._intrinsics,
            index=self._frames,
            timestamp_s=timestamp_s,
            source=self.name,
        )
        self._frames += 1
        return frame


class ImageFolderCamera(_FileCamera):
    """Images of a folder (``IMAGE_SUFFIXES``) in sorted file-name order, one per ``read``.

    An image that cannot be decoded (or does not match the intrinsics) is skipped with a logged
    warning; ``read`` raises ``CameraError`` only when no image of a whole pass is usable.

    Args:
        folder: The folder (not searched recursively).
        loop: Start over after the last image instead of raising ``CameraEndedError``.
        intrinsics: Intrinsics of the camera that took the images, if known.
    """

    def __init__(
        self, folder: Path | str, loop: bool = False, intrinsics: CameraIntrinsics | None = None
    ) -> None:
        self.folder = Path(folder)
        super().__init__(f"folder:{self.folder.name}", loop, intrinsics)
        self._files: list[Path] = []
        self._next = 0
        self._good_in_pass = 0

    def connect(self) -> None:
        """List the images.

        Raises:
            CameraError: the folder does not exist or holds no image file.
        """
        if self._connected:
            return
        if not self.folder.is_dir():
            raise CameraError(f"image folder {self.folder} does not exist")
        self._files = sorted(
            p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self._files:
            raise CameraError(
                f"image folder {self.folder} holds no {'/'.join(IMAGE_SUFFIXES)} files"
            )
        self._next = self._good_in_pass = self._frames = 0
        self._connected, self._message = True, "ok"

    def close(self) -> None:
        """Forget the file list; safe to call twice."""
        self._connected, self._message = False, "closed"

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The next readable image (``timeout_s`` is unused: files never keep one waiting).

        Raises:
            CameraEndedError: every image was read and ``loop`` is off.
            CameraError: not connected, or no image in the folder can be read.
        """
        self._require_connected()
        while True:
            if self._next == len(self._files):
                if self._good_in_pass == 0:
                    raise CameraError(
                        f"none of the {len(self._files)} images in {self.folder} can be used "
                        f"(last problem: {self._message})"
                    )
                if not self.loop:
                    raise CameraEndedError(f"{self.name}: all {len(self._files)} images read")
                self._next = self._good_in_pass = 0
            path = self._files[self._next]
            self._next += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            problem = "cannot be decoded" if bgr is None else self._size_problem(bgr)
            if problem is None:
                self._good_in_pass += 1
                return self._frame(bgr, time.monotonic())
            self._message = f"skipped {path.name}: it {problem}"
            log.warning("%s: %s", self.name, self._message)


class VideoCamera(_FileCamera):
    """Frames of a video file (anything ``cv2.VideoCapture`` decodes), one per ``read``.

    Args:
        path: The video file.
        loop: Start over after the last frame instead of raising ``CameraEndedError``.
        intrinsics: Intrinsics of the camera that took the video, if known.
    """

    def __init__(
        self, path: Path | str, loop: bool = False, intrinsics: CameraIntrinsics | None = None
    ) -> None:
        self.path = Path(path)
        super().__init__(f"video:{self.path.name}", loop, intrinsics)
        self._capture: Any = None
        self._loop_offset_s = 0.0
        self._position_s = 0.0

    def connect(self) -> None:
        """Open the file and check that its first frame decodes.

        Raises:
            CameraError: the file does not exist, cannot be opened, or its first frame cannot be
                decoded (not a video, or a codec OpenCV lacks).
        """
        if self._connected:
            return
        if not self.path.is_file():
            raise CameraError(f"video file {self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened() or not capture.grab():
            capture.release()
            raise CameraError(
                f"cannot decode {self.path}: not a video, or its codec is missing from OpenCV"
            )
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._capture, self._frames = capture, 0
        self._loop_offset_s = self._position_s = 0.0
        self._connected, self._message = True, "ok"

    def close(self) -> None:
        """Release the file; safe to call twice."""
        if self._capture is not None:
            self._capture.release()
        self._capture = None
        self._connected, self._message = False, "closed"

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The next frame (``timeout_s`` is unused: decoding does not wait for a device).

        Raises:
            CameraEndedError: the video ended and ``loop`` is off.
            CameraError: not connected.
        """
        self._require_connected()
        ok, bgr = self._capture.read()
        if not ok and self.loop and self._frames > 0:
            # Continue the clock one frame period after the last frame.
            fps = self._capture.get(cv2.CAP_PROP_FPS)
            self._loop_offset_s += self._position_s + (1.0 / fps if fps > 0 else 0.0)
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok:
            raise CameraEndedError(f"{self.name}: the video has no more frames")
        # After a read, the position is the timestamp of the frame just decoded.
        self._position_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / MS_PER_S
        return self._frame(bgr, self._loop_offset_s + self._position_s)
