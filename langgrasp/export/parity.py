"""Export-time parity: the ONNX engine against PyTorch, and reduced precision against fp32.

Everything runs on generated scenes through the real code paths: PyTorch through the steps of
``Predictor.predict`` (open_clip tokenizer, ``predict.output_maps``, ``maps_to_image``), ONNX
through the runtime ``GraspDetector`` on the bundle being written (torch-free tokenizer,
onnxruntime, ``postprocess.postprocess``), each computing its maps once per scene. Figures
reported per comparison:

* max absolute difference of every graph output (text: words, sentence; frame: mask logits and
  grasp maps), padding masks and token ids compared for equality;
* top-1 identical: both found nothing, or the best grasps agree within ``SAME_CENTRE_PX``,
  ``SAME_ANGLE_DEG`` and ``SAME_WIDTH_PX`` (image pixels);
* top-1 agreement: both found nothing, or the best grasps match by the rectangle metric
  (IoU > 0.25 and angle within 30 degrees, ``metrics.grasp_match``), the usual "same grasp" for
  quantised models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.grasp import Grasp
from langgrasp.detector.metrics import angle_difference_deg, grasp_match
from langgrasp.detector.model import LGGD, tokenize
from langgrasp.detector.model.encoders import TextFeatures
from langgrasp.detector.postprocess import postprocess
from langgrasp.detector.predict import full_resolution_maps, maps_to_image, output_maps
from langgrasp.detector.preprocess import prepare_image
from langgrasp.runtime.engine import GraspDetector

PARITY_SEED = 700_000
"""First seed of the generated parity scenes (calibration and probe statistics use others)."""

FP32_ATOL = 1e-4
"""Largest allowed |ONNX fp32 - PyTorch| of any output (the issue's acceptance bound)."""

SAME_CENTRE_PX = 0.5
SAME_ANGLE_DEG = 1.0
SAME_WIDTH_PX = 0.5
"""Tolerances of "identical" top-1 grasps, in image pixels and degrees."""

MAX_BATCH = 4
"""Largest batch of the dynamic-batch check."""

Scene = tuple[np.ndarray, str]
RunFn = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray, list[Grasp]]]
"""(rgb, command) -> (mask logits (S, S), grasp maps (4, S, S), ranked grasps in image px)."""


