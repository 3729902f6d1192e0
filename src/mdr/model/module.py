"""The LightningModule: one shared encoder trained with in-batch InfoNCE.

In:  batches from ``mdr.data.datamodule`` (tokenised queries, positives then hard negatives,
     languages, and the batch kind the sampler drew).
Out: logged ``train/loss``, ``train/accuracy`` (in-batch top-1), ``train/temperature``, ``val/loss``
     and ``val/accuracy`` on the fixed validation batches when there are some, the learning
     rate (LearningRateMonitor) and ``sampling/*``: the running share of batch kinds (and, in a
     mixture, sources) per step, and of query languages and (query, passage) language pairs per
     example, drawn so far.

Under DDP, passages (and, for the symmetric loss, queries) are gathered from every rank with
gradients, so each query is scored against the whole global batch; the passages' keys
(``passage_keys``: example id and text fingerprints, for the loss's false-negative mask) are gathered
with them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import lightning as L
import torch
from transformers import get_linear_schedule_with_warmup

from mdr.errors import ConfigError, NumericalError, require_number
from mdr.model.encoder import Encoder
from mdr.model.grad_cache import grad_cache_step
from mdr.model.loss import InfoNCELoss
from mdr.model.optim import adamw


class BiEncoderModule(L.LightningModule):
    """Args:
    encoder: the shared query/passage encoder.
    loss: InfoNCE (temperature, learnable, symmetric, in-batch positives or the paper's Eq. 1,
        false-negative mask).
    lr, weight_decay: AdamW.
    warmup_ratio: share of all optimizer steps spent in linear warm-up, then linear decay to 0.
    model_config: the resolved ``model`` config, stored in checkpoints to rebuild the encoder.
    run_info: what evaluating a checkpoint needs to know of its run (``training_languages`` for the
        seen / unseen split, ``choices`` for the published comparison), stored in checkpoints.
    seed: dropout randomness of step k is seeded from (seed, k), so a resumed run reproduces the
        uninterrupted run's losses exactly (a fresh process would otherwise have other RNG state).
    grad_cache_chunk_size: embed the batch in chunks of this many texts with GradCache
        (``mdr.model.grad_cache``): the same gradients with the activation memory of one chunk, so a global
        batch of thousands fits on a small GPU. Uses manual optimisation; ``gradient_clip_val``
        clips as the Trainer's option would.
    """

    def __init__(
        self,
        encoder: Encoder,
        loss: InfoNCELoss,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        seed: int = 0,
        model_config: dict | None = None,
        run_info: dict | None = None,
        grad_cache_chunk_size: int | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        require_number("optim.lr", lr, low=0, low_open=True)
        require_number("optim.weight_decay", weight_decay, low=0)
        require_number("optim.warmup_ratio", warmup_ratio, low=0, high=1)
        if grad_cache_chunk_size is not None and (not isinstance(grad_cache_chunk_size, int) or grad_cache_chunk_size < 1):
            raise ConfigError(f"optim.grad_cache_chunk_size must be a positive integer or null, got {grad_cache_chunk_size}")
        self.grad_cache_chunk_size = grad_cache_chunk_size
        self.gradient_clip_val = gradient_clip_val
        self.automatic_optimization = grad_cache_chunk_size is None
        self.model_config = model_config  # the resolved `model` config, so export.py can rebuild the encoder
        self.run_info = run_info or {}  # training languages and config choices, for evaluate.py and export.py
        self.encoder = encoder
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.seed = seed
        self.save_hyperparameters(ignore=["encoder", "loss", "model_config", "run_info"])
        self.drawn: Counter[str] = Counter()
        self.last_finite_loss: tuple[int, float] | None = None  # (step, loss), for the divergence message

    def _gather(self, x: torch.Tensor, sync_grads: bool = True) -> torch.Tensor:
        if self.trainer is None or self.trainer.world_size == 1:
            return x
        return self.all_gather(x, sync_grads=sync_grads).flatten(0, 1)

    def on_fit_start(self) -> None:
        # from_pretrained returns the model in eval mode; fine-tune with its dropout, as HF and
        # sentence-transformers do (Lightning keeps whatever mode the modules are in)
        self.train()

    def on_train_epoch_start(self) -> None:
        self.train()  # again: an evaluation between epochs may have left the encoder in eval mode

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)

    def _loss(self, q: torch.Tensor, p: torch.Tensor, p_keys: torch.Tensor | None = None,
              validation: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        rank = self.global_rank if self.trainer is not None else 0
        # every rank's block is [B positives, B*k negatives]; query i of this rank -> its positive
        block = p.shape[0]
        targets = torch.arange(len(q), device=q.device) + rank * block
        q_all = self._gather(q) if self.loss.symmetric else None
        p_all = self._gather(p)
        positives = None
        if not self.loss.in_batch_positives:
            positives = torch.arange(len(p_all), device=p.device) % block < len(q)
            if validation and block == len(q):
                # validation batches have no hard negatives (nor had the paper's SQuADShifts ones):
                # Eq. 1 would be 0 there, so they are scored against every passage of the batch
                positives = torch.zeros_like(positives)
        q_all_targets = None
        if q_all is not None:  # query j of the global batch (rank j // B) -> its positive
            j = torch.arange(len(q_all), device=q.device)
            q_all_targets = j // len(q) * block + j % len(q)
        if p_keys is not None:
            p_keys = self._gather(p_keys.to(q.device), sync_grads=False)
        return self.loss(q, p_all, targets, q_all=q_all, q_offset=rank * len(q), positives=positives, p_keys=p_keys,
                         q_all_targets=q_all_targets)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.automatic_optimization:
            q, p = self.encoder(**batch["query"]), self.encoder(**batch["passage"])
            loss, accuracy = self._loss(q, p, batch.get("passage_keys"))
            self._stop_if_diverged(loss)  # before backward: the weights stay those of the last good step
        else:
            loss, accuracy = self._grad_cache_step(batch)

        bs = len(batch["query_lang"])
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/accuracy", accuracy, prog_bar=True, batch_size=bs)
        self.log("train/temperature", self.loss.temperature, batch_size=bs)
        self._log_sampling(batch)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """In-batch InfoNCE on a fixed validation batch (dropout off), logged as ``val/loss``: the
        mean over the validation batches, the quantity model selection and early stopping watch."""
        loss, accuracy = self._loss(self.encoder(**batch["query"]), self.encoder(**batch["passage"]), batch.get("passage_keys"),
                                    validation=True)
        bs = len(batch["query_lang"])
        self.log("val/loss", loss, batch_size=bs, sync_dist=True)
        self.log("val/accuracy", accuracy, batch_size=bs, sync_dist=True)
        return loss

    def _grad_cache_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        ddp = self.trainer.strategy.model if self.trainer.world_size > 1 else None
        # no DDP sync on the many chunk backwards: one all-reduce of the summed gradients instead
        with ddp.no_sync() if hasattr(ddp, "no_sync") else contextlib.nullcontext():
            loss, accuracy = grad_cache_step(
                self.encoder, batch["query"], batch["passage"], lambda q, p: self._loss(q, p, batch.get("passage_keys")),
                self.grad_cache_chunk_size,
                backward=lambda t, g: self.manual_backward(t, gradient=g),
            )
        self._stop_if_diverged(loss)  # before the optimizer step
        if self.trainer.world_size > 1:
            for param in self.parameters():
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
                    param.grad /= self.trainer.world_size
        if self.gradient_clip_val:
            self.configure_gradient_clipping(optimizer, self.gradient_clip_val, "norm")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return loss, accuracy

    def _stop_if_diverged(self, loss: torch.Tensor) -> None:
        """A non-finite loss ends training at once (on every rank), before it reaches the weights."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if self.trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            self.last_finite_loss = (self.global_step, float(loss.detach()))
            return
        before = (f"last finite loss {self.last_finite_loss[1]:.4g} at step {self.last_finite_loss[0]}"
                  if self.last_finite_loss else "no finite loss before it")
        raise NumericalError(
            f"training diverged: the loss is {float(loss.detach())} at step {self.global_step} ({before}); "
            "stopped before updating the weights, no results written. Lower optim.lr or check the data"
        )

    def _log_sampling(self, batch: dict[str, Any]) -> None:
        """Running shares of what the sampler drew (this rank; ranks draw alike by construction)."""
        self.drawn["steps"] += 1
        self.drawn[f"kind/{batch['kind']}"] += 1
        if batch.get("source") is not None:
            self.drawn[f"source/{batch['source']}"] += 1
        for q_lang, p_lang in zip(batch["query_lang"], batch["passage_lang"]):
            self.drawn[f"query_lang/{q_lang}"] += 1
            self.drawn[f"pair/{q_lang}-{p_lang}"] += 1
        self.drawn["examples"] += len(batch["query_lang"])
        if self.trainer is None or (self.global_step + 1) % max(1, self.trainer.log_every_n_steps):
            return
        shares = {
            f"sampling/{k}": v / (self.drawn["steps"] if k.startswith(("kind/", "source/")) else self.drawn["examples"])
            for k, v in self.drawn.items()
            if "/" in k
        }
        self.log_dict(shares, batch_size=len(batch["query_lang"]))

    def _loss_scaler(self) -> Any:
        """fp16's GradScaler, if training runs under ``16-mixed`` (bf16 and fp32 have none)."""
        return getattr(self.trainer.precision_plugin, "scaler", None) if self.trainer is not None else None

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's AMP plugin refuses to clip for an optimizer that unscales internally (fused
        # AdamW) even under bf16-mixed, where there is no loss scale to undo: without a scaler the
        # gradients are already true, so clip them here. With fp16's scaler, Lightning unscales first
        # (configure_optimizers then builds an unfused AdamW).
        if not gradient_clip_val or self._loss_scaler() is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def configure_optimizers(self):
        optimizer = adamw(self, self.lr, self.weight_decay, fused=self._loss_scaler() is None)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # a checkpoint is only ever written with finite weights: resuming from it must make sense
        bad = [name for name, p in self.named_parameters() if not torch.isfinite(p.detach()).all()]
        if bad:
            raise NumericalError(f"training diverged: the weights are non-finite at step {self.global_step} "
                                 f"({bad[0]}{' and others' if len(bad) > 1 else ''}); no checkpoint written for it")
        checkpoint["sampling_counts"] = dict(self.drawn)
        checkpoint["encoder_name_or_path"] = self.encoder.name_or_path
        checkpoint["model_config"] = self.model_config
        checkpoint["run_info"] = self.run_info

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.drawn = Counter(checkpoint.get("sampling_counts", {}))
        # checkpoints of older versions dropped an unused pooler head: keep the one this model has
        optional = tuple(f"encoder.{prefix}" for prefix in self.encoder.optional_weights)
        for key, value in self.state_dict().items():
            if optional and key.startswith(optional):
                checkpoint["state_dict"].setdefault(key, value)
