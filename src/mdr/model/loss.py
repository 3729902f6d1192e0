"""In-batch InfoNCE (config section ``loss``).

In:  query embeddings q [B, d] of this rank, and the passage embeddings of the whole global batch
     p [P, d] (every rank's positives and hard negatives, gathered with gradients under DDP).
     ``targets`` [B] gives, per query, the row of p that is its positive; ``positives`` [P] marks
     the rows of p that are some query's positive (needed only for the Eq. 1 form).
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
    r"""Contrastive loss of a query against its positive passage and the batch's other passages.

    For query i with positive passage p_i, the candidates C_i and the temperature tau::

        loss_i = -log( exp(s(q_i, p_i) / tau) / sum_{c in C_i} exp(s(q_i, c) / tau) )
        loss   = mean_i loss_i

    s is the dot product of the embeddings, the cosine similarity when the encoder normalises them
    (``model.normalize``, on for every model of this project).

    ``in_batch_positives=True`` (default, the DPR form): C_i = every passage of the global batch, the
    B positives and the B * k hard negatives, so the other queries' positives are negatives too.
    ``in_batch_positives=False`` with ``temperature=1``: exactly Eq. 1 of Elmahdy et al. (arXiv
    2408.10536), C_i = {p_i} and the batch's hard negatives d_j^- (j = 1..|B|, every query's), no
    other positive; it needs hard negatives (``data.num_hard_negatives`` >= 1). Eq. 1 sums over the
    batch where this takes the mean, a constant factor 1 / |B| that AdamW's update all but ignores.

    Why the default is not Eq. 1: cosine similarities lie in [-1, 1], so at tau = 1 the softmax
    stays nearly flat (it can put at most e^2 / (e^2 + n - 1) on the positive among n candidates:
    0.07 for n = 101, one positive and 100 hard negatives) and its gradient weighs every negative
    almost alike instead of concentrating on the hard ones (Wang & Liu, CVPR 2021, on the
    temperature of contrastive losses). tau = 0.05 is what mContriever and sentence-transformers'
    MultipleNegativesRankingLoss (scale 20) use; E5 uses 0.01. The other positives as negatives add
    B - 1 negatives per query at no cost.

    Args:
        temperature: tau > 0 (with ``learnable_temperature`` its starting value; kept >= 0.01).
        learnable_temperature: learn log(1 / tau) as CLIP does.
        symmetric: add the passage -> query direction: each positive must pick out its own query
            among the global batch's queries (the DPR form only).
        in_batch_positives: see above; False is Eq. 1's denominator.
        mask_false_negatives: a candidate that is query i's answer but not its own positive (the same
            known example id, a translation; or the same text) is left out of C_i (``false_negatives``).

    Inputs of ``forward``: q [B, d] (this rank's queries), p [P, d] (the global batch's passages),
    targets [B] (row of p holding query i's positive), ``positives`` [P] bool (rows of p that are a
    positive; required when ``in_batch_positives=False``), ``q_all`` / ``q_offset`` (the global
    batch's queries and where this rank's start; symmetric term), ``p_keys`` [P, 2] (each passage's
    example-id and text fingerprints, for the mask) and ``q_all_targets`` (the row of p of each of
    ``q_all``'s positives). Returns (loss, top-1 accuracy).
    """

    def __init__(self, temperature: float = 0.05, learnable_temperature: bool = False, symmetric: bool = False,
                 in_batch_positives: bool = True, mask_false_negatives: bool = True):
        super().__init__()
        require_number("loss.temperature", temperature, low=0, low_open=True)
        if symmetric and not in_batch_positives:
            raise ConfigError("loss.symmetric=true has no Eq. 1 form: it needs loss.in_batch_positives=true")
        # learn log(1/tau) as CLIP does; clamped so that tau stays >= 0.01
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable_temperature)
        self.symmetric = symmetric
        self.in_batch_positives = in_batch_positives
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
        positives: torch.Tensor | None = None,
        p_keys: torch.Tensor | None = None,
        q_all_targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = (scale * q @ p.T).float()
        if not self.in_batch_positives:
            if positives is None:
                raise ValueError("loss.in_batch_positives=false needs the mask of positive rows")
            if bool(positives.all()):
                raise ConfigError("loss.in_batch_positives=false (Eq. 1) needs hard negatives: set data.num_hard_negatives >= 1")
            # every other query's positive leaves the denominator; the own positive stays
            others = positives.unsqueeze(0) & (torch.arange(len(p), device=p.device).unsqueeze(0) != targets.unsqueeze(1))
            logits = logits.masked_fill(others, float("-inf"))
        mask = self.mask_false_negatives and p_keys is not None
        if mask:
            logits = logits.masked_fill(false_negatives(p_keys[targets], p_keys, targets), float("-inf"))
        loss = F.cross_entropy(logits, targets)
        accuracy = (logits.argmax(1) == targets).float().mean()
        if self.symmetric:
            q_all = q if q_all is None else q_all
            back = scale * p[targets] @ q_all.T
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
