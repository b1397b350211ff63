"""Overlay pictures of masks and grasps, used by the demo and the runtime.

Only NumPy and OpenCV are used (the runtime imports this module). Images are RGB uint8 in and out;
:func:`save_image` converts to OpenCV's BGR order only when writing the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from langgrasp.detector.grasp import Grasp
from langgrasp.detector.preprocess import validate_rgb
from langgrasp.errors import InputError

RGB = tuple[int, int, int]

SUBPIXEL_BITS = 4
"""Fractional bits of OpenCV drawing coordinates (``shift``), so grasps are drawn at 1/16 px."""

ELLIPSIS = "..."

MAX_COORD = (np.iinfo(np.int32).max >> SUBPIXEL_BITS) - 1
"""Largest |x| or |y| of a drawn grasp corner in pixels: OpenCV takes int32 fixed-point
coordinates with ``SUBPIXEL_BITS`` fractional bits (about 1.3e8 px)."""

_GEOMETRY = ("x", "y", "angle", "width", "height")
"""Grasp fields that decide where its rectangle is drawn."""


@dataclass(frozen=True)
class OverlayStyle:
    """Colours (RGB bytes), line thicknesses (pixels) and text sizes of :func:`draw_overlay`.

    Attributes:
        mask_rgb: Tint colour of the predicted target region.
        mask_alpha: Opacity of the tint in [0, 1].
        gt_rgb: Colour of ground-truth grasp rectangles.
        gt_thickness: Line thickness of ground-truth rectangles.
        pred_rgb: Colour of predicted grasp rectangles.
        jaw_thickness: Thickness of the jaw edges (the two edges at ±width/2 along the opening
            axis), thicker than ``side_thickness`` so the opening direction is visible.
        side_thickness: Thickness of the other two edges of predicted rectangles.
        font_scale: Hershey font scale of rank numbers and the title.
        text_rgb: Colour of the title and rank numbers.
        text_bg_rgb: Background box colour behind the title and the outline of rank numbers.
        text_margin: Padding in pixels around the title inside its box.
    """

    mask_rgb: RGB = (0, 170, 255)
    mask_alpha: float = 0.45
    gt_rgb: RGB = (0, 255, 0)
    gt_thickness: int = 1
    pred_rgb: RGB = (255, 40, 200)
    jaw_thickness: int = 3
    side_thickness: int = 1
    font_scale: float = 0.5
    text_rgb: RGB = (255, 255, 255)
    text_bg_rgb: RGB = (20, 20, 20)
    text_margin: int = 4


DEFAULT_STYLE = OverlayStyle()
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fixed(pts: np.ndarray) -> np.ndarray:
    """(N, 2) float pixel coordinates -> int32 fixed point for OpenCV's ``shift`` argument."""
    return np.round(pts * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _line(img: np.ndarray, p: np.ndarray, q: np.ndarray, rgb: RGB, thickness: int) -> None:
    a, b = _fixed(np.stack([p, q]))
    cv2.line(
        img,
        tuple(int(v) for v in a),
        tuple(int(v) for v in b),
        rgb,
        thickness,
        cv2.LINE_AA,
        SUBPIXEL_BITS,
    )


def _grasp_corners(grasps: Iterable[Grasp], name: str) -> list[np.ndarray]:
    """Validate ``grasps`` and return each one's ``(4, 2)`` corners in pixels.

    Raises:
        InputError: If ``grasps`` is not an iterable of :class:`Grasp`, or a grasp has a
            non-numeric or non-finite x, y, angle, width or height, or a corner farther than
            ``MAX_COORD`` pixels from the origin along x or y.
    """
    if isinstance(grasps, Grasp) or not isinstance(grasps, Iterable):
        raise InputError(
            f"expected {name} as an iterable (list, tuple, generator) of Grasp objects, "
            f"got {type(grasps).__name__}"
        )
    corners = []
    for index, g in enumerate(grasps):
        if not isinstance(g, Grasp):
            raise InputError(
                f"expected {name} as a sequence of Grasp objects, "
                f"got an item of type {type(g).__name__} at {name}[{index}]"
            )
        bad = [key for key in g.invalid_fields() if key in _GEOMETRY]  # quality is not drawn
        if bad:
            raise InputError(
                f"{name}[{index}] has a non-finite or non-numeric {', '.join(bad)}; expected "
                f"finite numbers in pixels and radians, got {g}"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # huge values: caught just below
            c = np.asarray(g.corners(), dtype=np.float64)
        if not (np.isfinite(c).all() and np.abs(c).max() <= MAX_COORD):
            raise InputError(
                f"{name}[{index}] has corners outside the drawable range; expected finite corner "
                f"coordinates within ±{MAX_COORD} px (OpenCV's int32 fixed point), got {g}"
            )
        corners.append(c)
    return corners


def _draw_label(img: np.ndarray, text: str, origin: tuple[int, int], style: OverlayStyle) -> None:
    """Draw ``text`` with its baseline-left at ``origin``, outlined for contrast."""
    outline = style.side_thickness + 2
    cv2.putText(img, text, origin, FONT, style.font_scale, style.text_bg_rgb, outline, cv2.LINE_AA)
    cv2.putText(img, text, origin, FONT, style.font_scale, style.text_rgb, 1, cv2.LINE_AA)


def _draw_title(img: np.ndarray, title: str, style: OverlayStyle) -> None:
    """Title at the top-left on a filled dark box, shortened with '...' to fit the image width."""
    text = title.encode("ascii", "replace").decode("ascii")  # Hershey fonts are ASCII only
    if not text:
        return
    m = style.text_margin
    max_width = img.shape[1] - 2 * m
    shown = text
    while shown and cv2.getTextSize(shown, FONT, style.font_scale, 1)[0][0] > max_width:
        shown = shown[: -len(ELLIPSIS) - 1] + ELLIPSIS if len(shown) > len(ELLIPSIS) else ""
    if not shown:
        return
    (tw, th), baseline = cv2.getTextSize(shown, FONT, style.font_scale, 1)
    cv2.rectangle(img, (0, 0), (tw + 2 * m, th + baseline + 2 * m), style.text_bg_rgb, cv2.FILLED)
    cv2.putText(img, shown, (m, m + th), FONT, style.font_scale, style.text_rgb, 1, cv2.LINE_AA)


def draw_overlay(
    rgb: np.ndarray,
    *,
    mask_prob: np.ndarray | None = None,
    grasps: Iterable[Grasp] = (),
    gt_grasps: Iterable[Grasp] = (),
    title: object = None,
    mask_threshold: float = 0.5,
    style: OverlayStyle = DEFAULT_STYLE,
) -> np.ndarray:
    """Draw the target mask, ground-truth and predicted grasps, and a title onto a copy of ``rgb``.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image; not modified.
        mask_prob: Optional ``(H, W)`` target-mask probability in [0, 1] (or a bool mask). Pixels
            with ``mask_prob >= mask_threshold`` are tinted and the region's outline is drawn.
        grasps: Predicted grasps in pixels of ``rgb``, ranked best first (any iterable, e.g. a
            list or a generator); drawn with their rank number (1 = best) and thick jaw edges.
        gt_grasps: Ground-truth grasps in pixels of ``rgb`` (any iterable), drawn as thin
            rectangles.
        title: Optional text in the top-left corner; any object is shown as ``str(title)``
            (ASCII; other characters show as '?'). None or an empty string draws no title.
        mask_threshold: Probability at which a pixel counts as target.
        style: Colours and sizes.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.

    Raises:
        InputError: If ``rgb`` is not an RGB uint8 image, ``mask_prob`` does not have shape
            (H, W) or is not numeric, ``grasps``/``gt_grasps`` is not an iterable of
            :class:`Grasp`, or a grasp has a non-finite value or a corner beyond ``MAX_COORD``
            pixels (the message names the list and the index).
    """
    validate_rgb(rgb)
    pred_corners = _grasp_corners(grasps, "grasps")
    gt_corners = _grasp_corners(gt_grasps, "gt_grasps")
    out = np.ascontiguousarray(rgb).copy()

    if mask_prob is not None:
        prob = np.asarray(mask_prob)
        if prob.shape != rgb.shape[:2]:
            raise InputError(
                f"expected mask_prob of shape {rgb.shape[:2]} (H, W) like the image, "
                f"got {prob.shape}"
            )
        if prob.dtype.kind not in "biuf":
            raise InputError(
                f"expected mask_prob as real numbers (float, int or bool), got dtype {prob.dtype}"
            )
        region = prob >= mask_threshold
        tint = np.asarray(style.mask_rgb, dtype=np.float32)
        blended = (
            out[region].astype(np.float32) * (1.0 - style.mask_alpha) + tint * style.mask_alpha
        )
        out[region] = np.round(blended).astype(np.uint8)
        contours, _ = cv2.findContours(
            region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, style.mask_rgb, 1, cv2.LINE_AA)

    for corners in gt_corners:
        cv2.polylines(
            out,
            [_fixed(corners)],
            True,
            style.gt_rgb,
            style.gt_thickness,
            cv2.LINE_AA,
            SUBPIXEL_BITS,
        )

    # Draw the best grasp last so it stays on top.
    for rank in range(len(pred_corners), 0, -1):
        c = pred_corners[rank - 1]  # c[0]-c[1] and c[2]-c[3] are the jaws (grasp.py order)
        _line(out, c[1], c[2], style.pred_rgb, style.side_thickness)
        _line(out, c[3], c[0], style.pred_rgb, style.side_thickness)
        _line(out, c[0], c[1], style.pred_rgb, style.jaw_thickness)
        _line(out, c[2], c[3], style.pred_rgb, style.jaw_thickness)
        label = str(rank)
        (tw, th), _ = cv2.getTextSize(label, FONT, style.font_scale, 1)
        centre = c.mean(axis=0)
        _draw_label(out, label, (round(centre[0] - tw / 2), round(centre[1] + th / 2)), style)

    if title is not None:
        _draw_title(out, str(title), style)
    return out


def _can_write(ext: str) -> bool:
    """Whether OpenCV has a writer for files ending in ``ext`` (e.g. ".png")."""
    try:
        return bool(cv2.haveImageWriter(f"x{ext}"))
    except cv2.error:  # codecs compiled in but disabled (OpenEXR) raise instead of returning False
        return False


def save_image(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB image to ``path`` (PNG recommended), creating parent directories.

    Args:
        path: Destination file; its extension picks the format (e.g. ``.png``, ``.jpg``).
        rgb: ``(H, W, 3)`` uint8 RGB image.

    Returns:
        The path written, as a :class:`~pathlib.Path`.

    Raises:
        InputError: If ``rgb`` is not an RGB uint8 image or the extension is not an image format
            OpenCV can write.
        OSError: If the file cannot be written.
    """
    validate_rgb(rgb)
    out_path = Path(path)
    ext = out_path.suffix.lower()
    if not ext or not _can_write(ext):
        raise InputError(
            f"cannot write an image to {str(out_path)!r}: expected a file extension of an image "
            f"format OpenCV can write such as .png or .jpg, got {ext or 'no extension'!r}"
        )
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"OpenCV could not encode the image as {ext}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(encoded.tobytes())  # imencode + write: works for non-ASCII paths too
    return out_path
