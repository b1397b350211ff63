"""The LGGD network (torch). Build one with ``build_model("lggd-rn50")`` or ``"lggd-tiny"``."""

from langgrasp.detector.model.lggd import (
    LGGD,
    LGGDOutput,
    PretrainedWeightsWarning,
    TruncationWarning,
    build_model,
    tokenize,
)

__all__ = [
    "LGGD",
    "LGGDOutput",
    "PretrainedWeightsWarning",
    "TruncationWarning",
    "build_model",
    "tokenize",
]
