"""The paper's Tables 1, 2, 3-8 and 12-13 from a sweep folder: seeds pooled with t intervals, each
cell beside the published figure, and what was not run or not evaluated printed as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mdr.comparison import read_jobs
from mdr.errors import ConfigError
from mdr.formats.results import write_results
from mdr.paper_tables import describe_groups, main, paper_tables
from mdr.reference.published import published_column

XQUAD = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
MIRACL = ["sw", "bn", "hi", "ko", "th", "te", "fi", "ja", "es", "fr", "ru", "zh", "fa", "ar", "id"]
LAREQA_METRICS = ["monolingual_map", "crosslingual_map", "multilingual_map", "monolingual_recall_at_1",
                  "crosslingual_recall_at_1", "multilingual_recall_at_10", "rank_distance"]


def offset(seed: int) -> float:
    return 0.01 * seed


def results_like_the_paper(family: str, batching: str, seed: int, drop: str | None = None) -> dict:
    """Per-language results equal to the published ones of (family, batching) plus ``offset(seed)``
    (x 100 for rank distances); MIRACL too; ``drop``: leave that XQuAD-R language out."""
    xquad = {}
    for metric in LAREQA_METRICS:
        _, column = published_column("xquad_r", family, metric, batching)
        scale = 100 if metric == "rank_distance" else 1
        xquad[f"{metric}_per_lang"] = {lang: column[lang] + scale * offset(seed) for lang in XQUAD if lang != drop}
    xquad["languages"] = [lang for lang in XQUAD if lang != drop]
    miracl = {}
    for metric in ("ndcg_at_10", "recall_at_100"):
        _, column = published_column("miracl", family, metric, batching)
        miracl[f"{metric}_per_lang"] = {lang: column[lang] + offset(seed) for lang in MIRACL}
    return {"xquad_r": xquad, "miracl": miracl}


def write_job(sweep: Path, number: int, overrides: list[str], model: str, sampler: str, results: dict) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    write_results(folder / "checkpoints" / "results.json",
                  {"step": 5, "final": True, "model": model, "choices": {"sampler": sampler}, "results": results})


def write_sweep(tmp_path) -> Path:
    """LaBSE X-X over three seeds, LaBSE hybrid over one, and a model without a published counterpart
    (X-Y); XQuAD-R and MIRACL evaluated, MLQA-R not."""
    number = 0
    for seed in (1, 2, 3):
        write_job(tmp_path, number, ["sampler=xx", f"seed={seed}"], "setu4993/LaBSE", "xx", results_like_the_paper("LaBSE", "xx", seed))
        number += 1
    write_job(tmp_path, number, ["sampler=hybrid", "seed=1"], "setu4993/LaBSE", "hybrid", results_like_the_paper("LaBSE", "hybrid", 1))
    write_job(tmp_path, number + 1, ["sampler=xy", "seed=1"], "tiny", "xy", results_like_the_paper("LaBSE", "xy", 4))
    return tmp_path


@pytest.fixture
def sweep(tmp_path) -> Path:
    return write_sweep(tmp_path)


def by_title(tables, start: str):
    [table] = [t for t in tables if t.title.startswith(start)]
    return table


def interval(values) -> str:
    mean, sem = np.mean(values), stats.sem(values)
    half = stats.t.ppf(0.975, len(values) - 1) * sem
    return f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}]"


def test_per_language_cells_pool_seeds_and_sit_beside_the_published_figures(sweep):
    tables = paper_tables(read_jobs(sweep))
    mono = by_title(tables, "Table 5: Evaluation of Fine-tuned LaBSE Model on XQuAD-R Dataset: Monolingual MAP").frame.set_index("language")
    _, published = published_column("xquad_r", "LaBSE", "monolingual_map", "xx")
    # X-X: three seeds, ours = published + 0.01 s: mean +0.02, the t interval of the three
    assert mono.loc["de", "X-X"] == interval([published["de"] + offset(s) for s in (1, 2, 3)])
    assert (mono.loc["de", "X-X (paper)"], mono.loc["de", "X-X Δ"]) == ("0.8152", "+0.0200")
    # hybrid: one seed, no interval; X-Y: no LaBSE run (the tiny model has no published counterpart)
    _, hybrid = published_column("xquad_r", "LaBSE", "monolingual_map", "hybrid")
    assert (mono.loc["el", "hybrid"], mono.loc["el", "hybrid (paper)"], mono.loc["el", "hybrid Δ"]) == (
        f"{hybrid['el'] + 0.01:.4f}", "0.8121", "+0.0100")
    assert (mono.loc["el", "X-Y"], mono.loc["el", "X-Y Δ"], mono.loc["el", "X-Y (paper)"]) == ("—", "—", "0.7991")
    # the Mean row: each run's mean over the 11 languages, then over seeds
    means = [np.mean([published[lang] + offset(s) for lang in XQUAD]) for s in (1, 2, 3)]
    assert mono.loc["Mean", "X-X"] == interval(means) and mono.loc["Mean", "X-X (paper)"] == "0.8083"
    assert list(mono.index) == XQUAD + ["Mean"]

    r10 = by_title(tables, "Table 5: Evaluation of Fine-tuned LaBSE Model on XQuAD-R Dataset: Multilingual R@10").frame
    assert r10.set_index("language").loc["vi", "hybrid (paper)"] == "0.5964"
    rank = by_title(tables, "Table 7: Average Rank Distance over XQuAD-R Dataset: LaBSE rank distance").frame.set_index("language")
    assert (rank.loc["ar", "X-X (paper)"], rank.loc["ar", "X-X Δ"]) == ("332.4", "+2.0")
    _, hybrid_rank = published_column("xquad_r", "LaBSE", "rank_distance", "hybrid")
    assert rank.loc["Mean", "hybrid"] == f"{np.mean([hybrid_rank[x] + 1 for x in XQUAD]):.1f}"  # seed 1: +1 rank
    miracl = by_title(tables, "Table 13: Evaluation of Fine-tuned LaBSE Model on MIRACL Dev Dataset: nDCG@10").frame.set_index("language")
    assert list(miracl.index) == MIRACL + ["Mean", "Median"]
    assert miracl.loc["Median", "hybrid (paper)"] == "0.4381" and miracl.loc["Median", "hybrid Δ"] == "+0.0100"

    # what the sweep does not have is said, not filled in
    assert by_title(tables, "Table 3: Evaluation of Fine-tuned XLM-R Model on XQuAD-R Dataset: Monolingual MAP").note == \
        "no XLM-R run in this sweep"
    assert by_title(tables, "Table 6: Evaluation of Fine-tuned LaBSE Model on MLQA-R Dataset: Monolingual MAP").note == \
        "MLQA-R was not evaluated in this sweep"
    xlmr_rank = by_title(tables, "Table 7: Average Rank Distance over XQuAD-R Dataset: XLM-R rank distance")
    assert xlmr_rank.frame is None and xlmr_rank.note == "no XLM-R run in this sweep"


def test_tables_1_and_2_are_the_means_over_the_papers_languages(sweep):
    tables = paper_tables(read_jobs(sweep))
    t1 = by_title(tables, "Table 1, XQuAD-R").frame.set_index(["model", "batching"])
    _, cross = published_column("xquad_r", "LaBSE", "crosslingual_map", "xx")
    means = [np.mean([cross[lang] + offset(s) for lang in XQUAD]) for s in (1, 2, 3)]
    assert t1.loc[("LaBSE", "X-X"), "Cr"] == interval(means) and t1.loc[("LaBSE", "X-X"), "Cr (paper)"] == "0.752"
    assert t1.loc[("XLM-R", "hybrid"), "Mo"] == "—" and t1.loc[("XLM-R", "hybrid"), "Mo (paper)"] == "0.798"
    assert by_title(tables, "Table 1, MLQA-R").frame is None
    t2 = by_title(tables, "Table 2").frame.set_index(["model", "batching"])
    assert t2.loc[("LaBSE", "hybrid"), "XQuAD-R (paper)"] == "221.1" and t2.loc[("LaBSE", "hybrid"), "MLQA-R"] == "—"
    assert "MLQA-R was not evaluated" in by_title(tables, "Table 2").note


def test_runs_over_other_languages_are_not_compared_and_stand_ins_need_a_family(tmp_path):
    xx = results_like_the_paper("LaBSE", "xx", 1, drop="th")
    del xx["miracl"]["ndcg_at_10_per_lang"]["sw"]
    write_job(tmp_path, 0, ["sampler=xx"], "minilm", "xx", xx)
    write_job(tmp_path, 1, ["sampler=hybrid"], "minilm", "hybrid", results_like_the_paper("LaBSE", "hybrid", 1))
    jobs = read_jobs(tmp_path)
    assert all(t.frame is None or (t.frame.filter(regex=r"^(X-X|hybrid|Mo|Cr|Mul|XQuAD-R|MLQA-R)$") == "—").all().all()
               for t in paper_tables(jobs))  # MiniLM matches no published family
    tables = paper_tables(jobs, family="LaBSE")
    mono = by_title(tables, "Table 5: Evaluation of Fine-tuned LaBSE Model on XQuAD-R Dataset: Monolingual MAP").frame.set_index("language")
    # 10 of the 11 languages: other pools, so no XQuAD-R cell of that run compares; the hybrid run's do
    assert (mono["X-X"] == "—").all() and (mono["hybrid"] != "—").all()
    # MIRACL's languages are evaluated each on its own: the others compare, the Mean and Median do not
    ndcg = by_title(tables, "Table 13: Evaluation of Fine-tuned LaBSE Model on MIRACL Dev Dataset: nDCG@10").frame.set_index("language")
    assert ndcg.loc["sw", "X-X"] == ndcg.loc["Mean", "X-X"] == ndcg.loc["Median", "X-X"] == "—" and ndcg.loc["bn", "X-X"] != "—"
    assert "LaBSE / X-X: runs `sampler=xx`, 1 seed(s), model minilm, standing in for LaBSE; not compared (other pools): " \
        "XQuAD-R over 10 of the paper's 11 languages" in describe_groups(jobs, "LaBSE")
    with pytest.raises(ConfigError, match="--family must be one of"):
        paper_tables(jobs, family="MiniLM")
    write_job(tmp_path, 2, ["sampler=xx", "optim.lr=1e-5"], "setu4993/LaBSE", "xx", results_like_the_paper("LaBSE", "xx", 2))
    with pytest.raises(ConfigError, match="several run groups are LaBSE / xx"):
        paper_tables(read_jobs(tmp_path), family="LaBSE")


def test_the_command_prints_every_table_as_markdown(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    for number in (1, 2, 3, 4, 5, 6, 7, 8, 12, 13):
        assert f"### Table {number}" in out
    assert "- LaBSE / X-X: runs `sampler=xx`, 3 seed(s), model setu4993/LaBSE" in out
    assert "| language | X-X | X-X (paper) | X-X Δ | X-Y | X-Y (paper) | X-Y Δ | hybrid | hybrid (paper) | hybrid Δ |" in out
    assert "(MLQA-R was not evaluated in this sweep)" in out
    assert main([str(sweep / "nope")]) == 2
