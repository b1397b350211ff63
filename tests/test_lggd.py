import dataclasses

import pytest
import torch

from langgrasp.detector.config import get_config
from langgrasp.detector.losses import lggd_loss
from langgrasp.detector.model import TruncationWarning, build_model, tokenize
from langgrasp.errors import InputError


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(frozen_model, tiny_config, batch, make_inputs):
    out = frozen_model.eval()(*make_inputs(tiny_config, batch))
    s = tiny_config.output_size
    assert out.mask.shape == out.coarse_mask.shape == (batch, 1, s, s)
    assert out.grasp.shape == out.coarse_grasp.shape == (batch, 4, s, s)


def test_paper_config_output_shapes_on_meta_device():
    config = get_config("lggd-rn50")
    with torch.device("meta"):
        model = build_model(config, freeze_clip=True)
        images = torch.empty(2, 3, 224, 224)
        tokens = torch.zeros(2, 77, dtype=torch.long)
        out = model(images, tokens)
    assert out.mask.shape == (2, 1, 224, 224) and out.grasp.shape == (2, 4, 224, 224)


def _loss(model, config, make_inputs, batch=2):
    images, tokens = make_inputs(config, batch)
    out = model(images, tokens)
    s = config.output_size
    mask = (torch.rand(batch, 1, s, s) > 0.7).float()
    return lggd_loss(out, mask, torch.randn(batch, 4, s, s))["total"]


def test_gradients_reach_every_trainable_parameter_and_not_frozen_clip(
    frozen_model, tiny_config, make_inputs
):
    frozen_model.train()
    _loss(frozen_model, tiny_config, make_inputs).backward()
    clip = {
        id(p)
        for m in (frozen_model.image_encoder, frozen_model.text_encoder)
        for p in m.parameters()
    }
    trainable = [(n, p) for n, p in frozen_model.named_parameters() if id(p) not in clip]
    assert trainable and all(p.requires_grad for _, p in trainable)
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    leaked = [n for n, p in frozen_model.named_parameters() if id(p) in clip and p.grad is not None]
    assert not leaked, f"frozen CLIP got gradients: {leaked}"


def test_trainable_clip_gets_gradients_when_not_frozen(tiny_config, make_inputs):
    model = build_model(tiny_config, freeze_clip=False).train()
    _loss(model, tiny_config, make_inputs).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_frozen_encoders_stay_in_eval_mode(frozen_model):
    frozen_model.train()
    assert frozen_model.fusion.training
    assert not frozen_model.image_encoder.training and not frozen_model.text_encoder.training


def test_grouped_ldch_config_gives_the_same_model_output(frozen_model, tiny_config, make_inputs):
    grouped = build_model(dataclasses.replace(tiny_config, ldch_form="grouped"), freeze_clip=True)
    grouped.load_state_dict(frozen_model.state_dict())
    inputs = make_inputs(tiny_config, 3)
    a, b = frozen_model.eval()(*inputs), grouped.eval()(*inputs)
    assert torch.allclose(a.grasp, b.grasp, atol=1e-4) and torch.allclose(a.mask, b.mask, atol=1e-4)


def test_text_and_image_paths_compose_to_forward(frozen_model, tiny_config, make_inputs):
    images, tokens = make_inputs(tiny_config, 2)
    model = frozen_model.eval()
    split = model.decode(model.encode_image(images), model.encode_text(tokens))
    assert torch.allclose(split.grasp, model(images, tokens).grasp)


@pytest.mark.parametrize(
    "images,tokens,message",
    [
        (torch.zeros(1, 3, 64, 64), None, r"shape \(B, 3, 128, 128\)"),
        (torch.zeros(1, 128, 128, 3), None, r"shape \(B, 3, 128, 128\)"),
        (torch.zeros(1, 3, 128, 128, dtype=torch.uint8), None, "float32 tensor"),
        (torch.zeros(1, 3, 128, 128, dtype=torch.float16), None, "float32 tensor"),
        (torch.zeros(0, 3, 128, 128), torch.zeros(0, 32, dtype=torch.long), "B >= 1"),
        (None, torch.full((1, 32), 49408, dtype=torch.long), r"token ids must lie in \[0, 49408\)"),
        (None, torch.full((1, 32), -1, dtype=torch.long), "token ids"),
        (None, torch.zeros(1, 77, dtype=torch.long), r"shape \(B, 32\)"),
        (None, torch.zeros(1, 32, dtype=torch.int32), "int64"),
        (None, torch.zeros(2, 32, dtype=torch.long), "same batch size"),
    ],
)
def test_bad_inputs_are_clear_errors(
    frozen_model, tiny_config, images, tokens, message, make_inputs
):
    good_images, good_tokens = make_inputs(tiny_config, 1)
    with pytest.raises(InputError, match=message):
        frozen_model(
            good_images if images is None else images, good_tokens if tokens is None else tokens
        )


@pytest.mark.parametrize("length", [0, -1, 2, "77", 3.0, True])
def test_tokenize_rejects_bad_context_length(length):
    with pytest.raises(InputError, match="context_length must be an int >= 3"):
        tokenize("pick the mug", length)


def test_tokenize_warns_when_truncating():
    with pytest.warns(TruncationWarning, match="truncated"):
        tokens = tokenize("pick " * 40 + "the mug", 16)
    assert tokens.shape == (1, 16) and tokens[0, -1] == tokens.max()  # end-of-text kept
