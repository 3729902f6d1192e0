"""Turn XQuAD-R (or MLQA-R) into parallel training data with a held-out split by question id.

Each question in each language becomes one row of the parallel schema: the question as query, the
sentence holding its answer (in the same language) as positive; the translations of a question
share its id. A share of the ids (all their languages) is held out for evaluation, so no
translation of a held-out question is trained on; a sentence answering several questions is kept
for the first (no duplicate passages among the in-batch negatives or in the pool). Paragraphs are shared between questions, so the
held-out answers' paragraphs may have been seen through other questions: a split for comparing
training designs with each other, not for results comparable with papers.

    python benchmarks/lareqa_split.py --languages de en es tr vi --held-out 0.2 --out /tmp/xquad-split
    python train.py -m model=minilm data=parallel_files data.files=/tmp/xquad-split/train.jsonl \\
        eval.sets.demo.files=/tmp/xquad-split/heldout.jsonl sampler=xy,hybrid sampler.xy_pairs=per_example,per_batch

(docs/reproducing.md, "The X-Y batch", has the comparison made this way, with its exact command.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=xquad_r_path())
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    es = lareqa("split", args.path, args.languages)
    ids = sorted(set(es.query_id), key=lambda i: hashlib.sha1(f"split:{i}".encode()).digest())
    held = set(ids[: round(args.held_out * len(ids))])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts, used = {"train": 0, "heldout": 0}, set()
    with open(out / "train.jsonl", "w", encoding="utf-8") as train, open(out / "heldout.jsonl", "w", encoding="utf-8") as heldout:
        for text, lang, qid, relevant in zip(es.query_text, es.query_lang, es.query_id, es.relevant):
            answers = [int(c) for c in relevant if es.cand_lang[c] == lang]
            if not answers or (lang, answers[0]) in used:  # one question per answer sentence: no duplicate passages
                continue
            used.add((lang, answers[0]))
            part = "heldout" if qid in held else "train"
            row = {"id": qid, "lang": lang, "query": text, "positive": es.cand_text[answers[0]]}
            (heldout if part == "heldout" else train).write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[part] += 1
    print(f"{len(ids) - len(held)} training and {len(held)} held-out question ids; rows: {counts} -> {out}")


if __name__ == "__main__":
    main()
