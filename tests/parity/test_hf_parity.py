"""Adversarial parity against HF transformers' RT-DETR and RT-DETRv2 (the in-repo oracle), litgpt style: build
the reference with random weights from a local config, convert its weights with our converter, compare outputs.
Nothing is downloaded.

Default initialisation hides bugs (zero-initialised heads, sampling points that never leave the reference box),
so every parameter and buffer is perturbed, sampling offsets and reference boxes are made large enough that the
sampling points cross all four image borders (asserted), and the encoder scores are spread so that the top-k
query selection has no near-tie at its cut (asserted: a tie there is not a model property). Predictions are
compared after pairing queries one-to-one (Hungarian on row distance), since query order at equal scores is not
a model property either. ``test_broken_copy_fails`` shows that a one-line bug (the decoder reading the masked
memory) fails the same comparison.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import rtdetr.models.decoder as decoder_module
import rtdetr.models.deform_attn as deform_module
from rtdetr.convert import hf_to_official, load_model, load_state_dict_into, model_config_from_hf
from rtdetr.loss import RTDETRCriterion
from rtdetr.models import build_model
from rtdetr.models.query_selection import generate_anchors
from rtdetr.ops.compare import max_query_set_diff, randomize_for_parity, untied_input

transformers = pytest.importorskip("transformers", reason="HF parity tests need the 'hf-parity' extra")
pytestmark = pytest.mark.parity

TOL = 1e-4
NUM_CLASSES = 7
# HF ResNet layouts of every PResNet-vd depth HF can build (hidden sizes of R18/R34 are the basic-block ones)
_BACKBONES = {
    "r18vd": dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic"),
    "r34vd": dict(hidden_sizes=[64, 128, 256, 512], depths=[3, 4, 6, 3], layer_type="basic"),
    "r50vd_m": dict(),
    "r50vd": dict(),
    "r101vd": dict(depths=[3, 4, 23, 3]),
}
_MODEL = {  # the official variants' encoder/decoder settings, in HF's names
    "r18vd": dict(encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3),
    "r34vd": dict(encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=4),
    "r50vd_m": dict(hidden_expansion=0.5),
    "r50vd": dict(),
    "r101vd": dict(encoder_hidden_dim=384, encoder_ffn_dim=2048, decoder_in_channels=[384, 384, 384]),
}


def _hf_model(version: str, arch: str, seed: int = 0, **extra):  # noqa: ANN003, ANN202
    bb = transformers.RTDetrResNetConfig(out_features=["stage2", "stage3", "stage4"], **_BACKBONES[arch])
    cfg_cls, model_cls = {
        "v1": (transformers.RTDetrConfig, transformers.RTDetrForObjectDetection),
        "v2": (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection),
    }[version]
    kw = {**_MODEL[arch], **extra}
    cfg = cfg_cls(backbone_config=bb, use_pretrained_backbone=False, num_labels=NUM_CLASSES, **kw)
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    randomize_for_parity(model)
    return model


def _ours_from(hf) -> torch.nn.Module:  # noqa: ANN001
    ours = build_model(model_config_from_hf(hf.config.to_dict())).train(hf.training)
    report = load_state_dict_into(ours, hf_to_official(hf.state_dict()))
    assert report.ok, report.describe()  # strict: every tensor of ours came from HF, none left over
    return ours


@contextmanager
def _record_sampling() -> Iterator[list[torch.Tensor]]:
    """Collect the sampling locations ``[B, Q, H, S, 2]`` our deformable attention is called with."""
    seen: list[torch.Tensor] = []
    original = deform_module.deformable_attention_core

    def recording(value, shapes, locations, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(locations.detach())
        return original(value, shapes, locations, *args, **kwargs)

    deform_module.deformable_attention_core = recording
    try:
        yield seen
    finally:
        deform_module.deformable_attention_core = original


def _compare(hf, ours, x: torch.Tensor, check_coverage: bool = True) -> float:  # noqa: ANN001
    with torch.no_grad():
        ref = hf(pixel_values=x)
        with _record_sampling() as locations:
            out = ours(x)
    if check_coverage:
        loc = torch.cat([t.flatten(0, -2) for t in locations])
        assert (loc < 0).any(0).all() and (loc > 1).any(0).all(), "sampling points must cross all four borders"
    return max_query_set_diff({"pred_logits": ref.logits, "pred_boxes": ref.pred_boxes}, out)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    "arch",
    # R34 and R101 add no code path R18 and R50 lack beyond their depth, nor R50 one that R50-m (its backbone)
    # and the denoising-loss test below (its full-width encoder) lack; 15-40 s a version on a 2-core AVX2 CPU:
    # `make test-slow` runs them
    [pytest.param(a, marks=pytest.mark.slow) if a in ("r34vd", "r50vd", "r101vd") else a for a in _BACKBONES],
)
def test_adversarial_weights_match_hf(version: str, arch: str) -> None:
    hf = _hf_model(version, arch)
    ours = _ours_from(hf).eval()
    assert ours.config.name == f"{'rtdetrv2' if version == 'v2' else 'rtdetr'}_{arch}"
    assert ours.num_decoder_layers == hf.config.decoder_layers
    # HF has no eval_idx: its R50-m runs all 6 layers, where the official model (and ours) evaluates layer 3
    ours.set_decoder_depth(hf.config.decoder_layers)
    # float64 on both sides: fp32 rounding through R101 and 6 refinement steps reaches 5e-5, float64 1e-12, so
    # anything near the tolerance is a real difference
    hf.double(), ours.double()
    torch.manual_seed(1)
    # square and non-square, both past 400 px so that the outer stride-8 anchors are invalid (masked for query
    # selection): what the decoder reads there must still agree
    for batch, size in [(2, (416, 416)), (1, (288, 448))]:
        diff = _compare(hf, ours, untied_input(ours, (batch, 3, *size)))
        assert diff < TOL, (size, diff)


def test_v2_discrete_sampling_match_hf() -> None:
    hf = _hf_model("v2", "r18vd", decoder_method="discrete", decoder_n_points=3)
    ours = _ours_from(hf).eval()
    assert ours.config.decoder.cross_attn_method == "discrete" and ours.config.decoder.num_points == (3, 3, 3)
    hf.double(), ours.double()
    assert _compare(hf, ours, untied_input(ours, (1, 3, 288, 352))) < TOL


def _with_old_masked_memory(model: torch.nn.Module) -> None:
    """The bug this suite must catch: cross-attention reading the memory after the valid-anchor mask."""
    inner = model.decoder.decoder
    forward = inner.forward

    def masked(target, ref_unact, memory, shapes, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        _, valid = generate_anchors(shapes, eps=model.decoder.eps)
        return forward(target, ref_unact, valid.to(memory.dtype) * memory, shapes, *args, **kwargs)

    inner.forward = masked


def test_broken_copy_fails() -> None:
    hf = _hf_model("v1", "r18vd")
    ours = _ours_from(hf).eval()
    hf.double(), ours.double()
    x = untied_input(ours, (1, 3, 448, 448))  # > 400 px: the outer ring of stride-8 anchors is invalid
    assert _compare(hf, ours, x) < TOL
    _with_old_masked_memory(ours)
    assert _compare(hf, ours, x, check_coverage=False) > 10 * TOL, (
        "the parity check cannot see a wrong cross-attention input"
    )


# -------------------------------------------------------------------------------------------------- training


def hf_modeling(version: str):  # noqa: ANN201
    """HF's modelling module of RT-DETR ``"v1"`` or ``"v2"``."""
    return {
        "v1": transformers.models.rt_detr.modeling_rt_detr,
        "v2": transformers.models.rt_detr_v2.modeling_rt_detr_v2,
    }[version]


