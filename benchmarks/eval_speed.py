"""Evaluation speed and agreement: our evaluator vs sentence-transformers' InformationRetrievalEvaluator.

Both evaluate the same model on XQuAD-R's multilingual pool (every question against the sentences
of all languages; the answer sentence in every language is relevant), full-pool mAP. Ours also
computes the monolingual, cross-lingual and X -> Y settings in the same run; sentence-transformers
computes only the one pool it is given. Prints encode, scoring and total seconds for each, the
speed ratio, and both mAPs.

    python benchmarks/eval_speed.py                        # full XQuAD-R, offline MiniLM, CPU
    python benchmarks/eval_speed.py --languages en de es   # a quicker subset
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.encoder import Encoder, minilm_path  # noqa: E402
from src.evaluation.evalsets import lareqa  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=os.environ.get("XQUAD_R_DIR", str(DEFAULT_XQUAD_R)))
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

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
