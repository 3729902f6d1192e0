"""Evaluation speed and agreement: our evaluator vs sentence-transformers' InformationRetrievalEvaluator.

Both evaluate the same model on XQuAD-R's multilingual pool (every question against the sentences
of all languages; the answer sentence in every language is relevant). Ours computes full-pool mAP
and also the monolingual, cross-lingual and X -> Y settings in the same timed run;
sentence-transformers computes only the one pool it is given, at MAP@--st-map-depth (100 by
default: at the full depth its per-query lists of (score, id) hits exceeded 24 GB of RAM on full
XQuAD-R). The agreement check recomputes that MAP@k from our exact ranks. With ``--all-settings``
sentence-transformers also gets every X -> Y pool (one evaluator each, as a user would have to
run it), so both produce the monolingual and cross-lingual figures too. Prints total and encode
seconds, the speed ratio, and the mAPs.

With ``--synthetic-pool N`` it instead evaluates a synthetic multilingual pool of N passages
(10 languages, one passage per question id and language, 1,000 queries with 10 relevant passages
each) through the same evaluator, all settings, and prints the peak resident memory. The encoder
there is MiniLM's tokenizer and 384-d embedding layer with no transformer layers, because six
layers over a million passages take hours on two CPU cores; the embeddings have MiniLM's size, so
the pool's memory is what it would be with MiniLM (``--layers 6`` runs the real depth).

    python benchmarks/eval_speed.py                        # full XQuAD-R, offline MiniLM, CPU
    python benchmarks/eval_speed.py --languages en de es   # a quicker subset
    python benchmarks/eval_speed.py --languages ar en zh --all-settings   # the same table from both
    python benchmarks/eval_speed.py --padding 2000          # batching by characters vs by tokens
    python benchmarks/eval_speed.py --synthetic-pool 1000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from mdr.config import minilm_path
from mdr.evaluation.benchmark import EvalOptions
from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa
from mdr.evaluation.metrics import full_pool_ranks
from mdr.evaluation.pools import EvalSet, encode_unique, score_embeddings
from mdr.model.encoder import Encoder


def pools(es, all_settings: bool) -> list[tuple[str, np.ndarray, np.ndarray, list[np.ndarray]]]:
    """(setting, query rows, candidate rows, relevant candidates as positions in those rows): the
    multilingual pool and, with ``all_settings``, one pool per X -> Y pair, as our evaluator forms them."""
    q_lang, c_lang = np.asarray(es.query_lang), np.asarray(es.cand_lang)
    out = [("multilingual", np.arange(len(q_lang)), np.arange(len(c_lang)), list(es.relevant))]
    for x in es.languages if all_settings else []:
        for y in es.languages:
            cols = np.flatnonzero(c_lang == y)
            local = np.full(len(c_lang), -1)
            local[cols] = np.arange(len(cols))
            rows = [i for i in np.flatnonzero(q_lang == x) if (local[es.relevant[i]] >= 0).any()]
            rel = [local[es.relevant[i]][local[es.relevant[i]] >= 0] for i in rows]
            out.append(("monolingual" if x == y else "cross-lingual", np.asarray(rows), cols, rel))
    return out


def ours(es, batch_size: int, depth: int, all_settings: bool) -> tuple[float, dict, dict]:
    """What ``EvalSet.evaluate`` does (timed), keeping the embeddings so that the MAP@depth
    sentence-transformers reports can be recomputed, untimed, from our exact ranks in every pool."""
    encoder = Encoder(minilm_path(), pooling="mean", query_max_length=128, passage_max_length=128)
    t0 = time.perf_counter()
    q = encode_unique(encoder, es.query_text, "query", batch_size)
    c = encode_unique(encoder, es.cand_text, "passage", batch_size)
    t_encode = time.perf_counter() - t0
    result = score_embeddings(es, q, c)
    seconds = time.perf_counter() - t0
    result["encode_seconds"] = t_encode
    at_depth: dict[str, list[float]] = {}
    for setting, rows, cols, rel in pools(es, all_settings):
        ranks = full_pool_ranks(q[rows], c[cols], rel)
        at_depth.setdefault(setting, []).append(float(np.mean([ap_at_k(r, depth) for r in ranks])))
    return seconds, result, at_depth


def ap_at_k(ranks: np.ndarray, k: int) -> float:
    """sentence-transformers' MAP@k: precision at each relevant hit within the top k, divided by
    min(k, number of relevant)."""
    r = np.sort(ranks)
    hits = np.arange(1, len(r) + 1)[r <= k]
    return float((hits / r[r <= k]).sum() / min(k, len(r)))


def sentence_transformers_ir(es, batch_size: int, depth: int, all_settings: bool) -> tuple[float, dict]:
    """One ``InformationRetrievalEvaluator`` per pool: it scores the single pool it is given."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(minilm_path(), device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = 128
    at_depth: dict[str, list[float]] = {}
    seconds = 0.0
    for setting, rows, cols, rel in pools(es, all_settings):
        evaluator = InformationRetrievalEvaluator(
            {f"q{i}": es.query_text[i] for i in rows},
            {f"c{j}": es.cand_text[cols[j]] for j in range(len(cols))},
            {f"q{i}": {f"c{j}" for j in r} for i, r in zip(rows, rel)},
            map_at_k=[depth], mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[1],
            batch_size=batch_size, write_csv=False, name=setting,
        )
        t0 = time.perf_counter()
        scores = evaluator(model)
        seconds += time.perf_counter() - t0
        at_depth.setdefault(setting, []).append(next(v for k, v in scores.items() if k.endswith(f"map@{depth}")))
    return seconds, at_depth


