"""Shared fixtures: tiny configs and inputs so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from langgrasp.detector.config import get_config
from langgrasp.detector.model import build_model, tokenize

COMMANDS = ["pick the red mug by the handle", "grab the blue box!", "ball"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_config():
    return get_config("lggd-tiny")


@pytest.fixture
def frozen_model(tiny_config):
    """lggd-tiny with CLIP frozen, as when pretrained weights are loaded."""
    return build_model(tiny_config, freeze_clip=True)


@pytest.fixture
def make_inputs():
    """A function (config, batch) -> (random images, tokens of short commands)."""

    def make(config, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(batch, 3, config.input_size, config.input_size)
        tokens = tokenize(
            [COMMANDS[i % len(COMMANDS)] for i in range(batch)], config.context_length
        )
        return images, tokens

    return make
