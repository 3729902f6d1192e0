"""The one evaluation protocol: a ``Benchmark`` turns an encoder into results of one shape, and
declares its metrics once.

A benchmark is anything with a ``name``, ``metrics(options) -> [Metric]`` and
``evaluate(encoder, options) -> results``; the configured ones are built by Hydra from ``eval.sets``
(LAReQA-style pools in ``mdr.evaluation.pools`` / ``lareqa``, MIRACL's corpus search in
``mdr.evaluation.miracl``).

The results of one benchmark are a flat, JSON-ready dict:

    <metric>            float      a declared metric (mAP, rank distance, nDCG@10, ...); logged as
                                   ``eval/<set>/<metric>``
    <metric>_per_lang   {lang: float}   the same metric per query language
    <metric>_seen / _unseen   float     its mean over the query languages seen / not seen in training
    matrix              {X: {Y: float}}  optional: mAP of X queries against the Y pool
    metrics             [Metric as a dict]  the declaration, added by the evaluator (``declare``)
    per_query           DataFrame  optional: one row per query (and pool), written beside results.json
                                   as ``per_query.parquet``, never into it (``mdr.formats.results``)
    *_seconds           float      timings (logged, not tabulated)
    anything else       information: ``languages``, ``num_queries``, ...

The ``Metric`` declaration is the one place that says what a metric is: its range, direction,
whether it is a headline column, whether and how the sweep summary tests it query by query (its
``PerQuery`` rule over the per-query table), whether a sweep selects on it by default, and the
paper's name for it. The result tables (``report``), the sweep summary and its significance tests
(``mdr.sweep``, ``mdr.comparison``), the model card and the published-figures lookup
(``mdr.reference.published``) read metrics only through it, so a new benchmark with new metric
names needs no change anywhere else. Before anything is reported, ``check_results`` verifies every
metric against its declared range: a metric outside it is a bug (or a diverged model), never a
result; a float the benchmark did not declare is a bug too. NaN means "not defined here" (e.g. no
query with two relevant candidates for the rank distance) and passes.

The per-query table (``per_query``) has one row per query and pool with at least the columns
``query_id`` (the question; translations of one question share it), ``query_lang``, ``pool_lang``
and ``setting``, plus the per-query values its ``PerQuery`` rules name; an optional ``question``
column overrides ``query_id`` as the unit that the tests resample (all its rows together).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from mdr.errors import NumericalError


class TextEncoder(Protocol):
    """What a benchmark needs of a model (``mdr.model.encoder.Encoder`` is one)."""

    def encode(self, texts: Sequence[str], kind: str, batch_size: int = 128) -> torch.Tensor:
        """[N, dim] float32 embeddings on the CPU; ``kind`` is "query" or "passage"."""

    def parameters(self): ...


@dataclass(frozen=True)
class EvalOptions:
    """Options shared by every benchmark of a run (``eval.batch_size``, ``eval.chunk_size``,
    ``eval.recall_at``; the training languages come from the run or ``eval.training_languages``).
    The defaults are those of conf/eval_options/default.yaml (tests/test_configs.py keeps them equal)."""

    batch_size: int = 128  # texts per encoder forward pass
    chunk_size: int = 256  # queries scored against a full pool at a time (bounds scoring memory)
    recall_at: tuple[int, ...] = (1, 10)  # recall cut-offs of the pool benchmarks
    training_languages: tuple[str, ...] | None = None  # for the seen / unseen split


@dataclass(frozen=True)
class PerQuery:
    """How a metric is made from the per-query table: the mean of ``column`` over the rows of
    ``setting`` (NaN rows left out), ``macro``: every (query language, pool language) cell alike and
    every row alike within its cell, or ``micro``: every row alike; ``languages``: only these query
    languages. The sweep summary tests a metric through this rule, so the tested difference is the
    difference of the reported numbers (tests/test_comparison.py checks the rule reproduces them)."""

    setting: str
    column: str
    average: str = "macro"
    languages: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.average not in ("macro", "micro"):
            raise ValueError(f"PerQuery.average must be macro or micro, got {self.average!r}")


@dataclass(frozen=True)
class Metric:
    """What a benchmark says of one of its metrics (see the module docstring)."""

    name: str  # its key in the results
    label: str  # its column title
    low: float = 0.0
    high: float | str = 1.0  # a number, or the results key that bounds it (rank distance: "num_candidates")
    higher_is_better: bool = True
    headline: bool = True  # a column of the result tables and of the sweep summary
    digits: int = 4  # decimals in the tables
    per_query: PerQuery | None = None  # how it is made from the per-query table (None: not tested per query)
    tested: bool = False  # tested against the baseline in the sweep summary (needs per_query)
    select: bool = False  # what a sweep selects on when summary.select_metric is not set
    paper: str | None = None  # the hybrid-batching paper's name for it (mdr.reference.published)

    def __post_init__(self) -> None:
        if self.tested and self.per_query is None:
            raise ValueError(f"metric {self.name!r}: tested needs a per_query rule")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metric:
        rule = d.get("per_query")
        if rule is not None and not isinstance(rule, PerQuery):
            rule = PerQuery(**{**rule, "languages": tuple(rule["languages"]) if rule.get("languages") else None})
        return cls(**{**d, "per_query": rule})

    def bounds(self, result: dict) -> tuple[float, float]:
        high = self.high if not isinstance(self.high, str) else result.get(self.high, math.inf)
        return float(self.low), float(high)

    def format(self, value) -> str:
        return f"{value:.{self.digits}f}" if isinstance(value, float) else ""


class Benchmark(Protocol):
    name: str

    def metrics(self, options: EvalOptions) -> list[Metric]:
        """The metrics ``evaluate`` reports with these options (known before any encoding)."""

    def evaluate(self, encoder: TextEncoder, options: EvalOptions = EvalOptions()) -> dict:
        """Encode what the benchmark needs and return its results (the shape above)."""


METRICS = "metrics"  # the key of the declaration in a benchmark's results


def declare(result: dict, metrics: Sequence[Metric]) -> dict:
    """``result`` with its metric declaration (JSON-ready) under ``metrics``."""
    return {**result, METRICS: [m.to_dict() for m in metrics]}


def declared_metrics(result: dict) -> list[Metric]:
    """The metrics a benchmark's results declare. Results written before benchmarks declared their
    metrics (no ``metrics`` key) get the declaration of the built-in benchmark whose keys they have."""
    if METRICS in result:
        return [Metric.from_dict(m) for m in result[METRICS]]
    from mdr.evaluation.miracl import miracl_metrics  # noqa: PLC0415 - only for old results files
    from mdr.evaluation.settings import pool_metrics  # noqa: PLC0415

    if "ndcg_at_10" in result:
        return miracl_metrics(result.get("languages") or [], 100)
    recall_at = sorted({int(k.rsplit("_", 1)[1]) for k in result if k.startswith("multilingual_recall_at_") and k[-1].isdigit()})
    return pool_metrics(recall_at)


def metric_table(results: dict[str, dict]) -> dict[str, Metric]:
    """``{metric name: Metric}`` over several eval sets' results, in declaration order."""
    out: dict[str, Metric] = {}
    for result in results.values():
        for m in declared_metrics(result):
            out.setdefault(m.name, m)
    return out


