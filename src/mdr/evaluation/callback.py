"""Runs the zero-shot evaluation during and at the end of training (config group ``eval``).

At the end of ``fit`` (and every ``every_n_steps`` optimizer steps if set) the evaluator runs on
global rank 0, its scalar metrics go to every logger as ``eval/<set>/<metric>``, and the last
results are written atomically to ``results_path`` (next to the checkpoints).

With model selection (``mdr.model.selection``), the final evaluation runs on the best checkpoint's
weights and ``results.json`` says which step that was and why; when the monitored value is an
``eval/<set>/<metric>``, that set is evaluated at each validation to provide it.
"""

from __future__ import annotations

import logging
import math
import os

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from mdr.errors import ConfigError
from mdr.evaluation.benchmark import headline_metrics, per_language
from mdr.evaluation.evaluator import RetrievalEvaluator
from mdr.evaluation.report import plot_matrix
from mdr.formats.results import write_results

log = logging.getLogger(__name__)


def logged_metrics(results: dict[str, dict], prefix: str = "eval") -> dict[str, float]:
    """``{prefix}/<set>/<metric>`` for every headline metric of every eval set."""
    return {f"{prefix}/{name}/{k}": v for name, result in results.items() for k, v in headline_metrics(result).items()}


def log_results(loggers, results: dict[str, dict], step: int, out_dir: str) -> None:
    """Heatmap PNG of each X -> Y matrix into ``out_dir``; scalars to every logger; to W&B also
    each matrix and each set's per-language metrics as Tables, and the heatmap as an image."""
    pngs = {
        name: plot_matrix(m["matrix"], os.path.join(out_dir, f"{name}_matrix.png"), title=f"{name}: mAP, query -> pool")
        for name, m in results.items()
        if "matrix" in m  # pool benchmarks have an X -> Y matrix
    }
    for logger in loggers:
        logger.log_metrics(logged_metrics(results), step=step)
        if not isinstance(logger, WandbLogger):
            continue
        for name in pngs:
            metrics = results[name]
            langs = list(metrics["matrix"])
            rows = [[x] + [metrics["matrix"][x].get(y) for y in langs] for x in langs]
            logger.log_table(f"eval/{name}/matrix", columns=["query \\ pool", *langs], data=rows, step=step)
            logger.log_image(f"eval/{name}/heatmap", [pngs[name]], step=step)
        for name, result in results.items():
            tables = per_language(result)
            langs = list(dict.fromkeys(lang for values in tables.values() for lang in values))
            if langs:
                rows = [[lang] + [tables[m].get(lang) for m in tables] for lang in langs]
                logger.log_table(f"eval/{name}/per_language", columns=["query language", *tables], data=rows, step=step)


class RetrievalEvalCallback(L.Callback):
    """Evaluates ``pl_module.encoder`` every ``every_n_steps`` optimizer steps and at the end of fit.

    Counted in optimizer steps: with gradient accumulation a step spans several batches and is
    evaluated once, after its update. The final evaluation reuses a periodic one made at the same step.
    ``best``: the ModelCheckpoint that keeps the selected checkpoint (its monitor, mode and best
    path), ``early_stopping``: the EarlyStopping callback, if any. ``extra`` goes into
    ``results.json`` as given; its ``data`` record (what the run trains on, with ``steps_per_epoch``)
    gets the optimizer steps and the (fractional) epochs trained when the results are written.
    """

    def __init__(self, evaluator: RetrievalEvaluator, results_path: str, every_n_steps: int | None = None,
                 extra: dict | None = None, best: ModelCheckpoint | None = None,
                 early_stopping: EarlyStopping | None = None) -> None:
        self.evaluator = evaluator
        self.results_path = results_path
        self.every_n_steps = every_n_steps
        self.extra = extra or {}
        self.best, self.early_stopping = best, early_stopping
        self.results: dict[str, dict] | None = None
        self.evaluated_step: int | None = None
        self.selected: dict | None = None

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        step = trainer.global_step
        if trainer.is_global_zero:
            if self.evaluated_step != step or self.results is None:
                self.results = self.evaluator(pl_module.encoder)
                log_results(trainer.loggers, self.results, step, os.path.dirname(self.results_path))
            payload = {"step": step, "final": final, **self.extra, "results": self.results}
            if isinstance(payload.get("data"), dict):  # what was trained so far: steps and (fractional) epochs
                batches = trainer.global_step * trainer.accumulate_grad_batches
                per_epoch = payload["data"].get("steps_per_epoch")
                payload["data"] = {**payload["data"], "trained_steps": trainer.global_step,
                                   "trained_epochs": round(batches / per_epoch, 4) if per_epoch else None}
            if final and self.selected:
                payload.update(step=self.selected["step"], trained_steps=trainer.global_step, selection=self.selected)
            self.results = write_results(self.results_path, payload)["results"]  # the per-query tables go beside it
        self.evaluated_step = step
        trainer.strategy.barrier("retrieval_eval")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done so far
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self.evaluated_step:
            self._run(trainer, pl_module, final=False)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        monitor = self.best.monitor if self.best is not None else None
        if not monitor or not monitor.startswith("eval/") or trainer.sanity_checking:
            return
        _, name, metric = monitor.split("/")
        value = math.nan
        if trainer.is_global_zero:
            value = float(self.evaluator.evaluate_one(name, pl_module.encoder).get(metric, math.nan))
            if math.isnan(value):
                raise ConfigError(f"val.monitor={monitor!r}: eval set {name!r} has no metric {metric!r}")
        value = trainer.strategy.broadcast(value, src=0)
        pl_module.log(monitor, value, batch_size=1)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.best is not None and self.best.best_model_path:
            self.selected = self._load_best(pl_module)
            if self.selected["step"] != trainer.global_step:
                self.evaluated_step = None  # a periodic evaluation at this step saw the last weights, not these
        self._run(trainer, pl_module, final=True)

    def _load_best(self, pl_module: L.LightningModule) -> dict:
        """Put the best checkpoint's weights into the module; what was chosen and why."""
        state = torch.load(self.best.best_model_path, map_location=pl_module.device, weights_only=False)
        pl_module.load_state_dict(state["state_dict"])
        score = self.best.best_model_score
        stopped = self.early_stopping is not None and self.early_stopping.wait_count >= self.early_stopping.patience
        return {
            "step": int(state["global_step"]),
            "checkpoint": self.best.best_model_path,
            "monitor": self.best.monitor,
            "mode": self.best.mode,
            "value": float(score) if score is not None else None,
            "rule": f"the checkpoint with the {'lowest' if self.best.mode == 'min' else 'highest'} {self.best.monitor}",
            "early_stopped": bool(stopped),
        }
