"""Zero-shot retrieval evaluation in the three settings, plus language bias.

In:  an ``Encoder`` and one or more ``EvalSet``.
Out: per eval set a flat dict of metrics (plus the X -> Y matrix), e.g.::

    multilingual_map   every query against the pool of all languages; relevant = the answer in
                       every language
    monolingual_map    X queries against the X pool, mean over X
    crosslingual_map   X queries against the Y pool, mean over ordered pairs X != Y
    matrix             {X: {Y: mAP}} for every X, Y
    rank_distance      multilingual pool: per query, max rank - min rank of its relevant
                       candidates (queries with >= 2); mean over queries. Minimum R - 1 for R
                       relevant (all translations ranked together at the top)
    same_language_first  multilingual pool: share of queries whose best-ranked relevant candidate
                       is in the query's language (queries with a relevant candidate in their own
                       and in another language). An unbiased model approaches 1 / L

Each unique text is encoded once for all settings; queries without a relevant candidate in a
setting's pool (a question missing in that language) are left out of that setting only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import torch

from src.encoder import Encoder
from src.evaluation.evalsets import EvalSet
from src.evaluation.metrics import average_precision, full_pool_ranks, rank_distance

log = logging.getLogger(__name__)


def encode_unique(encoder: Encoder, texts: list[str], kind: str, batch_size: int) -> torch.Tensor:
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    if len(unique) == len(texts):  # nothing repeated: encode in place, no second [N, dim] copy
        return encoder.encode(texts, kind, batch_size=batch_size)
    emb = encoder.encode(unique.tolist(), kind, batch_size=batch_size)
    return emb[torch.as_tensor(inverse)]


class RetrievalEvaluator:
    """Evaluates an encoder on named eval sets; ``__call__`` returns ``{set name: metrics}``."""

    def __init__(self, sets: Mapping[str, EvalSet], batch_size: int = 128, chunk_size: int = 256) -> None:
        self.sets = dict(sets)
        self.batch_size = batch_size
        self.chunk_size = chunk_size

    def __call__(self, encoder: Encoder) -> dict[str, dict]:
        return {name: self.evaluate(encoder, es) for name, es in self.sets.items()}

    def evaluate(self, encoder: Encoder, es) -> dict:
        if not isinstance(es, EvalSet):  # a benchmark with its own protocol (e.g. MIRACL's corpus search)
            return es.evaluate(encoder, self.batch_size)
        t0 = time.perf_counter()
        device = next(encoder.parameters()).device
        q = encode_unique(encoder, es.query_text, "query", self.batch_size).to(device)
        c = encode_unique(encoder, es.cand_text, "passage", self.batch_size).to(device)
        t_encode = time.perf_counter() - t0
        result = score_embeddings(es, q, c, self.chunk_size)
        result["encode_seconds"] = t_encode
        result["total_seconds"] = time.perf_counter() - t0
        log.info("eval %s: %s", es.name, {k: v for k, v in result.items() if isinstance(v, float)})
        return result


def score_embeddings(es: EvalSet, q: torch.Tensor, c: torch.Tensor, chunk_size: int = 256) -> dict:
    """All settings and bias metrics from precomputed query and candidate embeddings."""
    q_lang = np.asarray(es.query_lang)
    c_lang = np.asarray(es.cand_lang)
    langs = es.languages
    result: dict = {"languages": langs, "num_queries": len(q), "num_candidates": len(c)}

    # multilingual pool
    has_rel = np.array([len(r) > 0 for r in es.relevant])
    if not has_rel.any():
        raise ValueError(f"eval set {es.name!r}: no query has a relevant candidate")
    rel = [es.relevant[i] for i in np.flatnonzero(has_rel)]
    ranks = full_pool_ranks(q[has_rel], c, rel, chunk_size)
    ap = np.array([average_precision(r) for r in ranks])
    result["multilingual_map"] = float(ap.mean())
    result["multilingual_map_per_lang"] = {
        x: float(ap[q_lang[has_rel] == x].mean()) for x in langs if (q_lang[has_rel] == x).any()
    }
    result.update(_bias(ranks, rel, q_lang[has_rel], c_lang))

    # one pool per language: the X -> Y matrix
    t0 = time.perf_counter()
    matrix: dict[str, dict[str, float]] = {x: {} for x in langs}
    for y in langs:
        cols = np.flatnonzero(c_lang == y)
        if len(cols) == 0:
            continue
        local = np.full(len(c), -1)
        local[cols] = np.arange(len(cols))
        rel_y = [local[r][local[r] >= 0] for r in es.relevant]
        keep = np.array([len(r) > 0 for r in rel_y])
        if not keep.any():
            continue
        ranks_y = full_pool_ranks(q[keep], c[cols], [rel_y[i] for i in np.flatnonzero(keep)], chunk_size)
        ap_y = np.array([average_precision(r) for r in ranks_y])
        for x in langs:
            sel = q_lang[keep] == x
            if sel.any():
                matrix[x][y] = float(ap_y[sel].mean())
    mono = [matrix[x][x] for x in langs if x in matrix[x]]
    cross = [v for x in langs for y, v in matrix[x].items() if y != x]
    result["monolingual_map"] = float(np.mean(mono)) if mono else float("nan")
    result["crosslingual_map"] = float(np.mean(cross)) if cross else float("nan")
    result["matrix"] = matrix
    result["score_seconds"] = time.perf_counter() - t0
    return result


def _bias(ranks: list[np.ndarray], relevant: list[np.ndarray], q_lang: np.ndarray, c_lang: np.ndarray) -> dict:
    distances, same_first = [], []
    for r, idx, lang in zip(ranks, relevant, q_lang):
        if len(r) >= 2:
            distances.append(rank_distance(r))
        langs = c_lang[idx]
        if (langs == lang).any() and (langs != lang).any():
            same_first.append(langs[np.argmin(r)] == lang)
    return {
        "rank_distance": float(np.mean(distances)) if distances else float("nan"),
        "same_language_first": float(np.mean(same_first)) if same_first else float("nan"),
    }
