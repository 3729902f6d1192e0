"""The notebooks run top to bottom: the results notebook on real outputs of a tiny training run and a
sweep, the paper-tables notebook on a sweep folder of several seeds."""

import json
from pathlib import Path

import matplotlib
from omegaconf import OmegaConf

from mdr.sweep import SweepSummary
from mdr.tasks import train
from tests.helpers import base_overrides, compose_train
from tests.test_paper_tables import by_title, write_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_cells_execute(corpus, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    run_dir = tmp_path / "outputs" / "train-sweep" / "t0" / "0"
    run_dir.mkdir(parents=True)
    monkeypatch.chdir(run_dir)
    train(compose_train(base_overrides(corpus) + ["trainer.fast_dev_run=1"]))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "overrides.yaml").write_text("- sampler=hybrid\n")
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(run_dir.parent)}}}))
    assert (run_dir.parent / "summary.csv").exists()

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.chdir(ROOT)
    nb = json.loads((ROOT / "notebooks" / "explore_results.ipynb").read_text())
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)
    assert namespace["latest"]["results"]["demo"]["multilingual_map"] > 0


def test_the_paper_tables_notebook_lays_out_every_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SWEEP_DIR", str(write_sweep(tmp_path)))
    nb = json.loads((ROOT / "notebooks" / "paper_tables.ipynb").read_text())
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)
    tables = namespace["tables"]
    assert [t.number for t in tables][:3] == ["1", "1", "2"] and {t.number for t in tables} >= {"3", "8", "12", "13"}
    assert "LaBSE / X-X: runs `sampler=xx`, 3 seed(s)" in capsys.readouterr().out
    mono = by_title(tables, "Table 5: Evaluation of Fine-tuned LaBSE Model on XQuAD-R Dataset: Monolingual MAP").frame
    assert mono.set_index("language").loc["de", "X-X Δ"] == "+0.0200"
