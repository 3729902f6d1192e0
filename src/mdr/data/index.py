"""The (example x language) index of a parallel corpus: what the samplers draw from.

In:  a corpus ``datasets.Dataset`` in the long format of ``mdr.formats.parallel``.
Out: ``ParallelIndex``: per example and language the corpus row (or -1) and the text lengths,
     plus the counts n_X and n_XY that the samplers' language distributions are built from.
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
    passage there (for samplers that group batches by length; None when built by hand). Built from
    the ``id`` and ``lang`` columns and the text lengths only, so it stays small for large corpora.
    """

    languages: list[str]
    example_ids: np.ndarray
    rows: np.ndarray
    query_chars: np.ndarray | None = None
    passage_chars: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset, block: int = 262_144) -> ParallelIndex:
        # in blocks of rows (a .select() view included), so only the ids, languages and text lengths
        # are ever held in memory, not the texts
        parts = []
        for batch in ds.select_columns(["id", "lang", "query", "positive"]).with_format("arrow").iter(batch_size=block):
            parts.append(pa.table({"id": batch.column("id"), "lang": batch.column("lang"),
                                   "query_chars": pc.utf8_length(batch.column("query")),
                                   "positive_chars": pc.utf8_length(batch.column("positive"))}))
        table = pa.concat_tables(parts) if parts else pa.table({"id": [], "lang": [], "query_chars": [], "positive_chars": []})
        ex_codes, example_ids = pd.factorize(table.column("id").to_numpy(zero_copy_only=False))
        lang_codes, languages = pd.factorize(table.column("lang").to_numpy(zero_copy_only=False), sort=True)
        rows = np.full((len(example_ids), len(languages)), -1, dtype=np.int64)
        rows[ex_codes, lang_codes] = np.arange(len(ex_codes))
        chars = {}
        for column in ("query", "positive"):
            chars[column] = np.zeros(rows.shape, dtype=np.int32)
            chars[column][ex_codes, lang_codes] = table.column(f"{column}_chars").to_numpy()
        return cls(list(languages), np.asarray(example_ids), rows, chars["query"], chars["positive"])

    @classmethod
    def concat(cls, indexes: Sequence[ParallelIndex]) -> ParallelIndex:
        """One index over several corpora whose rows already point into one concatenated corpus, on
        one sorted language list (a mixture's); examples of different corpora stay different, even
        with equal ids."""
        languages = sorted({lang for index in indexes for lang in index.languages})
        size = sum(len(index.example_ids) for index in indexes)
        rows = np.full((size, len(languages)), -1, dtype=np.int64)
        query_chars, passage_chars = np.zeros(rows.shape, dtype=np.int32), np.zeros(rows.shape, dtype=np.int32)
        start = 0
        for index in indexes:
            block = slice(start, start + len(index.example_ids))
            columns = [languages.index(lang) for lang in index.languages]
            rows[block, columns] = index.rows
            for target, source in ((query_chars, index.query_chars), (passage_chars, index.passage_chars)):
                if source is not None:
                    target[block, columns] = source
            start = block.stop
        example_ids = np.concatenate([np.asarray(index.example_ids, dtype=object) for index in indexes])
        return cls(languages, example_ids, rows, query_chars, passage_chars)

    @cached_property
    def available(self) -> np.ndarray:
        """Boolean [examples, languages]."""
        return self.rows >= 0

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
