"""Every registered variant against the frozen key lists of the official code (names and shapes of each
official variant's state dict, built from the official configs with 80 classes at 640x640). A state dict built
from our own code is no proof of compatibility; these lists are."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from rtdetr.convert import load_model
from rtdetr.convert.official import official_keys_to_ours
from rtdetr.models import create_model, list_models

_REF = Path(os.environ.get("RTDETR_SHARED_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference"))
# Variants without a list of their own have the keys of another: discrete sampling adds no parameter (the r18
# list proves it below); the v1 HGNetv2 models (Paddle only, no official PyTorch v1 code) are the v2 HGNetv2
# models with the v1 spellings and without the v2 buffers.
_V2_ONLY = re.compile(r"(^decoder\.(anchors|valid_mask)$)|(\.num_points_scale$)")
_V1_SPELLING = ((".input_proj.{}.conv.", ".input_proj.{}.0."), (".input_proj.{}.norm.", ".input_proj.{}.1."))


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, tuple[int, ...]]]:
    path = _REF / "official_state_dict_keys.json"
    if not path.is_file():
        pytest.skip(f"official key lists not found at {path} (set RTDETR_SHARED_REFERENCE)")
    variants = json.loads(path.read_text())["variants"]
    return {name: {k: tuple(v) for k, v in keys.items()} for name, keys in variants.items()}


def _as_v1(keys: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    out = {}
    for k, shape in keys.items():
        if _V2_ONLY.search(k):
            continue
        k = re.sub(r"^encoder\.input_proj\.(\d+)\.conv\.", r"encoder.input_proj.\1.0.", k)
        k = re.sub(r"^encoder\.input_proj\.(\d+)\.norm\.", r"encoder.input_proj.\1.1.", k)
        k = k.replace("decoder.enc_output.proj.", "decoder.enc_output.0.").replace(
            "decoder.enc_output.norm.", "decoder.enc_output.1."
        )
        out[k] = shape
    return out


def _expected(name: str, official: dict[str, dict[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    if name in official:
        return official[name]
    if name.endswith("_dsp"):
        return official[name.removesuffix("_dsp")]
    if name.startswith("rtdetr_hgnetv2"):
        return _as_v1(official[name.replace("rtdetr_", "rtdetrv2_")])
    raise AssertionError(f"no official key list covers {name}")


def test_lists_cover_every_published_official_variant(official: dict) -> None:
    assert set(official) <= set(list_models())
    assert official["rtdetrv2_r18vd_dsp"] == official["rtdetrv2_r18vd"]  # discrete sampling: same tensors


@pytest.mark.parametrize("name", list_models())
def test_variant_state_dict_equals_official_keys_and_shapes(name: str, official: dict) -> None:
    ours = {k: tuple(v.shape) for k, v in create_model(name, num_classes=80).state_dict().items()}
    expected = official_keys_to_ours(_expected(name, official), set(ours))  # the documented respelling only
    assert sorted(set(expected) - set(ours)) == [], "official keys we lack"
    assert sorted(set(ours) - set(expected)) == [], "keys the official model lacks"
    assert {k: (expected[k], s) for k, s in ours.items() if expected[k] != s} == {}, "shape differs"


@pytest.mark.parametrize("name", ["rtdetrv2_hgnetv2_l", "rtdetrv2_r18vd", "rtdetr_r50vd_m"])
def test_official_state_dict_loads_strictly(name: str, official: dict, tmp_path: Path) -> None:
    """A checkpoint with exactly the official names and shapes (release layout) loads with nothing left out,
    every tensor where its name says (HGNetv2 stems as ``conv.1.weight``)."""
    torch.manual_seed(1)
    state = {k: torch.randn(s) if s else torch.tensor(3) for k, s in official[name].items()}
    state = {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}
    for k in [k for k in state if k.endswith("num_points_scale")]:  # 4 points on each of 3 levels: 1/4 each
        state[k] = torch.full_like(state[k], 3 / state[k].numel())
    if "decoder.valid_mask" in state:
        state.pop("decoder.valid_mask"), state.pop("decoder.anchors")  # regenerable; a file may omit them
    path = tmp_path / f"{name}.pth"
    torch.save({"ema": {"module": state, "updates": 1}}, path)
    model = load_model(path)
    assert model.config.name == name and model.config.num_classes == 80
    ours = model.state_dict()
    renamed = official_keys_to_ours(state, set(ours))
    for k, v in renamed.items():
        if not k.endswith(("num_points_scale", "num_batches_tracked")):
            assert torch.equal(ours[k], v), k
    if "hgnetv2" in name:
        assert torch.equal(ours["backbone.stem.stem2a.conv.weight"], state["backbone.stem.stem2a.conv.1.weight"])
    from rtdetr.cli import main

    assert main(["convert", str(path), str(tmp_path / "ours.pth")]) == 0  # writes our format, config embedded
    again = load_model(tmp_path / "ours.pth")
    assert again.config == model.config
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in ours.items())
