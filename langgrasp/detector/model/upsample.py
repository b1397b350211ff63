"""Hierarchical language-guided upsampling: FiLM and LMAFN (paper Section IV.C, eq. 13-20)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (same padding, no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FiLM(nn.Module):
    """Feature-wise linear modulation by the sentence feature (eq. 13-14).

    [γ, β] = W2 LReLU(W1 s);  FiLM(x, s) = (1 + γ) ⊙ x + β, with γ, β per channel.
    """

    def __init__(self, text_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(text_dim, hidden), nn.LeakyReLU(inplace=True), nn.Linear(hidden, 2 * channels)
        )

    def forward(self, x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Modulate x (B, C, H, W) with the sentence feature (B, Ds)."""
        gamma, beta = self.mlp(sentence)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * x + beta


class LMAFN(nn.Module):
    """Pixel and channel attention on a FiLM-modulated map (eq. 17-20).

    A_pixel = σ(Conv3x3(x));  A_channel = σ(W2 δ(W1 GAP(x)));  out = x ⊙ A_pixel ⊙ A_channel.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.pixel = nn.Conv2d(channels, channels, kernel_size=3, padding=1)  # eq. 17
        hidden = max(channels // reduction, 1)
        self.channel = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Re-weight x (B, C, H, W); same shape out."""
        pixel = torch.sigmoid(self.pixel(x))
        channel = torch.sigmoid(self.channel(x.mean(dim=(2, 3))))[:, :, None, None]  # eq. 18-19
        return x * pixel * channel  # eq. 20


class UpStage(nn.Module):
    """One decoder scale: upsample x2, fuse a skip, FiLM, LMAFN, then a 3x3 conv (Fig. 6).

    The deep input is upsampled to the skip's size (or x2) and projected to C'; the skip x_s is
    projected to C' with a 1x1 conv; both are concatenated (eq. 15), modulated by FiLM (eq. 16),
    re-weighted by LMAFN (eq. 17-20) and reduced to C' channels. Stages finer than the first
    encoder stage have no skip: they modulate the upsampled deep feature alone.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int | None,
        out_channels: int,
        text_dim: int,
        film_hidden: int,
        reduction: int,
    ) -> None:
        super().__init__()
        self.deep = conv_bn_relu(in_channels, out_channels)
        self.skip = (
            conv_bn_relu(skip_channels, out_channels, kernel_size=1) if skip_channels else None
        )
        cat_channels = 2 * out_channels if skip_channels else out_channels
        self.film = FiLM(text_dim, cat_channels, film_hidden)
        self.attention = LMAFN(cat_channels, reduction)
        self.out = conv_bn_relu(cat_channels, out_channels)

    def forward(
        self, deep: torch.Tensor, sentence: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Deep (B, Cin, h, w) [+ skip (B, Cs, 2h, 2w)] + sentence (B, Ds) -> (B, C', 2h, 2w)."""
        size = skip.shape[-2:] if skip is not None else (2 * deep.shape[-2], 2 * deep.shape[-1])
        x = self.deep(F.interpolate(deep, size=size, mode="bilinear", align_corners=False))
        if self.skip is not None:
            x = torch.cat([x, self.skip(skip)], dim=1)  # eq. 15: Concat(x_d, x_s)
        return self.out(self.attention(self.film(x, sentence)))
