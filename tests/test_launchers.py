"""Cluster launchers: the SLURM config composes to submitit's launcher, and a real submitit
(local executor) multirun runs jobs in fresh processes, survives a failing job and summarises."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import ROOT, base_overrides, run_script

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")


def test_slurm_launcher_config():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
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
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=paper", "hydra/launcher=slurm"], return_hydra_config=True)
    assert dict(cfg.hydra.sweeper.params) == {"sampler": "xx,xy,hybrid", "model": "labse,xlmr"}
    assert cfg.data.files._target_ == "mdr.data.sources.mmarco.build_mmarco" and set(cfg.eval.sets) == {"xquad_r", "mlqa_r", "miracl"}
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == cfg.hydra.launcher.gpus_per_node
