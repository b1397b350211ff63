"""Planar grasps: the one place that defines, encodes and decodes them.

Everything that touches grasps (datasets, losses, evaluation, ONNX export, the runtime) uses this
module, so the constants and conventions cannot drift apart. It needs only NumPy and OpenCV, never
torch, because the edge runtime imports it.

Conventions (paper Section III, eq. 1 and 37):

* A grasp is g = (x, y, θ, w, q), plus the jaw size h that the rectangle needs for metrics.
* (x, y): grasp centre in **pixels** of the image it refers to; x to the right, y down, origin at
  the top-left pixel's top-left corner, pixel centres at integer + 0.5 is *not* used: the pixel
  (row r, column c) has centre (x=c, y=r).
* θ: **radians** in [-π/2, π/2), the angle of the gripper's opening axis measured from the image
  +x axis, **counter-clockwise as seen on screen** (towards -y). This is the OCID-VLG/CROG
  convention (shared/research/datasets.md 1.6). A grasp is symmetric under θ → θ + π.
* w: gripper **opening width in pixels**, measured along θ. h: jaw size in pixels, perpendicular.
* q: grasp quality in [0, 1].

Dense maps (eq. 37) are ``(4, H, W)`` float32 arrays with channels in the order
``GRASP_CHANNELS = ("quality", "cos2", "sin2", "width")``: q, cos 2θ, sin 2θ, and w / width_scale
(width normalised by ``width_scale`` pixels, a constant of the model config).

Model output convention (used identically by training, evaluation, export and runtime):

* ``mask`` outputs are **logits**; probabilities are ``sigmoid(logit)``.
* ``grasp`` outputs are **regressed values, not logits**: the model predicts q, cos 2θ, sin 2θ and
  w / width_scale directly (identity activation) and the Smooth-L1 loss (eq. 39) compares them to
  the target maps as they are. Decoding clips q to [0, 1] and w to >= 0 and takes
  θ = atan2(sin 2θ, cos 2θ) / 2. Nothing applies a sigmoid to grasp channels anywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

GRASP_CHANNELS = ("quality", "cos2", "sin2", "width")
"""Channel order of dense grasp maps and of the model's grasp output (paper eq. 37)."""


@dataclass(frozen=True)
class Grasp:
    """One planar grasp rectangle in image pixels (conventions in the module docstring).

    Attributes:
        x: Centre column in pixels.
        y: Centre row in pixels.
        angle: Opening-axis angle in radians, [-π/2, π/2), counter-clockwise on screen from +x.
        width: Gripper opening in pixels, along ``angle``.
        height: Jaw size in pixels, perpendicular to ``angle``.
        quality: Grasp quality in [0, 1].
    """

    x: float
    y: float
    angle: float
    width: float
    height: float
    quality: float = 1.0

    def corners(self) -> np.ndarray:
        """Return the rectangle's 4 corners as a ``(4, 2)`` float64 array of (x, y) pixels.

        Order: the two corners at -w/2 along the opening axis first, going around the rectangle.
        """
        u = np.array([math.cos(self.angle), -math.sin(self.angle)])  # opening axis, y down
        v = np.array([math.sin(self.angle), math.cos(self.angle)])  # jaw axis
        c = np.array([self.x, self.y])
        hw, hh = self.width / 2.0, self.height / 2.0
        return np.stack(
            [c - u * hw - v * hh, c - u * hw + v * hh, c + u * hw + v * hh, c + u * hw - v * hh]
        )

    def invalid_fields(self) -> list[str]:
        """Names of the fields that are not finite real numbers (empty for a usable grasp)."""
        return [
            key
            for key, value in self.to_dict().items()
            if isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ]

    def to_dict(self) -> dict[str, float]:
        """Plain dict (JSON-ready), angle in radians."""
        return {
            "x": self.x,
            "y": self.y,
            "angle": self.angle,
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
        }


def wrap_angle(theta: float | np.ndarray) -> float | np.ndarray:
    """Wrap angles in radians into [-π/2, π/2) (grasps are symmetric under θ + π)."""
    return (theta + math.pi / 2) % math.pi - math.pi / 2


@dataclass(frozen=True)
class GraspEncoding:
    """How ground-truth rectangles become dense target maps.

    Attributes:
        width_scale: Pixels that map to a normalised width of 1.0; taken from the model config.
        fill_fraction: Fraction of the opening width that is filled around the centre. CROG fills
            the middle half (0.5) with the full jaw height (shared/research/datasets.md 1.7).
        min_fill_px: Smallest filled extent in pixels along either axis, so thin or tiny
            rectangles still leave a footprint.
    """

    width_scale: float
    fill_fraction: float = 0.5
    min_fill_px: float = 2.0


