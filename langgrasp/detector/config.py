"""Typed model configs and the registry of named configs.

One name fixes architecture, tokenizer context length, preprocessing and the grasp width scale,
so training, export and runtime cannot drift apart. Configs are frozen dataclasses that
round-trip through JSON (``to_dict`` / ``from_dict``) for checkpoints and bundles. This module
does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from langgrasp.detector.preprocess import CLIP_MEAN, CLIP_STD
from langgrasp.errors import InputError, UnknownModelError

CLIP_VOCAB_SIZE = 49408  # CLIP BPE vocabulary incl. <start/end of text> (open_clip CLIPTextCfg)

FUSION_KINDS = ("dcvlf", "concat")
"""Vision-language bottlenecks ``LGGDConfig.fusion`` accepts: the paper's DCVLF, or the plain
concatenation baseline of its ablation (Table VI, first row; see ``model.fusion.ConcatFusion``)."""


@dataclass(frozen=True)
class CLIPConfig:
    """An open_clip ``CLIP`` with a ModifiedResNet image tower (paper Section IV.A).

    Attributes:
        embed_dim: Joint embedding size (sentence feature size; 1024 for RN50).
        vision_layers: Bottleneck blocks per ResNet stage.
        vision_width: Stem width; stage i outputs ``vision_width * 4 * 2**i`` channels.
        vision_head_width: Attention-pool head width (heads = vision_width * 32 / head_width).
        text_width: Text transformer width (word feature size).
        text_heads: Text transformer heads.
        text_layers: Text transformer layers.
        quick_gelu: QuickGELU activations, as in OpenAI's weights.
        pretrained: ``(open_clip model name, tag)`` whose weights are looked up in the local
            caches, or None when the architecture has no published weights.
    """

    embed_dim: int
    vision_layers: tuple[int, int, int, int]
    vision_width: int
    vision_head_width: int
    text_width: int
    text_heads: int
    text_layers: int
    quick_gelu: bool = True
    pretrained: tuple[str, str] | None = None

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Channels of x0..x3 (ResNet bottleneck expansion 4, doubling per stage)."""
        return tuple(self.vision_width * 4 * 2**i for i in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class LGGDConfig:
    """Everything that defines an LGGD model (paper Sections III-IV).

    Attributes:
        name: Registry name.
        clip: The CLIP encoders.
        input_size: Square model input in pixels (224 in the paper).
        context_length: Text tokens per command (77 in the paper).
        mean: Per-channel image mean for normalisation (RGB, in [0, 1]).
        std: Per-channel image std for normalisation.
        pool_project: Apply the attention pool's output projection to the spatial map (giving
            ``embed_dim`` channels). The paper's eq. 6 keeps 2048 channels, i.e. no projection.
        fusion: Vision-language bottleneck, one of ``FUSION_KINDS``: ``"dcvlf"`` (the paper's
            DCVLF, Section IV.B) or ``"concat"`` (the ablation baseline of Table VI, first row:
            visual map concatenated with the broadcast sentence feature, then a 1x1 projection
            to ``fusion_dim`` channels; ``fusion_heads``/``fusion_ffn`` are then unused).
        fusion_dim: Token width d inside DCVLF (eq. 9-12); the fused map's channels either way.
        fusion_heads: Attention heads in DCVLF.
        fusion_ffn: Hidden width of DCVLF feed-forward networks.
        decoder_channels: Output channels C' of the upsampling stages, coarse to fine. Each stage
            doubles resolution; the first three fuse the skips x2, x1, x0 (eq. 15), later stages
            only upsample (stride 32 / 2**len == 1 means full input resolution).
        film_hidden: Hidden width of the FiLM MLPs (eq. 13).
        attention_reduction: Channel reduction of the LMAFN channel-attention MLP (eq. 19).
        head_channels: Per-task channels C of the LDCH (eq. 21-22).
        num_experts: Convolution experts K per LDCH head (eq. 25).
        router_hidden: Hidden width of the LDCH mixture MLP (eq. 24).
        ldch_form: ``"static"`` (one conv with K outputs per head, then the π-weighted sum:
            dynamic-batch friendly for ONNX) or ``"grouped"`` (the paper's per-sample kernels
            through a grouped conv with groups = B, eq. 23-28). Both compute the same function.
        refine_width: Channels of the refinement U-Nets (eq. 30-31).
        refine_depth: Max-pool levels of the refinement U-Nets (the paper uses 4).
        width_scale: Pixels of gripper opening (at model input resolution) that map to a
            normalised width of 1.0 in the grasp maps.
        freeze_clip: True/False forces it; None freezes CLIP exactly when pretrained weights
            were loaded (the paper trains with frozen pretrained CLIP).
    """

    name: str
    clip: CLIPConfig
    input_size: int
    context_length: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    pool_project: bool = False
    fusion: str = "dcvlf"
    fusion_dim: int = 512
    fusion_heads: int = 8
    fusion_ffn: int = 2048
    decoder_channels: tuple[int, ...] = (512, 256, 128, 64, 32)
    film_hidden: int = 256
    attention_reduction: int = 16
    head_channels: int = 32
    num_experts: int = 4
    router_hidden: int = 128
    ldch_form: str = "static"
    refine_width: int = 32
    refine_depth: int = 4
    width_scale: float = 112.0
    freeze_clip: bool | None = None

    def __post_init__(self) -> None:
        if not 3 <= len(self.decoder_channels) <= 5:
            raise InputError(
                f"decoder_channels must have 3 to 5 stages (one per skip x2, x1, x0, then up to "
                f"full resolution), got {len(self.decoder_channels)}"
            )
        if self.input_size % 32:
            raise InputError(
                f"input_size must be a multiple of 32 (ResNet stride), got {self.input_size}"
            )
        if self.ldch_form not in ("static", "grouped"):
            raise InputError(f"ldch_form must be 'static' or 'grouped', got {self.ldch_form!r}")
        if self.fusion not in FUSION_KINDS:
            raise InputError(
                f"fusion must be one of {', '.join(repr(k) for k in FUSION_KINDS)}, "
                f"got {self.fusion!r}"
            )
        if self.fusion_dim % self.fusion_heads:
            raise InputError("fusion_dim must be divisible by fusion_heads")

    @property
    def output_stride(self) -> int:
        """Input pixels per output pixel (1: outputs at full input resolution)."""
        return 32 // 2 ** len(self.decoder_channels)

    @property
    def output_size(self) -> int:
        """Side of the square mask and grasp maps in pixels."""
        return self.input_size // self.output_stride

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LGGDConfig:
        """Inverse of ``to_dict``; unknown keys are an error that names them."""
        data = dict(data)
        clip_data = dict(data.pop("clip"))
        _check_keys(CLIPConfig, clip_data)
        _check_keys(cls, data)
        for key in ("vision_layers", "pretrained"):
            if clip_data.get(key) is not None:
                clip_data[key] = tuple(clip_data[key])
        for key in ("mean", "std", "decoder_channels"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(clip=CLIPConfig(**clip_data), **data)


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")


# CLIP RN50 as published by OpenAI (open_clip model_configs/RN50.json + pretrained "openai").
CLIP_RN50 = CLIPConfig(
    embed_dim=1024,
    vision_layers=(3, 4, 6, 3),
    vision_width=64,
    vision_head_width=64,
    text_width=512,
    text_heads=8,
    text_layers=12,
    quick_gelu=True,
    pretrained=("RN50", "openai"),
)

# A small CLIP of our own for tests and CPU experiments (no published weights).
CLIP_TINY = CLIPConfig(
    embed_dim=64,
    vision_layers=(1, 1, 1, 1),
    vision_width=8,
    vision_head_width=32,
    text_width=64,
    text_heads=2,
    text_layers=2,
    quick_gelu=False,
    pretrained=None,
)

_MODEL_CONFIGS: dict[str, LGGDConfig] = {
    # The paper's model: CLIP RN50, 224 px input, 77 tokens. The widths the paper leaves open are
    # chosen so that parameters and FLOPs land near Table V (see README, "Model size").
    "lggd-rn50": LGGDConfig(
        name="lggd-rn50",
        clip=CLIP_RN50,
        input_size=224,
        context_length=77,
        fusion_dim=512,
        fusion_heads=8,
        fusion_ffn=2048,
        decoder_channels=(768, 256, 256, 320, 160),
        film_hidden=256,
        attention_reduction=16,
        head_channels=128,
        num_experts=4,
        router_hidden=256,
        refine_width=96,
        refine_depth=4,
        width_scale=112.0,
    ),
    "lggd-tiny": LGGDConfig(
        name="lggd-tiny",
        clip=CLIP_TINY,
        input_size=128,
        context_length=32,
        fusion_dim=64,
        fusion_heads=4,
        fusion_ffn=128,
        decoder_channels=(64, 32, 32, 16, 16),
        film_hidden=32,
        attention_reduction=4,
        head_channels=16,
        num_experts=4,
        router_hidden=32,
        refine_width=16,
        refine_depth=3,
        width_scale=64.0,
    ),
}


def list_models() -> list[str]:
    """Names of the registered model configs."""
    return sorted(_MODEL_CONFIGS)


def get_config(name: str) -> LGGDConfig:
    """Look up a named config.

    Raises:
        UnknownModelError: the name is not registered; the message lists the known names.
    """
    if not isinstance(name, str) or name not in _MODEL_CONFIGS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODEL_CONFIGS[name]
