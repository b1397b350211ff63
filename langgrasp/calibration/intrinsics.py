"""Camera intrinsics from a folder of ChArUco board images (``cv2.calibrateCamera``).

Use this for cameras without factory intrinsics; a RealSense reports its own
(``camera.intrinsics_from_realsense``). The result is the ``brown_conrady`` model (OpenCV's
k1, k2, p1, p2, k3), pixels and metres as in ``camera.py``. Every image's reprojection error is
reported and images far worse than the rest are flagged as outliers (motion blur, a bent board,
a mis-detected corner), optionally dropped with one re-calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from langgrasp.calibration.board import BoardConfig, BoardDetection, detect_views
from langgrasp.calibration.camera import CameraIntrinsics
from langgrasp.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntrinsicsConfig:
    """Settings of the intrinsics calibration.

    Attributes:
        min_views: Fewest usable images; OpenCV needs 3, but the focal length and distortion
            are only stable with several tilted views (the OpenCV tutorial recommends 10 or more).
        min_corners: Fewest ChArUco corners an image needs to be used.
        fix_k3: Keep k3 = 0. The sixth-order term is only observable with the board in the
            image corners; without such views it takes wild values that hurt the image edges.
        outlier_factor: An image is an outlier when its RMS error exceeds this multiple of the
            median image's RMS error ...
        outlier_min_px: ... and also exceeds this many pixels (so a very good calibration does
            not flag images for 0.1 px).
        drop_outliers: Re-calibrate once without the outliers.
    """

    min_views: int = 6
    min_corners: int = 8
    fix_k3: bool = True
    outlier_factor: float = 2.0
    outlier_min_px: float = 0.5
    drop_outliers: bool = False


@dataclass(frozen=True)
class ViewError:
    """Reprojection error of one image.

    Attributes:
        name: Image name.
        corners: ChArUco corners used.
        rms_px: Root-mean-square reprojection error in pixels.
        outlier: Flagged as much worse than the other images.
    """

    name: str
    corners: int
    rms_px: float
    outlier: bool


@dataclass(frozen=True)
class IntrinsicsReport:
    """Result of ``calibrate_intrinsics``.

    Attributes:
        intrinsics: The calibrated camera (``brown_conrady``).
        rms_px: Overall RMS reprojection error in pixels (over all used corners).
        views: Per-image errors of the images used in the final calibration.
        skipped: ``(name, reason)`` of images not used (too few corners).
        dropped: Names of outliers removed before the final calibration.
    """

    intrinsics: CameraIntrinsics
    rms_px: float
    views: list[ViewError]
    skipped: list[tuple[str, str]]
    dropped: list[str]

    @property
    def outliers(self) -> list[str]:
        """Names of the images flagged as outliers in the final calibration."""
        return [view.name for view in self.views if view.outlier]

    def to_dict(self) -> dict:
        """JSON-ready summary (pixels)."""
        return {
            "rms_reprojection_px": self.rms_px,
            "images_used": len(self.views),
            "per_image": [
                {"image": v.name, "corners": v.corners, "rms_px": v.rms_px, "outlier": v.outlier}
                for v in self.views
            ],
            "skipped": [{"image": name, "reason": reason} for name, reason in self.skipped],
            "dropped_outliers": list(self.dropped),
        }


def calibrate_intrinsics(
    images: Sequence[tuple[str, np.ndarray]],
    board: BoardConfig,
    config: IntrinsicsConfig | None = None,
) -> IntrinsicsReport:
    """Calibrate a camera from images of a ChArUco board.

    Args:
        images: ``(name, image)`` pairs; images ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8, all
            the same size.
        board: The printed board (sizes as measured on the print).
        config: Thresholds.

    Returns:
        The intrinsics with the overall and per-image reprojection errors.

    Raises:
        InputError: images of different sizes, a legacy-pattern mismatch, or fewer than
            ``min_views`` usable images (the message says how to take better ones).
    """
    config = config or IntrinsicsConfig()
    sizes = {np.asarray(image).shape[:2] for _, image in images}
    if len(sizes) > 1:
        raise InputError(
            f"images have different sizes {sorted(sizes)}: calibrate one camera resolution at a "
            "time (intrinsics change with the resolution)"
        )
    used, skipped = detect_views(images, board, config.min_corners)
    _require_views(used, skipped, len(images), config)
    height, width = next(iter(sizes))
    report = _calibrate(used, skipped, board, (width, height), config, dropped=[])
    if config.drop_outliers and report.outliers:
        kept = [(name, d) for name, d in used if name not in report.outliers]
        if len(kept) >= config.min_views:
            logger.info("dropping %d outlier images: %s", len(report.outliers), report.outliers)
            report = _calibrate(kept, skipped, board, (width, height), config, report.outliers)
    return report


def _require_views(
    used: list, skipped: list[tuple[str, str]], total: int, config: IntrinsicsConfig
) -> None:
    if len(used) >= config.min_views:
        return
    detail = "; ".join(f"{name}: {reason}" for name, reason in skipped[:5])
    raise InputError(
        f"only {len(used)} of {total} images show the board well enough (at least "
        f"{config.min_corners} corners); intrinsics need at least {config.min_views}. Take "
        "10-20 sharp images with the whole board visible, tilted 20-40 degrees in different "
        f"directions and placed in every part of the image. {detail}"
    )


def _calibrate(
    used: list[tuple[str, BoardDetection]],
    skipped: list[tuple[str, str]],
    board: BoardConfig,
    size: tuple[int, int],
    config: IntrinsicsConfig,
    dropped: list[str],
) -> IntrinsicsReport:
    object_points = [d.object_points(board).astype(np.float32) for _, d in used]
    image_points = [d.corners_px.astype(np.float32).reshape(-1, 1, 2) for _, d in used]
    flags = cv2.CALIB_FIX_K3 if config.fix_k3 else 0
    rms, matrix, dist, rvecs, tvecs = cv2.calibrateCamera(
        object_points, image_points, size, None, None, flags=flags
    )
    errors = []
    for obj, img, rvec, tvec in zip(object_points, image_points, rvecs, tvecs, strict=True):
        projected, _ = cv2.projectPoints(obj, rvec, tvec, matrix, dist)
        residual = projected.reshape(-1, 2) - img.reshape(-1, 2)
        errors.append(float(np.sqrt(np.mean(np.sum(residual**2, axis=1)))))
    median = float(np.median(errors))
    limit = max(config.outlier_factor * median, config.outlier_min_px)
    views = [
        ViewError(name, len(d), error, error > limit)
        for (name, d), error in zip(used, errors, strict=True)
    ]
    intrinsics = CameraIntrinsics(
        width=size[0],
        height=size[1],
        fx=float(matrix[0, 0]),
        fy=float(matrix[1, 1]),
        cx=float(matrix[0, 2]),
        cy=float(matrix[1, 2]),
        model="brown_conrady",
        coeffs=tuple(float(c) for c in dist.reshape(-1)[:5]),
    )
    return IntrinsicsReport(intrinsics, float(rms), views, list(skipped), list(dropped))
