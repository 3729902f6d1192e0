"""The (example x language) index of a parallel corpus: what the samplers draw from.

In:  a corpus ``datasets.Dataset`` in the long format of ``mdr.formats.parallel``.
Out: ``ParallelIndex``: per example and language the corpus row (or -1), the text lengths and the
     number of hard negatives, plus the counts n_X and n_XY that the samplers' language
     distributions are built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mdr.errors import DataError


@dataclass
class ParallelIndex:
    """Which example exists in which language, and at which row of the corpus.

    ``rows[e, l]`` is the corpus row of example ``e`` in language ``languages[l]``, or -1;
    ``query_chars[e, l]`` and ``passage_chars[e, l]`` the character lengths of its query and positive
    passage there (for samplers that group batches by length; None when built by hand);
    ``negatives[e, l]`` its number of hard negatives there (what a run records of its data). Built
    from the ``id`` and ``lang`` columns and lengths only, so it stays small for large corpora.
    """

    languages: list[str]
    example_ids: np.ndarray
    rows: np.ndarray
    query_chars: np.ndarray | None = None
    passage_chars: np.ndarray | None = None
    negatives: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset, block: int = 262_144) -> ParallelIndex:
        # in blocks of rows (a .select() view included), so only the ids, languages, text lengths and
        # negative counts are ever held in memory, not the texts
        columns = ["id", "lang", "query", "positive"] + (["negatives"] if "negatives" in ds.column_names else [])
        parts = []
        for batch in ds.select_columns(columns).with_format("arrow").iter(batch_size=block):
            part = {"id": batch.column("id"), "lang": batch.column("lang"), "query_chars": pc.utf8_length(batch.column("query")),
                    "positive_chars": pc.utf8_length(batch.column("positive"))}
            if "negatives" in columns:
                part["negatives_count"] = pc.fill_null(pc.list_value_length(batch.column("negatives")), 0)
            parts.append(pa.table(part))
        table = pa.concat_tables(parts) if parts else pa.table({"id": pa.array([], pa.string()), "lang": pa.array([], pa.string())})
        ex_codes, example_ids = pd.factorize(table.column("id").to_numpy(zero_copy_only=False))
        lang_codes, languages = pd.factorize(table.column("lang").to_numpy(zero_copy_only=False), sort=True)
        rows = np.full((len(example_ids), len(languages)), -1, dtype=np.int64)
        rows[ex_codes, lang_codes] = np.arange(len(ex_codes))
        counts = {}
        for column in ("query_chars", "positive_chars", "negatives_count"):
            counts[column] = np.zeros(rows.shape, dtype=np.int32)
            if column in table.column_names:
                counts[column][ex_codes, lang_codes] = table.column(column).to_numpy()
        return cls(list(languages), np.asarray(example_ids), rows, counts["query_chars"], counts["positive_chars"],
                   counts["negatives_count"])

    @classmethod
    def concat(cls, indexes: Sequence[ParallelIndex]) -> ParallelIndex:
        """One index over several corpora whose rows already point into one concatenated corpus, on
        one sorted language list (a mixture's); examples of different corpora stay different, even
        with equal ids."""
        languages = sorted({lang for index in indexes for lang in index.languages})
        size = sum(len(index.example_ids) for index in indexes)
        rows = np.full((size, len(languages)), -1, dtype=np.int64)
        counts = [np.zeros(rows.shape, dtype=np.int32) for _ in range(3)]  # query chars, passage chars, negatives
        start = 0
        for index in indexes:
            block = slice(start, start + len(index.example_ids))
            columns = [languages.index(lang) for lang in index.languages]
            rows[block, columns] = index.rows
            for target, source in zip(counts, (index.query_chars, index.passage_chars, index.negatives)):
                if source is not None:
                    target[block, columns] = source
            start = block.stop
        example_ids = np.concatenate([np.asarray(index.example_ids, dtype=object) for index in indexes])
        return cls(languages, example_ids, rows, *counts)

    @cached_property
    def available(self) -> np.ndarray:
        """Boolean [examples, languages]."""
        return self.rows >= 0

    @cached_property
    def counts(self) -> dict[str, int]:
        """n_X: examples available in each language."""
        return dict(zip(self.languages, self.available.sum(0).tolist()))

    def negatives_per_language(self) -> dict[str, int]:
        """Hard negatives stored per language (for mMARCO: its training triples kept)."""
        if self.negatives is None:
            return {}
        return dict(zip(self.languages, self.negatives.sum(0, dtype=np.int64).tolist()))

    def lang_id(self, lang: str) -> int:
        try:
            return self.languages.index(lang)
        except ValueError:
            raise DataError(f"language {lang!r} is not in the data (available: {self.languages})") from None

    def examples_in(self, lang: int) -> np.ndarray:
        return self._per_language[lang]

    @cached_property
    def _per_language(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.available[:, i]) for i in range(len(self.languages))]

    def examples_in_both(self, x: int, y: int) -> np.ndarray:
        return np.flatnonzero(self.available[:, x] & self.available[:, y])

    def pair_counts(self) -> np.ndarray:
        """n_XY: [L, L] matrix of examples available in both X and Y."""
        a = self.available.astype(np.int64)
        return a.T @ a
