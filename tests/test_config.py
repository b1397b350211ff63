import json

import pytest

from langgrasp.detector.config import LGGDConfig, get_config, list_models
from langgrasp.errors import InputError, UnknownModelError


def test_registry_lists_both_configs():
    assert {"lggd-rn50", "lggd-tiny"} <= set(list_models())
    paper = get_config("lggd-rn50")
    assert (paper.input_size, paper.context_length, paper.clip.pretrained) == (
        224,
        77,
        ("RN50", "openai"),
    )


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="known models: lggd-rn50, lggd-tiny"):
        get_config("lggd-vit")


@pytest.mark.parametrize("name", ["lggd-rn50", "lggd-tiny"])
def test_json_round_trip(name):
    config = get_config(name)
    assert LGGDConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_bad_config_values_are_named():
    data = get_config("lggd-tiny").to_dict()
    with pytest.raises(InputError, match="unknown LGGDConfig fields"):
        LGGDConfig.from_dict({**data, "dropout": 0.1})
    with pytest.raises(InputError, match="multiple of 32"):
        LGGDConfig.from_dict({**data, "input_size": 100})
    with pytest.raises(InputError, match="ldch_form"):
        LGGDConfig.from_dict({**data, "ldch_form": "dynamic"})


def test_fusion_switch_round_trips_and_is_validated():
    import dataclasses

    tiny = get_config("lggd-tiny")
    assert all(get_config(name).fusion == "dcvlf" for name in list_models())
    concat = dataclasses.replace(tiny, fusion="concat")
    data = json.loads(json.dumps(concat.to_dict()))
    assert data["fusion"] == "concat" and LGGDConfig.from_dict(data) == concat
    old = tiny.to_dict()
    del old["fusion"]  # checkpoints written before the switch existed
    assert LGGDConfig.from_dict(old) == tiny
    with pytest.raises(InputError, match="fusion must be one of 'dcvlf', 'concat'"):
        LGGDConfig.from_dict({**tiny.to_dict(), "fusion": "film"})
