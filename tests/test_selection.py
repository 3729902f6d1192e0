"""Validation and model selection: fixed validation batches, val/loss, early stopping, and the final
evaluation on the best checkpoint (not the last one), also after a resume and with GradCache."""

from __future__ import annotations

import csv
import json
from collections import Counter
from functools import partial

import pytest
import torch

from mdr.data.datamodule import ParallelDataModule
from mdr.data.samplers import HybridSampler, XXSampler
from mdr.errors import ConfigError
from mdr.formats.parallel import load_parallel_corpus
from mdr.formats.results import read_json, train_results_path
from mdr.model.module import BiEncoderModule
from mdr.tasks import evaluate, train
from tests.helpers import (
    LANGS,
    ROOT,
    base_overrides,
    compose_config,
    compose_train,
    last_logged,
    make_rows,
    run_script,
    tiny,
    write_jsonl,
)

VAL = ["data.val_split=0.2", "data.val_batches=3", "val.every_n_steps=2", "logger=csv", "trainer.log_every_n_steps=1",
       "checkpoint.every_n_train_steps=2", "checkpoint.save_top_k=-1"]


def datamodule(corpus, seed: int, **kw) -> ParallelDataModule:
    dm = ParallelDataModule(str(corpus["train"]), sampler=partial(HybridSampler, alpha=0.5), tokenization=tiny().tokenization,
                            batch_size=4, seed=seed, cache_dir=str(corpus["cache"]), **kw)
    dm.setup()
    return dm


def val_batches(dm) -> list:
    return [[tuple(p) for p in b] + [b.kind] for b in dm.val_dataloader().batch_sampler]


def test_the_held_out_split_is_by_id_and_the_validation_batches_never_change(corpus):
    a = datamodule(corpus, seed=1, val_split=0.25, val_batches=5)
    b = datamodule(corpus, seed=2, val_split=0.25, val_batches=5)  # another run of a sweep, or a resumed process
    assert val_batches(a) == val_batches(b) == val_batches(a)  # the same batches every time
    assert len(val_batches(a)) == 5
    train_ids, val_ids = set(a.corpus["id"]), set(a.val_corpus["id"])
    assert not train_ids & val_ids  # no translation of a validation example is trained on
    assert len(val_ids) == 15 and len(train_ids) == 45  # 25 % of the 60 ids
    every = Counter(load_parallel_corpus(str(corpus["train"]), cache_dir=str(corpus["cache"]))["id"])
    assert Counter(a.val_corpus["id"]) == {i: every[i] for i in val_ids}  # every language of a held-out id
    english = datamodule(corpus, seed=1, val_split=0.25, val_languages=["en"], val_sampler=partial(XXSampler))
    assert set(english.val_corpus["lang"]) == {"en"} and set(english.val_corpus["id"]) == val_ids


def test_validation_files_and_bad_validation_options(corpus, tmp_path):
    val = write_jsonl(tmp_path / "val.jsonl", make_rows(10, ["en"], seed=9))
    dm = datamodule(corpus, seed=0, val_files=str(val), val_sampler=partial(XXSampler))
    assert len(dm.val_corpus) == 10 and dm.has_validation
    with pytest.raises(ConfigError, match="set at most one of data.val_files and data.val_split"):
        datamodule(corpus, seed=0, val_files=str(val), val_split=0.1)
    with pytest.raises(ConfigError, match=r"data\.val_split must be > 0 and <= 1, got 1\.5"):
        datamodule(corpus, seed=0, val_split=1.5)
    with pytest.raises(ConfigError, match=r"data\.val_languages \['fr'\] are not in"):
        datamodule(corpus, seed=0, val_split=0.2, val_languages=["fr"])
    with pytest.raises(ConfigError, match="validation batches: sampler needs X-Y pairs"):
        datamodule(corpus, seed=0, val_files=str(val)).val_dataloader()  # English only: no X-Y pairs


def scripted_val_losses(monkeypatch, losses: list[float]) -> None:
    """validation_step logs the next scripted value, so which validation is best is known."""
    calls = []

    def scripted(self, batch, batch_idx):
        if batch_idx == 0:
            calls.append(None)
        value = losses[min(len(calls), len(losses)) - 1]
        self.log("val/loss", torch.tensor(value), batch_size=len(batch["query_lang"]))

    monkeypatch.setattr(BiEncoderModule, "validation_step", scripted)


