"""W&B grouping of a sweep's runs."""

import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

from mdr.loggers import sweep_name, wandb_logger
from tests.helpers import compose_config


def test_runs_of_a_multirun_share_a_group_named_after_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("train", [f"hydra.sweep.dir={tmp_path}/train-sweep/2026-01-01_10-00-00"], return_hydra_config=True)
    try:
        with read_write(cfg.hydra):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        assert sweep_name() == "2026-01-01_10-00-00"
        logger = wandb_logger(save_dir=str(tmp_path / "run"))
        assert logger._wandb_init["group"] == "2026-01-01_10-00-00"
        assert wandb_logger(save_dir=str(tmp_path / "run"), group="mine")._wandb_init["group"] == "mine"
        with read_write(cfg.hydra):
            cfg.hydra.mode = RunMode.RUN
        HydraConfig.instance().set_config(cfg)
        assert sweep_name() is None
    finally:
        HydraConfig.instance().cfg = None


def test_eval_results_reach_wandb_as_metrics_table_and_heatmap(tmp_path, monkeypatch):
    import torch
    import wandb

    from mdr.evaluation.callback import log_results
    from mdr.evaluation.pools import parallel_eval, score_embeddings
    from tests.helpers import make_rows, write_jsonl

    monkeypatch.setenv("WANDB_MODE", "offline")
    es = parallel_eval("demo", write_jsonl(tmp_path / "e.jsonl", make_rows(6, ["en", "de"], seed=4)))
    emb = torch.nn.functional.normalize(torch.randn(len(es.query_text), 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    results = {"demo": score_embeddings(es, emb, emb)}
    logger = wandb_logger(save_dir=str(tmp_path))
    log_results([logger], results, step=3, out_dir=str(tmp_path))
    run_dir = Path(logger.experiment.dir)
    logged = dict(logger.experiment.summary)
    wandb.finish()
    assert (tmp_path / "demo_matrix.png").stat().st_size > 1000
    assert list(run_dir.glob("media/images/eval/demo/heatmap*.png"))
    [table] = run_dir.glob("media/table/eval/demo/matrix*.table.json")
    assert json.loads(table.read_text())["columns"] == ["query \\ pool", "de", "en"]
    assert logged["eval/demo/multilingual_map"] == results["demo"]["multilingual_map"]


def test_run_names_say_what_a_run_differs_in():
    from mdr.loggers import run_name

    choices = {"sampler": "hybrid", "model": "labse", "data": "demo"}
    assert run_name(choices, ["sampler=hybrid", "model=labse", "seed=1"], 1) == "hybrid-labse-s1"
    assert run_name(choices, ["sampler.alpha=0.25", "data=mmarco", "data.files=/x/y.jsonl", "logger=wandb",
                              "trainer.max_steps=3", "optim.lr=3e-5", "seed=2"], 2) == "hybrid-labse-alpha0.25-mmarco-lr3e-5-s2"
