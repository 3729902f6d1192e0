"""Validation data: fixed batches whose in-batch InfoNCE loss (``val/loss``) selects the checkpoint.

In:  validation files in the parallel schema (``data.val_files``, e.g. an English SQuADShifts
     export) or a held-out share of the training examples (``data.val_split``), optionally
     restricted to some languages (``data.val_languages``); a batch sampler.
Out: the training corpus without the held-out examples, and ``data.val_batches`` fixed batches:
     drawn once by the sampler from a constant seed, so they are the same at every validation, after
     a resume, and in every run of a sweep; DDP-sliced like training batches.

The split is by example id, so no translation of a validation example is trained on; which ids are
held out depends only on the ids and ``VAL_SEED``, not on file order or the run's seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import datasets
import numpy as np
from torch.utils.data import Sampler

from mdr.data.batch_sampler import DrawnBatch
from mdr.data.index import ParallelIndex
from mdr.errors import ConfigError, require_number

VAL_SEED = 20240820  # the same held-out ids and validation batches in every run


def split_by_id(corpus: datasets.Dataset, fraction: float, where: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(training rows, held-out rows): a ``fraction`` of the example ids, in all their languages."""
    require_number("data.val_split", fraction, low=0, high=1, low_open=True)
    index = ParallelIndex.from_dataset(corpus)
    n = len(index.example_ids)
    held = math.ceil(fraction * n)
    if held >= n:
        raise ConfigError(f"data.val_split={fraction} holds out all {n} examples of {where}; lower it")
    keys = [hashlib.sha1(f"{VAL_SEED}:{i}".encode()).digest() for i in index.example_ids]
    held_examples = np.argsort(np.array(keys, dtype=object), kind="stable")[:held]
    is_held = np.zeros(len(corpus), dtype=bool)
    rows = index.rows[held_examples]
    is_held[rows[rows >= 0]] = True
    return corpus.select(np.flatnonzero(~is_held)), corpus.select(np.flatnonzero(is_held))


def keep_languages(corpus: datasets.Dataset, languages: Sequence[str] | None, where: str) -> datasets.Dataset:
    """The rows in ``languages`` (all when None); each must occur."""
    if not languages:
        return corpus
    langs = corpus["lang"]
    missing = sorted(set(languages) - set(langs))
    if missing:
        raise ConfigError(f"data.val_languages {missing} are not in {where} (it has {sorted(set(langs))})")
    wanted = set(languages)
    return corpus.select([i for i, lang in enumerate(langs) if lang in wanted])


class FixedBatches(Sampler[DrawnBatch]):
    """The same batches, in the same order, every time."""

    def __init__(self, batches: list[DrawnBatch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[DrawnBatch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def fixed_batches(sampler_factory, index: ParallelIndex, batch_size: int, count: int, rank: int, world_size: int) -> FixedBatches:
    """``count`` batches drawn once by ``sampler_factory`` (a sampler partial) from ``VAL_SEED``."""
    require_number("data.val_batches", count, low=1, integer=True)
    try:
        sampler = sampler_factory(index, batch_size, rank=rank, world_size=world_size, seed=VAL_SEED,
                                  steps_per_epoch=count, length_groups=1)
    except ConfigError as e:
        raise ConfigError(f"validation batches: {e}") from None
    return FixedBatches(list(sampler))
