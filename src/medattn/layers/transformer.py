"""Pre-norm transformer blocks over token sequences (B, N, dim).

Attention probabilities are recorded by hooking the `attend` submodule of each block's `attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.layers.attention import MultiHeadAttention


class FeedForward(nn.Sequential):
    """Linear (dim -> hidden) -> GELU -> dropout -> linear (hidden -> dim) -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )


class TransformerBlock(nn.Module):
    """x + MHA(LN(x)[, context]); then x + MLP(LN(x)). `context_dim` enables cross-attention."""

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads=heads, context_dim=context_dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), context)  # (B, N, dim)
        return x + self.mlp(self.norm2(x))  # (B, N, dim)


class TransformerEncoder(nn.Module):
    """`depth` TransformerBlocks followed by a final LayerNorm. Shape (B, N, dim) preserved."""

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, context_dim=context_dim)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, context)
        return self.norm(x)


class GridPositionEmbedding(nn.Module):
    """Learned positional embedding for a token grid, resized to any grid by interpolation.

    Stored for a reference grid (`grid` per axis) as (1, dim, *grid); `forward(grid_shape)` returns
    (1, N, dim) for N = prod(grid_shape), so a model trained at one input size runs at another.
    """

    def __init__(self, dim: int, *, spatial_dims: int, grid: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.weight = nn.Parameter(torch.zeros(1, dim, *([grid] * spatial_dims)))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        table = self.weight  # (1, dim, *reference_grid)
        if tuple(table.shape[2:]) != tuple(grid_shape):
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            table = F.interpolate(table, size=tuple(grid_shape), mode=mode, align_corners=False)
        return table.flatten(2).transpose(1, 2)  # (1, N, dim)
