"""Checkpoints: written atomically, checked before use, and turned back into trained encoders.

- ``ModelCheckpoint``: Lightning's, with two changes. ``last.ckpt`` is also written when training
  ends: Lightning writes it at the end only if it was never written, so with ``every_n_train_steps``
  it kept the last multiple of n (step 100 of a 188-step run), and ``export.py``, ``evaluate.py`` and
  ``mine.py`` given ``last.ckpt`` read a model trained part of the way. And a step checkpoint that
  falls on a step with a validation waits for it: Lightning writes it before the validation, and a
  run resumed from it (``ckpt_path=`` that file, or ``auto`` after a SIGKILL) skips the validation,
  which the model selection then never sees. It is listed after the selection's checkpoint
  (``mdr.tasks``), so the state it saves holds that validation.
- ``AtomicCheckpointIO`` (Lightning plugin): each checkpoint goes to a temporary file beside its
  destination, is flushed to disk and renamed into place, so a process killed mid-write leaves the
  previous checkpoint intact. (Lightning's own writer stages the file in the system temp folder and
  moves it; when that folder is on another filesystem, the move copies over the old file in place.)
- ``checkpoint_problem`` / ``resume_checkpoint``: a truncated or corrupt checkpoint is detected
  (checkpoints are zip archives with a checksum per entry) before Lightning reads it; at resume the
  newest intact checkpoint beside a damaged one is used instead, and the switch is logged.
- ``load_checkpoint_encoder``: the trained encoder of a checkpoint, for ``evaluate.py`` and ``export.py``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import zipfile
from typing import Any

import torch
from lightning.pytorch import callbacks
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mdr.config import instantiate
from mdr.errors import ConfigError
from mdr.model.encoder import Encoder

log = logging.getLogger(__name__)
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """``last.ckpt`` holds the final step's weights after training, whatever ``every_n_train_steps``;
    a step checkpoint due where a validation is due is written after it (see the module doc)."""

    _after_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step_due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if (step_due and pl_module.automatic_optimization and not self._should_skip_saving_checkpoint(trainer)
                and validation_due(trainer)):
            self._after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):  # mid-epoch validations: the selection saved just now
            self._save_deferred(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_deferred(trainer)  # an epoch-end validation: the selection saves here, not at its end

    def _save_deferred(self, trainer) -> None:
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer, pl_module) -> None:
        # the skip test: not under fast_dev_run, not twice for one step (also true when nothing was trained)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to ``.<name>.partial-<pid>`` in the same folder, fsync, rename over ``<name>``; partial
    files a killed process left behind are removed at the next write."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        partial = os.path.join(folder, f".{name}.partial-{os.getpid()}")
        for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.partial-*")):
            with contextlib.suppress(FileNotFoundError):  # left by a process killed mid-write
                os.remove(stale)
        try:
            with open(partial, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise


def validation_due(trainer) -> bool:
    """Whether Lightning validates at the end of this step (its own test; False if that changes)."""
    loop = trainer.fit_loop.epoch_loop
    try:
        return bool(trainer.enable_validation and loop._should_check_val_fx(trainer.fit_loop._data_fetcher))
    except AttributeError:  # a Lightning without these: write the checkpoint now
        return False


def checkpoint_problem(path: str) -> str | None:
    """What is wrong with the checkpoint file ``path`` (missing, empty, truncated, a failed
    checksum), or None if it is intact. Reads the whole file once."""
    if not os.path.isfile(path):
        return "no such file"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as e:
        return f"truncated or not a checkpoint: {e}"
    except (OSError, EOFError, RuntimeError) as e:
        return f"unreadable: {type(e).__name__}: {e}"
    return f"corrupt: {bad} fails its checksum" if bad else None


def resume_checkpoint(ckpt_path: str | None) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if it is intact; if it is damaged, the newest
    intact checkpoint in the same folder (logged); otherwise one error naming what is wrong."""
    if ckpt_path is None or ckpt_path in LIGHTNING_CKPT_KEYWORDS:
        return ckpt_path
    if not os.path.isfile(ckpt_path):
        raise ConfigError(f"ckpt_path: checkpoint not found: {ckpt_path}")
    problem = checkpoint_problem(ckpt_path)
    if problem is None:
        return ckpt_path
    siblings = [p for p in glob.glob(os.path.join(os.path.dirname(os.path.abspath(ckpt_path)), "*.ckpt"))
                if not os.path.samefile(p, ckpt_path)]
    for other in sorted(siblings, key=os.path.getmtime, reverse=True):
        if checkpoint_problem(other) is None:
            log.warning("checkpoint %s is damaged (%s); resuming from the newest intact checkpoint beside it: %s",
                        ckpt_path, problem, other)
            return other
    raise ConfigError(f"ckpt_path: {ckpt_path} is damaged ({problem}) and no intact checkpoint lies beside it"
                      + (f" ({len(siblings)} other(s) damaged too)" if siblings else ""))


def read_checkpoint(ckpt: str, option: str = "ckpt") -> dict:
    """The checkpoint's contents (tensors memory-mapped, not read), or one error naming the file."""
    if not os.path.isfile(ckpt):
        raise ConfigError(f"checkpoint not found: {ckpt}")
    problem = checkpoint_problem(ckpt)
    if problem:
        raise ConfigError(f"{option}: checkpoint {ckpt} is damaged ({problem})")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors of any kind: not one of our checkpoints
        raise ConfigError(f"{option}: cannot read checkpoint {ckpt} ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"{option}: {ckpt} is not a checkpoint written by train.py (no state_dict)")
    return state


def weights_mismatch(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], optional: tuple[str, ...] = ()) -> str | None:
    """How ``saved`` weights fail to fit ``expected`` ones (missing, unexpected, other shapes), or
    None. Missing keys starting with one of the ``optional`` prefixes are allowed."""
    missing = [k for k in expected if k not in saved and not k.startswith(tuple(optional))]
    unexpected = [k for k in saved if k not in expected]
    shapes = [k for k in saved if k in expected and tuple(saved[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} of another shape"


def load_checkpoint_encoder(ckpt: str, model_config: dict | None = None, state: dict | None = None) -> tuple[Encoder, dict]:
    """The trained encoder of ``ckpt``; built from the checkpoint's own model config unless given.
    ``state``: the checkpoint already read by ``read_checkpoint``, so it is not read again."""
    state = state if state is not None else read_checkpoint(ckpt)
    model_config = model_config or state.get("model_config")
    if not model_config:
        raise ConfigError(f"{ckpt} has no model config (written by an older version); pass model=<the model it was trained with>")
    encoder: Encoder = instantiate(model_config)
    weights = {k[len("encoder."):]: v for k, v in state["state_dict"].items() if k.startswith("encoder.")}
    problem = weights_mismatch(weights, encoder.state_dict(), optional=encoder.optional_weights) if weights else "no encoder weights"
    if problem:
        raise ConfigError(
            f"checkpoint {ckpt} was trained from {state.get('encoder_name_or_path')!r} and does not fit model="
            f"{encoder.name_or_path!r} ({problem}); pass the model option it was trained with"
        )
    encoder.load_state_dict(weights, strict=False)
    return encoder.eval(), model_config
