"""Batch augmentation with kornia: consistent geometry for image and targets, photometry on images.

Geometry (per sample): an optional horizontal and/or vertical flip, then a rotation by φ about the
image centre, composed into one affine and applied with ``kornia.geometry.transform.warp_affine``
to the image (bilinear) and to the target mask and grasp maps (nearest neighbour, so no target
value is ever blended). Areas that come in from outside are 0: the CLIP mean colour for the
normalised image (like the letterbox padding), background for the mask, "no grasp" for the maps.

Grasp angles follow ``langgrasp.detector.grasp``: θ counter-clockwise on screen. A flip about
either axis maps θ -> -θ, so it negates the sin 2θ channel; a rotation by φ (counter-clockwise on
screen, kornia's convention for positive angles) maps θ -> θ + φ, so the (cos 2θ, sin 2θ) vector
rotates by 2φ. Quality and width are unchanged (rotations and flips keep lengths).

Text: a flip makes "the mug on the left" wrong. With ``text_policy="swap"`` (default) the
instruction of a flipped sample is rewritten (left <-> right, leftmost <-> rightmost for
horizontal flips; top <-> bottom, upper <-> lower, above <-> below, ... for vertical ones) and
re-tokenized; with ``"no-flip"`` a sample whose instruction has such words is not flipped along
that axis. We swap by default because it keeps every sample augmentable and the words involved
have no other meaning in grasp instructions ("pick up" is not touched). Rotations are small
(``AugmentConfig.rotation_deg``) so spatial words stay true without rewriting.

Photometry (image only, on [0, 1] RGB after undoing the normalisation): brightness, contrast,
saturation and hue jitter, Gaussian blur and Gaussian noise. All random numbers come from the
augmenter's own ``torch.Generator``, whose state the training checkpoints store.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import kornia
import torch

from langgrasp.detector.config import LGGDConfig
from langgrasp.detector.model import tokenize
from langgrasp.training.config import AugmentConfig
from langgrasp.training.data import Batch

HORIZONTAL_SWAPS = {"left": "right", "leftmost": "rightmost"}
"""Words a horizontal flip turns into their mirror image (both directions are applied)."""

VERTICAL_SWAPS = {
    "top": "bottom",
    "topmost": "bottommost",
    "upper": "lower",
    "uppermost": "lowermost",
    "above": "below",
}
"""Words a vertical flip turns into their mirror image (both directions are applied)."""

BLUR_RADIUS_SIGMAS = 3.0
"""Gaussian kernel half-width in standard deviations (covers 99.7 % of the weight)."""


def _swap_table(pairs: dict[str, str]) -> tuple[dict[str, str], re.Pattern[str]]:
    table = {**pairs, **{b: a for a, b in pairs.items()}}
    pattern = re.compile(r"\b(" + "|".join(sorted(table, key=len, reverse=True)) + r")\b", re.I)
    return table, pattern


_HORIZONTAL = _swap_table(HORIZONTAL_SWAPS)
_VERTICAL = _swap_table(VERTICAL_SWAPS)


def _swap_words(text: str, swaps: tuple[dict[str, str], re.Pattern[str]]) -> str:
    table, pattern = swaps

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        new = table[word.lower()]
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new

    return pattern.sub(swap, text)


def has_spatial_words(text: str, horizontal: bool) -> bool:
    """Whether ``text`` names a side that a horizontal (or vertical) flip would change."""
    return bool((_HORIZONTAL if horizontal else _VERTICAL)[1].search(text))


def flip_text(text: str, horizontal: bool, vertical: bool) -> str:
    """The instruction that is true of the image flipped horizontally and/or vertically."""
    if horizontal:
        text = _swap_words(text, _HORIZONTAL)
    if vertical:
        text = _swap_words(text, _VERTICAL)
    return text


@dataclass
class AugmentParams:
    """Per-sample augmentation parameters for a batch of B samples (all (B,) CPU tensors).

    Attributes:
        angle: Rotation φ in radians, counter-clockwise on screen, about the image centre.
        hflip: Horizontal flip (applied before the rotation).
        vflip: Vertical flip (applied before the rotation).
        brightness: Additive brightness shift on [0, 1] RGB.
        contrast: Contrast factor (1: unchanged).
        saturation: Saturation factor (1: unchanged).
        hue: Hue shift in radians.
        blur_sigma: Gaussian blur standard deviation in pixels (0: no blur).
        noise_std: Additive noise standard deviation on [0, 1] RGB (0: no noise).
    """

    angle: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    blur_sigma: torch.Tensor
    noise_std: torch.Tensor

    @classmethod
    def identity(cls, batch: int) -> AugmentParams:
        """Parameters that change nothing (a starting point for tests and custom settings)."""
        zeros, ones = torch.zeros(batch), torch.ones(batch)
        no = torch.zeros(batch, dtype=torch.bool)
        return cls(zeros, no, no.clone(), zeros, ones, ones, zeros, zeros, zeros)


def sample_params(
    config: AugmentConfig, texts: list[str], generator: torch.Generator
) -> AugmentParams:
    """Draw parameters for a batch with instructions ``texts`` (see ``AugmentConfig``)."""
    n = len(texts)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    hflip, vflip = chance(config.hflip), chance(config.vflip)
    if config.text_policy == "no-flip":
        hflip &= ~torch.tensor([has_spatial_words(t, horizontal=True) for t in texts])
        vflip &= ~torch.tensor([has_spatial_words(t, horizontal=False) for t in texts])
    rotation = math.radians(config.rotation_deg)
    blur = torch.where(chance(config.blur_p), uniform(0.1, config.blur_sigma), 0.0)
    return AugmentParams(
        angle=uniform(-rotation, rotation),
        hflip=hflip,
        vflip=vflip,
        brightness=uniform(-config.brightness, config.brightness),
        contrast=uniform(1 - config.contrast, 1 + config.contrast),
        saturation=uniform(1 - config.saturation, 1 + config.saturation),
        hue=uniform(-config.hue, config.hue),
        blur_sigma=blur,
        noise_std=torch.where(chance(config.noise_p), config.noise_std, 0.0),
    )


def geometric_matrix(params: AugmentParams, size: int) -> torch.Tensor:
    """(B, 2, 3) float32 affine from source to augmented pixels of a ``size`` square image.

    Pixel (row r, column c) has centre (x=c, y=r), as in ``warp_affine(align_corners=True)``.
    The flips mirror about the image centre, then the rotation turns the picture by ``angle``
    counter-clockwise on screen about the same centre.
    """
    n = len(params.angle)
    centre = (size - 1) / 2.0
    flip = torch.zeros(n, 3, 3)
    flip[:, 0, 0] = torch.where(params.hflip, -1.0, 1.0)
    flip[:, 1, 1] = torch.where(params.vflip, -1.0, 1.0)
    flip[:, :2, 2] = torch.stack([params.hflip, params.vflip], 1).float() * 2 * centre
    flip[:, 2, 2] = 1.0
    cos, sin = torch.cos(params.angle), torch.sin(params.angle)
    rotation = torch.zeros(
        n, 3, 3
    )  # y points down: counter-clockwise on screen is (cos, sin; -sin, cos)
    rotation[:, 0, 0], rotation[:, 0, 1] = cos, sin
    rotation[:, 1, 0], rotation[:, 1, 1] = -sin, cos
    rotation[:, 0, 2] = centre - centre * cos - centre * sin
    rotation[:, 1, 2] = centre + centre * sin - centre * cos
    rotation[:, 2, 2] = 1.0
    return (rotation @ flip)[:, :2]


def _warp(x: torch.Tensor, params: AugmentParams, mode: str) -> torch.Tensor:
    size = x.shape[-1]
    matrix = geometric_matrix(params, size).to(device=x.device, dtype=x.dtype)
    return kornia.geometry.transform.warp_affine(x, matrix, (size, size), mode=mode)


def transform_grasp_maps(maps: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Warp (B, 4, H, H) grasp maps (nearest) and turn their angle channels with the geometry."""
    warped = _warp(maps, params, "nearest")
    quality, cos2, sin2, width = warped.unbind(1)
    mirrored = (params.hflip ^ params.vflip).to(maps.device)
    sin2 = torch.where(mirrored[:, None, None], -sin2, sin2)  # θ -> -θ
    turn = (2 * params.angle).to(device=maps.device, dtype=maps.dtype)[:, None, None]  # θ -> θ + φ
    cos2, sin2 = cos2 * turn.cos() - sin2 * turn.sin(), sin2 * turn.cos() + cos2 * turn.sin()
    return torch.stack([quality, cos2, sin2, width], 1)


