import torch

from rtdetr.models.encoder import build_2d_sincos_position_embedding


def official_formula(w: int, h: int, dim: int, t: float = 10000.0) -> torch.Tensor:
    """The official indexing written out: token k -> a = k // h, b = k % h."""
    k = torch.arange(w * h, dtype=torch.float64)
    a, b = k // h, k % h
    omega = 1.0 / t ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    oa, ob = a[:, None] * omega, b[:, None] * omega
    return torch.cat([oa.sin(), oa.cos(), ob.sin(), ob.cos()], 1)[None].float()


def test_square_maps_match_official_exactly() -> None:
    assert torch.allclose(build_2d_sincos_position_embedding(20, 20, 256), official_formula(20, 20, 256), atol=1e-6)


def test_non_square_is_row_major() -> None:
    pe = build_2d_sincos_position_embedding(3, 5, 8)  # h=3, w=5
    assert pe.shape == (1, 15, 8)
    token = 1 * 5 + 4  # row 1, column 4
    omega = 1.0 / 10000 ** (torch.arange(2) / 2)
    want = torch.cat([(1 * omega).sin(), (1 * omega).cos(), (4 * omega).sin(), (4 * omega).cos()])
    assert torch.allclose(pe[0, token], want.float(), atol=1e-6)
