import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from langgrasp.detector.model import PretrainedWeightsWarning, build_model, tokenize
from langgrasp.detector.model.encoders import CLIPImageEncoder, CLIPTextEncoder, build_clip
from langgrasp.errors import LanggraspError


@pytest.fixture
def clip(tiny_config):
    return build_clip(tiny_config.clip, tiny_config.input_size, tiny_config.context_length).eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_image_encoder_shapes(clip, tiny_config, batch):
    s = tiny_config.input_size
    c0, c1, c2, c3 = tiny_config.clip.stage_channels
    features = CLIPImageEncoder(clip, project=False)(torch.randn(batch, 3, s, s))
    assert [tuple(x.shape) for x in features.skips] == [
        (batch, c0, s // 4, s // 4),
        (batch, c1, s // 8, s // 8),
        (batch, c2, s // 16, s // 16),
    ]
    assert features.spatial.shape == (batch, c3, s // 32, s // 32)  # eq. 6 keeps stage-4 channels
    projected = CLIPImageEncoder(clip, project=True)(torch.randn(batch, 3, s, s))
    assert projected.spatial.shape == (batch, tiny_config.clip.embed_dim, s // 32, s // 32)


def test_spatial_pool_is_clip_attention_pool_with_every_position_as_query(clip, tiny_config):
    encoder = CLIPImageEncoder(clip, project=True)
    s = tiny_config.input_size
    x3 = torch.randn(2, tiny_config.clip.stage_channels[3], s // 32, s // 32)
    pool = clip.visual.attnpool
    # open_clip's AttentionPool2d with query = all tokens instead of the mean token only.
    tokens = x3.flatten(2).permute(2, 0, 1)
    tokens = (
        torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + pool.positional_embedding[:, None]
    )
    expected, _ = F.multi_head_attention_forward(
        tokens, tokens, tokens, tokens.shape[-1], pool.num_heads,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight, need_weights=False,
    )  # fmt: skip
    assert torch.allclose(pool(x3), expected[0], atol=1e-5)  # the mean token is CLIP's own output
    spatial = encoder._spatial_pool(x3)
    assert torch.allclose(spatial.flatten(2).permute(2, 0, 1), expected[1:], atol=1e-5)


def test_text_encoder_matches_open_clip_and_masks_only_padding(clip, tiny_config):
    tokens = tokenize(["grab the blue box!", "a b c d"], tiny_config.context_length)
    text = CLIPTextEncoder(clip)(tokens)
    assert text.words.shape == (2, tiny_config.context_length, tiny_config.clip.text_width)
    assert torch.allclose(text.sentence, clip.encode_text(tokens, normalize=True), atol=1e-5)
    assert torch.allclose(text.sentence.norm(dim=-1), torch.ones(2))
    lengths = (tokens.argmax(dim=-1) + 1).tolist()  # <start> ... <end>
    for row, n in enumerate(lengths):
        assert not text.padding[row, :n].any() and text.padding[row, n:].all()
    # BPE id 0 is the token "!", the same value as padding: inside a command it is a word.
    tokens[1, 1:4] = torch.tensor([0, 320, 49407])
    assert CLIPTextEncoder(clip)(tokens).padding[1].tolist() == [False] * 4 + [True] * (
        tokens.shape[1] - 4
    )


def test_missing_weights_warn_once_and_leave_clip_trainable(tiny_config):
    with pytest.warns(PretrainedWeightsWarning, match="randomly initialised") as record:
        model = build_model(tiny_config)
    assert len(record) == 1
    assert not model.clip_frozen
    assert all(p.requires_grad for p in model.image_encoder.parameters())


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_local_weights_load_and_freeze_clip(tiny_config, tmp_path, fmt, recwarn):
    # A checkpoint made for another input size and context length: positions are adapted.
    source = build_clip(tiny_config.clip, input_size=64, context_length=77)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"clip.{fmt}"
    save_file(state, path) if fmt == "safetensors" else torch.save(state, path)
    model = build_model(tiny_config, clip_weights=path)
    assert not [w for w in recwarn if issubclass(w.category, PretrainedWeightsWarning)]
    assert model.clip_frozen
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert torch.equal(model.text_encoder.token_embedding.weight, state["token_embedding.weight"])
    assert torch.equal(
        model.text_encoder.positional_embedding,
        state["positional_embedding"][: tiny_config.context_length],
    )
    assert model.image_encoder.pool_positions.shape[0] == (tiny_config.input_size // 32) ** 2 + 1


def test_weights_from_environment_and_bad_paths(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("LANGGRASP_CLIP_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(LanggraspError, match="does not exist"):
        build_model(tiny_config)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"token_embedding.weight": torch.zeros(3, 3)}, wrong)
    monkeypatch.setenv("LANGGRASP_CLIP_WEIGHTS", str(wrong))
    with pytest.raises(LanggraspError, match="do not fit"):
        build_model(tiny_config)


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_corrupt_weight_files_are_clear_errors(tiny_config, tmp_path, content):
    for name in ("clip.pt", "clip.safetensors"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(LanggraspError, match="cannot read CLIP weights"):
            build_model(tiny_config, clip_weights=path)


def test_a_pickled_non_state_dict_is_refused(tiny_config, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(LanggraspError, match="state dict of tensors"):
        build_model(tiny_config, clip_weights=path)
