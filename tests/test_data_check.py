import json
import pickle
from collections import Counter

import numpy as np
import pytest
from test_grasp_anything import (  # fixture builders (tests/ is on sys.path under pytest)
    GUIDE_TREE,
    RELEASE_TREE,
    broken_release_samples,
    make_release,
    sha,
    write_sample,
)

from langgrasp.cli import main
from langgrasp.datasets.base import (
    GroundingDataset,
    GroundingSample,
    SampleError,
    list_datasets,
    open_dataset,
)
from langgrasp.datasets.check import DATASETS, DEFAULT_SPLITS, CheckReport, check_dataset
from langgrasp.detector.grasp import Grasp


@pytest.fixture
def clean_root(tmp_path):
    root = make_release(tmp_path / "clean")
    for i in range(3):
        write_sample(root, f"{sha(str(i))}_{i}_{i + 10}")
    return root


@pytest.fixture
def broken_root(tmp_path):
    root = make_release(tmp_path / "broken")
    broken = broken_release_samples(root, tmp_path / "pwned")
    for i in range(2):
        write_sample(root, f"{sha('ok' + str(i))}_0_{i}")
    return root, broken


def test_registry_names_match_cli_choices():
    assert sorted(DATASETS) == list_datasets()
    assert set(DEFAULT_SPLITS) == set(DATASETS)


def test_check_dataset_collects_every_broken_sample(broken_root):
    root, broken = broken_root
    ds = open_dataset("grasp-anything", root, "all")
    report = check_dataset(ds, progress=False)
    assert isinstance(report, CheckReport)
    assert report.n_total == report.n_checked == len(broken) + 2
    assert report.n_ok == 2 and report.n_grasps == 4 and report.n_masks == 2
    assert dict(report.failures).keys() == broken.keys()
    for sample_id, reason in report.failures:
        assert reason.startswith(broken[sample_id] + ": ")  # message without the id prefix
    assert report.counts == dict(Counter(broken.values()))
    assert not report.ok
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is False and len(as_json["failures"]) == len(broken)


def test_check_dataset_limit_and_clean(clean_root):
    ds = open_dataset("grasp-anything", clean_root, "all")
    report = check_dataset(ds, progress=False, limit=2)
    assert (report.n_total, report.n_checked, report.n_ok, report.failures) == (3, 2, 2, [])
    assert report.ok


class _Flaky(GroundingDataset):
    """Samples 1 and 3 fail with messages in the OCID-VLG loader's style (no reason attribute)."""

    name = "flaky"

    def __len__(self):
        return 4

    def sample_id(self, index):
        return str(index)

    def load(self, index):
        if index % 2:
            raise SampleError(
                f"multiple/test sample {index} (row {index}): missing rgb file /d/seq{index}/rgb/"
                f"{index}.png"
            )
        return GroundingSample(
            rgb=np.zeros((4, 4, 3), np.uint8),
            depth=None,
            mask=None,
            grasps=[Grasp(1, 1, 0, 2, 1)],
            text="t",
            target_name="x",
            sample_id=str(index),
        )


def test_reason_kind_from_messages_without_reason_attribute():
    report = check_dataset(_Flaky(), progress=False)
    assert report.n_ok == 2 and [sid for sid, _ in report.failures] == ["1", "3"]
    assert report.counts == {"missing rgb file": 2}


# ----------------------------------------------------------------------------------- CLI


def test_data_group_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "check", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--data-root" in out and "grasp-anything" in out
    with pytest.raises(SystemExit) as info:
        main(["data"])  # the group needs a subcommand
    assert info.value.code == 2


def test_cli_clean_exits_0(clean_root, capsys):
    assert (
        main(["data", "check", "--dataset", "grasp-anything", "--data-root", str(clean_root)]) == 0
    )
    captured = capsys.readouterr()
    assert "grasp-anything split 'all' (release layout): 3 samples" in captured.out
    assert "3 of 3 load (6 grasps, 3 with a target mask); 0 fail" in captured.out
    assert "checking grasp-anything" in captured.err  # tqdm bar on stderr


