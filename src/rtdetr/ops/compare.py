"""Comparing two implementations' raw outputs (deploy, export, conversion and parity against reference code),
and the adversarial set-up that makes such comparisons able to fail."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

__all__ = ["denoising_noise_on_cpu", "max_query_set_diff", "randomize_for_parity", "topk_cut_gap", "untied_input"]


def max_query_set_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """Largest difference between two outputs compared as *sets* of queries.

    Encoder top-k ranks queries by score; where scores tie or nearly tie (common with random weights, possible
    with trained ones), float-rounding differences between two equivalent computations can swap queries. Each
    query of ``a`` is therefore paired with one of ``b`` by an optimal assignment on the concatenated logits and
    boxes (max-norm cost) before the worst difference is taken.

    Args:
        a, b: ``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]``.
    """
    worst = 0.0
    for la, ba, lb, bb in zip(a["pred_logits"], a["pred_boxes"], b["pred_logits"], b["pred_boxes"]):
        fa = torch.cat([la, ba], -1).detach().double().cpu()
        fb = torch.cat([lb, bb], -1).detach().double().cpu()
        cost = torch.cdist(fa, fb, p=float("inf"))
        rows, cols = linear_sum_assignment(cost.numpy())
        worst = max(worst, float(cost[rows, cols].max()))
    return worst


@torch.no_grad()
def randomize_for_parity(model: nn.Module) -> None:
    """Redraw every parameter and statistic of an RT-DETR model (ours, official or HF naming) away from its
    structured initialisation, so that a comparison can see every tensor.

    Weights are drawn at ``1/sqrt(fan_in)``, which keeps activations of order one through 100 layers; norm scales
    in ``[0.5, 1.5]``, biases and running means around 0, running variances in ``[0.5, 1.5]``. Then: sampling
    offsets are made large (several box sizes) and box heads predict large boxes, so that sampling points cross
    every image border; encoder class scores are spread (x8) so the top-k selection rarely nearly ties.
    Uses the global torch RNG.
    """
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, p[0].numel() ** -0.5)
        elif name.endswith("weight"):
            p.uniform_(0.5, 1.5)
        else:
            p.normal_(0.0, 0.1)
        if "sampling_offsets.weight" in name:
            p.normal_(0.0, 0.15)
        if ("bbox_head" in name or "bbox_embed" in name) and name.endswith("layers.2.bias"):
            p[2:].add_(1.5)  # width/height logits
        if name.endswith("enc_score_head.weight"):
            p.mul_(8.0)
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b.uniform_(0.5, 1.5)
        elif name.endswith("running_mean"):
            b.normal_(0.0, 0.1)
        elif name.endswith("weight") and b.dim() == 1:  # frozen BatchNorm affine buffers
            b.uniform_(0.5, 1.5)
        elif name.endswith("bias") and b.dim() == 1:
            b.normal_(0.0, 0.1)


class _Stop(Exception):
    pass


def topk_cut_gap(model: nn.Module, images: Tensor) -> float:
    """How far, over the images, the last encoder score selected as a query lies from any other score value.

    Exact ties are not counted: they are the invalid border tokens, whose memory is masked to zero, so they are
    identical queries and which of them is picked changes nothing. ``model`` is one of ours; its forward stops
    once the encoder scores exist.
    """

    def stop(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        raise _Stop(output.detach())

    decoder: Any = model.decoder
    handle = decoder.enc_score_head.register_forward_hook(stop)
    try:
        with torch.no_grad():
            model(images)
        raise RuntimeError("the encoder score head did not run")
    except _Stop as e:
        scores = e.args[0]
    finally:
        handle.remove()
    k = min(int(decoder.num_queries), scores.shape[1])
    best = scores.max(-1).values.sort(-1, descending=True).values
    cut = best[:, k - 1 : k]
    return float(torch.where(best == cut, torch.inf, (best - cut).abs()).min())


def untied_input(model: nn.Module, shape: Sequence[int], gap: float = 1e-6, tries: int = 20) -> Tensor:
    """A random image batch ``[B, 3, H, W]`` in ``[0, 1]`` (the model's dtype) whose top-k query selection has no
    near-tie at its cut: tokens scored within ``gap`` of each other there may swap between two correct
    implementations. ``gap`` 1e-6 suits float64 (rounding ~1e-12)."""
    dtype = next(model.parameters()).dtype
    for _ in range(tries):
        x = torch.rand(*shape, dtype=dtype)
        if topk_cut_gap(model, x) > gap:
            return x
    raise RuntimeError(f"no input without a near-tie at the top-k cut in {tries} draws")


@contextlib.contextmanager
def denoising_noise_on_cpu() -> Iterator[None]:
    """Inside, denoising groups draw their noise from the CPU generator whatever the model's device (then move
    it), so that ``torch.manual_seed(s)`` gives a CPU and a CUDA model the same groups; the draws on the CPU are
    the ones a CPU model makes anyway."""
    from rtdetr.models import denoising

    saved = denoising.NOISE_DEVICE
    denoising.NOISE_DEVICE = torch.device("cpu")
    try:
        yield
    finally:
        denoising.NOISE_DEVICE = saved
