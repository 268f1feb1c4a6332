"""HGNetv2 (PP-HGNetV2) backbone used by RT-DETR-L/X.

Stage table, one row per stage: ``(in, mid, out, blocks, downsample, light_block, kernel, layers)``:

    L: stem (3, 32, 48)
       (48, 48, 128, 1, F, F, 3, 6)    (128, 96, 512, 1, T, F, 3, 6)
       (512, 192, 1024, 3, T, T, 5, 6) (1024, 384, 2048, 1, T, T, 5, 6)
    X: stem (3, 32, 64)
       (64, 64, 128, 1, F, F, 3, 6)    (128, 128, 512, 2, T, F, 3, 6)
       (512, 256, 1024, 5, T, T, 5, 6) (1024, 512, 2048, 2, T, T, 5, 6)
    H: stem (3, 48, 96)
       (96, 96, 192, 2, F, F, 3, 6)    (192, 192, 512, 3, T, F, 3, 6)
       (512, 384, 1024, 6, T, T, 5, 6) (1024, 768, 2048, 3, T, T, 5, 6)

Output strides of stages 1..4 are 4, 8, 16, 32; ``return_idx`` (1, 2, 3) gives channels 512/1024/2048.
Input: ``[B, 3, H, W]`` RGB in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr.models.layers import freeze_batch_norm

__all__ = ["HGNetv2", "HGNETV2_ARCHS"]

# stem channels, then per stage: (in, mid, out, blocks, downsample, light_block, kernel, layers)
HGNETV2_ARCHS: dict[str, dict[str, Any]] = {
    "L": {
        "stem": (3, 32, 48),
        "stages": (
            (48, 48, 128, 1, False, False, 3, 6),
            (128, 96, 512, 1, True, False, 3, 6),
            (512, 192, 1024, 3, True, True, 5, 6),
            (1024, 384, 2048, 1, True, True, 5, 6),
        ),
    },
    "X": {
        "stem": (3, 32, 64),
        "stages": (
            (64, 64, 128, 1, False, False, 3, 6),
            (128, 128, 512, 2, True, False, 3, 6),
            (512, 256, 1024, 5, True, True, 5, 6),
            (1024, 512, 2048, 2, True, True, 5, 6),
        ),
    },
    "H": {
        "stem": (3, 48, 96),
        "stages": (
            (96, 96, 192, 2, False, False, 3, 6),
            (192, 192, 512, 3, True, False, 3, 6),
            (512, 384, 1024, 6, True, True, 5, 6),
            (1024, 768, 2048, 3, True, True, 5, 6),
        ),
    },
}


class LearnableAffineBlock(nn.Module):
    """``scale * x + bias`` with scalar learnable parameters (only when ``use_lab``)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale_value]))
        self.bias = nn.Parameter(torch.tensor([bias_value]))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    """``lab(act(bn(conv(x))))``. Keys: ``conv``, ``bn``, ``lab``."""

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        use_act: bool = True,
        use_lab: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            ch_in, ch_out, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False
        )
        self.bn: nn.Module = nn.BatchNorm2d(ch_out)
        self.act: nn.Module = nn.ReLU() if use_act else nn.Identity()
        self.lab: nn.Module = LearnableAffineBlock() if (use_act and use_lab) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class LightConvBNAct(nn.Module):
    """1x1 conv (no act) followed by a depthwise ``k x k`` conv with act."""

    def __init__(self, ch_in: int, ch_out: int, kernel_size: int, use_lab: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(ch_in, ch_out, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(ch_out, ch_out, kernel_size, groups=ch_out, use_act=True, use_lab=use_lab)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Two-branch stem: stride 4 overall. ``[B, 3, H, W] -> [B, out, H/4, W/4]``."""

    def __init__(self, ch_in: int, ch_mid: int, ch_out: int, use_lab: bool = False) -> None:
        super().__init__()
        self.stem1 = ConvBNAct(ch_in, ch_mid, 3, stride=2, use_lab=use_lab)
        self.stem2a = ConvBNAct(ch_mid, ch_mid // 2, 2, stride=1, use_lab=use_lab)
        self.stem2b = ConvBNAct(ch_mid // 2, ch_mid, 2, stride=1, use_lab=use_lab)
        self.stem3 = ConvBNAct(ch_mid * 2, ch_mid, 3, stride=2, use_lab=use_lab)
        self.stem4 = ConvBNAct(ch_mid, ch_out, 1, stride=1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        x2 = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x1 = self.pool(x)
        return self.stem4(self.stem3(torch.cat([x1, x2], dim=1)))


class HGBlock(nn.Module):
    """``layer_num`` convs whose outputs (and the input) are concatenated, then squeezed and excited."""

    def __init__(
        self,
        ch_in: int,
        ch_mid: int,
        ch_out: int,
        layer_num: int,
        kernel_size: int,
        residual: bool,
        light_block: bool,
        use_lab: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(layer_num):
            c = ch_in if i == 0 else ch_mid
            if light_block:
                self.layers.append(LightConvBNAct(c, ch_mid, kernel_size, use_lab=use_lab))
            else:
                self.layers.append(ConvBNAct(c, ch_mid, kernel_size, use_lab=use_lab))
        total = ch_in + layer_num * ch_mid
        self.aggregation_squeeze_conv = ConvBNAct(total, ch_out // 2, 1, use_lab=use_lab)
        self.aggregation_excitation_conv = ConvBNAct(ch_out // 2, ch_out, 1, use_lab=use_lab)

    def forward(self, x: Tensor) -> Tensor:
        outs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outs.append(y)
        y = self.aggregation_excitation_conv(self.aggregation_squeeze_conv(torch.cat(outs, dim=1)))
        return y + x if self.residual else y


class HGStage(nn.Module):
    """Optional depthwise stride-2 downsample, then ``block_num`` HG blocks. Keys: ``downsample``, ``blocks``."""

    def __init__(
        self,
        ch_in: int,
        ch_mid: int,
        ch_out: int,
        block_num: int,
        downsample: bool,
        light_block: bool,
        kernel_size: int,
        layer_num: int,
        use_lab: bool = False,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = (
            ConvBNAct(ch_in, ch_in, 3, stride=2, groups=ch_in, use_act=False, use_lab=use_lab)
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(
            *[
                HGBlock(
                    ch_in if i == 0 else ch_out,
                    ch_mid,
                    ch_out,
                    layer_num,
                    kernel_size,
                    residual=i != 0,
                    light_block=light_block,
                    use_lab=use_lab,
                )
                for i in range(block_num)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class HGNetv2(nn.Module):
    """HGNetv2 backbone.

    Args:
        arch: 'L', 'X' or 'H' (see the table in the module docstring).
        return_idx: stage indices whose outputs are returned (strides 4/8/16/32 for 0..3).
        freeze_at: ``-1`` freezes nothing; ``>= 0`` freezes the stem (and, unless ``freeze_stem_only``,
            stages ``0..freeze_at``).
        freeze_norm: replace every BatchNorm by ``FrozenBatchNorm2d``.
    """

    def __init__(
        self,
        arch: str = "L",
        return_idx: tuple[int, ...] = (1, 2, 3),
        use_lab: bool = False,
        freeze_at: int = 0,
        freeze_stem_only: bool = True,
        freeze_norm: bool = True,
    ) -> None:
        super().__init__()
        if arch not in HGNETV2_ARCHS:
            raise ValueError(f"HGNetv2 arch must be one of {sorted(HGNETV2_ARCHS)}, got {arch!r}")
        spec = HGNETV2_ARCHS[arch]
        ch_in, ch_mid, ch_out = spec["stem"]
        self.stem = StemBlock(ch_in, ch_mid, ch_out, use_lab=use_lab)
        self.stages = nn.ModuleList(
            HGStage(ci, cm, co, n, down, light, k, layers, use_lab=use_lab)
            for ci, cm, co, n, down, light, k, layers in spec["stages"]
        )
        self.return_idx = tuple(return_idx)
        self.out_channels = tuple(spec["stages"][i][2] for i in self.return_idx)
        self.out_strides = tuple((4, 8, 16, 32)[i] for i in self.return_idx)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        if freeze_at >= 0:
            for p in self.stem.parameters():
                p.requires_grad_(False)
            if not freeze_stem_only:
                for i in range(min(freeze_at + 1, len(self.stages))):
                    for p in self.stages[i].parameters():
                        p.requires_grad_(False)
        if freeze_norm:
            freeze_batch_norm(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W] -> [[B, C_i, H / s_i, W / s_i] for i in return_idx]``."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
