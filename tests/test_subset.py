"""Training on part of a corpus (data.max_examples / data.example_fraction, mdr.data.subset): nested,
the same for every sampler and seed, after the validation hold-out, per source of a mixture, recorded."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from functools import partial

import pytest
import yaml

from mdr.config import instantiate
from mdr.data.datamodule import ParallelDataModule
from mdr.data.samplers import HybridSampler, XXSampler
from mdr.data.subset import SUBSET_SALT
from mdr.errors import ConfigError
from mdr.formats.results import read_json, train_results_path
from mdr.tasks import train
from tests.helpers import LANGS, base_overrides, compose_train, make_rows, tiny, write_jsonl

SAMPLERS = {"xx": partial(XXSampler), "hybrid": partial(HybridSampler, alpha=0.5)}


def datamodule(files, sampler: str = "hybrid", seed: int = 0, cache=None, **kw) -> ParallelDataModule:
    dm = ParallelDataModule(str(files) if files else None, sampler=SAMPLERS[sampler], tokenization=tiny().tokenization,
                            batch_size=4, seed=seed, cache_dir=str(cache) if cache else None, **kw)
    dm.setup()
    return dm


def trained_ids(dm: ParallelDataModule) -> set[str]:
    return set(dm.corpus["id"])


def drawn_ids(dm: ParallelDataModule, steps: int = 20) -> set[str]:
    """The ids of every row the training sampler draws in ``steps`` batches."""
    ids = dm.corpus["id"]
    sampler = dm.build_sampler()
    return {ids[row] for batch, _ in zip(sampler, range(steps)) for pair in batch for row in pair}


def rows_by_id(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["id"], []).append(row)
    return out


def test_subsets_are_nested_the_same_for_every_sampler_and_seed_and_keep_every_language(corpus):
    all_rows = [json.loads(line) for line in open(corpus["train"])]
    by_id = rows_by_id(all_rows)
    # the contract, computed independently: ids ranked by the salted SHA-1, the first N kept
    ranking = sorted(by_id, key=lambda i: hashlib.sha1(f"{SUBSET_SALT}:{i}".encode()).digest())
    kept = {}
    for n in (5, 20, 40):
        runs = [datamodule(corpus["train"], sampler, seed, corpus["cache"], max_examples=n)
                for sampler in SAMPLERS for seed in (1, 2)]
        ids = [trained_ids(dm) for dm in runs]
        assert all(i == ids[0] for i in ids)  # every sampler and seed: the same subset
        assert ids[0] == set(ranking[:n]) and len(ids[0]) == n
        kept[n] = ids[0]
        dm = runs[0]
        assert Counter(dm.corpus["lang"]) == Counter(r["lang"] for i in ids[0] for r in by_id[i])  # all its languages
        assert set(dm.index.example_ids) == ids[0]
        assert drawn_ids(dm) <= ids[0]  # the sampler draws from the subset only
        assert dm.data_subset == {"max_examples": n, "example_fraction": None, "examples": n, "examples_available": 60,
                                  "rows": len(dm.corpus), "rows_per_language": dict(Counter(dm.corpus["lang"]))}
    assert kept[5] < kept[20] < kept[40]  # nested
    assert kept[20] != {f"ex{e:04d}" for e in range(20)}  # not the first ids of the file
    full = datamodule(corpus["train"], cache=corpus["cache"], max_examples=60)
    assert len(full.corpus) == len(all_rows) and full.corpus["id"] == [r["id"] for r in all_rows]  # all: the corpus as it was


def test_the_subset_is_taken_after_the_validation_hold_out(corpus):
    plain = datamodule(corpus["train"], cache=corpus["cache"], val_split=0.25)
    held = set(plain.val_corpus["id"])
    for n in (10, 45):
        dm = datamodule(corpus["train"], cache=corpus["cache"], val_split=0.25, max_examples=n)
        assert set(dm.val_corpus["id"]) == held  # the hold-out does not depend on the subset
        assert not trained_ids(dm) & held and len(trained_ids(dm)) == n
        assert dm.data_subset["examples_available"] == 45
    assert trained_ids(datamodule(corpus["train"], cache=corpus["cache"], val_split=0.25, max_examples=10)) < trained_ids(
        datamodule(corpus["train"], cache=corpus["cache"], val_split=0.25, max_examples=30))
    with pytest.raises(ConfigError, match=r"^data\.max_examples=46 is more than the 45 example ids of data\.files .* "
                                          r"\(after any validation hold-out\)"):
        datamodule(corpus["train"], cache=corpus["cache"], val_split=0.25, max_examples=46)


def test_the_fraction_form(corpus):
    half = datamodule(corpus["train"], cache=corpus["cache"], example_fraction=0.5)
    assert trained_ids(half) == trained_ids(datamodule(corpus["train"], cache=corpus["cache"], max_examples=30))
    assert half.data_subset["example_fraction"] == 0.5 and half.data_subset["examples"] == 30
    tiny_share = datamodule(corpus["train"], cache=corpus["cache"], example_fraction=0.001)
    assert len(trained_ids(tiny_share)) == 1  # at least one id
    assert len(trained_ids(datamodule(corpus["train"], cache=corpus["cache"], example_fraction=1.0))) == 60


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.max_examples=0", r"data\.max_examples must be >= 1, got 0"),
        ("data.max_examples=-5", r"data\.max_examples must be >= 1, got -5"),
        ("data.max_examples=2.5", r"data\.max_examples must be an integer >= 1, got 2\.5"),
        ("data.max_examples=0.25", r"data\.max_examples must be an integer >= 1 \(a number of example ids\), got 0\.25; "
                                   r"for a share of the examples use data\.example_fraction=0\.25"),
        ("data.max_examples=many", r"data\.max_examples must be an integer >= 1, got 'many'"),
        ("data.example_fraction=0", r"data\.example_fraction must be > 0 and <= 1, got 0"),
        ("data.example_fraction=1.5", r"data\.example_fraction must be > 0 and <= 1, got 1\.5"),
        ("data.max_examples=10 data.example_fraction=0.5", r"set at most one of data\.max_examples and data\.example_fraction"),
        ("data.max_examples=61", r"data\.max_examples=61 is more than the 60 example ids of data\.files"),
    ],
)
def test_bad_values_give_one_clear_error(corpus, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as error:
        train(compose_train(base_overrides(corpus, evaluate=False) + override.split()))
    assert "\n" not in str(error.value)


def test_mixture_sources_are_cut_per_source(corpus, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", [{**r, "id": f"o{r['id']}"} for r in make_rows(30, ["de", "en"], seed=3)])
    sources = {"a": {"files": str(corpus["train"]), "max_examples": 10}, "b": {"files": str(other), "weight": 2.0}}
    dm = datamodule(None, cache=corpus["cache"], sources=sources, example_fraction=0.5)
    # a: its own option; b: the global share
    a_ids = set(datamodule(corpus["train"], cache=corpus["cache"], max_examples=10).corpus["id"])
    b_ids = set(datamodule(other, cache=corpus["cache"], max_examples=15).corpus["id"])
    assert trained_ids(dm) == a_ids | b_ids
    ids = dm.corpus["id"]
    for name, expected in (("a", a_ids), ("b", b_ids)):
        index = dm.source_index[name]
        assert {ids[r] for r in index.rows[index.rows >= 0]} == expected  # its index points at its kept rows
    assert dm.data_subset["sources"]["a"]["max_examples"] == 10 and dm.data_subset["sources"]["a"]["examples"] == 10
    assert dm.data_subset["sources"]["b"]["example_fraction"] == 0.5 and dm.data_subset["sources"]["b"]["examples"] == 15
    assert dm.data_subset["examples"] == 25 and dm.data_subset["rows"] == len(dm.corpus)
    assert drawn_ids(dm, 40) <= a_ids | b_ids
    with pytest.raises(ConfigError, match=r"data\.sources\.b\.max_examples must be >= 1, got 0"):
        datamodule(None, sources={**sources, "b": {"files": str(other), "max_examples": 0}})
    with pytest.raises(ConfigError, match=r"data\.max_examples=31 is more than the 30 example ids of data\.sources\.b"):
        datamodule(None, cache=corpus["cache"], sources={"b": {"files": str(other)}}, max_examples=31)


def test_hub_corpora_of_a_mixture_are_cut_by_the_config_options(tmp_path):
    from tests.test_hub_corpora import mixture_overrides

    cfg = compose_train(mixture_overrides(tmp_path) + ["data.sources.mmarco.max_examples=10", "data.example_fraction=0.5"])
    encoder = tiny()
    dm = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=encoder.tokenization, seed=1)
    dm.setup()
    record = dm.data_subset["sources"]
    assert record["mmarco"]["examples"] == 10 and record["mmarco"]["examples_available"] == 30
    assert record["miracl"]["example_fraction"] == 0.5 and record["miracl"]["examples"] == 12  # 24 monolingual topics
    assert sum(record["mmarco"]["rows_per_language"].values()) == record["mmarco"]["rows"]


def test_the_record_in_results_json_and_the_logger_config(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus) + ["data.max_examples=20", "trainer.max_steps=2", "logger=csv"]))
    record = read_json(train_results_path(tmp_path))["data_subset"]
    by_id = rows_by_id([json.loads(line) for line in open(corpus["train"])])
    ranking = sorted(by_id, key=lambda i: hashlib.sha1(f"{SUBSET_SALT}:{i}".encode()).digest())[:20]
    per_language = Counter(r["lang"] for i in ranking for r in by_id[i])
    assert record == {"max_examples": 20, "example_fraction": None, "examples": 20, "examples_available": 60,
                      "rows": sum(per_language.values()), "rows_per_language": dict(sorted(per_language.items()))}
    assert set(record["rows_per_language"]) == set(LANGS) and record["rows_per_language"]["ar"] < 20  # ar covers ~70 %
    [hparams] = tmp_path.glob("csv/version_*/hparams.yaml")
    assert yaml.safe_load(hparams.read_text())["data_subset"] == record
