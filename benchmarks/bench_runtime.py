"""Runtime benchmark: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8 on this CPU.

For each model config: export a bundle with an int8 frame graph (``langgrasp.export``), then on
generated scenes measure

* per-frame latency of the whole detection (letterbox + normalise, network, decode), text
  features cached (one command for all frames), median and p95, for PyTorch eager
  (``Predictor``), ORT fp32 and ORT int8 (``GraspDetector``), same thread count for all;
* the text-graph latency (ORT, one command) and the decode/post-processing latency;
* the top-1 agreement of int8 with fp32 (rectangle metric: IoU > 0.25, angle < 30 degrees);
* for scale, the top-1 agreement of fp32 with itself on the same scenes with +-1 grey level of
  uniform noise added to the image: a model whose best grasps are near-ties flips between them
  under any small change, so int8 cannot agree with fp32 more often than this.

Weights: a checkpoint when given (``--checkpoint-tiny`` / ``--checkpoint-rn50``), else a probe
model (``langgrasp.export.probe``: random weights with image-dependent outputs). Latency does not
depend on the weights; INT8 agreement does, and random weights are far more sensitive to
quantisation than trained ones, so only a trained checkpoint gives a meaningful agreement figure.

    python benchmarks/bench_runtime.py [--models lggd-tiny lggd-rn50] [--frames 30]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.checkpoint import load_checkpoint
from langgrasp.detector.model import PretrainedWeightsWarning
from langgrasp.detector.predict import Predictor
from langgrasp.export.exporter import ExportOptions, export_bundle
from langgrasp.export.parity import RunFn, compare, engine_runner, parity_scenes
from langgrasp.export.probe import probe_model
from langgrasp.export.quantize import CalibrationSource
from langgrasp.runtime.engine import GraspDetector

FRAME_SEED = 300_000
AGREEMENT_SEED = 400_000
WARMUP = 3
P95 = 95
PROBE_WEIGHTS = "probe (random, untrained)"
NOISE_GREY_LEVELS = 1
"""Largest |noise| of the fp32 stability reference, in 8-bit grey levels."""


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p95": float(np.percentile(values, P95))}


def _time_frames(detect, frames, command) -> dict[str, dict[str, float]]:
    for rgb in frames[:WARMUP]:
        detect(rgb, command)
    totals, networks, decodes = [], [], []
    for rgb in frames:
        start = time.perf_counter()
        timings = detect(rgb, command).timings_ms
        totals.append((time.perf_counter() - start) * 1000.0)
        networks.append(timings["network"])
        decodes.append(timings["decode"])
    return {"frame": _stats(totals), "network": _stats(networks), "decode": _stats(decodes)}


def _with_noise(run: RunFn, seed: int) -> RunFn:
    """``run`` on the image plus uniform integer noise of at most NOISE_GREY_LEVELS."""
    rng = np.random.default_rng(seed)

    def run_noisy(rgb: np.ndarray, command: str) -> tuple[np.ndarray, np.ndarray, list]:
        noise = rng.integers(-NOISE_GREY_LEVELS, NOISE_GREY_LEVELS + 1, rgb.shape)
        return run(np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8), command)

    return run_noisy


def bench_model(name: str, args: argparse.Namespace, work: Path) -> dict:
    checkpoint = getattr(args, f"checkpoint_{name.split('-')[1]}", None)
    if checkpoint:
        model, _ = load_checkpoint(checkpoint)
        weights = f"checkpoint {checkpoint}"
    else:
        model = probe_model(name)
        weights = PROBE_WEIGHTS
    options = ExportOptions(
        int8=True,
        calibration=CalibrationSource(count=args.calib_n),
        parity_scenes=args.parity_scenes,
        overwrite=True,
    )
    start = time.perf_counter()
    export = export_bundle(model, work / name, options)
    export_s = time.perf_counter() - start

    scenes = [render_scene(FRAME_SEED + i) for i in range(args.frames)]
    frames = [s.rgb for s in scenes]
    command = scenes[0].text
    torch.set_num_threads(args.threads)
    predictor = Predictor(model)
    engines = {
        p: GraspDetector(work / name, providers=["cpu"], precision=p, threads=args.threads)
        for p in ("fp32", "int8")
    }
    latency = {"pytorch": _time_frames(predictor.predict, frames, command)}
    for precision, engine in engines.items():
        latency[f"ort {precision}"] = _time_frames(engine.detect, frames, command)

    fp32 = engines["fp32"]
    tokens = fp32.tokenizer.encode(command, fp32.manifest.context_length)
    text_ms = []
    for _ in range(WARMUP + args.frames):
        start = time.perf_counter()
        fp32.run_text(tokens)
        text_ms.append((time.perf_counter() - start) * 1000.0)
    scenes = parity_scenes(args.agreement_scenes, AGREEMENT_SEED)
    agreement = compare(
        engine_runner(fp32), engine_runner(engines["int8"]), scenes, ("onnx int8", "onnx fp32")
    )
    stability = compare(
        engine_runner(fp32),
        _with_noise(engine_runner(fp32), AGREEMENT_SEED),
        scenes,
        ("onnx fp32 + noise", "onnx fp32"),
    )
    return {
        "model": name,
        "input_size": model.config.input_size,
        "weights": weights,
        "threads": args.threads,
        "frames": args.frames,
        "latency_ms": latency,
        "text_graph_ms": _stats(text_ms[WARMUP:]),
        "int8_agreement": agreement.to_dict(),
        "fp32_noise_agreement": stability.to_dict(),
        "export_parity": [r.to_dict() for r in export.reports],
        "export_s": export_s,
        "calibration_scenes": args.calib_n,
    }


def _percent(report: dict) -> str:
    return f"{100 * report['agreement']:.0f}% ({report['top1_agree']}/{report['scenes']})"


def print_tables(results: list[dict]) -> None:
    print("| model (input) | backend | frame median ms | frame p95 ms | network median ms |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        for backend, t in r["latency_ms"].items():
            print(
                f"| {r['model']} ({r['input_size']} px) | {backend} | {t['frame']['median']:.1f} "
                f"| {t['frame']['p95']:.1f} | {t['network']['median']:.1f} |"
            )
    print()
    print(
        "| model | text graph ms | decode ms | int8 speed-up (frame) | int8 top-1 agreement "
        "| fp32 top-1 agreement under +-1 grey level | fp32 max abs diff vs PyTorch | weights |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        lat = r["latency_ms"]
        speedup = lat["ort fp32"]["frame"]["median"] / lat["ort int8"]["frame"]["median"]
        agreement = _percent(r["int8_agreement"])
        if r["weights"] == PROBE_WEIGHTS:
            agreement += ", random weights: not meaningful"
        stability = _percent(r["fp32_noise_agreement"])
        diff = max(r["export_parity"][0]["max_abs"].values())
        print(
            f"| {r['model']} | {r['text_graph_ms']['median']:.1f} "
            f"| {lat['ort int8']['decode']['median']:.1f} | {speedup:.2f}x "
            f"| {agreement} | {stability} | {diff:.1e} | {r['weights']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lggd-tiny", "lggd-rn50"])
    parser.add_argument("--frames", type=int, default=30, help="timed frames per backend")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of every backend (default 1: on a shared machine, 2-thread runs of "
        "PyTorch's OpenMP pool slow down several-fold whenever another process takes a core)",
    )
    parser.add_argument("--calib-n", type=int, default=64, help="int8 calibration scenes")
    parser.add_argument("--parity-scenes", type=int, default=8)
    parser.add_argument("--agreement-scenes", type=int, default=50)
    parser.add_argument("--checkpoint-tiny", type=Path, default=None)
    parser.add_argument("--checkpoint-rn50", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="keep the bundles here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=PretrainedWeightsWarning)
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        work = args.work or Path(tmp)
        results = [bench_model(name, args, work) for name in args.models]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print_tables(results)


if __name__ == "__main__":
    main()
