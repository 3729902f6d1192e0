"""Parallel corpus loading: formats, the (example x language) index, and every kind of bad file."""

from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest

from mdr.data.index import ParallelIndex
from mdr.errors import DataError
from mdr.formats.parallel import load_parallel_corpus
from tests.helpers import make_rows, write_jsonl

LANGS = ["ar", "de", "en", "zh"]


@pytest.fixture
def rows():
    rows = make_rows(30, LANGS, coverage={"ar": 0.6, "zh": 0.8}, seed=3, negatives=2)
    for i, r in enumerate(rows):  # the negatives' example ids (mine.py writes them), on every other row
        if i % 2:
            r["negative_ids"] = [f"ex{(i + 7) % 30:04d}", f"ex{(i + 11) % 30:04d}"]
    return rows


def write(tmp_path, name: str, rows: list[dict]):
    path = tmp_path / name
    cols = ["id", "lang", "query", "positive"]
    if name.endswith(".jsonl"):
        return write_jsonl(path, rows)
    if name.endswith(".parquet"):
        pd.DataFrame([{**{c: r[c] for c in cols}, "negatives": r.get("negatives", []), "negative_ids": r.get("negative_ids")}
                      for r in rows]).to_parquet(path)
        return path
    with open(path, "w", encoding="utf-8") as fh:  # TSV: hard negatives in negative_* columns
        fh.write("\t".join(cols + ["negative_1", "negative_2"]) + "\n")
        for r in rows:
            fh.write("\t".join([r[c] for c in cols] + list(r.get("negatives", ["", ""]))) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "tsv"])
def test_every_format_round_trips(tmp_path, rows, fmt):
    ds = load_parallel_corpus(str(write(tmp_path, f"c.{fmt}", rows)), cache_dir=str(tmp_path / "cache"))
    got = ds.to_list()
    want = [{**{k: r[k] for k in ("id", "lang", "query", "positive", "negatives")},
             "negative_ids": r.get("negative_ids") if fmt != "tsv" else None} for r in rows]  # TSV has no negative_ids
    assert got == want
    assert fmt == "tsv" or sum(r["negative_ids"] is not None for r in got) == len(rows) // 2


