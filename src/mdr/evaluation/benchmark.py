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
through the helpers below, so a new benchmark needs no special case anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


class TextEncoder(Protocol):
    """What a benchmark needs of a model (``mdr.model.encoder.Encoder`` is one)."""

    def encode(self, texts: Sequence[str], kind: str, batch_size: int = 128) -> torch.Tensor:
        """[N, dim] float32 embeddings on the CPU; ``kind`` is "query" or "passage"."""

    def parameters(self): ...


@dataclass(frozen=True)
class EvalOptions:
    """Options shared by every benchmark of a run (``eval.batch_size``, ``eval.chunk_size``)."""

    batch_size: int = 128  # texts per encoder forward pass
    chunk_size: int = 256  # queries scored against a full pool at a time (bounds scoring memory)


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
