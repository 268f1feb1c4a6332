"""Our contrastive denoising groups against HF transformers' builder (a port of the official one), both drawn from
the same seed: the same label flips and box jitter, the same padded slots, attention mask and positive indices.
The model-level parity tests then let each model build its own groups (``test_hf_parity``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rtdetr.models.denoising import build_denoising_group

transformers = pytest.importorskip("transformers", reason="HF parity tests need the 'hf-parity' extra")
pytestmark = pytest.mark.parity

from tests.parity.test_hf_parity import NUM_CLASSES, hf_modeling  # noqa: E402  (after the importorskip)
from tests.parity.test_hf_parity import TARGETS as MODEL_TARGETS  # noqa: E402

# 3, 1 and 0 boxes: padded slots in the second and third images; one box at a corner
TARGETS = [*MODEL_TARGETS, {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(("num_denoising", "label_noise", "box_noise"), [(100, 0.5, 1.0), (7, 0.9, 0.4)])
def test_denoising_groups_equal_hf_from_the_same_seed(
    version: str, num_denoising: int, label_noise: float, box_noise: float
) -> None:
    module = hf_modeling(version)
    torch.manual_seed(0)
    embed = nn.Embedding(NUM_CLASSES + 1, 16, padding_idx=NUM_CLASSES)
    hf_targets = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in TARGETS]
    torch.manual_seed(11)
    content, ref_unact, mask, meta = module.get_contrastive_denoising_training_group(
        hf_targets, NUM_CLASSES, 30, embed, num_denoising, label_noise, box_noise
    )
    torch.manual_seed(11)
    ours = build_denoising_group(TARGETS, NUM_CLASSES, 30, embed, num_denoising, label_noise, box_noise)
    assert ours is not None
    groups = max(1, num_denoising // 3)
    assert ours.num_group == meta["dn_num_group"] == groups and ours.num_split == meta["dn_num_split"]
    assert torch.equal(ours.content, content)  # label flips (padded slots keep the padding class)
    assert ref_unact.abs().max() > 11  # padded slots reached: an empty box at the corner, inverse_sigmoid(0)
    torch.testing.assert_close(ours.ref_unact, ref_unact, rtol=0, atol=1e-5)
    assert torch.equal(ours.attn_mask, mask == float("-inf"))
    assert [p.tolist() for p in ours.positive_idx] == [p.tolist() for p in meta["dn_positive_idx"]]
