"""MIRACL: monolingual ad-hoc retrieval over Wikipedia passages (nDCG@10 and Recall@100).

In:  an ``Encoder``; topics, qrels and a passage corpus per language, in the hub's layout, read
     from the Hugging Face Hub (``miracl/miracl``, ``miracl/miracl-corpus``; downloaded once by
     ``huggingface_hub`` and cached) or from local folders in the same layout::

         {path}/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv   qid <tab> query
         {path}/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv     qid <tab> Q0 <tab> docid <tab> relevance
         {corpus_path}/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz                   {"docid", "title", "text"}

Out: nDCG@10 and Recall@100 per language and their mean over languages.

The corpus is encoded as a stream: embeddings are appended to a float32 file on disk and read back
as a memmap, block by block, for exact inner-product search with faiss (on every GPU when faiss-gpu
sees one), so neither the passages nor their embeddings need to fit in RAM. ``max_docs_per_lang``
caps each corpus for quick runs: every passage judged for the evaluated topics is kept, then the
first others in file order. Topics without a relevant passage (relevance > 0) are left out.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from src.errors import DataError
from src.evaluation.metrics import ndcg_at_k, recall_at_k

log = logging.getLogger(__name__)

TOPICS_REPO, CORPUS_REPO = "miracl/miracl", "miracl/miracl-corpus"


def topics_file(lang: str, split: str) -> str:
    return f"miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"


def qrels_file(lang: str, split: str) -> str:
    return f"miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"


def corpus_folder(lang: str) -> str:
    return f"miracl-corpus-v1.0-{lang}"


def _from_hub(download, what: str, local_option: str):
    try:
        return download()
    except Exception as e:  # offline, gated, missing file: say which and what to do instead
        raise DataError(
            f"could not get {what} from the Hugging Face Hub ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"without network, point {local_option} at a local copy in the same layout"
        ) from None


def annotation_file(relative: str, path: str | None, option: str = "eval.path") -> str:
    """A topics or qrels file: from the local folder ``path`` (same layout), or the hub (cached)."""
    if path is None:
        from huggingface_hub import hf_hub_download

        return _from_hub(lambda: hf_hub_download(TOPICS_REPO, relative, repo_type="dataset"), f"{TOPICS_REPO}/{relative}", option)
    file = os.path.join(path, relative)
    if not os.path.isfile(file):
        raise DataError(f"MIRACL file missing: {file}")
    return file


def corpus_dir(lang: str, corpus_path: str | None, option: str = "eval.corpus_path") -> str:
    """The folder of ``lang``'s passages: under ``corpus_path``, or downloaded from the hub (cached)."""
    if corpus_path is None:
        from huggingface_hub import snapshot_download

        root = _from_hub(
            lambda: snapshot_download(CORPUS_REPO, repo_type="dataset", allow_patterns=[f"{corpus_folder(lang)}/*"]),
            f"the {lang} corpus of {CORPUS_REPO}", option,
        )
        return os.path.join(root, corpus_folder(lang))
    folder = os.path.join(corpus_path, corpus_folder(lang))
    if not os.path.isdir(folder):
        raise DataError(f"MIRACL corpus folder missing: {folder}")
    return folder


def read_topics(file: str) -> dict[str, str]:
    topics = {}
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1].strip():
                raise DataError(f"{file}:{lineno}: expected 'qid<TAB>query', got {len(parts)} field(s)")
            topics[parts[0]] = parts[1]
    return topics


