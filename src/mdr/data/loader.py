"""Batches from drawn pairs: fetching rows, tokenising, and a DataLoader that resumes mid-epoch.

In:  the corpus (``datasets.Dataset``) and, per step, a sampler's ``DrawnBatch`` of (query row,
     passage row) pairs.
Out: a batch dict (see ``mdr.data.datamodule``); ``ResumableDataLoader`` saves its position in the
     epoch in Lightning checkpoints.

Every passage of a batch carries two 64-bit keys (``passage_keys``, computed in the collator, so in
the DataLoader workers): the example it belongs to (positives: their row's id; hard negatives: their
``negative_ids`` entry, 0 when the data has none) and a fingerprint of its text. The loss uses them to
find in-batch false negatives (``mdr.model.loss``). The hashes are blake2b, the same in every process
(Python's ``hash`` is salted per process, and DDP ranks compare keys); two different ids or texts
collide with probability about 2^-64 per pair.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import datasets
import numpy as np
import torch
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
        p_cols = ["id", "positive", "lang"] + (["negatives"] if self.num_hard_negatives else [])
        if self.num_hard_negatives and "negative_ids" in self.corpus.column_names:
            p_cols.append("negative_ids")
        passages = self.corpus.select_columns(p_cols)[p_rows]
        negatives, negative_ids = [], []
        key = getattr(pairs, "draw_key", None)
        rng = np.random.default_rng(list(key)) if self.hard_negatives == "drawn" and key is not None else None
        all_negatives = passages.get("negatives", [])
        for negs, ids in zip(all_negatives, passages.get("negative_ids") or [None] * len(all_negatives)):
            order = rng.permutation(len(negs)) if rng is not None else range(len(negs))
            chosen = list(order[: self.num_hard_negatives])
            # cycle when an example has fewer than k negatives, so every rank's batch has the same shape
            picks = [chosen[i % len(chosen)] for i in range(self.num_hard_negatives)]
            negatives.extend(negs[j] for j in picks)
            negative_ids.extend(ids[j] if ids else None for j in picks)
        return {
            "query": queries["query"],
            "passage": passages["positive"] + negatives,
            "passage_id": passages["id"] + negative_ids,  # the example of each passage; None: not known
            "query_lang": queries["lang"],
            "passage_lang": passages["lang"],
            "kind": getattr(pairs, "kind", None),
            "source": getattr(pairs, "source", None),
        }

    def __getitem__(self, pair: tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([pair])


def fingerprint(text: str) -> int:
    """A signed 64-bit hash of ``text``, the same in every process; never 0 (0 means 'not known')."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True) or 1


def passage_keys(texts: Sequence[str], ids: Sequence[str | None], source: str | None = None) -> torch.Tensor:
    """[P, 2] int64: per passage, (its example id's fingerprint or 0 when unknown, its text's fingerprint).
    Ids are keyed by the source corpus too, so equal ids of two corpora in a mixture stay apart."""
    prefix = f"{source}\0" if source else ""
    return torch.tensor([[fingerprint(prefix + i) if i is not None else 0, fingerprint(t)] for t, i in zip(texts, ids)],
                        dtype=torch.int64).reshape(-1, 2)


class Collator:
    """Tokenises a fetched batch and keys its passages (in DataLoader workers when num_workers > 0)."""

    def __init__(self, tokenization: Tokenize) -> None:
        self.tokenization = tokenization

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            **batch,
            "query": self.tokenization(batch["query"], "query"),
            "passage": self.tokenization(batch["passage"], "passage"),
            "passage_keys": passage_keys(batch["passage"], batch["passage_id"], batch.get("source")),
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
