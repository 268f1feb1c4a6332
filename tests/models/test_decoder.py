import pytest
import torch

from rtdetr.models import create_model
from rtdetr.models.query_selection import generate_anchors, select_topk


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


def test_select_topk_methods() -> None:
    memory = torch.arange(5.0).view(1, 5, 1).expand(1, 5, 2)
    logits = torch.tensor([[[0.1, 0.9], [0.8, 0.7], [0.0, 0.0], [0.95, 0.0], [0.2, 0.3]]])
    coords = torch.zeros(1, 5, 4)
    m, lg, _ = select_topk(memory, logits, coords, 2, "default")
    assert m[0, :, 0].tolist() == [3.0, 0.0]
    m, _, _ = select_topk(memory, logits, coords, 3, "one2many")
    assert m[0, :, 0].tolist() == [3.0, 0.0, 1.0]
    assert lg.shape == (1, 2, 2)
    with pytest.raises(ValueError, match="unknown query selection"):
        select_topk(memory, logits, coords, 2, "best")


def test_extra_level_and_learned_queries() -> None:
    model = create_model(
        "rtdetrv2_r18vd",
        decoder={"num_levels": 4, "num_points": [2, 2, 2, 2], "learn_query_content": True, "num_queries": 50},
    )
    assert len(model.decoder.input_proj) == 4 and hasattr(model.decoder, "tgt_embed")
    out = model.train()(torch.rand(1, 3, 128, 128))
    assert out["pred_logits"].shape == (1, 50, 80)
