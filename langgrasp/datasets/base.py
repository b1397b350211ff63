"""The dataset interface every loader implements, and the registry of named datasets.

A dataset is an indexable collection of :class:`GroundingSample` in the original image's pixel
frame. Loaders never resize: the letterbox to the model input happens once, in the shared
preprocessing (``langgrasp.detector.preprocess``), so training, evaluation and the runtime see
the same transform.

Errors come in two kinds. :class:`LayoutError` means the root folder itself is wrong (a missing
``refer/`` folder, no label files at all); its message names the expected tree and what is
missing, and opening the dataset fails. :class:`SampleError` means one sample is broken (a
missing image, an unreadable file, no grasps, a mask id absent from the instance map); training
skips and counts it, ``langgrasp data check`` lists it with its reason. This module is torch-free.
"""

from __future__ import annotations

import importlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.detector.grasp import Grasp
from langgrasp.errors import InputError, LanggraspError


class SampleError(LanggraspError):
    """One sample cannot be loaded; the message names the sample, the file and the reason.

    Attributes:
        reason: Short reason kind ("missing image", "no grasps", ...) that reports count by;
            None when the loader gives none (``langgrasp data check`` then derives it).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class LayoutError(InputError):
    """A dataset root does not have the expected layout; the message shows the expected tree."""


@dataclass(frozen=True, eq=False)
class GroundingSample:
    """One referring-expression grasp sample, in the original image's pixel frame.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        depth: ``(H, W)`` float32 depth in metres along the optical axis, 0 = invalid; None for
            RGB-only datasets (Grasp-Anything++).
        mask: ``(H, W)`` bool mask of what the text refers to (object, or part for part-level
            text); None when the dataset has no mask for this sample.
        grasps: Ground-truth grasp rectangles in image pixels (``Grasp.angle`` in radians,
            counter-clockwise on screen, ``width`` = gripper opening, ``height`` = jaw size).
        text: The instruction or referring expression.
        target_name: Name of the referred object (OCID-VLG instance name such as ``apple_1``,
            a Grasp-Anything++ object phrase, or the synthetic kind noun).
        sample_id: Identifier unique within the dataset split, stable across runs.
        meta: Dataset-specific ids and labels (scene id, question index, expression type,
            seen/unseen, ...). JSON-serialisable values only.
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    mask: np.ndarray | None
    grasps: list[Grasp]
    text: str
    target_name: str
    sample_id: str
    meta: dict[str, Any] = field(default_factory=dict)


class GroundingDataset(ABC):
    """A split of a dataset: ``len(ds)`` samples, loaded one at a time by index.

    Subclasses set ``name`` (the registry key) and implement ``__len__``, ``sample_id`` and
    ``load``. Constructors check the root's layout and raise :class:`LayoutError`; ``load``
    raises :class:`SampleError` for a broken sample and nothing else.
    """

    name: str = ""

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples in the split."""

    @abstractmethod
    def sample_id(self, index: int) -> str:
        """Identifier of sample ``index`` without loading it (for reports and skip lists)."""

    @abstractmethod
    def load(self, index: int) -> GroundingSample:
        """Load sample ``index``; raises :class:`SampleError` when it is broken."""

    def __getitem__(self, index: int) -> GroundingSample:
        """Same as :meth:`load`, plus negative indices and ``IndexError`` past the end."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {n} samples")
        return self.load(index % n)

    def __iter__(self) -> Iterator[GroundingSample]:
        """Every sample in order; a broken one raises :class:`SampleError`."""
        for i in range(len(self)):
            yield self.load(i)


# name -> "module:callable"; the callable takes (root, split, **options) and returns a dataset.
# Imported lazily so that listing the names needs none of the loaders' dependencies.
_REGISTRY: dict[str, str] = {
    "ocid-vlg": "langgrasp.datasets.ocid_vlg:OCIDVLGDataset",
    "grasp-anything": "langgrasp.datasets.grasp_anything:GraspAnythingDataset",
    "synthetic": "langgrasp.datasets.synthetic_set:open_synthetic",
}


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return sorted(_REGISTRY)


def open_dataset(
    name: str, root: str | Path | None, split: str, **options: Any
) -> GroundingDataset:
    """Open split ``split`` of dataset ``name`` under ``root``.

    Args:
        name: A name from :func:`list_datasets`.
        root: The dataset root folder. ``synthetic`` accepts None (scenes generated on the fly).
        split: Split name; each loader documents its own (``train``, ``val``, ``test``, ...).
        **options: Loader options (for example ``version="multiple"`` for OCID-VLG).

    Raises:
        InputError: Unknown dataset name, or an option the loader does not take.
        LayoutError: The root does not look like the dataset.
    """
    if name not in _REGISTRY:
        raise InputError(f"unknown dataset {name!r}; expected one of {', '.join(list_datasets())}")
    module, attr = _REGISTRY[name].split(":")
    factory: Callable[..., GroundingDataset] = getattr(importlib.import_module(module), attr)
    root = None if root is None else Path(root)
    try:  # a wrong option name must be an InputError, not a TypeError from deep inside
        inspect.signature(factory).bind(root, split, **options)
    except TypeError as err:
        params = list(inspect.signature(factory).parameters.values())[2:]
        known = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
        unknown = sorted(set(options) - set(known))
        raise InputError(
            f"{name} does not take the option(s) {', '.join(unknown) or str(err)}; its options "
            f"are: {', '.join(known) or 'none'}"
        ) from None
    return factory(root, split, **options)


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """Loader options from ``KEY=VALUE`` strings (``--dataset-option``).

    A value that parses as JSON (numbers, ``true``/``false``, ``null``, lists) is taken as such,
    anything else as a plain string: ``version=multiple``, ``opening_edge=p1p2``, ``n=50``.

    Raises:
        InputError: An item without ``=`` or with an empty key.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise InputError(
                f"expected a loader option as KEY=VALUE (e.g. version=unique), got {item!r}"
            )
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options
