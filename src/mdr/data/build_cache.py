"""Corpora built from other files (mMARCO, MIRACL train) are written once as long-format Parquet.

In:  a name, a key of everything the build depends on (options, source files with sizes and
     mtimes), and the rows.
Out: a cached Parquet path: the same key gives the same path, so a second run reads it directly;
     the file is written atomically, so a killed build leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from mdr.errors import DataError
from mdr.formats.parallel import FEATURES


def built_corpus_path(name: str, key: dict, cache_dir: str | None = None) -> str:
    """Where a corpus built from other files (mMARCO, MIRACL) is cached, keyed by what it was built
    from: the same options and source files give the same path, so a second run reads it directly."""
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
