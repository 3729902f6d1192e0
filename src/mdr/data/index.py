"""The (example x language) index of a parallel corpus: what the samplers draw from.

In:  a corpus ``datasets.Dataset`` in the long format of ``mdr.formats.parallel``.
Out: ``ParallelIndex``: per example and language the corpus row (or -1), the text lengths and the
     number of hard negatives, plus the counts n_X and n_XY that the samplers' language
     distributions are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import datasets
import numpy as np
import pandas as pd
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
    def from_dataset(cls, ds: datasets.Dataset) -> ParallelIndex:
        full = ds.data.table
        table = full.select(["id", "lang"])
        for column in ("query", "positive"):
            table = table.append_column(f"{column}_chars", pc.utf8_length(full.column(column)))
        if "negatives" in full.column_names:
            table = table.append_column("negatives_count", pc.fill_null(pc.list_value_length(full.column("negatives")), 0))
        if ds._indices is not None:  # a .select()/.filter() view: follow its row mapping
            table = table.take(ds._indices.column(0))
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
