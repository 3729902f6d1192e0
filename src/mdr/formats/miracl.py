"""MIRACL's files, in the hub's layout (``miracl/miracl`` and ``miracl/miracl-corpus``)::

    {path}/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv   qid <tab> query
    {path}/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv     qid <tab> Q0 <tab> docid <tab> relevance
    {corpus_path}/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz                   {"docid", "title", "text"}

Read by the MIRACL benchmark (dev topics) and by the MIRACL training corpus builder (train
topics). ``path`` / ``corpus_path`` None means: download from the hub (cached).
"""

from __future__ import annotations

import glob
import json
import os
from collections import defaultdict
from collections.abc import Iterator

from mdr.errors import DataError
from mdr.formats.hub import hub_or_local
from mdr.formats.text import text_lines

TOPICS_REPO, CORPUS_REPO = "miracl/miracl", "miracl/miracl-corpus"


def topics_file(lang: str, split: str) -> str:
    return f"miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"


def qrels_file(lang: str, split: str) -> str:
    return f"miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"


def corpus_folder(lang: str) -> str:
    return f"miracl-corpus-v1.0-{lang}"


def annotation_file(relative: str, path: str | None, option: str = "eval.path") -> str:
    """A topics or qrels file: from the local folder ``path`` (same layout), or the hub (cached)."""
    return hub_or_local(TOPICS_REPO, relative, path, option, "MIRACL")


def corpus_dir(lang: str, corpus_path: str | None, option: str = "eval.corpus_path") -> str:
    """The folder of ``lang``'s passages: under ``corpus_path``, or downloaded from the hub (cached)."""
    return hub_or_local(CORPUS_REPO, corpus_folder(lang), corpus_path, option, "MIRACL corpus", folder=True)


def read_topics(file: str) -> dict[str, str]:
    """qid -> query text."""
    topics = {}
    for lineno, line in text_lines(file):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2 or not parts[1].strip():
            raise DataError(f"{file}:{lineno}: expected 'qid<TAB>query', got {len(parts)} field(s)")
        topics[parts[0]] = parts[1]
    return topics


def read_qrels(file: str) -> dict[str, dict[str, int]]:
    """qid -> {docid: graded relevance} (judged non-relevant passages have 0)."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for lineno, line in text_lines(file):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise DataError(f"{file}:{lineno}: expected 'qid Q0 docid relevance', got {line.strip()!r}")
        qrels[parts[0]][parts[2]] = int(parts[3])
    return dict(qrels)


def read_corpus(folder: str) -> Iterator[tuple[str, str, str]]:
    """(docid, title, text) of every passage in ``folder``'s docs-*.jsonl[.gz] files, in order."""
    files = sorted(glob.glob(os.path.join(folder, "docs-*.jsonl.gz")) + glob.glob(os.path.join(folder, "docs-*.jsonl")),
                   key=lambda f: (len(f), f))  # docs-2 before docs-10
    if not files:
        raise DataError(f"no docs-*.jsonl.gz files in {folder}")
    for file in files:
        for lineno, line in text_lines(file):
            try:
                doc = json.loads(line)
                yield doc["docid"], doc.get("title") or "", doc["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{file}:{lineno}: not a MIRACL passage ({type(e).__name__}: {e})") from None
