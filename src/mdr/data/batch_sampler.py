"""The machinery every batch sampler shares: deterministic draws, DDP slices, resume, length groups.

A strategy (``mdr.data.samplers``) implements ``draw(rng, size) -> Batch``: ``size`` distinct
examples with a query and a passage language each. ``ParallelBatchSampler`` turns that into the
per-step ``DrawnBatch`` a DataLoader consumes.

Invariants (each tested in ``tests/test_samplers.py``):

- no example id twice in one batch, in any language (its translation would be a false negative);
- batch ``k`` of epoch ``e`` depends only on ``(seed, e, k)``: the same seed gives the same
  sequence, and resuming from ``state_dict()`` continues with exactly the batches an
  uninterrupted run would have drawn;
- under DDP all ranks draw the same global batch of ``world_size * B`` distinct examples and each
  takes its own slice, so the ranks' examples are disjoint and the global batch is distributed as
  one batch would be: an X-X (or per-batch X-Y) step is in the same language (pair) on every rank;
  with per-example X-Y (the default of ``xy`` and hybrid's X-Y branch) and ``mixed``, each example
  has its own pair or language, on every rank alike.

Length grouping (``sampler.length_groups=G``, off at 1): less padding, so faster steps. G
consecutive steps are drawn together as one batch of G x B distinct examples (one draw, as above)
and cut into G batches of similar lengths, handed out in a random order. When the draw has one
language pair (X-X, per-batch X-Y): queries and passages are padded apart, so both lengths count:
the G x B examples are sorted by passage length into strata of k = isqrt(G) batches (the last one
shorter if k does not divide G), and each stratum by query length into its batches. When languages
vary by example (per-example X-Y, mixed): the draw is cut into G batches as drawn, then examples
are exchanged only between slots of the same language pair, shorter passages into earlier batches,
so every batch keeps the language pairs it was drawn with. Either way each batch on its own is
still distributed as above; consecutive steps share their draw within a group. Lengths are
characters, which order texts like token counts do within one language.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from torch.utils.data import Sampler

from mdr.data.index import ParallelIndex
from mdr.errors import ConfigError, require_number

log = logging.getLogger(__name__)


class DrawnBatch(list):
    """What a sampler yields per step: this rank's ``(query_row, passage_row)`` pairs (a plain list
    to the DataLoader), labelled with the batch ``kind`` the sampler drew and, in a mixture, the
    ``source`` corpus name, so that the logged shares report what was drawn, not a guess."""

    def __init__(self, pairs, kind: str, source: str | None = None) -> None:
        super().__init__(pairs)
        self.kind = kind
        self.source = source
        self.draw_key: tuple[int, ...] | None = None  # (seed, epoch, step, rank): seeds per-use choices (hard negatives)


@dataclass
class Batch:
    """One global batch: example indices and, per example, the query and passage language."""

    kind: str  # "xx", "xy" or "mixed"
    examples: np.ndarray  # [world_size * B] example indices, distinct
    query_langs: np.ndarray  # [world_size * B] language indices
    passage_langs: np.ndarray
    source: ParallelIndex | None = None  # set by MixtureSampler: the index the batch was drawn from
    source_name: str | None = None

    def pairs(self, index: ParallelIndex, rank: int, per_rank: int) -> DrawnBatch:
        index = self.source or index
        sl = slice(rank * per_rank, (rank + 1) * per_rank)
        ex = self.examples[sl]
        q_rows = index.rows[ex, self.query_langs[sl]]
        p_rows = index.rows[ex, self.passage_langs[sl]]
        return DrawnBatch(zip(q_rows.tolist(), p_rows.tolist()), self.kind, self.source_name)

    def take(self, positions: np.ndarray) -> Batch:
        return replace(self, examples=self.examples[positions], query_langs=self.query_langs[positions],
                       passage_langs=self.passage_langs[positions])

    def chars(self, index: ParallelIndex) -> tuple[np.ndarray, np.ndarray]:
        """Character lengths of each pair's query and passage."""
        index = self.source or index
        if index.query_chars is None or index.passage_chars is None:
            raise ConfigError("sampler.length_groups > 1 needs text lengths: build the index with "
                              "ParallelIndex.from_dataset")
        return (index.query_chars[self.examples, self.query_langs],
                index.passage_chars[self.examples, self.passage_langs])


