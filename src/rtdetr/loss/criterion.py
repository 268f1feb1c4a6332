"""RT-DETR set criterion: varifocal loss with IoU-aware targets (or DEIM's matchability-aware loss), L1 and GIoU
box losses, applied to the final decoder layer, every auxiliary layer, the encoder's top-k proposals, every
denoising layer and, when the model runs one, every layer of the one-to-many branch (against the ground truth
repeated ``o2m_repeat`` times, H-DETR's hybrid matching)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr.loss.matcher import HungarianMatcher
from rtdetr.ops.boxes import box_cxcywh_to_xyxy, paired_box_iou, paired_generalized_box_iou

__all__ = ["RTDETRCriterion", "denoising_indices", "to_float32"]

Indices = list[tuple[Tensor, Tensor]]


def to_float32(obj: Any) -> Any:
    """The model's output (nested dicts/lists of tensors) with floating tensors in fp32: the criterion runs in fp32
    whatever precision the forward ran in."""
    if isinstance(obj, Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, dict):
        return {k: to_float32(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_float32(v) for v in obj]
    return obj


def _weighted_bce(logits: Tensor, target: Tensor, weight: Tensor, num_boxes: float) -> Tensor:
    """Weighted BCE of ``[B, Q, C]`` logits, averaged over queries, summed over batch and classes, times ``Q``,
    divided by ``num_boxes`` (the official reduction)."""
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    return loss.mean(1).sum() * logits.shape[1] / num_boxes


def denoising_indices(dn_meta: dict, targets: list[dict[str, Tensor]]) -> Indices:
    """Fixed (query, target) pairs of the positive denoising queries: target ``j`` of every group."""
    out = []
    for pos, t in zip(dn_meta["dn_positive_idx"], targets):
        n = int(t["labels"].numel())
        device = t["labels"].device
        if n:
            gt = torch.arange(n, dtype=torch.int64, device=device).repeat(dn_meta["dn_num_group"])
            out.append((pos.to(device), gt))
        else:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            out.append((empty, empty))
    return out


class RTDETRCriterion(nn.Module):
    """Compute the weighted loss terms from the model's output dict.

    Args:
        num_classes: ``C``.
        matcher: the Hungarian matcher.
        weight_dict: weight per base term (``loss_vfl`` or ``loss_mal``, ``loss_bbox``, ``loss_giou``); terms of
            other groups get a suffix (``_aux_{i}``, ``_enc_0``, ``_dn_{i}``, ``_o2m_{i}``) and the same weight.
        alpha, gamma: varifocal loss parameters (0.75, 2).
        cls_loss: ``vfl`` (varifocal) or ``mal`` (matchability-aware, :meth:`loss_mal`).
        mal_gamma: the MAL exponent (1.5, as DEIM).
        o2m_repeat: copies of each target that the one-to-many branch (``o2m_outputs``) is matched against.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        weight_dict: dict[str, float] | None = None,
        alpha: float = 0.75,
        gamma: float = 2.0,
        cls_loss: str = "vfl",
        mal_gamma: float = 1.5,
        o2m_repeat: int = 4,
    ) -> None:
        super().__init__()
        if cls_loss not in ("vfl", "mal"):
            raise ValueError(f"cls_loss must be 'vfl' or 'mal', got {cls_loss!r}")
        if o2m_repeat < 1:
            raise ValueError(f"o2m_repeat must be >= 1, got {o2m_repeat}")
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.cls_loss = cls_loss
        self.weight_dict = dict(weight_dict or {f"loss_{cls_loss}": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0})
        self.alpha, self.gamma, self.mal_gamma = alpha, gamma, mal_gamma
        self.o2m_repeat = o2m_repeat

    @staticmethod
    def _src_idx(indices: Indices) -> tuple[Tensor, Tensor]:
        batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        return batch, torch.cat([src for src, _ in indices])

    @staticmethod
    def _matched_boxes(
        out: dict[str, Tensor], targets: list[dict[str, Tensor]], indices: Indices, idx: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Predicted and target cxcywh boxes of the matched pairs, ``[M, 4]`` each, in matching order."""
        src = out["pred_boxes"][idx]
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        return src, tgt

    def _iou_targets(
        self, out: dict[str, Tensor], targets: list[dict[str, Tensor]], indices: Indices, num_classes: int | None
    ) -> tuple[Tensor, Tensor]:
        """``(one_hot, iou_target)``, each ``[B, Q, C]``: the matched class of each query (zeros for unmatched
        ones) and that one-hot times the IoU of the query's box with its target (detached)."""
        logits = out["pred_logits"]
        num_classes = num_classes or self.num_classes
        idx = self._src_idx(indices)
        src_boxes, tgt_boxes = self._matched_boxes(out, targets, indices, idx)
        if src_boxes.numel():
            ious = paired_box_iou(box_cxcywh_to_xyxy(src_boxes.detach()), box_cxcywh_to_xyxy(tgt_boxes))
        else:
            ious = src_boxes.new_zeros(0)
        classes = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
        classes[idx] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        onehot = F.one_hot(classes, num_classes + 1)[..., :-1].to(logits.dtype)
        score = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        score[idx] = ious.to(logits.dtype)
        return onehot, score.unsqueeze(-1) * onehot

    def loss_vfl(
        self,
        out: dict[str, Tensor],
        targets: list[dict[str, Tensor]],
        indices: Indices,
        num_boxes: float,
        num_classes: int | None = None,
    ) -> Tensor:
        """Varifocal loss: BCE towards ``IoU * one_hot`` for matched queries (zero elsewhere), positives weighted
        by their IoU target, negatives by ``alpha * p^gamma``. Summed over batch, queries and classes, divided by
        ``num_boxes``."""
        logits = out["pred_logits"]
        onehot, target = self._iou_targets(out, targets, indices, num_classes)
        weight = self.alpha * logits.detach().sigmoid().pow(self.gamma) * (1 - onehot) + target
        return _weighted_bce(logits, target, weight, num_boxes)

    def loss_mal(
        self,
        out: dict[str, Tensor],
        targets: list[dict[str, Tensor]],
        indices: Indices,
        num_boxes: float,
        num_classes: int | None = None,
    ) -> Tensor:
        """Matchability-aware loss (DEIM): BCE towards ``IoU^g * one_hot`` (``g`` = ``mal_gamma``) with weight 1
        on positives, whatever their IoU (varifocal weights them by the IoU, so a low-IoU match, frequent early
        in training and with dense targets, barely teaches), and ``p^g`` on negatives. Same reduction as
        :meth:`loss_vfl`."""
        logits = out["pred_logits"]
        onehot, target = self._iou_targets(out, targets, indices, num_classes)
        weight = logits.detach().sigmoid().pow(self.mal_gamma) * (1 - onehot) + onehot
        return _weighted_bce(logits, target.pow(self.mal_gamma), weight, num_boxes)

    def loss_boxes(
        self, out: dict[str, Tensor], targets: list[dict[str, Tensor]], indices: Indices, num_boxes: float
    ) -> dict[str, Tensor]:
        """L1 on normalised cxcywh and ``1 - GIoU`` of matched pairs, each summed and divided by ``num_boxes``."""
        src, tgt = self._matched_boxes(out, targets, indices, self._src_idx(indices))
        if src.numel() == 0:
            zero = out["pred_boxes"].sum() * 0.0  # keeps the graph (DDP) while contributing nothing
            return {"loss_bbox": zero, "loss_giou": zero}
        l1 = F.l1_loss(src, tgt, reduction="sum") / num_boxes
        giou = (1 - paired_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))).sum() / num_boxes
        return {"loss_bbox": l1, "loss_giou": giou}

    def _group(
        self,
        out: dict[str, Tensor],
        targets: list[dict[str, Tensor]],
        indices: Indices,
        num_boxes: float,
        suffix: str,
        num_classes: int | None = None,
    ) -> dict[str, Tensor]:
        cls = self.loss_mal if self.cls_loss == "mal" else self.loss_vfl
        terms = {
            f"loss_{self.cls_loss}": cls(out, targets, indices, num_boxes, num_classes),
            **self.loss_boxes(out, targets, indices, num_boxes),
        }
        return {k + suffix: v * self.weight_dict[k] for k, v in terms.items() if k in self.weight_dict}

    @staticmethod
    def num_boxes(targets: list[dict[str, Tensor]], device: torch.device) -> float:
        """Ground-truth boxes per process, averaged over processes (all-reduce), at least 1."""
        count = float(sum(int(t["labels"].numel()) for t in targets))
        if not (dist.is_available() and dist.is_initialized()):
            return max(count, 1.0)  # (no device round trip: no synchronisation on a GPU)
        n = torch.tensor([count], device=device)
        dist.all_reduce(n)
        return max(float(n.item()) / dist.get_world_size(), 1.0)

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """
        Args:
            outputs: the model's training output dict (see :mod:`rtdetr.models.decoder`).
            targets: per image ``labels`` ``[N_i]`` int64 in ``[0, C)`` and ``boxes`` ``[N_i, 4]`` normalised
                cxcywh.

        Returns:
            Weighted loss terms; their sum is the training loss.
        """
        self._check_targets(targets)
        device = outputs["pred_logits"].device
        num_boxes = self.num_boxes(targets, device)
        # every Hungarian matching of the step first, with one device-to-CPU copy (one GPU synchronisation)
        groups: list[tuple[dict[str, Tensor], list[dict[str, Tensor]], str, float, int | None]] = []
        main = {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}
        groups.append((main, targets, "", num_boxes, None))
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            groups.append((aux, targets, f"_aux_{i}", num_boxes, None))
        agnostic = bool(outputs.get("enc_meta", {}).get("class_agnostic"))
        enc_targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets] if agnostic else targets
        for i, enc in enumerate(outputs.get("enc_aux_outputs", [])):
            groups.append((enc, enc_targets, f"_enc_{i}", num_boxes, 1 if agnostic else None))
        first = len(groups)  # the one-to-many branch's groups come after the denoising terms (the terms' order)
        if "o2m_outputs" in outputs:
            k = self.o2m_repeat
            many = [{"labels": t["labels"].repeat(k), "boxes": t["boxes"].repeat(k, 1)} for t in targets]
            for i, o2m in enumerate(outputs["o2m_outputs"]):
                groups.append((o2m, many, f"_o2m_{i}", num_boxes * k, None))
        matched = self.matcher.match_many([(out, tgts) for out, tgts, *_ in groups])
        losses: dict[str, Tensor] = {}
        for (out, tgts, suffix, n, classes), indices in zip(groups[:first], matched):
            losses.update(self._group(out, tgts, indices, n, suffix, classes))
        if "dn_aux_outputs" in outputs:
            dn_meta = outputs["dn_meta"]
            indices = denoising_indices(dn_meta, targets)
            dn_boxes = num_boxes * dn_meta["dn_num_group"]
            for i, dn in enumerate(outputs["dn_aux_outputs"]):
                losses.update(self._group(dn, targets, indices, dn_boxes, f"_dn_{i}"))
        for (out, tgts, suffix, n, classes), indices in zip(groups[first:], matched[first:]):
            losses.update(self._group(out, tgts, indices, n, suffix, classes))
        return losses

    def _invalid(self, labels: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """``[N]`` masks of the class ids outside ``[0, C)`` and of the cxcywh boxes that are not finite or have a
        negative width/height."""
        return (labels < 0) | (labels >= self.num_classes), ~torch.isfinite(boxes).all(1) | (boxes[:, 2:] < 0).any(1)

    def _check_targets(self, targets: list[dict[str, Tensor]]) -> None:
        """Raise ValueError naming the first target with an invalid class id or box (:meth:`_invalid`). One
        read-back (one synchronisation on a GPU) for a valid batch."""
        if not targets:
            return
        bad_label, bad_box = self._invalid(
            torch.cat([t["labels"] for t in targets]), torch.cat([t["boxes"] for t in targets])
        )
        if not bool((bad_label | bad_box).any()):
            return
        for i, t in enumerate(targets):
            bad_label, bad_box = self._invalid(t["labels"], t["boxes"])
            if bool(bad_label.any()):
                ids = sorted(set(t["labels"].tolist()))[:10]
                raise ValueError(f"target {i} has class ids outside [0, {self.num_classes}): {ids}")
            if bool(bad_box.any()):
                raise ValueError(
                    f"target {i} has non-finite or negative-size boxes (cxcywh): {t['boxes'].tolist()[:5]}"
                )
