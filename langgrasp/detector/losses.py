"""LGGD training losses (paper Section IV.F, eq. 32-40).

Inputs follow the output convention in ``langgrasp.detector.grasp``: mask outputs are logits,
grasp outputs are regressed values compared to the target maps as they are (no activation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from langgrasp.detector.model.lggd import LGGDOutput


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (paper values as defaults).

    Attributes:
        foreground_beta: β in w = β·M + 1 (eq. 36): foreground pixels weigh 1 + β.
        smooth_l1_sigma: σ of the Smooth-L1 loss (eq. 40).
        coarse_weight: λ of the deep-supervision term (eq. 32).
    """

    foreground_beta: float = 0.5
    smooth_l1_sigma: float = 1.0
    coarse_weight: float = 0.5


def weighted_mask_bce(logits: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Foreground-weighted BCE with logits (eq. 35-36), normalised per image by Σ w, batch mean.

    Args:
        logits: (B, 1, H, W) mask logits.
        target: (B, 1, H, W) ground-truth mask in {0, 1} (float).
        beta: Foreground extra weight β.
    """
    weight = beta * target + 1.0
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    per_image = (weight * bce).flatten(1).sum(1) / weight.flatten(1).sum(1)
    return per_image.mean()


def smooth_l1(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Elementwise Smooth-L1 of eq. 40: ½(σx)² if |x| < 1/σ², else |x| - 1/(2σ²)."""
    transition = 1.0 / sigma**2
    ax = x.abs()
    return torch.where(ax < transition, 0.5 * (sigma * x) ** 2, ax - 0.5 * transition)


def masked_grasp_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Smooth-L1 over the ground-truth mask pixels V (eq. 38-39), batch mean.

    Per image: (1/|V|) Σ_{i∈V} Σ_m SmoothL1(Ĝ_i^m - G_i^m) over the 4 grasp channels. Images with an
    empty mask contribute nothing; if every mask is empty the loss is 0 (with a graph).

    Args:
        pred: (B, 4, H, W) predicted grasp maps.
        target: (B, 4, H, W) target maps (``encode_grasps``).
        mask: (B, 1, H, W) ground-truth mask in {0, 1}.
        sigma: Smooth-L1 σ.
    """
    valid = mask.flatten(1).sum(1)  # |V| per image
    per_image = (smooth_l1(pred - target, sigma) * mask).flatten(1).sum(1)
    has_pixels = valid > 0
    if not bool(has_pixels.any()):
        return pred.sum() * 0.0
    return (per_image[has_pixels] / valid[has_pixels]).mean()


def lggd_loss(
    output: LGGDOutput,
    mask: torch.Tensor,
    grasp_maps: torch.Tensor,
    config: LossConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Total loss with deep supervision (eq. 32-34) and its four terms.

    Args:
        output: Model output (refined and coarse mask logits and grasp maps).
        mask: (B, 1, H, W) ground-truth target mask, float in {0, 1}.
        grasp_maps: (B, 4, H, W) target grasp maps.
        config: Loss weights; the paper's by default.

    Returns:
        Dict with ``total``, ``refine_mask``, ``refine_grasp``, ``coarse_mask``, ``coarse_grasp``.
    """
    config = config or LossConfig()
    terms = {
        "refine_mask": weighted_mask_bce(output.mask, mask, config.foreground_beta),
        "refine_grasp": masked_grasp_loss(output.grasp, grasp_maps, mask, config.smooth_l1_sigma),
        "coarse_mask": weighted_mask_bce(output.coarse_mask, mask, config.foreground_beta),
        "coarse_grasp": masked_grasp_loss(
            output.coarse_grasp, grasp_maps, mask, config.smooth_l1_sigma
        ),
    }
    refine = terms["refine_mask"] + terms["refine_grasp"]  # eq. 33
    coarse = terms["coarse_mask"] + terms["coarse_grasp"]  # eq. 34
    return {"total": refine + config.coarse_weight * coarse, **terms}  # eq. 32