@contextmanager
def _same_denoising_groups(version: str, seed: int = 123) -> Iterator[None]:
    """Each model builds its own denoising queries, from the same seed (the builders agree draw for draw:
    ``test_hf_denoising``), so their losses can agree."""
    module = hf_modeling(version)
    hf_original, ours_original = module.get_contrastive_denoising_training_group, decoder_module.build_denoising_group

    def seeded(build):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            torch.manual_seed(seed)
            return build(*args, **kwargs)

        return call

    module.get_contrastive_denoising_training_group = seeded(hf_original)
    decoder_module.build_denoising_group = seeded(ours_original)
    try:
        yield
    finally:
        module.get_contrastive_denoising_training_group = hf_original
        decoder_module.build_denoising_group = ours_original


TARGETS = [
    {
        "labels": torch.tensor([1, 0, 6]),
        "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2], [0.5, 0.5, 0.6, 0.7]]),
    },
    {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.05, 0.94, 0.1, 0.12]])},  # at a corner
]


@pytest.mark.parametrize(("version", "arch"), [("v1", "r18vd"), ("v2", "r50vd")])
def test_training_losses_with_denoising_match_hf(version: str, arch: str) -> None:
    hf = _hf_model(version, arch).train()
    ours = _ours_from(hf).train()
    x = torch.rand(2, 3, 320, 320)
    with _same_denoising_groups(version):
        theirs = hf(pixel_values=x, labels=[{"class_labels": t["labels"], "boxes": t["boxes"]} for t in TARGETS])
        out = ours(x, TARGETS)
    assert "dn_aux_outputs" in out and theirs.loss_dict is not None
    mine = RTDETRCriterion(NUM_CLASSES)(out, TARGETS)
    n = ours.num_decoder_layers
    renamed = {k.replace("_enc_0", f"_aux_{n - 1}"): v for k, v in mine.items()}  # HF appends the encoder as aux
    assert set(renamed) == set(theirs.loss_dict) and any("_dn_" in k for k in renamed)
    for k, v in theirs.loss_dict.items():
        assert torch.allclose(renamed[k], v, atol=TOL, rtol=TOL), (k, renamed[k].item(), v.item())
    grads = torch.autograd.grad(sum(mine.values()), [p for p in ours.parameters() if p.requires_grad])
    assert all(torch.isfinite(g).all() for g in grads)


