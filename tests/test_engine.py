import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from langgrasp.cli import main
from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.model import tokenize
from langgrasp.errors import InputError
from langgrasp.export.exporter import ExportOptions, export_bundle
from langgrasp.export.probe import probe_model
from langgrasp.runtime.bundle import FRAME_GRAPH_FILES, BundleError
from langgrasp.runtime.engine import Detection, GraspDetector

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: OpenMP pools stall whenever another process takes a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """An fp32 lggd-tiny bundle of a probe model (its maps vary with the image)."""
    out = tmp_path_factory.mktemp("engine") / "bundle"
    export_bundle(probe_model("lggd-tiny", scenes=4), out, ExportOptions(parity_scenes=1))
    return out


@pytest.fixture(scope="module")
def detector(bundle):
    return GraspDetector(bundle, providers=["cpu"], threads=1)


def test_detect_gives_ranked_grasps_mask_and_timings_in_image_pixels(detector):
    scene = render_scene(21)
    h, w = scene.rgb.shape[:2]
    detection = detector.detect(scene.rgb, scene.text)
    assert isinstance(detection, Detection) and detection.reason is None
    assert 0 < len(detection.grasps) <= detector.decoding.top_n
    qualities = [g.quality for g in detection.grasps]
    assert qualities == sorted(qualities, reverse=True)
    for g in detection.grasps:
        assert 0 <= g.x < w and 0 <= g.y < h and g.width > 0
    assert detection.mask.shape == (h, w) and detection.mask.dtype == bool
    assert detection.mask_prob.shape == (h, w) and detection.mask_prob.dtype == np.float32
    assert detection.mask_score == pytest.approx(detection.mask_prob[detection.mask].mean())
    assert set(detection.timings_ms) == {"preprocess", "text", "network", "decode", "total"}
    summary = json.loads(json.dumps(detection.to_dict()))
    assert summary["grasps"][0]["rank"] == 1 and summary["mask_pixels"] == detection.mask.sum()


def test_tokenizer_matches_open_clip(detector):
    commands = [
        "pick the red mug by the handle",
        "Grab the BLUE box, please!",
        "the thing on the left — next to the café's cup",
        "ball",
        "  lots   of   spaces  ",
    ]
    length = detector.manifest.context_length
    for command in commands:
        expected = tokenize(command, length).numpy()
        np.testing.assert_array_equal(detector.tokenizer.encode(command, length), expected)


def test_text_features_are_cached_per_command_lru(bundle):
    detector = GraspDetector(bundle, providers=["cpu"], text_cache_size=2, verify=False)
    calls = []
    run_text = detector.run_text
    detector.run_text = lambda tokens: calls.append(tokens) or run_text(tokens)
    rgb = render_scene(22).rgb
    first = detector.detect(rgb, "pick the mug")
    again = detector.detect(rgb, "pick the mug")
    assert len(calls) == 1 and again.text_cached and not first.text_cached
    assert again.timings_ms["text"] < first.timings_ms["text"] or again.text_cached
    np.testing.assert_array_equal(first.mask_prob, again.mask_prob)
    detector.detect(rgb, b"grab the box")  # UTF-8 bytes are a command too
    detector.detect(rgb, "pick the mug")  # still cached: now most recent
    detector.detect(rgb, "take the ball")  # evicts "grab the box"
    assert len(calls) == 3
    detector.detect(rgb, "grab the box")
    assert len(calls) == 4


@pytest.mark.parametrize(
    "image,command,message",
    [
        (np.zeros((48, 64), np.uint8), "pick the mug", r"shape \(H, W, 3\)"),
        (np.zeros((48, 64, 3), np.float32), "pick the mug", "dtype uint8"),
        (np.zeros((0, 64, 3), np.uint8), "pick the mug", "empty image"),
        ([[0, 0, 0]], "pick the mug", "got list"),
        (np.zeros((48, 64, 3), np.uint8), "", "command is empty"),
        (np.zeros((48, 64, 3), np.uint8), "   ", "command is empty"),
        (np.zeros((48, 64, 3), np.uint8), 42, "must be a string"),
        (np.zeros((48, 64, 3), np.uint8), b"pick the \xff mug", "not valid UTF-8"),
    ],
)
def test_bad_input_gets_a_clear_error(detector, image, command, message):
    with pytest.raises(InputError, match=message):
        detector.detect(image, command)


def test_no_target_or_no_peak_gives_an_empty_result_with_a_reason(detector, monkeypatch):
    size = detector.manifest.input_size
    rgb = render_scene(23).rgb
    grasp = np.zeros((1, 4, size, size), np.float32)
    grasp[:, 0] = 0.9  # strong quality everywhere ...
    absent = np.full((1, 1, size, size), -8.0, np.float32)  # ... but no target
    monkeypatch.setattr(detector, "run_frame", lambda images, text: (absent, grasp))
    detection = detector.detect(rgb, "pick the unicorn")
    assert detection.grasps == [] and detection.reason.startswith("target not found")
    assert not detection.mask.any() and detection.mask_score == 0.0
    everywhere = np.full((1, 1, size, size), 8.0, np.float32)
    flat = np.zeros((1, 4, size, size), np.float32)  # target everywhere, quality 0
    monkeypatch.setattr(detector, "run_frame", lambda images, text: (everywhere, flat))
    detection = detector.detect(rgb, "pick the unicorn")
    assert detection.grasps == [] and detection.reason.startswith("no grasp peak")
    assert detection.mask.all()


def test_provider_fallback_logs_one_line(bundle, caplog):
    with caplog.at_level(logging.INFO, logger="langgrasp.runtime.engine"):
        detector = GraspDetector(bundle, providers="tensorrt,cuda,cpu", verify=False)
    assert detector.providers == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "on cpu" in lines[0] and "unavailable: tensorrt, cuda" in lines[0]


def test_bad_provider_precision_and_thread_settings(bundle):
    with pytest.raises(InputError, match="unknown execution provider"):
        GraspDetector(bundle, providers=["gpu"], verify=False)
    with pytest.raises(InputError, match="none of the execution providers"):
        GraspDetector(bundle, providers=["tensorrt"], verify=False)
    with pytest.raises(InputError, match="no int8 frame graph"):
        GraspDetector(bundle, providers=["cpu"], precision="int8", verify=False)
    with pytest.raises(InputError, match="precision must be"):
        GraspDetector(bundle, providers=["cpu"], precision="int4", verify=False)
    with pytest.raises(InputError, match="threads"):
        GraspDetector(bundle, providers=["cpu"], threads=0, verify=False)


def test_corrupt_graph_is_a_bundle_error(bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    frame = broken / FRAME_GRAPH_FILES["fp32"]
    data = bytearray(frame.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)  # same size, zeroed first half
    frame.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        GraspDetector(broken, providers=["cpu"])
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        GraspDetector(broken, providers=["cpu"], verify=False)
    frame.unlink()
    with pytest.raises(BundleError, match="is missing"):
        GraspDetector(broken, providers=["cpu"])


def _write_scene(folder, seed):
    scene = render_scene(seed)
    image = folder / "rgb.png"
    depth = folder / "depth.png"
    cv2.imwrite(str(image), scene.rgb[..., ::-1])
    cv2.imwrite(str(depth), np.round(scene.depth * 1000).astype(np.uint16))
    return scene, image, depth


def test_detect_cli_prints_json_and_writes_the_overlay(bundle, tmp_path, capsys):
    scene, image, depth = _write_scene(tmp_path, 24)
    overlay = tmp_path / "overlay.png"
    args = ["detect", "--bundle", str(bundle), "--image", str(image), "--depth", str(depth)]
    args += ["--command", scene.text, "--providers", "cpu", "--json", "--out", str(overlay)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["command"] == scene.text and result["model"] == "lggd-tiny"
    assert result["provider"] == "CPUExecutionProvider" and result["grasps"]
    g = result["grasps"][0]
    expected = scene.depth[round(g["y"]), round(g["x"])]
    assert g["depth_m"] == pytest.approx(expected, abs=1e-3) or (
        expected == 0 and g["depth_m"] is None
    )
    picture = cv2.imread(str(overlay))
    assert picture.shape == scene.rgb.shape
    assert main(args[:-3]) == 0  # text output
    assert "#1: centre" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--image", "missing.png"], "does not exist"),
        (["--image", "bundle_manifest"], "cannot decode"),
        (["--depth", "rgb"], "single-channel depth"),
        (["--command", ""], "command is empty"),
    ],
)
def test_detect_cli_errors_are_one_line(bundle, tmp_path, capsys, extra, message):
    _, image, _ = _write_scene(tmp_path, 25)
    replacements = {"bundle_manifest": str(bundle / "manifest.json"), "rgb": str(image)}
    extra = [replacements.get(x, str(tmp_path / x) if x.endswith(".png") else x) for x in extra]
    args = ["detect", "--bundle", str(bundle), "--image", str(image), "--command", "pick it"]
    args += ["--providers", "cpu", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_detect_cli_rejects_a_missing_bundle(tmp_path, capsys):
    _, image, _ = _write_scene(tmp_path, 26)
    args = ["detect", "--bundle", str(tmp_path / "nope"), "--image", str(image)]
    assert main([*args, "--command", "pick it"]) == 2
    assert "not found" in capsys.readouterr().err


def test_engine_runs_without_torch_or_open_clip(bundle):
    code = "\n".join(
        [
            "import sys",
            "from langgrasp.runtime.engine import GraspDetector",
            "from langgrasp.runtime.commands import register_cli",
            "from langgrasp.datasets.synthetic import render_scene",
            "scene = render_scene(27)",
            f"detection = GraspDetector({str(bundle)!r}, providers=['cpu']).detect(",
            "    scene.rgb, scene.text)",
            "assert detection.grasps or detection.reason",
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
