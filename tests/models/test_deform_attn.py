"""The pure-PyTorch deformable attention against a naive per-point float64 reference (Deformable-DETR's
test idea, as asserting tests), plus gradcheck and module-level checks."""

import math

import pytest
import torch

from rtdetr.models.deform_attn import MSDeformableAttention, deformable_attention_core

SHAPES = [(6, 5), (3, 4), (2, 1)]


def naive(value, shapes, locs, weights, num_points, method):  # noqa: ANN001, ANN201
    b_, _, h_, c_ = value.shape
    q_ = locs.shape[1]
    out = torch.zeros(b_, q_, h_, c_, dtype=value.dtype)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for b in range(b_):
        for q in range(q_):
            for head in range(h_):
                s = 0
                for lvl, (h, w) in enumerate(shapes):
                    grid = value[b, starts[lvl] : starts[lvl + 1], head].reshape(h, w, c_)
                    for _ in range(num_points[lvl]):
                        x, y = locs[b, q, head, s].tolist()
                        a = weights[b, q, head, s]
                        if method == "default":
                            px, py = x * w - 0.5, y * h - 0.5
                            x0, y0 = math.floor(px), math.floor(py)
                            for xi, yi, wt in (
                                (x0, y0, (x0 + 1 - px) * (y0 + 1 - py)),
                                (x0 + 1, y0, (px - x0) * (y0 + 1 - py)),
                                (x0, y0 + 1, (x0 + 1 - px) * (py - y0)),
                                (x0 + 1, y0 + 1, (px - x0) * (py - y0)),
                            ):
                                if 0 <= xi < w and 0 <= yi < h:
                                    out[b, q, head] += a * wt * grid[yi, xi]
                        else:
                            xi = min(max(int(x * w + 0.5), 0), w - 1)
                            yi = min(max(int(y * h + 0.5), 0), h - 1)
                            out[b, q, head] += a * grid[yi, xi]
                        s += 1
    return out.reshape(b_, q_, h_ * c_)


def _inputs(num_points, dtype=torch.float64):  # noqa: ANN001, ANN202
    b, q, h, c = 2, 4, 2, 3
    v = sum(hh * ww for hh, ww in SHAPES)
    s = sum(num_points)
    value = torch.randn(b, v, h, c, dtype=dtype)
    locs = torch.rand(b, q, h, s, 2, dtype=dtype) * 1.2 - 0.1  # some points fall outside the map
    weights = torch.rand(b, q, h, s, dtype=dtype).softmax(-1)
    return value, locs, weights


@pytest.mark.parametrize("method", ["default", "discrete"])
@pytest.mark.parametrize("num_points", [(4, 4, 4), (1, 3, 2)])
def test_core_matches_naive_reference(method: str, num_points: tuple[int, ...]) -> None:
    value, locs, weights = _inputs(num_points)
    got = deformable_attention_core(value, SHAPES, locs, weights, num_points, method)
    want = naive(value, SHAPES, locs, weights, num_points, method)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-10), (got - want).abs().max()


def test_gradcheck_bilinear() -> None:
    value, locs, weights = _inputs((2, 1, 1))
    locs = locs.clamp(0.05, 0.95)
    for t in (value, locs, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, lo, w: deformable_attention_core(v, SHAPES, lo, w, (2, 1, 1)), (value, locs, weights)
    )


def test_discrete_picks_cell_i_at_i_over_size() -> None:
    """Official discrete rule: ``int(x * W + 0.5)``, i.e. cell ``i`` sits at ``x = i / W`` (half a cell from
    grid_sample's centres at ``(i + 0.5) / W``)."""
    value, _, weights = _inputs((1, 1, 1))
    b, q, h = 2, 4, 2
    corner = torch.empty(b, q, h, 3, 2, dtype=torch.float64)
    centre = torch.empty_like(corner)
    for lvl, (hh, ww) in enumerate(SHAPES):
        xi = torch.randint(0, ww, (b, q, h))
        yi = torch.randint(0, hh, (b, q, h))
        corner[..., lvl, 0], corner[..., lvl, 1] = xi / ww, yi / hh
        centre[..., lvl, 0], centre[..., lvl, 1] = (xi + 0.5) / ww, (yi + 0.5) / hh
    a = deformable_attention_core(value, SHAPES, centre, weights, (1, 1, 1), "default")
    d = deformable_attention_core(value, SHAPES, corner, weights, (1, 1, 1), "discrete")
    assert torch.allclose(a, d, atol=1e-12)


def test_module_shapes_init_and_discrete_freezes_offsets() -> None:
    attn = MSDeformableAttention(32, 4, 3, (2, 3, 1))
    assert attn.num_points_scale.tolist() == pytest.approx([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 1.0])
    # initial offsets point each head in its own direction, scaled by the point index within a level
    bias = attn.sampling_offsets.bias.view(4, 6, 2)
    assert torch.allclose(bias[0, :, 0], torch.tensor([1.0, 2.0, 1.0, 2.0, 3.0, 1.0]))
    q, v = torch.randn(2, 5, 32), torch.randn(2, sum(h * w for h, w in SHAPES), 32)
    ref = torch.rand(2, 5, 1, 4)
    assert attn(q, ref, v, SHAPES).shape == (2, 5, 32)
    disc = MSDeformableAttention(32, 4, 3, 4, method="discrete")
    assert not disc.sampling_offsets.weight.requires_grad
    with pytest.raises(ValueError, match="4-d"):
        attn(q, ref[..., :2], v, SHAPES)


@pytest.mark.parametrize("method", ["default", "discrete"])
def test_module_at_batch_3_is_the_naive_reference_per_image(method: str) -> None:
    """The module writes value_proj channel-major (no transposing copy at batch > 1); a slip in that layout would
    mix images or heads. Every weight perturbed, a value mask, three images of different content: each image's
    output is the naive float64 reference on ``value_proj`` as a plain linear layer, and the same as alone."""
    torch.manual_seed(0)
    attn = MSDeformableAttention(12, 3, 3, (2, 1, 3), method=method).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    v_len = sum(h * w for h, w in SHAPES)
    q, ref = torch.randn(3, 5, 12, dtype=torch.float64), torch.rand(3, 5, 1, 4, dtype=torch.float64) * 0.6 + 0.2
    value, mask = torch.randn(3, v_len, 12, dtype=torch.float64), torch.rand(3, v_len) > 0.2
    with torch.no_grad():
        out = attn(q, ref, value, SHAPES, mask)
        for i in range(3):
            v = (attn.value_proj(value[i : i + 1]) * mask[i : i + 1, :, None]).reshape(1, v_len, 3, 4)
            offsets = attn.sampling_offsets(q[i : i + 1]).reshape(1, 5, 3, 6, 2)
            weights = attn.attention_weights(q[i : i + 1]).reshape(1, 5, 3, 6).softmax(-1)
            scale = attn.num_points_scale.double()[:, None]
            locs = ref[i : i + 1, :, None, :, :2] + offsets * scale * ref[i : i + 1, :, None, :, 2:] * 0.5
            expected = attn.output_proj(naive(v, SHAPES, locs, weights, (2, 1, 3), method))
            torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-10)
            alone = attn(q[i : i + 1], ref[i : i + 1], value[i : i + 1], SHAPES, mask[i : i + 1])
            torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-12)
