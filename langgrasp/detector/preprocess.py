"""Image preprocessing shared by training, evaluation and the runtime.

Every path that feeds the model (dataset loaders, the evaluator, the ONNX runtime) goes through
:class:`Letterbox` and :func:`normalize`, so geometry and colour statistics cannot drift apart.
Only NumPy and OpenCV are used (the edge runtime imports this module; it must never load torch).

Letterbox affine (image pixels -> model-input pixels, both with pixel (row r, column c) centred at
(x=c, y=r) as in :mod:`langgrasp.detector.grasp`)::

    x_model = s * x_image + offset_x        offset_x = pad_left + (s - 1) / 2
    y_model = s * y_image + offset_y        offset_y = pad_top + (s - 1) / 2

with the uniform scale ``s = size / max(H, W)``. The half-pixel term ``(s - 1) / 2`` is the
pixel-centre convention of ``cv2.resize`` (source pixel centres sit at ``(x + 0.5) / s - 0.5``), so
points, grasps, masks and images stay aligned. Lengths (grasp width and jaw size) scale by ``s``;
angles are unchanged because the scale is uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel RGB mean of OpenAI CLIP, on [0, 1] values (open_clip ``OPENAI_DATASET_MEAN``,
src/open_clip/constants.py)."""

CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel RGB standard deviation of OpenAI CLIP (open_clip ``OPENAI_DATASET_STD``)."""

UINT8_MAX = 255.0
"""Largest uint8 value; RGB bytes are divided by it to get [0, 1] values."""

PAD_RGB = tuple(round(m * UINT8_MAX) for m in CLIP_MEAN)
"""Default letterbox fill (123, 117, 104): the CLIP mean in bytes, so padding normalises to about 0.
CROG pads with the same colour (shared/research/datasets.md 1.8)."""

DEPTH_INVALID = 0.0
"""Depth value in metres that marks missing measurements (RealSense convention); used as padding."""


def validate_rgb(arr: object, name: str = "image") -> np.ndarray:
    """Check that ``arr`` is an RGB image and return it unchanged.

    Args:
        arr: Candidate image; must be a non-empty ``(H, W, 3)`` uint8 NumPy array (RGB order).
        name: What to call the array in error messages.

    Returns:
        The same array object.

    Raises:
        InputError: If ``arr`` is not a NumPy array, has the wrong shape or dtype, or is empty. The
            message states what was expected and what was received.
    """
    expected = f"expected {name} as an RGB image of shape (H, W, 3) and dtype uint8"
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{expected}, got {type(arr).__name__}")
    got = f"shape {tuple(arr.shape)} {arr.dtype}"
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"{expected}, got {got}")
    if arr.size == 0:
        raise InputError(f"{expected}, got an empty image ({got})")
    return arr


def _check_hw(arr: np.ndarray, hw: tuple[int, int], what: str) -> None:
    """Raise InputError unless ``arr`` is a NumPy array whose first two dims are ``hw``."""
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or arr.shape[:2] != hw:
        shape = tuple(arr.shape) if isinstance(arr, np.ndarray) else type(arr).__name__
        raise InputError(
            f"expected a {what} of shape {hw} (H, W) this letterbox was fit to, got {shape}"
        )


@dataclass(frozen=True)
class Letterbox:
    """Uniform resize plus centred padding from an ``(H, W)`` image to a ``size`` x ``size`` input.

    The affine is given in the module docstring. Build instances with :meth:`fit`.

    Attributes:
        height: Source image height H in pixels.
        width: Source image width W in pixels.
        size: Side of the square model input S in pixels.
        scale: Uniform scale s = S / max(H, W).
        resized_height: Height of the resized image inside the square, round(H * s), pixels.
        resized_width: Width of the resized image inside the square, round(W * s), pixels.
        pad_top: Rows of padding above the resized image.
        pad_left: Columns of padding left of the resized image.
    """

    height: int
    width: int
    size: int
    scale: float
    resized_height: int
    resized_width: int
    pad_top: int
    pad_left: int

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        """Letterbox for an image of ``height`` x ``width`` pixels into a ``size`` square.

        Args:
            height: Source image height H in pixels.
            width: Source image width W in pixels.
            size: Side S of the square model input in pixels.

        Raises:
            InputError: If any argument is not a positive integer.
        """
        for label, value in (("height", height), ("width", width), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise InputError(f"letterbox {label} must be a positive integer, got {value!r}")
        scale = size / max(height, width)
        rh = min(size, max(1, round(height * scale)))
        rw = min(size, max(1, round(width * scale)))
        return cls(
            int(height), int(width), int(size), scale, rh, rw, (size - rh) // 2, (size - rw) // 2
        )

    @property
    def offset(self) -> tuple[float, float]:
        """Translation (offset_x, offset_y) of the image -> model affine, in model pixels."""
        half = (self.scale - 1.0) / 2.0
        return self.pad_left + half, self.pad_top + half

    @property
    def matrix(self) -> np.ndarray:
        """``(2, 3)`` float64 affine from image to model pixels (``cv2.warpAffine`` layout)."""
        ox, oy = self.offset
        return np.array([[self.scale, 0.0, ox], [0.0, self.scale, oy]])

    @property
    def inverse_matrix(self) -> np.ndarray:
        """``(2, 3)`` float64 affine from model to image pixels, e.g. to warp output maps back."""
        return cv2.invertAffineTransform(self.matrix)

    def content_mask(self) -> np.ndarray:
        """``(S, S)`` bool: True on model pixels that come from the image, False on padding."""
        mask = np.zeros((self.size, self.size), dtype=bool)
        rows = slice(self.pad_top, self.pad_top + self.resized_height)
        cols = slice(self.pad_left, self.pad_left + self.resized_width)
        mask[rows, cols] = True
        return mask

    def _resize(self, arr: np.ndarray, interpolation: int, fill: object) -> np.ndarray:
        arr = np.ascontiguousarray(arr)
        resized = cv2.resize(
            arr, (self.resized_width, self.resized_height), interpolation=interpolation
        )
        if resized.ndim < arr.ndim:  # cv2 drops a trailing channel axis of length 1
            resized = resized[..., None]
        out = np.empty((self.size, self.size, *arr.shape[2:]), dtype=arr.dtype)
        out[...] = fill
        out[
            self.pad_top : self.pad_top + self.resized_height,
            self.pad_left : self.pad_left + self.resized_width,
        ] = resized
        return out

    def image(self, rgb: np.ndarray, fill: Sequence[int] = PAD_RGB) -> np.ndarray:
        """Letterbox an RGB image.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB image of this letterbox's source size.
            fill: RGB padding colour in bytes (default: CLIP mean, which normalises to about 0).

        Returns:
            ``(S, S, 3)`` uint8 image; ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR``
            otherwise.
        """
        validate_rgb(rgb)
        _check_hw(rgb, (self.height, self.width), "RGB image")
        interpolation = cv2.INTER_AREA if self.scale < 1.0 else cv2.INTER_LINEAR
        return self._resize(rgb, interpolation, np.asarray(fill, dtype=np.uint8))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """Letterbox a target mask with nearest-neighbour sampling.

        Args:
            mask: ``(H, W)`` bool (or 0/1 integer) mask.

        Returns:
            ``(S, S)`` bool mask; padding is False.
        """
        _check_hw(mask, (self.height, self.width), "mask")
        if mask.ndim != 2:
            raise InputError(f"expected a 2-D mask of shape (H, W), got shape {mask.shape}")
        out = self._resize(mask.astype(np.uint8), cv2.INTER_NEAREST_EXACT, 0)
        return out.astype(bool)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        """Letterbox a depth map with nearest-neighbour sampling (no mixing across depth edges).

        Args:
            depth: ``(H, W)`` float depth in metres; 0 marks invalid pixels.

        Returns:
            ``(S, S)`` float32 depth in metres; padding is 0 (invalid).
        """
        _check_hw(depth, (self.height, self.width), "depth map")
        if depth.ndim != 2:
            raise InputError(f"expected a 2-D depth map of shape (H, W), got shape {depth.shape}")
        return self._resize(depth.astype(np.float32), cv2.INTER_NEAREST_EXACT, DEPTH_INVALID)

    def points_to_model(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` (x, y) image pixels to model pixels (float64, same shape)."""
        pts = _as_points(xy)
        return pts * self.scale + np.asarray(self.offset)

    def points_to_image(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` (x, y) model pixels back to image pixels (float64, same shape)."""
        pts = _as_points(xy)
        return (pts - np.asarray(self.offset)) / self.scale

    def grasps_to_model(self, grasps: Sequence[Grasp]) -> list[Grasp]:
        """Map grasps from image pixels to model pixels (centre, width and jaw size scaled).

        Angles are unchanged because the scale is uniform; quality is kept.
        """
        ox, oy = self.offset
        s = self.scale
        return [
            replace(g, x=g.x * s + ox, y=g.y * s + oy, width=g.width * s, height=g.height * s)
            for g in grasps
        ]

    def grasps_to_image(self, grasps: Sequence[Grasp]) -> list[Grasp]:
        """Map grasps from model pixels back to image pixels (inverse of ``grasps_to_model``)."""
        ox, oy = self.offset
        s = self.scale
        return [
            replace(g, x=(g.x - ox) / s, y=(g.y - oy) / s, width=g.width / s, height=g.height / s)
            for g in grasps
        ]


def _as_points(xy: np.ndarray) -> np.ndarray:
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim == 0 or pts.shape[-1] != 2:
        raise InputError(
            f"expected points as an array of shape (..., 2) holding (x, y), got {pts.shape}"
        )
    return pts


def normalize(
    rgb: np.ndarray, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> np.ndarray:
    """CLIP-style normalisation: ``(rgb / 255 - mean) / std``, channels first.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image (usually the ``(S, S, 3)`` letterboxed input).
        mean: Per-channel mean of [0, 1] RGB values.
        std: Per-channel standard deviation of [0, 1] RGB values; all > 0.

    Returns:
        ``(3, H, W)`` float32 array, C-contiguous.
    """
    validate_rgb(rgb)
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_arr = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    if np.any(std_arr <= 0):
        raise InputError(f"expected a positive std per channel, got {tuple(std)}")
    chw = rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(UINT8_MAX)
    return np.ascontiguousarray((chw - mean_arr) / std_arr)


def prepare_image(
    rgb: np.ndarray,
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox and normalise a camera image for the model.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        size: Side S of the square model input in pixels.
        mean: Per-channel mean of [0, 1] RGB values.
        std: Per-channel standard deviation of [0, 1] RGB values.

    Returns:
        The ``(3, S, S)`` float32 model input and the :class:`Letterbox` that maps model-pixel
        outputs back to image pixels.
    """
    validate_rgb(rgb)
    box = Letterbox.fit(rgb.shape[0], rgb.shape[1], size)
    return normalize(box.image(rgb), mean, std), box
