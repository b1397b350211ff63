"""Pictures for the console: the last detection drawn on its frame, and live camera frames.

Images are ``(H, W, 3)`` uint8 RGB in, encoded JPEG or PNG bytes out (OpenCV, BGR only inside
``encode_image``). The mask and ranked grasps are drawn with
``langgrasp.detector.visualize.draw_overlay`` (rank 1 = best, thick edges = the jaws).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from langgrasp.detector.visualize import draw_overlay
from langgrasp.errors import InputError

if TYPE_CHECKING:
    from langgrasp.runtime.engine import Detection

IMAGE_FORMATS = {"jpeg": (".jpg", "image/jpeg"), "png": (".png", "image/png")}
"""Format name -> (OpenCV encoder extension, media type)."""

TITLE_CHARS = 60
"""Longest title drawn on a picture (the console shows the full command beside it)."""


def media_type(fmt: str) -> str:
    """HTTP media type of an ``IMAGE_FORMATS`` name."""
    return IMAGE_FORMATS[fmt][1]


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", jpeg_quality: int = 85) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB image as JPEG or PNG bytes.

    Raises:
        InputError: an unknown format, or an image OpenCV cannot encode.
    """
    if fmt not in IMAGE_FORMATS:
        raise InputError(f"unknown image format {fmt!r}; use one of {', '.join(IMAGE_FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, data = cv2.imencode(IMAGE_FORMATS[fmt][0], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise InputError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return data.tobytes()


def detection_picture(
    rgb: np.ndarray, detection: Detection | None, title: str | None = None
) -> np.ndarray:
    """``rgb`` with the detection's target mask and ranked grasps drawn on it.

    Args:
        rgb: ``(H, W, 3)`` uint8 frame (the detection's own frame, or a live one).
        detection: The detection; None, or one made on a frame of another size, draws only the
            title.
        title: Text in the top-left corner (shortened to ``TITLE_CHARS``), or None.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    if title is not None and len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 3] + "..."
    if detection is None or detection.mask_prob.shape != rgb.shape[:2]:
        return draw_overlay(rgb, title=title)
    return draw_overlay(rgb, mask_prob=detection.mask_prob, grasps=detection.grasps, title=title)
