from __future__ import annotations

import pytest
import torch
from torch import nn

from rtdetr.models.layers import self_attention


def _mha(dropout: float = 0.0) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(32, 4, dropout=dropout, batch_first=True).double()
    for p in attn.parameters():  # every weight and bias drawn, none at its initial zero
        nn.init.normal_(p, std=0.3)
    return attn


def test_self_attention_under_cpu_autocast_is_multihead_attention_with_an_fp32_core() -> None:
    """Training under CPU autocast, self_attention runs its own projections and an fp32 softmax(QK^T)V (the bf16
    flash-attention backward is up to 6x slower there). Its arithmetic must be nn.MultiheadAttention's: the same
    output and gradients as the module itself, with the denoising mask (bool, True = blocked) and query, key and
    value all different, as the decoder calls it. float64 inputs are not cast by autocast, so only the fp32 core
    separates the two (tolerance 1e-5 of the largest value)."""
    attn = _mha()
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 7, 32, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.rand(7, 7, generator=g) > 0.6
    mask[:, 0] = False  # every query sees one key
    assert mask.any()
    for m in (mask, None):
        expected = attn(q, k, v, attn_mask=m, need_weights=False)[0]
        ref_grads = torch.autograd.grad(expected.pow(2).sum(), (q, k, v, attn.in_proj_weight))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self_attention(attn, q, k, v, m)
        assert out.shape == (3, 7, 32)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
        for ours, theirs in zip(torch.autograd.grad(out.pow(2).sum(), (q, k, v, attn.in_proj_weight)), ref_grads):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5 * theirs.abs().max().item())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # inference: its own projections too
        got, expected = self_attention(attn, q, k, v, mask), attn(q, k, v, attn_mask=mask, need_weights=False)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12 * expected.abs().max().item())


def test_self_attention_inference_under_bf16_autocast_is_batch_first_and_per_image() -> None:
    """Inference under bf16 autocast runs the projections batch first (the module projects a sequence-first
    view, copying the weight once per token at batch > 1): each image as alone, and within bf16 of the module."""
    attn = _mha().float().eval()
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4, 9, 32, generator=g) for _ in range(3))
    mask = torch.rand(9, 9, generator=g) > 0.6
    mask[:, 0] = False
    module_forward, calls = attn.forward, []
    attn.forward = lambda *a, **kw: calls.append(1) or module_forward(*a, **kw)  # type: ignore[method-assign]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = self_attention(attn, q, k, v, mask)
        alone = [self_attention(attn, q[i : i + 1], k[i : i + 1], v[i : i + 1], mask) for i in range(4)]
        assert not calls  # not through the module's sequence-first projections
        module = attn(q, k, v, attn_mask=mask, need_weights=False)[0]
    assert out.dtype == torch.bfloat16
    for i in range(4):
        torch.testing.assert_close(out[i : i + 1], alone[i], rtol=0, atol=0.02 * out.abs().max().item())
    torch.testing.assert_close(out.float(), module.float(), rtol=0, atol=0.03 * module.abs().max().item())


@pytest.mark.parametrize("training", [True, False])
def test_self_attention_drops_attention_weights_only_in_training(training: bool) -> None:
    attn = _mha(dropout=0.5).train(training)
    x = torch.randn(2, 9, 32, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = self_attention(attn, x, x, x), self_attention(attn, x, x, x)
    assert torch.equal(a, b) is not training
