"""Verification: predict where a known point appears in an image and measure the miss.

The reference point is a board point in the robot base frame: either a point the technician
touched with the calibrated TCP and read off the pendant (``touched_base``, metres), or ChArUco
corner ``corner_id`` of the board where calibration saw it (``T_base_board`` for eye-in-hand,
``T_base_ee @ T_ee_board`` for eye-to-hand). The board is detected in the (live or recorded)
image and located by PnP, which gives the measured point. Reported:

* **pixel error**: distance between the reference point projected through the calibration and
  the detected corner in the image;
* **millimetre error**: distance in the base frame between the reference point and the point
  measured through the camera and the calibration.

Use an arm pose and board position that were not part of the calibration captures. Pixels and
frames as in ``camera.py`` and ``transforms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from langgrasp.calibration.board import (
    BoardConfig,
    BoardDetection,
    detect_board,
    legacy_hint,
    solve_board_pose,
)
from langgrasp.calibration.io import Calibration
from langgrasp.calibration.transforms import (
    as_pose_matrix,
    check_translation_units,
    invert_transform,
)
from langgrasp.errors import InputError

MIN_VERIFY_CORNERS = 6
OVERLAY_DETECTED = (0, 200, 0)  # RGB
OVERLAY_PREDICTED = (230, 0, 0)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify_view``.

    Attributes:
        predicted_px: ``(2,)`` where the calibration puts the reference point in the image.
        detected_px: ``(2,)`` where the image shows it (detected corner).
        pixel_error: Distance between the two, pixels.
        error_mm: Base-frame distance between reference and measured point, millimetres.
        reference_base: ``(3,)`` reference point in the base frame, metres.
        measured_base: ``(3,)`` point measured through camera and calibration, metres.
        corner_id: The ChArUco corner used.
        corners_found: Board corners detected in the image.
    """

    predicted_px: np.ndarray
    detected_px: np.ndarray
    pixel_error: float
    error_mm: float
    reference_base: np.ndarray
    measured_base: np.ndarray
    corner_id: int
    corners_found: int

    def to_dict(self) -> dict:
        """JSON-ready figures."""
        return {
            "pixel_error": self.pixel_error,
            "error_mm": self.error_mm,
            "predicted_px": self.predicted_px.tolist(),
            "detected_px": self.detected_px.tolist(),
            "reference_base_m": self.reference_base.tolist(),
            "measured_base_m": self.measured_base.tolist(),
            "corner_id": self.corner_id,
            "corners_found": self.corners_found,
        }


