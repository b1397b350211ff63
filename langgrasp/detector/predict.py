"""Run a PyTorch LGGD model on one RGB image and a command: NumPy in, ranked grasps out.

The same preprocessing (``preprocess``) and decoding (``grasp``) that the torch-free runtime uses;
only the network call differs. :func:`output_maps` and :func:`maps_to_image` are the
post-processing steps, shared with the batched evaluator (``langgrasp.evaluation``) so that what
is scored is exactly what the predictor returns; ``maps_to_image`` and ``sigmoid`` live in the
torch-free ``postprocess`` module, which the ONNX runtime engine calls too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from langgrasp.detector.grasp import Grasp, GraspDecoding
from langgrasp.detector.model import LGGD, LGGDOutput, tokenize
from langgrasp.detector.model.encoders import TextFeatures
from langgrasp.detector.postprocess import maps_to_image, sigmoid
from langgrasp.detector.preprocess import prepare_image, validate_rgb


@dataclass
class Prediction:
    """Result for one image, in the input image's pixels.

    Attributes:
        grasps: Ranked grasps (best first); empty when no quality peak passed the threshold.
        mask_prob: (H, W) float32 probability that a pixel belongs to the referred object.
        timings_ms: Wall-clock milliseconds per step (preprocess, network, decode); the text
            encoder runs in "preprocess", and only when the command changes.
    """

    grasps: list[Grasp]
    mask_prob: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


def output_maps(output: LGGDOutput, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs as NumPy maps on the model-input grid.

    Args:
        output: Refined model outputs for B samples (mask logits and regressed grasp maps at the
            config's output size).
        input_size: Side S of the square model input in pixels; outputs of a smaller size
            (``output_stride`` > 1) are bilinearly upsampled to it.

    Returns:
        ``(mask_prob, grasp_maps)``: ``(B, S, S)`` float32 mask probabilities (``sigmoid`` of
        the logits, the runtime's own function) and ``(B, 4, S, S)`` float32 grasp maps in
        ``GRASP_CHANNELS`` order, on the CPU.
    """
    maps = full_resolution_maps(output, input_size).float().cpu().numpy()
    return sigmoid(maps[:, 0]), maps[:, 1:]


def full_resolution_maps(output: LGGDOutput, input_size: int) -> torch.Tensor:
    """Refined mask logits and grasp maps on the model-input grid, (B, 5, S, S) tensor.

    Channel 0 is the mask logit, channels 1-4 the grasp maps (``GRASP_CHANNELS``); outputs of a
    smaller size (``output_stride`` > 1) are bilinearly upsampled. The ONNX frame graph is
    exported through this function, so both runtimes see the same maps.
    """
    maps = torch.cat([output.mask, output.grasp], dim=1)
    if maps.shape[-1] != input_size:  # configs with output_stride > 1
        maps = F.interpolate(maps, size=(input_size,) * 2, mode="bilinear", align_corners=False)
    return maps


class Predictor:
    """Wraps an ``LGGD`` for single-image inference on the CPU or a GPU."""

    def __init__(
        self, model: LGGD, decoding: GraspDecoding | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.decoding = decoding or GraspDecoding(width_scale=model.config.width_scale)
        self._text: tuple[str, torch.Tensor, TextFeatures] | None = None  # last command's encoding

    def _encode_command(self, command: str) -> tuple[torch.Tensor, TextFeatures]:
        """Tokens and text features of ``command``, computed once per distinct command."""
        if self._text is None or self._text[0] != command:
            tokens = tokenize(command, self.model.config.context_length).to(self.device)
            self._text = (command, tokens, self.model.encode_text(tokens))
        return self._text[1], self._text[2]

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, command: str) -> Prediction:
        """Detect grasps on the object that ``command`` refers to.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            command: Non-empty instruction, e.g. "pick the red mug by the handle".

        Raises:
            InputError: wrong image shape/dtype, or an empty / non-string command.
        """
        config = self.model.config
        start = time.perf_counter()
        validate_rgb(rgb)
        tokens, text = self._encode_command(command)
        image, box = prepare_image(rgb, config.input_size, config.mean, config.std)
        images = torch.from_numpy(image)[None].to(self.device)
        self.model.check_inputs(images, tokens)
        prepared = time.perf_counter()
        output = self.model.decode(self.model.encode_image(images), text)
        mask_prob, grasp_maps = output_maps(output, config.input_size)
        inferred = time.perf_counter()
        grasps, mask_image = maps_to_image(mask_prob[0], grasp_maps[0], box, self.decoding)
        done = time.perf_counter()
        timings = {
            "preprocess": prepared - start,
            "network": inferred - prepared,
            "decode": done - inferred,
        }
        return Prediction(grasps, mask_image, {k: v * 1000.0 for k, v in timings.items()})
