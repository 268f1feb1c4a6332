import pytest
import torch

from rtdetr.models import create_model
from rtdetr.models.query_selection import gather_tokens, generate_anchors, topk_indices


def test_decoder_depth_selectable_at_inference() -> None:
    model = create_model("rtdetr_r50vd", num_classes=4, decoder={"num_layers": 4}).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        full = model(x)
        model.set_decoder_depth(2)
        two = model(x)
        # layers after the chosen depth are never run: corrupting them changes nothing
        for p in model.decoder.decoder.layers[2:].parameters():
            p.data.normal_()
        two_again = model(x)
    assert model.decoder_depth == 2
    assert torch.equal(two["pred_logits"], two_again["pred_logits"])
    assert not torch.allclose(two["pred_logits"], full["pred_logits"])
    with pytest.raises(ValueError, match="decoder depth must be in 1..4"):
        model.set_decoder_depth(5)


def test_eval_depth_equals_training_aux_output() -> None:
    model = create_model("rtdetr_r18vd", num_classes=4).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        model.set_decoder_depth(2)
        eval_out = model(x)
        model.decoder.train()  # train-mode decoder (no dropout, no targets) returns every layer
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()  # keep running statistics so only the decoder's mode differs
        train_out = model(x)
    assert torch.allclose(eval_out["pred_logits"], train_out["aux_outputs"][1]["pred_logits"], atol=1e-6)
    assert torch.allclose(eval_out["pred_boxes"], train_out["aux_outputs"][1]["pred_boxes"], atol=1e-6)


def test_cached_anchors_equal_generated_and_other_sizes_work() -> None:
    model = create_model("rtdetrv2_r18vd").eval()
    anchors, valid = generate_anchors([(80, 80), (40, 40), (20, 20)])
    assert torch.equal(model.decoder.anchors, anchors) and torch.equal(model.decoder.valid_mask, valid)
    assert anchors.shape == (1, 8400, 4)
    # only the outermost ring of the stride-8 level is invalid at 640
    assert int((~valid).sum()) == 4 * 80 - 4
    assert torch.isinf(anchors[~valid.squeeze(-1)]).all()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 256))["pred_boxes"].shape == (1, 300, 4)


def test_topk_indices_methods_and_gather() -> None:
    logits = torch.tensor([[[0.1, 0.9], [0.8, 0.7], [0.0, 0.0], [0.95, 0.0], [0.2, 0.3]]])
    assert topk_indices(logits, 2, "default")[0].tolist() == [3, 0]  # by each token's best class
    # (token, class) pairs: 0.95 (t3), 0.9 (t0), 0.8 (t1) -- token 1 beats token 0's second class 0.1
    assert topk_indices(logits, 3, "one2many")[0].tolist() == [3, 0, 1]
    assert topk_indices(logits, 4, "one2many")[0].tolist() == [3, 0, 1, 1]  # a token may be picked twice
    assert topk_indices(logits[..., 1:], 2, "agnostic")[0].tolist() == [0, 1]
    memory = torch.arange(10.0).view(1, 5, 2)
    assert gather_tokens(memory, torch.tensor([[3, 0], [1, 1]])).tolist() == [[[6, 7], [0, 1]], [[2, 3], [2, 3]]]
    with pytest.raises(ValueError, match="unknown query selection"):
        topk_indices(logits, 2, "best")


def test_decoder_attends_to_unmasked_memory() -> None:
    """The valid mask gates query selection only: a change to a border token of the stride-8 map (masked for
    selection) must still reach the decoder's output through cross-attention."""
    model = create_model("rtdetrv2_r18vd", num_classes=3, decoder={"num_layers": 1}).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.decoder.decoder.layers[0].cross_attn.sampling_offsets.parameters():
            p.normal_(0.0, 3.0)  # spread sampling points over the whole map, borders included
        feats = [torch.randn(1, 256, s, s) for s in (64, 32, 16)]  # >50 rows: the outer ring is invalid
        base = model.decoder(feats)
        feats[0][:, :, 0, :] += 5.0  # the top row of stride-8 tokens: invalid anchors
        moved = model.decoder(feats)
    assert (moved["pred_logits"] - base["pred_logits"]).abs().max() > 1e-3


