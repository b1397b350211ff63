"""ChArUco boards: named configs, the OpenCV board object, detection and its diagnostics.

Board frame (OpenCV's ``CharucoBoard``): origin at the top-left outer corner of the square grid as
the printed board is read (the corner of the first square), x to the right along the
``squares_x`` squares, y down along the ``squares_y`` rows, z into the board; metres. ChArUco
corner ``i`` is the i-th inner chessboard corner, row by row from the top left: corner 0 lies one
square right and one square down from the origin.

Boards come from the registry ``BOARDS`` by name, or from a spec string
``"<squares_x>x<squares_y>:<square>mm:<marker>mm:<DICTIONARY>"`` such as
``"8x6:30mm:22mm:DICT_4X4_50"`` for a board printed elsewhere (see ``get_board``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.errors import InputError

MIN_MARKERS_FOR_DIAGNOSIS = 2
"""Markers that must be seen before zero ChArUco corners is blamed on the board pattern."""

MAX_SQUARE_M = 0.5
"""Largest plausible square side; a bigger value is a unit mistake (mm given as m)."""


def _dictionary_size(name: str) -> int:
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
    return int(dictionary.bytesList.shape[0])


@dataclass(frozen=True)
class BoardConfig:
    """A ChArUco board: chessboard squares with ArUco markers in the white ones.

    Attributes:
        name: Registry name or spec string it was made from.
        squares_x: Squares along the board's x axis (columns).
        squares_y: Squares along the board's y axis (rows).
        square_m: Side of one chessboard square in metres, as printed.
        marker_m: Side of one ArUco marker in metres (< ``square_m``).
        dictionary: OpenCV predefined ArUco dictionary name, e.g. ``"DICT_5X5_100"``.
        legacy: Boards generated with OpenCV < 4.6 and an even number of rows start with a
            white square instead of a black one (``CharucoBoard.setLegacyPattern``,
            shared/research/runtime.md 4.2); set this for those.
    """

    name: str
    squares_x: int
    squares_y: int
    square_m: float
    marker_m: float
    dictionary: str = "DICT_5X5_100"
    legacy: bool = False

    def __post_init__(self) -> None:
        if self.squares_x < 3 or self.squares_y < 3:
            raise InputError(f"board {self.name}: needs at least 3x3 squares")
        if not 0 < self.square_m <= MAX_SQUARE_M:
            raise InputError(
                f"board {self.name}: square side {self.square_m} m is implausible; sizes are in "
                "metres (a 35 mm square is 0.035)"
            )
        if not 0 < self.marker_m < self.square_m:
            raise InputError(f"board {self.name}: the marker must be smaller than the square")
        if not hasattr(cv2.aruco, self.dictionary) or not self.dictionary.startswith("DICT_"):
            raise InputError(
                f"board {self.name}: unknown ArUco dictionary {self.dictionary!r}; use an OpenCV "
                "name such as DICT_5X5_100 or DICT_4X4_50"
            )
        markers = (self.squares_x * self.squares_y) // 2
        if markers > _dictionary_size(self.dictionary):
            raise InputError(
                f"board {self.name}: {markers} markers do not fit in {self.dictionary}; pick a "
                "bigger dictionary"
            )

    @property
    def size_m(self) -> tuple[float, float]:
        """Printed pattern size (width, height) in metres, without the white margin."""
        return (self.squares_x * self.square_m, self.squares_y * self.square_m)

    @property
    def corner_count(self) -> int:
        """Number of ChArUco (inner chessboard) corners."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def corner_position(self, corner_id: int) -> np.ndarray:
        """Board-frame position ``(3,)`` in metres of ChArUco corner ``corner_id``."""
        if not 0 <= corner_id < self.corner_count:
            raise InputError(f"board {self.name} has corners 0..{self.corner_count - 1}")
        row, column = divmod(corner_id, self.squares_x - 1)
        return np.array([(column + 1) * self.square_m, (row + 1) * self.square_m, 0.0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (sizes in metres)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoardConfig:
        """Inverse of ``to_dict``."""
        try:
            return cls(
                name=str(data["name"]),
                squares_x=int(data["squares_x"]),
                squares_y=int(data["squares_y"]),
                square_m=float(data["square_m"]),
                marker_m=float(data["marker_m"]),
                dictionary=str(data["dictionary"]),
                legacy=bool(data.get("legacy", False)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"board config: missing or bad field ({err})") from err

    def create(self) -> cv2.aruco.CharucoBoard:
        """The OpenCV ``CharucoBoard`` (OpenCV >= 4.7 API)."""
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary
        )
        board.setLegacyPattern(self.legacy)
        return board


BOARDS: dict[str, BoardConfig] = {
    # 224 x 160 mm pattern; with the printed margins and label (printing.py) the sheet is
    # 248 x 198 mm and fits A4 (297 x 210) and US Letter (279 x 216) landscape. 5 rows (odd), so
    # the legacy and current OpenCV patterns are identical and any OpenCV version reads it.
    "charuco-a4": BoardConfig("charuco-a4", 7, 5, 0.032, 0.024, "DICT_5X5_100"),
    # 360 x 252 mm pattern, 384 x 290 mm sheet on A3 landscape (420 x 297), for cameras about a
    # metre from the board.
    "charuco-a3": BoardConfig("charuco-a3", 10, 7, 0.036, 0.027, "DICT_5X5_100"),
}
"""Registered boards by name."""

_SPEC = re.compile(
    r"^(?P<sx>\d+)x(?P<sy>\d+):(?P<square>[\d.]+)mm:(?P<marker>[\d.]+)mm:(?P<dict>DICT_\w+)$"
)


def get_board(name: str, legacy: bool | None = None) -> BoardConfig:
    """A board config by registry name or spec string.

    Args:
        name: A key of ``BOARDS``, or ``"<sx>x<sy>:<square>mm:<marker>mm:<DICT_NAME>"`` (sizes
            in millimetres as measured on the print, e.g. ``"8x6:30mm:22mm:DICT_4X4_50"``).
        legacy: Overrides the config's legacy-pattern flag when not None.

    Raises:
        InputError: unknown name or malformed spec (the message lists the registered names).
    """
    if name in BOARDS:
        board = BOARDS[name]
    else:
        match = _SPEC.match(name.strip())
        if match is None:
            raise InputError(
                f"unknown board {name!r}: use one of {', '.join(sorted(BOARDS))} or a spec like "
                "8x6:30mm:22mm:DICT_4X4_50 (squares, square size, marker size, ArUco dictionary)"
            )
        board = BoardConfig(
            name=name.strip(),
            squares_x=int(match["sx"]),
            squares_y=int(match["sy"]),
            square_m=float(match["square"]) / 1000.0,
            marker_m=float(match["marker"]) / 1000.0,
            dictionary=match["dict"],
        )
    return board if legacy is None else replace(board, legacy=legacy)


@dataclass(frozen=True)
class BoardDetection:
    """ChArUco corners found in one image.

    Attributes:
        corners_px: ``(N, 2)`` float64 sub-pixel corner positions (x, y) in pixels.
        ids: ``(N,)`` int corner ids (see the module docstring for the numbering).
        marker_count: ArUco markers found (corners are interpolated from these).
    """

    corners_px: np.ndarray
    ids: np.ndarray
    marker_count: int

    def __len__(self) -> int:
        return len(self.ids)

    def object_points(self, board: BoardConfig) -> np.ndarray:
        """Board-frame positions ``(N, 3)`` in metres of the detected corners."""
        return np.array([board.corner_position(int(i)) for i in self.ids]).reshape(-1, 3)


def to_gray(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` uint8 grey image from ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(
            f"expected an (H, W) or (H, W, 3) uint8 image, got {image.dtype} {image.shape}"
        )
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def detect_board(image: np.ndarray, board: BoardConfig) -> BoardDetection:
    """Find the board's ChArUco corners in an image.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 image.
        board: The board printed in the image.

    Returns:
        The detection (possibly with zero corners).
    """
    detector = cv2.aruco.CharucoDetector(board.create())
    corners, ids, _, marker_ids = detector.detectBoard(to_gray(image))
    markers = 0 if marker_ids is None else len(marker_ids)
    if corners is None or ids is None:
        return BoardDetection(np.zeros((0, 2)), np.zeros(0, dtype=int), markers)
    return BoardDetection(
        np.asarray(corners, dtype=np.float64).reshape(-1, 2),
        np.asarray(ids, dtype=int).reshape(-1),
        markers,
    )


def legacy_hint(image: np.ndarray, board: BoardConfig, detection: BoardDetection) -> str | None:
    """A message when markers are visible but no ChArUco corners: the pattern flag is wrong.

    Tries the other legacy-pattern setting: if that finds corners, the board was generated with
    the other OpenCV convention, and the message names the option that fixes it.
    """
    if len(detection) > 0 or detection.marker_count < MIN_MARKERS_FOR_DIAGNOSIS:
        return None
    flipped = replace(board, legacy=not board.legacy)
    if len(detect_board(image, flipped)) == 0:
        return None
    if flipped.legacy:
        return (
            f"{detection.marker_count} ArUco markers but zero ChArUco corners were found: this is "
            "a legacy-pattern board (generated with OpenCV < 4.6, it starts with a white square). "
            "Run again with --legacy-pattern (BoardConfig legacy=True)"
        )
    return (
        f"{detection.marker_count} ArUco markers but zero ChArUco corners were found: this board "
        "uses the current OpenCV pattern; run again without --legacy-pattern (legacy=False)"
    )


def detect_views(
    images: Iterable[tuple[str, np.ndarray]], board: BoardConfig, min_corners: int
) -> tuple[list[tuple[str, BoardDetection]], list[tuple[str, str]]]:
    """Detect the board in named images and sort them into usable and skipped.

    Args:
        images: ``(name, image)`` pairs.
        board: The board config.
        min_corners: Fewest ChArUco corners an image needs to be used.

    Returns:
        ``(used, skipped)``: used ``(name, detection)`` pairs and skipped ``(name, reason)``.

    Raises:
        InputError: when markers are found but the legacy-pattern setting is wrong (that affects
            every image, so nothing could be calibrated).
    """
    used, skipped = [], []
    for name, image in images:
        detection = detect_board(image, board)
        hint = legacy_hint(image, board, detection)
        if hint is not None:
            raise InputError(f"{name}: {hint}")
        if len(detection) < min_corners:
            skipped.append(
                (
                    name,
                    f"only {len(detection)} of {board.corner_count} board corners found "
                    f"(needs {min_corners}): keep the whole board in view, in focus and lit "
                    "without glare",
                )
            )
        else:
            used.append((name, detection))
    return used, skipped


def solve_board_pose(
    detection: BoardDetection, board: BoardConfig, camera: CameraIntrinsics
) -> tuple[np.ndarray, float] | None:
    """The board's pose ``T_cam_board`` by PnP (lens distortion removed first, any model).

    Args:
        detection: At least 4 detected corners.
        board: The board.
        camera: Intrinsics of the image's camera.

    Returns:
        ``((4, 4) T_cam_board in metres, reprojection RMS in pixels)``, or None if PnP fails.
    """
    object_points = detection.object_points(board)
    normalized = camera.normalize(detection.corners_px)
    ok, rvec, tvec = cv2.solvePnP(
        object_points, normalized, np.eye(3), None, flags=cv2.SOLVEPNP_IPPE
    )
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(object_points, normalized, np.eye(3), None, rvec, tvec)
    rotation = cv2.Rodrigues(rvec)[0]
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, tvec.reshape(3)
    projected = camera.project(object_points @ rotation.T + pose[:3, 3])
    rms = float(np.sqrt(np.mean(np.sum((projected - detection.corners_px) ** 2, axis=1))))
    return pose, rms
