"""The capture loop: one frame and one arm pose per key press, written to a capture folder.

``run_capture`` works with any frame source and pose source:

* ``FrameSource.grab()`` returns the current colour frame, ``(H, W, 3)`` uint8 RGB. A source may
  also have ``intrinsics`` (a ``CameraIntrinsics``, e.g. a RealSense's factory values) and
  ``serial`` attributes; they are stored in ``camera.json``.
* ``PoseSource.read_pose()`` returns the arm pose ``T_base_ee`` (4x4, metres) or None when the
  arm cannot report it, in which case the technician types it (``captures.parse_typed_pose``).

The technician presses Enter to capture and types ``q`` (or ends the input) to finish. Every
capture is written at once (image first, then ``poses.json`` atomically), so an interrupted
session keeps what it captured and can be continued into the same folder.

Sources available now: ``ImageFolderFrames`` (a folder of images), ``TypedPoses`` and the
simulated arm ``synthetic.SyntheticRig``. The RealSense and robot-controller sources come with
the runtime's device backends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

import numpy as np

from langgrasp.calibration.board import BoardConfig, detect_board, legacy_hint
from langgrasp.calibration.capture_folder import (
    POSES_FILE,
    TYPED_POSE_HELP,
    Capture,
    parse_typed_pose,
    read_poses,
    write_camera_info,
    write_poses,
)
from langgrasp.calibration.storage import list_images, read_image, write_image
from langgrasp.calibration.transforms import as_pose_matrix
from langgrasp.errors import InputError

QUIT_WORDS = ("q", "quit", "exit", "done")


@runtime_checkable
class FrameSource(Protocol):
    """Anything that returns the current camera frame."""

    def grab(self) -> np.ndarray:
        """The current frame, ``(H, W, 3)`` uint8 RGB. Raises ``StopIteration`` when exhausted."""
        ...


@runtime_checkable
class PoseSource(Protocol):
    """Anything that reports the arm pose."""

    def read_pose(self) -> np.ndarray | None:
        """``T_base_ee`` (4x4, metres) now, or None to have the technician type it."""
        ...


class ImageFolderFrames:
    """Frames from the images of a folder, in name order (recorded sessions, tests).

    Args:
        folder: Folder with ``.png``/``.jpg`` images.
    """

    intrinsics = None
    serial = None

    def __init__(self, folder: Path) -> None:
        self._paths = list_images(folder)
        if not self._paths:
            raise InputError(f"no images in {folder}")
        self._next = 0

    def grab(self) -> np.ndarray:
        """The next image as RGB; ``StopIteration`` after the last one."""
        if self._next >= len(self._paths):
            raise StopIteration
        self._next += 1
        return read_image(self._paths[self._next - 1])


class TypedPoses:
    """A pose source for arms without readback: every pose is typed in."""

    def read_pose(self) -> np.ndarray | None:
        """Always None: ask the technician."""
        return None


@dataclass
class CaptureSession:
    """Result of ``run_capture``.

    Attributes:
        folder: The capture folder.
        captures: All captures in the folder (earlier sessions included).
        rejected: Number of key presses that did not produce a capture (board not visible).
    """

    folder: Path
    captures: list[Capture] = field(default_factory=list)
    rejected: int = 0


def run_capture(
    frames: FrameSource,
    poses: PoseSource,
    folder: Path,
    board: BoardConfig | None = None,
    min_corners: int = 8,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    max_captures: int | None = None,
) -> CaptureSession:
    """Interactive capture: Enter captures a frame and the arm pose, ``q`` finishes.

    Args:
        frames: The camera.
        poses: The arm (``read_pose`` None means the technician types the pose).
        folder: Capture folder; created if missing, continued if it has a ``poses.json``.
        board: When given, each frame is checked for the board and rejected with advice when
            fewer than ``min_corners`` corners are visible.
        min_corners: See ``board``.
        stdin: Where key presses and typed poses come from (default ``sys.stdin``).
        stdout: Where prompts go (default ``sys.stdout``).
        max_captures: Stop after this many new captures.

    Returns:
        The session summary.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    session = CaptureSession(folder, read_poses(folder) if (folder / POSES_FILE).exists() else [])
    say = _printer(stdout)
    say(
        f"Capturing into {folder} ({len(session.captures)} captures so far). Move the arm so the "
        "whole board is in view, wait until it stops, then press Enter. Type q + Enter to finish."
    )
    new = 0
    while max_captures is None or new < max_captures:
        line = stdin.readline()
        if not line or line.strip().lower() in QUIT_WORDS:
            break
        try:
            frame = frames.grab()
        except StopIteration:
            say("no more frames from the source")
            break
        if board is not None and not _board_visible(frame, board, min_corners, say):
            session.rejected += 1
            continue
        pose = poses.read_pose()
        pose = _typed_pose(stdin, say) if pose is None else as_pose_matrix(pose, "arm pose")
        if pose is None:
            break
        _save(session, frames, frame, pose)
        new += 1
        say(f"captured {session.captures[-1].image} ({len(session.captures)} in total)")
    say(f"done: {len(session.captures)} captures in {folder / POSES_FILE}")
    return session


def _printer(stdout: TextIO) -> Callable[[str], None]:
    def say(message: str) -> None:
        print(message, file=stdout, flush=True)

    return say


def _board_visible(
    frame: np.ndarray, board: BoardConfig, min_corners: int, say: Callable[[str], None]
) -> bool:
    detection = detect_board(frame, board)
    hint = legacy_hint(frame, board, detection)
    if hint is not None:
        raise InputError(hint)
    if len(detection) < min_corners:
        say(
            f"board not captured: {len(detection)} of {board.corner_count} corners visible (needs "
            f"{min_corners}). Bring the whole board into view, avoid glare, press Enter again."
        )
        return False
    say(f"board seen: {len(detection)} of {board.corner_count} corners")
    return True


def _typed_pose(stdin: TextIO, say: Callable[[str], None]) -> np.ndarray | None:
    """Ask until a valid pose is typed; None when the input ends or the technician quits."""
    while True:
        say(TYPED_POSE_HELP)
        line = stdin.readline()
        if not line or line.strip().lower() in QUIT_WORDS:
            return None
        try:
            return parse_typed_pose(line)
        except InputError as err:
            say(f"not a valid pose: {err}")


def _save(
    session: CaptureSession, frames: FrameSource, frame: np.ndarray, pose: np.ndarray
) -> None:
    names = {c.image for c in session.captures}
    index = len(session.captures)
    while f"{index:03d}.png" in names or (session.folder / f"{index:03d}.png").exists():
        index += 1
    name = f"{index:03d}.png"
    write_image(session.folder / name, np.asarray(frame, dtype=np.uint8))
    session.captures.append(Capture(name, pose))
    write_poses(session.folder, session.captures)
    if len(session.captures) == 1 or not (session.folder / "camera.json").exists():
        intrinsics = getattr(frames, "intrinsics", None)
        serial = getattr(frames, "serial", None)
        if intrinsics is not None or serial is not None:
            write_camera_info(session.folder, intrinsics, serial)
