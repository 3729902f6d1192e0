"""MIRACL's training topics as monolingual training data (``data=miracl_train``).

In:  MIRACL topics, qrels and corpus (hub or local, the layout of ``mdr.formats.miracl``),
     split ``train``.
Out: the path of a long-format Parquet corpus: per topic, its query, its first relevant passage
     (title + text) as the positive and judged non-relevant passages as hard negatives. Ids are
     ``<lang>-<qid>``: no example exists in two languages, so the data suits X-X batches only
     (give this source ``sampler: xx`` in a mixture; X-Y samplers reject it with a clear error).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from mdr.data.build_cache import built_corpus_path, write_built_corpus
from mdr.formats.miracl import annotation_file, corpus_dir, qrels_file, read_corpus, read_qrels, read_topics, topics_file

log = logging.getLogger(__name__)


def build_miracl_train(
    languages: Sequence[str],
    path: str | None = None,
    corpus_path: str | None = None,
    split: str = "train",
    max_queries_per_lang: int | None = None,
    num_negatives: int = 1,
    with_title: bool = True,
    cache_dir: str | None = None,
) -> list[str]:
    """Build (or reuse) the corpus; returns ``[parquet path]`` for ``data.files``."""
    annotations = {lang: (annotation_file(topics_file(lang, split), path, "data.files.path"),
                          annotation_file(qrels_file(lang, split), path, "data.files.path")) for lang in languages}
    folders = {lang: corpus_dir(lang, corpus_path, "data.files.corpus_path") for lang in languages}
    key = {"languages": sorted(languages), "split": split, "max_queries": max_queries_per_lang, "negatives": num_negatives,
           "title": with_title, "files": {lang: [(os.path.realpath(f), os.path.getsize(f)) for f in fs] + [os.path.realpath(folders[lang])]
                                          for lang, fs in annotations.items()}}
    out = built_corpus_path("miracl-train", key, cache_dir)
    if os.path.isfile(out):
        log.info("MIRACL train: reusing %s", out)
        return [out]
    return [write_built_corpus(out, _rows(languages, annotations, folders, max_queries_per_lang, num_negatives, with_title))]


def _rows(languages, annotations, folders, max_queries, num_negatives, with_title) -> Iterator[dict]:
    for lang in languages:
        topics, qrels = read_topics(annotations[lang][0]), read_qrels(annotations[lang][1])
        qids = [q for q in topics if any(r > 0 for r in qrels.get(q, {}).values())][:max_queries]
        needed = {d for q in qids for d in qrels[q]}
        text = {docid: (f"{title} {body}".strip() if with_title else body)
                for docid, title, body in read_corpus(folders[lang]) if docid in needed}
        kept = 0
        for qid in qids:
            positives = [d for d, r in qrels[qid].items() if r > 0 and d in text]
            if not positives:
                continue
            negatives = [text[d] for d, r in qrels[qid].items() if r <= 0 and d in text][:num_negatives]
            kept += 1
            yield {"id": f"{lang}-{qid}", "lang": lang, "query": topics[qid], "positive": text[positives[0]],
                   "negatives": negatives}
        log.info("MIRACL train %s: %d topics with a relevant passage in the corpus", lang, kept)
