"""Pool benchmarks: multilingual queries against a multilingual candidate pool, in all settings.

``EvalSet`` is the shape every LAReQA-style benchmark is turned into (loaders: ``parallel_eval``
here, for held-out data in the parallel schema; ``mdr.evaluation.lareqa`` for XQuAD-R / MLQA-R):

    queries      text, language and question id of each query (a question id is shared by the
                 translations of one question)
    candidates   text and language of each pool entry
    relevant[i]  pool indices relevant to query i, in every language (each setting restricts them
                 to its own pool)

``EvalSet.evaluate(encoder)`` returns, in the results shape of ``mdr.evaluation.benchmark``::

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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mdr.errors import DataError
from mdr.evaluation.benchmark import EvalOptions, TextEncoder, finite_embeddings, headline_metrics
from mdr.evaluation.metrics import average_precision, full_pool_ranks, rank_distance
from mdr.formats.parallel import load_parallel_corpus

log = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """A pool benchmark: queries, a candidate pool and relevance (see the module docstring)."""

    name: str
    query_text: list[str]
    query_lang: list[str]
    query_id: list[str]
    cand_text: list[str]
    cand_lang: list[str]
    relevant: list[np.ndarray]
    languages: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not self.cand_text:
            raise DataError(f"eval set {self.name!r}: the candidate pool is empty")
        if not self.query_text:
            raise DataError(f"eval set {self.name!r}: no queries")
        self.languages = sorted(set(self.query_lang) | set(self.cand_lang))

    def evaluate(self, encoder: TextEncoder, options: EvalOptions = EvalOptions()) -> dict:
        """Encode each unique text once, then score every setting and the bias metrics."""
        t0 = time.perf_counter()
        device = next(encoder.parameters()).device
        q = finite_embeddings(encode_unique(encoder, self.query_text, "query", options.batch_size), self.name, "queries")
        c = finite_embeddings(encode_unique(encoder, self.cand_text, "passage", options.batch_size), self.name, "candidates")
        q, c = q.to(device), c.to(device)
        t_encode = time.perf_counter() - t0
        result = score_embeddings(self, q, c, options.chunk_size)
        result["encode_seconds"] = t_encode
        result["total_seconds"] = time.perf_counter() - t0
        log.info("eval %s: %s", self.name, headline_metrics(result))
        return result


def relevance_by_id(query_id: list[str], cand_ids: list[list[str]]) -> list[np.ndarray]:
    """Candidates answering each question id (a candidate may answer several questions)."""
    by_id: dict[str, list[int]] = defaultdict(list)
    for c, ids in enumerate(cand_ids):
        for qid in ids:
            by_id[qid].append(c)
    return [np.asarray(by_id.get(qid, []), dtype=np.int64) for qid in query_id]


def parallel_eval(name: str, files: str | Sequence[str], languages: Sequence[str] | None = None) -> EvalSet:
    """Held-out parallel data: every row's positive is a candidate; relevant = same id, any language."""
    table = load_parallel_corpus(files, languages).select_columns(["id", "lang", "query", "positive"]).to_dict()
    return EvalSet(
        name=name,
        query_text=table["query"],
        query_lang=table["lang"],
        query_id=table["id"],
        cand_text=table["positive"],
        cand_lang=table["lang"],
        relevant=relevance_by_id(table["id"], [[i] for i in table["id"]]),
    )


def encode_unique(encoder: TextEncoder, texts: list[str], kind: str, batch_size: int) -> torch.Tensor:
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    if len(unique) == len(texts):  # nothing repeated: encode in place, no second [N, dim] copy
        return encoder.encode(texts, kind, batch_size=batch_size)
    emb = encoder.encode(unique.tolist(), kind, batch_size=batch_size)
    return emb[torch.as_tensor(inverse)]


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
