"""Coarse prediction head (LDCH, eq. 21-28) and refinement modules (eq. 29-31)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from langgrasp.detector.model.upsample import conv_bn_relu

HEAD_TASKS = ("mask", "quality", "cos2", "sin2", "width")
"""Order of the five LDCH heads; the last four match ``grasp.GRASP_CHANNELS``."""


class LDCHead(nn.Module):
    """Language-conditioned dynamic convolution head (Fig. 7, eq. 21-28).

    F = Conv1x1(x) is split into one C-channel group per task (eq. 21-22); the sentence feature
    gives mixture weights π = softmax(MLP(s)) over K experts (eq. 24); each task t has experts
    {W_t^k (C x 3 x 3), b_t^k} (eq. 25) and the per-sample kernel is Σ_k π_k W_t^k (eq. 26).

    Because convolution is linear, Σ_k π_k (W_t^k * F_t + b_t^k) equals the mixed kernel applied
    to F_t. ``form="static"`` computes it as one grouped conv with K outputs per task followed by
    the π-weighted sum, which keeps the batch dimension dynamic in ONNX. ``form="grouped"`` is the
    paper's per-sample grouped conv with groups = B (eq. 23, 27-28). Both give the same output.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        text_dim: int,
        num_experts: int,
        router_hidden: int,
        form: str,
    ) -> None:
        super().__init__()
        self.tasks = len(HEAD_TASKS)
        self.channels, self.num_experts, self.form = channels, num_experts, form
        self.expand = nn.Conv2d(in_channels, self.tasks * channels, kernel_size=1)  # eq. 21
        self.router = nn.Sequential(
            nn.Linear(text_dim, router_hidden),
            nn.LeakyReLU(inplace=True),
            nn.Linear(router_hidden, num_experts),
        )  # eq. 24
        self.weight = nn.Parameter(torch.empty(self.tasks, num_experts, channels, 3, 3))  # eq. 25
        self.bias = nn.Parameter(torch.zeros(self.tasks, num_experts))
        for task in range(self.tasks):
            nn.init.kaiming_uniform_(self.weight.data[task], a=5**0.5)  # nn.Conv2d's default init

    def mixture(self, sentence: torch.Tensor) -> torch.Tensor:
        """Expert weights π (B, K) from the sentence feature (B, Ds) (eq. 24)."""
        return torch.softmax(self.router(sentence), dim=-1)

    def forward(self, x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """Map features (B, Cin, H, W) to the coarse outputs (B, 5, H, W) in HEAD_TASKS order."""
        features = self.expand(x)
        pi = self.mixture(sentence)
        if self.form == "grouped":
            return self._grouped(features, pi)
        weight = self.weight.reshape(self.tasks * self.num_experts, self.channels, 3, 3)
        per_expert = F.conv2d(features, weight, self.bias.reshape(-1), padding=1, groups=self.tasks)
        per_expert = per_expert.unflatten(1, (self.tasks, self.num_experts))  # (B, T, K, H, W)
        return (per_expert * pi[:, None, :, None, None]).sum(dim=2)

    def _grouped(self, features: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        outputs = []
        for task, group in enumerate(features.split(self.channels, dim=1)):
            kernels = torch.einsum(
                "bk,kcij->bcij", pi, self.weight[task]
            )  # eq. 26-27: (B, C, 3, 3)
            bias = pi @ self.bias[task]  # (B,)
            y = F.conv2d(
                group.reshape(1, b * self.channels, h, w), kernels, bias, padding=1, groups=b
            )  # eq. 28
            outputs.append(y.reshape(b, 1, h, w))
        return torch.cat(outputs, dim=1)


class RefineUNet(nn.Module):
    """Lightweight U-Net that predicts a residual correction of coarse logits (Fig. 8, eq. 30-31).

    Encoder: ``depth`` + 1 conv blocks with max-pooling between them; decoder: mirrored blocks
    with bilinear upsampling and skip connections; a final 1x1 conv maps back to the input's
    channels. ``forward`` returns the refined output ``coarse + Δ``.
    """

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            [conv_bn_relu(channels if i == 0 else width, width) for i in range(depth + 1)]
        )
        self.decoder = nn.ModuleList([conv_bn_relu(2 * width, width) for _ in range(depth)])
        self.residual = nn.Conv2d(width, channels, kernel_size=1)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        """Refine coarse logits/values (B, C, H, W) -> (B, C, H, W)."""
        skips = []
        x = coarse
        for i, block in enumerate(self.encoder):
            if i:
                skips.append(x)
                x = F.max_pool2d(x, kernel_size=2, ceil_mode=True)
            x = block(x)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return coarse + self.residual(x)
