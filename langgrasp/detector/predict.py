"""Run a PyTorch LGGD model on one RGB image and a command: NumPy in, ranked grasps out.

The same preprocessing (``preprocess``) and decoding (``grasp``) that the torch-free runtime uses;
only the network call differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from langgrasp.detector.grasp import Grasp, GraspDecoding, decode_grasps
from langgrasp.detector.model import LGGD, tokenize
from langgrasp.detector.model.encoders import TextFeatures
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
        maps = torch.cat([output.mask, output.grasp], dim=1)
        if maps.shape[-1] != config.input_size:  # configs with output_stride > 1
            maps = F.interpolate(
                maps, size=(config.input_size,) * 2, mode="bilinear", align_corners=False
            )
        mask_prob = torch.sigmoid(maps[0, 0]).float().cpu().numpy()
        grasp_maps = maps[0, 1:].float().cpu().numpy()
        inferred = time.perf_counter()
        # Letterbox padding is not part of the image: no mask, hence no grasp, may come from it.
        gated = np.where(box.content_mask(), mask_prob, 0.0).astype(np.float32)
        grasps = box.grasps_to_image(decode_grasps(grasp_maps, self.decoding, gated))
        mask_image = cv2.warpAffine(
            gated, box.inverse_matrix, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR
        )
        done = time.perf_counter()
        timings = {
            "preprocess": prepared - start,
            "network": inferred - prepared,
            "decode": done - inferred,
        }
        return Prediction(grasps, mask_image, {k: v * 1000.0 for k, v in timings.items()})
