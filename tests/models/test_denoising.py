import torch
from torch import nn

from rtdetr.models.denoising import build_denoising_group


def _targets() -> list[dict]:
    return [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]])},
        {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.3]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]


def test_group_layout_and_mask() -> None:
    embed = nn.Embedding(4, 8, padding_idx=3)
    dn = build_denoising_group(_targets(), 3, 10, embed, num_denoising=10)
    assert dn is not None
    # max_gt 2 -> 5 groups of (2 positive + 2 negative)
    assert dn.num_group == 5 and dn.num_split == [20, 10]
    assert dn.content.shape == (3, 20, 8) and dn.ref_unact.shape == (3, 20, 4)
    assert [len(i) for i in dn.positive_idx] == [10, 5, 0]
    assert dn.positive_idx[0][:4].tolist() == [0, 1, 4, 5]
    m = dn.attn_mask
    assert m.shape == (30, 30)
    assert m[20:, :20].all() and not m[20:, 20:].any()  # matching queries see no DN query
    assert not m[0:4, 0:4].any() and m[0:4, 4:20].all()  # group 0 sees only itself
    assert m[8:12, :8].all() and m[8:12, 12:20].all() and not m[8:12, 8:12].any()


def test_positive_noise_is_smaller_than_negative() -> None:
    embed = nn.Embedding(4, 8, padding_idx=3)
    t = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    dn = build_denoising_group(t, 3, 10, embed, num_denoising=200, label_noise_ratio=0.0)
    boxes = dn.ref_unact.sigmoid()[0]
    from rtdetr.ops.boxes import box_cxcywh_to_xyxy

    err = (box_cxcywh_to_xyxy(boxes) - torch.tensor([0.4, 0.4, 0.6, 0.6])).abs().amax(-1)
    pos, neg = err[0::2], err[1::2]  # groups alternate [positive | negative] when max_gt == 1
    assert (pos <= 0.1 + 1e-5).all()  # within half the box size
    assert neg.median() > 0.1 and neg.mean() > 2 * pos.mean()  # 1-2x half the size (flipped boxes collapse)


def test_all_empty_batch_builds_masked_dummy_group() -> None:
    embed = nn.Embedding(4, 8, padding_idx=3)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    dn = build_denoising_group(empty, 3, 10, embed)
    assert dn is not None and dn.num_split == [2, 10] and dn.num_group == 1
    assert all(len(i) == 0 for i in dn.positive_idx)
    assert torch.equal(dn.content, torch.zeros_like(dn.content))  # padding embedding
    assert build_denoising_group(empty, 3, 10, embed, num_denoising=0) is None


def test_noise_on_cpu_changes_nothing_on_the_cpu_and_is_restored() -> None:
    """``denoising_noise_on_cpu`` makes a CUDA model draw what a CPU model draws (checked on a GPU by
    tests/engine/test_cuda.py); on the CPU it must leave the draws as they are, and it always restores the
    setting."""
    import pytest

    from rtdetr.models import denoising
    from rtdetr.ops.compare import denoising_noise_on_cpu

    embed = nn.Embedding(4, 8, padding_idx=3)
    torch.manual_seed(5)
    plain = build_denoising_group(_targets(), 3, 10, embed, num_denoising=10)
    torch.manual_seed(5)
    with denoising_noise_on_cpu():
        assert str(denoising.NOISE_DEVICE) == "cpu"
        on_cpu = build_denoising_group(_targets(), 3, 10, embed, num_denoising=10)
    assert plain is not None and on_cpu is not None
    assert torch.equal(plain.ref_unact, on_cpu.ref_unact) and torch.equal(plain.content, on_cpu.content)
    assert denoising.NOISE_DEVICE is None
    with pytest.raises(RuntimeError), denoising_noise_on_cpu():
        raise RuntimeError("a failing comparison")
    assert denoising.NOISE_DEVICE is None
