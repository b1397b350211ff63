"""CLIP image and text encoders built on open_clip (paper Section IV.A, eq. 2-6).

Pretrained CLIP weights are only ever read from local files: an explicit path, or the caches
open_clip itself fills (``~/.cache/clip`` for OpenAI URLs, the Hugging Face hub cache). Nothing is
downloaded; without weights the towers stay randomly initialised and one warning says so.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import nn

from langgrasp.detector.config import CLIP_VOCAB_SIZE, CLIPConfig
from langgrasp.errors import LanggraspError

log = logging.getLogger(__name__)

CLIP_WEIGHTS_ENV = "LANGGRASP_CLIP_WEIGHTS"
"""Environment variable naming a local CLIP checkpoint (overrides the cache lookup)."""


def build_clip(config: CLIPConfig, input_size: int, context_length: int) -> CLIP:
    """Build an open_clip ``CLIP`` with a ModifiedResNet tower for the given input and context."""
    vision = CLIPVisionCfg(
        layers=config.vision_layers,
        width=config.vision_width,
        head_width=config.vision_head_width,
        image_size=input_size,
        patch_size=None,
    )
    text = CLIPTextCfg(
        context_length=context_length,
        vocab_size=CLIP_VOCAB_SIZE,
        width=config.text_width,
        heads=config.text_heads,
        layers=config.text_layers,
    )
    return CLIP(config.embed_dim, vision, text, quick_gelu=config.quick_gelu)


def find_clip_weights(config: CLIPConfig, path: str | os.PathLike | None = None) -> Path | None:
    """Locate a local CLIP checkpoint without touching the network.

    Order: ``path``; ``$LANGGRASP_CLIP_WEIGHTS``; open_clip's URL cache (``~/.cache/clip``); the
    Hugging Face hub cache for the open_clip hub id. Returns None when nothing is found.

    Raises:
        LanggraspError: an explicitly given path does not exist.
    """
    explicit = path or os.environ.get(CLIP_WEIGHTS_ENV)
    if explicit:
        explicit = Path(explicit).expanduser()
        if not explicit.is_file():
            raise LanggraspError(
                f"CLIP weights file {explicit} does not exist; pass an existing file or unset "
                f"{CLIP_WEIGHTS_ENV} to use the local cache"
            )
        return explicit
    if config.pretrained is None:
        return None
    cfg = open_clip.get_pretrained_cfg(*config.pretrained)
    if cfg.get("url"):
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if cached.is_file():
            return cached
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache  # offline: reads the cache only

        repo_id, filename = os.path.split(cfg["hf_hub"].rstrip("/") + "/")
        for name in filter(
            None, (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        ):
            hit = try_to_load_from_cache(repo_id=repo_id.rstrip("/"), filename=name)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    return None


def load_clip_weights(clip: CLIP, path: Path) -> None:
    """Load a local CLIP checkpoint into ``clip``.

    Accepts safetensors, a state-dict pickle (read with ``weights_only=True``) or OpenAI's
    TorchScript archive; adapts the text context length and the attention-pool grid to the model.
    """
    try:
        state = _read_state_dict(path)
    except Exception as err:  # corrupt or foreign files fail in many library-specific ways
        raise LanggraspError(
            f"cannot read CLIP weights from {path} ({type(err).__name__}: {err}); expected a "
            "safetensors file, a PyTorch state dict, or OpenAI's RN50.pt"
        ) from err
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    # Shorter context: keep the first positions. Other input size: resample the pool's grid.
    if "positional_embedding" in state:
        state["positional_embedding"] = state["positional_embedding"][
            : clip.positional_embedding.shape[0]
        ]
    key = "visual.attnpool.positional_embedding"
    if key in state:
        state[key] = _resize_pool_positions(
            state[key], clip.visual.attnpool.positional_embedding.shape[0]
        )
    try:
        clip.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise LanggraspError(f"CLIP weights in {path} do not fit this model config: {err}") from err


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if zipfile.is_zipfile(path):  # torch.save files are zips too; TorchScript adds constants.pkl
        with zipfile.ZipFile(path) as archive:
            torchscript = any(n.endswith("constants.pkl") for n in archive.namelist())
        if torchscript:  # OpenAI's RN50.pt
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("the file does not hold a state dict of tensors")
    return state


def _resize_pool_positions(pos: torch.Tensor, tokens: int) -> torch.Tensor:
    """Bicubically resample attention-pool positions ``(1 + g*g, C)`` to ``tokens`` entries."""
    if pos.shape[0] == tokens:
        return pos
    old, new = round((pos.shape[0] - 1) ** 0.5), round((tokens - 1) ** 0.5)
    grid = pos[1:].T.reshape(1, -1, old, old)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid.reshape(-1, new * new).T])


@dataclass
class ImageFeatures:
    """Image-encoder outputs for a batch of B images at input size S.

    Attributes:
        skips: x0 (B, C0, S/4, S/4), x1 (B, C1, S/8, S/8), x2 (B, C2, S/16, S/16) (eq. 2-4).
        spatial: x4, the attention-pooled spatial map (B, Cp, S/32, S/32) (eq. 6).
    """

    skips: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    spatial: torch.Tensor


@dataclass
class TextFeatures:
    """Text-encoder outputs for B commands of L tokens.

    Attributes:
        words: Word-level features y_word (B, L, Dw), the final-LayerNorm outputs.
        padding: (B, L) bool, True at padding tokens (they must not be attended to).
        sentence: y_sentence (B, Ds), the projected end-of-text feature, L2-normalised.
    """

    words: torch.Tensor
    padding: torch.Tensor
    sentence: torch.Tensor


class CLIPImageEncoder(nn.Module):
    """ModifiedResNet stages plus a *spatial* attention pool (eq. 2-6).

    CLIP's attention pool only returns the mean token. Here every one of the (S/32)^2 positions
    is also a query, so the pool's multi-head self-attention (with CLIP's learned positions)
    yields a 7x7 map at 224 px. With ``project=False`` the output projection is skipped and the
    map keeps the 2048 channels of eq. 6; with ``project=True`` it is projected to embed_dim.
    """

    def __init__(self, clip: CLIP, project: bool) -> None:
        super().__init__()
        visual = clip.visual
        self.stem = nn.Sequential(
            visual.conv1, visual.bn1, visual.act1, visual.conv2, visual.bn2, visual.act2,
            visual.conv3, visual.bn3, visual.act3, visual.avgpool,
        )  # fmt: skip
        self.stages = nn.ModuleList([visual.layer1, visual.layer2, visual.layer3, visual.layer4])
        pool = visual.attnpool
        self.q_proj, self.k_proj, self.v_proj = pool.q_proj, pool.k_proj, pool.v_proj
        self.c_proj = pool.c_proj if project else None
        self.pool_positions = pool.positional_embedding
        self.heads = pool.num_heads
        stage_channels = [stage[-1].conv3.out_channels for stage in self.stages]
        self.skip_channels = tuple(stage_channels[:3])
        self.out_channels = pool.c_proj.out_features if project else stage_channels[3]

    def forward(self, images: torch.Tensor) -> ImageFeatures:
        """Encode normalised images (B, 3, S, S) into skips x0..x2 and the spatial map x4."""
        x = self.stem(images)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return ImageFeatures(skips=tuple(skips[:3]), spatial=self._spatial_pool(x))

    def _spatial_pool(self, x3: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x3.shape
        tokens = x3.flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.pool_positions.to(tokens.dtype)
        q, k, v = (
            proj(tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # (B, 1+HW, C)
        if self.c_proj is not None:
            out = self.c_proj(out)
        return out[:, 1:].transpose(1, 2).reshape(b, -1, h, w)


class CLIPTextEncoder(nn.Module):
    """CLIP text transformer giving word features and the sentence feature (Section IV.A)."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("causal_mask", clip.attn_mask.clone(), persistent=False)
        self.word_dim = clip.transformer.width
        self.sentence_dim = (
            clip.text_projection.shape[1]
            if isinstance(clip.text_projection, nn.Parameter)
            else clip.text_projection.out_features
        )
        self.context_length = clip.positional_embedding.shape[0]

    def forward(self, tokens: torch.Tensor) -> TextFeatures:
        """Encode token ids (B, L) int64 from the CLIP tokenizer.

        Padding is every position after the end-of-text token (id 0 is also the BPE token "!",
        so it cannot mark padding by itself).
        """
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.causal_mask))
        # The end-of-text token has the largest id in CLIP's vocabulary (open_clip "argmax" pool).
        eot_index = tokens.argmax(dim=-1)
        eot = x[torch.arange(x.shape[0], device=x.device), eot_index]
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        padding = positions[None, :] > eot_index[:, None]
        if isinstance(self.text_projection, nn.Linear):
            sentence = self.text_projection(eot)
        else:
            sentence = eot @ self.text_projection
        return TextFeatures(words=x, padding=padding, sentence=F.normalize(sentence, dim=-1))
