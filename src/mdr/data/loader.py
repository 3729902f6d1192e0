"""Batches from drawn pairs: fetching rows, tokenising, and a DataLoader that resumes mid-epoch.

In:  the corpus (``datasets.Dataset``) and, per step, a sampler's ``DrawnBatch`` of (query row,
     passage row) pairs.
Out: a batch dict (see ``mdr.data.datamodule``); ``ResumableDataLoader`` saves its position in the
     epoch in Lightning checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
from torch.utils.data import DataLoader

from mdr.data.batch_sampler import DrawnBatch, ParallelBatchSampler
from mdr.errors import ConfigError

# texts and "query" / "passage" -> padded model inputs (``mdr.model.encoder.Tokenization``)
Tokenize = Callable[[Sequence[str], str], dict[str, Any]]


HARD_NEGATIVES = ("first", "drawn")


class ParallelPairs:
    """Map-style dataset over (query_row, passage_row) pairs; fetches a whole batch in one Arrow read.

    ``num_hard_negatives`` k per example, from its ``negatives`` in the passage's language:
    ``hard_negatives="first"`` takes the first k at every use; ``"drawn"`` draws k distinct ones at
    random at each use, from ``np.random.default_rng(batch.draw_key)`` (seed, epoch, step, rank), so a
    resumed run draws what the uninterrupted one did. Either way an example with fewer than k cycles
    through them, so every rank's batch has the same shape.
    """

    def __init__(self, corpus: datasets.Dataset, num_hard_negatives: int = 0, hard_negatives: str = "first") -> None:
        if hard_negatives not in HARD_NEGATIVES:
            raise ConfigError(f"data.hard_negatives must be one of {list(HARD_NEGATIVES)}, got {hard_negatives!r}")
        self.corpus = corpus
        self.num_hard_negatives = num_hard_negatives
        self.hard_negatives = hard_negatives

    def __getitems__(self, pairs: DrawnBatch | Sequence[tuple[int, int]]) -> dict[str, Any]:
        q_rows = [q for q, _ in pairs]
        p_rows = [p for _, p in pairs]
        queries = self.corpus.select_columns(["query", "lang"])[q_rows]
        p_cols = ["positive", "lang"] + (["negatives"] if self.num_hard_negatives else [])
        passages = self.corpus.select_columns(p_cols)[p_rows]
        negatives = []
        key = getattr(pairs, "draw_key", None)
        rng = np.random.default_rng(list(key)) if self.hard_negatives == "drawn" and key is not None else None
        for negs in passages.get("negatives", []):
            order = rng.permutation(len(negs)) if rng is not None else range(len(negs))
            chosen = [negs[i] for i in order[: self.num_hard_negatives]]
            negatives.extend(chosen[i % len(chosen)] for i in range(self.num_hard_negatives))
        return {
            "query": queries["query"],
            "passage": passages["positive"] + negatives,
            "query_lang": queries["lang"],
            "passage_lang": passages["lang"],
            "kind": getattr(pairs, "kind", None),
            "source": getattr(pairs, "source", None),
        }

    def __getitem__(self, pair: tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([pair])


class Collator:
    """Tokenises a fetched batch (in DataLoader workers when num_workers > 0)."""

    def __init__(self, tokenization: Tokenize) -> None:
        self.tokenization = tokenization

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            **batch,
            "query": self.tokenization(batch["query"], "query"),
            "passage": self.tokenization(batch["passage"], "passage"),
        }


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position inside the epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of every train loader that has one and restores it before
    the resumed epoch starts; the sampler then skips the batches already consumed. Batches are
    counted as the main process hands them out (not as workers prefetch them).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._consumed = 0

    def __iter__(self):
        sampler: ParallelBatchSampler = self.batch_sampler
        self._consumed = sampler.start_step
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict:
        return self.batch_sampler.state_dict(consumed=self._consumed)

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)


def quiet_tokenizers(_: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
