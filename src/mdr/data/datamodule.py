"""Training data (config group ``data``): corpus -> sampler -> tokenised batches.

``ParallelDataModule.train_dataloader`` returns a ``ResumableDataLoader`` whose batch sampler is one
of ``mdr.data.samplers``. A batch is a dict::

    query, passage   tokenised inputs (dynamic padding); passage holds the B positives first, then
                     B * num_hard_negatives hard negatives (example i's negatives in a block)
    passage_id       list of the passages' example ids (None where unknown: a negative without ``negative_ids``)
    passage_keys     int64 tensor [B * (1 + num_hard_negatives), 2]: per passage, fingerprints of its example
                     id (0: unknown) and text, for the loss's false-negative mask (``mdr.data.loader``)
    query_lang, passage_lang   list[str] of length B
    kind             "xx", "xy" or "mixed": what the sampler drew
    source           the source corpus's name under ``data.sources``, else None
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import datasets
import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from mdr.data.batch_sampler import ParallelBatchSampler
from mdr.data.index import ParallelIndex
from mdr.data.loader import HARD_NEGATIVES, Collator, ParallelPairs, ResumableDataLoader, Tokenize, quiet_tokenizers
from mdr.data.samplers import MixtureSampler
from mdr.data.subset import check_subset_options, keep_examples
from mdr.data.validation import fixed_batches, keep_languages, split_by_id
from mdr.errors import ConfigError, DataError, require_number
from mdr.formats.parallel import load_parallel_corpus


SOURCE_WEIGHTING = ("weight", "size")


class ParallelDataModule(L.LightningDataModule):
    """Loads the parallel corpus and serves sampler-driven batches.

    Args:
        files: corpus file paths/globs (the schema: ``mdr.formats.parallel``).
        sampler: a callable ``(index, batch_size, rank=, world_size=, seed=) -> ParallelBatchSampler``
            (Hydra's ``_partial_`` of the ``sampler`` config group).
        tokenization: from the encoder.
        batch_size: per rank.
        languages: restrict the corpus to these languages.
        num_hard_negatives: hard negatives per example (needs a ``negatives`` field in the data).
        hard_negatives: which of an example's negatives each use takes: ``first`` (its first k, every
            time) or ``drawn`` (k at random per use, seeded by seed, epoch, step and rank); see
            ``mdr.data.loader.ParallelPairs``.
        num_workers: DataLoader workers (tokenisation runs there).
        seed: sampler seed.
        sources: instead of ``files``, several corpora mixed with weights:
            ``{name: {"files": ..., "weight": w, "sampler": optional sampler partial}}``. Each batch
            comes from one corpus, drawn with p ∝ weight, by that corpus's sampler (default: the
            ``sampler`` group's); see ``MixtureSampler``. The ``sampler`` group's
            ``steps_per_epoch`` and ``length_groups`` apply to the mixture as a whole.
        source_weighting: ``weight`` (each source's ``weight``) or ``size``: p ∝ the rows (examples x
            languages) each source's sampler draws from, the paper's sampling "based on dataset size".
        max_examples, example_fraction: train on a nested subset of the example ids (``mdr.data.subset``),
            taken after the validation hold-out; with ``sources``, per source (a source's own options
            ``max_examples`` / ``example_fraction`` replace these). ``data_subset`` records what was kept.
        val_files, val_split, val_languages, val_batches, val_sampler: validation data (see
            ``mdr.data.validation``): files, or a held-out share of the training ids; the languages
            kept; how many fixed batches; how they are drawn (a sampler partial; default ``sampler``).
    """

    def __init__(
        self,
        files: str | Sequence[str],
        sampler: Callable[..., ParallelBatchSampler],
        tokenization: Tokenize,
        batch_size: int = 32,
        languages: Sequence[str] | None = None,
        num_hard_negatives: int = 0,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        sources: dict[str, dict] | None = None,
        hard_negatives: str = "first",
        source_weighting: str = "weight",
        val_files: str | Sequence[str] | None = None,
        val_split: float = 0.0,
        val_languages: Sequence[str] | None = None,
        val_batches: int = 20,
        val_sampler: Callable[..., ParallelBatchSampler] | None = None,
        max_examples: int | None = None,
        example_fraction: float | None = None,
    ) -> None:
        super().__init__()
        require_number("data.batch_size", batch_size, low=1, integer=True)
        require_number("data.num_hard_negatives", num_hard_negatives, low=0, integer=True)
        require_number("data.num_workers", num_workers, low=0, integer=True)
        if (files is None) == (not sources):
            raise ConfigError("set exactly one of data.files and data.sources")
        if val_files and val_split:
            raise ConfigError("set at most one of data.val_files and data.val_split")
        if val_split and sources:
            raise ConfigError("data.val_split holds out part of data.files; with data.sources give data.val_files")
        if hard_negatives not in HARD_NEGATIVES:
            raise ConfigError(f"data.hard_negatives must be one of {list(HARD_NEGATIVES)}, got {hard_negatives!r}")
        if source_weighting not in SOURCE_WEIGHTING:
            raise ConfigError(f"data.source_weighting must be one of {list(SOURCE_WEIGHTING)}, got {source_weighting!r}")
        check_subset_options(max_examples, example_fraction)
        for name, spec in (sources or {}).items():
            if isinstance(spec, Mapping):
                check_subset_options(spec.get("max_examples"), spec.get("example_fraction"), f"data.sources.{name}")
        self.max_examples, self.example_fraction = max_examples, example_fraction
        self.data_subset: dict = {}  # what setup kept (mdr.data.subset.keep_examples's record; per source under "sources")
        self.files = files
        self.sources = dict(sources or {})
        self.source_index: dict[str, ParallelIndex] = {}
        self.sampler_factory = sampler
        self.tokenization = tokenization
        self.batch_size = batch_size
        self.languages = list(languages) if languages else None
        self.num_hard_negatives = num_hard_negatives
        self.hard_negatives = hard_negatives
        self.source_weighting = source_weighting
        self.num_workers = num_workers
        self.seed = seed
        self.cache_dir = cache_dir
        self.val_files, self.val_split, self.val_batches = val_files, val_split, val_batches
        self.val_languages = list(val_languages) if val_languages else None
        self.val_sampler_factory = val_sampler or sampler
        self.corpus: datasets.Dataset | None = None
        self.index: ParallelIndex | None = None
        self.val_corpus: datasets.Dataset | None = None
        self.val_index: ParallelIndex | None = None
        self._loader: ResumableDataLoader | None = None
        self._resume_state: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is not None:
            return
        if self.sources:
            self._setup_sources()
        else:
            self.corpus = load_parallel_corpus(self.files, self.languages, cache_dir=self.cache_dir)
            if self.val_split:
                self.corpus, self.val_corpus = split_by_id(self.corpus, self.val_split, f"data.files {self.files}")
            self.corpus, self.index, self.data_subset = keep_examples(self.corpus, self.max_examples, self.example_fraction,
                                                                      f"data.files {self.files}")
        if self.val_files:
            self.val_corpus = load_parallel_corpus(self.val_files, cache_dir=self.cache_dir)
        if self.val_corpus is not None:
            where = f"data.val_files {self.val_files}" if self.val_files else "the held-out split"
            self.val_corpus = keep_languages(self.val_corpus, self.val_languages, where)
            self.val_index = ParallelIndex.from_dataset(self.val_corpus)
        if self.num_hard_negatives:
            lengths = self.corpus.data.table.column("negatives").combine_chunks().value_lengths()
            lacking = sum(1 for n in lengths.to_pylist() if not n)
            if lacking:
                raise DataError(
                    f"data.num_hard_negatives={self.num_hard_negatives} but {lacking} row(s) of {self.files} "
                    "have no 'negatives'; set data.num_hard_negatives=0 or add negatives"
                )

    def _setup_sources(self) -> None:
        """One concatenated corpus; per source an index whose rows point into it."""
        parts, offset, subsets = [], 0, {}
        for name, spec in self.sources.items():
            if not isinstance(spec, Mapping) or "files" not in spec:
                raise ConfigError(f"data.sources.{name} needs 'files' (and optionally 'weight', 'sampler', 'languages', "
                                  "'max_examples', 'example_fraction')")
            ds = load_parallel_corpus(spec["files"], spec.get("languages") or self.languages, cache_dir=self.cache_dir)
            own = spec.get("max_examples") is not None or spec.get("example_fraction") is not None
            limits = (spec.get("max_examples"), spec.get("example_fraction")) if own else \
                (self.max_examples, self.example_fraction)
            where = f"data.sources.{name}"
            ds, index, subsets[name] = keep_examples(ds, *limits, where, where if own else "data")
            index.rows = np.where(index.rows >= 0, index.rows + offset, -1)
            self.source_index[name] = index
            parts.append(ds)
            offset += len(ds)
        self.corpus = datasets.concatenate_datasets(parts)
        self.data_subset = {"examples": sum(r["examples"] for r in subsets.values()), "rows": len(self.corpus),
                            "sources": subsets}
        self.index = ParallelIndex.concat(list(self.source_index.values()))  # the mixture on one language list

    def build_sampler(self, rank: int = 0, world_size: int = 1) -> ParallelBatchSampler:
        self.setup()
        if not self.sources:
            return self.sampler_factory(self.index, self.batch_size, rank=rank, world_size=world_size, seed=self.seed)
        samplers = {}
        for name, spec in self.sources.items():
            factory = spec.get("sampler") or self.sampler_factory
            try:
                samplers[name] = factory(self.source_index[name], self.batch_size, rank=rank, world_size=world_size, seed=self.seed)
            except ConfigError as e:
                raise ConfigError(f"data.sources.{name}: {e}") from None
        # the run's sampler options that shape the epoch and the length groups belong to the mixture
        options = getattr(self.sampler_factory, "keywords", {})
        if self.source_weighting == "size":  # p ∝ the rows each source's sampler draws from
            weights = {name: float(s.index.available[:, s.lang_ids].sum()) for name, s in samplers.items()}
        else:
            weights = {name: float(spec.get("weight", 1.0)) for name, spec in self.sources.items()}
        return MixtureSampler(samplers, weights, steps_per_epoch=options.get("steps_per_epoch"),
                              length_groups=options.get("length_groups", 1), index=self.index)

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        self._loader = ResumableDataLoader(
            ParallelPairs(self.corpus, self.num_hard_negatives, self.hard_negatives),
            batch_sampler=self.build_sampler(rank, world),
            collate_fn=Collator(self.tokenization),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # tokenizers' own threads fight the workers for the CPU cores
            worker_init_fn=quiet_tokenizers if self.num_workers else None,
        )
        if self._resume_state is not None:
            self._loader.load_state_dict(self._resume_state)
        return self._loader

    @property
    def training_languages(self) -> list[str]:
        """The languages of the training data (after ``languages``), sorted."""
        self.setup()
        return list(self.index.languages)

    def data_record(self, sampler: ParallelBatchSampler) -> dict:
        """What this run trains on, from the indexes' counts (cf. the paper's Tables 9-11): per source
        its examples (ids), rows (example x language) in all and per language, hard negatives stored per
        language (mMARCO: the training triples kept) and its share of the batches; the rows per
        language over all sources; the batch and epoch; the validation data."""
        shares = dict(zip(sampler.names, sampler.probs.tolist())) if isinstance(sampler, MixtureSampler) else {}
        indexes = self.source_index or {"corpus": self.index}
        sources = {}
        for name, index in indexes.items():
            sources[name] = {"examples": int(index.available.any(1).sum()), "rows": int(index.available.sum()),
                             "rows_per_language": index.counts, "hard_negatives_per_language": index.negatives_per_language(),
                             **({"share_of_batches": shares[name]} if name in shares else {})}
        languages: dict[str, int] = {}
        for source in sources.values():
            for lang, n in source["rows_per_language"].items():
                languages[lang] = languages.get(lang, 0) + n
        record = {
            "sources": sources,
            "rows_per_language": dict(sorted(languages.items())),
            "batch_size": self.batch_size,
            "global_batch_size": sampler.global_batch,
            "num_hard_negatives": self.num_hard_negatives,
            "hard_negatives": self.hard_negatives,
            "steps_per_epoch": sampler.steps_per_epoch,
        }
        if self.val_index is not None:
            record["validation"] = {"examples": int(self.val_index.available.any(1).sum()),
                                    "rows_per_language": self.val_index.counts, "batches": self.val_batches}
        return record

    @property
    def has_validation(self) -> bool:
        return bool(self.val_files or self.val_split)

    def val_dataloader(self) -> DataLoader | list:
        """The fixed validation batches (hard negatives are not used for validation); none without
        validation data (``fast_dev_run`` asks all the same)."""
        if self.val_index is None:
            return []
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batches = fixed_batches(self.val_sampler_factory, self.val_index, self.batch_size, self.val_batches, rank, world)
        return DataLoader(ParallelPairs(self.val_corpus), batch_sampler=batches, collate_fn=Collator(self.tokenization))

    # Lightning restores the datamodule before it first builds the train loader; its own
    # loader-state restore comes too late when configure_optimizers has already built the
    # loader (estimated_stepping_batches), so the sampler position travels through here.
    def state_dict(self) -> dict:
        return {"sampler": self._loader.state_dict()} if self._loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._resume_state = state.get("sampler")