def padding(es, n: int, batch_size: int) -> None:
    """Positions computed (batch size x longest in batch) and encoding time for ``n`` random pool
    texts, batched by characters (as sentence-transformers does) versus by token count (ours)."""
    texts = [es.cand_text[i] for i in np.random.default_rng(0).choice(len(es.cand_text), n, replace=False)]
    encoder = Encoder(minilm_path(), pooling="mean", query_max_length=128, passage_max_length=128)
    tokens = encoder.tokenization.lengths(texts, "passage")
    print(f"{n} random pool texts, {tokens.sum():,} real tokens, batch {batch_size}")
    by_tokens = encoder.tokenization.lengths
    by_characters = lambda ts, kind: np.array([len(t) for t in ts])  # noqa: E731
    for name, sort_key in [("characters", by_characters), ("tokens", by_tokens)]:
        order = np.argsort(-sort_key(texts, "passage"), kind="stable")
        positions = sum(tokens[order[s : s + batch_size]].max() * len(order[s : s + batch_size])
                        for s in range(0, n, batch_size))
        encoder.tokenization.lengths = sort_key  # encode() orders its batches by this
        t0 = time.perf_counter()
        encoder.encode(texts, "passage", batch_size)
        print(f"batched by {name:10s}: {positions:,} positions computed, encoded in {time.perf_counter() - t0:.1f} s")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def synthetic_pool(n_passages: int, n_langs: int = 10, n_question_ids: int = 100, seed: int = 0) -> EvalSet:
    """``n_passages`` passages: id i has one passage in each of ``n_langs`` languages (words drawn
    from MiniLM's vocabulary, lognormal lengths around 25 words, like XQuAD-R's sentences); the
    first ``n_question_ids`` ids get a query in every language made of words of their passage."""
    from transformers import AutoTokenizer

    rng = np.random.default_rng(seed)
    vocab = np.array([w for w in AutoTokenizer.from_pretrained(minilm_path()).vocab if w.isalpha() and len(w) > 2])
    langs = [f"l{i}" for i in range(n_langs)]
    n_ids = n_passages // n_langs
    vocab = vocab.astype(object)  # fixed-width unicode arrays of 25M words would take GBs
    cand_text = []
    for lengths in np.array_split(np.clip(rng.lognormal(np.log(25), 0.5, size=n_ids * n_langs), 3, 120).astype(int), 100):
        words = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
        cand_text.extend(" ".join(ws) for ws in np.split(words, np.cumsum(lengths)[:-1]))
    cand_lang = [lang for _ in range(n_ids) for lang in langs]
    query_text, query_lang, query_id, relevant = [], [], [], []
    for i in range(n_question_ids):
        for j, lang in enumerate(langs):
            query_text.append(" ".join(cand_text[i * n_langs + j].split()[:8]))
            query_lang.append(lang), query_id.append(str(i))
            relevant.append(np.arange(i * n_langs, (i + 1) * n_langs))
    return EvalSet("synthetic", query_text, query_lang, query_id, cand_text, cand_lang, relevant)


