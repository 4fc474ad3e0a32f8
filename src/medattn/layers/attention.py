"""Multi-head scaled dot-product attention over token sequences, self or cross.

The softmax is the submodule `attend`, so a forward hook on it records the attention
probabilities (B, heads, N, M) of every call. `torch.nn.functional.scaled_dot_product_attention`
would be faster (fused kernels), but it never materialises the probabilities, so they could not
be inspected; the math is written out instead.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """Queries from `x` (B, N, dim); keys and values from `context` (B, M, context_dim), or from `x`.

    Output is (B, N, dim). `head_dim` defaults to dim // heads.
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int = 4,
        head_dim: int | None = None,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}; pass head_dim")
            head_dim = dim // heads
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * inner, bias=False)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.to_out = nn.Linear(inner, dim)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        batch, length, _ = t.shape  # (B, L, heads * head_dim)
        return t.reshape(batch, length, self.heads, self.head_dim).transpose(1, 2)  # (B, h, L, d)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, *, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`keep` (B, M) bool, optional: the context tokens that may be attended to (a query with none gets 0)."""
        source = x if context is None else context  # (B, M, context_dim)
        q = self._split_heads(self.to_q(x))  # (B, h, N, d)
        k, v = (self._split_heads(t) for t in self.to_kv(source).chunk(2, dim=-1))  # (B, h, M, d)
        scores = q @ k.transpose(-2, -1) * self.scale  # (B, h, N, M)
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        probs = self.dropout(self.attend(scores))  # (B, h, N, M), rows sum to 1 before dropout
        if keep is not None:
            probs = torch.nan_to_num(probs, nan=0.0)  # a row with nothing to attend to
        out = probs @ v  # (B, h, N, d)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)  # (B, N, h * d)
        return self.to_out(out)  # (B, N, dim)
