"""Evaluation: scoring with a ground-truth oracle, protocols, real loaders and the CLI."""

import dataclasses
import json
import math
import pickle

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from langgrasp.cli import main
from langgrasp.datasets.base import GroundingDataset, GroundingSample, SampleError, open_dataset
from langgrasp.detector.config import get_config
from langgrasp.detector.grasp import Grasp, GraspEncoding, encode_grasps
from langgrasp.detector.model import LGGDOutput, tokenize
from langgrasp.detector.preprocess import Letterbox
from langgrasp.errors import InputError
from langgrasp.evaluation import evaluate_model, get_protocol
from langgrasp.evaluation.evaluate import select_indices
from langgrasp.evaluation.scoring import format_report, score_sample, summarize

H, W = 96, 128  # non-square, so the letterbox pads and mapping back to the image matters
LOGIT = 12.0  # oracle mask logit magnitude: sigmoid(±12) is 1 or 0 to 6 decimals


def make_sample(i, *, meta=None, mask=True, angle=0.3):
    """An image with a large target region and one grasp inside it; unique text per sample."""
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    target = np.zeros((H, W), bool)
    target[15:85, 8:120] = True
    grasp = Grasp(x=36.0 + 2 * i, y=50.0, angle=angle, width=30.0, height=15.0)
    return GroundingSample(
        rgb=rgb,
        depth=np.full((H, W), 0.6, np.float32),
        mask=target if mask else None,
        grasps=[grasp],
        text=f"pick the object number {i}",
        target_name=f"object_{i}",
        sample_id=f"s{i}",
        meta=meta or {},
    )


class ListDataset(GroundingDataset):
    """Hand-made samples; an Exception in the list is raised as a SampleError when loaded."""

    name = "list"

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def sample_id(self, index):
        item = self.items[index]
        return f"broken{index}" if isinstance(item, Exception) else item.sample_id

    def load(self, index):
        item = self.items[index]
        if isinstance(item, Exception):
            raise SampleError(f"sample {index}: {item}")
        return item


def moved(g, dx=0.0, dangle=0.0):
    return dataclasses.replace(g, x=g.x + dx, angle=g.angle + dangle)


class OracleModel(nn.Module):
    """Stands in for LGGD: outputs maps rendered from each sample's (optionally edited) GT.

    Commands are told apart by their tokens. ``edit(grasp) -> grasp`` changes what is
    "predicted"; ``full_mask`` predicts the whole image as target.
    """

    def __init__(self, samples, edit=None, full_mask=False, config=None):
        super().__init__()
        self.config = config or get_config("lggd-tiny")
        s = self.config.input_size
        encoding = GraspEncoding(width_scale=self.config.width_scale)
        self.table = []
        for sample in samples:
            box = Letterbox.fit(*sample.rgb.shape[:2], s)
            target = np.ones(sample.rgb.shape[:2], bool) if full_mask else sample.mask
            mask = box.mask(target) if target is not None else np.zeros((s, s), bool)
            grasps = [edit(g) if edit else g for g in sample.grasps]
            maps = encode_grasps(box.grasps_to_model(grasps), (s, s), encoding)
            tokens = tokenize(sample.text, self.config.context_length)[0]
            logits = np.where(mask, LOGIT, -LOGIT).astype(np.float32)
            self.table.append((tokens, torch.from_numpy(logits)[None], torch.from_numpy(maps)))

    def _lookup(self, row):
        for tokens, mask, grasp in self.table:
            if torch.equal(tokens, row.cpu()):
                return mask, grasp
        raise AssertionError("the oracle does not know this command")

    def forward(self, images, tokens):
        assert images.shape[1:] == (3, self.config.input_size, self.config.input_size)
        masks, grasps = zip(*(self._lookup(row) for row in tokens), strict=True)
        mask, grasp = torch.stack(masks), torch.stack(grasps)
        return LGGDOutput(mask=mask, grasp=grasp, coarse_mask=mask, coarse_grasp=grasp)

    # The Predictor's split API, so both paths can be compared on the same "network".
    def encode_text(self, tokens):
        return tokens

    def encode_image(self, images):
        return images

    def decode(self, image, text):
        return self(image, text)

    def check_inputs(self, images, tokens):
        pass


