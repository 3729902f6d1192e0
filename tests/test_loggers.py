"""W&B grouping of a sweep's runs."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

from src.loggers import sweep_name, wandb_logger

ROOT = Path(__file__).resolve().parents[1]


def test_runs_of_a_multirun_share_a_group_named_after_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.sweep.dir={tmp_path}/train-sweep/2026-01-01_10-00-00"],
                      return_hydra_config=True)
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