def test_early_stopping_and_the_evaluated_checkpoint_is_the_best_one(corpus, tmp_path, monkeypatch):
    """Validations every 2 steps score 3, 1, 2, 2.5: the best is step 4, patience 2 stops after step
    8 (of 20), and the final evaluation is that of step 4's weights, not the last ones."""
    scripted_val_losses(monkeypatch, [3.0, 1.0, 2.0, 2.5, 0.5])
    monkeypatch.chdir(tmp_path)
    results = train(compose_train(base_overrides(corpus) + VAL + ["trainer.max_steps=20", "val.patience=2"]))
    record = read_json(train_results_path(tmp_path))
    assert record["step"] == 4 and record["trained_steps"] == 8
    selection = record["selection"]
    assert selection["step"] == 4 and selection["value"] == pytest.approx(1.0) and selection["early_stopped"] is True
    assert selection["monitor"] == "val/loss" and selection["checkpoint"].endswith("best-step000004.ckpt")
    # the reported metrics are those of the step-4 checkpoint (evaluated on its own), not of step 8
    with_best = evaluate(compose_config("evaluate", ["model=tiny", "logger=none", f"eval.sets.demo.files={corpus['eval']}",
                                                     f"ckpt={tmp_path / 'checkpoints' / 'step000004.ckpt'}"]))
    last = evaluate(compose_config("evaluate", ["model=tiny", "logger=none", f"eval.sets.demo.files={corpus['eval']}",
                                                f"ckpt={tmp_path / 'checkpoints' / 'step000008.ckpt'}"]))
    for key in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        assert results["demo"][key] == pytest.approx(with_best["demo"][key], abs=1e-6)
    assert any(results["demo"][k] != pytest.approx(last["demo"][k], abs=1e-6) for k in ("multilingual_map", "rank_distance"))


@pytest.mark.parametrize("grad_cache", [False, True], ids=["plain", "gradcache"])
def test_real_validation_resumes_to_the_same_selection(corpus, tmp_path, monkeypatch, grad_cache):
    """val/loss on the held-out split every 2 steps; resuming from step 4 gives the same val losses,
    the same selected step and the same final metrics."""
    extra = ["optim.grad_cache_chunk_size=3"] if grad_cache else []
    records = {}
    for name, more in (("full", []), ("resumed", [f"ckpt_path={tmp_path / 'full' / 'checkpoints' / 'step000004.ckpt'}"])):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        train(compose_train(base_overrides(corpus) + VAL + extra + ["trainer.max_steps=8"] + more))
        records[name] = read_json(train_results_path(tmp_path / name))
        assert last_logged(tmp_path / name, "val/")["val/loss"] > 0
    a, b = records["full"], records["resumed"]
    assert a["selection"]["step"] == b["selection"]["step"] and a["step"] == a["selection"]["step"]
    assert a["selection"]["value"] == pytest.approx(b["selection"]["value"], abs=1e-6)
    assert a["results"]["demo"]["multilingual_map"] == pytest.approx(b["results"]["demo"]["multilingual_map"], abs=1e-6)


def test_selecting_on_a_retrieval_metric_of_a_dev_set(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus) + VAL + ["trainer.max_steps=6", "val.monitor=eval/demo/crosslingual_map",
                                                        "val.mode=max"]))
    record = read_json(train_results_path(tmp_path))
    logged = last_logged(tmp_path, "eval/demo/crosslingual_map")
    assert record["selection"]["monitor"] == "eval/demo/crosslingual_map" and record["selection"]["mode"] == "max"
    assert record["selection"]["value"] >= logged["eval/demo/crosslingual_map"] - 1e-6  # the best of those seen
    assert record["results"]["demo"]["crosslingual_map"] == pytest.approx(record["selection"]["value"], abs=1e-6)


@pytest.mark.parametrize("every, validated", [(None, [6]), (10, [6]), (4, [4])])
def test_a_run_with_validation_data_validates_at_least_once(corpus, tmp_path, monkeypatch, every, validated):
    """6 steps, an epoch of 20: without an interval reached (at the epoch's end, or every 10 steps) the
    last step is validated and selected, instead of no validation and the last weights reported with
    no selection; an interval that was reached (every 4) is left as it is."""
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus, evaluate=False) + [
        "data.val_split=0.2", "data.val_batches=3", "logger=csv", "trainer.log_every_n_steps=1", "trainer.max_steps=6",
        "sampler.steps_per_epoch=20", f"val.every_n_steps={every or 'null'}"]))
    record = read_json(train_results_path(tmp_path))
    assert record["selection"]["step"] == validated[-1] and record["trained_steps"] == 6
    with open(next(tmp_path.glob("csv/version_0/metrics.csv"))) as fh:
        assert len([row for row in csv.DictReader(fh) if row.get("val/loss")]) == len(validated)


@pytest.mark.parametrize("override, message", [
    ("val.every_n_steps=2", r"val\.every_n_steps needs validation data"),
    ("data.val_split=0.2 val.monitor=eval/nope/map", r"val\.monitor='eval/nope/map': expected eval/<set>/<metric>"),
    ("data.val_split=0.2 val.monitor=loss", r"val\.monitor must be val/loss, val/accuracy or eval/<set>/<metric>"),
    ("data.val_split=0.2 val.mode=lowest", r"val\.mode must be min or max"),
])
def test_bad_validation_options(corpus, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        train(compose_train(base_overrides(corpus) + ["trainer.max_steps=2"] + override.split()))


@pytest.mark.slow
def test_validation_and_selection_on_two_gloo_ranks(corpus, tmp_path):
    out = run_script([str(ROOT / "train.py"), *base_overrides(corpus), *VAL, "trainer=ddp", "trainer.accelerator=cpu",
                      "trainer.devices=2", "trainer.max_steps=6", "data.batch_size=4", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(train_results_path(tmp_path).read_text())
    assert record["selection"]["step"] in (2, 4, 6) and record["step"] == record["selection"]["step"]
    assert len(LANGS) == len(record["results"]["demo"]["matrix"])