def scalar_metrics(result: dict) -> dict[str, float]:
    """The metrics and timings of one benchmark's results (every float)."""
    return {k: v for k, v in result.items() if isinstance(v, float)}


def headline_metrics(result: dict) -> dict[str, float]:
    """The metrics without timings."""
    return {k: v for k, v in scalar_metrics(result).items() if not k.endswith("_seconds")}


def per_language(result: dict) -> dict[str, dict[str, float]]:
    """``{metric: {lang: value}}`` for every metric reported per query language."""
    return {k[: -len("_per_lang")]: v for k, v in result.items() if k.endswith("_per_lang") and isinstance(v, dict)}


DERIVED = ("_seen", "_unseen")  # a declared metric's mean over the languages seen / not seen in training


def metric_of(key: str, declared: dict[str, Metric]) -> Metric | None:
    """The declaration a results key falls under: its own, or that of the metric it derives from."""
    if key in declared:
        return declared[key]
    for suffix in DERIVED:
        if key.endswith(suffix) and key[: -len(suffix)] in declared:
            return declared[key[: -len(suffix)]]
    return None


def check_results(name: str, result: dict) -> dict:
    """Raise NumericalError if a metric, per-language value or matrix cell lies outside its declared
    range, or the results hold a float metric their benchmark did not declare."""
    declared = {m.name: m for m in declared_metrics(result)}
    values = [(metric, metric, v) for metric, v in headline_metrics(result).items()]
    values += [(f"{metric}_per_lang[{lang}]", metric, v) for metric, table in per_language(result).items() for lang, v in table.items()]
    for label, key, value in values:
        metric = metric_of(key, declared)
        if metric is None:
            raise NumericalError(f"eval set {name!r}: {label} is not a metric its benchmark declares "
                                 f"(declared: {sorted(declared)}): a bug in the benchmark; nothing was reported")
        low, high = metric.bounds(result)
        if isinstance(value, float) and not math.isnan(value) and not low <= value <= high:
            raise NumericalError(f"eval set {name!r}: {label} = {value} lies outside [{low}, {high}]: a bug in the "
                                 "evaluation, not a result; nothing was reported")
    for x, row in result.get("matrix", {}).items():
        for y, value in row.items():
            if isinstance(value, float) and not math.isnan(value) and not 0.0 <= value <= 1.0:
                raise NumericalError(f"eval set {name!r}: matrix[{x}][{y}] = {value} lies outside [0.0, 1.0]: a bug in the "
                                     "evaluation, not a result; nothing was reported")
    for key, value in scalar_metrics(result).items():
        if key.endswith("_seconds") and value < 0:
            raise NumericalError(f"eval set {name!r}: {key} = {value} lies outside [0.0, inf]: a bug in the "
                                 "evaluation, not a result; nothing was reported")
    return result


def finite_embeddings(emb: torch.Tensor, name: str, what: str) -> torch.Tensor:
    """``emb`` itself, if every value is finite; a diverged model's NaN embeddings would otherwise
    tie every score and rank perfectly."""
    bad = int((~torch.isfinite(emb)).any(dim=-1).sum()) if emb.numel() else 0
    if bad:
        raise NumericalError(f"eval set {name!r}: the encoder gave non-finite embeddings for {bad} of {len(emb)} "
                             f"{what} (a diverged model); no results reported")
    return emb
