import pytest
import torch

from langgrasp.detector.model.heads import HEAD_TASKS, LDCHead, RefineUNet


@pytest.mark.parametrize("batch", [1, 3])
def test_ldch_static_and_grouped_forms_agree(batch):
    head = LDCHead(
        in_channels=12, channels=6, text_dim=10, num_experts=4, router_hidden=8, form="static"
    )
    torch.nn.init.normal_(head.bias)
    x, s = torch.randn(batch, 12, 9, 7), torch.randn(batch, 10)
    static = head(x, s)
    head.form = "grouped"
    grouped = head(x, s)
    assert static.shape == (batch, len(HEAD_TASKS), 9, 7)
    assert torch.allclose(static, grouped, atol=1e-5)


def test_ldch_mixes_experts_per_sample_eq_24_to_26():
    head = LDCHead(
        in_channels=4, channels=3, text_dim=5, num_experts=3, router_hidden=4, form="static"
    )
    s = torch.randn(2, 5)
    pi = head.mixture(s)
    assert torch.allclose(pi.sum(dim=-1), torch.ones(2))
    x = torch.randn(2, 4, 6, 6)
    features = head.expand(x)
    # Sample 1, task "width": convolve with the explicitly mixed kernel of eq. 26.
    task = HEAD_TASKS.index("width")
    kernel = sum(pi[1, k] * head.weight[task, k] for k in range(3))[None]
    bias = (pi[1] * head.bias[task]).sum()[None]
    group = features[1:2, task * 3 : (task + 1) * 3]
    expected = torch.nn.functional.conv2d(group, kernel, bias, padding=1)
    assert torch.allclose(head(x, s)[1:2, task : task + 1], expected, atol=1e-5)
    # Different sentences give different kernels.
    assert not torch.allclose(pi[0], pi[1])


@pytest.mark.parametrize("channels,size", [(1, (20, 28)), (4, (32, 32))])
def test_refinement_is_residual_and_keeps_shape(channels, size):
    refine = RefineUNet(channels, width=8, depth=4)
    coarse = torch.randn(2, channels, *size)
    assert refine(coarse).shape == coarse.shape
    torch.nn.init.zeros_(refine.residual.weight)
    torch.nn.init.zeros_(refine.residual.bias)
    assert torch.equal(refine(coarse), coarse)  # eq. 30-31: coarse + Δ, here Δ = 0
