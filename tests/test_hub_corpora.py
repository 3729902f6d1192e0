"""Training corpora from the hub layouts (mMARCO, MIRACL train) and mixing corpora with weights,
on small local fixtures in the exact hub layouts."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from mdr.data.index import ParallelIndex
from mdr.data.samplers import MixtureSampler, XXSampler, XYSampler
from mdr.data.sources.miracl_train import build_miracl_train
from mdr.data.sources.mmarco import build_mmarco, collection_file
from mdr.errors import ConfigError, DataError
from mdr.formats.parallel import load_parallel_corpus
from mdr.formats.results import read_json, train_results_path
from mdr.tasks import train
from tests.helpers import (
    MMARCO_LANGS,
    base_overrides,
    compose_train,
    last_logged,
    make_rows,
    write_jsonl,
    write_miracl,
    write_mmarco,
)

LANGS = MMARCO_LANGS


def test_mmarco_builds_parallel_examples_with_hard_negatives_and_caches(tmp_path):
    path = write_mmarco(tmp_path / "mmarco")
    cache = str(tmp_path / "built")
    [out] = build_mmarco(LANGS, path=str(path), max_queries=20, triples_per_query=2, cache_dir=cache)
    ds = load_parallel_corpus(out, cache_dir=str(tmp_path / "arrow"))
    index = ParallelIndex.from_dataset(ds)
    assert dict(zip(index.languages, index.available.sum(0).tolist())) == {"de": 19, "en": 20, "ru": 20}  # query 7 lacks German
    assert int(index.pair_counts()[index.lang_id("en"), index.lang_id("ru")]) == 20
    for row in ds:
        assert row["query"].startswith(f"[{row['lang']}]") and row["positive"].startswith(f"[{row['lang']}]")
        assert 1 <= len(row["negatives"]) <= 2 and all(n.startswith(f"[{row['lang']}]") for n in row["negatives"])
    en0 = [r for r in ds if r["id"] == "0" and r["lang"] == "en"][0]
    assert en0["positive"].endswith(open(path / collection_file("en")).readline().split("\t")[1].split("] ")[1].strip())

    mtime = os.path.getmtime(out)
    t0 = time.perf_counter()
    assert build_mmarco(LANGS, path=str(path), max_queries=20, triples_per_query=2, cache_dir=cache) == [out]
    assert os.path.getmtime(out) == mtime and time.perf_counter() - t0 < 5  # reused, not rebuilt
    assert build_mmarco(LANGS, path=str(path), max_queries=10, triples_per_query=2, cache_dir=cache) != [out]


def fixture_triples(path) -> dict[str, list[str]]:
    """qid -> negative pids of its triples, in file order (read here independently of the builder)."""
    out: dict[str, list[str]] = {}
    for line in open(path / "data" / "triples.train.ids.small.tsv"):
        qid, _, neg = line.split()
        out.setdefault(qid, []).append(neg)
    return out


@pytest.mark.parametrize("triples_per_query", [1, 2, None])  # the first, a number, all (the fixture has 3 a query)
def test_mmarco_keeps_the_first_n_triples_of_each_query_in_one_example(tmp_path, triples_per_query):
    path = write_mmarco(tmp_path / "mmarco")
    [out] = build_mmarco(LANGS, path=str(path), max_queries=None, triples_per_query=triples_per_query,
                         cache_dir=str(tmp_path / "built"))
    ds = load_parallel_corpus(out, cache_dir=str(tmp_path / "arrow"))
    passages = dict(line.rstrip("\n").split("\t", 1) for line in open(path / collection_file("en")))
    triples = fixture_triples(path)
    assert all(len(negs) == 3 for negs in triples.values())
    expected = {qid: list(dict.fromkeys(negs[:triples_per_query])) for qid, negs in triples.items()}  # distinct, in order
    en = {r["id"]: r for r in ds if r["lang"] == "en"}
    assert set(en) == set(triples)  # one example per query, whatever the number of triples
    positive_of = {str(1000 + int(qid)): qid for qid in triples}  # the fixture's positives: pid 1000 + qid
    for qid, negs in expected.items():
        assert en[qid]["negatives"] == [passages[pid] for pid in negs]
        # another query's positive carries that query's id (its translations are masked); others their pid
        assert en[qid]["negative_ids"] == [positive_of.get(pid, f"pid:{pid}") for pid in negs]
    assert any(i in triples for r in en.values() for i in r["negative_ids"])  # the fixture has such negatives
    index = ParallelIndex.from_dataset(ds)
    kept = sum(len(negs) for negs in expected.values())
    assert index.negatives_per_language() == {"de": kept - len(expected["7"]), "en": kept, "ru": kept}  # query 7 lacks German
    with pytest.raises(ConfigError, match=r"data\.files\.triples_per_query must be"):
        build_mmarco(LANGS, path=str(path), triples_per_query=0)


def test_drawn_hard_negatives_differ_per_use_and_repeat_per_key(tmp_path):
    """data.hard_negatives=drawn: each use of an example takes other negatives, chosen by the batch's
    (seed, epoch, step, rank), so the same key draws the same; "first" always takes the first k."""
    from mdr.data.batch_sampler import DrawnBatch
    from mdr.data.loader import ParallelPairs

    rows = make_rows(6, ["en"], seed=2, negatives=5)
    ds = load_parallel_corpus(write_jsonl(tmp_path / "n.jsonl", rows), cache_dir=str(tmp_path / "arrow"))

    def fetch(mode, key, k=2):
        batch = DrawnBatch([(0, 0), (3, 3)], "xx")
        batch.draw_key = key
        return ParallelPairs(ds, k, mode).__getitems__(batch)["passage"][2:]

    assert all(fetch("first", (0, 0, step, 0)) == ds[0]["negatives"][:2] + ds[3]["negatives"][:2] for step in range(5))
    drawn = [fetch("drawn", (0, 0, step, 0)) for step in range(40)]
    assert fetch("drawn", (0, 0, 7, 0)) == drawn[7]  # deterministic per key
    used = {n for batch in drawn for n in batch[:2]}
    assert used == set(ds[0]["negatives"])  # over 40 uses every negative of example 0 comes up
    assert all(len(set(batch[:2])) == 2 and set(batch[:2]) <= set(ds[0]["negatives"]) for batch in drawn)  # k distinct, its own
    assert fetch("drawn", (0, 0, 1, 0), k=7)[:7] == [fetch("drawn", (0, 0, 1, 0), k=5)[i % 5] for i in range(7)]  # cycled
    with pytest.raises(ConfigError, match="data.hard_negatives must be one of"):
        ParallelPairs(ds, 1, "random")


def test_the_sampler_keys_each_batch_by_seed_epoch_step_and_rank_also_after_a_resume():
    a, _ = two_source_index()
    sampler = XXSampler(a, 4, seed=3, rank=1, world_size=2, steps_per_epoch=6)
    sampler.set_epoch(2)
    assert [b.draw_key for b in sampler] == [(3, 2, step, 1) for step in range(6)]
    resumed = XXSampler(a, 4, seed=3, rank=1, world_size=2, steps_per_epoch=6)
    resumed.load_state_dict(sampler.state_dict(consumed=4))
    assert [b.draw_key for b in resumed] == [(3, 2, 4, 1), (3, 2, 5, 1)]


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
    assert index.languages == ["de", "sw"] and index.available.sum(0).tolist() == [12, 12] and index.available.sum(1).max() == 1
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
        chars = np.where(rows >= 0, np.random.default_rng(offset).integers(10, 300, rows.shape), 0)
        return ParallelIndex(langs, np.array([f"e{i}" for i in range(n)]), rows, query_chars=chars // 4, passage_chars=chars)
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


def test_mixture_labels_batches_keeps_its_epoch_and_groups_lengths_within_a_source():
    """The run's steps_per_epoch and length_groups apply to the mixture: an epoch of 6 steps, drawn
    in groups of 3 consecutive steps from one source, each batch labelled with its kind and source."""
    a, b = two_source_index()
    # the sources' own epoch and length options are not the mixture's
    mix = MixtureSampler({"a": XYSampler(a, 4, seed=3, steps_per_epoch=50), "b": XXSampler(b, 4, seed=3, steps_per_epoch=50)},
                         {"a": 1.0, "b": 1.0}, steps_per_epoch=6, length_groups=3)
    assert len(mix) == 6
    for epoch in range(4):
        mix.set_epoch(epoch)
        batches = list(mix)
        assert len(batches) == 6
        for group in (batches[:3], batches[3:]):
            assert len({batch.source for batch in group}) == 1
            source = group[0].source
            assert all(batch.kind == {"a": "xy", "b": "xx"}[source] for batch in group)
            rows = np.array([pair for batch in group for pair in batch])
            assert ((rows < 1000) == (source == "a")).all()
            assert len(set(rows[:, 0].tolist())) == len(rows)  # distinct examples across the group
    # default epoch: the sources' epochs added
    assert len(MixtureSampler({"a": XYSampler(a, 4, steps_per_epoch=5), "b": XXSampler(b, 4, steps_per_epoch=7)},
                              {"a": 1.0, "b": 1.0})) == 12


def test_mixture_length_groups_keep_each_batchs_language_pairs_when_sources_have_other_languages():
    """Sources with two and three languages, per-example X-Y, length groups: every batch keeps the
    language pairs of the slots it was drawn with. (The pair code used to take the first source's
    language count, under which the three-language source's pairs (0, 2) and (1, 0) collide and
    examples moved between batches across pairs.)"""
    def parallel(n, langs, offset):
        rows = offset + np.arange(n * len(langs)).reshape(len(langs), n).T
        chars = np.random.default_rng(offset).integers(10, 300, rows.shape)
        return ParallelIndex(langs, np.array([f"e{i}" for i in range(n)]), rows, query_chars=chars // 4, passage_chars=chars)

    groups, size = 4, 6
    mix = MixtureSampler({"two": XYSampler(parallel(40, ["de", "en"], 0), size, seed=5),
                          "three": XYSampler(parallel(60, ["ar", "de", "en"], 1000), size, seed=5)},
                         {"two": 1.0, "three": 1.0}, length_groups=groups)
    checked = 0
    for group in range(12):
        drawn = mix.draw(np.random.default_rng([mix.seed, 0, group, groups]), groups * size)  # what the group was drawn as
        slots = sorted(sorted(zip(q.tolist(), p.tolist())) for q, p in zip(drawn.query_langs.reshape(groups, size),
                                                                          drawn.passage_langs.reshape(groups, size)))
        batches = [mix.batch_at(0, group * groups + k) for k in range(groups)]
        assert sorted(sorted(zip(b.query_langs.tolist(), b.passage_langs.tolist())) for b in batches) == slots
        checked += batches[0].source_name == "three"
    assert checked >= 3
    assert mix.index.languages == ["ar", "de", "en"] and len(mix.index.example_ids) == 100  # one language list


def test_mixture_weights_proportional_to_source_size(tmp_path):
    """data.source_weighting=size: each batch's source drawn with p ∝ its rows (examples x
    languages), as the paper samples its datasets by size; recorded in the data record."""
    from functools import partial

    from mdr.data.datamodule import ParallelDataModule

    big = write_jsonl(tmp_path / "big.jsonl", make_rows(60, ["de", "en", "ru"], seed=1))  # 180 rows
    small = write_jsonl(tmp_path / "small.jsonl", make_rows(30, ["de", "en"], seed=2))  # 60 rows
    sources = {"big": {"files": str(big), "weight": 1.0}, "small": {"files": str(small), "weight": 1.0}}
    dm = ParallelDataModule(None, partial(XXSampler), tokenization=None, batch_size=4, sources=sources,
                            cache_dir=str(tmp_path / "arrow"), source_weighting="size")
    mix = dm.build_sampler()
    assert dict(zip(mix.names, mix.probs)) == pytest.approx({"big": 0.75, "small": 0.25})
    drawn = [mix.batch_at(0, step).source_name for step in range(2000)]
    assert np.mean([name == "big" for name in drawn]) == pytest.approx(0.75, abs=0.03)  # sd 0.0097
    record = dm.data_record(mix)
    assert {n: (s["rows"], s["examples"], s["share_of_batches"]) for n, s in record["sources"].items()} == {
        "big": (180, 60, pytest.approx(0.75)), "small": (60, 30, pytest.approx(0.25))}
    assert record["rows_per_language"] == {"de": 90, "en": 90, "ru": 60}
    fixed = ParallelDataModule(None, partial(XXSampler), tokenization=None, batch_size=4, sources=sources,
                               cache_dir=str(tmp_path / "arrow"))
    assert fixed.build_sampler().probs == pytest.approx([0.5, 0.5])
    with pytest.raises(ConfigError, match="data.source_weighting must be one of"):
        ParallelDataModule(None, partial(XXSampler), tokenization=None, sources=sources, source_weighting="rows")


def mixture_overrides(tmp_path) -> list[str]:
    """data=mixture of an mMARCO and a MIRACL-train source, both in the hubs' layouts in miniature."""
    mm = write_mmarco(tmp_path / "mmarco")
    topics, corpus_path = write_miracl(tmp_path / "miracl", langs=("de", "sw"), split="train")
    eval_file = write_jsonl(tmp_path / "eval.jsonl", make_rows(8, ["de", "en"], seed=1))
    overrides = [o for o in base_overrides({"train": "unused", "cache": tmp_path / "arrow", "eval": eval_file}) if not o.startswith("data.files")]
    return overrides + [
        "data=mixture", "data.batch_size=4", "data.num_workers=0",
        f"data.sources.mmarco.files.path={mm}", "data.sources.mmarco.files.languages=[de,en,ru]",
        f"data.sources.mmarco.files.cache_dir={tmp_path / 'built'}",
        f"data.sources.miracl.files.path={topics}", f"data.sources.miracl.files.corpus_path={corpus_path}",
        "data.sources.miracl.files.languages=[de,sw]", f"data.sources.miracl.files.cache_dir={tmp_path / 'built'}",
    ]


