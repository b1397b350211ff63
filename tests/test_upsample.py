import pytest
import torch

from langgrasp.detector.model.upsample import LMAFN, FiLM, UpStage


def test_film_follows_eq_14_with_known_gamma_and_beta():
    film = FiLM(text_dim=8, channels=2, hidden=16)
    x, s = torch.randn(2, 2, 3, 3), torch.randn(2, 8)
    torch.nn.init.zeros_(film.mlp[-1].weight)
    with torch.no_grad():
        film.mlp[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    assert torch.equal(film(x, s), x)  # γ = β = 0: identity thanks to (1 + γ)
    with torch.no_grad():
        film.mlp[-1].bias.copy_(torch.tensor([1.0, -0.5, 2.0, 3.0]))  # γ = (1, -0.5), β = (2, 3)
    out = film(x, s)
    assert torch.allclose(out[:, 0], 2.0 * x[:, 0] + 2.0) and torch.allclose(
        out[:, 1], 0.5 * x[:, 1] + 3.0
    )


def test_lmafn_multiplies_pixel_and_channel_attention_eq_17_to_20():
    attention = LMAFN(channels=4, reduction=2)
    x = torch.randn(2, 4, 5, 5)
    for layer in (attention.pixel, attention.channel[-1]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    assert torch.allclose(attention(x), 0.25 * x)  # σ(0) · σ(0)
    with torch.no_grad():
        attention.pixel.bias.fill_(30.0)  # σ ≈ 1 everywhere
        attention.channel[-1].bias.copy_(torch.log(torch.tensor([3.0, 1.0, 1 / 3, 1.0])))
    expected = x * torch.tensor([0.75, 0.5, 0.25, 0.5])[None, :, None, None]
    assert torch.allclose(attention(x), expected, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_upstage_shapes_with_and_without_skip(batch):
    s = torch.randn(batch, 8)
    with_skip = UpStage(16, 12, 10, text_dim=8, film_hidden=8, reduction=2)
    assert with_skip(torch.randn(batch, 16, 4, 4), s, torch.randn(batch, 12, 8, 8)).shape == (
        batch,
        10,
        8,
        8,
    )
    no_skip = UpStage(16, None, 10, text_dim=8, film_hidden=8, reduction=2)
    assert no_skip(torch.randn(batch, 16, 4, 4), s).shape == (batch, 10, 8, 8)
