"""Batch samplers: how the languages of each in-batch-negatives batch are drawn.

Every sampler yields, per training step, a ``DrawnBatch``: the list of ``(query_row, passage_row)``
pairs that index the long-format corpus (``mdr.formats.parallel``), labelled with the batch kind
it drew (``xx``, ``xy`` or ``mixed``) and, in a mixture, its source. The strategies:

- ``XXSampler`` (``sampler=xx``): draw one language X with p(X) ∝ n_X ** temperature, then B
  distinct examples available in X. Queries and passages are in X.
- ``XYSampler`` (``sampler=xy``): draw an ordered pair (X, Y), X != Y, with p ∝ n_XY ** temperature
  (n_XY = examples available in both), then B distinct examples. Queries in X, passages in Y.
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
    """X-Y batches: an ordered pair X != Y per batch, p(X, Y) ∝ n_XY ** temperature.

    Pairs without shared examples have probability 0 (monolingual-only data is allowed as long as
    at least one pair exists).
    """

    def __init__(self, index: ParallelIndex, batch_size: int, **kwargs) -> None:
        super().__init__(index, batch_size, **kwargs)
        n = index.pair_counts()
        pairs = [(x, y) for x in self.lang_ids for y in self.lang_ids if x != y and n[x, y] > 0]
        if not pairs:
            raise ConfigError(
                f"sampler needs X-Y pairs but no two of the languages {[index.languages[i] for i in self.lang_ids]} "
                "share an example id"
            )
        self.pairs = np.array(pairs)
        self.counts = np.array([n[x, y] for x, y in pairs])
        for (x, y), c in zip(pairs, self.counts):
            self._require(f"both {index.languages[x]!r} and {index.languages[y]!r}", int(c))
        self.probs = self._weights(self.counts)
        self.smallest = int(self.counts.min())

    def draw(self, rng: np.random.Generator, size: int) -> Batch:
        x, y = self.pairs[rng.choice(len(self.pairs), p=self.probs)]
        examples = self._distinct(rng, self.index.examples_in_both(x, y), size)
        return Batch("xy", examples, np.full(size, x), np.full(size, y))


class HybridSampler(ParallelBatchSampler):
    """Hybrid batches: X-X with probability ``alpha``, else X-Y (both drawn as above)."""

    def __init__(self, index: ParallelIndex, batch_size: int, alpha: float = 0.5, **kwargs) -> None:
        require_number("sampler.alpha", alpha, low=0, high=1)
        super().__init__(index, batch_size, **kwargs)
        self.alpha = alpha
        # alpha = 0 or 1 degenerates to pure X-Y / X-X, which need not be constructible otherwise
        self.xx = XXSampler(index, batch_size, **kwargs) if alpha > 0 else None
        self.xy = XYSampler(index, batch_size, **kwargs) if alpha < 1 else None
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
        length_groups: as for any sampler; a group is drawn from one source.
    """

    def __init__(self, samplers: dict[str, ParallelBatchSampler], weights: dict[str, float],
                 steps_per_epoch: int | None = None, length_groups: int = 1) -> None:
        if not samplers:
            raise ConfigError("data.sources is empty")
        bad = {name: w for name, w in weights.items() if not w > 0}
        if bad or set(weights) != set(samplers):
            raise ConfigError(f"data.sources weights must be > 0 for every source, got {weights}")
        first = next(iter(samplers.values()))
        super().__init__(first.index, first.batch_size, seed=first.seed, rank=first.rank, world_size=first.world_size,
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
