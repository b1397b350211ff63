from dataclasses import replace

import numpy as np
import pytest
import torch

from langgrasp.datasets.base import GroundingDataset, SampleError, list_datasets
from langgrasp.datasets.synthetic import SceneConfig
from langgrasp.datasets.synthetic_set import SyntheticDataset
from langgrasp.detector.config import get_config
from langgrasp.detector.grasp import encode_grasps
from langgrasp.detector.model import tokenize
from langgrasp.detector.preprocess import Letterbox, prepare_image
from langgrasp.errors import InputError
from langgrasp.training.commands import DATASETS
from langgrasp.training.data import (
    Example,
    ResumableSampler,
    Skipped,
    TrainingDataset,
    collate,
    open_split,
    target_encoding,
)

SCENE = SceneConfig().resized(80, 60)
MODEL = replace(get_config("lggd-tiny"), input_size=64)


class Broken(GroundingDataset):
    """Synthetic samples; some indices raise SampleError, one has no mask, one a wrong mask."""

    name = "broken"

    def __init__(self, n=6):
        self.inner = SyntheticDataset("train", n=n, scene_config=SCENE)

    def __len__(self):
        return len(self.inner)

    def sample_id(self, index):
        return f"s{index}"

    def load(self, index):
        if index == 1:
            raise SampleError("s1: rgb/1.png is missing")
        sample = self.inner.load(index)
        if index == 2:
            return replace(sample, mask=None)
        if index == 3:
            return replace(sample, mask=np.zeros((5, 5), bool))
        return sample


def test_example_uses_the_shared_preprocessing():
    source = SyntheticDataset("train", n=2, scene_config=SCENE)
    example = TrainingDataset(source, MODEL)[0]
    sample = source.load(0)
    assert isinstance(example, Example)
    image, _ = prepare_image(sample.rgb, MODEL.input_size)
    assert torch.equal(example.image, torch.from_numpy(image))
    assert torch.equal(example.tokens, tokenize(sample.text, MODEL.context_length)[0])
    box = Letterbox.fit(60, 80, MODEL.output_size)
    assert torch.equal(example.mask[0], torch.from_numpy(box.mask(sample.mask)).float())
    maps = encode_grasps(
        box.grasps_to_model(sample.grasps), (MODEL.output_size,) * 2, target_encoding(MODEL)
    )
    assert torch.equal(example.grasp_maps, torch.from_numpy(maps))
    assert example.mask.shape == (1, 64, 64) and example.grasp_maps.shape == (4, 64, 64)
    assert example.grasp_maps[0].max() > 0  # the target's grasps are in the maps


def test_broken_samples_become_skip_records():
    data = TrainingDataset(Broken(), MODEL)
    items = [data[i] for i in range(5)]
    skipped = [x for x in items if isinstance(x, Skipped)]
    assert [s.index for s in skipped] == [1, 2, 3]
    assert "rgb/1.png is missing" in skipped[0].reason
    assert "no target mask" in skipped[1].reason
    assert "mask" in skipped[2].reason and skipped[2].sample_id == "s3"
    batch = collate(items)
    assert len(batch) == 2 and batch.sample_ids == [str(x.sample_id) for x in items if
                                                      isinstance(x, Example)]  # fmt: skip
    assert batch.images.shape == (2, 3, 64, 64) and batch.tokens.shape == (2, 32)
    assert batch.masks.shape == (2, 1, 64, 64) and batch.grasp_maps.shape == (2, 4, 64, 64)
    assert [s.index for s in batch.skipped] == [1, 2, 3]


def test_a_batch_of_only_broken_samples_is_empty():
    data = TrainingDataset(Broken(), MODEL)
    batch = collate([data[1], data[2]])
    assert len(batch) == 0 and len(batch.skipped) == 2


def test_sampler_partitions_and_resumes_mid_epoch():
    data = list(range(10))
    full = list(ResumableSampler(data, 1, 0, seed=5))
    assert sorted(full) == data
    parts = [ResumableSampler(data, 2, r, seed=5) for r in range(2)]
    assert sorted(list(parts[0]) + list(parts[1])) == data
    resumed = ResumableSampler(data, 1, 0, seed=5)
    resumed.start_epoch(0, order=resumed.epoch_order(0), start=4)
    assert list(resumed) == full[4:] and len(resumed) == 6
    other = ResumableSampler(data, 1, 0, seed=5)
    other.start_epoch(1)
    assert list(other) != full  # a new order each epoch


def test_sampler_refuses_an_order_of_another_dataset():
    sampler = ResumableSampler(list(range(4)), 1, 0)
    with pytest.raises(InputError, match="same dataset"):
        sampler.start_epoch(0, order=torch.arange(5))


def test_cli_dataset_choices_match_the_registry():
    assert sorted(DATASETS) == list_datasets()


@pytest.mark.parametrize(
    ("dataset", "words"),
    [
        ("ocid-vlg", ["gtziafas/OCID-VLG", "Google Drive", "OCID_Grasp", "refer/", "--data-root"]),
        ("grasp-anything", ["airvlab/Grasp-Anything", "Hugging Face", "--data-root", "DATA_ROOT"]),
    ],
)
def test_missing_data_root_says_where_to_get_the_data(dataset, words):
    with pytest.raises(InputError) as err:
        open_split(dataset, None, "train")
    for word in words:
        assert word in str(err.value)


def test_data_root_that_is_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        open_split("ocid-vlg", str(tmp_path / "nope"), "train")
    with pytest.raises(InputError, match="unknown dataset"):
        open_split("cornell", None, "train")
