import pytest
import torch

from rtdetr.models.postprocess import COCO_LABEL_TO_CATEGORY, PostProcessor, class_mask


def _outputs() -> dict:
    logits = torch.full((2, 3, 4), -10.0)
    logits[0, 1, 2] = 3.0  # best: query 1, class 2
    logits[0, 0, 0] = 1.0
    logits[0, 0, 3] = 0.5  # same query, second class
    logits[1, 2, 1] = 2.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 1.0], [0.1, 0.1, 0.1, 0.1]]]).repeat(2, 1, 1)
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_topk_over_queries_and_classes_and_box_scaling() -> None:
    pp = PostProcessor(num_classes=4, num_top_queries=3)
    res = pp(_outputs(), torch.tensor([[200, 100], [10, 10]]))
    r = res[0]
    assert r["labels"].tolist() == [2, 0, 3]
    assert r["scores"][0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert torch.allclose(r["boxes"][0], torch.tensor([0.0, 0.0, 100.0, 100.0]))  # (w, h) = (200, 100)
    assert torch.allclose(r["boxes"][1], torch.tensor([80.0, 30.0, 120.0, 70.0]))
    assert (r["scores"][:-1] >= r["scores"][1:]).all()
    assert res[1]["labels"][0] == 1


def test_label_map_and_deploy_tuple() -> None:
    pp = PostProcessor(num_classes=4, num_top_queries=2, label_map=[10, 20, 30, 40]).deploy()
    labels, boxes, scores = pp(_outputs(), torch.tensor([[1, 1], [1, 1]]))
    assert labels[0].tolist() == [30, 10] and boxes.shape == (2, 2, 4) and scores.shape == (2, 2)
    assert len(COCO_LABEL_TO_CATEGORY) == 80 and COCO_LABEL_TO_CATEGORY[-1] == 90
    with pytest.raises(ValueError, match="label_map has 2 entries"):
        PostProcessor(num_classes=4, label_map=[1, 2])


def test_k_larger_than_candidates_is_clipped() -> None:
    pp = PostProcessor(num_classes=4, num_top_queries=300)
    assert pp(_outputs(), torch.tensor([[1, 1], [1, 1]]))[0]["scores"].shape == (12,)


def test_class_mask_ranks_only_those_classes_per_image() -> None:
    """A ``[C]`` mask ranks the chosen classes only; a ``[B, C]`` mask chooses per image; softmax scores (with a
    background column) are the unmasked ones of the chosen classes, not renormalised."""
    out = _outputs()
    sizes = torch.tensor([[1, 1], [1, 1]])
    pp = PostProcessor(num_classes=4, num_top_queries=2)
    r = pp(out, sizes, torch.tensor([True, False, False, True]))
    assert r[0]["labels"].tolist() == [0, 3] and r[0]["scores"].tolist() == pytest.approx([0.7311, 0.6225], 1e-3)
    assert r[1]["labels"][0] in (0, 3) and r[1]["scores"][0] == pytest.approx(torch.sigmoid(torch.tensor(-10.0)))
    per_image = pp(out, sizes, torch.tensor([[False, False, False, True], [False, True, False, False]]))
    assert per_image[0]["labels"].tolist() == [3, 3] and per_image[1]["labels"].tolist() == [1, 1]
    every = PostProcessor(num_classes=4, num_top_queries=300)(out, sizes, torch.tensor([False, False, False, True]))
    assert every[0]["labels"][:3].tolist() == [3, 3, 3] and every[0]["scores"][3:].eq(0).all()  # excluded: 0, last
    soft = PostProcessor(num_classes=4, num_top_queries=3, use_focal_loss=False)
    logits = torch.cat([out["pred_logits"], torch.zeros(2, 3, 1)], -1)  # + background
    plain = soft({"pred_logits": logits, "pred_boxes": out["pred_boxes"]}, sizes)[0]
    masked = soft({"pred_logits": logits, "pred_boxes": out["pred_boxes"]}, sizes, torch.tensor([1, 0, 0, 1]).bool())
    probs = logits[0].softmax(-1)
    assert plain["labels"].tolist()[0] == 2 and masked[0]["labels"].tolist()[0] == 0
    assert masked[0]["scores"][0] == pytest.approx(probs[0, 0].item())  # query 0's class 0, as without the mask


def test_class_mask_from_ids_or_one_entry_per_image() -> None:
    """Ids (any integer type) -> ``[C]``; one entry per image (ids or None = every class) -> ``[B, C]``; ids outside
    0..C-1 select nothing; None everywhere -> no mask; an entry count that is not the batch is an error."""
    import numpy as np

    assert class_mask([2, np.int64(0), torch.tensor(9)], 4, 2).tolist() == [True, False, True, False]
    assert class_mask([], 4, 2).tolist() == [False] * 4
    assert class_mask({3}, 4, 1).tolist() == [False, False, False, True]  # one image, one set of ids: the same
    rows = class_mask([{1}, None, frozenset(), (0, 3)], 4, 4)
    assert rows is not None and rows.tolist() == [
        [False, True, False, False],
        [True] * 4,
        [False] * 4,
        [True, False, False, True],
    ]
    assert class_mask(None, 4, 2) is None and class_mask([None, None], 4, 2) is None
    with pytest.raises(ValueError, match="one entry .* per image of 3"):
        class_mask([{1}, None], 4, 3)
    with pytest.raises(ValueError, match="one entry"):
        class_mask([{1}, 2], 4, 2)
    with pytest.raises(ValueError, match="integers"):
        class_mask([{"car"}, None], 4, 2)
