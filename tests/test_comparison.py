"""Comparing runs: per-query files, seeds grouped with intervals, tests over seeds and questions
against a baseline, pairing by query identity, dev / test selection, the forest plot, and the sweep
summary and W&B dashboard built from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from statsmodels.stats.multitest import multipletests

from mdr.comparison import ComparisonError, best_group, compare, groups, matched_baselines, paired_values, read_jobs
from mdr.evaluation.benchmark import declare
from mdr.evaluation.pools import parallel_eval
from mdr.evaluation.settings import pool_metrics, score_embeddings
from mdr.formats.results import read_per_query, write_results
from mdr.stats import seeds_and_questions
from mdr.sweep import FOREST_FILE, forest_points, main, p_text, render, sweep_tables, write_summary
from mdr.tasks import objective
from tests.helpers import ROOT, base_overrides, make_rows, run_script, write_jsonl


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("es")
    rows = make_rows(30, ["de", "en", "zh"], seed=4, coverage={"zh": 0.6})  # languages with unequal questions
    return parallel_eval("demo", write_jsonl(folder / "e.jsonl", rows))


def scored(es, seed: int, shift: float = 0.0) -> dict:
    """Results (declared, with the per-query table) of random embeddings; ``shift`` > 0 moves queries
    towards their answers, a better model."""
    g = torch.Generator().manual_seed(seed)
    c = torch.nn.functional.normalize(torch.randn(len(es.cand_text), 16, generator=g, dtype=torch.float64), dim=1)
    answer = torch.stack([c[r[0]] if len(r) else torch.zeros(16, dtype=torch.float64) for r in es.relevant])
    q = torch.nn.functional.normalize(torch.randn(len(es.query_text), 16, generator=g, dtype=torch.float64) + shift * answer, dim=1)
    return declare(score_embeddings(es, q, c, per_query=True), pool_metrics())


def write_job(sweep: Path, number: int, overrides: list[str], results: dict, name: str = "demo") -> Path:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    write_results(folder / "checkpoints" / "results.json", {"step": 5, "final": True, "results": {name: results}})
    return folder


def write_strategies(sweep: Path, es, shifts: dict[str, float], seeds=(1, 2, 3)) -> None:
    """One job per (strategy, seed): random models, ``shifts[strategy]`` towards the answers."""
    n = 0
    for sampler, shift in shifts.items():
        for seed in seeds:
            write_job(sweep, n, [f"sampler={sampler}", f"seed={seed}"], scored(es, 100 * seed + n, shift))
            n += 1


def test_the_per_query_file_round_trips(evalset, tmp_path):
    results = scored(evalset, 0)
    table = results["per_query"]
    payload = write_results(tmp_path / "results.json", {"step": 1, "results": {"demo": results}})
    assert "per_query" not in payload["results"]["demo"]
    assert "per_query" not in json.loads((tmp_path / "results.json").read_text())["results"]["demo"]  # beside it, not in it
    back = read_per_query(tmp_path / "results.json")
    assert list(back["eval_set"].unique()) == ["demo"] and len(back) == len(table)
    assert set(back["setting"]) == {"multilingual", "monolingual", "crosslingual"}
    assert back["ap"].to_numpy() == pytest.approx(table["ap"].to_numpy(), abs=1e-6)
    assert (back["query_id"].to_numpy() == table["query_id"].to_numpy()).all()
    assert back.columns.tolist()[:8] == ["query", "pool_lang", "ap", "first_rank", "recall_at_1", "recall_at_10",
                                         "rank_distance", "same_language_first"]
    assert (tmp_path / "per_query.parquet").stat().st_size < 40 * len(table) + 10_000  # bounded: tens of bytes a row


def test_the_declared_rules_turn_per_query_values_into_the_reported_metrics(evalset, tmp_path):
    """Every metric with a per-query rule is reproduced from the per-query file by the weights the
    comparison uses: the tested difference is the difference of the reported numbers."""
    write_job(tmp_path, 0, ["sampler=xx"], scored(evalset, 1))
    [job] = read_jobs(tmp_path)
    [group] = groups([job])
    for metric in pool_metrics():
        paired = paired_values([group], "demo", metric)
        assert float(paired.weights @ paired.values[0][0]) == pytest.approx(job.record["results"]["demo"][metric.name], rel=1e-5), metric.name


def test_runs_that_differ_only_in_seed_are_grouped(evalset, tmp_path):
    for n, (sampler, seed) in enumerate([("xx", 1), ("hybrid", 1), ("xx", 2), ("hybrid", 2), ("hybrid", 3)]):
        write_job(tmp_path, n, [f"sampler={sampler}", f"seed={seed}"], scored(evalset, 10 * n))
    group_list = groups(read_jobs(tmp_path))
    assert [(g.key, len(g.jobs)) for g in group_list] == [("sampler=xx", 2), ("sampler=hybrid", 3)]
    assert [(g.key, b.key) for g, b, _ in matched_baselines(group_list, None)] == [("sampler=hybrid", "sampler=xx")]
    assert [(g.key, b.key) for g, b, _ in matched_baselines(group_list, "sampler=hybrid")] == [("sampler=xx", "sampler=hybrid")]
    with pytest.raises(ComparisonError, match="matches no run group"):
        matched_baselines(group_list, "sampler=xy")
    best, interval = best_group(group_list, "demo", "crosslingual_map")
    assert interval.n == len(best.jobs) and interval.mean == max(np.mean(g.values("demo", "crosslingual_map")) for g in group_list)


def test_a_summary_of_a_sweep_under_way_says_not_finished_not_failed(evalset, tmp_path):
    write_job(tmp_path, 0, ["sampler=xx", "seed=1"], scored(evalset, 0))
    (tmp_path / "1" / ".hydra").mkdir(parents=True)  # started, no results yet (running, or killed)
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text("- sampler=xx\n- seed=2\n")
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # ended with an error
    (tmp_path / "2" / ".hydra" / "overrides.yaml").write_text("- sampler=xx\n- seed=3\n")
    (tmp_path / "2" / "failed.txt").write_text("error: CUDA out of memory\ntraceback...\n")
    status = {r["job"]: r["status"] for r in sweep_tables(tmp_path)["runs"][1]}
    assert status == {"0": "ok", "1": "not finished (no results.json)", "2": "failed (error: CUDA out of memory)"}


def test_identical_runs_are_not_marked_and_a_clearly_better_strategy_over_three_seeds_is(evalset, tmp_path):
    for seed in (1, 2, 3):
        same = scored(evalset, seed)
        write_job(tmp_path, seed - 1, ["sampler=xx", f"seed={seed}"], same)
        write_job(tmp_path, seed + 2, ["sampler=hybrid", f"seed={seed}"], same)  # the same per-query scores
        write_job(tmp_path, seed + 5, ["sampler=xy", f"seed={seed}"], scored(evalset, 50 + seed, shift=3.0))
    group_list = groups(read_jobs(tmp_path))
    tests = {(c.group, c.metric.name): c for c in compare(group_list, None, ["demo"])}
    assert len(tests) == 6  # the three mAPs the pool benchmarks declare tested, for two groups
    for metric in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        tie, win = tests[("sampler=hybrid", metric)], tests[("sampler=xy", metric)]
        assert tie.delta == 0 and tie.test.p == 1.0 and tie.verdict(0.05) == "not significant"
        xy, xx = (np.mean(g.values("demo", metric)) for g in (group_list[2], group_list[0]))
        assert win.delta == pytest.approx(xy - xx, abs=1e-5) and win.delta > 0  # float32 per query
        assert win.p_holm < 0.05 and win.test.low > 0 and win.verdict(0.05) == "better" and win.questions == 30
    text = render(sweep_tables(tmp_path))
    assert "| sampler=xy | demo | crosslingual_map | 3 / 3 | 30 |" in text and "| better |" in text and "| not significant |" in text
    assert " ▲" in text and "best by demo/crosslingual_map (max): sampler=xy" in text
    assert "Selected on demo, the set whose numbers are tested above" in text  # selection on the test set is said


def test_the_summary_equals_the_core_test_on_the_paired_rows_whatever_their_order(evalset, tmp_path):
    """The sweep summary's difference and p are the core test's (tests/test_stats.py calibrates it) on
    rows paired by identity: shuffling one run's per-query rows, and renumbering its queries as if its
    eval file came in another order, changes nothing in the summary."""
    write_strategies(tmp_path / "a", evalset, {"xx": 0.0, "hybrid": 0.5})
    text = render(sweep_tables(tmp_path / "a"))
    group_list = groups(read_jobs(tmp_path / "a"))
    [c] = [c for c in compare(group_list, None, ["demo"]) if c.metric.name == "multilingual_map"]
    paired = paired_values(group_list[::-1], "demo", c.metric)
    core = seeds_and_questions(paired.values[0], paired.values[1], paired.weights, paired.cells, paired.questions)
    assert (c.delta, c.test.p, c.test.low) == pytest.approx((core.delta, core.p, core.low), abs=1e-12)
    # the same runs, one per-query file shuffled with other row numbers
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    path = tmp_path / "b" / "4" / "checkpoints" / "per_query.parquet"
    table = pd.read_parquet(path)
    renumber = dict(zip(table["query"].unique(), np.random.default_rng(0).permutation(table["query"].unique())))
    table.assign(query=table["query"].map(renumber)).sample(frac=1.0, random_state=1).to_parquet(path)
    assert render(sweep_tables(tmp_path / "b")) == text


def test_a_run_missing_a_language_is_one_clear_error_or_compared_on_the_common_queries(evalset, tmp_path):
    write_strategies(tmp_path, evalset, {"xx": 0.0, "hybrid": 0.5})
    path = tmp_path / "4" / "checkpoints" / "per_query.parquet"
    table = pd.read_parquet(path)
    table[table["query_lang"] != "zh"].to_parquet(path)
    group_list = groups(read_jobs(tmp_path))
    with pytest.raises(ComparisonError, match=r"job 3 has 76 rows \(de 30, en 30, zh 16\), job 4 has 60 \(de 30, en 30\); 16 only in job 3 \(zh 16\), 0 only in job 4"):
        compare(group_list, None, ["demo"])
    tables = sweep_tables(tmp_path)
    assert tables["error"] and "Not compared: cannot pair the queries of 'demo'" in render(tables)
    with pytest.raises(SystemExit, match="summary.common_queries=true"):
        main([str(tmp_path)])
    restricted = compare(group_list, None, ["demo"], common=True)
    assert all("rows all runs share" in c.note for c in restricted)
    assert "on the " in render(sweep_tables(tmp_path, {"common_queries": True}))


def test_a_per_query_file_that_does_not_give_the_reported_metric_is_refused(evalset, tmp_path):
    write_strategies(tmp_path, evalset, {"xx": 0.0, "hybrid": 0.5})
    other = tmp_path / "2" / "checkpoints" / "per_query.parquet"
    (tmp_path / "0" / "checkpoints" / "per_query.parquet").write_bytes(other.read_bytes())  # another run's file
    with pytest.raises(ComparisonError, match="its per-query rows of 'demo' give monolingual_map"):
        compare(groups(read_jobs(tmp_path)), None, ["demo"])


def test_too_few_seeds_are_said_not_marked(evalset, tmp_path):
    write_strategies(tmp_path, evalset, {"xx": 0.0, "hybrid": 3.0}, seeds=(1, 2))
    text = render(sweep_tables(tmp_path))
    assert "2 seeds: add seeds to test the strategy (summary.min_seeds=3 per group)" in text
    seeds_table = text.split("Over seeds")[1].split("Against the baseline")[0]
    assert " ▲" not in seeds_table.split("\n", 1)[1] and " ▼" not in seeds_table.split("\n", 1)[1]  # marks only in the title
    assert "better" not in text.split("Against the baseline")[1].split("best by")[0]
    assert "no test made (the verdict column says why)" in text and "Holm over the" not in text
    tested = sweep_tables(tmp_path, {"min_seeds": 2})["comparisons"]  # two seeds tested when asked for: df ~1, weak
    assert tested and all(c.test is not None and 0 < c.test.p <= 1 for c in tested)


def test_selection_on_a_dev_set_is_not_tested_and_the_test_results_are_given_apart(evalset, tmp_path):
    n = 0
    for sampler, shift in (("xx", 0.0), ("hybrid", 3.0)):
        for seed in (1, 2, 3):
            folder = tmp_path / str(n)
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(f"- sampler={sampler}\n- seed={seed}\n")
            results = {"dev": scored(evalset, 7 * n + 1, shift), "test": scored(evalset, 7 * n + 2, shift)}
            write_results(folder / "checkpoints" / "results.json", {"step": 5, "final": True, "results": results})
            n += 1
    tables = sweep_tables(tmp_path, {"select_set": "dev"})
    assert {c.eval_set for c in tables["comparisons"]} == {"test"}
    best = tables["best"][0]
    assert best.startswith("best by dev/crosslingual_map (max): sampler=hybrid") and "Selected on the dev set dev" in best
    assert "test/crosslingual_map" in best and "(better)" in best and "optimistic" not in best


def test_each_group_is_tested_against_the_baseline_that_shares_its_other_overrides(evalset, tmp_path):
    """A factorial sweep (sampler x data size): hybrid at each size against X-X at the same size."""
    n = 0
    for size in (10, 20):
        for sampler in ("xx", "hybrid"):
            for seed in (1, 2, 3):
                write_job(tmp_path, n, [f"sampler={sampler}", f"data.max_examples={size}", f"seed={seed}"],
                          scored(evalset, 11 * n, 0.5 if sampler == "hybrid" else 0.0))
                n += 1
    pairs = [(g.key, b.key) for g, b, _ in matched_baselines(groups(read_jobs(tmp_path)), "sampler=xx")]
    assert pairs == [("sampler=hybrid data.max_examples=10", "sampler=xx data.max_examples=10"),
                     ("sampler=hybrid data.max_examples=20", "sampler=xx data.max_examples=20")]
    assert "| against |" in render(sweep_tables(tmp_path))


def test_a_group_whose_every_baseline_differs_in_another_override_is_not_tested(evalset, tmp_path, capsys):
    """A partial sweep: the baseline (random) arm has X-X runs only, the mined arm X-X and hybrid.
    Mined hybrid must not be tested against random X-X, which differs in the sampler too: its row
    says so and it is not counted in Holm. Mined X-X against random X-X still is."""
    n = 0
    for files, samplers in (("random.jsonl", ("xx",)), ("mined.jsonl", ("xx", "hybrid"))):
        for sampler in samplers:
            for seed in (1, 2, 3):
                write_job(tmp_path, n, [f"sampler={sampler}", f"data.files={files}", f"seed={seed}"],
                          scored(evalset, 17 * n, 0.5 if sampler == "hybrid" else 0.0))
                n += 1
    group_list = groups(read_jobs(tmp_path))
    pairs = [(g.key, b and b.key, why) for g, b, why in matched_baselines(group_list, "data.files=random.jsonl")]
    assert pairs[0] == ("sampler=xx data.files=mined.jsonl", "sampler=xx data.files=random.jsonl", "")
    assert pairs[1][:2] == ("sampler=hybrid data.files=mined.jsonl", None) and "sampler=hybrid" in pairs[1][2]
    made = compare(group_list, "data.files=random.jsonl", ["demo"])
    untested = [c for c in made if c.test is None]
    assert untested and {c.group for c in untested} == {"sampler=hybrid data.files=mined.jsonl"}
    assert all(c.test is not None for c in made if c.group == "sampler=xx data.files=mined.jsonl")
    tested = [c for c in made if c.test is not None]
    assert len(tested) == len(made) - len(untested) > 0  # Holm over the tests made, the untested rows not counted:
    assert [c.p_holm for c in tested] == pytest.approx(list(multipletests([c.test.p for c in tested], method="holm")[1]))
    main([str(tmp_path), "baseline=data.files=random.jsonl"])
    out = capsys.readouterr().out
    hybrid_row = next(line for line in out.splitlines() if line.startswith("| sampler=hybrid data.files=mined.jsonl |")
                      and "untested" in line)
    assert "no baseline group (data.files=random.jsonl) has its sampler=hybrid" in hybrid_row and "nan" not in hybrid_row


def test_several_sweeps_compared_as_one_with_a_baseline_from_the_resolved_config(evalset, tmp_path, capsys):
    """python -m mdr.sweep DIR DIR: runs of another sweep whose config has the baseline value
    without overriding it (no hard negatives) are the baseline of runs that override it."""
    for sweep, negatives, shift in (("none", 0, 0.0), ("mined", 1, 0.6)):
        for seed in (1, 2, 3):
            overrides = ["sampler=xx", f"seed={seed}"] + ([f"data.num_hard_negatives={negatives}"] if negatives else [])
            folder = write_job(tmp_path / sweep, seed, overrides, scored(evalset, 13 * seed + negatives, shift))
            (folder / ".hydra" / "config.yaml").write_text(f"data:\n  num_hard_negatives: {negatives}\nseed: {seed}\n")
    main([str(tmp_path / "none"), str(tmp_path / "mined"), "baseline=data.num_hard_negatives=0"])
    out = capsys.readouterr().out
    assert "| data.num_hard_negatives=1 | demo | crosslingual_map | 3 / 3 |" in out and "| none/1 |" in out
    assert list((tmp_path / "none").glob("summary-*.md")) and list((tmp_path / "none").glob("summary-*_forest.png"))


def test_the_forest_plot_shows_each_tested_difference_and_its_interval(evalset, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    write_strategies(tmp_path, evalset, {"xx": 0.0, "xy": 3.0, "hybrid": 0.0})
    tables = sweep_tables(tmp_path)
    text = write_summary(tmp_path, tables, 0.05)
    assert (tmp_path / FOREST_FILE).stat().st_size > 5000 and f"Forest plot: {tmp_path / FOREST_FILE}" in text
    assert (tmp_path / "summary.md").read_text().startswith("| job | run | status | eval set |")
    # what it draws is the comparison table's: one row per compared group, each difference in its interval,
    # coloured by the Holm verdict (xy, its queries moved towards their answers, is better in every metric)
    labels, points = forest_points(tables["comparisons"], 0.05)
    assert labels == ["sampler=xy @ demo", "sampler=hybrid @ demo"]
    tested = [c for c in tables["comparisons"] if c.test is not None]
    assert len(points) == len(tested) == 6
    for c, p in zip(tested, points):
        assert (p["metric"], labels[p["row"]], p["delta"]) == (c.metric.name, f"{c.group} @ {c.eval_set}", c.delta)
        assert p["low"] <= p["delta"] <= p["high"]
        verdict = ("tab:green" if c.better else "tab:red") if c.p_holm < 0.05 else "tab:grey"
        assert p["colour"] == verdict
    assert {p["colour"] for p in points if p["row"] == 0} == {"tab:green"}


def test_the_seed_table_keeps_an_interval_inside_the_metrics_range(evalset, tmp_path):
    """Three seeds of a same-language-first rate near 1: the t interval would pass 1; the table cuts it at 1."""
    for n, rate in enumerate([0.9815, 0.9881, 0.9947]):
        results = scored(evalset, n)
        results["same_language_first"] = rate
        write_job(tmp_path, n, ["sampler=xx", f"seed={n + 1}"], results)
    cell = sweep_tables(tmp_path)["seeds"][1][0]["same-lang-1st"]
    assert cell.startswith("0.9881 ±0.0066 [") and cell.endswith(", 1.0000]")


def test_a_finished_sweep_resummarised_against_another_baseline(evalset, tmp_path, capsys):
    """python -m mdr.sweep DIR baseline="..." : a baseline of several overrides, checked options,
    and a misspelled selection metric said, not dropped."""
    n = 0
    for sampler, pairs in [("xy", "per_batch"), ("xy", "per_example"), ("hybrid", "per_batch"), ("hybrid", "per_example")]:
        for seed in (1, 2, 3):
            write_job(tmp_path, n, [f"sampler={sampler}", f"sampler.xy_pairs={pairs}", f"seed={seed}"], scored(evalset, n, shift=float(n // 3)))
            n += 1
    main([str(tmp_path), "baseline=sampler=hybrid sampler.xy_pairs=per_batch"])
    text = capsys.readouterr().out
    assert "Against the baseline (sampler=hybrid sampler.xy_pairs=per_batch)" in text
    assert "| sampler=hybrid sampler.xy_pairs=per_example | demo | multilingual_map |" in text
    assert "| sampler=hybrid sampler.xy_pairs=per_batch | demo | multilingual_map |" not in text
    # each strategy against its own per-batch group: the forest plot's rows say which baseline
    labels, _ = forest_points(sweep_tables(tmp_path, {"baseline": "sampler.xy_pairs=per_batch"})["comparisons"])
    assert [label.replace("\n", " ") for label in labels] == [
        "sampler=xy sampler.xy_pairs=per_example vs sampler=xy sampler.xy_pairs=per_batch @ demo",
        "sampler=hybrid sampler.xy_pairs=per_example vs sampler=hybrid sampler.xy_pairs=per_batch @ demo"]
    main([str(tmp_path), "select_metric=crosslingual_mAP"])
    assert "best by demo/crosslingual_mAP: no run has this metric" in capsys.readouterr().out
    for args, message in [([str(tmp_path), "alpha=abc"], "summary.alpha must be a number"),
                          ([str(tmp_path), "baselin=sampler=xy"], r"unknown summary option\(s\) \['baselin'\]"),
                          ([str(tmp_path), "select_mode=up"], "summary.select_mode must be max, min or null"),
                          ([str(tmp_path), "min_seeds=1"], "summary.min_seeds must be >= 2"),
                          ([str(tmp_path), "baseline=sampler=xx"], "summary.baseline='sampler=xx' matches no run group"),
                          ([str(tmp_path / "nope")], "not a sweep folder")]:
        with pytest.raises(SystemExit, match=message):
            main(args)


def test_the_sweeper_objective_is_the_selection_metric_and_a_misspelling_is_said(caplog):
    cfg = OmegaConf.create({"summary": {"select_set": None, "select_metric": None}})  # the declared selection metric
    results = {"demo": {"crosslingual_map": 0.25, "monolingual_map": 0.5}}
    assert objective(cfg, results) == 0.25 and math.isnan(objective(cfg, None))
    cfg.summary.select_metric = "cross_map"
    assert math.isnan(objective(cfg, results))
    assert "demo/cross_map is not in this run's results" in caplog.text and "crosslingual_map" in caplog.text


@pytest.mark.parametrize("option, message", [
    ("summary.alpha=5", "error: summary.alpha must be > 0 and <= 1, got 5"),
    ("summary.select_metric=cross_map", "error: summary.select_metric='cross_map' is not a metric of eval set 'demo' "
                                        "(it declares: monolingual_map, crosslingual_map, multilingual_map, rank_distance"),
    ("summary.select_set=dev", "error: summary.select_set='dev' is not an eval set of this sweep (eval.sets: ['demo'])"),
])
def test_a_bad_summary_option_fails_the_sweep_before_its_jobs(corpus, tmp_path, option, message):
    sweep = tmp_path / "sweep"
    out = run_script([str(ROOT / "train.py"), "-m", *base_overrides(corpus), "sampler=xx,hybrid", option,
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert out.returncode == 1 and message in out.stderr, out.stderr[-2000:]
    assert not (sweep / "0").exists()


def test_a_seed_sweep_summary_and_its_wandb_dashboard(corpus, tmp_path):
    """python train.py -m sampler=xx,hybrid seed=1,2 logger=wandb (offline): the summary groups seeds,
    compares hybrid with xx (two seeds: shown, not tested), names the best; W&B runs carry names, tags
    and choices, and the summary tables land in a run of the sweep's group."""
    sweep = tmp_path / "sweep"
    out = run_script([str(ROOT / "train.py"), "-m", *base_overrides(corpus), "trainer.max_steps=3", "sampler=xx,hybrid",
                      "seed=1,2", "logger=wandb", f"hydra.sweep.dir={sweep}"],
                     tmp_path, env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "Over seeds: mean ±sd [95 % t interval]" in summary and "| sampler=hybrid | 2 | demo |" in summary
    assert "Against the baseline (sampler=xx)" in summary and "best by demo/crosslingual_map (max): sampler=" in summary
    assert "2 seeds: add seeds to test the strategy" in summary
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


def test_a_sweep_over_a_number_draws_its_curves_with_the_tables_values(evalset, tmp_path):
    """sampler x data.max_examples over three seeds: a PNG per eval set, whose points are the seed
    table's means and whose differences are the significance table's, per size."""
    n = 0
    for size in (10, 20, 40):
        for sampler in ("xx", "hybrid"):
            for seed in (1, 2, 3):
                write_job(tmp_path, n, [f"sampler={sampler}", f"data.max_examples={size}", f"seed={seed}"],
                          scored(evalset, 17 * n, 0.3 * (sampler == "hybrid") + 0.1 * size / 10))
                n += 1
    tables = sweep_tables(tmp_path)
    text = write_summary(tmp_path, tables, 0.05)
    [png] = tables["curves"]
    assert png.name == "summary_curves-demo.png" and png.stat().st_size > 5000 and str(png) in text
    from mdr.comparison import groups as group_runs
    from mdr.curves import means_table, swept_value

    group_list = group_runs(read_jobs(tmp_path))
    swept = swept_value([g.key for g in group_list])
    means = means_table(group_list, swept).set_index(["strategy", "x", "metric"])
    hybrid20 = next(g for g in group_list if g.key == "sampler=hybrid data.max_examples=20")
    assert means.loc[("sampler=hybrid", 20.0, "crosslingual_map"), "mean"] == pytest.approx(np.mean(hybrid20.values("demo", "crosslingual_map")))
    pairs = {(c.group, c.baseline) for c in tables["comparisons"]}
    assert ("sampler=hybrid data.max_examples=40", "sampler=xx data.max_examples=40") in pairs


def test_a_p_value_below_the_printed_precision_is_not_printed_as_zero():
    assert [p_text(p) for p in (0.0, 4e-5, 6e-5, 0.01234, 1.0)] == ["<0.0001", "<0.0001", "0.0001", "0.0123", "1.0000"]