@dataclass(frozen=True)
class GraspDecoding:
    """How dense maps become a ranked list of grasps (peak finding with NMS).

    Attributes:
        width_scale: Pixels per normalised width unit; must equal the encoding's.
        top_n: Maximum number of grasps returned.
        threshold: Minimum (smoothed, mask-gated) quality for a peak.
        min_distance: Peaks closer than this many pixels (Chebyshev) to a stronger one are dropped.
        quality_sigma: Gaussian smoothing of the quality map before peak finding, in pixels
            (GR-ConvNet uses 2.0; 0 disables).
        mask_threshold: With a mask probability map, quality is zeroed where it is below this
            value, because the grasp loss is only defined on the target mask (eq. 38-39).
        jaw_ratio: Jaw size h of decoded rectangles as a fraction of the opening width
            (GR-ConvNet's ``width = length / 2``).
        plateau_tolerance: Relative depth of a peak's plateau: the grasp centre is the centre of
            the 8-connected region around the peak where smoothed q >= peak * (1 - tolerance)
            (see ``decode_grasps``). 0.02 absorbs the float noise and rasterisation ripple (~1 %)
            on the flat top of a blurred fill longer than ~14 px with a jaw of >= 10 px, so the
            whole top counts as one peak, while a smooth peak's region stays tiny (radius ≈ 0.2
            standard deviations of a Gaussian blob, 1 px for a 5 px blob), so it still decodes to
            its maximum, and two modes only merge when the saddle between them is within 2 %.
            Jaws thinner than ~3 * quality_sigma blur into a rounded, rippling ridge that needs
            ~0.08. 0 merges exactly-equal plateaus only.
    """

    width_scale: float
    top_n: int = 5
    threshold: float = 0.2
    min_distance: int = 4
    quality_sigma: float = 2.0
    mask_threshold: float = 0.5
    jaw_ratio: float = 0.5
    plateau_tolerance: float = 0.02


_INSIDE_EPS_PX = 1e-6
"""Slack of the pixel-centre inside test, in pixels: pixel centres that lie on a rectangle edge up
to floating-point round-off (e.g. integer centres with an even extent) count as inside."""


def _check_real(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a real number (int or float), got {value!r} "
            f"of type {type(value).__name__}"
        )


