"""Evaluation of LGGD models: ``evaluate_model`` (torch) and the scoring protocols (NumPy).

Names are imported lazily, so that ``langgrasp --help`` (which imports
``langgrasp.evaluation.commands``) loads neither torch nor OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalResult": "langgrasp.evaluation.evaluate",
    "evaluate_model": "langgrasp.evaluation.evaluate",
    "select_indices": "langgrasp.evaluation.evaluate",
    "PROTOCOLS": "langgrasp.evaluation.scoring",
    "EvalProtocol": "langgrasp.evaluation.scoring",
    "get_protocol": "langgrasp.evaluation.scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
