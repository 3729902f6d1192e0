"""The demo corpus shipped in data/demo/ meets its specification (data/demo/README.md)."""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from pathlib import Path

import pytest

from mdr.formats.parallel import load_parallel_corpus

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def read(name: str) -> list[dict]:
    with open(DEMO / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def script(text: str) -> str:
    """The Unicode script name of the first letter that is not Latin, else 'LATIN'."""
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if not name.startswith("LATIN"):
                return name.split()[0]
    return "LATIN"


@pytest.fixture(scope="module")
def splits():
    return {name: read(f"{name}.jsonl") for name in ("train", "eval")}


def test_loads_through_the_project_loader(tmp_path):
    for name in ("train", "eval"):
        assert len(load_parallel_corpus(str(DEMO / f"{name}.jsonl"), cache_dir=str(tmp_path))) > 0


def test_size_languages_and_scripts(splits):
    rows = splits["train"] + splits["eval"]
    langs_of = defaultdict(set)
    for r in rows:
        langs_of[r["id"]].add(r["lang"])
    assert len(langs_of) >= 100, "at least 100 question -> passage items"
    assert all(len(v) >= 6 for v in langs_of.values()), "every item in at least 6 languages"
    non_latin = {script(r["query"] + r["positive"]) for r in rows} - {"LATIN"}
    assert {"CYRILLIC", "ARABIC", "CJK", "DEVANAGARI"} <= non_latin


def test_split_by_topic_with_own_passages(splits):
    topics = {name: {r["topic"] for r in rows} for name, rows in splits.items()}
    assert topics["train"] and topics["eval"] and not topics["train"] & topics["eval"]
    passages = {name: {r["positive"] for r in rows} for name, rows in splits.items()}
    assert not passages["train"] & passages["eval"]
    ids = {name: {r["id"] for r in rows} for name, rows in splits.items()}
    assert not ids["train"] & ids["eval"]


def test_passages_are_short_and_questions_are_questions(splits):
    for r in splits["train"] + splits["eval"]:
        assert r["query"].rstrip().endswith(("?", "？", "؟", "।")), r
        assert 30 <= len(r["positive"]) <= 600, r
