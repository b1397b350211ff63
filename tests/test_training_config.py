import json

import pytest

from langgrasp.errors import InputError
from langgrasp.training.config import (
    AugmentConfig,
    TrainConfig,
    apply_overrides,
    default_config,
)


def test_defaults_are_the_papers_recipe():
    config = default_config("lggd-rn50")
    assert (config.lr, config.weight_decay, config.epochs, config.batch_size) == (
        1e-4,
        0.06,
        50,
        72,
    )
    assert (config.warmup_steps, config.warmup_start_lr) == (2000, 1e-5)
    assert config == TrainConfig(model="lggd-rn50")


def test_tiny_recipe_is_lighter():
    tiny = default_config("lggd-tiny")
    assert tiny.model == "lggd-tiny"
    assert tiny.batch_size < 72 and tiny.epochs < 50 and tiny.warmup_steps < 2000


def test_overrides_parse_by_field_type():
    config = apply_overrides(
        default_config("lggd-tiny"),
        [
            "lr=3e-4",
            "epochs=7",
            "augment.vflip=0.5",
            "augment.enabled=false",
            "betas=0.9,0.95",
            "val_max_samples=none",
            "model_options.fusion=concat",
            "model_options.input_size=64",
            "dataset_options.version=multiple",
            "loss.coarse_weight=0.25",
            "freeze_clip=yes",
        ],
    )
    assert config.lr == 3e-4 and config.epochs == 7
    assert config.augment == AugmentConfig(vflip=0.5, enabled=False, rotation_deg=10.0)
    assert config.betas == (0.9, 0.95)
    assert config.val_max_samples is None
    assert config.model_options == {"fusion": "concat", "input_size": 64}
    assert config.dataset_options == {"version": "multiple"}
    assert config.loss.coarse_weight == 0.25
    assert config.freeze_clip is True


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr", "KEY=VALUE"),
        ("learning_rate=1", "unknown setting 'learning_rate'; known keys here: dataset"),
        ("augment.flip=1", "known keys here: enabled, hflip"),
        ("epochs=two", "cannot read epochs='two' as int"),
        ("epochs=0", "epochs must be an integer >= 1"),
        ("augment=1", "is a group"),
        ("lr.x=1", "has no sub-keys"),
        ("augment.hflip=2", "augment.hflip must be a number in [0.0, 1.0]"),
        ("precision=fp8", "precision must be one of auto, fp32, bf16, fp16"),
        ("augment.text_policy=drop", "text_policy must be one of swap, no-flip"),
        ("deterministic=maybe", "expected true or false"),
    ],
)
def test_bad_overrides_say_what_is_wrong(item, message):
    with pytest.raises(InputError) as err:
        apply_overrides(default_config("lggd-tiny"), [item])
    assert message in str(err.value)


def test_config_round_trips_through_json():
    config = apply_overrides(default_config("lggd-tiny"), ["augment.hue=0.1", "betas=0.8,0.9"])
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_from_dict_names_unknown_keys():
    with pytest.raises(InputError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "lerning_rate": 1})
