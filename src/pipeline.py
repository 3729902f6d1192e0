"""What ``train.py`` and ``evaluate.py`` do, as functions of a composed Hydra config (testable)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from src.encoder import Encoder, minilm_path
from src.errors import ConfigError, UserError
from src.evaluation.callback import RetrievalEvalCallback, log_results, write_json_atomic
from src.evaluation.evaluator import RetrievalEvaluator
from src.evaluation.report import markdown_table, matrix_table, result_rows
from src.module import BiEncoderModule

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _auto_precision() -> str:
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def register_resolvers() -> None:
    for name, fn in (
        ("minilm_path", minilm_path),
        ("auto_precision", _auto_precision),
        ("project_root", lambda: str(PROJECT_ROOT)),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()

# Launchers such as submitit (hydra/launcher=slurm) unpickle each job in a fresh interpreter that
# inherits the environment but not sys.path: let it import this project's modules.
if str(PROJECT_ROOT) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))


def instantiate(cfg, *args, **kwargs):
    """Hydra's instantiate, but our own errors come out as they are, not wrapped by Hydra."""
    try:
        return hydra_instantiate(cfg, *args, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise


FAILED_FILE = "failed.txt"  # in a multirun job's folder: why the job failed (read by the sweep summary)


def run_cli(fn, cfg: DictConfig):
    """Entry points: a bad option or file ends the run with one line, not a stack trace.

    In a multirun, a failing job must not stop the others: its error goes to ``failed.txt`` in its
    folder and to the log, the sweep goes on, and the sweep summary lists it as failed.
    """
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        # every mandatory (???) value, checked before any work, named where it is defined
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        return fn(cfg)
    except (UserError, MissingMandatoryValue) as e:
        message = (f"error: {e.full_key} has no value; set it on the command line ({e.full_key}=...)"
                   if isinstance(e, MissingMandatoryValue) else f"error: {e}")
        if not multirun:
            raise SystemExit(message) from None
        _record_failure(message, message)
    except Exception as e:
        if not multirun:
            raise
        _record_failure(f"error: {type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
    return None


def _record_failure(line: str, details: str) -> None:
    log.error("job failed, the sweep goes on: %s", line)
    print(line, file=sys.stderr)
    Path(output_dir(), FAILED_FILE).write_text(details if details.startswith(line) else f"{line}\n\n{details}")


def output_dir() -> str:
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()


def build_evaluator(eval_cfg: DictConfig) -> RetrievalEvaluator:
    sets = {name: instantiate(spec) for name, spec in eval_cfg.sets.items()}
    return RetrievalEvaluator(sets, batch_size=eval_cfg.batch_size, chunk_size=eval_cfg.chunk_size)


def build_loggers(cfg: DictConfig, out: str):
    """The configured logger, with the whole resolved config logged as hyperparameters."""
    if cfg.logger is None or not cfg.logger.get("_target_"):
        return False
    logger = instantiate(cfg.logger, save_dir=out)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return [logger]


def print_results(results: dict[str, dict]) -> None:
    print("\n" + markdown_table(result_rows(results)))
    for name, metrics in results.items():
        if "matrix" in metrics:
            print(f"\n{name}: mAP, query language (rows) x pool language (columns)\n{matrix_table(metrics['matrix'])}")
        for key in [k for k in metrics if k.endswith("_per_lang") and not k.startswith("multilingual")]:
            print(f"\n{name}: {key[: -len('_per_lang')]}\n" + markdown_table([{"lang": x, "value": f"{v:.4f}"} for x, v in metrics[key].items()]))


def train(cfg: DictConfig) -> dict[str, dict]:
    """Fit the encoder with the configured sampler, then evaluate; returns the eval results."""
    L.seed_everything(cfg.seed, workers=True)
    out = output_dir()
    encoder: Encoder = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=encoder.tokenization, seed=cfg.seed)
    datamodule.build_sampler(0, int(cfg.trainer.get("num_nodes", 1) or 1) * _devices(cfg))  # fail fast on bad options
    grad_cache = cfg.optim.get("grad_cache_chunk_size")
    if grad_cache and str(cfg.trainer.get("precision")).startswith("16"):
        raise ConfigError("optim.grad_cache_chunk_size needs trainer.precision bf16-mixed or 32-true (fp16 loss scaling is not supported)")
    if grad_cache and int(cfg.trainer.get("accumulate_grad_batches") or 1) > 1:
        raise ConfigError("optim.grad_cache_chunk_size replaces trainer.accumulate_grad_batches: raise data.batch_size instead")
    module = BiEncoderModule(encoder, instantiate(cfg.loss), seed=cfg.seed,
                             model_config=OmegaConf.to_container(cfg.model, resolve=True),
                             gradient_clip_val=cfg.trainer.get("gradient_clip_val") if grad_cache else None, **cfg.optim)

    ckpt_dir = os.path.join(out, "checkpoints")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    eval_cb = RetrievalEvalCallback(
        build_evaluator(cfg.eval),
        results_path=os.path.join(ckpt_dir, "results.json"),
        every_n_steps=cfg.eval.every_n_steps,
        extra={"overrides": overrides},
    )
    loggers = build_loggers(cfg, out)
    callbacks = [
        instantiate(cfg.checkpoint, dirpath=ckpt_dir),
        eval_cb,
    ] + ([LearningRateMonitor(logging_interval="step")] if loggers else [])
    # with GradCache the module steps the optimizer itself and clips as the Trainer would have
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                     **({"gradient_clip_val": None} if grad_cache else {}))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    if trainer.is_global_zero and eval_cb.results is not None:
        print_results(eval_cb.results)
        print(f"\nresults: {eval_cb.results_path}")
    return eval_cb.results or {}


def _devices(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return max(1, torch.cuda.device_count())  # "auto" / -1


def load_encoder_from_checkpoint(cfg: DictConfig) -> Encoder:
    """The model config builds the architecture; the checkpoint's weights must fit it."""
    from src.export import load_checkpoint_encoder

    return load_checkpoint_encoder(cfg.ckpt, OmegaConf.to_container(cfg.model, resolve=True))[0]


def evaluate(cfg: DictConfig) -> dict[str, dict]:
    """Zero-shot evaluation of ``cfg.model`` (or a trained ``cfg.ckpt``) on ``cfg.eval``."""
    encoder = load_encoder_from_checkpoint(cfg) if cfg.get("ckpt") else instantiate(cfg.model)
    if torch.cuda.is_available():
        encoder.cuda()
    results = build_evaluator(cfg.eval)(encoder)
    out = output_dir()
    path = os.path.join(out, "results.json")
    write_json_atomic(path, {"model": encoder.name_or_path, "ckpt": cfg.get("ckpt"), "results": results})
    log_results(build_loggers(cfg, out) or [], results, step=0, out_dir=out)  # also writes the heatmaps
    print_results(results)
    print(f"\nresults: {path} (heatmaps: {out}/*_matrix.png)")
    return results
