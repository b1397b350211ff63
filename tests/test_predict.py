import numpy as np
import pytest
import torch

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


def test_grasps_map_back_to_image_pixels_and_never_come_from_padding(predictor, monkeypatch):
    from langgrasp.detector.model import LGGDOutput
    from langgrasp.detector.preprocess import Letterbox

    config = predictor.model.config
    s = config.input_size
    rgb = np.zeros((480, 640, 3), np.uint8)
    box = Letterbox.fit(480, 640, s)  # 640 -> 128: scale 0.2, 16 rows of padding top and bottom
    yy, xx = np.mgrid[0:s, 0:s]
    quality = 0.9 * np.exp(-((xx - 70) ** 2 + (yy - 60) ** 2) / 8.0)  # on the image
    quality += 1.0 * np.exp(-((xx - 30) ** 2 + (yy - 4) ** 2) / 8.0)  # stronger, in the padding
    angle_maps = [np.full_like(quality, np.cos(0.6)), np.full_like(quality, np.sin(0.6))]
    maps = np.stack([quality, *angle_maps, np.full_like(quality, 0.5)])[None]
    fake = LGGDOutput(
        mask=torch.full((1, 1, s, s), 10.0),  # "everything is the target"
        grasp=torch.from_numpy(maps).float(),
        coarse_mask=torch.zeros(1, 1, s, s),
        coarse_grasp=torch.zeros(1, 4, s, s),
    )
    monkeypatch.setattr(predictor.model, "decode", lambda image, text: fake)
    prediction = predictor.predict(rgb, "pick the mug")
    assert len(prediction.grasps) == 1
    g = prediction.grasps[0]
    expected_x, expected_y = box.points_to_image(np.array([70.0, 60.0]))
    assert (g.x, g.y) == pytest.approx((expected_x, expected_y), abs=0.5 / box.scale)
    assert g.angle == pytest.approx(0.3, abs=1e-5)
    assert g.width == pytest.approx(0.5 * config.width_scale / box.scale, rel=1e-5)
    assert prediction.mask_prob[:5].max() > 0.99  # image rows near the top are still target
