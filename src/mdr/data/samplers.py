"""Batch samplers: how the languages of each in-batch-negatives batch are drawn.

Every sampler yields, per training step, a ``DrawnBatch``: the list of ``(query_row, passage_row)``
pairs that index the long-format corpus (``mdr.formats.parallel``), labelled with the batch kind
it drew (``xx``, ``xy`` or ``mixed``) and, in a mixture, its source. The strategies:

- ``XXSampler`` (``sampler=xx``): draw one language X with p(X) ∝ n_X ** temperature, then B
  distinct examples available in X. Queries and passages are in X.
- ``XYSampler`` (``sampler=xy``): queries in X, passages in Y != X, ordered pairs drawn with
  p ∝ n_XY ** temperature (n_XY = examples available in both). By default each example of the
  batch gets its own pair (``xy_pairs=per_example``, the paper's design); ``xy_pairs=per_batch``
  draws one pair for the whole batch. B distinct examples either way.
- ``HybridSampler`` (``sampler=hybrid``): each batch is an X-X batch with probability ``alpha``,
  otherwise an X-Y batch.
- ``XXSampler(languages=["en"])`` (``sampler=en_en``): the English-only baseline.
- ``MixedSampler`` (``sampler=mixed``): B distinct examples, each in its own uniformly drawn
  language; query and passage of an example share that language.
- ``MixtureSampler`` (``data.sources``): several corpora in one run; each batch first draws a
  corpus with its configured weight, then that corpus's own sampler draws the batch. The run's
  ``sampler.steps_per_epoch`` and ``sampler.length_groups`` apply to the mixture as a whole.

Every strategy is a ``ParallelBatchSampler`` (``mdr.data.batch_sampler``) that implements one
method, ``draw(rng, size)``; determinism, DDP slicing, resume and length grouping come from the
base class, with the invariants listed there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mdr.data.batch_sampler import Batch, ParallelBatchSampler
from mdr.data.index import ParallelIndex
from mdr.errors import ConfigError, require_number

XY_PAIRS = ("per_example", "per_batch")


class XXSampler(ParallelBatchSampler):
    """X-X batches: one language X per batch, p(X) ∝ n_X ** temperature."""

    def __init__(self, index: ParallelIndex, batch_size: int, **kwargs) -> None:
        super().__init__(index, batch_size, **kwargs)
        self.counts = np.array([len(index.examples_in(lang)) for lang in self.lang_ids])
        for lang, n in zip(self.lang_ids, self.counts):
            self._require(f"language {index.languages[lang]!r}", int(n))
        self.probs = self._weights(self.counts)
        self.smallest = int(self.counts.min())

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        lang = self.lang_ids[rng.choice(len(self.lang_ids), p=self.probs)]
        examples = self._distinct(rng, self.index.examples_in(lang), size)
        langs = np.full(size, lang)
        return Batch("xx", examples, langs, langs)


class XYSampler(ParallelBatchSampler):
    """X-Y batches: queries in X, passages in Y != X, ordered pairs drawn with p(X, Y) ∝ n_XY ** temperature.

    ``xy_pairs="per_example"`` (default, the paper's design, its Figure 2): every example of the batch
    gets its own pair, so a query's in-batch negatives come in several languages, some in its own.
    ``xy_pairs="per_batch"``: one pair for the whole batch (all queries in X, all passages in Y).
    Pairs without shared examples have probability 0 (monolingual-only data is allowed as long as
    at least one pair exists).
    """

    def __init__(self, index: ParallelIndex, batch_size: int, xy_pairs: str = "per_example", **kwargs) -> None:
        if xy_pairs not in XY_PAIRS:
            raise ConfigError(f"sampler.xy_pairs must be one of {XY_PAIRS}, got {xy_pairs!r}")
        super().__init__(index, batch_size, **kwargs)
        self.xy_pairs = xy_pairs
        n = index.pair_counts()
        pairs = [(x, y) for x in self.lang_ids for y in self.lang_ids if x != y and n[x, y] > 0]
        if not pairs:
            raise ConfigError(
                f"sampler needs X-Y pairs but no two of the languages {[index.languages[i] for i in self.lang_ids]} "
                "share an example id"
            )
        self.pairs = np.array(pairs)
        self.counts = np.array([n[x, y] for x, y in pairs])
        self.probs = self._weights(self.counts)
        if xy_pairs == "per_batch":
            for (x, y), c in zip(pairs, self.counts):
                self._require(f"both {index.languages[x]!r} and {index.languages[y]!r}", int(c))
            self.smallest = int(self.counts.min())
        else:
            self.candidates = [index.examples_in_both(x, y) for x, y in pairs]
            union = len(np.unique(np.concatenate(self.candidates)))
            self._require("the X-Y pairs of these languages together", union)
            self.smallest = union

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        if self.xy_pairs == "per_batch":
            x, y = self.pairs[rng.choice(len(self.pairs), p=self.probs)]
            examples = self._distinct(rng, self.index.examples_in_both(x, y), size)
            return Batch("xy", examples, np.full(size, x), np.full(size, y))
        return self._draw_per_example(rng, size)

    def _draw_per_example(self, rng: np.random.Generator, size: int) -> Batch:
        """Each row's pair i.i.d. from ``probs``; then, pair by pair, examples not taken by another row.
        A row whose pair has run out of unused examples draws again among the pairs that have some."""
        used = np.zeros(len(self.index.example_ids), dtype=bool)
        pair_of, example_of = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        probs, todo = self.probs.copy(), np.arange(size)
        while len(todo):
            drawn = rng.choice(len(self.pairs), size=len(todo), p=probs / probs.sum())
            left = []
            for k in np.unique(drawn):
                rows = todo[drawn == k]
                free = self.candidates[k][~used[self.candidates[k]]]
                take = min(len(rows), len(free))
                picked = rng.choice(free, size=take, replace=False)
                used[picked] = True
                pair_of[rows[:take]], example_of[rows[:take]] = k, picked
                if take < len(rows):
                    probs[k] = 0.0  # exhausted for this batch
                    left.append(rows[take:])
            todo = np.concatenate(left) if left else np.empty(0, dtype=np.int64)
        return Batch("xy", example_of, self.pairs[pair_of, 0], self.pairs[pair_of, 1])


class HybridSampler(ParallelBatchSampler):
    """Hybrid batches: X-X with probability ``alpha``, else X-Y (both drawn as above, ``xy_pairs`` for
    the X-Y branch)."""

    def __init__(self, index: ParallelIndex, batch_size: int, alpha: float = 0.5, xy_pairs: str = "per_example",
                 **kwargs) -> None:
        require_number("sampler.alpha", alpha, low=0, high=1)
        super().__init__(index, batch_size, **kwargs)
        self.alpha = alpha
        # alpha = 0 or 1 degenerates to pure X-Y / X-X, which need not be constructible otherwise
        self.xx = XXSampler(index, batch_size, **kwargs) if alpha > 0 else None
        self.xy = XYSampler(index, batch_size, xy_pairs=xy_pairs, **kwargs) if alpha < 1 else None
        self.smallest = min(s.smallest for s in (self.xx, self.xy) if s is not None)

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        use_xx = rng.random() < self.alpha
        return (self.xx if use_xx else self.xy).draw(rng, size)


class MixedSampler(ParallelBatchSampler):
    """Mixed baseline: B distinct examples, each in its own uniformly drawn available language."""

    def __init__(self, index: ParallelIndex, batch_size: int, **kwargs) -> None:
        super().__init__(index, batch_size, **kwargs)
        self.mask = index.available[:, self.lang_ids]
        self.candidates = np.flatnonzero(self.mask.any(1))
        self._require(f"languages {[index.languages[i] for i in self.lang_ids]}", len(self.candidates))
        self.smallest = len(self.candidates)

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        examples = self._distinct(rng, self.candidates, size)
        # uniform among each example's available languages: argmax of masked uniform noise
        noise = rng.random((len(examples), len(self.lang_ids))) * self.mask[examples]
        langs = self.lang_ids[noise.argmax(1)]
        return Batch("mixed", examples, langs, langs)


class MixtureSampler(ParallelBatchSampler):
    """Several corpora with weights: batch k draws corpus c with p ∝ weight_c, then corpus c's own
    sampler (any of the above, on an index whose rows point into the concatenated corpus) draws
    the batch. A batch never mixes corpora, so ids of different corpora cannot collide in it.

    Args:
        samplers: per source name, its sampler; all built with the same batch size, seed and DDP
            position (their own ``steps_per_epoch`` and ``length_groups`` are not used).
        weights: per source name, a weight > 0.
        steps_per_epoch: the mixture's epoch; default: the sum of the sources' epochs.
        length_groups: as for any sampler; a group is drawn from one source (and its language pairs
            are told apart in that source's own language list).
        index: the mixture's index on one language list (``ParallelIndex.concat`` of the sources'),
            by default built from the samplers' indexes.
    """

    def __init__(self, samplers: dict[str, ParallelBatchSampler], weights: dict[str, float],
                 steps_per_epoch: int | None = None, length_groups: int = 1, index: ParallelIndex | None = None) -> None:
        if not samplers:
            raise ConfigError("data.sources is empty")
        bad = {name: w for name, w in weights.items() if not w > 0}
        if bad or set(weights) != set(samplers):
            raise ConfigError(f"data.sources weights must be > 0 for every source, got {weights}")
        first = next(iter(samplers.values()))
        index = index or ParallelIndex.concat([s.index for s in samplers.values()])
        super().__init__(index, first.batch_size, seed=first.seed, rank=first.rank, world_size=first.world_size,
                         steps_per_epoch=steps_per_epoch or sum(s.steps_per_epoch for s in samplers.values()),
                         length_groups=length_groups)
        self.samplers, self.names = samplers, list(samplers)
        w = np.array([weights[n] for n in self.names], dtype=np.float64)
        self.probs = w / w.sum()
        self.smallest = min(s.smallest for s in samplers.values())

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        name = self.names[rng.choice(len(self.names), p=self.probs)]
        sampler = self.samplers[name]
        return replace(sampler.draw(rng, size), source=sampler.index, source_name=name)
