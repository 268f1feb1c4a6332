"""Multi-scale deformable attention in pure PyTorch (bilinear ``grid_sample`` or RT-DETRv2 discrete sampling).

Axis letters: ``B`` batch, ``Q`` queries, ``H`` heads, ``C`` channels per head, ``L`` levels, ``P`` sampling
points of one level, ``S = sum_l P_l`` all points of a head, ``V = sum_l h_l * w_l`` value tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MSDeformableAttention", "deformable_attention_core"]


def deformable_attention_core(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    num_points: Sequence[int],
    method: str = "default",
) -> Tensor:
    """Sample each level at the given locations and sum with the attention weights.

    Args:
        value: ``[B, V, H, C]``, the levels' tokens concatenated in row-major order.
        spatial_shapes: ``(h_l, w_l)`` per level, ``sum(h_l * w_l) == V``.
        sampling_locations: ``[B, Q, H, S, 2]`` normalised ``(x, y)`` in ``[0, 1]`` (outside = zero padding for
            bilinear, clamped to the border for discrete); points grouped level-major.
        attention_weights: ``[B, Q, H, S]`` (softmax-normalised over ``S``).
        num_points: ``P_l`` per level, ``sum == S``.
        method: ``"default"`` (bilinear, ``align_corners=False``) or ``"discrete"`` (nearest cell via
            ``int(loc * size + 0.5)`` and a gather; exportable where GridSample is not).

    Returns:
        ``[B, Q, H * C]``.
    """
    b, _, n_heads, c = value.shape
    q = sampling_locations.shape[1]
    values = value.permute(0, 2, 3, 1).flatten(0, 1).split([h * w for h, w in spatial_shapes], dim=-1)
    locs = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [B*H, Q, S, 2]
    locs_per_level = locs.split(list(num_points), dim=-2)
    sampled = []
    for (h, w), v, loc in zip(spatial_shapes, values, locs_per_level):
        if method == "default":
            v = v.reshape(b * n_heads, c, h, w)
            sampled.append(F.grid_sample(v, 2 * loc - 1, mode="bilinear", padding_mode="zeros", align_corners=False))
        elif method == "discrete":
            size = torch.tensor([w, h], device=loc.device, dtype=loc.dtype)
            xy = (loc * size + 0.5).to(torch.int64)
            x = xy[..., 0].clamp(0, w - 1)
            y = xy[..., 1].clamp(0, h - 1)
            idx = (y * w + x).flatten(1)  # [B*H, Q*P_l]
            g = torch.gather(v, 2, idx[:, None, :].expand(-1, c, -1))  # [B*H, C, Q*P_l]
            sampled.append(g.reshape(b * n_heads, c, q, -1))
        else:
            raise ValueError(f"unknown deformable sampling method {method!r}")
    weights = attention_weights.permute(0, 2, 1, 3).reshape(b * n_heads, 1, q, -1)
    out = (torch.cat(sampled, dim=-1) * weights).sum(-1)  # [B*H, C, Q]
    return out.reshape(b, n_heads * c, q).permute(0, 2, 1)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention from queries to multi-scale memory, with box-relative offsets.

    Sampling location of point ``p`` of level ``l``: ``ref_xy + offset * (1 / P_l) * ref_wh * offset_scale``.

    Keys: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj`` and (v2) the buffer
    ``num_points_scale``.
    """

    num_points_scale: Tensor

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int | Sequence[int] = 4,
        method: str = "default",
        offset_scale: float = 0.5,
        persistent_scale: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points_list = [num_points] * num_levels if isinstance(num_points, int) else list(num_points)
        if len(self.num_points_list) != num_levels:
            raise ValueError(f"num_points {num_points} must give one count per level ({num_levels})")
        self.method = method
        self.offset_scale = offset_scale
        total = num_heads * sum(self.num_points_list)
        self.sampling_offsets = nn.Linear(embed_dim, total * 2)
        self.attention_weights = nn.Linear(embed_dim, total)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        scale = [1.0 / n for n in self.num_points_list for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32), persistent=persistent_scale)
        self._reset_parameters()
        if method == "discrete":  # rounding is not differentiable: the offsets stay as trained with grid_sample
            self.sampling_offsets.requires_grad_(False)

    @torch.no_grad()
    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid[:, None, :].repeat(1, sum(self.num_points_list), 1)
        scaling = torch.cat([torch.arange(1, n + 1, dtype=torch.float32) for n in self.num_points_list])
        self.sampling_offsets.bias.copy_((grid * scaling[None, :, None]).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value: Tensor,
        value_spatial_shapes: Sequence[tuple[int, int]],
        value_mask: Tensor | None = None,
    ) -> Tensor:
        """
        Args:
            query: ``[B, Q, D]`` (content + positional embedding).
            reference_points: ``[B, Q, 1, 4]`` normalised cxcywh boxes (shared by all levels).
            value: ``[B, V, D]`` flattened multi-scale memory.
            value_spatial_shapes: ``(h_l, w_l)`` per level.
            value_mask: optional ``[B, V]``; False/0 zeroes a token.

        Returns:
            ``[B, Q, D]``.
        """
        b, q, _ = query.shape
        if reference_points.shape[-1] != 4:
            raise ValueError(
                f"MSDeformableAttention expects 4-d (cxcywh) reference boxes, got last dim {reference_points.shape[-1]}"
            )
        n_heads, head_dim, s = self.num_heads, self.embed_dim // self.num_heads, sum(self.num_points_list)
        v = self.value_proj(value)
        if value_mask is not None:
            v = v * value_mask.to(v.dtype).unsqueeze(-1)
        v = v.reshape(b, v.shape[1], n_heads, head_dim)
        if b > 1:  # [B, H, V, C] in memory, viewed as the [B, V, H, C] the core takes: its per-head [B*H, C, V] view
            # is then free and keeps channels innermost, where grid_sample reads fastest (at batch 1 it is already);
            # the core's own copy to [B, H, C, V] cost r18vd at 640, batch 8, 30 ms per image (benchmarks/batch_cost.py)
            v = v.transpose(1, 2).contiguous().transpose(1, 2)
        offsets = self.sampling_offsets(query).reshape(b, q, n_heads, s, 2)
        weights = self.attention_weights(query).reshape(b, q, n_heads, s).softmax(-1)
        scale = self.num_points_scale.to(query.dtype)[:, None]  # [S, 1]
        offset = offsets * scale * reference_points[:, :, None, :, 2:] * self.offset_scale
        locations = reference_points[:, :, None, :, :2] + offset  # [B, Q, H, S, 2]
        out = deformable_attention_core(v, value_spatial_shapes, locations, weights, self.num_points_list, self.method)
        return self.output_proj(out)
