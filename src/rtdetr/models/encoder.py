"""Efficient hybrid encoder (paper Sec. 4.2): AIFI intra-scale attention + CCFF cross-scale fusion.

Shapes: backbone maps ``S3, S4, S5`` of ``[B, C_i, H_i, W_i]`` (strides 8/16/32) in, three maps of
``[B, hidden_dim, H_i, W_i]`` out.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr.models.layers import ConvNormLayer, CSPRepLayer, conv_bn, get_activation, self_attention

__all__ = ["AIFI", "HybridEncoder", "TransformerEncoderLayer", "build_2d_sincos_position_embedding"]


def build_2d_sincos_position_embedding(
    height: int,
    width: int,
    embed_dim: int = 256,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """2-D sin-cos embedding for a row-major flattened ``height x width`` map.

    Returns:
        ``[1, height * width, embed_dim]`` laid out as ``[sin(y w), cos(y w), sin(x w), cos(x w)]`` with
        ``w_d = temperature ** (-d / (embed_dim / 4))``.

    For square maps this is the official formula, evaluated in float64 and rounded to ``dtype`` (the official
    code evaluates it in float32, a last-bit difference in float32). For non-square maps the official code
    indexes the grid transposed (a scrambled but deterministic encoding); we use the consistent row-major layout,
    which keeps the (row, column) meaning the weights were trained with on square inputs (HF transformers >= 5
    does the same).
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for the 2-D sin-cos embedding, got {embed_dim}")
    pos_dim = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float64, device=device) / pos_dim)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    out_y = ys.flatten()[:, None] * omega[None]
    out_x = xs.flatten()[:, None] * omega[None]
    pe = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    return pe[None].to(dtype)


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer layer: ``norm1(x + MHA(x + pos, x + pos, x))`` then ``norm2(x + FFN(x))``.

    Keys: ``self_attn.in_proj_weight`` (packed q, k, v), ``self_attn.out_proj``, ``linear1``, ``linear2``,
    ``norm1``, ``norm2``.
    """

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)

    def forward(self, src: Tensor, pos_embed: Tensor | None = None) -> Tensor:
        """``src``: ``[B, L, D]``; ``pos_embed``: ``[1, L, D]`` or None -> ``[B, L, D]``."""
        q = k = src if pos_embed is None else src + pos_embed
        attn = self_attention(self.self_attn, q, k, src)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class AIFI(nn.Module):
    """Attention-based intra-scale feature interaction: a stack of encoder layers. Key: ``layers.{i}``."""

    def __init__(self, layer_kwargs: dict, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, src: Tensor, pos_embed: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed=pos_embed)
        return src


class HybridEncoder(nn.Module):
    """AIFI on selected levels (the stride-32 map by default) followed by CCFF (top-down FPN + bottom-up PAN of
    CSPRep layers).

    Keys: ``input_proj.{i}``, ``encoder.{j}.layers.0``, ``lateral_convs.{k}``, ``fpn_blocks.{k}``,
    ``downsample_convs.{k}``, ``pan_blocks.{k}``; ``lateral_convs``/``fpn_blocks`` index 0 is the coarsest level.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (512, 1024, 2048),
        feat_strides: tuple[int, ...] = (8, 16, 32),
        hidden_dim: int = 256,
        use_encoder_idx: tuple[int, ...] = (2,),
        num_encoder_layers: int = 1,
        nhead: int = 8,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        enc_act: str = "gelu",
        expansion: float = 1.0,
        depth_mult: float = 1.0,
        act: str = "silu",
        pe_temperature: int = 10000,
        version: str = "v2",
    ) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.feat_strides = tuple(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = tuple(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.out_channels = tuple(hidden_dim for _ in in_channels)
        self.out_strides = self.feat_strides

        names = ("0", "1") if version == "v1" else ("conv", "norm")
        self.input_proj = nn.ModuleList(conv_bn(c, hidden_dim, 1, names=names) for c in in_channels)
        layer_kwargs = dict(
            d_model=hidden_dim, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout, activation=enc_act
        )
        self.encoder = nn.ModuleList(AIFI(layer_kwargs, num_encoder_layers) for _ in self.use_encoder_idx)

        num_blocks = round(3 * depth_mult)
        n = len(in_channels)
        self.lateral_convs = nn.ModuleList(ConvNormLayer(hidden_dim, hidden_dim, 1, 1, act=act) for _ in range(n - 1))
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion=expansion, act=act) for _ in range(n - 1)
        )
        self.downsample_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 3, 2, act=act) for _ in range(n - 1)
        )
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion=expansion, act=act) for _ in range(n - 1)
        )
        self._reset_parameters(version)

    def _reset_parameters(self, version: str) -> None:
        if version == "v2":
            for proj in self.input_proj:
                nn.init.xavier_uniform_(cast(nn.Conv2d, cast(nn.Sequential, proj)[0]).weight)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[[B, C_i, H_i, W_i]] -> [[B, hidden_dim, H_i, W_i]]`` for the same levels, fine to coarse."""
        if len(feats) != len(self.in_channels):
            raise ValueError(f"HybridEncoder expects {len(self.in_channels)} feature maps, got {len(feats)}")
        proj = [p(f) for p, f in zip(self.input_proj, feats)]
        for aifi, idx in zip(self.encoder, self.use_encoder_idx):
            b, c, h, w = proj[idx].shape
            src = proj[idx].flatten(2).permute(0, 2, 1)
            pos = build_2d_sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature, src.device, src.dtype)
            proj[idx] = aifi(src, pos).permute(0, 2, 1).reshape(b, c, h, w).contiguous()

        # top-down (FPN): the lateral output replaces the coarse entry before fusion
        n = len(self.in_channels)
        inner = [proj[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            high = self.lateral_convs[k](inner[0])
            inner[0] = high
            low = proj[idx - 1]
            up = F.interpolate(high, size=low.shape[-2:], mode="nearest")
            inner.insert(0, self.fpn_blocks[k](torch.cat([up, low], dim=1)))

        # bottom-up (PAN)
        outs = [inner[0]]
        for k in range(n - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, inner[k + 1]], dim=1)))
        return outs
