"""PResNet: ResNet-vd (deep 3-conv stem, avg-pool shortcut) as used by RT-DETR.

Stage table (blocks per stage; BasicBlock for 18/34, BottleNeck with expansion 4 for 50/101):

    depth | blocks          | out channels (C2..C5)
    ------+-----------------+----------------------
    18    | [2, 2, 2, 2]    | 64, 128, 256, 512
    34    | [3, 4, 6, 3]    | 64, 128, 256, 512
    50    | [3, 4, 6, 3]    | 256, 512, 1024, 2048
    101   | [3, 4, 23, 3]   | 256, 512, 1024, 2048

Input: ``[B, 3, H, W]`` RGB in ``[0, 1]`` (no mean/std normalisation, as in the official weights).
Output: the feature maps of ``return_idx`` stages (default strides 8/16/32).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from rtdetr.models.layers import ConvNormLayer, freeze_batch_norm, get_activation

__all__ = ["PResNet", "PRESNET_BLOCKS"]

PRESNET_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}


def _shortcut(ch_in: int, ch_out: int, stride: int, variant: str) -> nn.Module:
    """Projection shortcut; the 'd' variant average-pools before a stride-1 1x1 conv."""
    if variant == "d" and stride == 2:
        return nn.Sequential(
            OrderedDict(
                [
                    ("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)),
                    ("conv", ConvNormLayer(ch_in, ch_out, 1, 1)),
                ]
            )
        )
    return ConvNormLayer(ch_in, ch_out, 1, stride)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, ch_in: int, ch_out: int, stride: int, shortcut: bool, act: str = "relu", variant: str = "d"
    ) -> None:
        super().__init__()
        self.shortcut = shortcut
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out, stride, variant)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, act=act)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1, act=None)
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch2b(self.branch2a(x))
        short = x if self.shortcut else self.short(x)
        return self.act(out + short)


class BottleNeck(nn.Module):
    expansion = 4

    def __init__(
        self, ch_in: int, ch_out: int, stride: int, shortcut: bool, act: str = "relu", variant: str = "d"
    ) -> None:
        super().__init__()
        stride1, stride2 = (stride, 1) if variant == "a" else (1, stride)
        self.shortcut = shortcut
        self.branch2a = ConvNormLayer(ch_in, ch_out, 1, stride1, act=act)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, stride2, act=act)
        self.branch2c = ConvNormLayer(ch_out, ch_out * self.expansion, 1, 1)
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out * self.expansion, stride, variant)
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        short = x if self.shortcut else self.short(x)
        return self.act(out + short)


class Blocks(nn.Module):
    """One ResNet stage. Key: ``blocks.{i}``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[BottleNeck],
        ch_in: int,
        ch_out: int,
        count: int,
        stage_num: int,
        act: str,
        variant: str,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            stride = 2 if i == 0 and stage_num != 2 else 1
            self.blocks.append(block(ch_in, ch_out, stride, shortcut=i != 0, act=act, variant=variant))
            if i == 0:
                ch_in = ch_out * block.expansion

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PResNet(nn.Module):
    """ResNet-vd backbone.

    Args:
        depth: 18, 34, 50 or 101.
        variant: 'd' (vd: deep stem + avg-pool shortcut, stride on the 3x3) or 'a'/'b'/'c' for ablations.
        return_idx: stage indices (0 = stride 4 ... 3 = stride 32) whose outputs are returned.
        freeze_at: ``-1`` freezes nothing; ``k >= 0`` freezes the stem and the first ``k`` stages.
        freeze_norm: replace every BatchNorm by ``FrozenBatchNorm2d`` (official R50/R101 setting).
    """

    def __init__(
        self,
        depth: int = 50,
        variant: str = "d",
        num_stages: int = 4,
        return_idx: tuple[int, ...] = (1, 2, 3),
        act: str = "relu",
        freeze_at: int = -1,
        freeze_norm: bool = False,
    ) -> None:
        super().__init__()
        if depth not in PRESNET_BLOCKS:
            raise ValueError(f"PResNet depth must be one of {sorted(PRESNET_BLOCKS)}, got {depth}")
        if not return_idx or max(return_idx) >= num_stages:
            raise ValueError(f"return_idx {return_idx} must select among {num_stages} stages")
        block_nums = PRESNET_BLOCKS[depth]
        ch_in = 64
        if variant in ("c", "d"):
            stem = [
                (3, ch_in // 2, 3, 2, "conv1_1"),
                (ch_in // 2, ch_in // 2, 3, 1, "conv1_2"),
                (ch_in // 2, ch_in, 3, 1, "conv1_3"),
            ]
        else:
            stem = [(3, ch_in, 7, 2, "conv1_1")]
        self.conv1 = nn.Sequential(
            OrderedDict((name, ConvNormLayer(ci, co, k, s, act=act)) for ci, co, k, s, name in stem)
        )
        block: type[BasicBlock] | type[BottleNeck] = BottleNeck if depth >= 50 else BasicBlock
        widths = (64, 128, 256, 512)
        out_channels = [block.expansion * w for w in widths]
        out_strides = [4, 8, 16, 32]
        self.res_layers = nn.ModuleList()
        for i in range(num_stages):
            self.res_layers.append(Blocks(block, ch_in, widths[i], block_nums[i], i + 2, act, variant))
            ch_in = out_channels[i]
        self.return_idx = tuple(return_idx)
        self.out_channels = tuple(out_channels[i] for i in self.return_idx)
        self.out_strides = tuple(out_strides[i] for i in self.return_idx)

        if freeze_at >= 0:
            self._freeze(self.conv1)
            for i in range(min(freeze_at, num_stages)):
                self._freeze(self.res_layers[i])
        if freeze_norm:
            freeze_batch_norm(self)

    @staticmethod
    def _freeze(module: nn.Module) -> None:
        for p in module.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W] -> [[B, C_i, H / s_i, W / s_i] for i in return_idx]``."""
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        outs = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs
