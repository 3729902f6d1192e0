"""MIRACL as a benchmark: monolingual ad-hoc retrieval over Wikipedia passages.

In:  an encoder; topics, qrels and a passage corpus per language (``mdr.formats.miracl``: from the
     Hugging Face Hub, downloaded once and cached, or from local folders in the same layout).
Out: nDCG@10 and Recall@100 per language and their mean over languages (the results shape of
     ``mdr.evaluation.benchmark``, with a per-query table: one row per topic); when more languages
     than the paper's 15 (arXiv 2408.10536) are evaluated, also the means over those 15
     (``ndcg_at_10_paper15``, ``recall_at_100_paper15``), which are then the ones compared with the
     paper (``miracl_metrics``).

The corpus is encoded as a stream: embeddings are appended to a float32 file on disk and read back
as a memmap, block by block, for exact inner-product search (``mdr.evaluation.search``: on the GPU
whenever there is one, with faiss-gpu or torch), so neither the passages nor their embeddings need
to fit in RAM. ``max_docs_per_lang``
caps each corpus for quick runs: every passage judged for the evaluated topics is kept, then the
first others in file order. Topics without a relevant passage (relevance > 0) are left out.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from mdr.errors import DataError
from mdr.evaluation.benchmark import EvalOptions, Metric, PerQuery, TextEncoder, finite_embeddings
from mdr.evaluation.metrics import ndcg_at_k, recall_at_k
from mdr.evaluation.search import exact_search, resolve_backend
from mdr.formats.miracl import annotation_file, corpus_dir, qrels_file, read_corpus, read_qrels, read_topics, topics_file
from mdr.reference.published import paper_miracl_languages

log = logging.getLogger(__name__)


def miracl_metrics(languages: Sequence[str], k: int = 100) -> list[Metric]:
    """nDCG@10 and Recall@k over the evaluated languages (tested, nDCG@10 selected on by default);
    compared with the paper's figures when those are exactly its 15 languages, else their means over
    the 15 are, when all 15 were evaluated."""
    paper = set(paper_miracl_languages())
    same = set(languages) == paper
    out = [Metric("ndcg_at_10", "nDCG@10", per_query=PerQuery("monolingual", "ndcg_at_10"), tested=True, select=True,
                  paper="ndcg_at_10" if same else None),
           Metric(f"recall_at_{k}", f"R@{k}", per_query=PerQuery("monolingual", f"recall_at_{k}"), tested=True,
                  paper=f"recall_at_{k}" if same else None)]
    if paper < set(languages):
        langs = tuple(sorted(paper))
        out += [Metric(f"{name}_paper15", f"{label} (paper's 15)", headline=False, paper=name,
                       per_query=PerQuery("monolingual", name, languages=langs))
                for name, label in (("ndcg_at_10", "nDCG@10"), (f"recall_at_{k}", f"R@{k}"))]
    return out


class MiraclEval:
    """One MIRACL split over several languages, a ``Benchmark``."""

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
        search: str = "auto",
    ) -> None:
        resolve_backend(search)  # a bad value fails before any encoding
        if not languages:
            raise DataError(f"eval set {name!r}: no languages given")
        self.name, self.languages, self.split = name, list(languages), split
        self.path, self.corpus_path = path, corpus_path
        self.max_docs_per_lang, self.with_title = max_docs_per_lang, with_title
        self.block_size, self.work_dir, self.search = block_size, work_dir, search
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

    def metrics(self, options: EvalOptions = EvalOptions(), k: int = 100) -> list[Metric]:
        return miracl_metrics(self.languages, k)

    def evaluate(self, encoder: TextEncoder, options: EvalOptions = EvalOptions(), k: int = 100) -> dict:
        batch_size = options.batch_size
        t0 = time.perf_counter()
        ndcg, recall, num_queries, num_docs, t_encode, rows = {}, {}, 0, {}, 0.0, []
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
                        emb = finite_embeddings(encoder.encode([t for _, t in block], "passage", batch_size), self.name, "passages")
                        out.write(emb.numpy().tobytes())
                if not docids:
                    raise DataError(f"eval set {self.name!r}: the {lang} corpus is empty")
                q = finite_embeddings(encoder.encode([self.topics[lang][x] for x in qids], "query", batch_size), self.name, "queries").numpy()
                t_encode += time.perf_counter() - t1
                pool = np.memmap(emb_file, dtype=np.float32, mode="r", shape=(len(docids), q.shape[1]))
                blocks = (np.ascontiguousarray(pool[i : i + self.block_size]) for i in range(0, len(docids), self.block_size))
                scores, idx = exact_search(q, blocks, min(k, len(docids)), self.search)
                del pool
                per_q_ndcg, per_q_recall = [], []
                for qid, s, i in zip(qids, scores, idx):
                    found = i >= 0
                    gains = np.array([max(qrels[qid].get(docids[j], 0), 0) for j in i[found]], dtype=np.float64)
                    judged_gains = np.array(list(qrels[qid].values()), dtype=np.float64)
                    per_q_ndcg.append(ndcg_at_k(s[found], gains, judged_gains, 10))
                    per_q_recall.append(recall_at_k(s[found], gains, int((judged_gains > 0).sum()), k))
                ndcg[lang], recall[lang] = float(np.mean(per_q_ndcg)), float(np.mean(per_q_recall))
                rows.append(pd.DataFrame({"query_id": qids, "question": [f"{lang}:{x}" for x in qids], "query_lang": lang,
                                          "pool_lang": lang, "setting": "monolingual", "ndcg_at_10": per_q_ndcg,
                                          f"recall_at_{k}": per_q_recall}))
                num_queries += len(qids)
                num_docs[lang] = len(docids)
                log.info("miracl %s: %d topics, %d passages, nDCG@10 %.4f, R@%d %.4f",
                         lang, len(qids), len(docids), ndcg[lang], k, recall[lang])
        paper = paper_miracl_languages()  # the paper's means are over these 15
        paper_means = {f"{metric}_paper15": float(np.mean([values[lang] for lang in paper]))
                       for metric, values in (("ndcg_at_10", ndcg), (f"recall_at_{k}", recall))
                       if set(paper) < set(values)}
        return {
            "languages": self.languages,
            "ndcg_at_10": float(np.mean(list(ndcg.values()))),
            f"recall_at_{k}": float(np.mean(list(recall.values()))),
            **paper_means,
            "ndcg_at_10_per_lang": ndcg,
            f"recall_at_{k}_per_lang": recall,
            "num_queries": num_queries,
            "num_docs": num_docs,
            "encode_seconds": t_encode,
            "total_seconds": time.perf_counter() - t0,
            "per_query": pd.concat(rows, ignore_index=True),
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
