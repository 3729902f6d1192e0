"""Comparing runs: per-query files, seeds grouped with intervals, paired tests against a baseline,
the best run, and the sweep summary and W&B dashboard built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdr.comparison import best_group, groups, metric_weights, pick_baseline, read_jobs, significance
from mdr.evaluation.pools import parallel_eval
from mdr.evaluation.settings import score_embeddings
from mdr.formats.results import read_per_query, write_results
from mdr.sweep import main, render, sweep_tables
from mdr.tasks import objective
from tests.helpers import ROOT, base_overrides, make_rows, run_script, write_jsonl


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("es")
    rows = make_rows(30, ["de", "en", "zh"], seed=4, coverage={"zh": 0.6})  # languages with unequal questions
    return parallel_eval("demo", write_jsonl(folder / "e.jsonl", rows))


def scored(es, seed: int, shift: float = 0.0) -> dict:
    """Results (with the per-query table) of random embeddings; ``shift`` > 0 moves queries towards
    their answers, a better model."""
    g = torch.Generator().manual_seed(seed)
    c = torch.nn.functional.normalize(torch.randn(len(es.cand_text), 16, generator=g, dtype=torch.float64), dim=1)
    answer = torch.stack([c[r[0]] if len(r) else torch.zeros(16, dtype=torch.float64) for r in es.relevant])
    q = torch.nn.functional.normalize(torch.randn(len(es.query_text), 16, generator=g, dtype=torch.float64) + shift * answer, dim=1)
    return score_embeddings(es, q, c, per_query=True)


def write_job(sweep: Path, number: int, overrides: list[str], results: dict) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    write_results(folder / "checkpoints" / "results.json", {"step": 5, "final": True, "results": {"demo": results}})


def test_the_per_query_file_round_trips(evalset, tmp_path):
    results = scored(evalset, 0)
    table = results["per_query"]
    payload = write_results(tmp_path / "results.json", {"step": 1, "results": {"demo": results}})
    assert "per_query" not in payload["results"]["demo"] and "per_query" not in (tmp_path / "results.json").read_text()
    back = read_per_query(tmp_path / "results.json")
    assert list(back["eval_set"].unique()) == ["demo"] and len(back) == len(table)
    assert set(back["setting"]) == {"multilingual", "monolingual", "crosslingual"}
    assert back["ap"].to_numpy() == pytest.approx(table["ap"].to_numpy(), abs=1e-6)
    assert (back["query_id"].to_numpy() == table["query_id"].to_numpy()).all()
    assert back.columns.tolist()[:8] == ["query", "pool_lang", "ap", "first_rank", "recall_at_1", "recall_at_10",
                                         "rank_distance", "same_language_first"]
    assert (tmp_path / "per_query.parquet").stat().st_size < 40 * len(table) + 10_000  # bounded: tens of bytes a row


def test_the_weights_turn_per_query_ap_into_the_reported_metrics(evalset):
    results = scored(evalset, 1)
    table = results["per_query"].set_index(["query", "pool_lang"])
    for metric, setting in (("multilingual_map", "multilingual"), ("monolingual_map", "monolingual"), ("crosslingual_map", "crosslingual")):
        rows = table[table["setting"] == setting]
        assert float(np.sum(metric_weights(rows) * rows["ap"])) == pytest.approx(results[metric], abs=1e-12), metric


def test_runs_that_differ_only_in_seed_are_grouped(evalset, tmp_path):
    for n, (sampler, seed) in enumerate([("xx", 1), ("hybrid", 1), ("xx", 2), ("hybrid", 2), ("hybrid", 3)]):
        write_job(tmp_path, n, [f"sampler={sampler}", f"seed={seed}"], scored(evalset, 10 * n))
    group_list = groups(read_jobs(tmp_path))
    assert [(g.key, len(g.jobs)) for g in group_list] == [("sampler=xx", 2), ("sampler=hybrid", 3)]
    assert pick_baseline(group_list, None).key == "sampler=xx"
    assert pick_baseline(group_list, "sampler=hybrid").key == "sampler=hybrid"
    with pytest.raises(ValueError, match="matches no run group"):
        pick_baseline(group_list, "sampler=xy")
    best, interval = best_group(group_list, "demo", "crosslingual_map")
    assert interval.n == len(best.jobs) and interval.mean == max(np.mean(g.values("demo", "crosslingual_map")) for g in group_list)


def test_identical_runs_are_not_significant_and_a_clearly_better_one_is(evalset, tmp_path):
    same = scored(evalset, 7)
    better = scored(evalset, 7, shift=3.0)
    write_job(tmp_path, 0, ["sampler=xx"], same)
    write_job(tmp_path, 1, ["sampler=hybrid"], same)  # the same per-query scores
    write_job(tmp_path, 2, ["sampler=xy"], better)
    group_list = groups(read_jobs(tmp_path))
    tests = {(c.group, c.metric): c for c in significance(group_list, pick_baseline(group_list, None), resamples=2000, bootstrap=500)}
    assert len(tests) == 6
    for metric in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        tie, win = tests[("sampler=hybrid", metric)], tests[("sampler=xy", metric)]
        assert tie.delta == 0 and tie.p == 1.0 and tie.p_holm == 1.0
        assert win.delta == pytest.approx(better[metric] - same[metric], abs=1e-6) and win.delta > 0  # float32 per query
        assert win.p_holm < 0.01 and win.low > 0
    text = render(sweep_tables(tmp_path, {"resamples": 2000, "bootstrap": 500}))
    assert "| sampler=xy | demo | crosslingual_map |" in text and "| better |" in text and "| not significant |" in text
    assert " ▲" in text and "best by demo/crosslingual_map (max): sampler=xy" in text


def test_a_finished_sweep_resummarised_against_another_baseline(evalset, tmp_path, capsys):
    """python -m mdr.sweep DIR baseline="..." : a baseline of several overrides, checked options,
    and a misspelled selection metric said, not dropped."""
    for n, (sampler, pairs) in enumerate([("xy", "per_batch"), ("xy", "per_example"), ("hybrid", "per_batch"), ("hybrid", "per_example")]):
        write_job(tmp_path, n, [f"sampler={sampler}", f"sampler.xy_pairs={pairs}"], scored(evalset, 7, shift=float(n)))
    main([str(tmp_path), "baseline=sampler=hybrid sampler.xy_pairs=per_batch", "resamples=199", "bootstrap=100"])
    text = capsys.readouterr().out
    assert "Against the baseline sampler=hybrid sampler.xy_pairs=per_batch:" in text
    assert "| sampler=hybrid sampler.xy_pairs=per_example | demo | multilingual_map |" in text
    assert "| sampler=hybrid sampler.xy_pairs=per_batch | demo | multilingual_map |" not in text
    main([str(tmp_path), "select_metric=crosslingual_mAP", "resamples=99", "bootstrap=50"])
    assert "best by demo/crosslingual_mAP: no run has this metric" in capsys.readouterr().out
    for args, message in [([str(tmp_path), "alpha=abc"], "summary.alpha must be a number"),
                          ([str(tmp_path), "baselin=sampler=xy"], r"unknown summary option\(s\) \['baselin'\]"),
                          ([str(tmp_path), "select_mode=up"], "summary.select_mode must be max or min"),
                          ([str(tmp_path), "baseline=sampler=xx"], "summary.baseline='sampler=xx' matches no run group"),
                          ([str(tmp_path / "nope")], "not a sweep folder")]:
        with pytest.raises(SystemExit, match=message):
            main(args)


def test_the_sweeper_objective_is_the_selection_metric_and_a_misspelling_is_said(caplog):
    cfg = OmegaConf.create({"summary": {"select_set": None, "select_metric": "crosslingual_map"}})
    results = {"demo": {"crosslingual_map": 0.25, "monolingual_map": 0.5}}
    assert objective(cfg, results) == 0.25 and math.isnan(objective(cfg, None))
    cfg.summary.select_metric = "cross_map"
    assert math.isnan(objective(cfg, results))
    assert "demo/cross_map is not in this run's results" in caplog.text and "crosslingual_map" in caplog.text


def test_a_bad_summary_option_fails_the_sweep_before_its_jobs(corpus, tmp_path):
    sweep = tmp_path / "sweep"
    out = run_script([str(ROOT / "train.py"), "-m", *base_overrides(corpus), "sampler=xx,hybrid", "summary.alpha=5",
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert out.returncode == 1 and "error: summary.alpha must be > 0 and <= 1, got 5" in out.stderr
    assert not (sweep / "0").exists()


def test_a_seed_sweep_summary_and_its_wandb_dashboard(corpus, tmp_path):
    """python train.py -m sampler=xx,hybrid seed=1,2 logger=wandb (offline): the summary groups seeds,
    tests hybrid against xx, names the best; W&B runs carry names, tags and choices, and the summary
    tables land in a run of the sweep's group."""
    sweep = tmp_path / "sweep"
    out = run_script([str(ROOT / "train.py"), "-m", *base_overrides(corpus), "trainer.max_steps=3", "sampler=xx,hybrid",
                      "seed=1,2", "logger=wandb", "summary.resamples=999", "summary.bootstrap=200", f"hydra.sweep.dir={sweep}"],
                     tmp_path, env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "Over seeds: mean ±sd [95 % t interval]" in summary and "| sampler=hybrid | 2 | demo |" in summary
    assert "Against the baseline sampler=xx" in summary and "best by demo/crosslingual_map (max): sampler=" in summary
    assert all((sweep / str(n) / "checkpoints" / "per_query.parquet").exists() for n in range(4))
    # W&B: each job's run; the transaction log holds its name, tags and the choices block
    logs = {n: next((sweep / str(n) / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes() for n in range(4)}
    assert b"xx-tiny-s1" in logs[0] and b"hybrid-tiny-s2" in logs[3]
    assert b"sampler:hybrid" in logs[3] and b"model:tiny" in logs[3] and b"seed:2" in logs[3]
    assert b'"choices"' in logs[0] or b"choices" in logs[0]
    [summary_run] = (sweep / "wandb").glob("offline-run-*")
    tables = {p.name.split("_")[0] for p in summary_run.glob("files/media/table/sweep/*.table.json")}
    assert {"runs", "seeds", "significance"} <= tables
    seeds = json.loads(next(summary_run.glob("files/media/table/sweep/seeds_*.table.json")).read_text())
    assert seeds["columns"][:3] == ["runs", "seeds", "eval set"] and len(seeds["data"]) == 2
    [per_lang] = (sweep / "0" / "wandb").glob("offline-run-*/files/media/table/eval/demo/per_language*.table.json")
    assert json.loads(per_lang.read_text())["columns"][0] == "query language"
