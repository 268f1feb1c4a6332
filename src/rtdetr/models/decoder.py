"""RT-DETR decoder (paper Sec. 4.3): query selection, deformable-attention layers, iterative box refinement,
denoising training, and a decoder depth chosen at inference.

Output dict (boxes are normalised cxcywh in ``[0, 1]``, logits are pre-sigmoid):
    ``pred_logits`` ``[B, Q, C]``, ``pred_boxes`` ``[B, Q, 4]`` from layer ``eval_idx`` at inference and from the
    last layer in training. Training adds ``aux_outputs`` (layers ``0..L-2``), ``enc_aux_outputs`` (the top-k
    encoder proposals), ``enc_meta``, with targets ``dn_aux_outputs`` (one per layer) and ``dn_meta``, and with
    :attr:`RTDETRDecoder.num_o2m_queries` > 0 ``o2m_outputs`` (one per layer) of the one-to-many branch.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from rtdetr.models.deform_attn import MSDeformableAttention
from rtdetr.models.denoising import DenoisingGroup, build_denoising_group
from rtdetr.models.layers import MLP, conv_bn, get_activation, self_attention
from rtdetr.models.query_selection import gather_tokens, generate_anchors, topk_indices
from rtdetr.ops.boxes import inverse_sigmoid

__all__ = ["RTDETRDecoder", "TransformerDecoder", "TransformerDecoderLayer"]


class TransformerDecoderLayer(nn.Module):
    """Post-norm layer: self-attention, deformable cross-attention, FFN.

    Keys: ``self_attn``, ``norm1``, ``cross_attn``, ``norm2``, ``linear1``, ``linear2``, ``norm3``.
    """

    def __init__(
        self,
        d_model: int = 256,
        n_head: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        n_levels: int = 3,
        n_points: int | Sequence[int] = 4,
        method: str = "default",
        offset_scale: float = 0.5,
        persistent_scale: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(
            d_model, n_head, n_levels, n_points, method, offset_scale, persistent_scale
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(
        self,
        target: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        attn_mask: Tensor | None,
        query_pos: Tensor,
    ) -> Tensor:
        """``target``/``query_pos`` ``[B, Q, D]``; ``reference_points`` ``[B, Q, 1, 4]``; ``memory`` ``[B, V, D]``."""
        q = k = target + query_pos
        attn = self_attention(self.self_attn, q, k, target, attn_mask)
        target = self.norm1(target + self.dropout1(attn))
        cross = self.cross_attn(target + query_pos, reference_points, memory, spatial_shapes)
        target = self.norm2(target + self.dropout2(cross))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        return self.norm3(target + self.dropout4(ffn))


class TransformerDecoder(nn.Module):
    """Stack of decoder layers with look-forward-twice box refinement. Key: ``layers.{i}``."""

    def __init__(self, layer_kwargs: dict, num_layers: int, eval_idx: int = -1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerDecoderLayer(**layer_kwargs) for _ in range(num_layers))
        self.num_layers = num_layers
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx

    def forward(
        self,
        target: Tensor,
        ref_unact: Tensor,
        memory: Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        bbox_head: nn.ModuleList,
        score_head: nn.ModuleList,
        query_pos_head: nn.Module,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(boxes [L', B, Q, 4], logits [L', B, Q, C])``: every layer in training, layer ``eval_idx``
        only at inference (later layers are skipped)."""
        ref_detach = ref_unact.sigmoid()
        ref = ref_detach
        boxes, logits = [], []
        out = target
        for i, layer in enumerate(self.layers):
            query_pos = query_pos_head(ref_detach)
            out = layer(out, ref_detach.unsqueeze(2), memory, spatial_shapes, attn_mask, query_pos)
            inter = (bbox_head[i](out) + inverse_sigmoid(ref_detach)).sigmoid()
            if self.training:
                logits.append(score_head[i](out))
                boxes.append(inter if i == 0 else (bbox_head[i](out) + inverse_sigmoid(ref)).sigmoid())
            elif i == self.eval_idx:
                logits.append(score_head[i](out))
                boxes.append(inter)
                break
            ref = inter
            ref_detach = inter.detach()
        return torch.stack(boxes), torch.stack(logits)


