"""Torch-free grasp detection on an exported bundle with onnxruntime: NumPy in, NumPy out.

``GraspDetector(bundle).detect(rgb, command)`` tokenises the command (``runtime.tokenizer``,
same ids as open_clip), runs the text graph once per distinct command (LRU cache), letterboxes
and normalises the frame (``detector.preprocess``), runs the frame graph, and turns the maps into
ranked grasps with ``detector.postprocess`` -- the same functions the PyTorch ``Predictor`` and
the evaluator use, so only the network call differs.

Execution providers are tried in the order given (default TensorRT -> CUDA -> CPU); ones this
onnxruntime build lacks, or that fail to start, are skipped and one log line says which provider
runs. Nothing here imports torch or open_clip.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langgrasp.detector.grasp import Grasp, GraspDecoding
from langgrasp.detector.postprocess import postprocess
from langgrasp.detector.preprocess import Letterbox, prepare_image, validate_rgb
from langgrasp.errors import InputError, LanggraspError
from langgrasp.runtime.bundle import (
    FRAME_INPUTS,
    FRAME_OUTPUTS,
    PRECISIONS,
    TEXT_INPUTS,
    TEXT_OUTPUTS,
    BundleError,
    Manifest,
    check_file,
    read_manifest,
)
from langgrasp.runtime.tokenizer import ClipTokenizer, command_text

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""Short provider names accepted by ``GraspDetector`` and ``langgrasp detect --providers``."""

DEFAULT_PROVIDERS = ("tensorrt", "cuda", "cpu")

AUTO_PRECISION = {"tensorrt": "fp32", "cuda": "fp16", "cpu": "int8"}
"""Frame graph that ``precision="auto"`` prefers per provider. TensorRT gets the fp32 graph and
builds an fp16 engine itself (``trt_fp16_enable``)."""

AGREEMENT_TARGET = 0.95
"""Least top-1 agreement with fp32, recorded at export (manifest ``parity``), for ``"auto"`` to
pick a reduced-precision frame graph; below it ``"auto"`` stays with fp32."""

TEXT_CACHE_SIZE = 64
"""Commands whose text-graph outputs are kept (LRU); a robot's command vocabulary is small."""

TRT_MAX_BATCH = 4
"""Largest batch the TensorRT optimisation profile allows (detect runs batch 1)."""

TRT_WORKSPACE_BYTES = 2 << 30
"""TensorRT builder workspace (shared/research/runtime.md 5.2)."""

DEFAULT_TRT_CACHE = Path("~/.cache/langgrasp/tensorrt")
"""Parent of the per-bundle TensorRT engine caches (the first build takes minutes)."""

