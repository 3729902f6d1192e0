"""Experiment loggers (config group ``logger``): ``wandb`` (default), ``csv``, ``none``.

W&B without credentials falls back to offline mode and says so in one line, with the command
that uploads the run later. Runs of one Hydra multirun share a W&B group named after the sweep.
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mdr.config import instantiate


def build_loggers(cfg: DictConfig, out: str) -> list | bool:
    """The configured logger (``False`` for ``logger=none``), with the whole resolved config
    logged as hyperparameters."""
    if cfg.logger is None or not cfg.logger.get("_target_"):
        return False
    logger = instantiate(cfg.logger, save_dir=out)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return [logger]



def sweep_name() -> str | None:
    """The sweep's folder name when running under ``-m``, else None."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return os.path.basename(os.path.normpath(hc.sweep.dir))


def _has_wandb_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(
    save_dir: str,
    project: str = "multilingual-retrieval",
    name: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
):
    from lightning.pytorch.loggers import WandbLogger

    mode = os.environ.get("WANDB_MODE", "").lower()
    offline = mode in ("offline", "dryrun") or (mode != "disabled" and not _has_wandb_credentials())
    if offline and mode not in ("offline", "dryrun"):
        print(
            f"W&B: no credentials found, logging offline to {save_dir}/wandb; "
            f"upload later with: wandb sync {save_dir}/wandb/offline-run-*"
        )
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        entity=entity,
        group=group or sweep_name(),
        tags=list(tags or []),
        offline=offline,
    )
