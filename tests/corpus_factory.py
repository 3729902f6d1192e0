"""Synthetic parallel corpora for tests: random word-salad texts in the long-format schema.

Texts are random but *consistent across languages* (the same words, with a language tag), so a
trained model can learn something, and partial language coverage is controllable.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "river mountain city king queen war bridge ocean forest desert island music painter engine "
    "planet star moon temple empire language island harbour castle volcano glacier island law "
    "market coin paper silk spice grain horse ship train road tower church school library"
).split()


def make_rows(n_examples: int, languages: list[str], coverage: dict[str, float] | None = None,
              seed: int = 0, negatives: int = 0, topic_every: int = 5) -> list[dict]:
    """Rows for ``n_examples`` ids; language L has each example with probability coverage[L] (default 1)."""
    rng = random.Random(seed)
    rows = []
    for e in range(n_examples):
        q_words = rng.sample(WORDS, 4)
        p_words = q_words + rng.sample(WORDS, 6)
        for lang in languages:
            if coverage and rng.random() > coverage.get(lang, 1.0):
                continue
            row = {
                "id": f"ex{e:04d}",
                "lang": lang,
                "topic": f"t{e // topic_every}",
                "query": f"[{lang}] what about " + " ".join(q_words) + "?",
                "positive": f"[{lang}] " + " ".join(p_words) + ".",
            }
            if negatives:
                row["negatives"] = [f"[{lang}] " + " ".join(rng.sample(WORDS, 8)) + "." for _ in range(negatives)]
            rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
