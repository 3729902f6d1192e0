"""Model selection: which checkpoint of a run is the one evaluated and reported.

In:  the ``val`` config (``every_n_steps``, ``monitor``, ``mode``, ``patience``, ``min_delta``),
     whether validation data exist, the checkpoint folder, the Trainer's gradient accumulation.
Out: Lightning callbacks (a ``ModelCheckpoint`` that keeps the best checkpoint by the monitored
     value, an ``EarlyStopping`` when ``patience`` is set, ``ValidateAtLeastOnce``) and the Trainer
     options that run the validation loop every ``every_n_steps`` optimizer steps (or at each
     epoch's end).

A run given validation data validates at least once: when training ends (``max_steps``, or the
last epoch) before any interval was reached, it validates its last step, so there is always a
checkpoint to select (``trainer.max_steps=30`` on an epoch of 100 steps used to never validate and
report the last weights with no selection).

The monitored value is ``val/loss`` (in-batch InfoNCE on the fixed validation batches, the paper's
criterion) or ``eval/<set>/<metric>`` of an eval set, computed at each validation by
``mdr.evaluation.callback.RetrievalEvalCallback``, which also loads the best checkpoint's weights
before the final evaluation and records the choice in ``results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from mdr.errors import ConfigError, require_number

BEST_FILENAME = "best-step{step:06d}"


@dataclass
class Selection:
    """The pieces a training run needs for model selection."""

    best: ModelCheckpoint
    early_stopping: EarlyStopping | None
    trainer_overrides: dict

    @property
    def callbacks(self) -> list:
        return [self.best, ValidateAtLeastOnce(self.best)] + ([self.early_stopping] if self.early_stopping else [])


class ValidateAtLeastOnce(L.Callback):
    """At the last training step, if no validation has kept a checkpoint yet (``best`` has none, also
    after a resume), ask Lightning to stop there: its loop then validates that step before it ends."""

    def __init__(self, best: ModelCheckpoint) -> None:
        self.best = best

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.best.best_model_path or not trainer.enable_validation:
            return
        last_step = 0 < trainer.max_steps <= trainer.global_step
        loop = trainer.fit_loop
        last_epoch = (loop.max_epochs is not None and loop.max_epochs > 0 and trainer.current_epoch + 1 >= loop.max_epochs
                      and loop.epoch_loop.batch_progress.is_last_batch)
        if last_step or last_epoch:
            trainer.should_stop = True  # Lightning validates a step at which training is asked to stop


def build_selection(val: dict, has_validation: bool, ckpt_dir: str, accumulate: int, eval_sets: list[str]) -> Selection | None:
    """None without validation data; otherwise the callbacks and Trainer options (see the module doc)."""
    every = val.get("every_n_steps")
    if not has_validation:
        if every:
            raise ConfigError("val.every_n_steps needs validation data: set data.val_files or data.val_split")
        return None
    if every is not None:
        require_number("val.every_n_steps", every, low=1, integer=True)
    monitor, mode = val.get("monitor", "val/loss"), val.get("mode", "min")
    if mode not in ("min", "max"):
        raise ConfigError(f"val.mode must be min or max, got {mode!r}")
    if monitor.startswith("eval/"):
        parts = monitor.split("/")
        if len(parts) != 3 or parts[1] not in eval_sets:
            raise ConfigError(f"val.monitor={monitor!r}: expected eval/<set>/<metric> with <set> one of eval.sets {eval_sets}")
    elif monitor not in ("val/loss", "val/accuracy"):
        raise ConfigError(f"val.monitor must be val/loss, val/accuracy or eval/<set>/<metric>, got {monitor!r}")
    best = ModelCheckpoint(dirpath=ckpt_dir, filename=BEST_FILENAME, monitor=monitor, mode=mode, save_top_k=1,
                           save_last=False, auto_insert_metric_name=False)
    early = None
    if val.get("patience") is not None:
        require_number("val.patience", val["patience"], low=1, integer=True)
        require_number("val.min_delta", val.get("min_delta", 0.0), low=0)
        early = EarlyStopping(monitor=monitor, mode=mode, patience=val["patience"], min_delta=val.get("min_delta", 0.0),
                              check_on_train_epoch_end=False)
    overrides = {"limit_val_batches": 1.0, "num_sanity_val_steps": 0}
    # Lightning counts the validation interval in training batches; ours is in optimizer steps
    overrides.update({"val_check_interval": every * accumulate, "check_val_every_n_epoch": None} if every
                     else {"val_check_interval": 1.0, "check_val_every_n_epoch": 1})
    return Selection(best, early, overrides)
