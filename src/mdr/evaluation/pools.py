"""Pool benchmarks: multilingual queries against a multilingual candidate pool, in all settings.

``EvalSet`` is the shape every LAReQA-style benchmark is turned into (loaders: ``parallel_eval``
here, for held-out data in the parallel schema; ``mdr.evaluation.lareqa`` for XQuAD-R / MLQA-R):

    queries      text, language and question id of each query (a question id is shared by the
                 translations of one question)
    candidates   text and language of each pool entry
    relevant[i]  pool indices relevant to query i, in every language (each setting restricts them
                 to its own pool)

``EvalSet.evaluate(encoder)`` encodes each unique text once and returns, in the results shape of
``mdr.evaluation.benchmark``, the three settings (monolingual, cross-lingual, multilingual) and the
language-bias metrics as ``mdr.evaluation.settings`` defines them.
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
from mdr.evaluation.benchmark import EvalOptions, Metric, TextEncoder, finite_embeddings, headline_metrics
from mdr.evaluation.settings import pool_metrics, score_embeddings
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

    def metrics(self, options: EvalOptions = EvalOptions()) -> list[Metric]:
        return pool_metrics(options.recall_at)

    def evaluate(self, encoder: TextEncoder, options: EvalOptions = EvalOptions()) -> dict:
        """Encode each unique text once, then score every setting and the bias metrics."""
        t0 = time.perf_counter()
        device = next(encoder.parameters()).device
        q = finite_embeddings(encode_unique(encoder, self.query_text, "query", options.batch_size), self.name, "queries")
        c = finite_embeddings(encode_unique(encoder, self.cand_text, "passage", options.batch_size), self.name, "candidates")
        q, c = q.to(device), c.to(device)
        t_encode = time.perf_counter() - t0
        result = score_embeddings(self, q, c, options.chunk_size, options.recall_at, options.training_languages, per_query=True)
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