def test_training_on_a_mixture_of_hub_layout_corpora(tmp_path, monkeypatch):
    """data=mixture end to end: mMARCO (hybrid batches) and MIRACL train (X-X batches)."""
    common = mixture_overrides(tmp_path) + ["sampler=hybrid", "trainer.max_steps=6"]
    monkeypatch.chdir(tmp_path)
    results = train(compose_train(common))
    assert results["demo"]["multilingual_map"] > 0
    # without its own X-X sampler the monolingual source cannot give hybrid batches: one clear error
    with pytest.raises(ConfigError, match=r"data\.sources\.miracl: sampler needs X-Y pairs"):
        train(compose_train(common + ["data.sources.miracl.sampler=null"]))


def test_mixture_with_length_groups_and_an_epoch_length(tmp_path, monkeypatch):
    """sampler.length_groups and sampler.steps_per_epoch reach the mixture: two epochs of 3 steps
    (not the sources' epochs added up), and the logged shares name the sources and kinds drawn."""
    monkeypatch.chdir(tmp_path)
    train(compose_train(mixture_overrides(tmp_path) + [
        "sampler=hybrid", "sampler.length_groups=2", "sampler.steps_per_epoch=3", "trainer.max_epochs=2",
        "logger=csv", "trainer.log_every_n_steps=1"]))
    assert read_json(train_results_path(tmp_path))["step"] == 6
    shares = last_logged(tmp_path, "sampling/")
    sources = {k: v for k, v in shares.items() if k.startswith("sampling/source/")}
    assert set(sources) <= {"sampling/source/mmarco", "sampling/source/miracl"} and sum(sources.values()) == pytest.approx(1.0)
    assert sum(v for k, v in shares.items() if k.startswith("sampling/kind/")) == pytest.approx(1.0)
    # MIRACL train is monolingual: its batches are X-X
    assert shares.get("sampling/kind/xx", 0) >= shares.get("sampling/source/miracl", 0)


