"""Batched evaluation of an LGGD model on a grounding dataset (``langgrasp eval``, validation).

Each sample goes through exactly what :class:`langgrasp.detector.predict.Predictor` does (the
shared :func:`~langgrasp.detector.predict.output_maps` and
:func:`~langgrasp.detector.predict.maps_to_image`): letterbox + normalise, the network on a batch,
sigmoid on the mask, mask-gated grasp decoding (``decode_grasps``), then grasps and mask mapped back
to the **original image resolution**, where they are scored against the dataset's ground truth.
Protocols and metrics are documented in :mod:`langgrasp.evaluation.scoring`.

A sample that fails to load (or is unusable: no grasps, a mask of the wrong size, an empty
instruction) is skipped, counted and listed with its reason; it never stops the run.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from langgrasp.datasets.base import GroundingDataset, GroundingSample, SampleError
from langgrasp.detector.grasp import Grasp, GraspDecoding
from langgrasp.detector.model import LGGD, TruncationWarning, tokenize
from langgrasp.detector.postprocess import maps_to_image
from langgrasp.detector.predict import output_maps
from langgrasp.detector.preprocess import Letterbox, prepare_image, validate_rgb
from langgrasp.detector.visualize import draw_overlay, save_image
from langgrasp.errors import InputError, check_int
from langgrasp.evaluation.scoring import (
    GROUPS,
    EvalProtocol,
    format_report,
    get_protocol,
    j_ns_for,
    score_sample,
    summarize,
)

JSON_DECIMALS = 3
"""Decimals kept for grasp coordinates (pixels, radians) in per-sample records."""

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class EvalResult:
    """What an evaluation produced.

    Attributes:
        metrics: Flat metrics (``scoring.summarize``): ``n``, ``j@1``, ``j@5``, ``iou``,
            ``pr@50`` .. ``pr@90`` as fractions in [0, 1], plus group and family entries.
        per_sample: One JSON-ready dict per evaluated sample: ``index``, ``sample_id``, ``text``,
            ``target_name``, ``group``, ``family``, ``n_gt``, ``truncated``, ``j@N`` (bool),
            ``mask_iou`` (None without a ground-truth mask) and ``grasps`` (predictions in image
            pixels, radians, best first).
        skipped: ``(sample_id, reason)`` for each sample that could not be evaluated.
        protocol: The matching rules used.
        j_ns: The N of the reported J@N.
        overlays: Paths of the overlay pictures written.
    """

    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    protocol: EvalProtocol = field(default_factory=lambda: get_protocol("standard"))
    j_ns: tuple[int, ...] = (1, 5)
    overlays: list[str] = field(default_factory=list)

    def report(self, title: str) -> str:
        """The paper-style table (``scoring.format_report``) under ``title``."""
        return format_report(
            self.metrics,
            title=title,
            protocol=self.protocol,
            j_ns=self.j_ns,
            skipped=len(self.skipped),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: protocol, metrics, per-sample records, skipped samples, overlays."""
        return {
            "protocol": self.protocol.to_dict(),
            "metrics": self.metrics,
            "per_sample": self.per_sample,
            "skipped": [{"sample_id": sid, "reason": why} for sid, why in self.skipped],
            "overlays": self.overlays,
        }


