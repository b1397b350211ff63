"""From a planar grasp in the image to a top-down gripper pose in the robot base frame.

Inputs:

* a ``langgrasp.detector.grasp.Grasp`` in colour-image pixels (centre x, y; opening axis angle
  in radians counter-clockwise on screen; opening width and jaw size in pixels);
* a depth image ``(H, W)`` in **metres** aligned to the colour image (RealSense ``rs.align`` to
  colour; holes are 0 or NaN), same size as the calibrated colour stream;
* the ``Calibration`` from calibration.json, and for eye-in-hand the arm pose ``T_base_ee``
  (4x4, metres) at the moment the frame was taken.

Steps: a robust depth over the part of the rectangle between the jaws (a low percentile of the
valid pixels, so the object's top wins over the table seen past its edges), deprojection of the
centre and the two jaw ends through the camera model (distortion removed first), the opening
width in metres, the opening axis's yaw in the base frame, and a top-down tool pose plus a
pre-grasp pose above it.

Frames (``T_a_b`` maps frame-b points to frame a; metres): camera frame = OpenCV (x right,
y down, z forward); base frame = the robot's, z up. Tool frame of the returned poses: z along the
approach (pointing down, base -z), x along the jaws' opening direction (horizontal), y = z × x.
A parallel gripper is symmetric under a half turn, so the yaw is wrapped to [-π/2, π/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from langgrasp.calibration.io import Calibration
from langgrasp.detector.grasp import Grasp, wrap_angle
from langgrasp.errors import InputError, LanggraspError

MIN_HORIZONTAL_FRACTION = 0.2
"""The opening axis must keep this fraction of its length in the base XY plane for a top-down
grasp; a steeper axis (camera looking sideways at a vertical face) has no meaningful yaw."""


MM_PER_M = 1000.0
"""Millimetres per metre, to recognise a depth image in millimetres."""

MAX_GRASP_DEPTH_OFFSET_M = 0.1
"""Largest ``grasp_depth_offset_m``, metres. A design bound, not a device figure: the Robotiq
fingers (``robotiq.MODELS``) reach only a few centimetres below the palm, so a deeper offset would
drive the palm into the object or the table; 0.1 m leaves margin for longer custom fingers."""


class GraspGeometryError(LanggraspError):
    """A grasp that cannot be turned into a robot pose; the message gives the reason."""


@dataclass(frozen=True)
class GraspGeometryConfig:
    """How a grasp becomes a 3D pose.

    Attributes:
        depth_percentile: Percentile (0-100) of the valid depths between the jaws used as the
            grasp depth. Low values pick the nearest surface (the object's top); 50 = median.
        center_fraction: Fraction of the opening width, around the centre, where depth is
            sampled (the jaws close on the object in the middle; the ends see the table).
        min_valid_pixels: Fewest valid depth pixels needed in that region, >= 1.
        min_valid_fraction: Smallest fraction of that region with valid depth, [0, 1].
        min_depth_m: Depths below this are invalid (RealSense minimum range is ~0.1-0.3 m).
        max_depth_m: Depths above this are invalid (beyond the work cell).
        pregrasp_height_m: Height of the pre-grasp pose above the grasp, along base +z, >= 0.
        grasp_depth_offset_m: Moves the grasp point this far along the approach (down) from the
            measured surface, so the fingers close around the object rather than at its top;
            within [0, ``MAX_GRASP_DEPTH_OFFSET_M``] (a negative offset closes in the air).
    """

    depth_percentile: float = 25.0
    center_fraction: float = 0.5
    min_valid_pixels: int = 10
    min_valid_fraction: float = 0.25
    min_depth_m: float = 0.05
    max_depth_m: float = 5.0
    pregrasp_height_m: float = 0.10
    grasp_depth_offset_m: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "depth_percentile",
            "center_fraction",
            "min_valid_fraction",
            "min_depth_m",
            "max_depth_m",
            "pregrasp_height_m",
            "grasp_depth_offset_m",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")
        if not 0 <= self.depth_percentile <= 100:
            raise InputError("depth_percentile must be within 0-100")
        if not 0 < self.center_fraction <= 1:
            raise InputError("center_fraction must be within (0, 1]")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise InputError("need 0 <= min_depth_m < max_depth_m")
        if (
            isinstance(self.min_valid_pixels, bool)
            or not isinstance(self.min_valid_pixels, int)
            or self.min_valid_pixels < 1
        ):
            raise InputError(
                f"min_valid_pixels must be an integer >= 1 (a depth needs at least one valid "
                f"pixel), got {self.min_valid_pixels!r}"
            )
        if not 0 <= self.min_valid_fraction <= 1:
            raise InputError(
                f"min_valid_fraction must be within [0, 1], got {self.min_valid_fraction}"
            )
        if self.pregrasp_height_m < 0:
            raise InputError(
                f"pregrasp_height_m must be >= 0 metres (the pre-grasp is above the grasp), "
                f"got {self.pregrasp_height_m}"
            )
        if not 0 <= self.grasp_depth_offset_m <= MAX_GRASP_DEPTH_OFFSET_M:
            raise InputError(
                f"grasp_depth_offset_m must be within [0, {MAX_GRASP_DEPTH_OFFSET_M}] metres "
                f"(how far below the measured top the fingers close), "
                f"got {self.grasp_depth_offset_m}"
            )


@dataclass(frozen=True)
class GraspPose:
    """A top-down grasp in the robot base frame.

    Attributes:
        T_base_grasp: ``(4, 4)`` tool pose at the grasp, metres (tool frame in the module doc).
        T_base_pregrasp: ``(4, 4)`` same orientation, ``pregrasp_height_m`` higher.
        position_m: ``(3,)`` grasp point in the base frame, metres.
        yaw_rad: Rotation of the tool x axis (opening direction) about base z, [-π/2, π/2).
        opening_m: Gripper opening needed, metres (jaw-to-jaw distance of the rectangle).
        depth_m: Depth used, metres along the camera's optical axis.
        point_cam_m: ``(3,)`` grasp point in the camera frame, metres.
    """

    T_base_grasp: np.ndarray
    T_base_pregrasp: np.ndarray
    position_m: np.ndarray
    yaw_rad: float
    opening_m: float
    depth_m: float
    point_cam_m: np.ndarray


def jaw_region(grasp: Grasp, shape: tuple[int, int], center_fraction: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels between the jaws.

    The region is the rectangle's central ``center_fraction`` of the opening width (along the
    grasp angle) by its full jaw size; pixel centres inside it count.
    """
    height, width = shape
    along = np.array([math.cos(grasp.angle), -math.sin(grasp.angle)])  # y down on screen
    across = np.array([math.sin(grasp.angle), math.cos(grasp.angle)])
    half_w = max(grasp.width * center_fraction / 2, 0.5)
    half_h = max(grasp.height / 2, 0.5)
    reach = math.hypot(half_w, half_h) + 1
    x0, x1 = max(0, math.floor(grasp.x - reach)), min(width, math.ceil(grasp.x + reach) + 1)
    y0, y1 = max(0, math.floor(grasp.y - reach)), min(height, math.ceil(grasp.y + reach) + 1)
    mask = np.zeros(shape, dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    xs, ys = np.meshgrid(np.arange(x0, x1) - grasp.x, np.arange(y0, y1) - grasp.y)
    inside = (np.abs(xs * along[0] + ys * along[1]) <= half_w) & (
        np.abs(xs * across[0] + ys * across[1]) <= half_h
    )
    mask[y0:y1, x0:x1] = inside
    return mask


def grasp_depth(grasp: Grasp, depth_m: np.ndarray, config: GraspGeometryConfig) -> float:
    """Robust depth (metres) between the jaws of ``grasp``.

    Args:
        grasp: The grasp in pixels of the depth image.
        depth_m: ``(H, W)`` float depth in metres; 0, NaN, inf and values outside
            [``min_depth_m``, ``max_depth_m``] are holes.
        config: Percentile and validity thresholds.

    Raises:
        InputError: the depth image is in millimetres instead of metres.
        GraspGeometryError: too few valid depth pixels (the reason names the counts).
    """
    region = jaw_region(grasp, depth_m.shape, config.center_fraction)
    total = int(region.sum())
    if total == 0:
        raise GraspGeometryError(
            f"grasp at ({grasp.x:.0f}, {grasp.y:.0f}) px lies outside the "
            f"{depth_m.shape[1]}x{depth_m.shape[0]} depth image"
        )
    values = depth_m[region]
    with np.errstate(invalid="ignore"):
        valid = values[
            np.isfinite(values) & (values >= config.min_depth_m) & (values <= config.max_depth_m)
        ]
    needed = max(config.min_valid_pixels, math.ceil(config.min_valid_fraction * total))
    if len(valid) < needed:
        _require_metres(values, config)
        raise GraspGeometryError(
            f"not enough depth at the grasp: {len(valid)} of {total} pixels between the jaws "
            f"have a valid depth ({config.min_depth_m}-{config.max_depth_m} m), {needed} needed "
            "(shiny, dark or too close surface, or a depth hole)"
        )
    return float(np.percentile(valid, config.depth_percentile))


def _require_metres(values: np.ndarray, config: GraspGeometryConfig) -> None:
    """Raise ``InputError`` when depth values fit the valid range only after dividing by 1000.

    A raw RealSense ``z16`` frame holds depth units (1 mm by default), not metres.
    """
    with np.errstate(invalid="ignore"):
        positive = values[np.isfinite(values) & (values > 0)]
    if len(positive) == 0:
        return
    median = float(np.median(positive))
    if (
        config.max_depth_m < median
        and config.min_depth_m <= median / MM_PER_M <= config.max_depth_m
    ):
        raise InputError(
            f"the depth image looks like millimetres (median {median:.0f} between the jaws): "
            "pass depth in metres (a raw RealSense z16 frame times the sensor's depth_scale)"
        )


def grasp_pose(
    grasp: Grasp,
    depth_m: np.ndarray,
    calibration: Calibration,
    T_base_ee: np.ndarray | None = None,  # noqa: N803
    config: GraspGeometryConfig | None = None,
) -> GraspPose:
    """Turn a planar grasp into a top-down tool pose in the robot base frame.

    Args:
        grasp: Grasp in colour-image pixels (angle CCW on screen, radians).
        depth_m: ``(H, W)`` depth in metres aligned to the colour image.
        calibration: Intrinsics and hand-eye calibration (calibration.json).
        T_base_ee: ``(4, 4)`` arm pose when the frame was taken, metres; required for
            eye-in-hand (``T_base_cam = T_base_ee @ T_ee_cam``), unused for eye-to-hand.
        config: Depth statistic, validity and pre-grasp height.

    Returns:
        The grasp and pre-grasp poses with opening width and yaw.

    Raises:
        InputError: bad grasp values, a depth image whose size differs from the calibrated
            stream, or a calibration without hand-eye block.
        GraspGeometryError: not enough valid depth, or an opening axis too steep for a
            top-down grasp.
    """
    config = config or GraspGeometryConfig()
    if grasp.invalid_fields():
        raise InputError(f"grasp has non-finite fields: {', '.join(grasp.invalid_fields())}")
    depth_m = np.asarray(depth_m)
    camera = calibration.camera
    if depth_m.ndim != 2 or depth_m.shape != (camera.height, camera.width):
        raise InputError(
            f"depth image is {depth_m.shape} but calibration.json is for "
            f"{camera.width}x{camera.height} (H, W = {camera.height}, {camera.width}); align depth "
            "to colour and stream at the calibrated resolution, or recalibrate"
        )
    T_base_cam = calibration.require_hand_eye().T_base_cam(T_base_ee)  # noqa: N806
    depth = grasp_depth(grasp, depth_m.astype(np.float64, copy=False), config)
    half = grasp.width / 2 * np.array([math.cos(grasp.angle), -math.sin(grasp.angle)])
    centre = np.array([grasp.x, grasp.y])
    points_cam = camera.deproject(np.stack([centre, centre - half, centre + half]), depth)
    points_base = points_cam @ T_base_cam[:3, :3].T + T_base_cam[:3, 3]
    axis = points_base[2] - points_base[1]
    opening = float(np.linalg.norm(axis))
    if opening > 0 and math.hypot(axis[0], axis[1]) < MIN_HORIZONTAL_FRACTION * opening:
        raise GraspGeometryError(
            "the grasp's opening axis is nearly vertical in the base frame, so a top-down "
            "approach cannot close on it; view the object from above"
        )
    yaw = float(wrap_angle(math.atan2(axis[1], axis[0])))
    approach = np.array([0.0, 0.0, -1.0])
    position = points_base[0] + config.grasp_depth_offset_m * approach
    grasp_t = top_down_pose(position, yaw)
    pregrasp = grasp_t.copy()
    pregrasp[2, 3] += config.pregrasp_height_m
    return GraspPose(grasp_t, pregrasp, position, yaw, opening, depth, points_cam[0])


def top_down_pose(position_m: Any, yaw_rad: float) -> np.ndarray:
    """A tool pose pointing down at ``position_m`` (x, y, z), base frame, metres.

    Tool axes: x = (cos yaw, sin yaw, 0), z = (0, 0, -1), y = z × x.
    """
    x_axis = np.array([math.cos(yaw_rad), math.sin(yaw_rad), 0.0])
    z_axis = np.array([0.0, 0.0, -1.0])
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([x_axis, np.cross(z_axis, x_axis), z_axis])
    pose[:3, 3] = np.asarray(position_m, dtype=np.float64)
    return pose
