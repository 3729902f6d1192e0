"""Runs the zero-shot evaluation during and at the end of training (config group ``eval``).

At the end of ``fit`` (and every ``every_n_steps`` optimizer steps if set) the evaluator runs on
global rank 0, its scalar metrics go to every logger as ``eval/<set>/<metric>``, and the last
results are written atomically to ``results_path`` (next to the checkpoints).
"""

from __future__ import annotations

import logging
import os

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from mdr.evaluation.benchmark import headline_metrics
from mdr.evaluation.evaluator import RetrievalEvaluator
from mdr.evaluation.report import plot_matrix
from mdr.formats.results import write_json_atomic

log = logging.getLogger(__name__)


def logged_metrics(results: dict[str, dict], prefix: str = "eval") -> dict[str, float]:
    """``{prefix}/<set>/<metric>`` for every headline metric of every eval set."""
    return {f"{prefix}/{name}/{k}": v for name, result in results.items() for k, v in headline_metrics(result).items()}


def log_results(loggers, results: dict[str, dict], step: int, out_dir: str) -> None:
    """Heatmap PNG of each X -> Y matrix into ``out_dir``; scalars to every logger; to W&B also
    each matrix as a Table and its heatmap as an image."""
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


class RetrievalEvalCallback(L.Callback):
    """Evaluates ``pl_module.encoder`` every ``every_n_steps`` optimizer steps and at the end of fit.

    Counted in optimizer steps: with gradient accumulation a step spans several batches and is
    evaluated once, after its update. The final evaluation reuses a periodic one made at the same step.
    """

    def __init__(self, evaluator: RetrievalEvaluator, results_path: str, every_n_steps: int | None = None,
                 extra: dict | None = None) -> None:
        self.evaluator = evaluator
        self.results_path = results_path
        self.every_n_steps = every_n_steps
        self.extra = extra or {}
        self.results: dict[str, dict] | None = None
        self.evaluated_step: int | None = None

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, final: bool) -> None:
        step = trainer.global_step
        if trainer.is_global_zero:
            if self.evaluated_step != step or self.results is None:
                self.results = self.evaluator(pl_module.encoder)
                log_results(trainer.loggers, self.results, step, os.path.dirname(self.results_path))
            payload = {"step": step, "final": final, **self.extra, "results": self.results}
            write_json_atomic(self.results_path, payload)
        self.evaluated_step = step
        trainer.strategy.barrier("retrieval_eval")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done so far
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self.evaluated_step:
            self._run(trainer, pl_module, final=False)

    def on_train_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, final=True)
