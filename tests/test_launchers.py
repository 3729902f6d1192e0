"""Cluster launchers: the SLURM config composes to submitit's launcher, and a real submitit
(local executor) multirun runs jobs in fresh processes, survives a failing job and summarises."""

from __future__ import annotations

import pytest
from tests.helpers import ROOT, base_overrides, compose_config, run_script

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")


def test_slurm_launcher_config():
    cfg = compose_config("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 8, 8)


def test_submitit_multirun_with_one_failing_job(corpus, tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_script(
        [str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", *base_overrides(corpus), "trainer.max_steps=2",
         "sampler=hybrid", "sampler.alpha=0.5,7", f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
    )
    assert out.returncode == 1, out.stderr[-3000:]
    table = (sweep_dir / "summary.md").read_text()
    assert len([line for line in table.splitlines() if "| ok |" in line]) == 1
    assert "sampler.alpha must be in [0, 1], got 7" in table
    assert any(sweep_dir.glob(".submitit/*/*_log.out"))  # really went through submitit


def test_experiment_paper_sweeps_samplers_by_models():
    """The paper's protocol: one GPU, batch 100, lr 3e-5, mMARCO's 7 languages, SQuADShifts validation
    with early stopping, every benchmark; the DDP variant keeps the global batch of 100."""
    cfg = compose_config("train", ["experiment=paper", "hydra/launcher=slurm"], return_hydra_config=True)
    ddp = compose_config("train", ["experiment=paper_ddp"])
    assert dict(cfg.hydra.sweeper.params) == {"sampler": "xx,xy,hybrid", "model": "labse,xlmr"}
    assert cfg.data.files._target_ == "mdr.data.sources.mmarco.build_mmarco" and set(cfg.eval.sets) == {"xquad_r", "mlqa_r", "miracl"}
    assert sorted(cfg.data.files.languages) == sorted(["en", "ar", "zh", "de", "es", "ru", "hi"])
    assert (cfg.trainer.devices, cfg.data.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == (1, 100, 3e-5, 0.01)
    assert (cfg.model.query_prefix, cfg.model.passage_prefix, cfg.sampler.temperature) == ("Query: ", "Passage: ", 0.0)
    assert cfg.data.val_files._target_ == "mdr.data.sources.squadshifts.build_squadshifts" and list(cfg.data.val_languages) == ["en"]
    assert cfg.val.monitor == "val/loss" and cfg.val.patience and len(cfg.eval.sets.miracl.languages) == 15
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.devices * ddp.data.batch_size == 100