def read_qrels(file: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
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
        opener = gzip.open if file.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                try:
                    doc = json.loads(line)
                    yield doc["docid"], doc.get("title") or "", doc["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise DataError(f"{file}:{lineno}: not a MIRACL passage ({type(e).__name__}: {e})") from None


class MiraclEval:
    """One MIRACL split over several languages; ``evaluate(encoder, batch_size)`` returns metrics."""

    def __init__(
        self,
        name: str,
        languages: Sequence[str],
        split: str = "dev",
        path: str | None = None,
        corpus_path: str | None = None,
        max_docs_per_lang: int | None = None,
        with_title: bool = True,
        block_size: int = 65536,
        work_dir: str | None = None,
    ) -> None:
        if not languages:
            raise DataError(f"eval set {name!r}: no languages given")
        self.name, self.languages, self.split = name, list(languages), split
        self.path, self.corpus_path = path, corpus_path
        self.max_docs_per_lang, self.with_title = max_docs_per_lang, with_title
        self.block_size, self.work_dir = block_size, work_dir
        # topics and qrels are small: read (and check) them now, so a bad path fails before any encoding
        self.topics = {lang: read_topics(annotation_file(topics_file(lang, split), path)) for lang in self.languages}
        self.qrels = {lang: read_qrels(annotation_file(qrels_file(lang, split), path)) for lang in self.languages}

    def _passages(self, lang: str, judged: set[str]) -> Iterator[tuple[str, str]]:
        others = None if self.max_docs_per_lang is None else max(self.max_docs_per_lang - len(judged), 0)
        for docid, title, text in read_corpus(corpus_dir(lang, self.corpus_path)):
            if docid not in judged:
                if others is not None:
                    if others == 0:
                        continue
                    others -= 1
            yield docid, f"{title} {text}".strip() if self.with_title else text

    def evaluate(self, encoder, batch_size: int = 128, k: int = 100) -> dict:
        import faiss
        from faiss.contrib.exhaustive_search import knn_ground_truth

        t0 = time.perf_counter()
        ndcg, recall, num_queries, num_docs, t_encode = {}, {}, 0, {}, 0.0
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="miracl-") as tmp:
            for lang in self.languages:
                qrels = self.qrels[lang]
                qids = [q for q in self.topics[lang] if any(r > 0 for r in qrels.get(q, {}).values())]
                if not qids:
                    raise DataError(f"eval set {self.name!r}: no {lang} topic has a relevant passage in its qrels")
                judged = {d for q in qids for d in qrels[q]}
                t1 = time.perf_counter()
                emb_file, docids = os.path.join(tmp, f"{lang}.f32"), []
                with open(emb_file, "wb") as out:
                    for block in _blocks(self._passages(lang, judged), self.block_size):
                        docids.extend(d for d, _ in block)
                        out.write(encoder.encode([t for _, t in block], "passage", batch_size).numpy().tobytes())
                if not docids:
                    raise DataError(f"eval set {self.name!r}: the {lang} corpus is empty")
                q = encoder.encode([self.topics[lang][x] for x in qids], "query", batch_size).numpy()
                t_encode += time.perf_counter() - t1
                pool = np.memmap(emb_file, dtype=np.float32, mode="r", shape=(len(docids), q.shape[1]))
                blocks = (np.ascontiguousarray(pool[i : i + self.block_size]) for i in range(0, len(docids), self.block_size))
                scores, idx = knn_ground_truth(q, blocks, min(k, len(docids)), metric_type=faiss.METRIC_INNER_PRODUCT)
                del pool
                per_q_ndcg, per_q_recall = [], []
                for qid, s, i in zip(qids, scores, idx):
                    found = i >= 0
                    gains = np.array([max(qrels[qid].get(docids[j], 0), 0) for j in i[found]], dtype=np.float64)
                    judged_gains = np.array(list(qrels[qid].values()), dtype=np.float64)
                    per_q_ndcg.append(ndcg_at_k(s[found], gains, judged_gains, 10))
                    per_q_recall.append(recall_at_k(s[found], gains, int((judged_gains > 0).sum()), k))
                ndcg[lang], recall[lang] = float(np.mean(per_q_ndcg)), float(np.mean(per_q_recall))
                num_queries += len(qids)
                num_docs[lang] = len(docids)
                log.info("miracl %s: %d topics, %d passages, nDCG@10 %.4f, R@%d %.4f",
                         lang, len(qids), len(docids), ndcg[lang], k, recall[lang])
        return {
            "languages": self.languages,
            "ndcg_at_10": float(np.mean(list(ndcg.values()))),
            f"recall_at_{k}": float(np.mean(list(recall.values()))),
            "ndcg_at_10_per_lang": ndcg,
            f"recall_at_{k}_per_lang": recall,
            "num_queries": num_queries,
            "num_docs": num_docs,
            "encode_seconds": t_encode,
            "total_seconds": time.perf_counter() - t0,
        }


def _blocks(items: Iterator, size: int) -> Iterator[list]:
    block = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block
