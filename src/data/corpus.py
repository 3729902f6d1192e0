"""Parallel question-passage corpora: loading, validation and the (example x language) index.

A corpus is stored in *long* format, one row per (example, language):

    id        str        example id, the same in every language of that example
    lang      str        language code (any string, e.g. ISO 639-1 "de")
    query     str        the question in that language
    positive  str        its relevant passage in that language
    negatives list[str]  optional hard negatives in that language

Files may be JSON Lines (``.jsonl``), Parquet (``.parquet``) or TSV (``.tsv``, header row
required; hard negatives go in extra columns whose names start with ``negative``). Any other
column is ignored. Not every example needs every language.

``load_parallel_corpus`` validates every row (clear error naming file, line and field), and
writes the rows once to a memory-mapped Hugging Face ``datasets`` Arrow table, so memory does
not grow with the corpus. ``ParallelIndex`` is the small integer index the samplers draw from.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from src.errors import DataError

REQUIRED_FIELDS = ("id", "lang", "query", "positive")
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "lang": datasets.Value("string"),
        "query": datasets.Value("string"),
        "positive": datasets.Value("string"),
        "negatives": datasets.Sequence(datasets.Value("string")),
    }
)
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".tsv": "tsv"}


def resolve_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Expand globs; every pattern must match at least one file."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    for pattern in paths:
        matched = sorted(glob.glob(os.path.expanduser(str(pattern))))
        if not matched:
            raise DataError(f"data file not found: {pattern}")
        files.extend(matched)
    for f in files:
        if os.path.splitext(f)[1].lower() not in FORMATS:
            raise DataError(f"{f}: unknown file type; expected one of {sorted(FORMATS)}")
    return files


def _check_row(row: dict, where: str) -> dict:
    for field in REQUIRED_FIELDS:
        if field not in row or row[field] is None:
            raise DataError(f"{where}: missing field '{field}' (required: {', '.join(REQUIRED_FIELDS)})")
        value = row[field]
        if not isinstance(value, str):
            if field in ("id",) and isinstance(value, int):
                value = str(value)
            else:
                raise DataError(f"{where}: field '{field}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError(f"{where}: empty '{field}' (id={row.get('id')!r}, lang={row.get('lang')!r})")
        row[field] = value
    negatives = row.get("negatives") or []
    if isinstance(negatives, str) or not all(isinstance(n, str) and n.strip() for n in negatives):
        raise DataError(f"{where}: 'negatives' must be a list of non-empty strings")
    return {"id": row["id"], "lang": row["lang"], "query": row["query"], "positive": row["positive"], "negatives": list(negatives)}


def _jsonl_rows(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
            yield _check_row(row, where)


def _tsv_rows(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty TSV file (a header row is required)")
        missing = [f for f in REQUIRED_FIELDS if f not in header]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {missing}; found {header}")
        neg_cols = [i for i, name in enumerate(header) if name.startswith("negative")]
        for lineno, values in enumerate(reader, 2):
            if not values:
                continue
            where = f"{path}:{lineno}"
            if len(values) != len(header):
                raise DataError(f"{where}: {len(values)} tab-separated fields, header has {len(header)}")
            row = dict(zip(header, values))
            row["negatives"] = [values[i] for i in neg_cols if values[i]]
            yield _check_row(row, where)


def _parquet_rows(path: str) -> Iterator[dict]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {names}")
    columns = [c for c in (*REQUIRED_FIELDS, "negatives") if c in names]
    offset = 0
    for batch in pf.iter_batches(columns=columns, batch_size=8192):
        for i, row in enumerate(batch.to_pylist()):
            yield _check_row(row, f"{path}: row {offset + i}")
        offset += batch.num_rows


_READERS = {"jsonl": _jsonl_rows, "tsv": _tsv_rows, "parquet": _parquet_rows}


def _generate(files: tuple[str, ...], signature: tuple, languages: tuple[str, ...] | None) -> Iterator[dict]:
    # `signature` (sizes and mtimes) is unused here; it is part of datasets' cache key so that
    # an edited file is re-read instead of served from a stale cache.
    keep = set(languages) if languages else None
    for path in files:
        reader = _READERS[FORMATS[os.path.splitext(path)[1].lower()]]
        for row in reader(path):
            if keep is None or row["lang"] in keep:
                yield row


def load_parallel_corpus(
    files: str | Sequence[str],
    languages: Sequence[str] | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Read, validate and index parallel files into a memory-mapped ``datasets.Dataset``.

    Args:
        files: paths or glob patterns (JSONL / Parquet / TSV, mixed freely).
        languages: keep only these languages; each must occur in the data.
        cache_dir: where ``datasets`` keeps the Arrow table (default: its own cache).

    Returns a Dataset with columns ``id, lang, query, positive, negatives``.
    Raises DataError naming the file and line of the first bad row, a duplicate (id, lang),
    or a requested language the data lacks.
    """
    paths = resolve_files(files)
    signature = tuple((os.path.abspath(p), os.path.getsize(p), os.path.getmtime(p)) for p in paths)
    langs = tuple(sorted(languages)) if languages else None
    try:
        ds = datasets.Dataset.from_generator(
            _generate,
            # tuples, not lists: datasets would treat lists as shards to split
            gen_kwargs={"files": tuple(paths), "signature": signature, "languages": langs},
            features=FEATURES,
            cache_dir=cache_dir,
        )
    except Exception as e:  # datasets wraps generator errors; surface ours as they are
        cause = e
        while cause is not None and not isinstance(cause, DataError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        if "corresponds to no data" in str(e):  # datasets' way of saying the generator yielded nothing
            ds = None
        else:
            raise
    if ds is None or len(ds) == 0:
        if langs:
            raise DataError(f"language(s) {list(langs)} requested but absent from {paths}")
        raise DataError(f"no rows in {paths}")
    _check_unique(ds, paths)
    if langs:
        present = set(ds.unique("lang"))
        absent = [lang for lang in langs if lang not in present]
        if absent:
            raise DataError(f"language(s) {absent} requested but absent from {paths}")
    return ds


def _check_unique(ds: datasets.Dataset, paths: list[str]) -> None:
    keys = ds.data.table.select(["id", "lang"]).to_pandas()
    dup = keys.duplicated()
    if dup.any():
        first = keys[dup].iloc[0]
        raise DataError(
            f"duplicate id {first['id']!r} in language {first['lang']!r} in {paths}: "
            f"each (id, lang) pair must appear once ({int(dup.sum())} duplicate row(s))"
        )


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
    def from_dataset(cls, ds: datasets.Dataset) -> ParallelIndex:
        full = ds.data.table
        table = full.select(["id", "lang"])
        for column in ("query", "positive"):
            table = table.append_column(f"{column}_chars", pc.utf8_length(full.column(column)))
        if ds._indices is not None:  # a .select()/.filter() view: follow its row mapping
            table = table.take(ds._indices.column(0))
        ex_codes, example_ids = pd.factorize(table.column("id").to_numpy(zero_copy_only=False))
        lang_codes, languages = pd.factorize(table.column("lang").to_numpy(zero_copy_only=False), sort=True)
        rows = np.full((len(example_ids), len(languages)), -1, dtype=np.int64)
        rows[ex_codes, lang_codes] = np.arange(len(ex_codes))
        chars = {}
        for column in ("query", "positive"):
            chars[column] = np.zeros(rows.shape, dtype=np.int32)
            chars[column][ex_codes, lang_codes] = table.column(f"{column}_chars").to_numpy()
        return cls(list(languages), np.asarray(example_ids), rows, chars["query"], chars["positive"])

    @cached_property
    def available(self) -> np.ndarray:
        """Boolean [examples, languages]."""
        return self.rows >= 0

    @cached_property
    def counts(self) -> dict[str, int]:
        """n_X: examples available in each language."""
        return dict(zip(self.languages, self.available.sum(0).tolist()))

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



def built_corpus_path(name: str, key: dict, cache_dir: str | None = None) -> str:
    """Where a corpus built from other files (mMARCO, MIRACL) is cached, keyed by what it was built
    from: the same options and source files give the same path, so a second run reads it directly."""
    import hashlib

    root = cache_dir or os.path.join(os.environ.get("HF_DATASETS_CACHE") or os.path.expanduser("~/.cache/huggingface/datasets"),
                                     "mdr-built")
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return os.path.join(root, f"{name}-{digest}.parquet")


def write_built_corpus(path: str, rows: Iterator[dict]) -> str:
    """Write long-format rows to ``path`` as Parquet, atomically (a killed build leaves no file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    schema = FEATURES.arrow_schema
    writer, buffer, count = pq.ParquetWriter(tmp, schema), [], 0
    try:
        for row in rows:
            buffer.append(row)
            if len(buffer) == 8192:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                count, buffer = count + len(buffer), []
        if buffer:
            writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
            count += len(buffer)
    finally:
        writer.close()
    if count == 0:
        os.remove(tmp)
        raise DataError(f"building {os.path.basename(path)} produced no rows")
    os.replace(tmp, path)
    return path
