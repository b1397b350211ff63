"""The LGGD model: CLIP encoders, DCVLF, language-guided upsampling, LDCH and refinement (Fig. 3).

Input/output contract (see also ``langgrasp.detector.grasp`` for the grasp conventions):

* images: (B, 3, S, S) float32, RGB normalised with the config's mean/std, S = input_size.
* tokens: (B, L) int64 CLIP BPE ids, L = context_length (``tokenize``).
* outputs (``LGGDOutput``) at S x S: ``mask`` logits (B, 1, S, S) and ``grasp`` regressed maps
  (B, 4, S, S) in ``GRASP_CHANNELS`` order, refined (eq. 30-31); plus the coarse versions that
  deep supervision uses (eq. 32-34).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import open_clip
import torch
from torch import nn

from langgrasp.detector.config import LGGDConfig, get_config
from langgrasp.detector.model.encoders import (
    CLIP_WEIGHTS_ENV,
    CLIPImageEncoder,
    CLIPTextEncoder,
    ImageFeatures,
    TextFeatures,
    build_clip,
    find_clip_weights,
    load_clip_weights,
)
from langgrasp.detector.model.fusion import DCVLF, ConcatFusion
from langgrasp.detector.model.heads import LDCHead, RefineUNet
from langgrasp.detector.model.upsample import UpStage
from langgrasp.errors import InputError, TruncationWarning  # re-exported by the package

SKIP_STAGES = 3
"""The first three decoder stages fuse the encoder skips x2, x1, x0 (Section IV.A)."""


class PretrainedWeightsWarning(UserWarning):
    """Pretrained CLIP weights were not found; the encoders are randomly initialised."""


@dataclass
class LGGDOutput:
    """Model outputs at the config's output size S.

    Mask channels are logits; grasp channels are regressed values (q, cos 2θ, sin 2θ,
    w / width_scale), never passed through a sigmoid (``grasp`` module docstring).

    Attributes:
        mask: Refined target-mask logits (B, 1, S, S).
        grasp: Refined grasp maps (B, 4, S, S).
        coarse_mask: LDCH mask logits before refinement (B, 1, S, S).
        coarse_grasp: LDCH grasp maps before refinement (B, 4, S, S).
    """

    mask: torch.Tensor
    grasp: torch.Tensor
    coarse_mask: torch.Tensor
    coarse_grasp: torch.Tensor


class LGGD(nn.Module):
    """Language-guided grasp detector (paper Section IV).

    ``encode_text`` runs once per command, ``encode_image`` + ``decode`` once per frame, so the
    runtime can cache text features; ``forward`` chains them.
    """

    def __init__(self, config: LGGDConfig, clip: open_clip.CLIP, freeze_clip: bool) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = CLIPImageEncoder(clip, project=config.pool_project)
        self.text_encoder = CLIPTextEncoder(clip)
        text_dim = self.text_encoder.sentence_dim
        self.fusion: DCVLF | ConcatFusion
        if config.fusion == "concat":  # ablation baseline without DCVLF (Table VI, first row)
            self.fusion = ConcatFusion(self.image_encoder.out_channels, text_dim, config.fusion_dim)
        else:
            self.fusion = DCVLF(
                self.image_encoder.out_channels,
                self.text_encoder.word_dim,
                config.fusion_dim,
                config.fusion_heads,
                config.fusion_ffn,
            )
        skips = list(reversed(self.image_encoder.skip_channels))  # x2, x1, x0
        channels = [config.fusion_dim, *config.decoder_channels]
        self.stages = nn.ModuleList(
            UpStage(
                channels[i],
                skips[i] if i < SKIP_STAGES else None,
                channels[i + 1],
                text_dim,
                config.film_hidden,
                config.attention_reduction,
            )
            for i in range(len(config.decoder_channels))
        )
        self.head = LDCHead(
            channels[-1],
            config.head_channels,
            text_dim,
            config.num_experts,
            config.router_hidden,
            config.ldch_form,
        )
        self.mask_refine = RefineUNet(1, config.refine_width, config.refine_depth)
        self.grasp_refine = RefineUNet(4, config.refine_width, config.refine_depth)
        self.clip_frozen = freeze_clip
        for encoder in (self.image_encoder, self.text_encoder):
            encoder.requires_grad_(not freeze_clip)

    def train(self, mode: bool = True) -> LGGD:
        """Set train/eval mode; frozen CLIP encoders always stay in eval (BatchNorm statistics)."""
        super().train(mode)
        if self.clip_frozen:
            self.image_encoder.eval()
            self.text_encoder.eval()
        return self

    def encode_text(self, tokens: torch.Tensor) -> TextFeatures:
        """Word features, padding mask and sentence feature for tokens (B, L)."""
        return self.text_encoder(tokens)

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """Skips x0..x2 and the spatial map x4 for normalised images (B, 3, S, S)."""
        return self.image_encoder(images)

    def decode(self, image: ImageFeatures, text: TextFeatures) -> LGGDOutput:
        """Fuse, upsample, predict and refine (Sections IV.B-E)."""
        if isinstance(self.fusion, ConcatFusion):
            x = self.fusion(image.spatial, text.sentence)
        else:
            x = self.fusion(image.spatial, text.words, text.padding)
        skips = list(reversed(image.skips))
        for i, stage in enumerate(self.stages):
            x = stage(x, text.sentence, skips[i] if i < SKIP_STAGES else None)
        coarse = self.head(x, text.sentence)
        coarse_mask, coarse_grasp = coarse[:, :1], coarse[:, 1:]
        return LGGDOutput(
            mask=self.mask_refine(coarse_mask),
            grasp=self.grasp_refine(coarse_grasp),
            coarse_mask=coarse_mask,
            coarse_grasp=coarse_grasp,
        )

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> LGGDOutput:
        """Predict masks and grasp maps for images (B, 3, S, S) and tokens (B, L)."""
        self.check_inputs(images, tokens)
        return self.decode(self.encode_image(images), self.encode_text(tokens))

    def check_inputs(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        """Raise ``InputError`` with a precise message unless the inputs fit this model."""
        size, length = self.config.input_size, self.config.context_length
        dtype = next(self.parameters()).dtype
        if not _is_tensor(images, dtype, (3, size, size)):
            raise InputError(
                f"images must be a {dtype} tensor of shape (B, 3, {size}, {size}) normalised with "
                f"the model's mean/std (langgrasp.detector.preprocess); got {_describe(images)}"
            )
        if not _is_tensor(tokens, torch.int64, (length,)):
            raise InputError(
                f"tokens must be an int64 tensor of shape (B, {length}) from tokenize(); "
                f"got {_describe(tokens)}"
            )
        if tokens.shape[0] != images.shape[0] or images.shape[0] == 0:
            raise InputError(
                f"need the same batch size B >= 1 for images and commands, got {images.shape[0]} "
                f"images and {tokens.shape[0]} commands"
            )
        vocab = self.text_encoder.token_embedding.num_embeddings
        if not tokens.is_meta and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
            raise InputError(f"token ids must lie in [0, {vocab}); use tokenize() to make them")


def _is_tensor(x: object, dtype: torch.dtype, trailing: tuple[int, ...]) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and x.dtype == dtype
        and x.ndim == len(trailing) + 1
        and tuple(x.shape[1:]) == trailing
    )


def _describe(x: object) -> str:
    return f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def tokenize(commands: str | Sequence[str], context_length: int) -> torch.Tensor:
    """CLIP BPE token ids (B, context_length) int64 for one or more commands.

    Over-long commands are truncated to the context length (end-of-text kept) with a warning.

    Raises:
        InputError: a command is not a string, or is empty / whitespace only.
    """
    if (
        isinstance(context_length, bool)
        or not isinstance(context_length, int)
        or context_length < 3
    ):
        raise InputError(
            f"context_length must be an int >= 3 (start, a word, end), got {context_length!r}"
        )
    texts = list(commands) if isinstance(commands, (list, tuple)) else [commands]
    if not texts:
        raise InputError("no command given: expected a non-empty string such as 'pick the red mug'")
    for text in texts:
        if not isinstance(text, str):
            raise InputError(f"a command must be a string, got {type(text).__name__}: {text!r}")
        if not text.strip():
            raise InputError("the command is empty: say what to grasp, e.g. 'pick the red mug'")
    tokenizer = open_clip.tokenizer._tokenizer
    for text in texts:
        count = len(tokenizer.encode(text))  # encode() applies the same cleaning as tokenize
        if count + 2 > context_length:  # + start and end of text
            warnings.warn(
                f"command has {count} tokens, more than the {context_length - 2} that fit; "
                f"it was truncated: {text!r}",
                TruncationWarning,
                stacklevel=2,
            )
    return open_clip.tokenize(texts, context_length=context_length)


def build_model(
    config: str | LGGDConfig,
    clip_weights: str | os.PathLike | None = None,
    freeze_clip: bool | None = None,
) -> LGGD:
    """Build an LGGD model from a registered name or a config.

    Pretrained CLIP weights come from ``clip_weights``, ``$LANGGRASP_CLIP_WEIGHTS`` or the local
    open_clip caches; nothing is downloaded. Without them the encoders are randomly initialised
    and one ``PretrainedWeightsWarning`` says so.

    Args:
        config: Registry name (``list_models()``) or an ``LGGDConfig``.
        clip_weights: Optional local CLIP checkpoint.
        freeze_clip: Overrides ``config.freeze_clip``; by default CLIP is frozen exactly when
            pretrained weights were loaded.
    """
    if isinstance(config, str):
        config = get_config(config)
    clip = build_clip(config.clip, config.input_size, config.context_length)
    # On the meta device (shape-only builds for counting parameters and FLOPs) there is nothing
    # to load weights into.
    meta = clip.token_embedding.weight.is_meta
    path = None if meta else find_clip_weights(config.clip, clip_weights)
    if path is not None:
        load_clip_weights(clip, path)
    elif not meta:
        source = (
            f"open_clip's cache for {'/'.join(config.clip.pretrained)}"
            if config.clip.pretrained
            else "none published"
        )
        warnings.warn(
            f"no pretrained CLIP weights for {config.name} ({source}; set {CLIP_WEIGHTS_ENV} or "
            "pass a file): the CLIP encoders are randomly initialised, so the model is untrained "
            "until you train it",
            PretrainedWeightsWarning,
            stacklevel=2,
        )
    if freeze_clip is None:
        freeze_clip = config.freeze_clip if config.freeze_clip is not None else path is not None
    return LGGD(config, clip, freeze_clip=freeze_clip)