def write_squadshifts(root, domains=("new_wiki", "nyt")):
    """lmqg/qa_squadshifts layout: SQuAD-format Parquet per domain; paragraph 0 has two questions."""
    import pandas as pd

    for d in domains:
        rows = [{"id": f"{d}{i}", "title": "t", "context": f"paragraph {i // 2 if i < 2 else i} of {d}", "question": f"q{i} {d}?",
                 "answers": {"text": ["x"], "answer_start": [0]}} for i in range(6)]
        (root / d).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(root / d / "qa_squadshifts-validation.parquet")
    return root


def test_squadshifts_becomes_an_english_validation_corpus_one_question_per_paragraph(tmp_path):
    from mdr.data.sources.squadshifts import build_squadshifts

    path = write_squadshifts(tmp_path / "sq")
    [out] = build_squadshifts(["new_wiki", "nyt"], path=str(path), cache_dir=str(tmp_path / "built"))
    ds = load_parallel_corpus(out, cache_dir=str(tmp_path / "arrow"))
    assert set(ds["lang"]) == {"en"} and len(ds) == 10  # 5 distinct paragraphs per domain
    assert len(set(ds["positive"])) == len(ds)  # no two examples share a passage
    assert ds[0] == {"id": "new_wiki-new_wiki0", "lang": "en", "query": "q0 new_wiki?", "positive": "paragraph 0 of new_wiki",
                     "negatives": [], "negative_ids": None}
    with pytest.raises(DataError, match=r"SQuADShifts file missing: .*amazon/qa_squadshifts-validation\.parquet"):
        build_squadshifts(["amazon"], path=str(path))
    with pytest.raises(DataError, match=r"SQuADShifts has no domain\(s\) \['wiki'\]"):
        build_squadshifts(["wiki"], path=str(path))
