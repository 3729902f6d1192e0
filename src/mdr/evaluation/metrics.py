"""Full-pool retrieval metrics from exact ranks (the LAReQA protocol).

In:  query embeddings [Q, d], pool embeddings [N, d], and per query the pool indices of its
     relevant candidates.
Out: per query, the 1-based rank of each relevant candidate in the whole pool; from those,
     average precision, and the language-bias statistics of the multilingual setting.

Tie policy (pessimistic): a relevant candidate is ranked below every non-relevant candidate with
the same score; relevant candidates tied with each other keep the order in which they are given.
For graded relevance (nDCG, recall of a top-k list) the lower gain goes first among equal scores.
So tied scores never inflate a metric. Scores are computed in query chunks of at most
``chunk_size`` rows and ``max_chunk_scores`` scores, so scoring memory stays bounded (256 MB of
float32 scores by default) however large Q and N get; the pool embeddings [N, d] dominate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def pad_relevant(relevant: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged index lists -> ([Q, R] indices padded with 0, [Q, R] validity mask)."""
    width = max((len(r) for r in relevant), default=0)
    idx = torch.zeros(len(relevant), max(width, 1), dtype=torch.long)
    mask = torch.zeros_like(idx, dtype=torch.bool)
    for i, r in enumerate(relevant):
        idx[i, : len(r)] = torch.as_tensor(np.asarray(r), dtype=torch.long)
        mask[i, : len(r)] = True
    return idx, mask


def ranks_from_scores(scores: torch.Tensor, rel_idx: torch.Tensor, rel_mask: torch.Tensor) -> torch.Tensor:
    """Ranks [c, R] of the relevant candidates in each row of ``scores`` [c, N] (0 where padded)."""
    rel_scores = scores.gather(1, rel_idx)  # [c, R]
    # candidates of any kind scoring >= each relevant score, one relevant column at a time ([c, N] memory)
    at_least = torch.stack([(scores >= rel_scores[:, j : j + 1]).sum(1) for j in range(rel_idx.shape[1])], 1)
    a = rel_scores.unsqueeze(2)  # this relevant item
    b = rel_scores.unsqueeze(1)  # the other relevant items
    both = rel_mask.unsqueeze(2) & rel_mask.unsqueeze(1)
    rel_at_least = ((b >= a) & both).sum(2)  # relevant items (itself included) scoring >= it
    before = torch.tril(torch.ones_like(both), -1)  # [R, R]: j < r
    rel_above = (((b > a) | ((b == a) & before)) & both).sum(2)  # relevant items ranked above it
    nonrel_at_least = at_least - rel_at_least
    ranks = nonrel_at_least + rel_above + 1
    return torch.where(rel_mask, ranks, torch.zeros_like(ranks))


def full_pool_ranks(
    queries: torch.Tensor,
    pool: torch.Tensor,
    relevant: Sequence[np.ndarray],
    chunk_size: int = 256,
    max_chunk_scores: int = 2**26,
) -> list[np.ndarray]:
    """Exact 1-based ranks of every query's relevant candidates over the full pool."""
    rel_idx, rel_mask = pad_relevant(relevant)
    out: list[np.ndarray] = []
    chunk_size = max(1, min(chunk_size, max_chunk_scores // max(len(pool), 1)))
    for start in range(0, len(queries), chunk_size):
        sl = slice(start, start + chunk_size)
        scores = queries[sl].float() @ pool.float().T
        ranks = ranks_from_scores(scores, rel_idx[sl].to(scores.device), rel_mask[sl].to(scores.device)).cpu()
        out.extend(r[m].numpy() for r, m in zip(ranks, rel_mask[sl]))
    return out


def average_precision(ranks: np.ndarray) -> float:
    """AP of one query from the ranks of its relevant items: mean over k of k / rank_k."""
    if len(ranks) == 0:
        raise ValueError("average precision needs at least one relevant candidate")
    r = np.sort(np.asarray(ranks, dtype=np.float64))
    return float(np.mean(np.arange(1, len(r) + 1) / r))


def rank_distance(ranks: np.ndarray) -> float:
    """Spread of one query's relevant candidates in the multilingual pool: max rank - min rank."""
    return float(np.max(ranks) - np.min(ranks))


def ranked_gains(scores: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Relevance gains of retrieved items in rank order under the pessimistic tie policy: score
    descending, and among equal scores the lower gain first."""
    order = np.lexsort((gains, -np.asarray(scores, dtype=np.float64)))
    return np.asarray(gains, dtype=np.float64)[order]


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, judged_gains: np.ndarray, k: int = 10) -> float:
    """nDCG@k as trec_eval's ``ndcg_cut_k``: gain = graded relevance, discount log2(rank + 1), the
    ideal ranking built from every judged relevant item (``judged_gains``, not only retrieved ones)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((ranked_gains(scores, gains)[:k] * discount[: min(k, len(gains))]).sum())
    ideal = np.sort(np.asarray(judged_gains, dtype=np.float64)[np.asarray(judged_gains) > 0])[::-1][:k]
    return dcg / float((ideal * discount[: len(ideal)]).sum()) if len(ideal) else 0.0


def recall_at_k(scores: np.ndarray, gains: np.ndarray, num_relevant: int, k: int = 100) -> float:
    """Share of the judged relevant items (gain > 0) found in the top k."""
    if num_relevant == 0:
        raise ValueError("recall needs at least one relevant item")
    return float((ranked_gains(scores, gains)[:k] > 0).sum() / num_relevant)