def select_indices(count: int, max_samples: int | None) -> list[int]:
    """Indices to evaluate: all, or ``max_samples`` spread evenly over the split.

    Evenly spread rather than the first ones, because splits are often ordered by scene.

    Raises:
        InputError: If ``max_samples`` is not None or a positive int.
    """
    if max_samples is None:
        return list(range(count))
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise InputError(f"max_samples must be None or an int >= 1, got {max_samples!r}")
    if max_samples >= count:
        return list(range(count))
    return [i * count // max_samples for i in range(max_samples)]


def _sample_id(dataset: GroundingDataset, index: int) -> str:
    try:
        return str(dataset.sample_id(index))
    except Exception:
        return f"#{index}"


def _unusable(sample: GroundingSample) -> str | None:
    """Why a loaded sample cannot be scored, or None when it can."""
    try:
        validate_rgb(sample.rgb, "sample rgb")
    except InputError as err:
        return str(err)
    if not isinstance(sample.text, str) or not sample.text.strip():
        return "empty instruction"
    if not sample.grasps:
        return "no ground-truth grasps"
    bad = [i for i, g in enumerate(sample.grasps) if not isinstance(g, Grasp) or g.invalid_fields()]
    if bad:
        return f"ground-truth grasps {bad[:5]} are not finite Grasp objects"
    if sample.mask is not None:
        mask = np.asarray(sample.mask)
        if mask.shape != sample.rgb.shape[:2]:
            return f"mask shape {mask.shape} differs from the image's {sample.rgb.shape[:2]}"
    return None


def _load(dataset: GroundingDataset, index: int) -> GroundingSample | str:
    """Load sample ``index``; a string says why it cannot be evaluated."""
    try:
        sample = dataset.load(index)
    except (SampleError, OSError, ValueError) as err:  # ValueError includes InputError
        return f"{type(err).__name__}: {err}"
    return _unusable(sample) or sample


@dataclass
class _Prepared:
    index: int
    sample: GroundingSample
    image: np.ndarray  # (3, S, S) float32, normalised
    box: Letterbox
    tokens: torch.Tensor  # (1, L) int64
    truncated: bool


def _prepare(index: int, sample: GroundingSample, model: LGGD) -> _Prepared:
    config = model.config
    image, box = prepare_image(sample.rgb, config.input_size, config.mean, config.std)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        tokens = tokenize(sample.text, config.context_length)
    truncated = any(issubclass(w.category, TruncationWarning) for w in caught)
    return _Prepared(index, sample, image, box, tokens, truncated)


def _round_grasp(g: Grasp) -> dict[str, float]:
    return {k: round(float(v), JSON_DECIMALS) for k, v in g.to_dict().items()}


def _overlay_name(rank: int, sample_id: str) -> str:
    return f"{rank:04d}_{_UNSAFE_NAME.sub('_', sample_id)[:80]}.png"


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Evaluator:
    """Runs batches and accumulates records; see :func:`evaluate_model`."""

    def __init__(
        self,
        model: LGGD,
        device: torch.device,
        protocol: EvalProtocol,
        decoding: GraspDecoding,
        j_ns: tuple[int, ...],
        overlays: int,
        overlay_dir: Path | None,
    ) -> None:
        self.model = model
        self.device = device
        self.protocol = protocol
        self.decoding = decoding
        self.j_ns = j_ns
        self.overlays = overlays
        self.overlay_dir = overlay_dir
        param = next(model.parameters(), None)
        self.dtype = param.dtype if param is not None else torch.float32
        self.records: list[dict[str, Any]] = []
        self.skipped: list[tuple[str, str]] = []
        self.overlay_paths: list[str] = []

    def run_batch(self, dataset: GroundingDataset, indices: Sequence[int]) -> None:
        prepared = []
        for index in indices:
            loaded = _load(dataset, index)
            if isinstance(loaded, str):
                self.skipped.append((_sample_id(dataset, index), loaded))
            else:
                prepared.append(_prepare(index, loaded, self.model))
        if not prepared:
            return
        images = torch.from_numpy(np.stack([p.image for p in prepared]))
        tokens = torch.cat([p.tokens for p in prepared])
        output = self.model(images.to(self.device, self.dtype), tokens.to(self.device))
        mask_prob, grasp_maps = output_maps(output, self.model.config.input_size)
        for i, item in enumerate(prepared):
            self._score(item, mask_prob[i], grasp_maps[i])

    def _score(self, item: _Prepared, mask_prob: np.ndarray, grasp_maps: np.ndarray) -> None:
        sample = item.sample
        ranked, mask_image = maps_to_image(mask_prob, grasp_maps, item.box, self.decoding)
        pred_mask = mask_image >= self.decoding.mask_threshold
        gt_mask = None if sample.mask is None else np.asarray(sample.mask, dtype=bool)
        scores = score_sample(
            ranked,
            sample.grasps,
            pred_mask,
            gt_mask,
            protocol=self.protocol,
            j_ns=self.j_ns,
        )
        group, family = sample.meta.get("group"), sample.meta.get("family")
        self.records.append(
            {
                "index": item.index,
                "sample_id": sample.sample_id,
                "text": sample.text,
                "target_name": sample.target_name,
                "group": group if group in GROUPS else None,
                "family": family if isinstance(family, str) else None,
                "n_gt": len(sample.grasps),
                "truncated": item.truncated,
                **scores,
                "grasps": [_round_grasp(g) for g in ranked],
            }
        )
        if len(self.overlay_paths) < self.overlays and self.overlay_dir is not None:
            self._overlay(sample, ranked, mask_image, scores)

    def _overlay(
        self,
        sample: GroundingSample,
        ranked: list[Grasp],
        mask_image: np.ndarray,
        scores: dict[str, Any],
    ) -> None:
        verdict = "hit" if scores["j@1"] else "miss"
        iou = scores["mask_iou"]
        title = f"{sample.text} | J@1 {verdict}" + ("" if iou is None else f", IoU {iou:.2f}")
        picture = draw_overlay(
            sample.rgb,
            mask_prob=mask_image,
            grasps=ranked,
            gt_grasps=sample.grasps,
            title=title,
            mask_threshold=self.decoding.mask_threshold,
        )
        name = _overlay_name(len(self.overlay_paths), sample.sample_id)
        self.overlay_paths.append(str(save_image(self.overlay_dir / name, picture)))


def evaluate_model(
    model: LGGD,
    dataset: GroundingDataset,
    *,
    max_samples: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    device: str | torch.device = "cpu",
    top_k: int = 5,
    overlays: int = 0,
    overlay_dir: str | Path | None = None,
    protocol: str | EvalProtocol = "standard",
    decoding: GraspDecoding | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` and return the metrics and per-sample records.

    The model is moved to ``device`` and run in eval mode under ``torch.inference_mode``; its
    train/eval mode is restored afterwards, so a training loop can call this for validation
    (pass the device the model trains on).

    Args:
        model: An LGGD (anything with ``config`` and ``forward(images (B, 3, S, S), tokens
            (B, L)) -> LGGDOutput``).
        dataset: The split to evaluate.
        max_samples: Evaluate at most this many samples, spread evenly over the split
            (``select_indices``); None = all.
        batch_size: Samples per network call.
        progress: Show a tqdm progress bar.
        device: Where the network runs.
        top_k: Grasps kept per sample (decoder ``top_n``); J@1 and J@``top_k`` are reported.
        overlays: Write overlay pictures (mask, top grasps, ground-truth grasps, instruction) of
            the first this-many evaluated samples into ``overlay_dir``.
        overlay_dir: Folder for the overlays; created when needed.
        protocol: ``"standard"``, ``"crog"`` or an ``EvalProtocol`` (``scoring`` docstring).
        decoding: Peak-finding constants; default: the Predictor's, with ``top_n = top_k``.

    Returns:
        An :class:`EvalResult`.

    Raises:
        InputError: Bad arguments (the message says which), or an empty dataset.
    """
    protocol = get_protocol(protocol)
    j_ns = j_ns_for(top_k)
    check_int("batch_size", batch_size, 1)
    check_int("overlays", overlays, 0)
    if overlays and overlay_dir is None:
        raise InputError("overlays > 0 needs overlay_dir, the folder to write the pictures into")
    if decoding is None:
        decoding = GraspDecoding(width_scale=model.config.width_scale, top_n=top_k)
    elif decoding.top_n < top_k:
        raise InputError(f"decoding.top_n = {decoding.top_n} < top_k = {top_k}: raise top_n")
    if len(dataset) == 0:
        raise InputError(f"dataset {getattr(dataset, 'name', '') or dataset!r} has no samples")
    indices = select_indices(len(dataset), max_samples)
    device = torch.device(device)
    evaluator = _Evaluator(
        model.to(device),
        device,
        protocol,
        decoding,
        j_ns,
        overlays,
        None if overlay_dir is None else Path(overlay_dir),
    )
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            tqdm(total=len(indices), unit="sample", disable=not progress, desc="eval") as bar,
        ):
            for chunk in _chunks(indices, batch_size):
                evaluator.run_batch(dataset, chunk)
                bar.update(len(chunk))
                if evaluator.records:
                    hits = np.mean([r["j@1"] for r in evaluator.records])
                    bar.set_postfix(j1=f"{hits:.3f}", skipped=len(evaluator.skipped))
    finally:
        model.train(was_training)
    return EvalResult(
        metrics=summarize(evaluator.records, j_ns),
        per_sample=evaluator.records,
        skipped=evaluator.skipped,
        protocol=protocol,
        j_ns=j_ns,
        overlays=evaluator.overlay_paths,
    )
