"""Experiment loggers (config group ``logger``): ``wandb`` (default), ``csv``, ``none``.

W&B without credentials falls back to offline mode and says so in one line, with the command
that uploads the run later. Runs of one Hydra multirun share a W&B group named after the sweep.
One W&B run per job: its id is kept in ``<run>/wandb/run_id``, and a job that resumes from a
checkpoint (``mdr.resume``) continues that run (Lightning's ``resume="allow"``), online or offline;
a job that starts afresh starts a new run.
"""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import string
from urllib.parse import urlparse

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mdr.config import instantiate


def build_loggers(cfg: DictConfig, out: str, choices: dict | None = None, overrides: list[str] | None = None,
                  record: dict | None = None, resume: bool = False) -> list | bool:
    """The configured logger (``False`` for ``logger=none``), with the whole resolved config, the
    chosen config options (``choices``) and ``record`` (what the run found, e.g. the data it kept)
    logged as hyperparameters. A W&B run without a configured name is named after its options
    (``hybrid-labse-alpha0.25-s1``) and tagged with them; ``resume`` (the job goes on from a
    checkpoint): it continues the job's W&B run."""
    if cfg.logger is None or not cfg.logger.get("_target_"):
        return False
    choices = dict(choices or {})
    extra = {}
    if str(cfg.logger._target_).endswith("wandb_logger"):
        extra["name"] = cfg.logger.get("name") or run_name(choices, overrides or [], cfg.get("seed"))
        extra["tags"] = [f"{k}:{v}" for k, v in choices.items()] + [f"seed:{cfg.get('seed')}"] + list(cfg.logger.get("tags") or [])
        extra["resume"] = resume
    logger = instantiate(cfg.logger, save_dir=out, **extra)
    logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "choices": {**choices, "seed": cfg.get("seed")},
                            **(record or {})})
    return [logger]


def finish_loggers(loggers, preempted: bool = False) -> None:
    """End the W&B run of this job: the next job of a multirun (same process) starts its own run
    instead of logging into this one. ``preempted``: W&B is told first (``mark_preempting``)."""
    if not any(type(logger).__name__ == "WandbLogger" for logger in loggers or []):
        return
    import wandb

    run = wandb.run  # the job's run, if it was started (a WandbLogger starts it only when first used)
    if run is not None:
        if preempted:
            run.mark_preempting()
        run.finish()


NAMED_GROUPS = ("data", "eval", "experiment")  # group choices that name a run (beside sampler and model)
NAMED_SECTIONS = ("sampler.", "optim.", "loss.")  # value overrides that name a run: the training strategy


def run_name(choices: dict, overrides: list[str], seed) -> str:
    """``<sampler>-<model>[-<data/eval/experiment choices>][-<strategy values>]-s<seed>``, e.g.
    ``hybrid-labse-alpha0.25-s1``: what a run differs in, readable in a W&B list. Paths, logging and
    Trainer options are left out."""
    parts = [choices.get("sampler"), choices.get("model")]
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in NAMED_GROUPS:
            parts.append(value)
        elif key.startswith(NAMED_SECTIONS) and value:
            parts.append(f"{key.rsplit('.', 1)[-1]}{value}")
    parts.append(f"s{seed}")
    return "-".join(str(p) for p in parts if p)[:128]


def sweep_name() -> str | None:
    """The sweep's folder name when running under ``-m``, else None."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return os.path.basename(os.path.normpath(hc.sweep.dir))


WANDB_URL = "https://api.wandb.ai"


def _has_wandb_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where `wandb login` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_URL)).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _unreachable(url: str, timeout: float) -> str | None:
    """Why the W&B server cannot be reached over TCP within ``timeout`` seconds, or None. Behind a
    proxy only wandb itself can tell, so no probe is made there."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return None
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{parsed.hostname}:{port}: {e.strerror or type(e).__name__}"
    return None


RUN_ID_FILE = "run_id"


def job_run_id(save_dir: str, resume: bool) -> str | None:
    """The W&B run id of the job in ``save_dir``: the stored one when the job resumes, else a new one,
    stored in ``<save_dir>/wandb/run_id`` (by global rank 0, the one that logs)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    path = os.path.join(save_dir, "wandb", RUN_ID_FILE)
    if resume and os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            stored = fh.read().strip()
        if stored:
            return stored
    if getattr(rank_zero_only, "rank", 0):
        return None
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # as W&B makes them
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(run_id + "\n")
    return run_id


def _offline_line(save_dir: str, why: str) -> str:
    return f"W&B: {why}, logging offline to {save_dir}/wandb; upload later with: wandb sync {save_dir}/wandb/offline-run-*"


def wandb_logger(
    save_dir: str,
    project: str = "multilingual-retrieval",
    name: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    init_timeout: float = 30.0,
    resume: bool = False,
):
    """A W&B logger that never loses the run: without credentials, without a reachable server, or
    when starting the online run fails (bad key, timeout), it logs offline and says so in one line
    with the command that uploads the run later. The online run is started here, before training.
    ``resume``: continue the W&B run of the job in ``save_dir`` (``job_run_id``) instead of a new one."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    if os.environ.get("WANDB_MODE") == "":
        del os.environ["WANDB_MODE"]  # set but empty: wandb rejects it, we read it as "not set"
    mode = os.environ.get("WANDB_MODE", "").lower()
    offline = mode in ("offline", "dryrun")
    why = None
    if not offline and not _has_wandb_credentials():
        why = "no credentials found"
    elif not offline:
        url = os.environ.get("WANDB_BASE_URL", WANDB_URL)
        reason = _unreachable(url, timeout=min(5.0, init_timeout))
        why = f"cannot reach {url} ({reason})" if reason else None
    os.makedirs(save_dir, exist_ok=True)
    run_id = job_run_id(save_dir, resume)

    def make(offline: bool) -> WandbLogger:
        # Lightning's WandbLogger starts W&B with resume="allow": the run of this id goes on, or a new one starts
        return WandbLogger(save_dir=save_dir, project=project, name=name, entity=entity, group=group or sweep_name(),
                           tags=list(tags or []), offline=offline, id=run_id, settings=wandb.Settings(init_timeout=init_timeout))

    if mode == "disabled":  # wandb.init hands out a no-op run by itself
        return make(offline=False)
    if offline or why:
        if why:
            print(_offline_line(save_dir, why))
        return make(offline=True)
    logger = make(offline=False)
    try:
        logger.experiment  # wandb.init now: a failure falls back to offline before any training
    except Exception as e:  # noqa: BLE001 - CommError, AuthenticationError, UsageError, timeouts: all mean "not online"
        wandb.finish(exit_code=1)
        wandb.teardown()  # forget the online settings: the offline run starts afresh
        print(_offline_line(save_dir, f"could not start an online run ({type(e).__name__}: {str(e).splitlines()[0][:200]})"))
        logger = make(offline=True)
    return logger
