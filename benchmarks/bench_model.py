"""Forward latency and GFLOPs of the registered model configs on this machine's CPU.

Usage: python benchmarks/bench_model.py [--runs N] [--threads T]
Prints one JSON line per config; figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch

from langgrasp.detector.config import list_models
from langgrasp.detector.model import PretrainedWeightsWarning, build_model
from langgrasp.detector.profile import count_flops, measure_latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", PretrainedWeightsWarning)  # latency does not depend on weights
    for name in list_models():
        model = build_model(name, freeze_clip=True).eval()
        result = {"model": name, "device": "cpu", "threads": args.threads, "batch": 1}
        result["gflops"] = round(count_flops(model) / 1e9, 2)
        result.update({k: round(v, 1) for k, v in measure_latency(model, runs=args.runs).items()})
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
