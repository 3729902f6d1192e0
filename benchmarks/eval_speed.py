"""Evaluation speed and agreement: our evaluator vs sentence-transformers' InformationRetrievalEvaluator.

Both evaluate the same model on XQuAD-R's multilingual pool (every question against the sentences
of all languages; the answer sentence in every language is relevant), full-pool mAP. Ours also
computes the monolingual, cross-lingual and X -> Y settings in the same run; sentence-transformers
computes only the one pool it is given. Prints encode, scoring and total seconds for each, the
speed ratio, and both mAPs.

With ``--synthetic-pool N`` it instead evaluates a synthetic multilingual pool of N passages
(10 languages, one passage per question id and language, 1,000 queries with 10 relevant passages
each) through the same evaluator, all settings, and prints the peak resident memory. The encoder
there is MiniLM's tokenizer and 384-d embedding layer with no transformer layers, because six
layers over a million passages take hours on two CPU cores; the embeddings have MiniLM's size, so
the pool's memory is what it would be with MiniLM (``--layers 6`` runs the real depth).

    python benchmarks/eval_speed.py                        # full XQuAD-R, offline MiniLM, CPU
    python benchmarks/eval_speed.py --languages en de es   # a quicker subset
    python benchmarks/eval_speed.py --synthetic-pool 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.encoder import Encoder, minilm_path  # noqa: E402
from src.evaluation.evalsets import EvalSet, lareqa  # noqa: E402
from src.evaluation.evaluator import RetrievalEvaluator  # noqa: E402

DEFAULT_XQUAD_R = Path(__file__).resolve().parents[2] / "shared" / "data" / "xquad-r"


def ours(es, batch_size: int) -> tuple[float, dict]:
    encoder = Encoder(minilm_path(), pooling="mean", passage_max_length=128)
    t0 = time.perf_counter()
    result = RetrievalEvaluator({es.name: es}, batch_size=batch_size).evaluate(encoder, es)
    return time.perf_counter() - t0, result


def sentence_transformers_ir(es, batch_size: int) -> tuple[float, float]:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(minilm_path(), device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = 128
    queries = {f"q{i}": t for i, t in enumerate(es.query_text)}
    corpus = {f"c{i}": t for i, t in enumerate(es.cand_text)}
    relevant = {f"q{i}": {f"c{c}" for c in rel} for i, rel in enumerate(es.relevant)}
    evaluator = InformationRetrievalEvaluator(
        queries, corpus, relevant, map_at_k=[len(corpus)], mrr_at_k=[10], ndcg_at_k=[10],
        accuracy_at_k=[1], precision_recall_at_k=[1], batch_size=batch_size, write_csv=False, name="xquad_r",
    )
    t0 = time.perf_counter()
    scores = evaluator(model)
    seconds = time.perf_counter() - t0
    key = next(k for k in scores if k.endswith(f"map@{len(corpus)}"))
    return seconds, scores[key]


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
    lengths = np.clip(rng.lognormal(np.log(25), 0.5, size=n_ids * n_langs), 3, 120).astype(int)
    words = vocab[rng.integers(0, len(vocab), size=int(lengths.sum()))]
    cand_text = [" ".join(ws) for ws in np.split(words, np.cumsum(lengths)[:-1])]
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
    encoder = Encoder(minilm_path(), pooling="mean", passage_max_length=128,
                      random_init=layers < 6, config_overrides={"num_hidden_layers": layers})
    print(f"encoder: MiniLM tokenizer, {layers} transformer layers, {encoder.dim}-d embeddings")
    r = RetrievalEvaluator({es.name: es}, batch_size=batch_size).evaluate(encoder, es)
    print(f"evaluated all settings in {r['total_seconds']:.1f} s (encode {r['encode_seconds']:.1f} s, "
          f"score {r['total_seconds'] - r['encode_seconds']:.1f} s); multilingual mAP {r['multilingual_map']:.4f}")
    print(f"peak RSS {peak_rss_gb():.2f} GB (pool embeddings alone: "
          f"{len(es.cand_text) * encoder.dim * 4 / 2**30:.2f} GB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=os.environ.get("XQUAD_R_DIR", str(DEFAULT_XQUAD_R)))
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--synthetic-pool", type=int, default=None, metavar="N",
                        help="instead of XQuAD-R, evaluate a synthetic pool of N passages and print peak RSS")
    parser.add_argument("--layers", type=int, default=0, help="transformer layers for --synthetic-pool (MiniLM has 6)")
    args = parser.parse_args()
    if args.synthetic_pool:
        return run_synthetic_pool(args.synthetic_pool, args.layers, args.batch_size)

    es = lareqa("xquad_r", args.path, languages=args.languages)
    print(f"XQuAD-R: {len(es.query_text)} queries, {len(es.cand_text)} candidates, languages {es.languages}; "
          f"torch threads {torch.get_num_threads()}, device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    t_ours, r = ours(es, args.batch_size)
    print(f"ours:                  total {t_ours:7.1f} s (encode {r['encode_seconds']:.1f} s, "
          f"all settings scored in {r['total_seconds'] - r['encode_seconds']:.1f} s)  multilingual mAP {r['multilingual_map']:.6f}")
    t_st, map_st = sentence_transformers_ir(es, args.batch_size)
    print(f"sentence-transformers: total {t_st:7.1f} s (multilingual pool only)          multilingual mAP {map_st:.6f}")
    print(f"speed-up: {t_st / t_ours:.2f}x; mAP difference {abs(r['multilingual_map'] - map_st):.2e}")


if __name__ == "__main__":
    main()