def photometric(
    images: torch.Tensor, params: AugmentParams, generator: torch.Generator
) -> torch.Tensor:
    """Colour jitter, blur and noise on (B, 3, S, S) RGB in [0, 1]; returns values in [0, 1]."""
    device = images.device

    def per_sample(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=device, dtype=images.dtype)

    x = kornia.enhance.adjust_brightness(images, per_sample(params.brightness))
    x = kornia.enhance.adjust_contrast(x, per_sample(params.contrast))
    x = kornia.enhance.adjust_saturation(x, per_sample(params.saturation)).clamp(0, 1)
    x = kornia.enhance.adjust_hue(x, per_sample(params.hue)).clamp(0, 1)
    blurred = params.blur_sigma > 0
    if blurred.any():
        sigma = params.blur_sigma[blurred]
        radius = math.ceil(BLUR_RADIUS_SIGMAS * float(sigma.max()))
        sigmas = per_sample(sigma)[:, None].expand(-1, 2)
        index = blurred.nonzero()[:, 0].to(device)
        x = x.index_copy(0, index, kornia.filters.gaussian_blur2d(x[index], 2 * radius + 1, sigmas))
    noisy = params.noise_std > 0
    if noisy.any():
        noise = torch.randn((int(noisy.sum()), *x.shape[1:]), generator=generator)
        noise = noise * params.noise_std[noisy][:, None, None, None]
        index = noisy.nonzero()[:, 0].to(device)
        x = x.index_add(0, index, per_sample(noise)).clamp(0, 1)
    return x


