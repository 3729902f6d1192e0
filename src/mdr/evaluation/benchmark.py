"""The one evaluation protocol: a ``Benchmark`` turns an encoder into results of one shape.

A benchmark is anything with a ``name`` and ``evaluate(encoder, options) -> results``; the
configured ones are built by Hydra from ``eval.sets`` (LAReQA-style pools in
``mdr.evaluation.pools`` / ``lareqa``, MIRACL's corpus search in ``mdr.evaluation.miracl``).

The results of one benchmark are a flat, JSON-ready dict:

    <metric>            float      a headline metric (mAP, rank distance, nDCG@10, ...); logged as
                                   ``eval/<set>/<metric>``, a column of the result tables
    <metric>_per_lang   {lang: float}   the same metric per query language
    matrix              {X: {Y: float}}  optional: mAP of X queries against the Y pool
    *_seconds           float      timings (logged, not tabulated)
    anything else       information: ``languages``, ``num_queries``, ...

Everything downstream (logging, tables, the sweep summary, the model card) reads results
through the helpers below, so a new benchmark needs no special case anywhere. Before anything is
reported, ``check_results`` verifies every metric against its range: a metric outside it is a bug
(or a diverged model), never a result. NaN means "not defined here" (e.g. no query with two
relevant candidates for the rank distance) and passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    ``eval.recall_at``; the training languages come from the run or ``eval.training_languages``)."""

    batch_size: int = 128  # texts per encoder forward pass
    chunk_size: int = 256  # queries scored against a full pool at a time (bounds scoring memory)
    recall_at: tuple[int, ...] = (1, 10)  # recall cut-offs of the pool benchmarks
    training_languages: tuple[str, ...] | None = None  # for the seen / unseen split


class Benchmark(Protocol):
    name: str

    def evaluate(self, encoder: TextEncoder, options: EvalOptions = EvalOptions()) -> dict:
        """Encode what the benchmark needs and return its results (the shape above)."""


def scalar_metrics(result: dict) -> dict[str, float]:
    """The headline metrics and timings of one benchmark's results."""
    return {k: v for k, v in result.items() if isinstance(v, float)}


def headline_metrics(result: dict) -> dict[str, float]:
    """The headline metrics without timings."""
    return {k: v for k, v in scalar_metrics(result).items() if not k.endswith("_seconds")}


def per_language(result: dict) -> dict[str, dict[str, float]]:
    """``{metric: {lang: value}}`` for every metric reported per query language."""
    return {k[: -len("_per_lang")]: v for k, v in result.items() if k.endswith("_per_lang") and isinstance(v, dict)}


def metric_range(metric: str, result: dict) -> tuple[float, float]:
    """The closed range a metric must lie in: ranks distances between 0 and the pool size, timings
    non-negative, every other metric (mAP, recall, nDCG, rates) a proportion."""
    if metric.endswith("_seconds"):
        return 0.0, math.inf
    if metric.startswith("rank_distance"):
        return 0.0, float(result.get("num_candidates", math.inf))
    return 0.0, 1.0


def check_results(name: str, result: dict) -> dict:
    """Raise NumericalError if a metric, per-language value or matrix cell lies outside its range."""
    values = [(metric, metric, v) for metric, v in scalar_metrics(result).items()]
    values += [(f"{metric}_per_lang[{lang}]", metric, v) for metric, table in per_language(result).items() for lang, v in table.items()]
    values += [(f"matrix[{x}][{y}]", "map", v) for x, row in result.get("matrix", {}).items() for y, v in row.items()]
    for label, metric, value in values:
        low, high = metric_range(metric, result)
        if isinstance(value, float) and not math.isnan(value) and not low <= value <= high:
            raise NumericalError(f"eval set {name!r}: {label} = {value} lies outside [{low}, {high}]: a bug in the "
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
