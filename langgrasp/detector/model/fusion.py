"""Vision-language bottlenecks: DCVLF and the concatenation baseline.

``DCVLF`` is the paper's bottleneck (Section IV.B, eq. 7-12); ``ConcatFusion`` is the baseline of
its ablation (Table VI, first row), selected with ``LGGDConfig.fusion = "concat"``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Temperature of transformer sinusoidal encodings (Vaswani et al. 2017; DETR's 2D variant).
SINUSOID_TEMPERATURE = 10000.0


def sinusoidal_positions_2d(
    height: int, width: int, dim: int, device: torch.device | None = None
) -> torch.Tensor:
    """Fixed 2D sinusoidal position codes, (H*W, dim), row-major over the grid.

    The first half of the channels encodes the row (y), the second half the column (x), each as
    [sin | cos] blocks over geometric frequencies.
    """
    if dim % 4:
        raise ValueError(f"2D sinusoidal positions need dim divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = torch.exp(
        -math.log(SINUSOID_TEMPERATURE) * torch.arange(quarter, device=device) / quarter
    )
    ys = torch.arange(height, dtype=torch.float32, device=device)[:, None] * freqs  # (H, d/4)
    xs = torch.arange(width, dtype=torch.float32, device=device)[:, None] * freqs  # (W, d/4)
    y_code = torch.cat([ys.sin(), ys.cos()], dim=-1)[:, None, :].expand(height, width, 2 * quarter)
    x_code = torch.cat([xs.sin(), xs.cos()], dim=-1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([y_code, x_code], dim=-1).reshape(height * width, dim)


class FeedForward(nn.Sequential):
    """Position-wise FFN: Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class AttentionBlock(nn.Module):
    """Post-norm attention with optional FFN: y = LN(q + MHA(q, kv)); y = LN(y + FFN(y)) (eq. 12).

    Keys flagged in ``key_padding`` (B, Lk) bool, True = ignore, are masked out of attention.
    """

    def __init__(self, dim: int, heads: int, ffn_hidden: int | None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_hidden) if ffn_hidden else None
        self.norm2 = nn.LayerNorm(dim) if ffn_hidden else None

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, key_padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend from ``query`` (B, Lq, d) to ``context`` (B, Lk, d); returns (B, Lq, d)."""
        out = self.norm1(
            query
            + self.attn(query, context, context, key_padding_mask=key_padding, need_weights=False)[
                0
            ]
        )
        if self.ffn is not None:
            out = self.norm2(out + self.ffn(out))
        return out


class DCVLF(nn.Module):
    """Bidirectional word-level vision-language fusion (Fig. 5, eq. 9-12).

    Steps: project the visual map x4 and the word features to width d; add 2D sinusoidal
    positions to the image tokens and refine them with MHSA; cross-attend image -> words (eq. 9)
    and words -> image (eq. 10), each with residual + LayerNorm + its own FFN; concatenate and fuse
    with a 1x1 conv + ReLU (eq. 11); finish with MHSA + FFN (eq. 12).

    The paper concatenates Ĩ (HW tokens) and T̃ (L tokens) channel-wise before a 1x1 conv, which
    needs one text vector per pixel: we take the padding-masked mean of T̃ over the valid words
    and broadcast it over the grid.
    """

    def __init__(
        self, visual_channels: int, word_dim: int, dim: int, heads: int, ffn_hidden: int
    ) -> None:
        super().__init__()
        self.visual_proj = nn.Conv2d(visual_channels, dim, kernel_size=1)
        self.word_proj = nn.Linear(word_dim, dim)
        self.image_self_attn = AttentionBlock(dim, heads, ffn_hidden=None)
        self.image_to_text = AttentionBlock(dim, heads, ffn_hidden)  # eq. 9
        self.text_to_image = AttentionBlock(dim, heads, ffn_hidden)  # eq. 10
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * dim, dim, kernel_size=1), nn.ReLU(inplace=True)
        )  # eq. 11
        self.out_block = AttentionBlock(dim, heads, ffn_hidden)  # eq. 12
        self.dim = dim

    def forward(
        self, visual: torch.Tensor, words: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        """Fuse the visual map (B, Cv, h, w) with words (B, L, Dw); padding (B, L) True = pad.

        Returns:
            Fused map O, (B, d, h, w).
        """
        b, _, h, w = visual.shape
        image = self.visual_proj(visual).flatten(2).transpose(1, 2)  # (B, hw, d)
        image = image + sinusoidal_positions_2d(h, w, self.dim, visual.device).to(image.dtype)
        text = self.word_proj(words)
        image = self.image_self_attn(image, image)
        image_fused = self.image_to_text(image, text, key_padding=padding)
        text_fused = self.text_to_image(text, image)
        valid = (~padding).unsqueeze(-1).to(text_fused.dtype)  # (B, L, 1)
        text_vector = (text_fused * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)  # (B, d)
        grid = image_fused.transpose(1, 2).reshape(b, self.dim, h, w)
        fused = self.fuse(
            torch.cat([grid, text_vector[:, :, None, None].expand(-1, -1, h, w)], dim=1)
        )
        tokens = fused.flatten(2).transpose(1, 2)
        tokens = self.out_block(tokens, tokens)
        return tokens.transpose(1, 2).reshape(b, self.dim, h, w)


class ConcatFusion(nn.Module):
    """Plain-concatenation bottleneck: the "w/o DCVLF" baseline of the paper's ablation.

    The paper's Table VI (Section V.H) starts from a baseline without DCVLF and describes it only
    as "simple feature concatenation"; its numbers (31.30 IoU, 9.73 J@1) equal the
    "GR-ConvNet + CLIP" row of Table I. We build the minimal version of that: the visual map x4
    (B, Cv, h, w) and the sentence feature y_sentence (B, Ds), broadcast over the h x w grid, are
    concatenated channel-wise and projected to the width DCVLF outputs with a 1x1 convolution
    followed by ReLU (the same Conv 1x1 + ReLU as DCVLF's eq. 11, without any attention, position
    codes or word-level features). The rest of the network is unchanged, so the ablation isolates
    the bottleneck.
    """

    def __init__(self, visual_channels: int, sentence_dim: int, dim: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(visual_channels + sentence_dim, dim, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.dim = dim

    def forward(self, visual: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Fuse the visual map (B, Cv, h, w) with sentence features (B, Ds).

        Returns:
            Fused map (B, dim, h, w).
        """
        _, _, h, w = visual.shape
        text = sentence[:, :, None, None].expand(-1, -1, h, w).to(visual.dtype)
        return self.project(torch.cat([visual, text], dim=1))
