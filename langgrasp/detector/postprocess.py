"""From network outputs to results in image pixels: one code path for PyTorch and ONNX.

The PyTorch ``Predictor``, the batched evaluator and the torch-free runtime engine all call
:func:`maps_to_image` (through :func:`postprocess` in the engine) on one image's maps, so mask
gating, letterbox back-mapping and grasp decoding cannot drift apart between training-side
evaluation and the robot. Only NumPy and OpenCV are used (the runtime imports this module).

Steps, on the model-input grid until the last one:

1. letterbox padding is not part of the image: mask probability 0 there, so no grasp comes from
   it (``decode_grasps`` gates quality by the mask);
2. ``decode_grasps`` on the grasp maps, gated by that probability;
3. grasps and the probability map are mapped back to image pixels with the letterbox inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from langgrasp.detector.grasp import GRASP_CHANNELS, Grasp, GraspDecoding, decode_grasps
from langgrasp.detector.preprocess import Letterbox
from langgrasp.errors import InputError

TARGET_NOT_FOUND = "target not found"
"""Start of the reason of an empty result when no image pixel reaches the mask threshold."""

NO_GRASP_PEAK = "no grasp peak"
"""Start of the reason of an empty result when the target was found but no quality peak on it
passed the decoding threshold."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function of mask logits, float32, without overflow for any input magnitude."""
    x = np.asarray(logits, dtype=np.float32)
    return np.exp(-np.logaddexp(np.float32(0.0), -x)).astype(np.float32, copy=False)


def maps_to_image(
    mask_prob: np.ndarray, grasp_maps: np.ndarray, box: Letterbox, decoding: GraspDecoding
) -> tuple[list[Grasp], np.ndarray]:
    """Decode one sample's model-input maps into grasps and a mask in the original image's pixels.

    Letterbox padding is not part of the image, so the mask is zeroed there first and no mask,
    hence no grasp (``decode_grasps`` gates quality by the mask), can come from it.

    Args:
        mask_prob: ``(S, S)`` mask probabilities on the model-input grid.
        grasp_maps: ``(4, S, S)`` grasp maps on the same grid (``GRASP_CHANNELS`` order).
        box: The letterbox that mapped the ``(H, W)`` image to the model input.
        decoding: Peak-finding constants (``top_n``, ``mask_threshold``, ...).

    Returns:
        ``(grasps, mask_image)``: ranked grasps (best first) in image pixels, and the ``(H, W)``
        float32 mask probability warped back to the image (bilinear).

    Raises:
        InputError: Maps whose shape does not fit the letterbox's model input.
    """
    size = box.size
    if np.shape(mask_prob) != (size, size):
        raise InputError(
            f"the mask must have shape ({size}, {size}) (the model input), got "
            f"{np.shape(mask_prob)}"
        )
    if np.shape(grasp_maps) != (len(GRASP_CHANNELS), size, size):
        raise InputError(
            f"the grasp maps must have shape ({len(GRASP_CHANNELS)}, {size}, {size}), got "
            f"{np.shape(grasp_maps)}"
        )
    gated = np.where(box.content_mask(), mask_prob, 0.0).astype(np.float32)
    grasps = box.grasps_to_image(decode_grasps(grasp_maps, decoding, gated))
    # Warp only the content: image pixels at the border map up to half a model pixel beyond it,
    # where bilinear sampling must extend the content (replicate), not blend in the zeroed
    # padding (that would halve the probability along the image border).
    top, left = box.pad_top, box.pad_left
    content = gated[top : top + box.resized_height, left : left + box.resized_width]
    to_image = box.inverse_matrix.copy()
    to_image[:, 2] += to_image[:, :2] @ np.array([left, top], dtype=np.float64)
    mask_image = cv2.warpAffine(
        content,
        to_image,
        (box.width, box.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return grasps, mask_image


@dataclass(frozen=True)
class PostProcessed:
    """One image's result in its own pixels.

    Attributes:
        grasps: Ranked grasps (best first) in image pixels; empty when ``reason`` is set.
        mask_prob: (H, W) float32 target probability in [0, 1]; 0 where the model input was
            letterbox padding.
        mask: (H, W) bool target mask, ``mask_prob >= decoding.mask_threshold``.
        mask_score: Mean probability over the ``mask`` pixels; 0.0 when the mask is empty.
        reason: None when there are grasps; otherwise a sentence starting with
            ``TARGET_NOT_FOUND`` or ``NO_GRASP_PEAK`` that says why the list is empty.
    """

    grasps: list[Grasp]
    mask_prob: np.ndarray
    mask: np.ndarray
    mask_score: float
    reason: str | None


def postprocess(
    mask_logits: np.ndarray, grasp_maps: np.ndarray, box: Letterbox, decoding: GraspDecoding
) -> PostProcessed:
    """``maps_to_image`` on raw logits, plus the target mask, its score and an empty-result reason.

    Args:
        mask_logits: ``(S, S)`` mask logits on the model-input grid.
        grasp_maps: ``(4, S, S)`` regressed grasp maps on the same grid.
        box: The letterbox that mapped the image to the model input.
        decoding: Peak-finding and gating constants.

    Returns:
        The result; never a made-up grasp: with no peak above the threshold on the target the
        list is empty and ``reason`` says so.
    """
    grasps, mask_prob = maps_to_image(sigmoid(mask_logits), grasp_maps, box, decoding)
    mask = mask_prob >= decoding.mask_threshold
    score = float(mask_prob[mask].mean()) if mask.any() else 0.0
    reason = None
    if not grasps and not mask.any():
        reason = (
            f"{TARGET_NOT_FOUND}: no pixel reached target probability {decoding.mask_threshold:g} "
            f"(highest {float(mask_prob.max()):.3f})"
        )
    elif not grasps:
        reason = (
            f"{NO_GRASP_PEAK}: the target covers {int(mask.sum())} pixels but no grasp quality "
            f"peak on it exceeded {decoding.threshold:g}"
        )
    return PostProcessed(grasps, mask_prob, mask, score, reason)
