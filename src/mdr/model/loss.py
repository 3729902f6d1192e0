"""In-batch InfoNCE (config section ``loss``).

In:  query embeddings q [B, d] of this rank, and the passage embeddings of the whole global batch
     p [P, d] (every rank's positives and hard negatives, gathered with gradients under DDP).
     ``targets`` [B] gives, per query, the row of p that is its positive.
Out: the mean cross-entropy of softmax(q p^T / tau) against the targets, and the in-batch accuracy.

With ``symmetric=True`` a passage->query term is added: each positive passage must pick out its
own query among the global batch's queries.

False negatives (``mask_false_negatives``, on by default): every query is scored against every
passage of the batch, hard negatives included, so another example's hard negative can be this
query's own answer: the same text, or (same example id) its translation. Given ``p_keys`` [P, 2]
(per passage: example-id fingerprint, 0 when unknown, and text fingerprint; ``mdr.data.loader``),
such passages other than the query's own positive get the logit -inf, as do, in the symmetric term,
the other queries whose positive is one of them. Without ``p_keys``, or with the option off, the
loss is the plain one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mdr.errors import ConfigError, require_number


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable_temperature: bool = False, symmetric: bool = False,
                 mask_false_negatives: bool = True):
        super().__init__()
        require_number("loss.temperature", temperature, low=0, low_open=True)
        # learn log(1/tau) as CLIP does; clamped so that tau stays >= 0.01
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable_temperature)
        self.symmetric = symmetric
        if not isinstance(mask_false_negatives, bool):
            raise ConfigError(f"loss.mask_false_negatives must be true or false, got {mask_false_negatives!r}")
        self.mask_false_negatives = mask_false_negatives

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
        p_keys: torch.Tensor | None = None,
        q_all_targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q_all``/``q_offset``: the global batch's queries and where this rank's start (symmetric term).
        ``p_keys`` [P, 2]: the passages' keys (false-negative mask); ``q_all_targets``: the row of p of
        each of ``q_all``'s positives (default ``targets``)."""
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * q @ p.T
        mask = self.mask_false_negatives and p_keys is not None
        if mask:
            logits = logits.masked_fill(false_negatives(p_keys[targets], p_keys, targets), float("-inf"))
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.argmax(1) == targets).float().mean()
        if self.symmetric:
            q_all = q if q_all is None else q_all
            positives = p[targets]
            back = scale * positives @ q_all.T
            q_targets = torch.arange(len(q), device=q.device) + q_offset
            if mask:
                q_all_keys = p_keys[targets if q_all_targets is None else q_all_targets]
                back = back.masked_fill(false_negatives(p_keys[targets], q_all_keys, q_targets), float("-inf"))
            loss = 0.5 * (loss + F.cross_entropy(back.float(), q_targets))
        return loss, accuracy


def false_negatives(anchor_keys: torch.Tensor, keys: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """[A, K] bool: column j holds row i's answer (the same known example id, or the same text as
    ``anchor_keys[i]``) but is not its own column ``own[i]``."""
    same_id = (anchor_keys[:, None, 0] == keys[None, :, 0]) & (keys[None, :, 0] != 0)
    same_text = anchor_keys[:, None, 1] == keys[None, :, 1]
    not_own = torch.arange(len(keys), device=keys.device)[None, :] != own[:, None]
    return (same_id | same_text) & not_own
