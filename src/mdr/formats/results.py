"""A run folder's result files, named here once for every writer and reader.

    <run>/checkpoints/results.json   train.py: the end-of-training evaluation (and the step it ran at)
    <run>/results.json               evaluate.py
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


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
