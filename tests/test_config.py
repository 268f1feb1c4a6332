import re

import pytest

from rtdetr.config import ConfigError, DecoderConfig, ModelConfig, from_dict, to_dict
from rtdetr.models import get_model_config, list_models


def test_round_trip_every_variant() -> None:
    for name in list_models():
        cfg = get_model_config(name)
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg


def test_unknown_key_is_an_error_with_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'decoder.num_layer'.*did you mean 'decoder.num_layers'"):
        from_dict(ModelConfig, {"decoder": {"num_layer": 3}})


def test_wrong_types_are_errors_naming_the_path() -> None:
    with pytest.raises(ConfigError, match="num_classes: expected an integer"):
        from_dict(ModelConfig, {"num_classes": "80"})
    with pytest.raises(ConfigError, match=r"decoder.cross_attn_method: 'nearest' is not one of"):
        from_dict(ModelConfig, {"decoder": {"cross_attn_method": "nearest"}})
    with pytest.raises(ConfigError, match="learn_query_content: expected true/false"):
        from_dict(DecoderConfig, {"learn_query_content": 1})
    with pytest.raises(ConfigError, match=r"eval_spatial_size: expected 2 items"):
        from_dict(ModelConfig, {"eval_spatial_size": [640]})


def test_auto_means_none_in_optional_settings() -> None:
    """``train.amp=auto`` / ``data.augment=auto``: the word every log and docstring uses for None (the machine or
    the recipe decides); a text field keeps the text, and a bool-only field still refuses it."""
    from rtdetr.config import RunConfig
    from rtdetr.config_io import apply_dotted_overrides

    def run(*overrides: str) -> RunConfig:
        return from_dict(RunConfig, apply_dotted_overrides({}, list(overrides), RunConfig))

    cfg = run("train.amp=true", "data.augment=false")
    assert (cfg.train.amp, cfg.data.augment) == (True, False)
    cfg = run("train.amp=auto", "data.augment=auto", "train.lr=auto")
    assert (cfg.train.amp, cfg.data.augment, cfg.train.lr) == (None, None, None)
    assert run("train.amp_dtype=auto").train.amp_dtype == "auto"  # a Literal with "auto" keeps it
    with pytest.raises(ConfigError, match="train.amp: expected true/false, got 'maybe'"):
        run("train.amp=maybe")
    with pytest.raises(ConfigError, match="learn_query_content: expected true/false"):
        from_dict(DecoderConfig, {"learn_query_content": "auto"})  # not optional: auto is not a value


