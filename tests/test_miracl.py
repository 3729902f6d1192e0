"""MIRACL: nDCG@10 and Recall@100 against trec_eval, on local files in the hub's exact layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mdr.errors import DataError
from mdr.evaluation.benchmark import EvalOptions
from mdr.evaluation.metrics import ndcg_at_k, recall_at_k
from mdr.evaluation.miracl import MiraclEval
from mdr.formats.miracl import corpus_folder, qrels_file, topics_file
from tests.helpers import tiny, write_miracl

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec-eval-terrier (requirements-dev.txt)")


def trec_eval(run: dict, qrels: dict, measures=("ndcg_cut_10", "recall_100")) -> dict[str, float]:
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(m.rsplit("_", 1)[0] for m in measures)).evaluate(run)
    return {m: float(np.mean([v[m] for v in per_query.values()])) for m in measures}


@pytest.mark.parametrize("levels", [3, 1000])
def test_ndcg_and_recall_match_trec_eval_with_ties_and_graded_relevance(levels):
    """Few score levels -> many ties. trec_eval breaks ties by docno, descending: naming docs
    '<9 - gain>_<n>' puts lower gains first among ties, which is our (pessimistic) policy."""
    rng = np.random.default_rng(levels)
    run, qrels, ours_ndcg, ours_recall = {}, {}, [], []
    for q in range(25):
        n = 150
        gains = rng.choice([0, 0, 0, 0, 1, 2], size=n)
        gains[rng.integers(n)] = 1  # at least one relevant
        scores = rng.integers(0, levels, size=n).astype(float)
        judged = np.flatnonzero(rng.random(n) < 0.5) if q % 2 else np.arange(n)
        judged = np.union1d(judged, np.flatnonzero(gains > 0))
        names = [f"{9 - g}_{j:04d}" for j, g in enumerate(gains)]
        # our side sees only the top-100 retrieved, like the faiss search
        top = np.lexsort((gains, -scores))[:100]
        unjudged_zero = np.where(np.isin(np.arange(n), judged), gains, 0)
        run[f"q{q}"] = {names[j]: float(scores[j]) for j in top}
        qrels[f"q{q}"] = {names[j]: int(gains[j]) for j in judged}
        ours_ndcg.append(ndcg_at_k(scores[top], unjudged_zero[top], gains[judged], 10))
        ours_recall.append(recall_at_k(scores[top], unjudged_zero[top], int((gains[judged] > 0).sum()), 100))
    ref = trec_eval(run, qrels)
    assert np.mean(ours_ndcg) == pytest.approx(ref["ndcg_cut_10"], abs=1e-6)
    assert np.mean(ours_recall) == pytest.approx(ref["recall_100"], abs=1e-6)


def reference(encoder, path, corpus_path, langs) -> dict[str, dict[str, float]]:
    """Encode everything in memory, score exhaustively with torch, evaluate with trec_eval."""
    from mdr.formats.miracl import read_corpus, read_qrels, read_topics

    out = {}
    for lang in langs:
        docs = list(read_corpus(str(corpus_path / corpus_folder(lang))))
        topics = read_topics(str(path / topics_file(lang, "dev")))
        qrels = read_qrels(str(path / qrels_file(lang, "dev")))
        qids = [q for q in topics if q in qrels]
        d = encoder.encode([f"{t} {x}" for _, t, x in docs], "passage")
        q = encoder.encode([topics[x] for x in qids], "query")
        scores = (q @ d.T).numpy()
        run = {}
        for qid, row in zip(qids, scores):
            top = np.argsort(-row)[:100]
            run[qid] = {docs[j][0]: float(row[j]) for j in top}
        out[lang] = trec_eval(run, {q: qrels[q] for q in qids})
    return out


def test_miracl_matches_exhaustive_search_and_trec_eval(tmp_path):
    path, corpus_path = write_miracl(tmp_path)
    encoder = tiny()
    bench = MiraclEval("miracl", ["de", "sw"], path=str(path), corpus_path=str(corpus_path), block_size=50)
    got = bench.evaluate(encoder, EvalOptions(batch_size=16))
    want = reference(encoder, path, corpus_path, ["de", "sw"])
    for lang in ["de", "sw"]:
        assert got["ndcg_at_10_per_lang"][lang] == pytest.approx(want[lang]["ndcg_cut_10"], abs=1e-6)
        assert got["recall_at_100_per_lang"][lang] == pytest.approx(want[lang]["recall_100"], abs=1e-6)
    assert got["ndcg_at_10"] == pytest.approx(np.mean([w["ndcg_cut_10"] for w in want.values()]), abs=1e-6)
    assert got["num_docs"] == {"de": 180, "sw": 180} and got["num_queries"] == 24  # the unjudged topic is left out
    assert 0 < got["ndcg_at_10"] < 1


def test_capped_corpus_keeps_every_judged_passage(tmp_path):
    path, corpus_path = write_miracl(tmp_path, langs=("de",))
    bench = MiraclEval("miracl", ["de"], path=str(path), corpus_path=str(corpus_path), max_docs_per_lang=60)
    judged = {d for q in bench.qrels["de"].values() for d in q}
    kept = [d for d, _ in bench._passages("de", judged)]
    assert len(kept) == 60 and judged <= set(kept)
    assert bench.evaluate(tiny(), EvalOptions(batch_size=16))["num_docs"] == {"de": 60}


def test_bad_miracl_inputs(tmp_path, monkeypatch):
    path, corpus_path = write_miracl(tmp_path, langs=("de",))
    with pytest.raises(DataError, match=r"MIRACL file missing: .*topics\.miracl-v1\.0-fr-dev\.tsv"):
        MiraclEval("miracl", ["fr"], path=str(path), corpus_path=str(corpus_path))
    with pytest.raises(DataError, match=r"MIRACL corpus folder missing: .*miracl-corpus-v1\.0-de"):
        MiraclEval("miracl", ["de"], path=str(path), corpus_path=str(tmp_path)).evaluate(tiny())
    qrels = path / qrels_file("de", "dev")
    qrels.write_text(qrels.read_text() + "de0 Q0 broken\n")
    with pytest.raises(DataError, match=r"qrels\.miracl-v1\.0-de-dev\.tsv:\d+: expected 'qid Q0 docid relevance'"):
        MiraclEval("miracl", ["de"], path=str(path), corpus_path=str(corpus_path))


def test_hub_download_offline_says_how_to_use_local_files(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to fall back on
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DataError, match=r"could not get miracl/miracl/.*set eval\.path to a local copy"):
        MiraclEval("miracl", ["de"])


def test_the_scores_are_exact_not_approximate(tmp_path):
    """faiss' blockwise search over the memmap returns the same top-k as one dense matrix product."""
    import faiss
    from faiss.contrib.exhaustive_search import knn_ground_truth

    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((7, 16)).astype(np.float32), rng.standard_normal((1000, 16)).astype(np.float32)
    _, idx = knn_ground_truth(q, (d[i : i + 128] for i in range(0, 1000, 128)), 100, metric_type=faiss.METRIC_INNER_PRODUCT)
    assert (idx == np.argsort(-(q @ d.T), axis=1)[:, :100]).all()


