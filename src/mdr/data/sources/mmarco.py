"""mMARCO as parallel training data (``data=mmarco``).

In:  mMARCO's files in the hub layout of ``unicamp-dl/mmarco`` (downloaded once with
     ``huggingface_hub``, only the files of the chosen languages), or a local folder in that layout::

         data/triples.train.ids.small.tsv                      qid <tab> positive pid <tab> negative pid
         data/google/queries/train/{name}_queries.train.tsv    qid <tab> query
         data/google/collections/{name}_collection.tsv         pid <tab> passage
Out: the path of a long-format Parquet corpus (``mdr.formats.parallel``): one row per (query id,
     language) with the query, its positive passage and hard negatives, all in that language.
     The same query id in every language makes the examples parallel.

Volume: MS MARCO's training triples (query, positive, negative) number 39,780,811, about 100 per
query (the paper's Table 9 counts exactly these rows per language). ``triples_per_query`` keeps the
first N triples of each query (1: the first, the default; N; None: all): one example per query holds
the negatives of its kept triples, so two triples of one query are never in-batch negatives of each
other (their shared positive would be a false negative). ``data.hard_negatives=drawn`` takes a
different kept negative at each use of the example.

A BM25 negative of one query is often another query's positive. Each negative carries the example
id it belongs to (``negative_ids``: the query whose positive it is, else ``pid:<pid>``), so the
loss masks it for that query in every language: in an X-Y batch, its translation among another
example's negatives is the query's own answer, which no text comparison can see.

The build streams the (large) collection files and keeps only the passages it needs; the result
is cached under a key of the options and source files, so a second run starts in seconds.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence

from mdr.data.build_cache import built_corpus_path, write_built_corpus
from mdr.errors import DataError, require_number
from mdr.formats.hub import hub_or_local
from mdr.formats.text import text_lines

log = logging.getLogger(__name__)

REPO = "unicamp-dl/mmarco"
LANGUAGES = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french", "hi": "hindi",
    "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch", "pt": "portuguese",
    "ru": "russian", "vi": "vietnamese", "zh": "chinese",
}
TRIPLES = "data/triples.train.ids.small.tsv"


def queries_file(lang: str) -> str:
    return f"data/google/queries/train/{LANGUAGES[lang]}_queries.train.tsv"


def collection_file(lang: str) -> str:
    return f"data/google/collections/{LANGUAGES[lang]}_collection.tsv"


def fetch(relative: str, path: str | None, option: str = "data.files.path") -> str:
    """A file of the mMARCO layout: from the local folder ``path``, or the hub (cached)."""
    return hub_or_local(REPO, relative, path, option, "mMARCO")


def _tsv(file: str, wanted: set[str] | None = None) -> Iterator[tuple[str, str]]:
    for lineno, line in text_lines(file):
        key, sep, text = line.rstrip("\n").partition("\t")
        if not sep:
            raise DataError(f"{file}:{lineno}: expected 'id<TAB>text'")
        if wanted is None or key in wanted:
            yield key, text


def read_triples(file: str, max_queries: int | None, triples_per_query: int | None) -> OrderedDict[str, tuple[str, list[str]]]:
    """qid -> (its first positive pid, the distinct negative pids of its first ``triples_per_query``
    triples, all when None), for the first ``max_queries`` qids of the file. The negatives of triples
    with another positive of the same query are kept: they are non-relevant for the query all the same."""
    out: OrderedDict[str, tuple[str, list[str]]] = OrderedDict()
    seen: dict[str, int] = defaultdict(int)  # triples read per kept query
    for lineno, line in text_lines(file):
        parts = line.split()
        if len(parts) != 3:
            raise DataError(f"{file}:{lineno}: expected 'qid<TAB>positive pid<TAB>negative pid'")
        qid, pos, neg = parts
        if qid not in out:
            if max_queries is not None and len(out) >= max_queries:
                continue
            out[qid] = (pos, [])
        if triples_per_query is not None and seen[qid] >= triples_per_query:
            continue
        seen[qid] += 1
        negs = out[qid][1]
        if neg not in negs:
            negs.append(neg)
    return out


def build_mmarco(
    languages: Sequence[str],
    path: str | None = None,
    max_queries: int | None = 100_000,
    triples_per_query: int | None = 1,
    cache_dir: str | None = None,
) -> list[str]:
    """Build (or reuse) the parallel corpus; returns ``[parquet path]`` for ``data.files``."""
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise DataError(f"mMARCO has no language(s) {unknown}; available: {sorted(LANGUAGES)}")
    if triples_per_query is not None:
        require_number("data.files.triples_per_query", triples_per_query, low=1, integer=True)
    files = {"triples": fetch(TRIPLES, path)}
    for lang in languages:
        files[f"queries/{lang}"] = fetch(queries_file(lang), path)
        files[f"collection/{lang}"] = fetch(collection_file(lang), path)
    key = {"languages": sorted(languages), "max_queries": max_queries, "triples_per_query": triples_per_query, "negative_ids": True,
           "files": {k: (os.path.realpath(f), os.path.getsize(f), os.path.getmtime(f)) for k, f in files.items()}}
    out = built_corpus_path("mmarco", key, cache_dir)
    if os.path.isfile(out):
        log.info("mMARCO: reusing %s", out)
        return [out]
    triples = read_triples(files["triples"], max_queries, triples_per_query)
    pids = {pid for pos, negs in triples.values() for pid in (pos, *negs)}
    negatives = sum(len(negs) for _, negs in triples.values())
    log.info("mMARCO: %d queries with %d distinct (query, negative) triples (%.1f a query; triples_per_query=%s), "
             "%d passages per language, languages %s", len(triples), negatives, negatives / max(1, len(triples)),
             "all" if triples_per_query is None else triples_per_query, len(pids), list(languages))
    return [write_built_corpus(out, _rows(triples, pids, languages, files))]


def _rows(triples, pids: set[str], languages: Sequence[str], files: dict) -> Iterator[dict]:
    owner: dict[str, str] = {}  # pid -> the first kept query whose positive it is
    for qid, (pos, _) in triples.items():
        owner.setdefault(pos, qid)
    for lang in languages:
        queries = dict(_tsv(files[f"queries/{lang}"], set(triples)))
        passages = dict(_tsv(files[f"collection/{lang}"], pids))
        missing = defaultdict(int)
        for qid, (pos, negs) in triples.items():
            if qid not in queries or pos not in passages or not queries[qid].strip() or not passages[pos].strip():
                missing[lang] += 1  # a translation can be missing or empty: that example lacks this language
                continue
            kept = [n for n in negs if passages.get(n, "").strip()]
            yield {"id": qid, "lang": lang, "query": queries[qid], "positive": passages[pos],
                   "negatives": [passages[n] for n in kept], "negative_ids": [owner.get(n, f"pid:{n}") for n in kept]}
        if missing[lang]:
            log.warning("mMARCO %s: %d of %d queries lack a query or positive in this language", lang, missing[lang], len(triples))