class BatchAugmenter:
    """Augments training batches for one model config; owns the random generator."""

    def __init__(self, config: AugmentConfig, model: LGGDConfig, seed: int) -> None:
        """Augmentation ``config`` for batches of a ``model`` config, randomness from ``seed``."""
        self.config = config
        self.model = model
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: Batch) -> Batch:
        """A new batch with random parameters applied (the input is unchanged)."""
        if not self.config.enabled or len(batch) == 0:
            return batch
        return self.apply(batch, sample_params(self.config, batch.texts, self.generator))

    def apply(self, batch: Batch, params: AugmentParams) -> Batch:
        """Apply given parameters to a batch (images, masks, grasp maps, texts and tokens)."""
        mean = torch.tensor(self.model.mean, device=batch.images.device)[:, None, None]
        std = torch.tensor(self.model.std, device=batch.images.device)[:, None, None]
        rgb = (_warp(batch.images, params, "bilinear") * std + mean).clamp(0, 1)
        images = (photometric(rgb, params, self.generator) - mean) / std
        texts = [
            flip_text(t, bool(h), bool(v))
            for t, h, v in zip(batch.texts, params.hflip, params.vflip, strict=True)
        ]
        tokens = batch.tokens.clone()
        changed = [i for i, (a, b) in enumerate(zip(texts, batch.texts, strict=True)) if a != b]
        if changed:
            new = tokenize([texts[i] for i in changed], self.model.context_length)
            tokens[changed] = new.to(tokens.device)
        return replace(
            batch,
            images=images,
            tokens=tokens,
            masks=_warp(batch.masks, params, "nearest"),
            grasp_maps=transform_grasp_maps(batch.grasp_maps, params),
            texts=texts,
        )
