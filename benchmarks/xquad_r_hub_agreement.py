"""How closely eval=xquad_r_hub's rule-based sentence split reproduces LAReQA's candidates.

Converts the LAReQA JSON files (../shared/data/xquad-r, or --path) into the hub's SQuAD-form
layout, loads them through ``xquad_r_from_hub`` and prints, per language, the official number of
candidate sentences, ours, and the share of official sentences reproduced exactly.

    python benchmarks/xquad_r_hub_agreement.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import LAREQA_LANGUAGES, lareqa, xquad_r_from_hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default=xquad_r_path())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as hub:
        for lang in LAREQA_LANGUAGES:
            doc = json.loads(Path(args.path, f"{lang}.json").read_text(encoding="utf-8"))
            rows = [{"id": q["id"], "context": p["context"], "question": q["question"],
                     "answers": {"text": [a["text"] for a in q["answers"]], "answer_start": [a["answer_start"] for a in q["answers"]]}}
                    for article in doc["data"] for p in article["paragraphs"] for q in p["qas"]]
            os.makedirs(os.path.join(hub, lang))
            pd.DataFrame(rows).to_parquet(os.path.join(hub, lang, "validation-00000-of-00001.parquet"))
        ours = xquad_r_from_hub("hub", repo=hub)
    ref = lareqa("lareqa", args.path, languages=list(LAREQA_LANGUAGES))
    print("| lang | LAReQA sentences | rule-based sentences | LAReQA sentences reproduced |\n|---|---|---|---|")
    for lang in LAREQA_LANGUAGES:
        a = {t.strip() for t, x in zip(ref.cand_text, ref.cand_lang) if x == lang}
        b = {t.strip() for t, x in zip(ours.cand_text, ours.cand_lang) if x == lang}
        print(f"| {lang} | {len(a)} | {len(b)} | {len(a & b) / len(a):.1%} |")


if __name__ == "__main__":
    main()
