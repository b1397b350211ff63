"""Write a model bundle from a checkpoint: graphs, tokenizer, manifest, parity figures.

Steps (``export_bundle``), all inside a hidden temporary folder next to the destination that is
renamed into place at the end, so a crash or a failed check never leaves a half bundle:

1. the text and fp32 frame graphs (``graphs``), checked by the ONNX checker, IR version capped;
2. the CLIP merges file from the installed open_clip package;
3. a manifest, then the runtime ``GraspDetector`` on the folder and the fp32 parity check
   against PyTorch (``parity``): a violation aborts the export with the figures;
4. optional INT8 (calibrated through the same detector's preprocessing and text graph) and FP16
   frame graphs, each compared with the fp32 graph on the parity scenes;
5. the final manifest with the figures.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from langgrasp.detector.grasp import GraspDecoding
from langgrasp.detector.model import LGGD
from langgrasp.errors import InputError
from langgrasp.export.graphs import OPSET, ExportError, export_frame_graph, export_text_graph
from langgrasp.export.parity import (
    FP32_ATOL,
    ParityReport,
    check_onnx_against_torch,
    compare,
    engine_runner,
    parity_failures,
    parity_scenes,
)
from langgrasp.export.quantize import CalibrationSource, convert_fp16, quantize_int8
from langgrasp.runtime.bundle import (
    FRAME_GRAPH_FILES,
    FRAME_INPUTS,
    TEXT_GRAPH_FILE,
    Manifest,
    file_entry,
    sha256_file,
    write_manifest,
)
from langgrasp.runtime.engine import AGREEMENT_TARGET, GraspDetector
from langgrasp.runtime.tokenizer import VOCAB_FILENAME, find_vocab_file
from langgrasp.training.rundir import RUN_CONFIG

log = logging.getLogger(__name__)

DEFAULT_PARITY_SCENES = 8


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_bundle`` writes and checks.

    Attributes:
        fp16: Also write the fp16 frame graph (for GPU providers).
        int8: Also write the static QDQ int8 frame graph.
        calibration: INT8 calibration scenes.
        parity_scenes: Generated scenes for the parity checks (>= 1).
        atol: Largest allowed |ONNX fp32 - PyTorch| of any output.
        overwrite: Replace an existing bundle folder.
    """

    fp16: bool = False
    int8: bool = False
    calibration: CalibrationSource = field(default_factory=CalibrationSource)
    parity_scenes: int = DEFAULT_PARITY_SCENES
    atol: float = FP32_ATOL
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.parity_scenes, bool) or int(self.parity_scenes) < 1:
            raise InputError(f"parity_scenes must be >= 1, got {self.parity_scenes!r}")
        if not self.atol > 0:
            raise InputError(f"atol must be > 0, got {self.atol!r}")