class RTDETRDecoder(nn.Module):
    """The detection transformer behind the hybrid encoder (official ``RTDETRTransformer``/``...v2``).

    Args mirror :class:`rtdetr.config.DecoderConfig`; ``eval_spatial_size`` ``(h, w)`` precomputes anchors.
    """

    anchors: Tensor
    valid_mask: Tensor

    def __init__(
        self,
        num_classes: int = 80,
        hidden_dim: int = 256,
        num_queries: int = 300,
        feat_channels: Sequence[int] = (256, 256, 256),
        feat_strides: Sequence[int] = (8, 16, 32),
        num_levels: int = 3,
        num_points: Sequence[int] = (4, 4, 4),
        nhead: int = 8,
        num_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        learn_query_content: bool = False,
        eval_spatial_size: tuple[int, int] | None = (640, 640),
        eval_idx: int = -1,
        eps: float = 1e-2,
        cross_attn_method: str = "default",
        query_select_method: str = "default",
        offset_scale: float = 0.5,
        version: str = "v2",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_queries = num_queries
        self.feat_strides = list(feat_strides)
        self.num_levels = num_levels
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.learn_query_content = learn_query_content
        self.eps = eps
        self.query_select_method = query_select_method
        self.num_o2m_queries = 0
        """Training only: queries of a one-to-many branch (H-DETR hybrid matching), the top encoder proposals
        decoded a second time in a group that no other query sees and that sees no other; set by the trainer
        (``train.o2m_queries``). No parameters; inference is unchanged."""
        self.eval_spatial_size = tuple(eval_spatial_size) if eval_spatial_size else None
        v2 = version == "v2"

        self.input_proj = nn.ModuleList(conv_bn(c, hidden_dim, 1) for c in feat_channels)
        in_ch = feat_channels[-1]
        for _ in range(num_levels - len(feat_channels)):
            self.input_proj.append(conv_bn(in_ch, hidden_dim, 3, 2))
            in_ch = hidden_dim

        layer_kwargs = dict(
            d_model=hidden_dim,
            n_head=nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            n_levels=num_levels,
            n_points=tuple(num_points),
            method=cross_attn_method,
            offset_scale=offset_scale,
            persistent_scale=v2,
        )
        self.decoder = TransformerDecoder(layer_kwargs, num_layers, eval_idx)

        self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
        if num_denoising <= 0:  # kept for checkpoint compatibility; unused, so frozen (DDP needs every grad)
            self.denoising_class_embed.requires_grad_(False)
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        linear, norm = nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim)
        self.enc_output = (
            nn.Sequential(OrderedDict([("proj", linear), ("norm", norm)])) if v2 else nn.Sequential(linear, norm)
        )
        enc_classes = 1 if query_select_method == "agnostic" else num_classes
        self.enc_score_head = nn.Linear(hidden_dim, enc_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_layers))

        self._anchor_shapes: list[tuple[int, int]] | None = None
        if self.eval_spatial_size is not None:
            h, w = self.eval_spatial_size
            shapes = self._level_shapes(h, w)
            anchors, valid = generate_anchors(shapes, eps=eps)
            self.register_buffer("anchors", anchors, persistent=v2)
            self.register_buffer("valid_mask", valid, persistent=v2)
            self._anchor_shapes = shapes
        self._reset_parameters()

    def _level_shapes(self, h: int, w: int) -> list[tuple[int, int]]:
        strides = self.feat_strides + [
            self.feat_strides[-1] * 2 ** (i + 1) for i in range(self.num_levels - len(self.feat_strides))
        ]
        return [(math.ceil(h / s), math.ceil(w / s)) for s in strides]

    @torch.no_grad()
    def _reset_parameters(self) -> None:
        prior = -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(self.enc_score_head.bias, prior)
        heads = [self.enc_bbox_head, *self.dec_bbox_head]
        for head in heads:
            nn.init.zeros_(cast(MLP, head).last.weight)
            nn.init.zeros_(cast(MLP, head).last.bias)
        for cls in self.dec_score_head:
            nn.init.constant_(cast(nn.Linear, cls).bias, prior)
        nn.init.xavier_uniform_(cast(nn.Linear, self.enc_output[0]).weight)
        if self.learn_query_content:
            nn.init.xavier_uniform_(self.tgt_embed.weight)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(cast(nn.Linear, layer).weight)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(cast(nn.Conv2d, cast(nn.Sequential, proj)[0]).weight)

    @property
    def eval_idx(self) -> int:
        """Index of the decoder layer used at inference."""
        return self.decoder.eval_idx

    @eval_idx.setter
    def eval_idx(self, idx: int) -> None:
        n = self.decoder.num_layers
        if not -n <= idx < n:
            raise ValueError(f"eval_idx {idx} out of range for a {n}-layer decoder")
        self.decoder.eval_idx = idx % n

    def _flatten_memory(self, feats: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(feats), self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == len(feats) else proj[-1]))
        shapes = [(int(p.shape[2]), int(p.shape[3])) for p in proj]
        memory = torch.cat([p.flatten(2).permute(0, 2, 1) for p in proj], 1)
        return memory, shapes

    def _anchors(self, shapes: list[tuple[int, int]], memory: Tensor) -> tuple[Tensor, Tensor]:
        """Anchor logits in at least float32, as the official code keeps them: under autocast the memory is
        fp16/bf16, and anchors of that precision would carry every reference box after them (query selection,
        each layer's refinement, the sampling locations) in it; bf16 rounds a box coordinate to ~0.4%."""
        dtype = torch.promote_types(memory.dtype, torch.float32)
        if not self.training and self._anchor_shapes == shapes:
            return self.anchors.to(dtype), self.valid_mask
        return generate_anchors(shapes, eps=self.eps, device=memory.device, dtype=dtype)

    def forward(self, feats: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> dict:
        """
        Args:
            feats: encoder maps ``[[B, D_i, H_i, W_i]]``, fine to coarse.
            targets: training only, for denoising: per image ``labels`` ``[N]`` and ``boxes`` ``[N, 4]``
                (normalised cxcywh). Ignored in eval mode.
        """
        memory, shapes = self._flatten_memory(feats)
        b = memory.shape[0]
        # an input so small that the memory has fewer tokens than queries yields one query per token
        num_queries = min(self.num_queries, memory.shape[1])
        dn: DenoisingGroup | None = None
        if self.training and targets is not None:
            dn = build_denoising_group(
                targets,
                self.num_classes,
                num_queries,
                self.denoising_class_embed,
                self.num_denoising,
                self.label_noise_ratio,
                self.box_noise_scale,
            )

        anchors, valid = self._anchors(shapes, memory)
        # the valid mask applies to query selection only: cross-attention reads the unmasked memory, as in the
        # official code (a masked copy here zeroes the border tokens that sampling points near the edge read)
        out_memory = self.enc_output(valid.to(memory.dtype) * memory)
        enc_logits = self.enc_score_head(out_memory)
        n_o2m = min(self.num_o2m_queries, memory.shape[1]) if self.training else 0
        if n_o2m and self.learn_query_content:
            raise ValueError("the one-to-many branch (num_o2m_queries) needs learn_query_content=False")
        # rank tokens by score first, then regress boxes for the selected ones only: identical results to
        # running the box head over all V tokens (it is per token), at a fraction of the cost
        idx = topk_indices(enc_logits, max(num_queries, n_o2m), self.query_select_method)
        topk_memory, topk_logits = gather_tokens(out_memory, idx), gather_tokens(enc_logits, idx)
        topk_coords = self.enc_bbox_head(topk_memory) + gather_tokens(anchors, idx)
        enc_topk_boxes = topk_coords[:, :num_queries].sigmoid()
        content = (
            self.tgt_embed.weight[:num_queries].unsqueeze(0).expand(b, -1, -1)
            if self.learn_query_content
            else topk_memory[:, :num_queries].detach()
        )
        ref_unact = topk_coords[:, :num_queries].detach()
        attn_mask, n_dn = None, 0
        if dn is not None:
            content = torch.cat([dn.content, content], 1)
            ref_unact = torch.cat([dn.ref_unact, ref_unact], 1)
            attn_mask, n_dn = dn.attn_mask, dn.num_split[0]
        if n_o2m:  # [dn | one-to-one | one-to-many]; the last group and the rest cannot see each other
            content = torch.cat([content, topk_memory[:, :n_o2m].detach()], 1)
            ref_unact = torch.cat([ref_unact, topk_coords[:, :n_o2m].detach()], 1)
            attn_mask = _append_isolated_group(attn_mask, n_dn + num_queries, n_o2m, memory.device)

        boxes, logits = self.decoder(
            content, ref_unact, memory, shapes, self.dec_bbox_head, self.dec_score_head, self.query_pos_head, attn_mask
        )
        dn_boxes, dn_logits = boxes[:, :, :n_dn], logits[:, :, :n_dn]
        o2m_boxes, o2m_logits = boxes[:, :, n_dn + num_queries :], logits[:, :, n_dn + num_queries :]
        boxes, logits = boxes[:, :, n_dn : n_dn + num_queries], logits[:, :, n_dn : n_dn + num_queries]

        out: dict = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.training:
            out["aux_outputs"] = [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])]
            out["enc_aux_outputs"] = [{"pred_logits": topk_logits[:, :num_queries], "pred_boxes": enc_topk_boxes}]
            out["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
            if dn is not None:
                out["dn_aux_outputs"] = [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(dn_logits, dn_boxes)]
                out["dn_meta"] = dn.meta()
            if n_o2m:
                out["o2m_outputs"] = [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(o2m_logits, o2m_boxes)]
        return out


def _append_isolated_group(mask: Tensor | None, size: int, extra: int, device: torch.device) -> Tensor:
    """``[size + extra, size + extra]`` bool attention mask (True = blocked): ``mask`` (``[size, size]`` or None:
    nothing blocked) for the first ``size`` queries, and ``extra`` more that see only each other."""
    out = torch.ones((size + extra, size + extra), dtype=torch.bool, device=device)
    out[:size, :size] = mask if mask is not None else False
    out[size:, size:] = False
    return out