def run_synthetic_pool(n_passages: int, layers: int, batch_size: int) -> None:
    t0 = time.perf_counter()
    es = synthetic_pool(n_passages)
    print(f"synthetic pool: {len(es.cand_text):,} passages, {len(es.query_text):,} queries, "
          f"{len(es.languages)} languages; built in {time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
    torch.manual_seed(0)  # the random layers: the same pool and the same figures on every run
    encoder = Encoder(minilm_path(), pooling="mean", passage_max_length=128,
                      random_init=layers < 6, config_overrides={"num_hidden_layers": layers})
    print(f"encoder: MiniLM tokenizer, {layers} transformer layers, {encoder.dim}-d embeddings")
    r = es.evaluate(encoder, EvalOptions(batch_size=batch_size))
    print(f"evaluated all settings in {r['total_seconds']:.1f} s (encode {r['encode_seconds']:.1f} s, "
          f"score {r['total_seconds'] - r['encode_seconds']:.1f} s); multilingual mAP {r['multilingual_map']:.4f}")
    print(f"peak RSS {peak_rss_gb():.2f} GB (pool embeddings alone: "
          f"{len(es.cand_text) * encoder.dim * 4 / 2**30:.2f} GB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=xquad_r_path())
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--st-map-depth", type=int, default=100,
                        help="MAP@k depth for sentence-transformers (at the full pool depth, 13,014, its per-query "
                             "lists of hits exceeded 24 GB RAM on full XQuAD-R)")
    parser.add_argument("--all-settings", action="store_true",
                        help="give sentence-transformers every pool our run scores (multilingual + each X -> Y), "
                             "one evaluator each, so both produce the same table")
    parser.add_argument("--padding", type=int, default=None, metavar="N",
                        help="instead, compare batching N random XQuAD-R pool texts by characters and by tokens")
    parser.add_argument("--synthetic-pool", type=int, default=None, metavar="N",
                        help="instead of XQuAD-R, evaluate a synthetic pool of N passages and print peak RSS")
    parser.add_argument("--layers", type=int, default=0, help="transformer layers for --synthetic-pool (MiniLM has 6)")
    args = parser.parse_args()
    if args.synthetic_pool:
        return run_synthetic_pool(args.synthetic_pool, args.layers, args.batch_size)

    es = lareqa("xquad_r", args.path, languages=args.languages)
    if args.padding:
        return padding(es, args.padding, args.batch_size)
    print(f"XQuAD-R: {len(es.query_text)} queries, {len(es.cand_text)} candidates, languages {es.languages}; "
          f"torch threads {torch.get_num_threads()}, device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    t_ours, r, ours_at_depth = ours(es, args.batch_size, args.st_map_depth, args.all_settings)
    t_st, st_at_depth = sentence_transformers_ir(es, args.batch_size, args.st_map_depth, args.all_settings)
    k = args.st_map_depth
    print(f"ours:                  total {t_ours:7.1f} s (encode {r['encode_seconds']:.1f} s, all settings scored in "
          f"{t_ours - r['encode_seconds']:.1f} s); full-pool multilingual mAP {r['multilingual_map']:.6f}")
    pools_st = sum(len(v) for v in st_at_depth.values())
    print(f"sentence-transformers: total {t_st:7.1f} s ({pools_st} pool{'s' * (pools_st > 1)}, "
          f"{'every setting' if args.all_settings else 'the multilingual pool only'})")
    for setting in ours_at_depth:
        a, b = np.mean(ours_at_depth[setting]), np.mean(st_at_depth[setting])
        print(f"  {setting:14s} mAP@{k}: ours {a:.6f}, sentence-transformers {b:.6f}")
    diff = max(abs(a - b) for s in ours_at_depth for a, b in zip(ours_at_depth[s], st_at_depth[s]))
    print(f"speed-up: {t_st / t_ours:.2f}x; largest mAP@{k} difference over the pools {diff:.2e}")


if __name__ == "__main__":
    main()
