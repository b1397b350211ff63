"""Training data: model-ready tensors from any ``GroundingDataset``, skipping broken samples.

Every sample goes through the shared preprocessing (``langgrasp.detector.preprocess``): the image
is letterboxed to the model input and CLIP-normalised, the instruction is tokenized with the
model's context length, and the target mask and grasp maps are built at the model's output size
with the shared ``encode_grasps`` (the one grasp encoder of the project).

A sample whose loader raises ``SampleError`` (or whose arrays do not fit together) becomes a
:class:`Skipped` record instead of an example: :func:`collate` drops it from the batch and keeps
the record in ``Batch.skipped``, so training never stops for one bad file and the loop can report
every skipped sample id with its reason at the end of the epoch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from langgrasp.datasets.base import GroundingDataset, GroundingSample, SampleError
from langgrasp.detector.config import LGGDConfig
from langgrasp.detector.grasp import GraspEncoding, encode_grasps
from langgrasp.detector.model import tokenize
from langgrasp.detector.preprocess import Letterbox, normalize, validate_rgb
from langgrasp.errors import InputError


@dataclass(frozen=True)
class Skipped:
    """A sample that was left out of training.

    Attributes:
        index: Position in the dataset.
        sample_id: The dataset's id of the sample.
        reason: Why (the loader's ``SampleError`` message or the preprocessing error).
    """

    index: int
    sample_id: str
    reason: str


@dataclass
class Example:
    """One model-ready training sample (model input S, output size So).

    Attributes:
        image: (3, S, S) float32, letterboxed and CLIP-normalised RGB.
        tokens: (L,) int64 CLIP token ids.
        mask: (1, So, So) float32 target mask in {0, 1}.
        grasp_maps: (4, So, So) float32 target maps (``GRASP_CHANNELS`` order).
        text: The instruction.
        sample_id: The dataset's id of the sample.
    """

    image: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    grasp_maps: torch.Tensor
    text: str
    sample_id: str


@dataclass
class Batch:
    """A collated batch of B examples (B may be 0 when every sample of it was broken).

    Attributes:
        images: (B, 3, S, S) float32 normalised images.
        tokens: (B, L) int64 token ids.
        masks: (B, 1, So, So) float32 target masks.
        grasp_maps: (B, 4, So, So) float32 target grasp maps.
        texts: B instructions.
        sample_ids: B sample ids.
        skipped: Samples of this batch that were dropped.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    masks: torch.Tensor
    grasp_maps: torch.Tensor
    texts: list[str]
    sample_ids: list[str]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``."""
        move = {"device": device, "non_blocking": non_blocking}
        return Batch(
            self.images.to(**move),
            self.tokens.to(**move),
            self.masks.to(**move),
            self.grasp_maps.to(**move),
            list(self.texts),
            list(self.sample_ids),
            list(self.skipped),
        )

    def pin_memory(self) -> Batch:
        """Page-locked copy for asynchronous host-to-GPU transfer (DataLoader ``pin_memory``)."""
        tensors = [t.pin_memory() for t in (self.images, self.tokens, self.masks, self.grasp_maps)]
        return Batch(*tensors, self.texts, self.sample_ids, self.skipped)


def target_encoding(config: LGGDConfig) -> GraspEncoding:
    """Grasp encoding at the model's output size (``width_scale`` is in input pixels)."""
    return GraspEncoding(width_scale=config.width_scale * config.output_size / config.input_size)


class TrainingDataset(Dataset):
    """Model-ready examples from a ``GroundingDataset`` for one model config.

    ``dataset[i]`` is an :class:`Example`, or a :class:`Skipped` record when sample ``i`` is
    broken. Everything here is deterministic, so DataLoader workers need no seeding.
    """

    def __init__(self, source: GroundingDataset, config: LGGDConfig) -> None:
        """Wrap ``source`` for a model built from ``config``.

        Args:
            source: Any dataset of the registry (original image pixels).
            config: Model config: input and output sizes, context length, mean/std, width scale.
        """
        self.source = source
        self.config = config
        self.encoding = target_encoding(config)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Example | Skipped:
        try:
            sample = self.source.load(index)
            return self._example(sample)
        except (SampleError, InputError, ValueError) as err:
            try:
                sample_id = self.source.sample_id(index)
            except Exception:  # an id that cannot be read must not hide the real reason
                sample_id = f"#{index}"
            return Skipped(index, sample_id, f"{type(err).__name__}: {err}")

    def _example(self, sample: GroundingSample) -> Example:
        if sample.mask is None:
            raise SampleError(
                f"{sample.sample_id}: no target mask; the mask loss (paper eq. 35) needs one"
            )
        config = self.config
        height, width = validate_rgb(sample.rgb, "the sample's RGB image").shape[:2]
        image = normalize(Letterbox.fit(height, width, config.input_size).image(sample.rgb))
        out_box = Letterbox.fit(height, width, config.output_size)
        target = out_box.mask(sample.mask)
        maps = encode_grasps(
            out_box.grasps_to_model(sample.grasps), (config.output_size,) * 2, self.encoding
        )
        return Example(
            image=torch.from_numpy(image),
            tokens=tokenize(sample.text, config.context_length)[0],
            mask=torch.from_numpy(target.astype(np.float32))[None],
            grasp_maps=torch.from_numpy(maps),
            text=sample.text,
            sample_id=sample.sample_id,
        )


def collate(items: Sequence[Example | Skipped]) -> Batch:
    """Stack examples into a :class:`Batch`; :class:`Skipped` items are kept aside, not stacked."""
    examples = [x for x in items if isinstance(x, Example)]
    skipped = [x for x in items if isinstance(x, Skipped)]
    if not examples:
        empty = torch.empty(0)
        return Batch(empty, empty.long(), empty, empty, [], [], skipped)
    return Batch(
        images=torch.stack([x.image for x in examples]),
        tokens=torch.stack([x.tokens for x in examples]),
        masks=torch.stack([x.mask for x in examples]),
        grasp_maps=torch.stack([x.grasp_maps for x in examples]),
        texts=[x.text for x in examples],
        sample_ids=[x.sample_id for x in examples],
        skipped=skipped,
    )


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch order is explicit and can start mid-epoch.

    The order of an epoch is a permutation of all indices drawn from ``seed + epoch`` (the same
    in every process); process ``rank`` takes every ``num_replicas``-th index of it (padded by
    wrapping around, like ``DistributedSampler``). :meth:`start_epoch` can be given the stored
    order and the number of this process's samples already consumed, which is how a resumed run
    continues with exactly the batches the interrupted one had not seen yet.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        """Sample ``dataset`` for process ``rank`` of ``num_replicas`` (1, 0: one process)."""
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.order = self.epoch_order(0)
        self.start = 0

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The (N,) int64 permutation of dataset indices used in ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.dataset), generator=generator)

    def start_epoch(self, epoch: int, order: torch.Tensor | None = None, start: int = 0) -> None:
        """Prepare ``epoch``, optionally with a stored order, skipping ``start`` samples."""
        self.set_epoch(epoch)
        self.order = self.epoch_order(epoch) if order is None else order
        if len(self.order) != len(self.dataset):
            raise InputError(
                f"the stored data order has {len(self.order)} indices but the dataset now has "
                f"{len(self.dataset)} samples; resume with the same dataset, or start a new run"
            )
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = self.order.tolist()
        padding = self.total_size - len(indices)
        indices += (indices * math.ceil(max(padding, 0) / max(len(indices), 1)))[:padding]
        mine = indices[self.rank : self.total_size : self.num_replicas]
        return itertools.islice(iter(mine), self.start, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


DATA_SOURCES = {
    "ocid-vlg": (
        "OCID-VLG is downloaded from the Google Drive link in the README of "
        "https://github.com/gtziafas/OCID-VLG; unpack it and use the OCID_Grasp folder that "
        "contains refer/ as the root"
    ),
    "grasp-anything": (
        "Grasp-Anything++ comes from airvlab (https://airvlab.github.io/grasp-anything, download "
        "form) or Hugging Face (airvlab/Grasp-Anything for the images, airvlab/Grasp-Anything-pp "
        "for instructions, grasp labels and part masks); use the folder holding image/ and "
        "grasp_instructions/ as the root"
    ),
}
"""Where to get each dataset that is not generated, for the missing-root message."""


def open_split(
    dataset: str, root: str | None, split: str, options: dict | None = None
) -> GroundingDataset:
    """Open a registered dataset split, with a message saying where to get missing data.

    Raises:
        InputError: No root for a dataset that needs one, a root that does not exist, or (from
            the loader) a root with the wrong layout or an unknown split.
    """
    from langgrasp.datasets.base import list_datasets, open_dataset

    if dataset not in list_datasets():
        raise InputError(
            f"unknown dataset {dataset!r}; expected one of {', '.join(list_datasets())}"
        )
    how = "pass it with --data-root PATH (make train DATASET=... DATA_ROOT=PATH)"
    if root is None and dataset in DATA_SOURCES:
        raise InputError(f"{dataset} needs a data root: {DATA_SOURCES[dataset]}; {how}")
    if root is not None and not Path(root).is_dir():
        where = DATA_SOURCES.get(dataset, "")
        raise InputError(f"data root {root} is not a folder; {where + '; ' if where else ''}{how}")
    return open_dataset(dataset, root, split, **(options or {}))
