import pytest
import torch

from langgrasp.detector.model.fusion import DCVLF, sinusoidal_positions_2d


def test_sinusoidal_positions_are_distinct_per_cell():
    pos = sinusoidal_positions_2d(7, 5, 32)
    assert pos.shape == (35, 32)
    assert torch.unique(pos, dim=0).shape[0] == 35
    with pytest.raises(ValueError, match="divisible by 4"):
        sinusoidal_positions_2d(2, 2, 30)


@pytest.fixture
def fusion():
    return DCVLF(visual_channels=48, word_dim=24, dim=32, heads=4, ffn_hidden=64).eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_dcvlf_shape(fusion, batch):
    out = fusion(
        torch.randn(batch, 48, 4, 5),
        torch.randn(batch, 9, 24),
        torch.zeros(batch, 9, dtype=torch.bool),
    )
    assert out.shape == (batch, 32, 4, 5)


def test_padding_words_do_not_influence_the_output(fusion):
    visual, words = torch.randn(2, 48, 3, 3), torch.randn(2, 9, 24)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[0, 4:] = True
    padding[1, 7:] = True
    reference = fusion(visual, words, padding)
    changed = words.clone()
    changed[padding] = torch.randn(int(padding.sum()), 24) * 100
    assert torch.allclose(fusion(visual, changed, padding), reference, atol=1e-5)
    # ... while a valid word does matter.
    changed[0, 1] += 1.0
    assert not torch.allclose(fusion(visual, changed, padding)[0], reference[0], atol=1e-5)
