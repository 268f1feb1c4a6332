"""What a run starts from: ``init_from`` loaded, or a discrete-sampling (``*_dsp``) model from scratch warned about,
because its sampling offsets cannot learn."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from rtdetr.convert import save_model
from rtdetr.engine.warmstart import warm_start
from rtdetr.models import build_model, create_model
from rtdetr.recipe import load_recipe
from tests.engine.conftest import TINY, TINY_MODEL


def _config(name: str, *extra: str):  # noqa: ANN202
    return load_recipe(None, [*TINY, f"model.name={name}", "data.train=unused", *extra])


def test_a_dsp_model_from_scratch_is_warned_that_its_offsets_cannot_learn(tmp_path: Path) -> None:
    cfg = _config("rtdetrv2_r18vd_dsp")
    model = build_model(cfg.model)
    # the warning's claim: a training step gives the sampling offsets no gradient (they stay as initialised)
    out = model(
        torch.rand(2, 3, 64, 64), [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}] * 2
    )
    (out["pred_logits"].sum() + out["pred_boxes"].sum()).backward()
    offsets = [m.sampling_offsets for m in model.modules() if hasattr(m, "sampling_offsets")]
    assert offsets and all(o.weight.grad is None and not o.weight.requires_grad for o in offsets)
    assert any(m.attention_weights.weight.grad is not None for m in model.modules() if hasattr(m, "attention_weights"))

    [(level, message)] = warm_start(model, cfg)
    assert level == logging.WARNING and "rtdetrv2_r18vd_dsp samples at rounded locations" in message
    assert "train rtdetrv2_r18vd, then this one with --init-from its best.pth" in message
    # a discrete model under another name says which setting to change instead
    other = _config("rtdetrv2_r18vd", "model.decoder.cross_attn_method=discrete")
    assert "train rtdetrv2_r18vd with decoder.cross_attn_method=default" in warm_start(model, other)[0][1]

    # started from a trained grid_sample model, as the official *_dsp recipes are: what loaded is said, no warning
    base = create_model("rtdetrv2_r18vd", num_classes=cfg.model.num_classes, **TINY_MODEL)
    ckpt = save_model(base, tmp_path / "base.pth")
    [(level, message)] = warm_start(model, replace(cfg, init_from=str(ckpt)))
    assert level == logging.INFO and "samples at rounded" not in message
    assert torch.equal(offsets[0].weight, base.decoder.decoder.layers[0].cross_attn.sampling_offsets.weight)
    # nothing to say for grid_sample models or a resumed run (its first start said it)
    assert warm_start(build_model(_config("rtdetrv2_r18vd").model), _config("rtdetrv2_r18vd")) == []
    assert warm_start(model, replace(cfg, resume=str(tmp_path / "last.pth"))) == []
