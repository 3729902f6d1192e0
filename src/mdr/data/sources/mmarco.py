"""mMARCO as parallel training data (``data=mmarco``).

In:  mMARCO's files in the hub layout of ``unicamp-dl/mmarco`` (downloaded once with
     ``huggingface_hub``, only the files of the chosen languages), or a local folder in that layout::

         data/triples.train.ids.small.tsv                      qid <tab> positive pid <tab> negative pid
         data/google/queries/train/{name}_queries.train.tsv    qid <tab> query
         data/google/collections/{name}_collection.tsv         pid <tab> passage
Out: the path of a long-format Parquet corpus (``mdr.formats.parallel``): one row per (query id,
     language) with the query, its positive passage and hard negatives, all in that language.
     The same query id in every language makes the examples parallel.

The build streams the (large) collection files and keeps only the passages it needs; the result
is cached under a key of the options and source files, so a second run starts in seconds.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence

from mdr.data.build_cache import built_corpus_path, write_built_corpus
from mdr.errors import DataError
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


def read_triples(file: str, max_queries: int | None, num_negatives: int) -> OrderedDict[str, tuple[str, list[str]]]:
    """qid -> (first positive pid, up to ``num_negatives`` negative pids), first ``max_queries`` qids."""
    out: OrderedDict[str, tuple[str, list[str]]] = OrderedDict()
    for lineno, line in text_lines(file):
        parts = line.split()
        if len(parts) != 3:
            raise DataError(f"{file}:{lineno}: expected 'qid<TAB>positive pid<TAB>negative pid'")
        qid, pos, neg = parts
        if qid not in out:
            if max_queries is not None and len(out) >= max_queries:
                continue
            out[qid] = (pos, [])
        negs = out[qid][1]
        if len(negs) < num_negatives and neg not in negs:
            negs.append(neg)
    return out


def build_mmarco(
    languages: Sequence[str],
    path: str | None = None,
    max_queries: int | None = 100_000,
    num_negatives: int = 1,
    cache_dir: str | None = None,
) -> list[str]:
    """Build (or reuse) the parallel corpus; returns ``[parquet path]`` for ``data.files``."""
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise DataError(f"mMARCO has no language(s) {unknown}; available: {sorted(LANGUAGES)}")
    files = {"triples": fetch(TRIPLES, path)}
    for lang in languages:
        files[f"queries/{lang}"] = fetch(queries_file(lang), path)
        files[f"collection/{lang}"] = fetch(collection_file(lang), path)
    key = {"languages": sorted(languages), "max_queries": max_queries, "num_negatives": num_negatives,
           "files": {k: (os.path.realpath(f), os.path.getsize(f), os.path.getmtime(f)) for k, f in files.items()}}
    out = built_corpus_path("mmarco", key, cache_dir)
    if os.path.isfile(out):
        log.info("mMARCO: reusing %s", out)
        return [out]
    triples = read_triples(files["triples"], max_queries, num_negatives)
    pids = {pid for pos, negs in triples.values() for pid in (pos, *negs)}
    log.info("mMARCO: %d queries, %d passages per language, languages %s", len(triples), len(pids), list(languages))
    return [write_built_corpus(out, _rows(triples, pids, languages, files))]


def _rows(triples, pids: set[str], languages: Sequence[str], files: dict) -> Iterator[dict]:
    for lang in languages:
        queries = dict(_tsv(files[f"queries/{lang}"], set(triples)))
        passages = dict(_tsv(files[f"collection/{lang}"], pids))
        missing = defaultdict(int)
        for qid, (pos, negs) in triples.items():
            if qid not in queries or pos not in passages or not queries[qid].strip() or not passages[pos].strip():
                missing[lang] += 1  # a translation can be missing or empty: that example lacks this language
                continue
            yield {"id": qid, "lang": lang, "query": queries[qid], "positive": passages[pos],
                   "negatives": [passages[n] for n in negs if passages.get(n, "").strip()]}
        if missing[lang]:
            log.warning("mMARCO %s: %d of %d queries lack a query or positive in this language", lang, missing[lang], len(triples))
