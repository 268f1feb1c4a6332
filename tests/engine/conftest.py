from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr.config import RunConfig
from rtdetr.data.synthetic import make_synthetic_coco
from rtdetr.recipe import load_recipe

TINY = [
    "model.name=rtdetr_r18vd",
    "model.eval_spatial_size=[64,64]",
    "model.encoder.hidden_dim=32",
    "model.encoder.dim_feedforward=64",
    "model.encoder.nhead=4",
    "model.decoder.feat_channels=[32,32,32]",
    "model.decoder.hidden_dim=32",
    "model.decoder.nhead=4",
    "model.decoder.dim_feedforward=64",
    "model.decoder.num_queries=10",
    "model.decoder.num_layers=2",
    "model.decoder.num_denoising=10",
    "data.image_size=[64,64]",
    "data.workers=0",
    "data.multi_scale=false",
    "train.batch_size=2",
    "train.warmup_iters=2",
    "train.ema_warmups=2",
    "train.lr=1e-3",
    "train.backbone_lr=1e-3",
    "train.no_aug_epochs=0",
    "train.recipe_defaults=official",  # tests of the fast_small defaults set them themselves
]


#: The same tiny model as keyword overrides for create_model / RTDETR(...).
TINY_MODEL: dict = {
    "eval_spatial_size": [64, 64],
    "encoder": {"hidden_dim": 32, "dim_feedforward": 64, "nhead": 4},
    "decoder": {
        "feat_channels": [32, 32, 32],
        "hidden_dim": 32,
        "nhead": 4,
        "dim_feedforward": 64,
        "num_queries": 10,
        "num_layers": 2,
        "num_denoising": 10,
    },
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_synthetic_coco(tmp_path_factory.mktemp("synthetic"), num_train=8, num_val=4, size=64, seed=1)


def tiny_config(data: dict[str, Path], out: Path, *extra: str) -> RunConfig:
    return load_recipe(
        None, [*TINY, f"data.train={data['train']}", f"data.val={data['val']}", f"train.output_dir={out}", *extra]
    )
