import dataclasses
import json
import math

import numpy as np
import pytest

from langgrasp.cli import main
from langgrasp.datasets.base import LayoutError, SampleError, open_dataset
from langgrasp.datasets.ocid_vlg import OCIDVLGDataset
from langgrasp.datasets.synthetic import SPLITS, SceneConfig, render_scene, split_scene_seed
from langgrasp.datasets.synthetic_set import (
    MANIFEST,
    UNRENDERABLE,
    SyntheticDataset,
    open_synthetic,
    write_synthetic_set,
)
from langgrasp.errors import InputError

SMALL = SceneConfig().resized(160, 120)
N = 3  # per split; test 1 and 2 are part-level scenes, so part instances are covered


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    manifest = write_synthetic_set(out, N, seed=0, scene_config=SMALL, progress=False)
    return out, manifest


def _same_grasps(a, b):
    assert len(a) == len(b) and a
    for p, q in zip(a, b, strict=True):
        assert abs(p.x - q.x) < 0.01 and abs(p.y - q.y) < 0.01
        assert abs(p.width - q.width) < 0.01 and abs(p.height - q.height) < 0.01
        d = (p.angle - q.angle) % math.pi
        assert min(d, math.pi - d) < 1e-4
        assert p.quality == q.quality == 1.0


def test_round_trip_through_the_ocid_loader(written):
    out, manifest = written
    assert manifest["complete"] and manifest["splits"] == list(SPLITS) and manifest["n"] == N
    families = set()
    for split in SPLITS:
        disk = OCIDVLGDataset(out, split, version="synthetic")
        fly = SyntheticDataset(split, n=N, seed=0, scene_config=SMALL)
        assert len(disk) == len(fly) == N
        for i in range(N):
            scene = render_scene(split_scene_seed(split, 0, i), SMALL, split)
            a, b = disk[i], fly[i]
            np.testing.assert_array_equal(a.rgb, scene.rgb)
            assert np.abs(a.depth - scene.depth).max() <= 0.001 + 1e-6
            np.testing.assert_array_equal(a.depth > 0, scene.depth > 0)
            np.testing.assert_array_equal(a.mask, scene.mask)
            _same_grasps(a.grasps, scene.grasps)
            assert a.text == scene.text == b.text
            assert a.target_name == b.target_name == scene.target_name
            assert a.sample_id == b.sample_id == str(scene.seed) == disk.sample_id(i)
            assert b.meta.items() <= a.meta.items()  # the loader adds OCID fields
            assert a.meta["split"] == split and a.meta["version"] == "synthetic"
            families.add(a.meta["family"])
    assert "part" in families


def test_open_dataset_reads_both_ways(written):
    out, _ = written
    disk = open_dataset("synthetic", out, "test")
    fly = open_dataset("synthetic", None, "test", n=N, scene_config=SMALL)
    assert isinstance(disk, OCIDVLGDataset) and isinstance(fly, SyntheticDataset)
    assert [disk.sample_id(i) for i in range(N)] == [fly.sample_id(i) for i in range(N)]


def test_splits_use_disjoint_seeds():
    ids = [set(SyntheticDataset(s, n=50).sample_id(i) for i in range(50)) for s in SPLITS]
    assert len(set().union(*ids)) == 50 * len(SPLITS)
    other_seed = {SyntheticDataset("train", n=50, seed=1).sample_id(i) for i in range(50)}
    assert not other_seed & set().union(*ids)


def test_on_the_fly_is_deterministic_and_seeded():
    a, b = SyntheticDataset("val", n=2, scene_config=SMALL), SyntheticDataset("val", 2, 0, SMALL)
    c = SyntheticDataset("val", n=2, seed=3, scene_config=SMALL)
    np.testing.assert_array_equal(a[1].rgb, b[1].rgb)
    assert a[1].text == b[1].text and a.sample_id(1) == b.sample_id(1)
    assert not np.array_equal(a[1].rgb, c[1].rgb)
    assert a[1].meta["intrinsics"] == SMALL.intrinsics.tolist()
    with pytest.raises(IndexError):
        a.load(2)


