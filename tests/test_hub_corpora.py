"""Training corpora from the hub layouts (mMARCO, MIRACL train) and mixing corpora with weights,
on small local fixtures in the exact hub layouts."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from src.data.corpus import ParallelIndex, load_parallel_corpus
from src.data.miracl_train import build_miracl_train
from src.data.mmarco import build_mmarco, collection_file, queries_file
from src.errors import ConfigError, DataError
from src.samplers import MixtureSampler, XXSampler, XYSampler
from tests.corpus_factory import WORDS
from tests.test_miracl import write_miracl
from tests.test_train import ROOT, base_overrides, compose_train, corpus  # noqa: F401  (fixture)

LANGS = ["de", "en", "ru"]


def write_mmarco(root, n_queries=30, n_passages=120, seed=0):
    """unicamp-dl/mmarco layout; query 7 has no German translation (as happens in mMARCO)."""
    rng = random.Random(seed)
    passages = {str(1000 + i): " ".join(rng.sample(WORDS, 8)) for i in range(n_passages)}
    queries = {str(i): " ".join(rng.sample(WORDS, 4)) + "?" for i in range(n_queries)}
    (root / "data").mkdir(parents=True)
    with open(root / "data" / "triples.train.ids.small.tsv", "w") as fh:
        for q in queries:
            pos = str(1000 + int(q))
            for _ in range(3):
                fh.write(f"{q}\t{pos}\t{rng.choice(list(passages))}\n")
    for lang in LANGS:
        for rel, table in [(queries_file(lang), queries), (collection_file(lang), passages)]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(root / rel, "w") as fh:
                fh.writelines(f"{k}\t[{lang}] {v}\n" for k, v in table.items() if not (lang == "de" and k == "7" and rel.endswith("queries.train.tsv")))
    return root


def test_mmarco_builds_parallel_examples_with_hard_negatives_and_caches(tmp_path):
    path = write_mmarco(tmp_path / "mmarco")
    cache = str(tmp_path / "built")
    [out] = build_mmarco(LANGS, path=str(path), max_queries=20, num_negatives=2, cache_dir=cache)
    ds = load_parallel_corpus(out, cache_dir=str(tmp_path / "arrow"))
    index = ParallelIndex.from_dataset(ds)
    assert index.counts == {"de": 19, "en": 20, "ru": 20}  # query 7 lacks German
    assert int(index.pair_counts()[index.lang_id("en"), index.lang_id("ru")]) == 20
    for row in ds:
        assert row["query"].startswith(f"[{row['lang']}]") and row["positive"].startswith(f"[{row['lang']}]")
        assert 1 <= len(row["negatives"]) <= 2 and all(n.startswith(f"[{row['lang']}]") for n in row["negatives"])
    en0 = [r for r in ds if r["id"] == "0" and r["lang"] == "en"][0]
    assert en0["positive"].endswith(open(path / collection_file("en")).readline().split("\t")[1].split("] ")[1].strip())

    mtime = os.path.getmtime(out)
    t0 = time.perf_counter()
    assert build_mmarco(LANGS, path=str(path), max_queries=20, num_negatives=2, cache_dir=cache) == [out]
    assert os.path.getmtime(out) == mtime and time.perf_counter() - t0 < 5  # reused, not rebuilt
    assert build_mmarco(LANGS, path=str(path), max_queries=10, num_negatives=2, cache_dir=cache) != [out]


def test_mmarco_bad_inputs(tmp_path, monkeypatch):
    path = write_mmarco(tmp_path / "mmarco")
    with pytest.raises(DataError, match=r"mMARCO has no language\(s\) \['xx'\]"):
        build_mmarco(["en", "xx"], path=str(path))
    with pytest.raises(DataError, match=r"mMARCO file missing: .*french_queries\.train\.tsv"):
        build_mmarco(["fr"], path=str(path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"could not get unicamp-dl/mmarco/data/triples.*set data\.files\.path"):
        build_mmarco(["en"])


def test_miracl_train_is_monolingual_and_only_xx_can_sample_it(tmp_path):
    topics, corpus_path = write_miracl(tmp_path, langs=("de", "sw"), split="train")
    [out] = build_miracl_train(["de", "sw"], path=str(topics), corpus_path=str(corpus_path), cache_dir=str(tmp_path / "built"))
    ds = load_parallel_corpus(out, cache_dir=str(tmp_path / "arrow"))
    index = ParallelIndex.from_dataset(ds)
    assert index.counts == {"de": 12, "sw": 12} and index.available.sum(1).max() == 1
    assert all(len(r["negatives"]) == 1 for r in ds)  # the judged non-relevant passage
    XXSampler(index, batch_size=4)
    with pytest.raises(ConfigError, match="share an example id"):
        XYSampler(index, batch_size=4)


def two_source_index():
    def index(n, langs, offset, parallel=True):
        rows = np.full((n, len(langs)), -1)
        for j in range(len(langs)):
            keep = np.arange(n) if parallel else np.arange(j, n, len(langs))
            rows[keep, j] = offset + np.arange(len(keep)) + j * n
        return ParallelIndex(langs, np.array([f"e{i}" for i in range(n)]), rows)
    return index(40, ["de", "en"], 0), index(30, ["ar", "fi"], 1000, parallel=False)


def test_mixture_draws_sources_by_weight_and_never_mixes_them():
    a, b = two_source_index()
    mix = MixtureSampler({"a": XYSampler(a, 4, seed=3), "b": XXSampler(b, 4, seed=3)}, {"a": 3.0, "b": 1.0})
    kinds = []
    for step in range(2000):
        rows = np.array(mix.batch_at(0, step).pairs(None, 0, 4))
        in_a = rows < 1000
        assert in_a.all() or (~in_a).all()
        kinds.append(bool(in_a.all()))
    assert np.mean(kinds) == pytest.approx(0.75, abs=0.03)  # 2000 draws: sd 0.01
    with pytest.raises(ConfigError, match="weights must be > 0"):
        MixtureSampler({"a": XXSampler(a, 4)}, {"a": 0.0})


def test_training_on_a_mixture_of_hub_layout_corpora(tmp_path, monkeypatch):
    """data=mixture end to end: mMARCO (hybrid batches) and MIRACL train (X-X batches)."""
    from src.pipeline import train

    mm = write_mmarco(tmp_path / "mmarco")
    topics, corpus_path = write_miracl(tmp_path / "miracl", langs=("de", "sw"), split="train")
    eval_file = tmp_path / "eval.jsonl"
    from tests.corpus_factory import make_rows, write_jsonl

    write_jsonl(eval_file, make_rows(8, ["de", "en"], seed=1))
    monkeypatch.chdir(tmp_path)
    overrides = [o for o in base_overrides({"train": "unused", "cache": tmp_path / "arrow", "eval": eval_file}) if not o.startswith("data.files")]
    common = overrides + [
        "data=mixture", "sampler=hybrid", "trainer.max_steps=6", "data.batch_size=4", "data.num_workers=0",
        f"data.sources.mmarco.files.path={mm}", "data.sources.mmarco.files.languages=[de,en,ru]",
        f"data.sources.mmarco.files.cache_dir={tmp_path / 'built'}",
        f"data.sources.miracl.files.path={topics}", f"data.sources.miracl.files.corpus_path={corpus_path}",
        "data.sources.miracl.files.languages=[de,sw]", f"data.sources.miracl.files.cache_dir={tmp_path / 'built'}",
    ]
    results = train(compose_train(common))
    assert results["demo"]["multilingual_map"] > 0
    # without its own X-X sampler the monolingual source cannot give hybrid batches: one clear error
    with pytest.raises(ConfigError, match=r"data\.sources\.miracl: sampler needs X-Y pairs"):
        train(compose_train(common + ["data.sources.miracl.sampler=null"]))
