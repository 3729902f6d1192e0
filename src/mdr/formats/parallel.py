"""The parallel question-passage schema: reading and validating corpus files.

A corpus is stored in *long* format, one row per (example, language):

    id        str        example id, the same in every language of that example
    lang      str        language code (any string, e.g. ISO 639-1 "de")
    query     str        the question in that language
    positive  str        its relevant passage in that language
    negatives list[str]  optional hard negatives in that language
    negative_ids list[str]  optional: the example id each negative belongs to (same length as
                         ``negatives``; ``mine.py`` writes it). With it the loss also knows a
                         negative that is a *translation* of another query's positive in the batch
                         (``loss.mask_false_negatives``); without it only equal texts are known.

Files may be JSON Lines (``.jsonl``), Parquet (``.parquet``) or TSV (``.tsv``, header row
required; hard negatives go in extra columns whose names start with ``negative``). Any other
column is ignored. Not every example needs every language.

``load_parallel_corpus`` validates every row (clear error naming file, line and field), and
writes the rows once to a memory-mapped Hugging Face ``datasets`` Arrow table, so memory does
not grow with the corpus. Training (``mdr.data``) and held-out evaluation sets
(``mdr.evaluation.pools.parallel_eval``) both read it.

``source_rows`` reads a file's rows again as they are (every field, in the order the loader read
them) and ``ParallelFileWriter`` writes rows back as JSONL or Parquet: how ``mine.py``
(``mdr.mining``) writes a corpus with its ``negatives`` filled.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import tempfile
from collections.abc import Iterator, Sequence

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from mdr.errors import DataError
from mdr.formats.text import text_lines

REQUIRED_FIELDS = ("id", "lang", "query", "positive")
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "lang": datasets.Value("string"),
        "query": datasets.Value("string"),
        "positive": datasets.Value("string"),
        "negatives": datasets.Sequence(datasets.Value("string")),
        "negative_ids": datasets.Sequence(datasets.Value("string")),  # null when the data has none
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
    negative_ids = row.get("negative_ids")
    if negative_ids is not None:
        if isinstance(negative_ids, str) or not all(isinstance(n, (str, int)) and str(n).strip() for n in negative_ids):
            raise DataError(f"{where}: 'negative_ids' must be a list of non-empty strings (the negatives' example ids)")
        if len(negative_ids) != len(negatives):
            raise DataError(f"{where}: 'negative_ids' has {len(negative_ids)} entries but 'negatives' has {len(negatives)}; "
                            "give one example id per negative, or leave 'negative_ids' out")
        negative_ids = [str(n) for n in negative_ids]
    return {"id": row["id"], "lang": row["lang"], "query": row["query"], "positive": row["positive"],
            "negatives": list(negatives), "negative_ids": negative_ids}


def _jsonl_rows(path: str) -> Iterator[dict]:
    for lineno, line in text_lines(path):
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
    reader = csv.reader((line for _, line in text_lines(path, newline="")), delimiter="\t", quoting=csv.QUOTE_NONE)
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
    columns = [c for c in (*REQUIRED_FIELDS, "negatives", "negative_ids") if c in names]
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

    Returns a Dataset with columns ``id, lang, query, positive, negatives, negative_ids`` (null
    where a row has no ``negative_ids``).
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


# -- rewriting a corpus (mine.py): the rows as they are, then written back with new fields

WRITE_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}


def file_format(path: str) -> str:
    """``jsonl``, ``parquet`` or ``tsv``: how ``path`` is read (by its extension)."""
    return FORMATS[os.path.splitext(path)[1].lower()]


def source_rows(path: str) -> Iterator[dict]:
    """Every row of ``path`` with all its fields, in the order ``load_parallel_corpus`` reads them
    (rows already validated by it). TSV rows lose their ``negative…`` columns."""
    kind = file_format(path)
    if kind == "jsonl":
        for _, line in text_lines(path):
            if line.strip():
                yield json.loads(line)
    elif kind == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            yield from batch.to_pylist()
    else:
        reader = csv.reader((line for _, line in text_lines(path, newline="")), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        for values in reader:
            if values:
                yield {k: v for k, v in zip(header, values) if not k.startswith("negative")}


class ParallelFileWriter:
    """Writes rows (dicts) to a JSONL or Parquet file: to a temporary file beside it, renamed when
    ``close()`` succeeds, so a failed run never leaves half a corpus under the final name.

    Parquet keeps the fields of ``FEATURES`` plus ``list_fields`` (lists of strings) and the fields
    ``arrow_schema`` gives (the input's own columns when it is Parquet); any other field is left
    out and named in ``dropped_fields`` (JSONL keeps every field)."""

    def __init__(self, path: str, fmt: str, list_fields: Sequence[str] = (), arrow_schema: pa.Schema | None = None,
                 chunk_rows: int = 8192) -> None:
        if fmt not in WRITE_FORMATS:
            raise DataError(f"output format must be one of {sorted(WRITE_FORMATS)}, got {fmt!r}")
        self.path, self.fmt, self.chunk_rows = path, fmt, chunk_rows
        self.dropped_fields: set[str] = set()
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".partial")
        os.close(fd)
        self._rows: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._jsonl = open(self._tmp, "w", encoding="utf-8") if fmt == "jsonl" else None
        if fmt == "parquet":
            fields = {f.name: f.type for f in (arrow_schema or [])}
            fields.update({name: pa.string() for name in REQUIRED_FIELDS})
            fields.update({name: pa.list_(pa.string()) for name in ("negatives", *list_fields)})
            self.schema = pa.schema(list(fields.items()))

    def write(self, row: dict) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self.dropped_fields.update(k for k in row if k not in self.schema.names)
        self._rows.append(row)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._writer.write_table(table)
        self._rows = []

    def close(self) -> None:
        """Finish the file and give it its final name."""
        if self._jsonl is not None:
            self._jsonl.close()
        else:
            self._flush()
            if self._writer is None:  # no rows: an empty file with the schema
                pq.write_table(self.schema.empty_table(), self._tmp)
            else:
                self._writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (a failed run)."""
        if self._jsonl is not None:
            self._jsonl.close()
        if self._writer is not None:
            self._writer.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)