@dataclass
class ExportResult:
    """What was written and measured.

    Attributes:
        bundle: The bundle folder.
        manifest: Its manifest.
        reports: Parity reports, fp32 against PyTorch first.
        seconds: Wall-clock time per step.
    """

    bundle: Path
    manifest: Manifest
    reports: list[ParityReport]
    seconds: dict[str, float]


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    from langgrasp import __version__

    return {
        "langgrasp": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _shapes(*models: onnx.ModelProto) -> dict[str, list[int | str]]:
    shapes: dict[str, list[int | str]] = {}
    for model in models:
        for value in (*model.graph.input, *model.graph.output):
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [d.dim_param or d.dim_value for d in dims]
    return shapes


def _json_safe(value: Any) -> Any:
    """``value`` if it survives a JSON round trip, else its string form."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)


def _prepare_destination(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the bundle")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"{out} already exists and is not empty; pass --overwrite to replace it, or choose "
            "another --out folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _move_into_place(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    model: LGGD,
    out: str | os.PathLike[str],
    options: ExportOptions | None = None,
    source: dict[str, Any] | None = None,
    decoding: GraspDecoding | None = None,
) -> ExportResult:
    """Export ``model`` into the bundle folder ``out`` (module docstring).

    Args:
        model: The model (any device; exported on the CPU in eval mode).
        out: Destination folder; must be empty or absent unless ``options.overwrite``.
        options: Precisions, calibration, parity settings.
        source: Provenance stored in the manifest (checkpoint path, hash, meta).
        decoding: Grasp decoding stored in the bundle (default: ``GraspDecoding`` defaults with
            the model's width scale).

    Raises:
        ExportError: An invalid graph or a failed fp32 parity check (the message has the figures).
        InputError: A non-empty destination without overwrite, or bad options.
    """
    options = options or ExportOptions()
    out = Path(out)
    model = model.cpu().eval()
    config = model.config
    decoding = decoding or GraspDecoding(width_scale=config.width_scale)
    staging = _prepare_destination(out, options.overwrite)
    seconds: dict[str, float] = {}
    try:
        start = time.perf_counter()
        text_model = export_text_graph(model, staging / TEXT_GRAPH_FILE)
        frame_model = export_frame_graph(model, staging / FRAME_GRAPH_FILES["fp32"])
        shutil.copyfile(find_vocab_file(), staging / VOCAB_FILENAME)
        seconds["export"] = time.perf_counter() - start
        source = dict(source or {})
        meta = source.get("meta")
        metrics = meta.get("metrics") if isinstance(meta, dict) else None
        manifest = Manifest(
            model=config.name,
            config=config.to_dict(),
            input_size=config.input_size,
            context_length=config.context_length,
            mean=tuple(config.mean),
            std=tuple(config.std),
            width_scale=float(config.width_scale),
            decoding=asdict(decoding),
            text_graph=file_entry(staging, TEXT_GRAPH_FILE),
            frame_graphs={"fp32": file_entry(staging, FRAME_GRAPH_FILES["fp32"])},
            vocab=file_entry(staging, VOCAB_FILENAME),
            shapes=_shapes(text_model, frame_model),
            opset=OPSET,
            ir_version=int(frame_model.ir_version),
            exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=_json_safe(source),
            versions=_versions(),
            metrics=_json_safe(metrics) if metrics is not None else None,
        )
        write_manifest(staging, manifest)

        start = time.perf_counter()
        scenes = parity_scenes(options.parity_scenes)
        fp32 = GraspDetector(staging, providers=["cpu"], precision="fp32", verify=False)
        reports = [check_onnx_against_torch(model, fp32, scenes)]
        problems = parity_failures(reports[0], options.atol)
        log.info("parity: %s", reports[0].summary())
        if problems:
            raise ExportError(
                "the ONNX graphs do not reproduce PyTorch: " + "; ".join(problems) + ". "
                f"Figures: {reports[0].summary()}"
            )
        seconds["parity"] = time.perf_counter() - start

        graphs = dict(manifest.frame_graphs)
        if options.int8:
            start = time.perf_counter()

            def feeds(rgb: np.ndarray, command: str) -> dict[str, np.ndarray]:
                image, _ = fp32.prepare(rgb)
                _, (words, padding, sentence), _ = fp32.encode_command(command)
                return dict(zip(FRAME_INPUTS, (image[None], words, padding, sentence), strict=True))

            quantize_int8(
                staging / FRAME_GRAPH_FILES["fp32"],
                staging / FRAME_GRAPH_FILES["int8"],
                options.calibration,
                feeds,
            )
            graphs["int8"] = file_entry(staging, FRAME_GRAPH_FILES["int8"])
            seconds["int8"] = time.perf_counter() - start
        if options.fp16:
            start = time.perf_counter()
            convert_fp16(staging / FRAME_GRAPH_FILES["fp32"], staging / FRAME_GRAPH_FILES["fp16"])
            graphs["fp16"] = file_entry(staging, FRAME_GRAPH_FILES["fp16"])
            seconds["fp16"] = time.perf_counter() - start
        manifest = replace(manifest, frame_graphs=graphs)
        write_manifest(staging, manifest)
        for precision in ("int8", "fp16"):
            if precision not in graphs:
                continue
            reduced = GraspDetector(staging, providers=["cpu"], precision=precision, verify=False)
            report = compare(
                engine_runner(fp32),
                engine_runner(reduced),
                scenes,
                (f"onnx {precision}", "onnx fp32"),
            )
            reports.append(report)
            log.info("parity: %s", report.summary())
            if report.agreement < AGREEMENT_TARGET:
                log.warning(
                    "%s top-1 agreement with fp32 is %.0f%% (< %.0f%%) on %d generated scenes; "
                    "GraspDetector(precision='auto') will not use it",
                    precision,
                    100 * report.agreement,
                    100 * AGREEMENT_TARGET,
                    report.scenes,
                )
        parity = {
            "scenes": options.parity_scenes,
            "atol": options.atol,
            "reports": [r.to_dict() for r in reports],
        }
        manifest = replace(manifest, parity=_json_safe(parity))
        write_manifest(staging, manifest)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, manifest, reports, seconds)


def checkpoint_source(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Provenance of a checkpoint folder for the manifest: path, weights SHA-256, meta."""
    from langgrasp.detector.checkpoint import WEIGHTS_FILE

    source = {
        "checkpoint": str(directory.resolve()),
        "weights_sha256": sha256_file(directory / WEIGHTS_FILE),
        "meta": meta,
    }
    # <run>/best or <run>/checkpoints/step-N: record how the run was started (commands, config).
    for run_dir in (directory.parent, directory.parent.parent):
        try:
            run = json.loads((run_dir / RUN_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(run, dict) and "train" in run:
            source["training"] = {"history": run.get("history", []), "config": run["train"]}
            break
    return source
