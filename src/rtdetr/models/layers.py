"""Building blocks shared by backbones, encoder and decoder.

Module attribute names (``conv``, ``norm``, ``bottlenecks``, ``layers`` ...) are part of the public checkpoint
format: they equal the official ``rtdetrv2_pytorch`` names so that official state dicts load unchanged.

Deploy-time fusion relies on one invariant kept by every module in this package: a ``nn.Conv2d`` child that is
registered immediately before a batch-norm child is always applied as ``norm(conv(x))``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MLP",
    "ConvNormLayer",
    "CSPRepLayer",
    "FrozenBatchNorm2d",
    "RepVggBlock",
    "conv_bn",
    "freeze_batch_norm",
    "fuse_conv_bn",
    "fuse_conv_bn_pairs",
    "get_activation",
    "self_attention",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
    "identity": nn.Identity,
}


def self_attention(
    attn: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None
) -> Tensor:
    """``attn(query, key, value)`` without the weights: ``[B, L, D]`` each (batch first; ``attn_mask`` ``[L, L]``
    bool, True = blocked, as ``nn.MultiheadAttention`` takes it) -> ``[B, L, D]``.

    Under autocast on the CPU the projections run here, batch first: ``nn.MultiheadAttention`` there (its fast path
    is off under autocast) projects a sequence-first view, for which ``F.linear`` copies the weight once per token
    at batch > 1 (r18vd at 640, batch 8: 20 ms per image). Training, ``softmax(QK^T)V`` runs in fp32 between the
    bf16 projections: PyTorch's CPU flash-attention backward is slower in bf16 than in fp32 at every size measured
    (torch 2.13, AMX Xeon: 27 against 4.7 ms at the demo's 16 x 146 queries of 16 channels per head, 19 against
    16 ms at 4 x 500 of 32), while its forward is not. Elsewhere ``nn.MultiheadAttention`` runs."""
    if not (query.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
        return attn(query, key, value, attn_mask=attn_mask, need_weights=False)[0]
    batch, length, dim = query.shape
    heads, training = attn.num_heads, torch.is_grad_enabled()
    q, k, v = (
        F.linear(x, w, b).view(batch, x.shape[1], heads, dim // heads).transpose(1, 2)
        for x, w, b in zip((query, key, value), attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3))
    )
    if training:
        q, k, v = q.float(), k.float(), v.float()
    allowed = ~attn_mask if attn_mask is not None and attn_mask.dtype == torch.bool else attn_mask
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(q, k, v, allowed, attn.dropout if attn.training else 0.0)
    return cast(Tensor, attn.out_proj(out.transpose(1, 2).reshape(batch, length, dim).to(query.dtype)))


def get_activation(name: str | None) -> nn.Module:
    """Activation module by name (``relu``, ``silu``, ``gelu``, ...); ``None`` gives ``nn.Identity``."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, no ``num_batches_tracked``).

    Args:
        num_features: channel count ``C``; input and output are ``[B, C, H, W]``.
        eps: added to the variance, 1e-5 as in the official backbones.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)  # plain-BN checkpoints carry it; it means nothing here
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """Per-channel ``(scale, shift)`` such that ``y = x * scale + shift``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_shift()
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` below ``module`` (or ``module`` itself) by a ``FrozenBatchNorm2d``."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        if module.affine and module.weight is not None and module.bias is not None:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.running_mean is not None and module.running_var is not None:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batch_norm(child)
        if new is not child:
            setattr(module, name, new)
    return module


_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """Fold an eval-mode batch norm into the preceding convolution; returns a new conv with bias."""
    if isinstance(bn, FrozenBatchNorm2d):
        scale, shift = bn.scale_shift()
    elif isinstance(bn, nn.BatchNorm2d):
        assert bn.running_var is not None and bn.running_mean is not None
        weight = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        bias = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        scale = weight * (bn.running_var + bn.eps).rsqrt()
        shift = bias - bn.running_mean * scale
    else:
        raise TypeError(f"cannot fuse {type(bn).__name__} into a convolution")
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.dilation,  # type: ignore[arg-type]
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    assert fused.bias is not None
    fused.bias.copy_(conv_bias * scale + shift)
    return fused


def fuse_conv_bn_pairs(module: nn.Module) -> int:
    """Fold every (Conv2d, BatchNorm) sibling pair below ``module``; the norm becomes ``nn.Identity``.

    Returns:
        The number of pairs fused.
    """
    count = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, _NORMS):
                setattr(parent, name_a, fuse_conv_bn(a, b))
                setattr(parent, name_b, nn.Identity())
                count += 1
    return count


def conv_bn(
    ch_in: int, ch_out: int, kernel_size: int = 1, stride: int = 1, names: tuple[str, str] = ("conv", "norm")
) -> nn.Sequential:
    """``Sequential(conv without bias, BatchNorm2d)`` with the given child names (``conv/norm`` or ``0/1``)."""
    conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False)
    return nn.Sequential(OrderedDict([(names[0], conv), (names[1], nn.BatchNorm2d(ch_out))]))


class ConvNormLayer(nn.Module):
    """``act(norm(conv(x)))``; ``[B, C_in, H, W] -> [B, C_out, H', W']``. Keys: ``conv``, ``norm``."""

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = False,
        act: str | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(ch_in, ch_out, kernel_size, stride, padding=padding, bias=bias, groups=groups)
        self.norm: nn.Module = nn.BatchNorm2d(ch_out)
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class RepVggBlock(nn.Module):
    """RepVGG block without identity branch: ``act(bn(conv3x3(x)) + bn(conv1x1(x)))``.

    ``convert_to_deploy()`` re-parameterises both branches into one 3x3 convolution ``conv`` (with bias) and
    drops ``conv1``/``conv2``; the output is unchanged up to float rounding.
    """

    def __init__(self, ch_in: int, ch_out: int, act: str | None = "relu") -> None:
        super().__init__()
        self.ch_in = ch_in
        self.ch_out = ch_out
        self.conv1 = ConvNormLayer(ch_in, ch_out, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(ch_in, ch_out, 1, 1, padding=0)
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x) if hasattr(self, "conv") else self.conv1(x) + self.conv2(x)
        return self.act(y)

    @torch.no_grad()
    def convert_to_deploy(self) -> None:
        if hasattr(self, "conv"):
            return
        k3 = fuse_conv_bn(self.conv1.conv, self.conv1.norm)
        k1 = fuse_conv_bn(self.conv2.conv, self.conv2.norm)
        assert k3.bias is not None and k1.bias is not None
        k3.weight.add_(F.pad(k1.weight, [1, 1, 1, 1]))
        k3.bias.add_(k1.bias)
        self.conv = k3
        del self.conv1
        del self.conv2


class CSPRepLayer(nn.Module):
    """CSP layer of RepVGG blocks used by CCFF: ``conv3(bottlenecks(conv1(x)) + conv2(x))``.

    ``[B, C_in, H, W] -> [B, C_out, H, W]``; the hidden width is ``int(C_out * expansion)`` and ``conv3`` is an
    identity when the hidden width equals ``C_out``.
    """

    def __init__(
        self,
        ch_in: int,
        ch_out: int,
        num_blocks: int = 3,
        expansion: float = 1.0,
        bias: bool = False,
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden = int(ch_out * expansion)
        self.conv1 = ConvNormLayer(ch_in, hidden, 1, 1, bias=bias, act=act)
        self.conv2 = ConvNormLayer(ch_in, hidden, 1, 1, bias=bias, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3: nn.Module = (
            ConvNormLayer(hidden, ch_out, 1, 1, bias=bias, act=act) if hidden != ch_out else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last). Key: ``layers.{i}``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, act: str = "relu") -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))
        self.act = get_activation(act)

    @property
    def last(self) -> nn.Linear:
        """The output layer."""
        return cast(nn.Linear, self.layers[-1])

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