def test_perfect_prediction_scores_one_and_far_or_rotated_grasps_score_zero():
    samples = [make_sample(i) for i in range(4)]
    dataset = ListDataset(samples)
    perfect = evaluate_model(OracleModel(samples), dataset, batch_size=3)
    m = perfect.metrics
    assert m["n"] == 4 and m["n_mask"] == 4
    assert m["j@1"] == 1.0 and m["j@5"] == 1.0
    assert m["iou"] > 0.95 and m["pr@90"] == 1.0
    top = perfect.per_sample[0]["grasps"][0]
    gt = samples[0].grasps[0]
    assert (top["x"], top["y"]) == pytest.approx((gt.x, gt.y), abs=1.0)  # original image pixels
    assert top["width"] == pytest.approx(gt.width, rel=0.05)

    far = evaluate_model(OracleModel(samples, edit=lambda g: moved(g, dx=60.0)), dataset)
    assert all(r["grasps"] for r in far.per_sample)  # grasps were found, just in the wrong place
    assert far.metrics["j@1"] == 0.0 and far.metrics["j@5"] == 0.0
    assert far.metrics["iou"] > 0.95  # the mask is still right

    rotated = evaluate_model(OracleModel(samples, edit=lambda g: moved(g, dangle=0.9)), dataset)
    assert rotated.metrics["j@1"] == 0.0

    wrong_mask = evaluate_model(OracleModel(samples, full_mask=True), dataset)
    expected_iou = samples[0].mask.mean()  # target area / image area
    assert wrong_mask.metrics["iou"] == pytest.approx(expected_iou, abs=0.02)
    assert wrong_mask.metrics["pr@80"] == 0.0


def test_evaluator_and_predictor_share_post_processing():
    from langgrasp.detector.predict import Predictor

    samples = [make_sample(i, angle=-1.2) for i in range(3)]
    oracle = OracleModel(samples, edit=lambda g: moved(g, dx=7.0))
    result = evaluate_model(oracle, ListDataset(samples), batch_size=2)
    predictor = Predictor(oracle)
    for sample, record in zip(samples, result.per_sample, strict=True):
        prediction = predictor.predict(sample.rgb, sample.text)
        assert prediction.grasps
        expected = [{k: round(v, 3) for k, v in g.to_dict().items()} for g in prediction.grasps]
        assert record["grasps"] == expected


def test_broken_samples_are_skipped_and_missing_masks_excluded():
    samples = [
        make_sample(0),
        ValueError("image file missing"),
        make_sample(2, mask=False),
        dataclasses.replace(make_sample(3), grasps=[]),
        dataclasses.replace(make_sample(4), mask=np.ones((10, 10), bool)),
    ]
    usable = [s for s in samples if isinstance(s, GroundingSample)]
    result = evaluate_model(OracleModel(usable[:2]), ListDataset(samples))
    assert result.metrics["n"] == 2 and result.metrics["n_mask"] == 1
    assert [sid for sid, _ in result.skipped] == ["broken1", "s3", "s4"]
    reasons = dict(result.skipped)
    assert "image file missing" in reasons["broken1"]
    assert "no ground-truth grasps" in reasons["s3"]
    assert "mask shape" in reasons["s4"]
    assert result.per_sample[1]["mask_iou"] is None
    report = result.report("fixture")
    assert "3 skipped" in report and "mask metrics over the 1 of 2 samples" in report


def test_seen_unseen_and_harmonic_mean():
    seen = [make_sample(i, meta={"group": "seen"}) for i in range(2)]
    unseen = [make_sample(i, meta={"group": "unseen"}) for i in range(2, 6)]
    samples = seen + unseen
    # One unseen prediction is far off: seen 1.0, unseen 0.75, H = 2 * 0.75 / 1.75.
    oracle = OracleModel(samples, edit=lambda g: moved(g, dx=60.0) if g.x == 40.0 else g)
    result = evaluate_model(oracle, ListDataset(samples))
    m = result.metrics
    assert m["seen/n"] == 2 and m["unseen/n"] == 4
    assert m["seen/success"] == 1.0 and m["unseen/success"] == 0.75
    assert m["h"] == pytest.approx(2 * 0.75 / 1.75)
    report = result.report("ga++")
    assert "Seen" in report and "0.857" in report

    only_seen = evaluate_model(OracleModel(seen), ListDataset(seen))
    assert "unseen/success" not in only_seen.metrics and "h" not in only_seen.metrics
    assert only_seen.metrics["unseen/n"] == 0
    assert "no unseen samples" in only_seen.report("ga++")


def test_family_breakdown_only_when_families_exist():
    samples = [make_sample(i, meta={"family": f}) for i, f in enumerate(["name", "part", "name"])]
    oracle = OracleModel(samples, edit=lambda g: moved(g, dx=60.0) if g.x == 36.0 else g)
    result = evaluate_model(oracle, ListDataset(samples), top_k=3)
    m = result.metrics
    assert m["family/name/n"] == 2 and m["family/name/j@1"] == 0.5
    assert m["family/part/n"] == 1 and m["family/part/j@1"] == 1.0
    assert "j@3" in m and "j@5" not in m
    report = result.report("synthetic")
    assert "by instruction family" in report and "J@3" in report
    plain = evaluate_model(OracleModel(samples[:1]), ListDataset([make_sample(0)]))
    assert not any(k.startswith("family/") for k in plain.metrics)
    assert "by instruction family" not in plain.report("ocid")