def test_evaluate_entry_point_with_eval_miracl_and_eval_all(tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    from mdr.tasks import evaluate
    from tests.helpers import compose_config

    path, corpus_path = write_miracl(tmp_path, langs=("de", "sw"))
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("evaluate", [
        "model=tiny", "logger=none", "eval=miracl", f"eval.path={path}", f"eval.corpus_path={corpus_path}",
        "eval.max_docs_per_lang=100", "eval.sets.miracl.languages=[de,sw]"])
    results = evaluate(cfg)
    assert results["miracl"]["num_docs"] == {"de": 100, "sw": 100}
    printed = capsys.readouterr().out
    assert "nDCG@10" in printed and "| miracl |" in printed
    assert json.loads((tmp_path / "results.json").read_text())["results"]["miracl"]["ndcg_at_10"] > 0
    everything = compose_config("evaluate", ["eval=all"])
    assert set(everything.eval.sets) == {"xquad_r", "mlqa_r", "miracl"}
    assert OmegaConf.is_missing(everything.eval.sets.mlqa_r, "path")  # no hub source: the user says where


@pytest.mark.parametrize("backend", ["faiss", "torch", "auto"])
def test_every_search_backend_finds_the_exact_top_k(backend):
    """The GPU paths' CPU fallbacks: torch's matmul + topk (on CUDA when there is one) and faiss
    give the dense product's top k, merged over blocks; fewer passages than k leave -1."""
    from mdr.evaluation.search import exact_search

    rng = np.random.default_rng(1)
    q, d = rng.standard_normal((9, 16)).astype(np.float32), rng.standard_normal((1000, 16)).astype(np.float32)
    scores, idx = exact_search(q, (d[i : i + 128] for i in range(0, 1000, 128)), 50, backend)
    assert (idx == np.argsort(-(q @ d.T), axis=1)[:, :50]).all()
    assert np.allclose(scores, np.take_along_axis(q @ d.T, idx, 1), atol=1e-5)
    small_scores, small_idx = exact_search(q, iter([d[:3]]), 3, backend)
    assert (np.sort(small_idx, 1) == np.arange(3)).all()


def test_the_search_backend_is_checked_before_any_encoding(tmp_path):
    from mdr.errors import ConfigError
    from mdr.evaluation.search import resolve_backend

    with pytest.raises(ConfigError, match=r"search must be one of \('auto', 'faiss', 'torch'\), got 'gpu'"):
        resolve_backend("gpu")
    import torch

    if not torch.cuda.is_available():  # without a GPU: faiss on the CPU, and torch on the CPU when asked
        assert resolve_backend("auto") == ("faiss", "cpu") and resolve_backend("torch") == ("torch", "cpu")


def test_miracl_scores_agree_across_search_backends(tmp_path):
    path, corpus_path = write_miracl(tmp_path, langs=("de",))
    encoder = tiny()
    a = MiraclEval("m", ["de"], path=str(path), corpus_path=str(corpus_path), block_size=40, search="faiss").evaluate(encoder)
    b = MiraclEval("m", ["de"], path=str(path), corpus_path=str(corpus_path), block_size=40, search="torch").evaluate(encoder)
    assert a["ndcg_at_10"] == pytest.approx(b["ndcg_at_10"], abs=1e-6) and a["recall_at_100"] == pytest.approx(b["recall_at_100"], abs=1e-6)