def verify_view(
    image: np.ndarray,
    calibration: Calibration,
    T_base_ee: np.ndarray | None = None,  # noqa: N803
    touched_base: np.ndarray | None = None,
    corner_id: int = 0,
    board: BoardConfig | None = None,
) -> tuple[VerifyResult, BoardDetection]:
    """Check a calibration on one image.

    Args:
        image: ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 frame of the calibrated camera.
        calibration: The calibration to check (needs a hand-eye block).
        T_base_ee: Arm pose when the frame was taken (eye-in-hand; eye-to-hand needs it
            only without ``touched_base``, to locate the board on the flange).
        touched_base: ``(3,)`` base-frame position in metres of ChArUco corner ``corner_id``,
            touched with the TCP; default: where calibration saw the board.
        corner_id: The board corner to check (0 is marked by ticks on printed boards).
        board: The board; default the one stored in the calibration.

    Returns:
        The result and the board detection (for drawing).

    Raises:
        InputError: no hand-eye calibration, no board info, a missing pose, or a board that is
            not visible enough in the image.
    """
    hand_eye = calibration.require_hand_eye()
    board = board or hand_eye.board
    if board is None:
        raise InputError("calibration.json has no board config; pass the board")
    point_board = board.corner_position(corner_id)
    reference = _reference_point(hand_eye, T_base_ee, touched_base, point_board)
    T_base_cam = hand_eye.T_base_cam(T_base_ee)  # noqa: N806
    detection = detect_board(image, board)
    hint = legacy_hint(image, board, detection)
    if hint is not None:
        raise InputError(hint)
    if len(detection) < MIN_VERIFY_CORNERS:
        raise InputError(
            f"only {len(detection)} board corners visible (needs {MIN_VERIFY_CORNERS}); bring "
            "the board fully into view"
        )
    camera = calibration.camera
    solved = solve_board_pose(detection, board, camera)
    if solved is None:
        raise InputError("the board's pose could not be solved in this image")
    T_cam_board = solved[0]  # noqa: N806
    measured_cam = T_cam_board[:3, :3] @ point_board + T_cam_board[:3, 3]
    measured = T_base_cam[:3, :3] @ measured_cam + T_base_cam[:3, 3]
    reference_cam = invert_transform(T_base_cam) @ np.append(reference, 1.0)
    if reference_cam[2] <= 0:
        raise InputError("the reference point is behind the camera: wrong pose or calibration")
    predicted = camera.project(reference_cam[None, :3])[0]
    seen = np.flatnonzero(detection.ids == corner_id)
    detected = detection.corners_px[seen[0]] if len(seen) else camera.project(measured_cam[None])[0]
    result = VerifyResult(
        predicted_px=predicted,
        detected_px=detected,
        pixel_error=float(np.linalg.norm(predicted - detected)),
        error_mm=float(np.linalg.norm(reference - measured) * 1000),
        reference_base=reference,
        measured_base=measured,
        corner_id=corner_id,
        corners_found=len(detection),
    )
    return result, detection


def _reference_point(
    hand_eye,
    T_base_ee: np.ndarray | None,  # noqa: N803
    touched_base: np.ndarray | None,
    point_board: np.ndarray,
) -> np.ndarray:
    if touched_base is not None:
        point = np.asarray(touched_base, dtype=np.float64).reshape(3)
        check_translation_units(point, "touched point")
        return point
    if hand_eye.board_pose is None:
        raise InputError(
            "calibration.json has no board pose; give the touched point (base frame, metres)"
        )
    board_pose = hand_eye.board_pose
    if hand_eye.setup == "eye-to-hand":
        if T_base_ee is None:
            raise InputError(
                "eye-to-hand: the board sits on the flange, so the arm pose T_base_ee is needed"
            )
        board_pose = as_pose_matrix(T_base_ee, "T_base_ee") @ board_pose
    return board_pose[:3, :3] @ point_board + board_pose[:3, 3]


def draw_verification(
    image: np.ndarray, result: VerifyResult, detection: BoardDetection
) -> np.ndarray:
    """Draw the verification on a copy of the image.

    Detected corners are green dots, the detected reference corner a green circle, the
    predicted point a red cross, the miss a red line, and the errors are written at the top.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    canvas = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    scale = max(canvas.shape[:2]) / 640
    radius, thick = max(2, round(3 * scale)), max(1, round(2 * scale))
    for corner in detection.corners_px:
        cv2.circle(canvas, _point(corner), radius, OVERLAY_DETECTED, -1, cv2.LINE_AA)
    cv2.circle(canvas, _point(result.detected_px), 4 * radius, OVERLAY_DETECTED, thick, cv2.LINE_AA)
    cv2.drawMarker(
        canvas, _point(result.predicted_px), OVERLAY_PREDICTED, cv2.MARKER_CROSS, 8 * radius, thick
    )
    cv2.line(
        canvas, _point(result.detected_px), _point(result.predicted_px), OVERLAY_PREDICTED, thick
    )
    text = (
        f"corner {result.corner_id}: {result.pixel_error:.1f} px, {result.error_mm:.1f} mm "
        "(green: seen, red: predicted)"
    )
    origin = (round(10 * scale), round(24 * scale))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 3 * thick)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), thick)
    return canvas


def _point(xy: np.ndarray) -> tuple[int, int]:
    return (round(float(xy[0])), round(float(xy[1])))