def test_scene_config_from_a_json_dict():
    fields = json.loads(json.dumps(dataclasses.asdict(SMALL)))  # lists instead of tuples
    ds = open_dataset("synthetic", None, "val", n=1, scene_config=fields)
    assert ds.scene_config == SMALL
    np.testing.assert_array_equal(ds[0].rgb, SyntheticDataset("val", 1, 0, SMALL)[0].rgb)


def test_unrenderable_scene_is_a_sample_error():
    tiny = SceneConfig().resized(20, 15)  # smaller than twice border_px
    with pytest.raises(SampleError, match="synthetic train scene 0") as info:
        SyntheticDataset("train", n=1, scene_config=tiny).load(0)
    assert info.value.reason == UNRENDERABLE


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "training"}, "unknown synthetic split"),
        ({"split": "train", "n": -1}, "n >= 0"),
        ({"split": "train", "seed": 1.5}, "seed >= 0"),
        ({"split": "train", "scene_config": {"hieght": 10}}, "unknown SceneConfig fields"),
        ({"split": "train", "scene_config": 3}, "SceneConfig or a dict"),
    ],
)
def test_bad_dataset_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        SyntheticDataset(**kwargs)


def test_open_synthetic_errors(tmp_path, written):
    out, _ = written
    with pytest.raises(InputError, match="unknown synthetic options"):
        open_synthetic(None, "train", size=3)
    with pytest.raises(InputError, match="do not apply"):
        open_synthetic(out, "train", n=3)
    with pytest.raises(LayoutError, match="not a `langgrasp synth` output"):
        open_synthetic(tmp_path, "train")
    partial = tmp_path / "partial"
    write_synthetic_set(partial, 1, splits=["val"], scene_config=SMALL, progress=False)
    with pytest.raises(LayoutError, match="has no 'train' split; it holds val"):
        open_synthetic(partial, "train")
    manifest = json.loads((partial / MANIFEST).read_text())
    (partial / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(LayoutError, match="incomplete"):
        open_synthetic(partial, "val")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n >= 1"),
        ({"n": 1, "seed": -2}, "seed >= 0"),
        ({"n": 1, "splits": "train"}, "list of split names"),
        ({"n": 1, "splits": ["train", "train"]}, "repeat"),
        ({"n": 1, "splits": ["dev"]}, "unknown synthetic split"),
    ],
)
def test_bad_writer_arguments(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        write_synthetic_set(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_writes_and_overwrites_its_own_output(tmp_path, capsys):
    out = tmp_path / "set"
    args = ["synth", "--out", str(out), "--seed", "2", "--size", "160x120", "--splits"]
    assert main([*args, "train,test-unseen-phrasing", "--n", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 scenes x 2 splits (train, test-unseen-phrasing), 160x120, seed 2" in printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["seed"] == 2 and manifest["scene_config"]["width"] == 160
    (out / "refer" / "multiple").mkdir()  # someone else's version survives an overwrite
    assert main([*args, "val", "--n", "1"]) == 0
    assert sorted(p.name for p in (out / "refer" / "synthetic").iterdir()) == [
        "val_expressions.json"
    ]
    assert sorted(p.name for p in (out / "synthetic").iterdir()) == ["val"]
    assert (out / "refer" / "multiple").is_dir()
    ds = open_dataset("synthetic", out, "val")
    assert len(ds) == 1 and ds[0].meta["seed"] == split_scene_seed("val", 2, 0)


def test_cli_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["synth", "--out", str(tmp_path), "--n", "1", "--size", "160x120"]) == 2
    err = capsys.readouterr().err
    assert "not empty and is not a previous `langgrasp synth` output" in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main(["synth", "--out", str(tmp_path / "notes.txt"), "--n", "1"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_rejects_a_bad_size(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--size", "big"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_full_size_scene_round_trip(tmp_path):
    write_synthetic_set(tmp_path, 1, seed=4, splits=["test-unseen-combos"], progress=False)
    a = open_dataset("synthetic", tmp_path, "test-unseen-combos")[0]
    scene = render_scene(split_scene_seed("test-unseen-combos", 4, 0), split="test-unseen-combos")
    assert a.rgb.shape == (480, 640, 3)
    np.testing.assert_array_equal(a.rgb, scene.rgb)
    np.testing.assert_array_equal(a.mask, scene.mask)
    assert np.abs(a.depth - scene.depth).max() <= 0.001 + 1e-6
    _same_grasps(a.grasps, scene.grasps)