def test_extra_level_and_learned_queries() -> None:
    model = create_model(
        "rtdetrv2_r18vd",
        decoder={"num_levels": 4, "num_points": [2, 2, 2, 2], "learn_query_content": True, "num_queries": 50},
    )
    assert len(model.decoder.input_proj) == 4 and hasattr(model.decoder, "tgt_embed")
    out = model.train()(torch.rand(1, 3, 128, 128))
    assert out["pred_logits"].shape == (1, 50, 80)


def _train_forward(model: torch.nn.Module, x: torch.Tensor, targets: list[dict] | None, o2m: int) -> dict:
    model.decoder.num_o2m_queries = o2m
    torch.manual_seed(1)  # the same denoising noise in every call
    with torch.no_grad():
        return model(x, targets)


def test_one_to_many_branch_is_isolated_and_training_only() -> None:
    """The one-to-many queries and the rest cannot see each other: turning the branch on changes none of the
    other outputs (main, auxiliary, encoder, denoising); with no denoising and as many o2m queries as queries,
    the branch decodes exactly the main queries' inputs and so gives their outputs."""
    torch.manual_seed(0)
    model = create_model("rtdetrv2_r18vd", num_classes=3, decoder={"num_queries": 40}).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()  # batch statistics would be the same, but keep the running ones fixed across calls
    for p in model.decoder.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 3, 128, 128)
    targets = [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    off, on = _train_forward(model, x, targets, 0), _train_forward(model, x, targets, 64)
    assert "o2m_outputs" not in off and len(on["o2m_outputs"]) == 3
    assert on["o2m_outputs"][0]["pred_boxes"].shape == (2, 64, 4)
    for key in ("aux_outputs", "dn_aux_outputs", "enc_aux_outputs"):
        for a, b in zip(off[key], on[key]):
            assert torch.allclose(a["pred_logits"], b["pred_logits"], atol=1e-5)
            assert torch.allclose(a["pred_boxes"], b["pred_boxes"], atol=1e-6)
    assert torch.allclose(off["pred_logits"], on["pred_logits"], atol=1e-5)
    same = _train_forward(model, x, None, 40)  # no targets: no denoising group
    assert torch.allclose(same["o2m_outputs"][-1]["pred_logits"], same["pred_logits"], atol=1e-5)
    assert torch.allclose(same["o2m_outputs"][0]["pred_boxes"], same["aux_outputs"][0]["pred_boxes"], atol=1e-6)
    # with denoising too: a branch that could see the denoising queries would differ from the main group here
    with_dn = _train_forward(model, x, targets, 40)
    assert torch.allclose(with_dn["o2m_outputs"][-1]["pred_logits"], with_dn["pred_logits"], atol=1e-5)
    # with 64 o2m queries the branch's self-attention holds 24 more proposals than the main group's 40
    assert not torch.allclose(on["o2m_outputs"][-1]["pred_logits"][:, :40], on["pred_logits"], atol=1e-3)
    model.eval()
    with torch.no_grad():
        assert "o2m_outputs" not in model(x)  # inference never runs the branch


@pytest.mark.parametrize("training", [False, True], ids=["eval-cached-anchors", "train-generated-anchors"])
def test_reference_boxes_stay_float32_under_autocast(training: bool) -> None:
    """Under bf16 autocast the anchors, and so every reference box after them (query selection, each layer's
    refinement, the sampling locations), stay float32 as in the official code; in bf16 a box coordinate is
    rounded to ~0.4% (on a trained demo model the bf16 boxes moved 4-7x further from the fp32 ones)."""
    model = create_model("rtdetr_r18vd", num_classes=4, eval_spatial_size=(64, 64)).train(training)
    x = torch.rand(2, 3, 64, 64)
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}] * 2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, targets if training else None)
    assert out["pred_logits"].dtype == torch.bfloat16  # autocast really ran
    boxes = [out["pred_boxes"]]
    if training:
        boxes += [o["pred_boxes"] for o in [*out["aux_outputs"], *out["enc_aux_outputs"], *out["dn_aux_outputs"]]]
    assert all(b.dtype == torch.float32 for b in boxes), {b.dtype for b in boxes}
