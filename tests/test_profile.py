import pytest

from langgrasp.detector.profile import model_info

# Paper Table V: 171.76 M parameters, 67.70 M trainable, 289.21 GFLOPs.
PAPER_TRAINABLE_M, PAPER_GFLOPS = 67.70, 289.21


def test_paper_config_lands_near_table_v():
    info = model_info("lggd-rn50")
    assert info["params_trainable"] / 1e6 == pytest.approx(PAPER_TRAINABLE_M, rel=0.03)
    assert info["gflops"] == pytest.approx(PAPER_GFLOPS, rel=0.03)
    assert info["params_total"] == info["params_trainable"] + info["params_clip"]
    # CLIP RN50 towers without logit scale and the unused pool projection: about 100 M.
    assert 95e6 < info["params_clip"] < 105e6


def test_tiny_config_is_small():
    info = model_info("lggd-tiny")
    assert info["params_total"] < 10e6 and info["gflops"] < 5
    assert info["input_size"] == info["output_size"] == 128