@dataclass
class ParityReport:
    """One comparison's figures (module docstring).

    Attributes:
        candidate: What was checked, e.g. "onnx fp32" or "onnx int8".
        reference: What it was compared with, "pytorch" or "onnx fp32".
        scenes: Number of generated scenes.
        max_abs: Largest absolute difference per output name.
        exact: Outputs compared for equality (token ids, padding) and whether they were equal.
        top1_identical: Scenes whose top-1 grasps are identical.
        top1_agree: Scenes whose top-1 grasps match by the rectangle metric.
        reference_found: Scenes where the reference found at least one grasp.
    """

    candidate: str
    reference: str
    scenes: int
    max_abs: dict[str, float]
    exact: dict[str, bool]
    top1_identical: int
    top1_agree: int
    reference_found: int

    @property
    def agreement(self) -> float:
        """Fraction of scenes whose top-1 grasps match by the rectangle metric."""
        return self.top1_agree / self.scenes if self.scenes else 1.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict, with ``agreement`` added."""
        return {**asdict(self), "agreement": self.agreement}

    def summary(self) -> str:
        """One line with the figures."""
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs.items())
        exact = "".join(f", {k} {'equal' if v else 'DIFFERENT'}" for k, v in self.exact.items())
        return (
            f"{self.candidate} vs {self.reference}: max |diff| {diffs}{exact}; top-1 identical "
            f"{self.top1_identical}/{self.scenes}, agree {self.top1_agree}/{self.scenes} "
            f"(reference found grasps in {self.reference_found})"
        )


def same_grasp(a: Grasp, b: Grasp) -> bool:
    """True when two grasps agree within the "identical" tolerances (image pixels, degrees)."""
    return (
        max(abs(a.x - b.x), abs(a.y - b.y)) <= SAME_CENTRE_PX
        and angle_difference_deg(a, b) <= SAME_ANGLE_DEG
        and abs(a.width - b.width) <= SAME_WIDTH_PX
    )


def top1_identical(reference: list[Grasp], candidate: list[Grasp]) -> bool:
    """Both lists empty, or their best grasps are ``same_grasp``."""
    if not reference or not candidate:
        return not reference and not candidate
    return same_grasp(reference[0], candidate[0])


def top1_agree(reference: list[Grasp], candidate: list[Grasp]) -> bool:
    """Both lists empty, or the candidate's best grasp matches the reference's best grasp."""
    if not reference or not candidate:
        return not reference and not candidate
    return grasp_match(candidate[0], reference[0])


def parity_scenes(count: int, seed: int = PARITY_SEED) -> list[Scene]:
    """``count`` generated (rgb, command) pairs."""
    scenes = []
    for i in range(count):
        scene = render_scene(seed + i)
        scenes.append((scene.rgb, scene.text))
    return scenes


def torch_runner(model: LGGD, detector: GraspDetector) -> RunFn:
    """PyTorch reference: the steps of ``Predictor.predict`` (output_maps, maps_to_image)."""
    size, length = model.config.input_size, model.config.context_length
    decoding = detector.decoding

    @torch.inference_mode()
    def run(rgb: np.ndarray, command: str) -> tuple[np.ndarray, np.ndarray, list[Grasp]]:
        image, box = prepare_image(rgb, size, model.config.mean, model.config.std)
        text = model.encode_text(tokenize(command, length))
        output = model.decode(model.encode_image(torch.from_numpy(image)[None]), text)
        logits = full_resolution_maps(output, size)[0, 0].numpy()
        mask_prob, grasp_maps = output_maps(output, size)
        grasps, _ = maps_to_image(mask_prob[0], grasp_maps[0], box, decoding)
        return logits, grasp_maps[0], grasps

    return run


def engine_runner(detector: GraspDetector) -> RunFn:
    """ONNX candidate: the steps of ``GraspDetector.detect`` (``run_frame``, ``postprocess``)."""

    def run(rgb: np.ndarray, command: str) -> tuple[np.ndarray, np.ndarray, list[Grasp]]:
        image, box = detector.prepare(rgb)
        _, text, _ = detector.encode_command(command)
        mask, grasp = detector.run_frame(image[None], text)
        grasps = postprocess(mask[0, 0], grasp[0], box, detector.decoding).grasps
        return mask[0, 0], grasp[0], grasps

    return run


def compare(
    reference: RunFn, candidate: RunFn, scenes: list[Scene], names: tuple[str, str]
) -> ParityReport:
    """Run both on every scene; max |diff| of the maps and top-1 agreement of the grasps."""
    mask_diff = grasp_diff = 0.0
    identical = agree = found = 0
    for rgb, command in tqdm(scenes, desc=f"parity {names[0]}", unit="scene", leave=False):
        ref_mask, ref_grasp, ref_grasps = reference(rgb, command)
        mask, grasp, grasps = candidate(rgb, command)
        mask_diff = max(mask_diff, float(np.abs(mask - ref_mask).max()))
        grasp_diff = max(grasp_diff, float(np.abs(grasp - ref_grasp).max()))
        identical += top1_identical(ref_grasps, grasps)
        agree += top1_agree(ref_grasps, grasps)
        found += bool(ref_grasps)
    return ParityReport(
        candidate=names[0],
        reference=names[1],
        scenes=len(scenes),
        max_abs={"mask": mask_diff, "grasp": grasp_diff},
        exact={},
        top1_identical=identical,
        top1_agree=agree,
        reference_found=found,
    )


@torch.inference_mode()
def check_onnx_against_torch(
    model: LGGD, detector: GraspDetector, scenes: list[Scene]
) -> ParityReport:
    """The bundle's fp32 graphs and tokenizer against PyTorch (module docstring).

    Besides the per-scene comparison, all scenes' commands go through both text encoders as one
    batch and up to ``MAX_BATCH`` frames through both frame networks as one batch, so a batch
    size other than the traced one is checked too.
    """
    config = model.config
    report = compare(
        torch_runner(model, detector), engine_runner(detector), scenes, ("onnx fp32", "pytorch")
    )
    commands = [command for _, command in scenes]
    tokens = tokenize(commands, config.context_length)
    ours = detector.tokenizer.encode(commands, config.context_length)
    words, padding, sentence = detector.run_text(ours)
    text = model.encode_text(tokens)
    report.exact["token_ids"] = bool(np.array_equal(tokens.numpy(), ours))
    report.exact["padding"] = bool(np.array_equal(text.padding.numpy(), padding))
    report.max_abs["words"] = float(np.abs(text.words.numpy() - words).max())
    report.max_abs["sentence"] = float(np.abs(text.sentence.numpy() - sentence).max())
    batch = scenes[:MAX_BATCH]
    images = np.stack([detector.prepare(rgb)[0] for rgb, _ in batch])
    count = len(batch)
    mask, grasp = detector.run_frame(images, (words[:count], padding[:count], sentence[:count]))
    features = TextFeatures(text.words[:count], text.padding[:count], text.sentence[:count])
    output = model.decode(model.encode_image(torch.from_numpy(images)), features)
    maps = full_resolution_maps(output, config.input_size).numpy()
    report.max_abs["mask"] = max(report.max_abs["mask"], float(np.abs(maps[:, :1] - mask).max()))
    report.max_abs["grasp"] = max(report.max_abs["grasp"], float(np.abs(maps[:, 1:] - grasp).max()))
    return report


def parity_failures(report: ParityReport, atol: float = FP32_ATOL) -> list[str]:
    """What an fp32 report violates: any |diff| > atol, unequal ids/padding, top-1 not identical."""
    problems = [
        f"{name} differs by {value:.2e} > {atol:g}"
        for name, value in report.max_abs.items()
        if not (value <= atol and math.isfinite(value))
    ]
    problems += [f"{name} not equal" for name, equal in report.exact.items() if not equal]
    if report.top1_identical != report.scenes:
        problems.append(
            f"top-1 grasp identical on only {report.top1_identical}/{report.scenes} scenes"
        )
    return problems
