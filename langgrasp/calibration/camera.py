"""Pinhole camera intrinsics with the RealSense distortion models: projection and deprojection.

Pixels: (x, y) = (column, row) with the centre of pixel (row r, column c) at (x=c, y=r), the
OpenCV and ``langgrasp.detector.grasp`` convention. Camera frame (OpenCV): x right, y down, z
forward along the optical axis, metres. ``normalized`` coordinates are the ideal (undistorted)
image-plane coordinates (X/Z, Y/Z).

Distortion models (``CameraIntrinsics.model``) follow librealsense's ``rs2_distortion``; formulas
from ``librealsense2/rsutil.h`` (``rs2_project_point_to_pixel``/``rs2_deproject_pixel_to_point``),
coefficient order k1, k2, p1, p2, k3 for the Brown-Conrady family:

* ``none``: no distortion.
* ``brown_conrady``: OpenCV's default 5-coefficient model. It maps ideal to distorted, so
  projection is closed form and deprojection iterates. ``calibrateCamera`` estimates this one.
* ``inverse_brown_conrady``: the same polynomial applied to the *distorted* point gives the ideal
  one, so deprojection is closed form and projection iterates (RealSense D400 colour streams).
* ``modified_brown_conrady``: forward, with the tangential terms applied to the radially distorted
  point but ``r^2`` from the ideal one; deprojection iterates (librealsense refuses to
  deproject it).
* ``kannala_brandt4``: equidistant fisheye, θ_d = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸).
* ``ftheta``: r_d = atan(2 r tan(w/2)) / w with w = coeffs[0]. Deprojection is the exact inverse
  of that projection (rsutil.h's deprojection divides by ``atan`` where the inverse needs
  ``2 tan``, so the two disagree there).

Iterative inversions use Newton's method and are accurate to better than 1e-9 in normalized
coordinates inside the lens's monotonic range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from langgrasp.errors import InputError

COEFFICIENTS_NEEDED = {
    "none": 0,
    "brown_conrady": 5,
    "inverse_brown_conrady": 5,
    "modified_brown_conrady": 5,
    "kannala_brandt4": 4,
    "ftheta": 1,
}
"""How many of ``CameraIntrinsics.coeffs`` each distortion model reads."""

DISTORTION_MODELS = tuple(COEFFICIENTS_NEEDED)
"""Distortion model names accepted by ``CameraIntrinsics``."""

REALSENSE_MODEL_ORDER = (
    "none",
    "modified_brown_conrady",
    "inverse_brown_conrady",
    "ftheta",
    "brown_conrady",
    "kannala_brandt4",
)
"""``rs2_distortion`` enum values in order (librealsense ``rs_types.h``), for integer models."""

NEWTON_ITERATIONS = 20
NEWTON_STEP = 1e-7  # finite-difference step of the Jacobian, normalized image units
NEWTON_TOLERANCE = 1e-12  # normalized units: 1e-9 px for a 1000 px focal length
_STEP_X = np.array([NEWTON_STEP, 0.0])
_STEP_Y = np.array([0.0, NEWTON_STEP])


@dataclass(frozen=True)
class CameraIntrinsics:
    """Intrinsics of one camera stream at one resolution.

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        fx: Focal length along x in pixels.
        fy: Focal length along y in pixels.
        cx: Principal point x (column) in pixels.
        cy: Principal point y (row) in pixels.
        model: Distortion model, one of ``DISTORTION_MODELS``.
        coeffs: Distortion coefficients (5 for the Brown-Conrady family and librealsense's
            ``coeffs``; the first 4 are used by ``kannala_brandt4``, the first by ``ftheta``).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "none"
    coeffs: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise InputError(f"camera {name} must be a positive whole number of pixels")
        for name in ("fx", "fy", "cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"camera {name} must be a finite number of pixels")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.model not in DISTORTION_MODELS:
            raise InputError(
                f"unknown distortion model {self.model!r}; use one of "
                f"{', '.join(DISTORTION_MODELS)}"
            )
        if not all(math.isfinite(c) for c in self.coeffs):
            raise InputError("distortion coefficients must be finite numbers")
        needed = COEFFICIENTS_NEEDED[self.model]
        if len(self.coeffs) < needed:
            raise InputError(f"distortion model {self.model} needs {needed} coefficients")
        if self.model == "ftheta" and self.coeffs[0] == 0:
            raise InputError("ftheta distortion needs a non-zero first coefficient")

    @property
    def matrix(self) -> np.ndarray:
        """The ``(3, 3)`` camera matrix K (pixels)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (self.width, self.height)

    def opencv_distortion(self) -> np.ndarray:
        """Coefficients in OpenCV's ``(k1, k2, p1, p2, k3)`` layout, shape ``(5,)``.

        Raises:
            InputError: for models OpenCV's pinhole functions do not implement; use
                ``normalize``/``project`` of this class instead.
        """
        if self.model == "none":
            return np.zeros(5)
        if self.model == "brown_conrady":
            return np.asarray(self.coeffs[:5], dtype=np.float64)
        if all(c == 0 for c in self.coeffs):
            return np.zeros(5)
        raise InputError(
            f"distortion model {self.model} has no OpenCV equivalent; undistort with "
            "CameraIntrinsics.normalize"
        )

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project camera-frame points to pixels.

        Args:
            points_cam: ``(N, 3)`` points in the camera frame, metres, z > 0.

        Returns:
            ``(N, 2)`` pixel coordinates (x, y).
        """
        points = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        if np.any(points[:, 2] <= 0):
            raise InputError("cannot project points behind the camera (z <= 0)")
        return self.distort_normalized(points[:, :2] / points[:, 2:3])

    def distort_normalized(self, normalized: np.ndarray) -> np.ndarray:
        """Ideal normalized coordinates ``(N, 2)`` to pixel coordinates ``(N, 2)``."""
        xy = np.asarray(normalized, dtype=np.float64).reshape(-1, 2)
        if self.model in ("brown_conrady", "modified_brown_conrady"):
            xy = _brown_forward(xy, self.coeffs, modified=self.model == "modified_brown_conrady")
        elif self.model == "inverse_brown_conrady":
            xy = _newton_invert(lambda d: _brown_forward(d, self.coeffs, False), xy)
        elif self.model in ("kannala_brandt4", "ftheta"):
            xy = _radial_scale(xy, lambda r: _radial_forward(r, self.model, self.coeffs))
        return np.column_stack([xy[:, 0] * self.fx + self.cx, xy[:, 1] * self.fy + self.cy])

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Undistort pixels to ideal normalized coordinates (X/Z, Y/Z).

        Args:
            pixels: ``(N, 2)`` pixel coordinates (x, y).

        Returns:
            ``(N, 2)`` normalized coordinates; ``(x, y, 1) * Z`` is the camera-frame point at
            depth Z metres.
        """
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        xy = np.column_stack(
            [(pixels[:, 0] - self.cx) / self.fx, (pixels[:, 1] - self.cy) / self.fy]
        )
        if self.model in ("brown_conrady", "modified_brown_conrady"):
            modified = self.model == "modified_brown_conrady"
            return _newton_invert(lambda d: _brown_forward(d, self.coeffs, modified), xy)
        if self.model == "inverse_brown_conrady":
            return _brown_forward(xy, self.coeffs, False)
        if self.model in ("kannala_brandt4", "ftheta"):
            return _radial_scale(xy, lambda r: _radial_inverse(r, self.model, self.coeffs))
        return xy

    def deproject(self, pixels: np.ndarray, depth_m: np.ndarray | float) -> np.ndarray:
        """Camera-frame points of pixels at given depths (distortion removed first).

        Args:
            pixels: ``(N, 2)`` pixel coordinates (x, y).
            depth_m: ``(N,)`` or scalar depth in metres along the optical axis (the Z value a
                RealSense depth image stores, not the ray length).

        Returns:
            ``(N, 3)`` points in the camera frame, metres.
        """
        normalized = self.normalize(pixels)
        depth = np.broadcast_to(np.asarray(depth_m, dtype=np.float64), (len(normalized),))
        return np.column_stack([normalized * depth[:, None], depth])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, units in the key names (the ``camera`` block of calibration.json)."""
        return {
            "width_px": int(self.width),
            "height_px": int(self.height),
            "fx_px": float(self.fx),
            "fy_px": float(self.fy),
            "cx_px": float(self.cx),
            "cy_px": float(self.cy),
            "distortion_model": self.model,
            "distortion_coeffs": [float(c) for c in self.coeffs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraIntrinsics:
        """Inverse of ``to_dict`` (raises ``InputError`` for missing or bad fields)."""
        try:
            return cls(
                width=_whole(data["width_px"], "width_px"),
                height=_whole(data["height_px"], "height_px"),
                fx=float(data["fx_px"]),
                fy=float(data["fy_px"]),
                cx=float(data["cx_px"]),
                cy=float(data["cy_px"]),
                model=str(data["distortion_model"]),
                coeffs=tuple(float(c) for c in data["distortion_coeffs"]),
            )
        except KeyError as err:
            raise InputError(f"camera intrinsics: missing field {err.args[0]!r}") from err
        except (TypeError, ValueError) as err:
            raise InputError(f"camera intrinsics: a field is not a number ({err})") from err


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise InputError(f"camera intrinsics: {name} must be a whole number, got {value!r}")
    return int(value)


def realsense_model_name(model: Any) -> str:
    """Our model name for a librealsense distortion model.

    Accepts the ``pyrealsense2.distortion`` enum (``distortion.brown_conrady``), its integer
    value, or a name such as ``"inverse_brown_conrady"``, ``"RS2_DISTORTION_BROWN_CONRADY"`` or
    ``"Inverse Brown Conrady"``.
    """
    if isinstance(model, (int, np.integer)) and not isinstance(model, bool):
        if not 0 <= int(model) < len(REALSENSE_MODEL_ORDER):
            raise InputError(f"unknown RealSense distortion model number {model}")
        return REALSENSE_MODEL_ORDER[int(model)]
    name = str(model).strip().lower().replace(" ", "_").replace("-", "_")
    for prefix in ("distortion.", "rs2_distortion_"):
        name = name.removeprefix(prefix)
    if name not in DISTORTION_MODELS:
        raise InputError(f"unknown RealSense distortion model {model!r}")
    return name


def intrinsics_from_realsense(
    width: int,
    height: int,
    fx: float,
    fy: float,
    ppx: float,
    ppy: float,
    model: Any,
    coeffs: Sequence[float],
) -> CameraIntrinsics:
    """Factory intrinsics from the fields of a ``pyrealsense2.intrinsics`` object.

    Takes ``profile.as_video_stream_profile().get_intrinsics()`` of the colour stream (aligned
    depth uses the colour intrinsics, shared/research/runtime.md 1.2). The RealSense pixel
    convention (``ppx`` as an offset from the left edge, integer = pixel centre in
    ``rs2_project_point_to_pixel``) is the one used here, so values are copied unchanged.

    Args:
        width: Stream width in pixels.
        height: Stream height in pixels.
        fx: Focal length x in pixels.
        fy: Focal length y in pixels.
        ppx: Principal point x in pixels.
        ppy: Principal point y in pixels.
        model: ``rs2_distortion`` (enum, int or name, see ``realsense_model_name``).
        coeffs: The 5 distortion coefficients.
    """
    return CameraIntrinsics(
        width=int(width),
        height=int(height),
        fx=float(fx),
        fy=float(fy),
        cx=float(ppx),
        cy=float(ppy),
        model=realsense_model_name(model),
        coeffs=tuple(float(c) for c in coeffs),
    )


def intrinsics_from_realsense_object(intrinsics: Any) -> CameraIntrinsics:
    """``intrinsics_from_realsense`` reading the attributes of a ``pyrealsense2.intrinsics``."""
    fields = ("width", "height", "fx", "fy", "ppx", "ppy", "model", "coeffs")
    return intrinsics_from_realsense(*(getattr(intrinsics, name) for name in fields))


def _brown_forward(xy: np.ndarray, coeffs: Sequence[float], modified: bool) -> np.ndarray:
    """Brown-Conrady polynomial on ``(N, 2)`` normalized points (see the module docstring)."""
    k1, k2, p1, p2, k3 = coeffs[:5]
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if modified:  # tangential terms on the radially distorted point (rsutil.h)
        x, y = x * radial, y * radial
        return np.column_stack(
            [x + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)]
        )
    return np.column_stack(
        [
            x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
        ]
    )


def _newton_invert(forward: Any, target: np.ndarray) -> np.ndarray:
    """Solve ``forward(p) = target`` per row: Newton's method, finite-difference Jacobian."""
    p = target.copy()
    for _ in range(NEWTON_ITERATIONS):
        value = forward(p)
        f = value - target
        if np.abs(f).max(initial=0.0) < NEWTON_TOLERANCE:
            break
        jx = (forward(p + _STEP_X) - value) / NEWTON_STEP
        jy = (forward(p + _STEP_Y) - value) / NEWTON_STEP
        det = jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        p = p - np.column_stack(
            [
                (jy[:, 1] * f[:, 0] - jy[:, 0] * f[:, 1]) / det,
                (jx[:, 0] * f[:, 1] - jx[:, 1] * f[:, 0]) / det,
            ]
        )
    return p


def _radial_scale(xy: np.ndarray, mapping: Any) -> np.ndarray:
    """Scale each point's radius r to ``mapping(r)`` (points at the centre stay there)."""
    r = np.hypot(xy[:, 0], xy[:, 1])
    safe = np.maximum(r, 1e-12)
    return xy * (mapping(safe) / safe)[:, None]


def _radial_forward(r: np.ndarray, model: str, coeffs: Sequence[float]) -> np.ndarray:
    if model == "ftheta":
        w = coeffs[0]
        return np.arctan(2 * r * math.tan(w / 2)) / w
    k1, k2, k3, k4 = coeffs[:4]
    theta = np.arctan(r)
    t2 = theta * theta
    return theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


def _radial_inverse(rd: np.ndarray, model: str, coeffs: Sequence[float]) -> np.ndarray:
    if model == "ftheta":
        w = coeffs[0]
        return np.tan(w * rd) / (2 * math.tan(w / 2))
    k1, k2, k3, k4 = coeffs[:4]
    theta = rd.copy()
    for _ in range(NEWTON_ITERATIONS):
        t2 = theta * theta
        f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - rd
        df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + 9 * t2 * k4)))
        theta = theta - f / df
    return np.tan(theta)
