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


def test_concat_fusion_shape_gradients_and_sentence_dependence():
    from langgrasp.detector.model.fusion import ConcatFusion

    fusion = ConcatFusion(visual_channels=48, sentence_dim=24, dim=32)
    visual = torch.randn(3, 48, 4, 5, requires_grad=True)
    sentence = torch.randn(3, 24, requires_grad=True)
    out = fusion(visual, sentence)
    assert out.shape == (3, 32, 4, 5)
    out.square().sum().backward()
    assert visual.grad.abs().sum() > 0 and sentence.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())
    # The sentence is broadcast: every cell sees the same text, and another sentence changes it.
    with torch.no_grad():
        other = fusion(visual, sentence.flip(0))
    assert not torch.allclose(other, out)


def _fused_maps(model, image, text):
    """Decode and return the bottleneck's output map (B, d, h, w), captured with a hook."""
    captured = []
    handle = model.fusion.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        model.decode(image, text)
    finally:
        handle.remove()
    return captured[0]


def test_concat_config_builds_a_model_without_dcvlf(tiny_config, make_inputs):
    import dataclasses

    from langgrasp.detector.model import build_model
    from langgrasp.detector.model.fusion import ConcatFusion

    config = dataclasses.replace(tiny_config, fusion="concat")
    model = build_model(config, freeze_clip=True).eval()
    assert isinstance(model.fusion, ConcatFusion)
    assert not any(isinstance(m, DCVLF) for m in model.modules())
    images, tokens = make_inputs(config, 2)
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(tokens)
        reference = _fused_maps(model, image, text)
        assert reference.shape == (2, config.fusion_dim, *image.spatial.shape[-2:])
        # Only the sentence feature reaches the concat bottleneck: scrambling the word features
        # (which DCVLF attends to) leaves the fused map unchanged, changing the sentence does not.
        scrambled = dataclasses.replace(text, words=torch.randn_like(text.words) * 10)
        assert torch.equal(_fused_maps(model, image, scrambled), reference)
        swapped = dataclasses.replace(text, sentence=text.sentence.flip(0))
        assert not torch.allclose(_fused_maps(model, image, swapped), reference)
        out = model(images, tokens)
    s = config.output_size
    assert out.mask.shape == (2, 1, s, s) and out.grasp.shape == (2, 4, s, s)
    model.train()
    out = model(images, tokens)
    (out.mask.square().mean() + out.grasp.square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())


def test_dcvlf_model_uses_the_word_features(frozen_model, tiny_config, make_inputs):
    # The counterpart of the test above, so it can tell the two bottlenecks apart.
    import dataclasses

    model = frozen_model.eval()
    images, tokens = make_inputs(tiny_config, 2)
    with torch.no_grad():
        image, text = model.encode_image(images), model.encode_text(tokens)
        scrambled = dataclasses.replace(text, words=torch.randn_like(text.words) * 10)
        reference = _fused_maps(model, image, text)
        assert not torch.allclose(_fused_maps(model, image, scrambled), reference)