TextOutputs = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Text-graph outputs for B commands: words (B, L, Dw) float32, padding (B, L) bool, sentence
(B, Ds) float32."""


@dataclass
class Detection:
    """Result of one ``detect`` call, in the input image's pixels.

    Attributes:
        grasps: Ranked grasps (best first): centre (x, y) px, angle rad (counter-clockwise on
            screen), opening width px, jaw size px, quality in [0, 1]. Empty when ``reason`` is set.
        mask: (H, W) bool target mask (probability >= the decoding's mask threshold).
        mask_prob: (H, W) float32 target probability.
        mask_score: Mean probability over ``mask``; 0.0 when nothing was found.
        reason: None with grasps; else why the list is empty, starting with "target not found"
            or "no grasp peak".
        command: The command as text.
        timings_ms: Wall-clock milliseconds: preprocess, text (0 when cached), network, decode,
            total.
        text_cached: True when the command's text features came from the cache.
    """

    grasps: list[Grasp]
    mask: np.ndarray
    mask_prob: np.ndarray
    mask_score: float
    reason: str | None
    command: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    text_cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (grasps with ranks, mask size and score, timings; no arrays)."""
        return {
            "command": self.command,
            "grasps": [{"rank": i + 1, **g.to_dict()} for i, g in enumerate(self.grasps)],
            "reason": self.reason,
            "mask_pixels": int(self.mask.sum()),
            "mask_score": self.mask_score,
            "text_cached": self.text_cached,
            "timings_ms": self.timings_ms,
        }


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise LanggraspError(
            "onnxruntime is not installed: pip install 'langgrasp[runtime]' (on a Jetson, "
            "onnxruntime-gpu from NVIDIA's Jetson index, shared/research/runtime.md 5.1)"
        ) from err
    return onnxruntime


def resolve_providers(requested: Sequence[str] | str | None) -> list[str]:
    """Onnxruntime provider names, in order, for short or full names.

    Raises:
        InputError: An unknown name.
    """
    if requested is None:
        requested = DEFAULT_PROVIDERS
    if isinstance(requested, str):
        requested = [p for p in requested.split(",") if p.strip()]
    names = []
    full = set(PROVIDER_NAMES.values())
    for item in requested:
        name = PROVIDER_NAMES.get(str(item).strip().lower(), str(item).strip())
        if name not in full:
            raise InputError(
                f"unknown execution provider {item!r}; use {', '.join(PROVIDER_NAMES)} "
                f"(or {', '.join(sorted(full))})"
            )
        names.append(name)
    if not names:
        raise InputError(f"no execution provider given; use some of {', '.join(PROVIDER_NAMES)}")
    return names


def _short(provider: str) -> str:
    return next((k for k, v in PROVIDER_NAMES.items() if v == provider), provider)


class GraspDetector:
    """Language-guided grasp detection from an exported bundle (module docstring).

    Args:
        bundle: Folder written by ``langgrasp export``.
        providers: Execution providers in order of preference (short names ``tensorrt``,
            ``cuda``, ``cpu`` or onnxruntime's names); unavailable ones are skipped.
        precision: Frame graph: ``"fp32"``, ``"fp16"``, ``"int8"`` or ``"auto"`` (int8 on CPU,
            fp16 on CUDA, fp32 on TensorRT; a reduced precision only if the bundle has it and
            its recorded top-1 agreement with fp32 reached ``AGREEMENT_TARGET``, else fp32).
        threads: onnxruntime intra-op threads (None: onnxruntime's default, one per core).
        spin: Let idle onnxruntime threads spin (lower latency, burns CPU); turn off on an edge
            box that shares its cores with camera and robot threads (runtime.md 5.3).
        trt_cache_dir: TensorRT engine cache folder (default ``~/.cache/langgrasp/tensorrt/``
            plus the bundle's hash); reused across runs.
        text_cache_size: Commands whose text features are kept (LRU).
        decoding: Overrides the bundle's grasp decoding constants.
        verify: Check every bundle file's SHA-256 against the manifest on load.

    Raises:
        BundleError: A missing, corrupt or foreign bundle, or a graph onnxruntime cannot load.
        InputError: Unknown providers or precision, none of the providers available, or a
            precision the bundle was not exported with.
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        providers: Sequence[str] | str | None = None,
        precision: str = "auto",
        threads: int | None = None,
        spin: bool = True,
        trt_cache_dir: str | os.PathLike[str] | None = None,
        text_cache_size: int = TEXT_CACHE_SIZE,
        decoding: GraspDecoding | None = None,
        verify: bool = True,
    ) -> None:
        self.folder = Path(bundle)
        self.manifest: Manifest = read_manifest(self.folder, verify=verify)
        manifest = self.manifest
        self.decoding = decoding or manifest.grasp_decoding()
        self.tokenizer = ClipTokenizer(check_file(self.folder, manifest.vocab, verify=False))
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise InputError(f"threads must be a positive integer or None, got {threads!r}")
        if int(text_cache_size) < 1:
            raise InputError(f"text_cache_size must be >= 1, got {text_cache_size!r}")
        self.text_cache_size = int(text_cache_size)
        self._text_cache: OrderedDict[str, TextOutputs] = OrderedDict()
        self._threads, self._spin = threads, spin
        self._trt_cache = Path(
            trt_cache_dir or DEFAULT_TRT_CACHE / manifest.frame_graphs["fp32"].sha256[:16]
        ).expanduser()
        requested = resolve_providers(providers)
        available = set(_ort().get_available_providers())
        usable = [p for p in requested if p in available]
        if not usable:
            raise InputError(
                f"none of the execution providers {', '.join(requested)} is available in this "
                f"onnxruntime build (it has {', '.join(sorted(available))})"
            )
        self.precision = self._pick_precision(precision, _short(usable[0]))
        frame_entry = manifest.frame_graphs[self.precision]
        frame_path = check_file(self.folder, frame_entry, verify=False)
        text_path = check_file(self.folder, manifest.text_graph, verify=False)
        self._frame, self.providers = self._session(frame_path, usable, FRAME_INPUTS)
        self._text, _ = self._session(text_path, self.providers, TEXT_INPUTS)
        skipped = [_short(p) for p in requested if p not in self.providers]
        log.info(
            "%s on %s (%s frame graph)%s",
            manifest.model,
            _short(self.providers[0]),
            self.precision,
            f"; unavailable: {', '.join(skipped)}" if skipped else "",
        )

    # -- set-up ---------------------------------------------------------------------------------

    def _pick_precision(self, precision: str, provider: str) -> str:
        graphs = self.manifest.frame_graphs
        if precision == "auto":
            preferred = AUTO_PRECISION.get(provider, "fp32")
            if preferred == "fp32" or preferred not in graphs:
                return "fp32"
            agreement = self.recorded_agreement(preferred)
            if agreement is None or agreement < AGREEMENT_TARGET:
                log.info(
                    "using the fp32 frame graph: the %s graph agreed with fp32 on %s of the "
                    "export's parity scenes (auto needs %.0f%%; pass precision=%r to force it)",
                    preferred,
                    "an unknown share" if agreement is None else f"{100 * agreement:.0f}%",
                    100 * AGREEMENT_TARGET,
                    preferred,
                )
                return "fp32"
            return preferred
        if precision not in PRECISIONS:
            raise InputError(
                f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if precision not in graphs:
            raise InputError(
                f"bundle {self.folder} has no {precision} frame graph (it has "
                f"{', '.join(sorted(graphs))}); export with --{precision} or pick another"
            )
        return precision

    def recorded_agreement(self, precision: str) -> float | None:
        """Top-1 agreement of a frame graph with fp32 recorded at export, if any."""
        for report in self.manifest.parity.get("reports", []):
            if isinstance(report, dict) and report.get("candidate") == f"onnx {precision}":
                value = report.get("agreement")
                return float(value) if isinstance(value, (int, float)) else None
        return None

    def _provider_options(self, provider: str, inputs: Sequence[str]) -> dict[str, Any]:
        if provider != PROVIDER_NAMES["tensorrt"]:
            return {}
        self._trt_cache.mkdir(parents=True, exist_ok=True)

        def profile(batch: int) -> str:
            dims = []
            for name in inputs:
                shape = [batch if d == "batch" else d for d in self.manifest.shapes[name]]
                dims.append(f"{name}:{'x'.join(str(d) for d in shape)}")
            return ",".join(dims)

        return {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(self._trt_cache),
            "trt_timing_cache_enable": True,
            "trt_max_workspace_size": TRT_WORKSPACE_BYTES,
            "trt_profile_min_shapes": profile(1),
            "trt_profile_opt_shapes": profile(1),
            "trt_profile_max_shapes": profile(TRT_MAX_BATCH),
        }

    def _session(
        self, path: Path, providers: Sequence[str], inputs: Sequence[str]
    ) -> tuple[Any, list[str]]:
        """An InferenceSession on the first providers that start; returns it and their list."""
        ort = _ort()
        options = ort.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = int(self._threads)
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self._spin else "0"
        )
        remaining = list(providers)
        while remaining:
            chain = [(p, self._provider_options(p, inputs)) for p in remaining]
            try:
                session = ort.InferenceSession(str(path), options, providers=chain)
            except Exception as err:  # onnxruntime raises its own exception types per failure
                if len(remaining) == 1 or "INVALID_PROTOBUF" in str(err):
                    raise BundleError(
                        f"onnxruntime cannot load {path} ({type(err).__name__}: {err}); the file "
                        "is corrupt or needs a newer onnxruntime: export the bundle again"
                    ) from err
                log.warning("%s failed to start (%s); falling back", _short(remaining[0]), err)
                remaining = remaining[1:]
                continue
            return session, [p for p in session.get_providers() if p in remaining]
        raise AssertionError("unreachable")

    # -- inference --------------------------------------------------------------------------------

    def encode_command(self, command: str | bytes) -> tuple[str, TextOutputs, bool]:
        """Text-graph outputs for one command, from the LRU cache when possible.

        Returns:
            ``(text, outputs, cached)``: the command as str, the batch-1 outputs and whether
            they came from the cache.

        Raises:
            InputError: Not a str/bytes, empty, not UTF-8, or no words once cleaned.
        """
        command = command_text(command)
        hit = self._text_cache.get(command)
        if hit is not None:
            self._text_cache.move_to_end(command)
            return command, hit, True
        tokens = self.tokenizer.encode(command, self.manifest.context_length)
        outputs = self.run_text(tokens)
        self._text_cache[command] = outputs
        if len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return command, outputs, False

    def run_text(self, tokens: np.ndarray) -> TextOutputs:
        """Run the text graph on token ids (B, L) int64."""
        words, padding, sentence = self._text.run(list(TEXT_OUTPUTS), {TEXT_INPUTS[0]: tokens})
        return words, padding, sentence

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Letterbox + normalise an (H, W, 3) uint8 RGB image: ((3, S, S) float32, letterbox)."""
        m = self.manifest
        return prepare_image(rgb, m.input_size, m.mean, m.std)

    def run_frame(self, images: np.ndarray, text: TextOutputs) -> tuple[np.ndarray, np.ndarray]:
        """Run the frame graph: images (B, 3, S, S) + text outputs (batch B) -> mask, grasp."""
        feeds = dict(zip(FRAME_INPUTS, (images, *text), strict=True))
        mask, grasp = self._frame.run(list(FRAME_OUTPUTS), feeds)
        return mask, grasp

    def detect(self, rgb: np.ndarray, command: str | bytes) -> Detection:
        """Detect grasps on the object ``command`` refers to.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            command: Instruction such as "pick the red mug by the handle" (str or UTF-8 bytes).

        Returns:
            The ranked grasps, target mask and score, or an empty list with a reason.

        Raises:
            InputError: Wrong image type, shape or dtype; empty, non-text or non-UTF-8 command.
        """
        start = time.perf_counter()
        validate_rgb(rgb)
        text_start = time.perf_counter()
        command, text, cached = self.encode_command(command)
        text_done = time.perf_counter()
        image, box = self.prepare(rgb)
        prepared = time.perf_counter()
        mask, grasp = self.run_frame(image[None], text)
        inferred = time.perf_counter()
        result = postprocess(mask[0, 0], grasp[0], box, self.decoding)
        done = time.perf_counter()
        timings = {
            "preprocess": (text_start - start) + (prepared - text_done),
            "text": text_done - text_start,
            "network": inferred - prepared,
            "decode": done - inferred,
            "total": done - start,
        }
        return Detection(
            grasps=result.grasps,
            mask=result.mask,
            mask_prob=result.mask_prob,
            mask_score=result.mask_score,
            reason=result.reason,
            command=command,
            timings_ms={k: v * 1000.0 for k, v in timings.items()},
            text_cached=cached,
        )
