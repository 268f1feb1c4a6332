"""Our post-processor against HF transformers' ``post_process_object_detection`` (a port of the official
``RTDETRPostProcessor``): the same top-k over queries x classes, labels, scores and boxes in pixels."""

from __future__ import annotations

import types

import pytest
import torch

from rtdetr.models.postprocess import PostProcessor

transformers = pytest.importorskip("transformers", reason="HF parity tests need the 'hf-parity' extra")
pytestmark = pytest.mark.parity


@pytest.mark.parametrize(("num_classes", "queries"), [(80, 300), (3, 100)])
def test_post_processor_equals_hf(num_classes: int, queries: int) -> None:
    """HF keeps as many detections as there are queries; ours ``num_top_queries`` (the official 300)."""
    torch.manual_seed(3)
    logits = torch.randn(2, queries, num_classes, dtype=torch.float64) * 4  # float64: no tie among the scores
    boxes = torch.rand(2, queries, 4, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    sizes_wh = torch.tensor([[640, 480], [200, 100]])  # ours and the official code take (w, h); HF (h, w)
    processor = getattr(transformers, "RTDetrImageProcessorPil", transformers.RTDetrImageProcessor)()
    hf = processor.post_process_object_detection(
        types.SimpleNamespace(logits=logits, pred_boxes=boxes), threshold=-1.0, target_sizes=sizes_wh.flip(1)
    )
    ours = PostProcessor(num_classes=num_classes, num_top_queries=queries)(
        {"pred_logits": logits, "pred_boxes": boxes}, sizes_wh
    )
    for mine, theirs in zip(ours, hf, strict=True):
        assert len(mine["scores"]) == len(theirs["scores"]) == queries
        order = theirs["scores"].argsort(descending=True)
        assert torch.equal(mine["labels"], theirs["labels"][order])
        torch.testing.assert_close(mine["scores"], theirs["scores"][order], rtol=0, atol=1e-12)
        torch.testing.assert_close(mine["boxes"], theirs["boxes"][order], rtol=0, atol=1e-9)