class ParallelBatchSampler(Sampler[DrawnBatch]):
    """Base class: deterministic per-step randomness, DDP slicing, epoch length, resumable state.

    Args:
        index: the corpus index.
        batch_size: examples per batch on each rank (B).
        steps_per_epoch: batches per epoch; default: corpus rows // (B * world_size).
        seed: base seed; batch k of epoch e uses ``np.random.default_rng([seed, e, k])``.
        rank, world_size: DDP position; all ranks must pass the same other arguments.
        languages: restrict to these languages (default: all in the data).
        temperature: t in p ∝ n ** t; 1 samples in proportion to data size, 0 uniformly.
        length_groups: G > 1 draws G steps together and cuts them into batches of similar query and
            passage lengths (see the module docstring); lowered, with a warning, to what the smallest
            language or pair can fill with distinct examples.
    """

    def __init__(
        self,
        index: ParallelIndex,
        batch_size: int,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        languages: Sequence[str] | None = None,
        temperature: float = 1.0,
        length_groups: int = 1,
    ) -> None:
        require_number("data.batch_size", batch_size, low=1, integer=True)
        require_number("sampler.temperature", temperature, low=0)
        require_number("sampler.length_groups", length_groups, low=1, integer=True)
        if steps_per_epoch is not None:
            require_number("sampler.steps_per_epoch", steps_per_epoch, low=1, integer=True)
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world size {world_size}")
        self.index = index
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.temperature = temperature
        self.length_groups = length_groups
        self.smallest = 0  # fewest distinct examples draw() may have to choose from; set by subclasses
        self.lang_ids = (
            np.array([index.lang_id(lang) for lang in languages])
            if languages
            else np.arange(len(index.languages))
        )
        n_rows = int(index.available[:, self.lang_ids].sum())
        self.steps_per_epoch = steps_per_epoch or max(1, n_rows // self.global_batch)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"sampler.steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.epoch = 0
        self._start_step = 0  # set by load_state_dict for a mid-epoch resume
        self._last_group: tuple[tuple[int, int], list[Batch]] | None = None  # ((epoch, group), its batches)

    # -- to implement -------------------------------------------------------------------
    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        """One batch of ``size`` distinct examples (a multiple of the global batch)."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------------------
    @cached_property
    def groups(self) -> int:
        """The length groups in use: ``length_groups``, or fewer if a language or pair is too small."""
        groups = max(1, min(self.length_groups, self.smallest // self.global_batch))
        if groups < self.length_groups:
            log.warning("sampler.length_groups lowered from %d to %d: the smallest language or pair has only "
                        "%d examples for batches of %d", self.length_groups, groups, self.smallest, self.global_batch)
        return groups

    def batch_at(self, epoch: int, step: int) -> Batch:
        if self.groups == 1:
            return self.draw(np.random.default_rng([self.seed, epoch, step]), self.global_batch)
        group, position = divmod(step, self.groups)
        return self._length_group(epoch, group)[position]

    def _length_group(self, epoch: int, group: int) -> list[Batch]:
        """The batches of one length group, in the order they are handed out. The steps of a group
        come one after another, so the last group is kept rather than drawn again for each."""
        key = (epoch, group)
        if self._last_group is not None and self._last_group[0] == key:
            return self._last_group[1]
        rng = np.random.default_rng([self.seed, epoch, group, self.groups])
        drawn = self.draw(rng, self.groups * self.global_batch)
        query_chars, passage_chars = drawn.chars(self.index)
        # language ids are those of the index the group was drawn from (a mixture's source)
        pair = drawn.query_langs * len((drawn.source or self.index).languages) + drawn.passage_langs
        if (pair == pair[0]).all():
            # one language pair: strata of similar passages, each cut by query length (queries and
            # passages are padded apart; isqrt(G) batches per stratum, the last one short)
            size = math.isqrt(self.groups) * self.global_batch
            order = np.argsort(passage_chars, kind="stable")
            strata = np.split(order, range(size, len(order), size))
            order = np.concatenate([s[np.argsort(query_chars[s], kind="stable")] for s in strata])
        else:
            # languages vary by example: each batch keeps the language pairs it was drawn with, and
            # examples move only between slots of the same pair, the shorter into the earlier batches
            order = np.arange(len(pair))
            for value in np.unique(pair):
                slots = np.flatnonzero(pair == value)
                order[slots] = slots[np.argsort(passage_chars[slots], kind="stable")]
        batches = order.reshape(self.groups, self.global_batch)[rng.permutation(self.groups)]
        self._last_group = (key, [drawn.take(b) for b in batches])
        return self._last_group[1]

    @property
    def start_step(self) -> int:
        """Where the next iteration starts in the epoch: a resume's position, else 0."""
        return self._start_step

    def __iter__(self) -> Iterator[DrawnBatch]:
        start, self._start_step = self._start_step, 0
        for step in range(start, self.steps_per_epoch):
            batch = self.batch_at(self.epoch, step).pairs(self.index, self.rank, self.batch_size)
            batch.draw_key = (self.seed, self.epoch, step, self.rank)
            yield batch

    def __len__(self) -> int:
        # the full epoch even when resuming: Lightning counts the skipped batches as already done
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a pending resume applies to its own epoch only."""
        if epoch != self.epoch:
            self._start_step = 0
        self.epoch = epoch

    def state_dict(self, consumed: int) -> dict:
        """State after ``consumed`` batches of the current epoch were used."""
        return {"epoch": self.epoch, "step": consumed, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["world_size"] != self.world_size:
            raise ConfigError(
                f"cannot resume sampler: checkpoint has seed={state['seed']}, world_size={state['world_size']}, "
                f"this run has seed={self.seed}, world_size={self.world_size}"
            )
        self.epoch = state["epoch"]
        self._start_step = state["step"]

    # -- helpers for subclasses ---------------------------------------------------------
    def _weights(self, counts: np.ndarray) -> np.ndarray:
        w = np.where(counts > 0, counts.astype(np.float64) ** self.temperature, 0.0)
        return w / w.sum()

    def _distinct(self, rng: np.random.Generator, candidates: np.ndarray, size: int) -> np.ndarray:
        return rng.choice(candidates, size=size, replace=False)

    def _require(self, what: str, count: int) -> None:
        if count < self.global_batch:
            raise ConfigError(
                f"batch size {self.global_batch}"
                + (f" ({self.batch_size} x {self.world_size} ranks)" if self.world_size > 1 else "")
                + f" is larger than the {count} examples available in {what}; lower the batch size "
                "or leave that language out with sampler.languages"
            )