def test_safetensors_directory_loads_end_to_end(tmp_path: Path) -> None:
    hf = _hf_model("v2", "r18vd")
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path / "model.safetensors").eval()
    assert ours.config.name == "rtdetrv2_r18vd"
    assert _compare(hf, ours, untied_input(ours, (1, 3, 320, 320))) < TOL
    from rtdetr.convert.summary import describe_checkpoint  # `rtdetr info model.safetensors`

    info = describe_checkpoint(tmp_path / "model.safetensors")
    assert (info["origin"], info["variant"], info["num_classes"]) == ("HF", "rtdetrv2_r18vd", ours.config.num_classes)
    assert info["decoder_layers"] == ours.config.decoder.num_layers and info["non_finite_tensors"] == []
    assert info["class_names"] is None  # HF's placeholder names (LABEL_0...) are no names


def test_hf_class_names_travel_with_the_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fine-tuned HF model names its classes in config.json's id2label: predict showed "0", "1"... (or COCO's
    names for 80 classes), rtdetr info none, and rtdetr convert dropped them."""
    from rtdetr import RTDETR
    from rtdetr.cli import main
    from rtdetr.convert.summary import describe_checkpoint

    hf = _hf_model("v1", "r18vd")
    names = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep"]
    hf.config.id2label = {i: n for i, n in enumerate(names)}  # saved with string keys, as the Hub's files are
    hf.config.label2id = {n: i for i, n in enumerate(names)}
    hf.save_pretrained(tmp_path / "hf")
    assert RTDETR(tmp_path / "hf").class_names == names
    assert describe_checkpoint(tmp_path / "hf")["class_names"] == names
    assert main(["convert", str(tmp_path / "hf" / "model.safetensors"), str(tmp_path / "ours.pth")]) == 0
    assert "(rtdetr_r18vd, 7 classes)" in capsys.readouterr().out
    converted = RTDETR(tmp_path / "ours.pth")
    assert converted.class_names == names
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        same = [m.model(x)["pred_logits"] for m in (RTDETR(tmp_path / "hf"), converted)]
    assert torch.equal(*same)


def test_hf_converter_rejects_unknown_keys() -> None:
    sd = {
        "model.backbone.model.embedder.embedder.0.convolution.weight": torch.zeros(1),
        "model.mystery": torch.zeros(1),
    }
    with pytest.raises(ValueError, match="model.mystery"):
        hf_to_official(sd)