def test_crog_protocol_reproduces_crog_quirks():
    standard, crog = get_protocol("standard"), get_protocol("crog")

    def scores(protocol, pred, gt):
        return score_sample([pred], [gt], None, None, protocol=protocol, j_ns=(1,))["j@1"]

    # 40 deg vs -40 deg are 80 deg apart: CROG's |a + b| term accepts them, a proper wrap does not.
    gt = Grasp(50.0, 50.0, math.radians(-40), 40.0, 20.0)
    pred = Grasp(50.0, 50.0, math.radians(40), 40.0, 20.0)
    assert not scores(standard, pred, gt) and scores(crog, pred, gt)
    # 85 vs -85 deg are 10 deg apart: both accept.
    assert scores(standard, moved(pred, dangle=math.radians(45)), moved(gt, dangle=-0.785))
    # Jaw sizes forced to 20 px and GT openings clipped to 100 px: a thin prediction on a fat GT
    # has IoU 0.2 as is, 2000 / 3000 under CROG's rules.
    gt = Grasp(100.0, 100.0, 0.0, 150.0, 50.0)
    pred = Grasp(100.0, 100.0, 0.0, 150.0, 10.0)
    assert not scores(standard, pred, gt) and scores(crog, pred, gt)
    assert crog.ground_truth([gt])[0].width == 100.0
    with pytest.raises(InputError, match="unknown evaluation protocol"):
        get_protocol("cornell")


def test_summary_and_report_of_nothing():
    assert summarize([], (1, 5)) == {"n": 0}
    report = format_report({"n": 0}, title="t", protocol=get_protocol("standard"), j_ns=(1, 5))
    assert "no sample could be evaluated" in report


def test_arguments_are_checked_and_training_mode_is_restored():
    samples = [make_sample(i) for i in range(10)]
    oracle = OracleModel(samples).train()
    result = evaluate_model(oracle, ListDataset(samples), max_samples=3, batch_size=2)
    assert oracle.training
    assert [r["index"] for r in result.per_sample] == select_indices(10, 3) == [0, 3, 6]
    with pytest.raises(InputError, match="batch_size"):
        evaluate_model(oracle, ListDataset(samples), batch_size=0)
    with pytest.raises(InputError, match="overlay_dir"):
        evaluate_model(oracle, ListDataset(samples), overlays=2)
    with pytest.raises(InputError, match="no samples"):
        evaluate_model(oracle, ListDataset([]))


def test_through_the_ocid_vlg_loader(tmp_path):
    from langgrasp.datasets.ocid_vlg import write_ocid_vlg_split

    written = [make_sample(i, angle=a) for i, a in enumerate([0.3, -1.4, 1.2])]
    write_ocid_vlg_split(tmp_path, written)
    dataset = open_dataset("ocid-vlg", tmp_path, "test", version="multiple")
    loaded = [dataset.load(i) for i in range(len(dataset))]
    result = evaluate_model(OracleModel(loaded), dataset, batch_size=2)
    assert result.metrics["j@1"] == 1.0 and result.metrics["iou"] > 0.95
    assert not any(k.startswith("family/") or k.endswith("/n") for k in result.metrics)
    far = evaluate_model(OracleModel(loaded, edit=lambda g: moved(g, dx=50.0)), dataset)
    assert far.metrics["j@1"] == 0.0


def _write_guide_sample(group_dir, stem, text, rows, mask):
    for d in ("image", "grasp_instructions", "grasp_label", "part_mask"):
        (group_dir / d).mkdir(parents=True, exist_ok=True)
    picture = np.random.default_rng(len(stem)).integers(0, 255, (H, H, 3), dtype=np.uint8)
    assert cv2.imwrite(str(group_dir / "image" / f"{stem.split('_')[0]}.jpg"), picture)
    (group_dir / "grasp_instructions" / f"{stem}.pkl").write_bytes(pickle.dumps(text))
    torch.save(torch.tensor(rows, dtype=torch.float32), group_dir / "grasp_label" / f"{stem}.pt")
    if mask is not None:
        np.save(group_dir / "part_mask" / f"{stem}.npy", mask.astype(np.uint8))


