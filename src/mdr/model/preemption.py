"""Pre-emption and time limits: on the cluster's signal, checkpoint at the end of the step and exit for the requeue.

In:  the signals to handle (``preempt_signals``: SIGUSR1, SIGUSR2, SIGTERM by default) and the path
     ``<run>/checkpoints/last.ckpt``, where ``ckpt_path=auto`` (``mdr.resume``) looks when the job
     starts again.
Out: ``PreemptionCheckpoint``, a Lightning callback; ``Preempted``, raised out of ``Trainer.fit``
     once the checkpoint is written; ``hand_over``, what the process does next (requeue, exit).

Who does what, and why:

- The signal handler only notes the signal. The checkpoint is written at the end of the step the
  signal arrived in (after that step's validation when one is due), the point from which a resume
  reproduces the uninterrupted run exactly; a checkpoint written inside the handler could catch
  the optimizer half-way. Under DDP the ranks agree on the step (``reduce_boolean_decision``) and
  write it together. Training stops at the start of the next step, after the step's metrics are
  logged, so the resumed run continues the logs without a gap.
- The requeue is submitit's, under ``hydra/launcher=slurm`` and ``submitit_local``: once the
  checkpoint is written, submitit's handler for the signal it asked SLURM for (USR2,
  ``signal_delay_s`` before the time limit) is called; it re-submits the same job (the Hydra
  launcher's ``checkpoint``), counts ``max_num_timeout`` and exits, and the job starts again in its
  folder. On SIGTERM (pre-emption) SLURM requeues a requeueable job by itself; the process exits.
  Under SLURM without submitit (``sbatch --requeue --signal=B:USR1@120``), ``scontrol requeue``
  is called here, as Lightning's SLURMEnvironment would.
- Lightning's own auto-requeue is off (``SLURMEnvironment(auto_requeue=False)``, ``slurm_environment``):
  its handler writes ``hpc_ckpt_<n>.ckpt`` from inside the signal handler, wherever training is,
  into the default root dir (shared by the jobs of a sweep, and picked up there by any later run
  on SLURM), and calls ``scontrol requeue`` a second time beside submitit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from typing import NoReturn

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint

from mdr.errors import ConfigError
from mdr.model.checkpoint import validation_due

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Training stopped on a pre-emption signal after writing ``path`` at ``step``."""

    def __init__(self, signum: int, step: int, path: str, previous) -> None:
        super().__init__(f"pre-empted by {signal.Signals(signum).name} at step {step}; checkpoint {path}")
        self.signum, self.step, self.path, self.previous = signum, step, path, previous


def parse_signals(names) -> list[signal.Signals]:
    """``preempt_signals`` (``[SIGUSR1, SIGUSR2, SIGTERM]``, ``USR1`` works too) as signals; one error for an unknown name."""
    out = []
    for name in names or []:
        full = str(name).upper() if str(name).upper().startswith("SIG") else f"SIG{str(name).upper()}"
        if full not in signal.Signals.__members__ or full in ("SIGKILL", "SIGSTOP"):
            raise ConfigError(f"preempt_signals: {name!r} is not a signal that can be caught (e.g. SIGUSR1, SIGUSR2, SIGTERM)")
        out.append(signal.Signals[full])
    return out


def slurm_environment() -> list:
    """Lightning's SLURM environment without its auto-requeue, when running under SLURM (see the module doc)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


class PreemptionCheckpoint(Checkpoint):
    """On one of ``signals`` during training: ``path`` written at the end of the current step, then
    ``Preempted`` (at the start of the next step, or at the end of the epoch when it was the last).
    Once the training steps are over (the final evaluation runs), a signal goes straight to the
    handler that was there before fit (submitit's: requeue; the default: the process ends), and the
    requeued job resumes from the last step's checkpoint and only evaluates.

    A ``Checkpoint`` subclass, so Lightning runs it after the other callbacks and, listed last,
    after the ModelCheckpoints: the checkpoint holds their state of this step (the best one so far).
    """

    def __init__(self, path: str, signals: list[signal.Signals]) -> None:
        self.path, self.signals = path, list(signals)
        self.received: int | None = None  # the signal noted by the handler
        self.original: dict[int, object] = {}  # the handlers before fit (submitit's, or the default)
        self.saved_step: int | None = None
        self.steps_over = False
        self._after_validation = False
        self._step_before = -1

    def _handle(self, signum, frame) -> None:  # only notes the signal during training: see the module doc
        if not self.steps_over:
            self.received = signum
            return
        previous = self.original.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # the default action, as if we had never been there
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def setup(self, trainer, pl_module, stage) -> None:
        # before Lightning installs its own handlers: what was there is what the signal goes back to
        self.original = {s: signal.getsignal(s) for s in self.signals}

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for s in self.signals:
                signal.signal(s, self._handle)  # Lightning's teardown puts back what it found

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop_if_saved()
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step_before:
            return  # gradients being accumulated: no optimizer step ended here (nor on any rank)
        if not self._agree(trainer):
            return
        if validation_due(trainer):
            self._after_validation = True  # what the uninterrupted run does next is part of this step
        else:
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        self.steps_over = bool(0 < trainer.max_steps <= trainer.global_step or 0 < max_epochs <= trainer.current_epoch + 1
                               or trainer.should_stop)
        if self.steps_over and self.saved_step is None and self._agree(trainer):
            self._save(trainer)  # it came in the last step's validation: stop before the final evaluation too
        self._stop_if_saved()

    def _agree(self, trainer: L.Trainer) -> bool:
        """Whether to stop here: a signal noted and no checkpoint written for it yet, on any rank."""
        stop = self.received is not None and self.saved_step is None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)  # every rank, the same step
            if stop:  # which signal, when it reached another rank only
                mine = torch.tensor(float(self.received or 0), device=trainer.strategy.root_device)
                self.received = int(trainer.strategy.reduce(mine, reduce_op="max").item())
        return stop

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step
        log.warning("%s: checkpoint of step %d written to %s; stopping", signal.Signals(self.received).name,
                    self.saved_step, self.path)

    def _stop_if_saved(self) -> None:
        if self.saved_step is not None:
            raise Preempted(self.received, self.saved_step, self.path, self.original.get(self.received))


def hand_over(stop: Preempted) -> NoReturn:
    """After the checkpoint: the launcher's handler requeues the job (submitit), or this process asks
    SLURM to (``scontrol requeue``, outside submitit, not for SIGTERM); then the process exits with
    128 + the signal number, as if the signal had ended it."""
    name = signal.Signals(stop.signum).name
    line = (f"pre-empted by {name} at step {stop.step}: checkpoint written to {stop.path}; the same command "
            "resumes from it (ckpt_path=auto)")
    log.warning(line)
    print(line, file=sys.stderr)
    if callable(stop.previous):  # submitit: re-submits this job and exits (rank 0); logs SIGTERM
        stop.previous(stop.signum, None)
    elif stop.signum != signal.SIGTERM and os.environ.get("SLURM_JOB_ID") and _global_rank() == 0:
        _scontrol_requeue()
    raise SystemExit(128 + int(stop.signum))


def _global_rank() -> int:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _scontrol_requeue() -> None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not requeue SLURM job %s (%s); start it again by hand", job, e)
        return
    if done.returncode == 0:
        log.warning("requeued SLURM job %s", job)
    else:
        log.warning("scontrol requeue %s failed (%s); start it again by hand", job, (done.stderr or "").strip()[:200])
