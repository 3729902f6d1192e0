"""In-batch InfoNCE (config section ``loss``).

In:  query embeddings q [B, d] of this rank, and the passage embeddings of the whole global batch
     p [P, d] (every rank's positives and hard negatives, gathered with gradients under DDP).
     ``targets`` [B] gives, per query, the row of p that is its positive.
Out: the mean cross-entropy of softmax(q p^T / tau) against the targets, and the in-batch accuracy.

With ``symmetric=True`` a passage->query term is added: each positive passage must pick out its
own query among the global batch's queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mdr.errors import require_number


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable_temperature: bool = False, symmetric: bool = False):
        super().__init__()
        require_number("loss.temperature", temperature, low=0, low_open=True)
        # learn log(1/tau) as CLIP does; clamped so that tau stays >= 0.01
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable_temperature)
        self.symmetric = symmetric

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach()))

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        targets: torch.Tensor,
        q_all: torch.Tensor | None = None,
        q_offset: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q_all``/``q_offset``: the global batch's queries and where this rank's start (symmetric term)."""
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * q @ p.T
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.argmax(1) == targets).float().mean()
        if self.symmetric:
            q_all = q if q_all is None else q_all
            positives = p[targets]
            back = scale * positives @ q_all.T
            q_targets = torch.arange(len(q), device=q.device) + q_offset
            loss = 0.5 * (loss + F.cross_entropy(back.float(), q_targets))
        return loss, accuracy
