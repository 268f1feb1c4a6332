import pytest

from rtdetr.config import ConfigError, DecoderConfig, ModelConfig, from_dict, to_dict
from rtdetr.models import get_model_config, list_models


def test_round_trip_every_variant() -> None:
    for name in list_models():
        cfg = get_model_config(name)
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg


def test_unknown_key_is_an_error_with_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'decoder.num_layer'.*did you mean 'num_layers'"):
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
        ("train", {"cls_loss": "focal"}, "not one of"),
        ("train", {"flat_share": 1.0}, "flat_share must be within"),
        ("train", {"warmup_share": 0.0}, "warmup_share within"),
        ("train", {"time_budget_s": -5.0}, "time_budget_s must be > 0"),
        ("train", {"o2m_queries": -1}, "o2m_queries must be >= 0"),
        ("train", {"o2m_repeat": 0}, "o2m_repeat must be >= 1"),
        ("data", {"mosaic": 1.5}, r"data.mosaic is a probability"),
        ("data", {"mixup": -0.1}, r"data.mixup is a probability"),
        ("data", {"mosaic_scale": [0.8, 0.5]}, "mosaic_scale"),
    ],
)
def test_training_recipe_checks(section: str, values: dict, message: str) -> None:
    from rtdetr.config import DataConfig, TrainConfig

    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig if section == "train" else DataConfig, values, section)
