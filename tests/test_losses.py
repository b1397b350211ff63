import math

import pytest
import torch

from langgrasp.detector.losses import (
    LossConfig,
    lggd_loss,
    masked_grasp_loss,
    smooth_l1,
    weighted_mask_bce,
)
from langgrasp.detector.model import LGGDOutput


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_weighted_bce_matches_eq_35_36_by_hand():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    # w = 0.5 * M + 1 -> [1.5, 1, 1.5, 1]; normalised by sum(w) = 5.
    expected = (1.5 * _bce(2.0, 1) + _bce(-1.0, 0) + 1.5 * _bce(0.5, 1) + _bce(0.0, 0)) / 5.0
    assert weighted_mask_bce(logits, mask, beta=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_smooth_l1_eq_40_both_regimes():
    x = torch.tensor([0.5, -0.5, 2.0, -3.0])
    assert smooth_l1(x, 1.0).tolist() == pytest.approx([0.125, 0.125, 1.5, 2.5])
    # sigma = 2: transition at 1/4; 0.1 -> 0.5*(0.2)^2 = 0.02; 1.0 -> 1 - 1/8.
    assert smooth_l1(torch.tensor([0.1, 1.0]), 2.0).tolist() == pytest.approx([0.02, 0.875])


def test_grasp_loss_only_counts_mask_pixels_eq_38_39():
    pred = torch.zeros(1, 4, 1, 2)
    target = torch.zeros(1, 4, 1, 2)
    target[0, :, 0, 0] = torch.tensor([0.5, 2.0, 0.0, -1.0])  # inside the mask
    target[0, :, 0, 1] = 100.0  # outside: ignored
    mask = torch.tensor([[[[1.0, 0.0]]]])
    expected = (0.125 + 1.5 + 0.0 + 0.5) / 1  # sum over channels, mean over |V| = 1
    assert masked_grasp_loss(pred, target, mask, 1.0).item() == pytest.approx(expected)
    empty = masked_grasp_loss(pred.requires_grad_(), target, torch.zeros_like(mask), 1.0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_total_is_refine_plus_half_coarse_eq_32_34():
    torch.manual_seed(1)
    out = LGGDOutput(*(torch.randn(2, c, 3, 3) for c in (1, 4, 1, 4)))
    mask = (torch.rand(2, 1, 3, 3) > 0.5).float()
    mask[:, :, 0, 0] = 1.0
    maps = torch.randn(2, 4, 3, 3)
    terms = lggd_loss(out, mask, maps)
    refine = terms["refine_mask"] + terms["refine_grasp"]
    coarse = terms["coarse_mask"] + terms["coarse_grasp"]
    assert terms["total"].item() == pytest.approx((refine + 0.5 * coarse).item())
    assert terms["refine_mask"].item() == pytest.approx(
        weighted_mask_bce(out.mask, mask, 0.5).item()
    )
    heavier = lggd_loss(out, mask, maps, LossConfig(coarse_weight=1.0))["total"]
    assert heavier.item() == pytest.approx((refine + coarse).item())
