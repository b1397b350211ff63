"""A stand-in for a trained checkpoint when checking export parity and quantisation.

An untrained LGGD's outputs are nearly constant (shared/research: no trained weights exist here):
its BatchNorm layers keep their initial statistics, so the image signal fades through the decoder
and every pixel gets about the bias. Parity and INT8-agreement checks on such a model are empty
(no grasp anywhere, so "both found nothing" always agrees). :func:`probe_model` makes a random
model whose maps vary with the image the way a trained network's do:

1. the decoder's BatchNorm statistics are estimated on generated scenes (a train-mode forward
   pass with cumulative averaging), so every layer passes on a normalised, image-dependent signal;
2. the last convolutions of the two refinement U-Nets are scaled down until the outputs have a
   trained model's range (``PROBE_GRASP_RANGE``, ``PROBE_MASK_RANGE``), and their biases shifted
   so that, over those scenes, the median mask logit is 0 (half the picture is "target"), the
   median quality is ``PROBE_QUALITY`` and the median width is ``PROBE_WIDTH`` (so decoded
   rectangles have area).

It has no skill at all; it only exercises the numerics of export, quantisation and decoding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.config import LGGDConfig
from langgrasp.detector.model import LGGD, build_model, tokenize
from langgrasp.detector.preprocess import prepare_image

PROBE_QUALITY = 0.4
"""Median grasp quality of a probe model's maps (the decoding threshold is 0.2)."""

PROBE_WIDTH = 0.3
"""Median normalised width of a probe model's maps (x width_scale pixels)."""

PROBE_GRASP_RANGE = 1.5
PROBE_MASK_RANGE = 4.0
PROBE_QUANTILE = 0.999
"""The refinement outputs are scaled so that this quantile of their magnitude is at most the
range: about what a trained model gives (targets of q, cos 2θ, sin 2θ and width lie in
[-1, 1.5]); random weights otherwise give heavy tails (|value| > 10)."""

PROBE_SCENE_SEED = 900_000
"""First seed of the scenes that estimate the statistics (apart from parity/calibration seeds)."""


def probe_model(config: str | LGGDConfig, seed: int = 0, scenes: int = 8) -> LGGD:
    """A random LGGD with image-dependent outputs (module docstring); eval mode, CPU.

    Args:
        config: Registered model name or config.
        seed: Torch seed of the random weights.
        scenes: Generated scenes used for the statistics (one batch).
    """
    torch.manual_seed(seed)
    model = build_model(config, freeze_clip=True)
    cfg = model.config
    samples = [render_scene(PROBE_SCENE_SEED + i) for i in range(scenes)]
    images = torch.from_numpy(
        np.stack([prepare_image(s.rgb, cfg.input_size, cfg.mean, cfg.std)[0] for s in samples])
    )
    tokens = tokenize([s.text for s in samples], cfg.context_length)
    clip = {id(m) for tower in (model.image_encoder, model.text_encoder) for m in tower.modules()}
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and id(module) not in clip:
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
    with torch.no_grad():
        model.train()  # frozen CLIP towers stay in eval (LGGD.train)
        model(images, tokens)
        model.eval()
        output = model(images, tokens)
        for refine, refined, coarse, limit in (
            (model.mask_refine, output.mask, output.coarse_mask, PROBE_MASK_RANGE),
            (model.grasp_refine, output.grasp, output.coarse_grasp, PROBE_GRASP_RANGE),
        ):
            bias = refine.residual.bias[None, :, None, None]
            spread = torch.quantile((refined - coarse - bias).abs().flatten(), PROBE_QUANTILE)
            refine.residual.weight *= min(1.0, limit / max(float(spread), 1e-12))
        output = model(images, tokens)
        model.mask_refine.residual.bias -= output.mask.median()
        grasp_bias = model.grasp_refine.residual.bias
        grasp_bias[0] += PROBE_QUALITY - output.grasp[:, 0].median()
        grasp_bias[3] += PROBE_WIDTH - output.grasp[:, 3].median()
    return model
