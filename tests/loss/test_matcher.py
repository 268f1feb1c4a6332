import pytest
import torch

from rtdetr.loss.matcher import HungarianMatcher


def _targets() -> list[dict]:
    return [
        {"labels": torch.tensor([1, 0]), "boxes": torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2]])},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
        {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]


def test_obvious_assignment() -> None:
    logits = torch.full((3, 4, 3), -5.0)
    boxes = torch.tensor([[0.5, 0.5, 0.1, 0.1]]).repeat(3, 4, 1)
    boxes[0, 3] = torch.tensor([0.2, 0.2, 0.1, 0.1])
    boxes[0, 1] = torch.tensor([0.7, 0.7, 0.2, 0.2])
    logits[0, 3, 1] = logits[0, 1, 0] = 5.0
    boxes[2, 2] = torch.tensor([0.5, 0.5, 0.4, 0.4])
    idx = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, _targets())
    assert dict(zip(idx[0][0].tolist(), idx[0][1].tolist())) == {3: 0, 1: 1}
    assert idx[1][0].numel() == 0 and idx[2][0].tolist() == [2]


def test_batched_equals_per_image() -> None:
    out = {"pred_logits": torch.randn(3, 6, 3), "pred_boxes": torch.rand(3, 6, 4) * 0.5 + 0.1}
    m = HungarianMatcher()
    batched = m(out, _targets())
    for i, t in enumerate(_targets()):
        single = m({k: v[i : i + 1] for k, v in out.items()}, [t])[0]
        assert torch.equal(single[0], batched[i][0]) and torch.equal(single[1], batched[i][1])


def test_all_empty_and_non_finite() -> None:
    m = HungarianMatcher()
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    out = {"pred_logits": torch.randn(2, 5, 3), "pred_boxes": torch.rand(2, 5, 4)}
    assert all(i.numel() == 0 and j.numel() == 0 for i, j in m(out, empty))
    out["pred_logits"][0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        m(out, _targets()[:2])


def test_match_many_equals_one_group_at_a_time() -> None:
    """Several groups (different query counts, target sets, fp32 and fp64, one with no targets at all) matched
    with one copy give each group's own matching; a non-finite group anywhere raises."""
    torch.manual_seed(0)
    m = HungarianMatcher()
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 3
    groups = [
        ({"pred_logits": torch.randn(3, 6, 3), "pred_boxes": torch.rand(3, 6, 4) * 0.5 + 0.1}, _targets()),
        ({"pred_logits": torch.randn(3, 4, 3), "pred_boxes": torch.rand(3, 4, 4) * 0.5 + 0.1}, empty),
        ({"pred_logits": torch.randn(3, 9, 3).double(), "pred_boxes": torch.rand(3, 9, 4).double()}, _targets()),
        ({"pred_logits": torch.randn(3, 6, 3), "pred_boxes": torch.rand(3, 6, 4) * 0.5 + 0.1}, _targets()[::-1]),
    ]
    many = m.match_many(groups)
    assert len(many) == len(groups)
    for (out, tgts), got in zip(groups, many):
        for (a, b), (c, d) in zip(m(out, tgts), got, strict=True):
            assert torch.equal(a, c) and torch.equal(b, d)
    groups[3][0]["pred_boxes"][1, 2, 0] = float("inf")
    with pytest.raises(FloatingPointError):
        m.match_many(groups)


def test_the_criterion_copies_to_the_cpu_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU every device-to-CPU copy is a synchronisation: the matchings of all decoder layers, the encoder
    proposals and the one-to-many branch share one copy (before: two per group, and two per image for the class
    id check)."""
    from rtdetr.loss import RTDETRCriterion
    from rtdetr.models import create_model

    model = create_model("rtdetr_r18vd", num_classes=3).train()
    model.decoder.num_o2m_queries = 20
    targets = [t for t in _targets() if t["labels"].numel()]
    out = model(torch.rand(2, 3, 96, 96), targets)
    calls = []
    original = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: calls.append(self.shape) or original(self, *a, **k))
    losses = RTDETRCriterion(3)(out, targets)
    assert any("_o2m_" in k for k in losses) and any("_aux_" in k for k in losses)
    assert len(calls) == 1, calls


def test_indices_go_to_the_device_in_one_copy_and_keep_their_pairing() -> None:
    """The one-copy move to the predictions' device (exercised here with the meta device, which keeps shapes):
    every pair keeps its shapes and order; nothing to move is fine too."""
    from rtdetr.loss.matcher import _to_device

    pairs = [[(torch.arange(3), torch.arange(3) + 10), (torch.zeros(0, dtype=torch.int64),) * 2],
             [(torch.tensor([7]), torch.tensor([0]))]]  # fmt: skip
    moved = _to_device(pairs, torch.device("meta"))
    assert [[(a.shape, b.shape, a.device.type) for a, b in g] for g in moved] == [
        [((3,), (3,), "meta"), ((0,), (0,), "meta")],
        [((1,), (1,), "meta")],
    ]
    assert _to_device([[]], torch.device("meta")) == [[]]
    assert _to_device(pairs, torch.device("cpu")) is pairs
