"""Full-pool metrics and the three evaluation settings, checked against independent computations.

References: torchmetrics' RetrievalMAP (scores without ties), pytrec_eval / trec_eval (with ties),
and a brute-force re-implementation of every setting from a dense score matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalMAP

from mdr.evaluation.metrics import average_precision, full_pool_ranks
from mdr.evaluation.pools import EvalSet
from mdr.evaluation.settings import query_table, score_embeddings

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pip install pytrec-eval-terrier (requirements-dev.txt)")


def random_relevance(rng: np.random.Generator, n_queries: int, n_pool: int, max_rel: int = 4) -> list[np.ndarray]:
    return [rng.choice(n_pool, size=rng.integers(1, max_rel + 1), replace=False) for _ in range(n_queries)]


def torchmetrics_map(scores: torch.Tensor, relevant: list[np.ndarray]) -> float:
    # torchmetrics counts an item with score <= 0 as not retrieved: shift every score above 0
    scores = scores.double() - scores.min() + 1.0
    target = torch.zeros_like(scores, dtype=torch.bool)
    for i, r in enumerate(relevant):
        target[i, torch.as_tensor(r)] = True
    indexes = torch.arange(len(scores)).unsqueeze(1).expand_as(scores)
    return float(RetrievalMAP()(scores.flatten().double(), target.flatten(), indexes=indexes.flatten()))


def trec_eval_map(scores: torch.Tensor, relevant: list[np.ndarray], measure: str = "map") -> float:
    """trec_eval breaks score ties by docno, descending: relevant docs named 'a_*' and the others
    'z_*' therefore rank below every tied non-relevant doc, which is our pessimistic policy.
    ``measure``: "map", or "recall_k" (the share of the relevant docs in the top k)."""
    qrel, run = {}, {}
    for i, r in enumerate(relevant):
        rel = set(int(j) for j in r)
        names = [f"a_{j:05d}" if j in rel else f"z_{j:05d}" for j in range(scores.shape[1])]
        qrel[f"q{i}"] = {names[j]: 1 for j in rel}
        run[f"q{i}"] = {names[j]: float(s) for j, s in enumerate(scores[i].tolist())}
    per_query = pytrec_eval.RelevanceEvaluator(qrel, {measure.replace("_", ".")}).evaluate(run)
    return float(np.mean([v[measure] for v in per_query.values()]))


def our_map(q: torch.Tensor, pool: torch.Tensor, relevant: list[np.ndarray], chunk_size: int = 7) -> float:
    return float(np.mean([average_precision(r) for r in full_pool_ranks(q, pool, relevant, chunk_size)]))


def test_map_matches_torchmetrics_without_ties():
    rng = np.random.default_rng(0)
    q, pool = torch.randn(40, 16, dtype=torch.float64), torch.randn(300, 16, dtype=torch.float64)
    relevant = random_relevance(rng, 40, 300)
    expected = torchmetrics_map(q @ pool.T, relevant)
    assert our_map(q, pool, relevant) == pytest.approx(expected, abs=1e-6)
    assert our_map(q, pool, relevant) == pytest.approx(trec_eval_map(q @ pool.T, relevant), abs=1e-6)


def test_score_budget_caps_the_chunk_without_changing_ranks(monkeypatch):
    """``max_chunk_scores`` bounds the rows scored at once (at least one); the ranks do not change."""
    from mdr.evaluation import metrics

    rng = np.random.default_rng(1)
    q, pool = torch.randn(25, 8), torch.randn(60, 8)
    relevant = random_relevance(rng, 25, 60)
    expected = full_pool_ranks(q, pool, relevant, chunk_size=256)
    rows: list[int] = []
    original = metrics.ranks_from_scores
    monkeypatch.setattr(metrics, "ranks_from_scores", lambda s, *a: rows.append(len(s)) or original(s, *a))
    for budget, most_rows in [(1, 1), (60, 1), (150, 2), (10**9, 25)]:
        rows.clear()
        got = full_pool_ranks(q, pool, relevant, chunk_size=256, max_chunk_scores=budget)
        assert max(rows) == most_rows and sum(rows) == 25
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize("levels", [2, 3, 10])
def test_map_with_ties_is_pessimistic_and_matches_trec_eval(levels):
    """Scores drawn from a handful of values: many relevant/non-relevant ties per query."""
    rng = np.random.default_rng(levels)
    n_q, n_pool = 30, 50
    # one-hot "embeddings" make the score matrix exactly the integer levels we draw
    scores = torch.as_tensor(rng.integers(0, levels, size=(n_q, n_pool)), dtype=torch.float32)
    relevant = random_relevance(rng, n_q, n_pool, max_rel=5)
    pool = torch.eye(n_pool)
    mine = our_map(scores, pool, relevant)
    assert mine == pytest.approx(trec_eval_map(scores, relevant), abs=1e-6)
    # the same policy spelled out: push every relevant item just below its tied non-relevant ones
    target = torch.zeros_like(scores, dtype=torch.bool)
    for i, r in enumerate(relevant):
        target[i, torch.as_tensor(r)] = True
    assert mine == pytest.approx(torchmetrics_map(scores - 0.1 * target, relevant), abs=1e-6)
    assert mine <= torchmetrics_map(scores + 0.1 * target, relevant)  # optimistic reading is higher


def random_evalset(seed: int) -> tuple[EvalSet, torch.Tensor, torch.Tensor]:
    """Three languages, question ids missing at random in some languages, distractor passages that
    answer nothing, and one query whose answer is in no pool at all."""
    rng = np.random.default_rng(seed)
    langs = ["de", "en", "zh"]
    present = rng.random((12, 3)) < 0.7
    present[present.sum(1) == 0, 0] = True
    q_text, q_lang, q_id, c_text, c_lang, c_id = [], [], [], [], [], []
    for i, j in zip(*np.nonzero(present)):
        q_text.append(f"q{i}-{langs[j]}"), q_lang.append(langs[j]), q_id.append(str(i))
        c_text.append(f"p{i}-{langs[j]}"), c_lang.append(langs[j]), c_id.append(str(i))
    for j, lang in enumerate(langs):
        for k in range(5):
            c_text.append(f"d{k}-{lang}"), c_lang.append(lang), c_id.append(None)
    q_text.append("orphan"), q_lang.append("en"), q_id.append("orphan")
    relevant = [np.flatnonzero(np.asarray(c_id, dtype=object) == qid) for qid in q_id]
    es = EvalSet("random", q_text, q_lang, q_id, c_text, c_lang, relevant)
    q = torch.nn.functional.normalize(torch.randn(len(q_text), 8, dtype=torch.float64), dim=1)
    c = torch.nn.functional.normalize(torch.randn(len(c_text), 8, dtype=torch.float64), dim=1)
    return es, q, c


def brute_force(es: EvalSet, q: torch.Tensor, c: torch.Tensor, measure: str = "map") -> dict:
    """Every setting from the dense score matrix, with trec_eval for AP / recall and argsort for
    ranks; the multilingual setting macro- (the paper's headline) and micro-averaged over queries."""
    scores = q @ c.T
    q_lang, c_lang = np.asarray(es.query_lang), np.asarray(es.cand_lang)
    keep = [i for i, r in enumerate(es.relevant) if len(r)]
    out = {"multilingual_micro": trec_eval_map(scores[keep], [es.relevant[i] for i in keep], measure)}
    per_lang = {x: trec_eval_map(scores[rows], [es.relevant[i] for i in rows], measure)
                for x in es.languages if (rows := [i for i in keep if q_lang[i] == x])}
    out["multilingual_per_lang"], out["multilingual"] = per_lang, np.mean(list(per_lang.values()))
    distances, distance_lang, same_first = [], [], []
    for i in keep:
        order = torch.argsort(scores[i], descending=True).numpy()
        rank_of = np.empty(len(order), dtype=int)
        rank_of[order] = np.arange(1, len(order) + 1)
        ranks = rank_of[es.relevant[i]]
        if len(ranks) >= 2:
            distances.append(ranks.max() - ranks.min())
            distance_lang.append(q_lang[i])
        rl = c_lang[es.relevant[i]]
        if (rl == q_lang[i]).any() and (rl != q_lang[i]).any():
            same_first.append(rl[np.argmin(ranks)] == q_lang[i])
    out["rank_distance_micro"], out["same_language_first"] = np.mean(distances), np.mean(same_first)
    by_lang = {x: np.mean([d for d, lang in zip(distances, distance_lang) if lang == x]) for x in sorted(set(distance_lang))}
    out["rank_distance"] = np.mean(list(by_lang.values()))  # the paper's: the mean of the per-language means
    matrix = {}
    for x in es.languages:
        for y in es.languages:
            cols = np.flatnonzero(c_lang == y)
            rows = [i for i in range(len(q)) if q_lang[i] == x and np.isin(es.relevant[i], cols).any()]
            if rows:
                rel = [np.flatnonzero(np.isin(cols, es.relevant[i])) for i in rows]
                matrix[(x, y)] = trec_eval_map(scores[rows][:, cols], rel, measure)
    out["matrix"] = matrix
    out["monolingual"] = np.mean([v for (x, y), v in matrix.items() if x == y])
    out["crosslingual"] = np.mean([v for (x, y), v in matrix.items() if x != y])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_setting_matches_a_brute_force_computation(seed):
    es, q, c = random_evalset(seed)
    got = score_embeddings(es, q, c, chunk_size=4)
    want = brute_force(es, q, c)
    for key in ["multilingual", "monolingual", "crosslingual"]:
        assert got[f"{key}_map"] == pytest.approx(want[key], abs=1e-6), key
    assert got["multilingual_map_micro"] == pytest.approx(want["multilingual_micro"], abs=1e-6)
    assert got["multilingual_map_per_lang"] == pytest.approx(want["multilingual_per_lang"], abs=1e-6)
    for key in ["rank_distance", "rank_distance_micro", "same_language_first"]:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    flat = {(x, y): v for x, row in got["matrix"].items() for y, v in row.items()}
    assert flat.keys() == want["matrix"].keys()
    for k, v in want["matrix"].items():
        assert flat[k] == pytest.approx(v, abs=1e-6), k
    assert got["num_queries"] == len(es.query_text)


@pytest.mark.parametrize("metric, column", [("multilingual_map", "ap"), ("rank_distance", "rank_distance")])
def test_macro_and_micro_means_differ_when_languages_have_unequal_queries(metric, column):
    """MLQA-R has 1,148 English questions and ~500 in each other language: the headline means (the
    paper's, e.g. its Tables 7 / 8 "Mean" rows) weigh languages alike, the _micro ones every query."""
    differed = 0
    for seed in range(3, 8):
        es, q, c = random_evalset(seed)
        got = score_embeddings(es, q, c)
        per_lang = got[f"{metric}_per_lang"]
        assert got[metric] == pytest.approx(np.mean(list(per_lang.values())), abs=1e-12)
        table = query_table(es, q, c)
        multi = table[table["pool_lang"] == "*"].dropna(subset=[column])
        assert got[f"{metric}_micro"] == pytest.approx(multi[column].mean(), abs=1e-12)
        if multi["query_lang"].value_counts().nunique() > 1:
            assert got[metric] != pytest.approx(got[f"{metric}_micro"], abs=1e-9)
            differed += 1
    assert differed


@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("seed", [0, 1])
def test_recall_at_k_matches_trec_eval_in_every_setting(seed, k):
    es, q, c = random_evalset(seed)
    got = score_embeddings(es, q, c, recall_at=(1, 10))
    want = brute_force(es, q, c, measure=f"recall_{k}")
    for key in ["multilingual", "monolingual", "crosslingual"]:
        assert got[f"{key}_recall_at_{k}"] == pytest.approx(want[key], abs=1e-6), key
    assert got[f"multilingual_recall_at_{k}_per_lang"] == pytest.approx(want["multilingual_per_lang"], abs=1e-6)
    mono = {x: v for (x, y), v in want["matrix"].items() if x == y}
    assert got[f"monolingual_recall_at_{k}_per_lang"] == pytest.approx(mono, abs=1e-6)


def test_seen_and_unseen_languages_split_each_per_language_metric():
    es, q, c = random_evalset(1)
    got = score_embeddings(es, q, c, training_languages=["de", "en", "fr"])  # zh unseen; fr not in the eval set
    assert got["seen_languages"] == ["de", "en"] and got["unseen_languages"] == ["zh"]
    for metric in ("multilingual_map", "monolingual_map", "crosslingual_map", "multilingual_recall_at_10"):
        table = got[f"{metric}_per_lang"]
        assert got[f"{metric}_seen"] == pytest.approx((table["de"] + table["en"]) / 2, abs=1e-12)
        assert got[f"{metric}_unseen"] == pytest.approx(table["zh"], abs=1e-12)
    assert "multilingual_map_seen" not in score_embeddings(es, q, c)  # no training languages: no split


def test_chunk_size_does_not_change_results():
    es, q, c = random_evalset(5)
    a, b = score_embeddings(es, q, c, chunk_size=1), score_embeddings(es, q, c, chunk_size=1000)
    for key in ["multilingual_map", "monolingual_map", "crosslingual_map", "rank_distance", "same_language_first"]:
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_perfect_and_fully_biased_embeddings():
    """Translations embedded identically score 1.0 everywhere; a model that only matches its own
    language ranks the same-language answer first for every query."""
    es, _, _ = random_evalset(3)
    ids = sorted(set(es.query_id))
    basis = torch.eye(len(ids) + 1, dtype=torch.float64)
    q = basis[[ids.index(i) for i in es.query_id]]
    cand_id = {int(c): es.query_id[i] for i, r in enumerate(es.relevant) for c in r}
    c = torch.stack([basis[ids.index(cand_id[j])] if j in cand_id else basis[-1] * 0.1 for j in range(len(es.cand_text))])
    perfect = score_embeddings(es, q, c)
    assert perfect["multilingual_map"] == perfect["monolingual_map"] == perfect["crosslingual_map"] == 1.0

    lang_q = torch.nn.functional.one_hot(torch.tensor([es.languages.index(x) for x in es.query_lang]), 3).double()
    lang_c = torch.nn.functional.one_hot(torch.tensor([es.languages.index(x) for x in es.cand_lang]), 3).double()
    # own-language distractors (1.5) now outscore other-language answers (1.0)
    biased = score_embeddings(es, torch.cat([q, lang_q], 1), torch.cat([c, 1.5 * lang_c], 1))
    assert biased["same_language_first"] == 1.0
    assert biased["monolingual_map"] == 1.0
    assert biased["multilingual_map"] < 1.0


def test_average_precision_by_hand():
    assert average_precision(np.array([1, 3])) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(np.array([2])) == 0.5
    with pytest.raises(ValueError):
        average_precision(np.array([]))
