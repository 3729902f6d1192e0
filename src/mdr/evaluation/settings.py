"""The three evaluation settings and the language-bias metrics, from embeddings (the LAReQA protocol).

In:  an ``EvalSet`` (``mdr.evaluation.pools``), its query and candidate embeddings, and the
     languages the model was trained on (optional).
Out: ``query_table``: one row per query and pool: the multilingual pool (``pool_lang`` "*", every
     translation of the answer relevant) and each language's pool, with the query's AP, the rank
     of its first relevant candidate and its recall at each k; ``aggregate``: the results dict.

Aggregates (the paper's definitions, arXiv 2408.10536, Section 3.2):

    multilingual_map        the pool of all languages; mean AP per query language, then the mean
                            over query languages (macro: every language counts alike, whatever its
                            number of questions); multilingual_map_micro: the mean over queries
    monolingual_map         mean over X of mAP(X queries, X pool)
    crosslingual_map        mean over ordered pairs X != Y of mAP(X queries, Y pool)
    matrix                  mAP of every X -> Y
    <setting>_recall_at_k   recall at k (the share of a query's relevant candidates in its top k,
                            as trec_eval's recall_k), averaged like the mAP of that setting
    rank_distance           multilingual pool: per query, max rank - min rank of its relevant
                            candidates (queries with >= 2); the mean per query language, then the
                            mean over query languages (macro, as the paper's Tables 7 / 8 "Mean"
                            rows); rank_distance_micro: the mean over queries
    same_language_first     multilingual pool: share of queries whose best-ranked relevant candidate
                            is in the query's language (queries with relevant candidates in their
                            own and in another language). An unbiased model approaches 1 / L
    <metric>_per_lang       per query language (for cross-lingual: the mean over the pools Y != X)
    <metric>_seen/_unseen   the mean over the query languages seen / not seen in training

Queries without a relevant candidate in a pool (a question missing in that language) are left out
of that pool only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from mdr.evaluation.benchmark import Metric, PerQuery
from mdr.evaluation.metrics import average_precision, full_pool_ranks, rank_distance

MULTILINGUAL = "*"  # pool_lang of the pool of all languages


SETTINGS = (("monolingual", "mono"), ("crosslingual", "cross"), ("multilingual", "multi"))


def pool_metrics(recall_at: Sequence[int] = (1, 10)) -> list[Metric]:
    """The declaration of everything ``aggregate`` reports (``mdr.evaluation.benchmark.Metric``):
    the three mAPs (tested; cross-lingual mAP is what a sweep selects on by default), the bias
    metrics, the query-weighted means and recall at each cut-off."""
    out = [Metric(f"{setting}_map", f"{short} mAP", per_query=PerQuery(setting, "ap"), tested=True,
                  select=setting == "crosslingual", paper=f"{setting}_map") for setting, short in SETTINGS]
    out += [
        Metric("rank_distance", "rank dist", high="num_candidates", higher_is_better=False, digits=1,
               per_query=PerQuery("multilingual", "rank_distance"), paper="rank_distance"),
        Metric("same_language_first", "same-lang-1st", higher_is_better=False,
               per_query=PerQuery("multilingual", "same_language_first", "micro")),
        Metric("multilingual_map_micro", "multi mAP (micro)", headline=False, per_query=PerQuery("multilingual", "ap", "micro")),
        Metric("rank_distance_micro", "rank dist (micro)", high="num_candidates", higher_is_better=False, digits=1,
               headline=False, per_query=PerQuery("multilingual", "rank_distance", "micro")),
    ]
    out += [Metric(f"{setting}_recall_at_{k}", f"{short} R@{k}", headline=False, per_query=PerQuery(setting, f"recall_at_{k}"))
            for k in recall_at for setting, short in SETTINGS]
    return out


def query_table(es, q: torch.Tensor, c: torch.Tensor, chunk_size: int = 256, recall_at: Sequence[int] = (1, 10)) -> pd.DataFrame:
    """One row per (query, pool): query, query_id, query_lang, pool_lang, ap, first_rank,
    recall_at_<k>; multilingual rows also rank_distance and same_language_first (NaN: undefined)."""
    q_lang, c_lang = np.asarray(es.query_lang), np.asarray(es.cand_lang)
    if not any(len(r) for r in es.relevant):
        raise ValueError(f"eval set {es.name!r}: no query has a relevant candidate")
    parts = [_rows(es, q, c, np.arange(len(c)), MULTILINGUAL, chunk_size, recall_at, c_lang)]
    for y in es.languages:
        cols = np.flatnonzero(c_lang == y)
        if len(cols):
            parts.append(_rows(es, q, c, cols, y, chunk_size, recall_at, None))
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    table["query_lang"] = q_lang[table["query"].to_numpy()]
    table["query_id"] = np.asarray(es.query_id, dtype=object)[table["query"].to_numpy()]
    table["setting"] = np.where(table["pool_lang"] == MULTILINGUAL, "multilingual",
                                np.where(table["pool_lang"] == table["query_lang"], "monolingual", "crosslingual"))
    return table


def _rows(es, q, c, cols: np.ndarray, pool_lang: str, chunk_size: int, recall_at, c_lang: np.ndarray | None) -> pd.DataFrame:
    local = np.full(len(c), -1)
    local[cols] = np.arange(len(cols))
    relevant = [local[r][local[r] >= 0] for r in es.relevant]
    keep = np.flatnonzero([len(r) > 0 for r in relevant])
    if not len(keep):
        return pd.DataFrame()
    ranks = full_pool_ranks(q[keep], c[cols], [relevant[i] for i in keep], chunk_size)
    rows = {"query": keep, "pool_lang": pool_lang, "ap": [average_precision(r) for r in ranks],
            "first_rank": [int(r.min()) for r in ranks]}
    for k in recall_at:
        rows[f"recall_at_{k}"] = [float((r <= k).mean()) for r in ranks]
    if c_lang is not None:  # the multilingual pool: language bias
        rows["rank_distance"] = [rank_distance(r) if len(r) >= 2 else np.nan for r in ranks]
        same = []
        for i, r in zip(keep, ranks):
            langs = c_lang[cols[relevant[i]]]
            own = langs == es.query_lang[i]
            same.append(float(own[np.argmin(r)]) if own.any() and (~own).any() else np.nan)
        rows["same_language_first"] = same
    return pd.DataFrame(rows)


def aggregate(table: pd.DataFrame, languages: Sequence[str], training_languages: Sequence[str] | None = None) -> dict:
    """The results dict (see the module docstring) from a ``query_table``."""
    result: dict = {}
    multi = table[table["pool_lang"] == MULTILINGUAL]
    pools = table[table["pool_lang"] != MULTILINGUAL]
    mean_by_lang = multi.groupby("query_lang").mean(numeric_only=True)
    mean_by_pair = pools.groupby(["query_lang", "pool_lang"]).mean(numeric_only=True)
    metrics = ["ap"] + [m for m in table.columns if m.startswith("recall_at_")]
    for metric in metrics:
        name = "map" if metric == "ap" else metric
        per_lang = _lang_dict(mean_by_lang[metric], languages)
        result[f"multilingual_{name}"] = float(np.mean(list(per_lang.values())))
        result[f"multilingual_{name}_per_lang"] = per_lang
        by_pair = mean_by_pair[metric]
        mono = {x: float(v) for (x, y), v in by_pair.items() if x == y}
        cross_lang = {x: float(by_pair[x][by_pair[x].index != x].mean()) for x in languages
                      if x in by_pair.index.get_level_values(0) and (by_pair[x].index != x).any()}
        cross = [float(v) for (x, y), v in by_pair.items() if x != y]
        result[f"monolingual_{name}"] = float(np.mean(list(mono.values()))) if mono else float("nan")
        result[f"crosslingual_{name}"] = float(np.mean(cross)) if cross else float("nan")
        result[f"monolingual_{name}_per_lang"] = _lang_dict(pd.Series(mono), languages)
        result[f"crosslingual_{name}_per_lang"] = _lang_dict(pd.Series(cross_lang), languages)
        if metric == "ap":
            result["multilingual_map_micro"] = float(multi["ap"].mean())
            result["matrix"] = {x: {y: float(by_pair[(x, y)]) for y in languages if (x, y) in by_pair.index} for x in languages}
    rank_per_lang = _lang_dict(mean_by_lang["rank_distance"], languages)
    result["rank_distance"] = float(np.mean(list(rank_per_lang.values()))) if rank_per_lang else float("nan")
    result["rank_distance_micro"] = _mean_or_nan(multi["rank_distance"])
    result["rank_distance_per_lang"] = rank_per_lang
    result["same_language_first"] = _mean_or_nan(multi["same_language_first"])
    result["same_language_first_per_lang"] = _lang_dict(mean_by_lang["same_language_first"], languages)
    if training_languages is not None:
        result.update(seen_unseen(result, languages, training_languages))
    return result


def seen_unseen(result: dict, languages: Sequence[str], training_languages: Sequence[str]) -> dict:
    """``<metric>_seen`` / ``_unseen``: the mean of each per-language metric over the query
    languages seen / not seen in training (the paper's zero-shot languages are the unseen ones)."""
    seen = [x for x in languages if x in set(training_languages)]
    unseen = [x for x in languages if x not in set(training_languages)]
    out: dict = {"seen_languages": seen, "unseen_languages": unseen}
    for key in [k for k in result if k.endswith("_per_lang")]:
        metric, table = key[: -len("_per_lang")], result[key]
        for group, langs in (("seen", seen), ("unseen", unseen)):
            values = [table[x] for x in langs if x in table and not np.isnan(table[x])]
            if values:
                out[f"{metric}_{group}"] = float(np.mean(values))
    return out


def _mean_or_nan(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")


def _lang_dict(series: pd.Series, languages: Sequence[str]) -> dict[str, float]:
    return {x: float(series[x]) for x in languages if x in series.index and not pd.isna(series[x])}


def score_embeddings(es, q: torch.Tensor, c: torch.Tensor, chunk_size: int = 256, recall_at: Sequence[int] = (1, 10),
                     training_languages: Sequence[str] | None = None, per_query: bool = False) -> dict:
    """The results dict of an eval set from its query and candidate embeddings (with ``per_query``,
    its query table too, under the key ``per_query``: written beside results.json, not into it)."""
    t0 = time.perf_counter()
    table = query_table(es, q, c, chunk_size, recall_at)
    result = {"languages": es.languages, "num_queries": len(q), "num_candidates": len(c),
              **aggregate(table, es.languages, training_languages)}
    result["score_seconds"] = time.perf_counter() - t0
    if per_query:
        result["per_query"] = table
    return result
