import numpy as np
import pytest

from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.predict import Predictor
from langgrasp.errors import InputError


@pytest.fixture(scope="module")
def predictor():
    from langgrasp.detector.model import build_model

    return Predictor(build_model("lggd-tiny", freeze_clip=True))


def test_prediction_is_in_image_pixels(predictor):
    scene = render_scene(1)
    prediction = predictor.predict(scene.rgb, scene.text)
    h, w = scene.rgb.shape[:2]
    assert prediction.mask_prob.shape == (h, w) and prediction.mask_prob.dtype == np.float32
    assert 0.0 <= prediction.mask_prob.min() <= prediction.mask_prob.max() <= 1.0
    assert len(prediction.grasps) <= predictor.decoding.top_n
    for g in prediction.grasps:
        assert 0 <= g.x < w and 0 <= g.y < h
    assert set(prediction.timings_ms) == {"preprocess", "network", "decode"}


def test_text_is_encoded_once_per_command(predictor, monkeypatch):
    scene = render_scene(2)
    calls = []
    encode = predictor.model.encode_text
    monkeypatch.setattr(predictor.model, "encode_text", lambda t: calls.append(t) or encode(t))
    first = predictor.predict(scene.rgb, "pick the blue mug")
    again = predictor.predict(scene.rgb, "pick the blue mug")
    assert len(calls) == 1 and np.array_equal(first.mask_prob, again.mask_prob)
    predictor.predict(scene.rgb, "pick the red box")
    assert len(calls) == 2


@pytest.mark.parametrize(
    "image,command,message",
    [
        (np.zeros((48, 64), np.uint8), "pick the mug", r"shape \(H, W, 3\)"),
        (np.zeros((48, 64, 3), np.float32), "pick the mug", "dtype uint8"),
        ([[0, 0, 0]], "pick the mug", "got list"),
        (np.zeros((48, 64, 3), np.uint8), "", "command is empty"),
        (np.zeros((48, 64, 3), np.uint8), 42, "must be a string"),
    ],
)
def test_bad_input_gets_a_clear_error(predictor, image, command, message):
    with pytest.raises(InputError, match=message):
        predictor.predict(image, command)
