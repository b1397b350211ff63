"""Model size, FLOPs and latency figures (``langgrasp info``, ``make bench-model``)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from langgrasp.detector.config import LGGDConfig, get_config
from langgrasp.detector.model import LGGD, build_model

GIGA = 1e9


def dummy_inputs(
    config: LGGDConfig, batch: int = 1, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero image batch and a token batch holding one short command, for shape-only runs."""
    images = torch.zeros(batch, 3, config.input_size, config.input_size, device=device)
    tokens = torch.zeros(batch, config.context_length, dtype=torch.long, device=device)
    if tokens.device.type != "meta":
        tokens[:, :3] = torch.tensor([49406, 320, 49407])  # <start> "a" <end> (CLIP BPE ids)
    return images, tokens


def count_flops(model: LGGD, batch: int = 1) -> int:
    """FLOPs of one forward pass (torch's counter: 2 per multiply-add, conv/matmul/attention)."""
    device = next(model.parameters()).device
    images, tokens = dummy_inputs(model.config, batch, device)
    was_training, fastpath = model.training, torch.backends.mha.get_fastpath_enabled()
    model.eval()
    # The fused inference kernel of nn.MultiheadAttention is invisible to the FLOP counter.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(images, tokens)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    return counter.get_total_flops()


def model_info(name: str) -> dict[str, Any]:
    """Parameter counts (CLIP frozen, as with pretrained weights), GFLOPs and sizes of a config.

    The model is built on the meta device: shapes only, no memory, no weights, no warning.
    """
    config = get_config(name)
    with torch.device("meta"):
        model = build_model(config, freeze_clip=True)
    clip = sum(p.numel() for m in (model.image_encoder, model.text_encoder) for p in m.parameters())
    return {
        "model": config.name,
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params_clip": clip,
        "gflops": round(count_flops(model) / GIGA, 2),
        "input_size": config.input_size,
        "output_size": config.output_size,
        "context_length": config.context_length,
    }


def measure_latency(
    model: LGGD, runs: int = 5, warmup: int = 1, batch: int = 1
) -> dict[str, float]:
    """Forward latency in milliseconds (median, min, max over ``runs`` after ``warmup``)."""
    device = next(model.parameters()).device
    images, tokens = dummy_inputs(model.config, batch, device)
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(images, tokens)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": runs,
    }