def test_mixed_formats_and_globs(tmp_path, rows):
    write(tmp_path, "a.jsonl", rows[:40])
    write(tmp_path, "b.parquet", rows[40:])
    ds = load_parallel_corpus(str(tmp_path / "*.*"), cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(rows)


def test_index_counts_match_the_rows(tmp_path, rows):
    ds = load_parallel_corpus(str(write(tmp_path, "c.jsonl", rows)), cache_dir=str(tmp_path / "cache"))
    index = ParallelIndex.from_dataset(ds)
    assert index.languages == LANGS
    by_lang = {x: {r["id"] for r in rows if r["lang"] == x} for x in LANGS}
    assert dict(zip(index.languages, index.available.sum(0).tolist())) == {x: len(ids) for x, ids in by_lang.items()}
    pairs = index.pair_counts()
    for i, x in enumerate(LANGS):
        for j, y in enumerate(LANGS):
            assert pairs[i, j] == len(by_lang[x] & by_lang[y])
    for e, ex_id in enumerate(index.example_ids):  # rows[e, l] points at the right row
        for li, lang in enumerate(LANGS):
            r = index.rows[e, li]
            assert (r >= 0) == (ex_id in by_lang[lang])
            if r >= 0:
                assert (ds[int(r)]["id"], ds[int(r)]["lang"]) == (ex_id, lang)
                assert index.query_chars[e, li] == len(ds[int(r)]["query"])
                assert index.passage_chars[e, li] == len(ds[int(r)]["positive"])
    view = ds.select(range(len(ds) - 1, -1, -2))  # a reordered view follows its own row numbers
    vindex = ParallelIndex.from_dataset(view)
    for e, ex_id in enumerate(vindex.example_ids):
        for li, lang in enumerate(vindex.languages):
            if vindex.rows[e, li] >= 0:
                row = view[int(vindex.rows[e, li])]
                assert (row["id"], row["lang"]) == (ex_id, lang)
                assert (vindex.query_chars[e, li], vindex.passage_chars[e, li]) == (len(row["query"]), len(row["positive"]))


def test_language_filter(tmp_path, rows):
    ds = load_parallel_corpus(str(write(tmp_path, "c.jsonl", rows)), languages=["de", "zh"],
                              cache_dir=str(tmp_path / "cache"))
    assert set(ds.unique("lang")) == {"de", "zh"}
    assert len(ds) == sum(r["lang"] in ("de", "zh") for r in rows)
    with pytest.raises(DataError, match=r"language\(s\) \['fr'\] requested but absent"):
        load_parallel_corpus(str(tmp_path / "c.jsonl"), languages=["fr"], cache_dir=str(tmp_path / "cache"))


def test_an_edited_file_is_read_again_not_served_from_cache(tmp_path, rows):
    path = write(tmp_path, "c.jsonl", rows)
    cache = str(tmp_path / "cache")
    assert len(load_parallel_corpus(str(path), cache_dir=cache)) == len(rows)
    time.sleep(0.01)
    write(tmp_path, "c.jsonl", rows[:10])
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert len(load_parallel_corpus(str(path), cache_dir=cache)) == 10


GOOD = {"id": "1", "lang": "en", "query": "What is X?", "positive": "X is Y."}


def jsonl_lines(tmp_path, *lines: str):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([json.dumps(GOOD)] + list(lines)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "2", "lang": "en", "query": "q"', r"bad\.jsonl:2: not valid JSON"),
        ('["a", "b"]', r"bad\.jsonl:2: expected a JSON object per line, got list"),
        (json.dumps({"id": "2", "lang": "en", "query": "q"}), r"bad\.jsonl:2: missing field 'positive'"),
        (json.dumps({**GOOD, "id": "2", "query": "   "}), r"bad\.jsonl:2: empty 'query' \(id='2', lang='en'\)"),
        (json.dumps({**GOOD, "id": "2", "positive": ""}), r"bad\.jsonl:2: empty 'positive'"),
        (json.dumps({**GOOD, "id": "2", "query": 7}), r"bad\.jsonl:2: field 'query' must be a string, got int"),
        (json.dumps({**GOOD, "id": "2", "negatives": "one"}), r"bad\.jsonl:2: 'negatives' must be a list"),
        (json.dumps({**GOOD, "id": "2", "negatives": ["a", "b"], "negative_ids": ["7"]}),
         r"bad\.jsonl:2: 'negative_ids' has 1 entries but 'negatives' has 2"),
        (json.dumps({**GOOD, "id": "2", "negatives": ["a"], "negative_ids": "7"}),
         r"bad\.jsonl:2: 'negative_ids' must be a list"),
        (json.dumps({**GOOD, "id": "2", "negatives": ["a"], "negative_ids": [" "]}),
         r"bad\.jsonl:2: 'negative_ids' must be a list"),
        (json.dumps(GOOD), r"duplicate id '1' in language 'en'"),
    ],
)
def test_bad_jsonl_rows(tmp_path, line, message):
    with pytest.raises(DataError, match=message):
        load_parallel_corpus(str(jsonl_lines(tmp_path, line)), cache_dir=str(tmp_path / "cache"))


def test_the_same_id_in_two_languages_is_fine(tmp_path):
    path = jsonl_lines(tmp_path, json.dumps({**GOOD, "lang": "de"}))
    assert len(load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))) == 2


def test_bad_tsv(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("id\tlang\tquery\tpositive\n1\ten\tWhat?\tThat.\n2\ten\tonly three\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:3: 3 tab-separated fields, header has 4"):
        load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))
    path.write_text("id\tlanguage\tquery\tpositive\n1\ten\tWhat?\tThat.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:1: header lacks column\(s\) \['lang'\]"):
        load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))


def test_bad_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame([{"id": "1", "lang": "en", "question": "q", "positive": "p"}]).to_parquet(path)
    with pytest.raises(DataError, match=r"bad\.parquet: missing column\(s\) \['query'\]"):
        load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file"):
        load_parallel_corpus(str(path), cache_dir=str(tmp_path / "cache"))


def test_bad_paths_and_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: .*missing\.jsonl"):
        load_parallel_corpus(str(tmp_path / "missing.jsonl"))
    (tmp_path / "data.csv").write_text("id,lang\n")
    with pytest.raises(DataError, match=r"data\.csv: unknown file type; expected one of"):
        load_parallel_corpus(str(tmp_path / "data.csv"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"no rows in .*empty\.jsonl"):
        load_parallel_corpus(str(tmp_path / "empty.jsonl"), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match=r"empty\.tsv: empty TSV file"):
        load_parallel_corpus(str(tmp_path / "empty.tsv"), cache_dir=str(tmp_path / "cache"))