def _check_finite(name: str, value: float) -> None:
    _check_real(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    _check_real(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_grasp(index: int, grasp: Grasp) -> None:
    bad = grasp.invalid_fields()
    if bad:
        raise ValueError(f"grasp {index} has non-finite {', '.join(bad)}: {grasp}")
    if grasp.width < 0 or grasp.height < 0:
        raise ValueError(f"grasp {index} has a negative width or height: {grasp}")


def _rect_pixels(
    shape: tuple[int, int], grasp: Grasp, extent_u: float, extent_v: float
) -> tuple[slice, slice, np.ndarray] | None:
    """Find the pixels whose centres lie in a rotated rectangle centred on ``grasp``.

    Args:
        shape: (H, W) of the canvas.
        grasp: Supplies the centre (x, y) in pixels and the angle in radians.
        extent_u: Full extent in pixels along the opening axis.
        extent_v: Full extent in pixels along the jaw axis.

    Returns:
        ``(rows, cols, inside)``: slices of the rectangle's bounding box clipped to the canvas and
        a boolean mask of that box; None when the box misses the canvas.
    """
    radius = 0.5 * math.hypot(extent_u, extent_v)
    r0, r1 = max(math.floor(grasp.y - radius), 0), min(math.ceil(grasp.y + radius) + 1, shape[0])
    c0, c1 = max(math.floor(grasp.x - radius), 0), min(math.ceil(grasp.x + radius) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    dy = np.arange(r0, r1, dtype=np.float64)[:, None] - grasp.y  # pixel (r, c) has centre (c, r)
    dx = np.arange(c0, c1, dtype=np.float64)[None, :] - grasp.x
    cos_t, sin_t = math.cos(grasp.angle), math.sin(grasp.angle)
    along_u = dx * cos_t - dy * sin_t  # opening axis u = (cos θ, -sin θ) in (x, y), y down
    along_v = dx * sin_t + dy * cos_t  # jaw axis v = (sin θ, cos θ)
    inside = (np.abs(along_u) <= extent_u / 2 + _INSIDE_EPS_PX) & (
        np.abs(along_v) <= extent_v / 2 + _INSIDE_EPS_PX
    )
    return slice(r0, r1), slice(c0, c1), inside


def encode_grasps(
    grasps: Sequence[Grasp], size: tuple[int, int], encoding: GraspEncoding
) -> np.ndarray:
    """Rasterise rectangles into dense target maps.

    Each grasp fills the pixels whose centres lie in a rotated rectangle centred on (x, y) with
    extent ``max(fill_fraction * width, min_fill_px)`` pixels along the opening axis and
    ``max(height, min_fill_px)`` pixels along the jaw axis (edges inclusive). Inside it the
    channels are q, cos 2θ, sin 2θ and width / width_scale; no smoothing is applied.

    Args:
        grasps: Ground-truth grasps in pixels of an image of ``size``.
        size: (H, W) of the maps.
        encoding: Fill and width-normalisation constants.

    Returns:
        ``(4, H, W)`` float32 maps in ``GRASP_CHANNELS`` order. Later grasps overwrite earlier
        ones where they overlap; pixels outside every rectangle are 0 in all channels.

    Raises:
        ValueError: If ``size`` is not two positive ints, an encoding constant is not positive, or
            a grasp has a non-finite value or a negative width or height.
    """
    if len(size) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(f"size must be (H, W) with two positive ints, got {size!r}")
    _check_positive("encoding.width_scale", encoding.width_scale)
    _check_positive("encoding.fill_fraction", encoding.fill_fraction)
    shape = (int(size[0]), int(size[1]))
    maps = np.zeros((len(GRASP_CHANNELS), *shape), dtype=np.float32)
    for index, grasp in enumerate(grasps):
        _check_grasp(index, grasp)
        extent_u = max(encoding.fill_fraction * grasp.width, encoding.min_fill_px)
        extent_v = max(grasp.height, encoding.min_fill_px)
        found = _rect_pixels(shape, grasp, extent_u, extent_v)
        if found is None:
            continue
        rows, cols, inside = found
        values = (
            grasp.quality,
            math.cos(2 * grasp.angle),
            math.sin(2 * grasp.angle),
            grasp.width / encoding.width_scale,
        )
        for channel, value in zip(maps, values, strict=True):
            channel[rows, cols][inside] = value
    return maps


def _real_array(name: str, value: object) -> np.ndarray:
    """``value`` as an array of real numbers (bool, int or float), else a ValueError."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a numeric array, cannot convert it: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be an array of real numbers (float, int or bool), got dtype {array.dtype}"
        )
    return array


def _check_maps(
    grasp_maps: np.ndarray, mask_prob: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the decoder inputs; return them as arrays (maps float32, mask as given)."""
    maps = _real_array("grasp_maps", grasp_maps)
    shape = maps.shape
    if len(shape) != 3 or shape[0] != len(GRASP_CHANNELS):
        raise ValueError(
            f"grasp_maps must have shape (4, H, W) with channels {GRASP_CHANNELS}, got {shape}; "
            "drop the batch dimension and pass channels first"
        )
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"grasp_maps need H, W >= 1 (at least one pixel), got shape {shape}")
    mask = None
    if mask_prob is not None:
        mask = _real_array("mask_prob", mask_prob)
        if mask.shape != shape[1:]:
            raise ValueError(
                f"mask_prob must have shape (H, W) = {shape[1:]} to match grasp_maps, "
                f"got {mask.shape}"
            )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: caught below
        maps = maps.astype(np.float32, copy=False)
    if not np.isfinite(maps).all():
        raise ValueError(
            "grasp_maps contains NaN or infinite values (or values beyond float32's range); "
            "expected finite maps"
        )
    return maps, mask


def _check_decoding(decoding: GraspDecoding, size: tuple[int, int]) -> None:
    """Validate the decoding constants for maps of ``size`` = (H, W)."""
    _check_positive("decoding.width_scale", decoding.width_scale)
    _check_int("decoding.top_n", decoding.top_n, 1)
    _check_int("decoding.min_distance", decoding.min_distance, 0)
    _check_finite("decoding.threshold", decoding.threshold)
    _check_finite("decoding.mask_threshold", decoding.mask_threshold)
    _check_finite("decoding.jaw_ratio", decoding.jaw_ratio)
    if decoding.jaw_ratio < 0:
        raise ValueError(f"decoding.jaw_ratio must be >= 0, got {decoding.jaw_ratio!r}")
    _check_finite("decoding.quality_sigma", decoding.quality_sigma)
    max_sigma = max(size)
    if not 0 <= decoding.quality_sigma <= max_sigma:
        raise ValueError(
            f"decoding.quality_sigma must be in [0, max(H, W)] = [0, {max_sigma}] pixels for maps "
            f"of size (H, W) = {size}, got {decoding.quality_sigma!r}: a wider blur flattens the "
            "whole map, so there is nothing left to find, and its cost grows with sigma"
        )
    _check_real("decoding.plateau_tolerance", decoding.plateau_tolerance)
    if not 0 <= decoding.plateau_tolerance < 1:
        raise ValueError(
            f"decoding.plateau_tolerance must be in [0, 1), got {decoding.plateau_tolerance!r}"
        )


_FLOOD_FLAGS = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
"""cv2.floodFill flags: 8-connectivity, compare with the seed value, write 1 into the mask only."""


@dataclass(frozen=True)
class _Peak:
    """A decoded peak in pixels of the quality map.

    Attributes:
        x: Centre column (sub-pixel).
        y: Centre row (sub-pixel).
        row: Row of the pixel that angle and width are read from.
        col: Column of that pixel.
        quality: Smoothed quality at the peak, the value that ranked it.
    """

    x: float
    y: float
    row: int
    col: int
    quality: float


def _plateau_centre(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """Centre (x, y) of a component given its pixels' columns ``xs`` and rows ``ys``.

    Across the component's principal axis it is the centroid; along it, the midpoint of the
    component's extent. A long blurred fill is a ridge whose thickness ripples with the
    rasterisation of its edges (a near-vertical rectangle's two edges step at different rows), and
    the plain centroid follows the thicker stretch by up to ~2.5 px; the ends of the ridge, where
    the blur falls off steeply, do not move. For a compact blob this is its centroid up to
    sub-pixel round-off.
    """
    mx, my = float(xs.mean()), float(ys.mean())
    dx, dy = xs - mx, ys - my
    phi = 0.5 * math.atan2(2.0 * float(dx @ dy), float(dx @ dx - dy @ dy))
    along = dx * math.cos(phi) + dy * math.sin(phi)
    mid = 0.5 * float(along.min() + along.max())
    return mx + mid * math.cos(phi), my + mid * math.sin(phi)


def _find_peaks(quality: np.ndarray, decoding: GraspDecoding) -> list[_Peak]:
    """Plateau-aware local maxima above the threshold, strongest first.

    Candidates are pixels equal to the maximum of their ``(2 * max(min_distance, 1) + 1)`` square
    window with q > threshold, visited in descending q (ties in row-major order). For each, the
    8-connected component of ``{q >= peak * (1 - plateau_tolerance)}`` containing it is flood
    filled. A candidate is dropped when its component touches the component of any earlier
    candidate: it is then part of an already-visited plateau (including one whose earlier
    candidate lost the NMS), or it sits on the flank of a stronger peak that its component climbs
    to. Otherwise the centre is ``_plateau_centre`` of the component and angle/width are read at
    the component pixel nearest to it; a centre more than 1 px from every component pixel (a
    curved or ring-shaped component) moves onto that pixel, so it is never off the component.
    Last, a centre within ``min_distance`` pixels (Chebyshev) of an accepted one is dropped.

    Args:
        quality: ``(H, W)`` float32 smoothed quality; read only.
        decoding: Supplies threshold, min_distance, top_n and plateau_tolerance.

    Returns:
        Up to top_n peaks. Every accepted component's maximum is its own peak's quality.
    """
    height, width = quality.shape
    # >= 3 x 3: skips flank pixels cheaply. A radius of max(H, W) already spans the whole map, so
    # larger min_distance values give the same maxima and are capped (no giant kernel).
    radius = min(max(int(decoding.min_distance), 1), max(height, width))
    size = 2 * radius + 1
    local_max = cv2.dilate(quality, np.ones((size, size), np.uint8))
    rows, cols = np.nonzero((quality >= local_max) & (quality > decoding.threshold))
    order = np.argsort(-quality[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    used = np.zeros((height, width), dtype=bool)  # union of visited components
    fill = np.zeros((height + 2, width + 2), dtype=np.uint8)  # floodFill scratch, 1 px border
    peaks: list[_Peak] = []
    while rows.size and len(peaks) < decoding.top_n:
        r, c = int(rows[0]), int(cols[0])
        rows, cols = rows[1:], cols[1:]
        value = float(quality[r, c])
        # FIXED_RANGE keeps seed - loDiff <= q <= seed + upDiff; upDiff is unbounded.
        _, _, _, (x0, y0, w, h) = cv2.floodFill(
            quality, fill, (c, r), 0, value * decoding.plateau_tolerance, math.inf, _FLOOD_FLAGS
        )
        box = (slice(y0, y0 + h), slice(x0, x0 + w))
        component = fill[1 + y0 : 1 + y0 + h, 1 + x0 : 1 + x0 + w].astype(bool)
        fill[1 + y0 : 1 + y0 + h, 1 + x0 : 1 + x0 + w] = 0
        merged = bool((used[box] & component).any())
        used[box] |= component
        inside = ~used[rows, cols]
        rows, cols = rows[inside], cols[inside]
        if merged:
            continue
        ys, xs = np.nonzero(component)
        cx, cy = _plateau_centre(xs, ys)
        nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        pr, pc = int(ys[nearest]), int(xs[nearest])
        if (pr - cy) ** 2 + (pc - cx) ** 2 > 1.0:
            cy, cx = float(pr), float(pc)
        x, y = x0 + cx, y0 + cy
        if any(max(abs(x - p.x), abs(y - p.y)) <= decoding.min_distance for p in peaks):
            continue
        peaks.append(_Peak(x, y, y0 + pr, x0 + pc, value))
    return peaks


def decode_grasps(
    grasp_maps: np.ndarray, decoding: GraspDecoding, mask_prob: np.ndarray | None = None
) -> list[Grasp]:
    """Turn dense grasp maps into grasps ranked by quality, strongest first.

    Steps: q = clip(quality, 0, 1); q = 0 where ``mask_prob < mask_threshold`` or ``mask_prob`` is
    NaN or infinite; Gaussian blur with ``quality_sigma`` pixels (skipped when 0); candidate peaks
    are pixels equal to the maximum of their ``(2 * max(min_distance, 1) + 1)`` square window with
    smoothed q > ``threshold``, strongest first. Peaks are **plateau-aware**: a filled extent longer
    than about 14 px (with quality_sigma = 2), or a flat-topped network output, blurs into a flat
    top with no unique maximum, so each candidate stands for the 8-connected region where
    smoothed q >= peak * (1 - ``plateau_tolerance``) around it. The grasp centre (x, y) is that
    region's centre in sub-pixels: its centroid across the region's principal axis and the midpoint
    of its extent along it (robust to the ripple of rasterised edges), moved onto the nearest region
    pixel if it lies more than 1 px off the region. A candidate whose region touches an earlier
    one's is dropped, so one plateau gives one grasp; accepted centres are kept more than
    ``min_distance`` pixels (Chebyshev) apart. Angle = wrap(atan2(sin 2θ, cos 2θ) / 2) in radians
    and width = max(w, 0) * width_scale in pixels are read from the unsmoothed maps at the region
    pixel nearest to the centre (never a pixel off the region); height = jaw_ratio * width;
    quality = the **smoothed, gated** quality at the peak (the value that ranked it). A single-pixel
    or smooth peak decodes to its maximum pixel (x = column, y = row) up to sub-pixel symmetry.

    Args:
        grasp_maps: ``(4, H, W)`` raw grasp output or target maps (``GRASP_CHANNELS`` order),
            H, W >= 1, all finite.
        decoding: Peak-finding constants: ``top_n`` (>= 1) and ``min_distance`` (>= 0) are ints,
            the others real numbers, ``quality_sigma`` at most max(H, W).
        mask_prob: Optional ``(H, W)`` target-mask probability in [0, 1]; quality is zeroed where
            it is below ``decoding.mask_threshold``. Non-finite values (NaN, ±inf) count as below
            the threshold, so a broken mask pixel never lets an ungated grasp through.

    Returns:
        At most ``decoding.top_n`` grasps in map pixels; an empty list when no peak is above the
        threshold (never a made-up grasp).

    Raises:
        ValueError: If the maps or mask are not real-valued or have the wrong shape, the maps are
            empty or not finite, or a decoding constant has the wrong type or is out of range.
    """
    maps, mask = _check_maps(grasp_maps, mask_prob)
    _check_decoding(decoding, maps.shape[1:])
    quality = np.clip(maps[0], 0.0, 1.0)
    if mask is not None:
        quality[~(np.isfinite(mask) & (mask >= decoding.mask_threshold))] = 0.0
    if decoding.quality_sigma > 0:
        quality = cv2.GaussianBlur(quality, (0, 0), decoding.quality_sigma)
    grasps = []
    for peak in _find_peaks(quality, decoding):
        r, c = peak.row, peak.col
        angle = float(wrap_angle(math.atan2(maps[2, r, c], maps[1, r, c]) / 2))
        width = max(float(maps[3, r, c]), 0.0) * decoding.width_scale
        grasps.append(Grasp(peak.x, peak.y, angle, width, decoding.jaw_ratio * width, peak.quality))
    return grasps
