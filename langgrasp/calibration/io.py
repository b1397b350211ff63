"""``calibration.json``: the versioned file that calibration writes and ``langgrasp run`` reads.

Schema ``langgrasp-calibration`` version 1 (all lengths in metres unless the key says ``_mm``;
pixels where the key says ``_px``; 4x4 matrices row-major, ``T_a_b`` maps frame-b points to frame
a, see ``transforms.py``)::

    {
      "format": "langgrasp-calibration",
      "version": 1,
      "created": "2026-01-31T12:00:00Z",          # UTC, ISO 8601
      "length_unit": "m",
      "camera": {
        "serial": "123456789" | null,
        "source": "realsense-factory" | "charuco-images" | "capture-folder" | ...,
        "width_px": 640, "height_px": 480,
        "fx_px": ..., "fy_px": ..., "cx_px": ..., "cy_px": ...,
        "distortion_model": "brown_conrady",       # camera.DISTORTION_MODELS
        "distortion_coeffs": [k1, k2, p1, p2, k3],
        "residuals": {...} | null                  # intrinsics.IntrinsicsReport.to_dict()
      },
      "hand_eye": null | {
        "setup": "eye-in-hand" | "eye-to-hand",
        "T_ee_cam": 4x4,                           # eye-in-hand only: camera on the flange
        "T_base_cam": 4x4,                         # eye-to-hand only: camera in the base frame
        "method": "park",                          # handeye.METHODS
        "board": {...},                            # board.BoardConfig.to_dict()
        "T_base_board": 4x4 | "T_ee_board": 4x4,   # the board during calibration (verify)
        "residuals": {...}                         # handeye.HandEyeReport.residuals()
      }
    }

``load_calibration`` validates all of it and says which key is wrong and what to do.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.calibration.board import BoardConfig
from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.calibration.storage import atomic_write_json, read_json
from langgrasp.calibration.transforms import as_pose_matrix
from langgrasp.errors import InputError

FORMAT = "langgrasp-calibration"
VERSION = 1
SETUPS = ("eye-in-hand", "eye-to-hand")
HAND_EYE_KEY = {"eye-in-hand": "T_ee_cam", "eye-to-hand": "T_base_cam"}
BOARD_KEY = {"eye-in-hand": "T_base_board", "eye-to-hand": "T_ee_board"}


@dataclass(frozen=True)
class HandEyeCalibration:
    """Where the camera is relative to the robot.

    Attributes:
        setup: ``"eye-in-hand"`` (camera on the arm) or ``"eye-to-hand"`` (camera fixed).
        transform: ``T_ee_cam`` (eye-in-hand) or ``T_base_cam`` (eye-to-hand), ``(4, 4)``, metres.
        method: Hand-eye method that produced it.
        board: The board used (for verification).
        board_pose: ``T_base_board`` (eye-in-hand) or ``T_ee_board`` (eye-to-hand) during the
            calibration, or None.
        residuals: Consistency figures (JSON-ready).
    """

    setup: str
    transform: np.ndarray
    method: str
    board: BoardConfig | None = None
    board_pose: np.ndarray | None = None
    residuals: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise InputError(
                f"hand_eye.setup must be one of {', '.join(SETUPS)}, got {self.setup!r}"
            )

    def T_base_cam(self, T_base_ee: np.ndarray | None = None) -> np.ndarray:  # noqa: N803, N802
        """The camera pose in the base frame when a frame was taken, ``(4, 4)``, metres.

        Args:
            T_base_ee: Arm pose at the time of the frame; required for eye-in-hand (the camera
                moves with the arm), ignored for eye-to-hand.
        """
        if self.setup == "eye-to-hand":
            return self.transform.copy()
        if T_base_ee is None:
            raise InputError(
                "an eye-in-hand calibration needs the arm pose T_base_ee at the time of the frame"
            )
        return as_pose_matrix(T_base_ee, "T_base_ee") @ self.transform

    def to_dict(self) -> dict[str, Any]:
        """The ``hand_eye`` block of calibration.json."""
        data: dict[str, Any] = {
            "setup": self.setup,
            HAND_EYE_KEY[self.setup]: _matrix(self.transform),
            "method": self.method,
            "board": None if self.board is None else self.board.to_dict(),
        }
        if self.board_pose is not None:
            data[BOARD_KEY[self.setup]] = _matrix(self.board_pose)
        data["residuals"] = self.residuals
        return data


@dataclass(frozen=True)
class Calibration:
    """Everything the runtime needs to turn pixels and depth into robot coordinates.

    Attributes:
        camera: The colour camera's intrinsics (depth is aligned to it).
        serial: Camera serial number, or None when unknown.
        intrinsics_source: Where the intrinsics came from (``"realsense-factory"``,
            ``"charuco-images"``, ...).
        intrinsics_residuals: Intrinsics calibration figures, or None for factory values.
        hand_eye: Camera-to-robot transform, or None after an intrinsics-only calibration.
        created: UTC creation time, ISO 8601.
    """

    camera: CameraIntrinsics
    serial: str | None = None
    intrinsics_source: str = "unknown"
    intrinsics_residuals: dict[str, Any] | None = None
    hand_eye: HandEyeCalibration | None = None
    created: str = field(default_factory=lambda: _now())

    def to_dict(self) -> dict[str, Any]:
        """The calibration.json content (schema in the module docstring)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "length_unit": "m",
            "camera": {
                "serial": self.serial,
                "source": self.intrinsics_source,
                **self.camera.to_dict(),
                "residuals": self.intrinsics_residuals,
            },
            "hand_eye": None if self.hand_eye is None else self.hand_eye.to_dict(),
        }

    def with_hand_eye(self, hand_eye: HandEyeCalibration) -> Calibration:
        """A copy with a new hand-eye block and creation time."""
        return replace(self, hand_eye=hand_eye, created=_now())

    def check_camera(self, serial: str | None, width: int, height: int) -> None:
        """Raise ``InputError`` unless a connected camera stream matches this calibration.

        Args:
            serial: The connected camera's serial number (None: not checked).
            width: Colour stream width in pixels.
            height: Colour stream height in pixels.
        """
        if serial is not None and self.serial is not None and str(serial) != self.serial:
            raise InputError(
                f"calibration.json is for camera {self.serial} but camera {serial} is connected: "
                "use the calibration of this camera, or calibrate it"
            )
        if (width, height) != self.camera.size:
            raise InputError(
                f"calibration.json is for {self.camera.width}x{self.camera.height} but the camera "
                f"streams {width}x{height}: set the calibrated resolution, or calibrate again"
            )

    def require_hand_eye(self) -> HandEyeCalibration:
        """The hand-eye block, or an ``InputError`` telling how to make one."""
        if self.hand_eye is None:
            raise InputError(
                "calibration.json has intrinsics but no hand-eye calibration; run "
                "`langgrasp calibrate handeye` before `langgrasp run`"
            )
        return self.hand_eye


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matrix(matrix: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(matrix)]


