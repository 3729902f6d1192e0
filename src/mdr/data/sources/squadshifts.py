"""SQuADShifts as an English validation corpus (``conf/corpus/squadshifts.yaml``): the paper
(arXiv 2408.10536) selects its checkpoint by the validation loss on SQuADShifts.

In:  the SQuAD-format Parquet files of ``lmqg/qa_squadshifts`` (hub, downloaded once, or a local
     folder in its layout)::

         {domain}/qa_squadshifts-{split}.parquet    id, title, context, question, answers
Out: the path of a long-format Parquet corpus (``mdr.formats.parallel``): per question, the
     question as query and its paragraph as positive, language ``en``. Only the first question of
     each paragraph is kept, so no two examples share a passage (it would be a false negative
     among the in-batch negatives).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from mdr.data.build_cache import built_corpus_path, write_built_corpus
from mdr.errors import DataError
from mdr.formats.hub import hub_or_local

log = logging.getLogger(__name__)

REPO = "lmqg/qa_squadshifts"
DOMAINS = ("new_wiki", "nyt", "reddit", "amazon")
COLUMNS = ("id", "context", "question")


def domain_file(domain: str, split: str) -> str:
    return f"{domain}/qa_squadshifts-{split}.parquet"


def build_squadshifts(domains: Sequence[str] = DOMAINS, split: str = "validation", path: str | None = None,
                      cache_dir: str | None = None, option: str = "data.val_files.path") -> list[str]:
    """Build (or reuse) the corpus; returns ``[parquet path]`` for ``data.val_files``."""
    unknown = [d for d in domains if d not in DOMAINS + ("all",)]
    if unknown:
        raise DataError(f"SQuADShifts has no domain(s) {unknown}; available: {list(DOMAINS)} or all")
    files = {d: hub_or_local(REPO, domain_file(d, split), path, option, "SQuADShifts") for d in domains}
    key = {"domains": list(domains), "split": split,
           "files": {d: (os.path.realpath(f), os.path.getsize(f), os.path.getmtime(f)) for d, f in files.items()}}
    out = built_corpus_path("squadshifts", key, cache_dir)
    if os.path.isfile(out):
        return [out]
    return [write_built_corpus(out, _rows(files))]


def _rows(files: dict[str, str]) -> Iterator[dict]:
    for domain, file in files.items():
        try:
            table = pq.read_table(file)
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"{file}: not a readable Parquet file ({e})") from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise DataError(f"{file}: missing column(s) {missing}; found {table.column_names}")
        seen, kept = set(), 0
        for row in table.select(list(COLUMNS)).to_pylist():
            context, question = (row["context"] or "").strip(), (row["question"] or "").strip()
            if not context or not question or context in seen:
                continue
            seen.add(context)
            kept += 1
            yield {"id": f"{domain}-{row['id']}", "lang": "en", "query": question, "positive": context, "negatives": []}
        log.info("SQuADShifts %s: %d questions with their own paragraph, of %d", domain, kept, table.num_rows)
