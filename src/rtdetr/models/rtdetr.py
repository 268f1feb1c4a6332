"""RT-DETR: backbone -> hybrid encoder -> decoder. The forward pass never computes a loss."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from rtdetr.config import ModelConfig
from rtdetr.models.backbones import build_backbone
from rtdetr.models.decoder import RTDETRDecoder
from rtdetr.models.encoder import HybridEncoder
from rtdetr.models.layers import RepVggBlock, fuse_conv_bn_pairs

__all__ = ["RTDETR", "build_model"]


class RTDETR(nn.Module):
    """The detector. Keys: ``backbone.*``, ``encoder.*``, ``decoder.*`` (official ``rtdetrv2_pytorch`` names).

    Input: ``[B, 3, H, W]`` RGB in ``[0, 1]`` (no mean/std normalisation); any ``H, W`` (multiples of 32 match
    the official models exactly). Output: see :mod:`rtdetr.models.decoder`.
    """

    def __init__(
        self, backbone: nn.Module, encoder: HybridEncoder, decoder: RTDETRDecoder, config: ModelConfig | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.config = config
        self.deployed = False

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> dict:
        """``images`` ``[B, 3, H, W]``; ``targets`` (training only) feed the denoising queries."""
        return self.decoder(self.encoder(self.backbone(images)), targets)

    @property
    def num_decoder_layers(self) -> int:
        return self.decoder.decoder.num_layers

    @property
    def decoder_depth(self) -> int:
        """Decoder layers run at inference (``eval_idx + 1``)."""
        return self.decoder.eval_idx + 1

    def set_decoder_depth(self, depth: int) -> RTDETR:
        """Run only the first ``depth`` decoder layers at inference (no retraining; paper Table 5)."""
        n = self.num_decoder_layers
        if not 1 <= depth <= n:
            raise ValueError(f"decoder depth must be in 1..{n}, got {depth}")
        self.decoder.eval_idx = depth - 1
        return self

    def deploy(self) -> RTDETR:
        """Switch to eval and re-parameterise for inference: RepVGG branches and every Conv+BN pair are fused.

        One-way: a deployed model cannot be trained or reloaded from an unfused state dict.
        """
        self.eval()
        for m in self.modules():
            if isinstance(m, RepVggBlock):
                m.convert_to_deploy()
        fuse_conv_bn_pairs(self)
        self.deployed = True
        return self

    def train(self, mode: bool = True) -> RTDETR:
        if mode and self.deployed:
            raise RuntimeError("a deployed (fused) model cannot be trained; rebuild it from its checkpoint")
        return super().train(mode)


def build_model(cfg: ModelConfig) -> RTDETR:
    """Construct an :class:`RTDETR` from a :class:`ModelConfig` (randomly initialised)."""
    backbone = build_backbone(cfg.backbone)
    enc_cfg = cfg.encoder
    out_channels = tuple(getattr(backbone, "out_channels", ()))
    if out_channels != tuple(enc_cfg.in_channels):
        raise ValueError(f"backbone gives channels {out_channels} but encoder.in_channels is {enc_cfg.in_channels}")
    encoder = HybridEncoder(**dataclasses.asdict(enc_cfg))
    dec = dataclasses.asdict(cfg.decoder)
    decoder = RTDETRDecoder(num_classes=cfg.num_classes, eval_spatial_size=cfg.eval_spatial_size, **dec)
    return RTDETR(backbone, encoder, decoder, config=cfg)
