import pytest
import torch

from langgrasp.detector.model.upsample import LMAFN, FiLM, UpStage


def test_film_is_identity_at_zero_and_follows_eq_14():
    film = FiLM(text_dim=8, channels=4, hidden=16)
    x, s = torch.randn(2, 4, 3, 3), torch.randn(2, 8)
    torch.nn.init.zeros_(film.mlp[-1].weight)
    torch.nn.init.zeros_(film.mlp[-1].bias)
    assert torch.equal(film(x, s), x)
    torch.nn.init.normal_(film.mlp[-1].weight)
    gamma, beta = film.mlp(s).chunk(2, dim=1)
    expected = (1 + gamma[:, :, None, None]) * x + beta[:, :, None, None]
    assert torch.allclose(film(x, s), expected)


def test_lmafn_follows_eq_17_to_20():
    attention = LMAFN(channels=8, reduction=4)
    x = torch.randn(2, 8, 5, 5)
    pixel = torch.sigmoid(attention.pixel(x))
    channel = torch.sigmoid(attention.channel(x.mean(dim=(2, 3))))[:, :, None, None]
    assert torch.allclose(attention(x), x * pixel * channel)


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