def test_cli_broken_exits_1_and_lists_reasons(broken_root, capsys):
    root, broken = broken_root
    args = ["data", "check", "--dataset", "grasp-anything", "--data-root", str(root)]
    assert main([*args, "--max-listed", "3"]) == 1
    out = capsys.readouterr().out
    assert f"2 of {len(broken) + 2} load" in out and f"{len(broken)} fail" in out
    listed = [line for line in out.splitlines() if line.startswith("  ") and ": " in line]
    failing = [line for line in listed if line.split(":")[0].strip() in broken]
    assert len(failing) == 3
    for line in failing:
        sample_id, reason = line.strip().split(": ", 1)
        assert reason.startswith(broken[sample_id])
    assert f"... and {len(broken) - 3} more" in out
    for reason in set(broken.values()):
        assert f"  {reason}\n" in out  # the per-reason counts

    assert main([*args, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["layout"] == "release"
    assert {sid for sid, _ in result["failures"]} == set(broken)
    assert result["counts"] == dict(Counter(broken.values()))


def test_cli_wrong_layout_exits_1_with_expected_tree(tmp_path, capsys):
    (tmp_path / "image").mkdir()
    args = ["data", "check", "--dataset", "grasp-anything", "--data-root", str(tmp_path)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "wrong folder layout" in captured.out
    assert GUIDE_TREE in captured.out and RELEASE_TREE in captured.out
    assert "release layout: grasp_instructions/, grasp_label_positive/, part_mask/" in captured.out
    assert "Traceback" not in captured.out + captured.err
    assert main([*args, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and "grasp_label_positive" in result["layout_error"]


def test_cli_split_options_and_misplaced_flags(tmp_path, capsys):
    root = make_release(tmp_path / "r")
    write_sample(root, f"{sha('a')}_1_0")
    write_sample(root, f"{sha('a')}_12_0")
    ids = tmp_path / "unseen.obj"
    ids.write_bytes(pickle.dumps([f"{sha('a')}_12"]))
    base = ["data", "check", "--dataset", "grasp-anything", "--data-root", str(root)]
    assert main([*base, "--split", "unseen", "--split-file", str(ids), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_total"] == 1 and result["split"] == "unseen"
    assert main([*base, "--version", "multiple"]) == 2
    assert "--version applies to --dataset ocid-vlg" in capsys.readouterr().err
    assert main([*base, "--split", "nope"]) == 2  # a usage error, not a broken dataset
    assert "unknown split 'nope'" in capsys.readouterr().err


# ------------------------------------------------- OCID-VLG format via `langgrasp synth` data


@pytest.fixture
def synth_root(tmp_path):
    from langgrasp.datasets.synthetic_set import write_synthetic_set

    out = tmp_path / "synth"
    write_synthetic_set(out, n=3, seed=0, splits=["test"], progress=False)
    return out


def _ocid_args(root, dataset):
    args = ["data", "check", "--dataset", dataset, "--data-root", str(root), "--split", "test"]
    return [*args, "--version", "synthetic"] if dataset == "ocid-vlg" else args


@pytest.mark.parametrize("dataset", ["synthetic", "ocid-vlg"])
def test_cli_synthetic_set_clean_then_missing_rgb(synth_root, dataset, capsys):
    assert main(_ocid_args(synth_root, dataset)) == 0
    out = capsys.readouterr().out
    assert "3 of 3 load" in out and "0 fail" in out
    rgb = sorted((synth_root / "synthetic" / "test" / "rgb").glob("*.png"))
    rgb[1].unlink()
    assert main([*_ocid_args(synth_root, dataset), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["n_ok"] == 2 and result["counts"] == {"missing rgb file": 1}
    ((_, reason),) = result["failures"]
    assert rgb[1].name in reason


def test_cli_synthetic_set_corrupt_json(synth_root, capsys):
    expressions = synth_root / "refer" / "synthetic" / "test_expressions.json"
    rows = json.loads(expressions.read_text())["data"]
    del rows[0]["question"]  # one broken row: a sample error
    expressions.write_text(json.dumps({"data": rows}))
    assert main(_ocid_args(synth_root, "synthetic")) == 1
    out = capsys.readouterr().out
    assert "2 of 3 load" in out and "row lacks key(s) question" in out
    expressions.write_text('{"data": [')  # the whole file unreadable: a layout error
    for dataset in ("synthetic", "ocid-vlg"):
        assert main(_ocid_args(synth_root, dataset)) == 1
        captured = capsys.readouterr()
        assert "wrong folder layout" in captured.out and "as JSON" in captured.out
        assert "Traceback" not in captured.out + captured.err


def test_cli_ocid_vlg_wrong_root(tmp_path, capsys):
    assert main(["data", "check", "--dataset", "ocid-vlg", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "wrong folder layout" in out and "refer/" in out


def test_cli_dataset_option_reaches_the_loader(synth_root, capsys):
    args = _ocid_args(synth_root, "ocid-vlg")
    assert main([*args, "--dataset-option", "opening_edge=p1p2"]) == 0
    assert main([*args, "--dataset-option", "opening_edge=sideways"]) == 2
    assert "opening_edge" in capsys.readouterr().err
