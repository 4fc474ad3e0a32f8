"""Gated attention pooling of a bag of instance features (Ilse et al. 2018, "Attention-based deep multiple
instance learning"): one weight per instance, a softmax over the instances present, their weighted mean.

The softmax is the named submodule `attend`, so `explain/hooks.py` records it like any attention; padded
instances (bags of unequal size share a batch) are masked out before it and get weight 0.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedAttentionPool(nn.Module):
    """(B, N, D) instance features and a (B, N) mask of the instances present -> ((B, D) bag, (B, N) weights).

    a_n = softmax_n( w^T (tanh(V h_n) * sigmoid(U h_n)) ): the sigmoid gate lets the tanh branch's sign-symmetric
    response be switched off per feature, which Ilse et al. found steadier than tanh alone.
    """

    def __init__(self, channels: int, *, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.value = nn.Linear(channels, hidden)  # V
        self.gate_branch = nn.Linear(channels, hidden)  # U
        self.score = nn.Linear(hidden, 1)  # w
        self.dropout = nn.Dropout(dropout)
        self.attend = nn.Softmax(dim=1)

    def forward(self, features: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(self.value(features)) * torch.sigmoid(self.gate_branch(features))  # (B, N, hidden)
        scores = self.score(self.dropout(hidden))[..., 0].float()  # (B, N); float: -inf masking under AMP
        scores = scores.masked_fill(~present, float("-inf"))
        weights = self.attend(scores)  # (B, N), 0 on padding, sums to 1 over each bag
        bag = torch.einsum("bn,bnd->bd", weights.to(features.dtype), features)  # (B, D)
        return bag, weights