def test_lists_become_tuples_and_scalars_promote() -> None:
    cfg = from_dict(ModelConfig, {"eval_spatial_size": [480, 640], "decoder": {"num_points": [2, 3, 4]}})
    assert cfg.eval_spatial_size == (480, 640)
    assert cfg.decoder.num_points == (2, 3, 4)
    assert from_dict(DecoderConfig, {"dropout": 0}).dropout == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_classes": 0}, "num_classes must be >= 1"),
        ({"decoder": {"eval_idx": 6}}, "eval_idx 6 out of range"),
        ({"decoder": {"num_points": [4, 4]}}, "must give >= 1 point for each of 3 levels"),
        ({"encoder": {"hidden_dim": 384}}, "feat_channels must repeat encoder.hidden_dim"),
    ],
)
def test_cross_field_checks(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_model_config("rtdetr_r50vd", **overrides)


def test_overrides_merge_into_variant() -> None:
    cfg = get_model_config("rtdetr_r18vd", num_classes=3, decoder={"num_layers": 2})
    assert cfg.num_classes == 3 and cfg.decoder.num_layers == 2
    assert cfg.encoder.expansion == 0.5  # untouched variant settings survive


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("train", {"schedule_over": "time"}, "needs time_budget_s"),
        ("train", {"schedule_over": "time", "time_budget_s": 60.0, "schedule": "step"}, "epoch milestones"),
        ("train", {"no_aug_fraction": 1.0}, r"within \[0, 1\)"),
        ("train", {"eval_every_s": 0.0}, "eval_every_s must be > 0"),
        ("train", {"save_every_s": -1.0}, "save_every_s must be > 0"),
        ("train", {"cls_loss": "focal"}, "not one of"),
        ("train", {"flat_share": 1.0}, "flat_share must be within"),
        ("train", {"warmup_share": 0.0}, "warmup_share within"),
        ("train", {"time_budget_s": -5.0}, "time_budget_s must be > 0"),
        ("train", {"o2m_queries": -1}, "o2m_queries must be >= 0"),
        ("train", {"o2m_repeat": 0}, "o2m_repeat must be >= 1"),
        ("train", {"no_aug_epochs": -1}, "no_aug_epochs must be >= 0"),
        ("data", {"mosaic": 1.5}, r"data: mosaic is a probability"),
        ("data", {"mixup": -0.1}, r"data: mixup is a probability"),
        ("data", {"mosaic_scale": [0.8, 0.5]}, "mosaic_scale"),
        # each of these was accepted: a run on a meaningless value, or a library's words later
        ("train", {"batch_size": 0}, "batch_size"),  # 'batch_size or 1' let 0 by; torch's DataLoader then said so
        ("train", {"lr": float("nan")}, r"train.lr: expected a finite number, got nan"),  # torch: 'Invalid lr'
        ("train", {"weight_decay": "inf"}, "train.weight_decay: expected a finite number"),  # diverged at step 21
        ("train", {"weight_decay": -1e-4}, "weight_decay must be >= 0"),
        ("train", {"ema_decay": 2.0}, r"ema_decay must be within \[0, 1\)"),  # trained on, an EMA that explodes
        ("train", {"betas": [0.9, 1.5]}, r"betas within \[0, 1\)"),
        ("train", {"log_interval": 0}, "log_interval must be >= 1"),
        ("train", {"eval_decoder_depth": 0}, "eval_decoder_depth must be >= 1"),
        ("data", {"image_size": [0, 0]}, r"data: image_size \[0, 0\] must be >= 32"),
        ("data", {"workers": -1}, "data: workers must be >= 0"),
    ],
)
def test_training_recipe_checks(section: str, values: dict, message: str) -> None:
    from rtdetr.config import DataConfig, TrainConfig

    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig if section == "train" else DataConfig, values, section)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decoder": {"num_layers": 0}}, "decoder.num_layers must be >= 1"),  # was 'eval_idx -1 out of range'
        ({"decoder": {"nhead": 0}}, "decoder.nhead must be >= 1"),  # was ZeroDivisionError
        ({"decoder": {"num_queries": 0}}, "decoder.num_queries must be >= 1"),
        ({"encoder": {"num_encoder_layers": -1}}, "encoder.num_encoder_layers must be >= 0"),
        ({"decoder": {"label_noise_ratio": 1.5}}, "label_noise_ratio within"),
        ({"encoder": {"depth_mult": 0.0}}, "depth_mult"),
    ],
)
def test_model_config_checks(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_model_config("rtdetr_r18vd", **overrides)


def test_unknown_keys_point_to_where_the_setting_lives() -> None:
    from rtdetr.recipe import run_config_from_dict

    for data, hint in [
        ({"model": {"num_queries": 10}}, "'model.num_queries' (did you mean 'model.decoder.num_queries'?)"),
        ({"model": {"hidden_dim": 64}}, "(did you mean 'model.encoder.hidden_dim' or 'model.decoder.hidden_dim'?)"),
        ({"model": {"decoder": {"num_layer": 3}}}, "(did you mean 'model.decoder.num_layers'?)"),
        ({"train": {"clip_max_norm": 0.1}}, "(did you mean 'train.clip_grad'?)"),  # the official recipe's name
        ({"train": {"epoches": 3}}, "(did you mean 'train.epochs'?)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(hint)):
            run_config_from_dict(data)
