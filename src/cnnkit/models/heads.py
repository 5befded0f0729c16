"""The two classifier heads of the classic zoo, shared so every family honours `pre_logits` alike.

`pre_logits=True` returns what the final Linear (the `default_cfg.classifier` module) reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pooled_linear_head(
    x: torch.Tensor, fc: nn.Linear, *, drop_rate: float, training: bool, pre_logits: bool
) -> torch.Tensor:
    """(N, C, h, w) -> global average pool -> dropout -> (N, C) or fc -> (N, num_classes)."""
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    if drop_rate > 0:
        x = F.dropout(x, p=drop_rate, training=training)
    return x if pre_logits else fc(x)


def mlp_head(x: torch.Tensor, pool: nn.Module, classifier: nn.Sequential, *, pre_logits: bool) -> torch.Tensor:
    """(N, C, h, w) -> pool -> flatten -> all of `classifier` but its last Linear (pre-logits) -> logits."""
    x = classifier[:-1](torch.flatten(pool(x), 1))
    return x if pre_logits else classifier[-1](x)