def test_through_the_grasp_anything_loader(tmp_path):
    mask = np.zeros((H, H), bool)
    mask[20:80, 10:90] = True
    # [q, x, y, w, h, theta_deg] rows (datasets.md 2.3)
    _write_guide_sample(
        tmp_path / "seen",
        "aa11_0_0",
        "grab the cup by its handle",
        [[0.9, 40, 50, 30, 15, 20]],
        mask,
    )
    _write_guide_sample(
        tmp_path / "seen", "bb22_1_0", "pick up the knife blade", [[0.9, 60, 40, 24, 12, 100]], None
    )
    _write_guide_sample(
        tmp_path / "unseen",
        "cc33_0_1",
        "hold the lamp by its base",
        [[0.9, 50, 60, 28, 14, 45]],
        mask,
    )
    dataset = open_dataset("grasp-anything", tmp_path, "all")
    loaded = [dataset.load(i) for i in range(len(dataset))]
    unseen_text = "hold the lamp by its base"
    oracle = OracleModel(
        [dataclasses.replace(s, mask=mask) for s in loaded],
        edit=lambda g: moved(g, dx=-30.0) if (g.x, g.y) == (50, 60) else g,
    )
    result = evaluate_model(oracle, dataset)
    m = result.metrics
    assert (m["seen/n"], m["unseen/n"]) == (2, 1)
    assert m["seen/success"] == 1.0 and m["unseen/success"] == 0.0 and m["h"] == 0.0
    assert m["n_mask"] == 2  # the sample without a part mask is left out of the mask metrics
    assert [r["group"] for r in result.per_sample if r["text"] == unseen_text] == ["unseen"]


@pytest.mark.filterwarnings("ignore:no pretrained CLIP weights")
def test_on_the_fly_synthetic_set_with_a_random_tiny_model(tmp_path):
    from langgrasp.datasets.synthetic import SceneConfig
    from langgrasp.datasets.synthetic_set import SyntheticDataset
    from langgrasp.detector.model import build_model

    scene = SceneConfig(height=120, width=160, fx=154.0, fy=154.0, cx=80.0, cy=60.0)
    dataset = SyntheticDataset("test", n=3, scene_config=scene)
    model = build_model("lggd-tiny", freeze_clip=True)
    result = evaluate_model(
        model, dataset, batch_size=2, overlays=2, overlay_dir=tmp_path / "ov", progress=True
    )
    assert result.metrics["n"] == 3 and len(result.per_sample) == 3
    assert {"j@1", "j@5", "iou", "pr@50", "pr@90"} <= set(result.metrics)
    assert any(k.startswith("family/") for k in result.metrics)
    assert len(result.overlays) == 2
    picture = cv2.imread(result.overlays[0])
    assert picture.shape == (120, 160, 3)
    json.dumps(result.to_dict())  # JSON-ready


@pytest.mark.filterwarnings("ignore:no pretrained CLIP weights")
def test_cli_prints_the_table_and_writes_json_and_overlays(tmp_path, capsys):
    from langgrasp.detector.checkpoint import save_checkpoint
    from langgrasp.detector.model import build_model

    checkpoint = save_checkpoint(tmp_path / "ckpt", build_model("lggd-tiny", freeze_clip=True))
    out = tmp_path / "reports" / "eval.json"
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--split", "val"]
    argv += ["--limit", "2", "--batch-size", "2", "--json", str(out), "--overlays", "1"]
    argv += ["--device", "cpu", "--protocol", "crog"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "J@1" in printed and "Pr@90" in printed and "protocol crog" in printed
    assert "by instruction family" in printed
    report = json.loads(out.read_text())
    assert report["protocol"]["name"] == "crog" and report["metrics"]["n"] == 2
    assert len(report["per_sample"]) == 2 and report["model"] == "lggd-tiny"
    overlays = sorted((tmp_path / "reports" / "eval_overlays").glob("*.png"))
    assert len(overlays) == 1 and str(overlays[0].parent) in printed


@pytest.mark.filterwarnings("ignore:no pretrained CLIP weights")
def test_cli_dataset_options_reach_the_loader(tmp_path, capsys):
    from langgrasp.detector.checkpoint import save_checkpoint
    from langgrasp.detector.model import build_model

    checkpoint = save_checkpoint(tmp_path / "ckpt", build_model("lggd-tiny", freeze_clip=True))
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--split", "test"]
    argv += ["--dataset-option", "n=2", "--dataset-option", "seed=3", "--device", "cpu"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["n"] == 2 and report["dataset_options"] == {"n": 2, "seed": 3}
    capsys.readouterr()
    # --version means nothing to Grasp-Anything++: one clear error, not a TypeError traceback
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "grasp-anything"]
    assert main([*argv, "--data-root", str(tmp_path), "--version", "unique"]) == 2
    assert "grasp-anything does not take the option(s) version" in capsys.readouterr().err


def test_cli_bad_checkpoint_path(tmp_path, capsys):
    argv = ["eval", "--checkpoint", str(tmp_path / "nope"), "--dataset", "synthetic"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "not found" in err


def test_cli_protocol_choices_match_the_registry():
    from langgrasp.evaluation.commands import PROTOCOL_NAMES
    from langgrasp.evaluation.scoring import PROTOCOLS

    assert set(PROTOCOL_NAMES) == set(PROTOCOLS)
