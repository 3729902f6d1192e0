"""A run folder's result files, named here once for every writer and reader.

    <run>/checkpoints/results.json   train.py: the end-of-training evaluation (and the step it ran at)
    <run>/results.json               evaluate.py
    per_query.parquet                beside either: one row per query and pool of every pool benchmark
                                     (eval_set, setting, query, query_id, query_lang, pool_lang, ap,
                                     first_rank, recall_at_<k>, rank_distance, same_language_first),
                                     so two runs can be compared query by query (the demo: 2,016
                                     rows in 17 kB)
    <run>/failed.txt                 a multirun job that failed: its error (read by the sweep summary)

JSON is written to a temporary file in the same folder and renamed, so a reader (or a run killed
mid-write) never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
PER_QUERY_FILE = "per_query.parquet"
PER_QUERY = "per_query"  # the key of a benchmark's per-query DataFrame in its results (not written to JSON)
FAILED_FILE = "failed.txt"
CHECKPOINT_DIR = "checkpoints"


def train_results_path(run_dir: str | os.PathLike) -> Path:
    """Where train.py writes its results: beside the checkpoints, so export.py finds them."""
    return Path(run_dir, CHECKPOINT_DIR, RESULTS_FILE)


def find_results(run_dir: str | os.PathLike) -> Path | None:
    """The results file of a train.py or evaluate.py run folder, or None."""
    for path in (train_results_path(run_dir), Path(run_dir, RESULTS_FILE)):
        if path.is_file():
            return path
    return None


def _publish(tmp: str, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions (mkstemp makes it private) and rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
    _publish(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_results(path: str | os.PathLike, payload: dict) -> dict:
    """Write ``payload`` as JSON to ``path`` and the per-query tables of its ``results`` (each
    benchmark's ``per_query`` DataFrame) as one Parquet file beside it; returns the JSON part."""
    import pandas as pd

    results = {name: {k: v for k, v in r.items() if k != PER_QUERY} for name, r in payload.get("results", {}).items()}
    tables = [r[PER_QUERY].assign(eval_set=name) for name, r in payload.get("results", {}).items()
              if isinstance(r.get(PER_QUERY), pd.DataFrame)]
    if tables:
        table = pd.concat(tables, ignore_index=True)
        for column in ("eval_set", "setting", "query_lang", "pool_lang"):
            table[column] = table[column].astype("category")
        for column in table.select_dtypes("float64").columns:
            table[column] = table[column].astype("float32")
        target = Path(path).with_name(PER_QUERY_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(fd)
        table.to_parquet(tmp, index=False)
        _publish(tmp, target)
    json_payload = {**payload, "results": results}
    write_json_atomic(path, json_payload)
    return json_payload


def read_per_query(results_path: str | os.PathLike):
    """The per-query table written beside a results file, or None."""
    import pandas as pd

    path = Path(results_path).with_name(PER_QUERY_FILE)
    return pd.read_parquet(path) if path.is_file() else None