def save_calibration(path: Path, calibration: Calibration) -> Path:
    """Write calibration.json atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, calibration.to_dict())
    return path


def load_calibration(path: Path) -> Calibration:
    """Read and validate calibration.json.

    Raises:
        InputError: not a langgrasp calibration, a newer version, or a missing/bad field; the
            message names the key and what to do.
    """
    path = Path(path)
    data = read_json(path, "calibration file")
    return calibration_from_dict(data, str(path))


def calibration_from_dict(data: Any, where: str = "calibration.json") -> Calibration:
    """Validate parsed calibration.json content (see ``load_calibration``)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            f'{where} is not a langgrasp calibration (needs "format": "{FORMAT}"); create it '
            "with `langgrasp calibrate intrinsics` or `langgrasp calibrate handeye`"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f'{where}: "version" must be an integer')
    if version > VERSION:
        raise InputError(
            f"{where} has version {version}, newer than this langgrasp reads ({VERSION}); "
            "upgrade langgrasp on this machine"
        )
    if version < 1:
        raise InputError(f"{where}: unknown version {version}")
    if data.get("length_unit", "m") != "m":
        raise InputError(f'{where}: length_unit must be "m" (metres)')
    camera = data.get("camera")
    if not isinstance(camera, dict):
        raise InputError(f'{where}: missing the "camera" block')
    try:
        intrinsics = CameraIntrinsics.from_dict(camera)
    except InputError as err:
        raise InputError(f"{where}: {err}") from err
    serial = camera.get("serial")
    return Calibration(
        camera=intrinsics,
        serial=None if serial is None else str(serial),
        intrinsics_source=str(camera.get("source", "unknown")),
        intrinsics_residuals=camera.get("residuals"),
        hand_eye=_hand_eye_from_dict(data.get("hand_eye"), where),
        created=str(data.get("created", "")),
    )


def _hand_eye_from_dict(block: Any, where: str) -> HandEyeCalibration | None:
    if block is None:
        return None
    if not isinstance(block, dict):
        raise InputError(f'{where}: "hand_eye" must be an object or null')
    setup = block.get("setup")
    if setup not in SETUPS:
        raise InputError(
            f"{where}: hand_eye.setup must be one of {', '.join(SETUPS)}, got {setup!r}"
        )
    key = HAND_EYE_KEY[setup]
    if key not in block:
        raise InputError(f"{where}: an {setup} calibration needs hand_eye.{key} (4x4, metres)")
    transform = as_pose_matrix(block[key], f"{where}: hand_eye.{key}")
    board_pose = block.get(BOARD_KEY[setup])
    board = block.get("board")
    residuals = block.get("residuals") or {}
    if not isinstance(residuals, dict):
        raise InputError(f"{where}: hand_eye.residuals must be an object")
    return HandEyeCalibration(
        setup=setup,
        transform=transform,
        method=str(block.get("method", "unknown")),
        board=None if board is None else BoardConfig.from_dict(board),
        board_pose=None
        if board_pose is None
        else as_pose_matrix(board_pose, f"{where}: hand_eye.{BOARD_KEY[setup]}"),
        residuals=residuals,
    )
