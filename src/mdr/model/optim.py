"""The optimizer and the training options around it (the ``optim`` config section).

- ``adamw``: AdamW without weight decay on biases and norms, fused where PyTorch has the kernel;
- ``training_options``: the module's optimisation arguments and the Trainer overrides from the
  ``optim`` and ``trainer`` configs, with GradCache's rules (it steps the optimizer itself).
"""

from __future__ import annotations

import torch

from mdr.errors import ConfigError


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, fused: bool = True) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norms, fused (if ``fused``) where PyTorch has the kernel."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    # one fused kernel over all parameters instead of a Python loop of per-tensor ops (CPU and CUDA)
    fused = fused and named[0][1].device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


OPTIM_OPTIONS = {"lr", "weight_decay", "warmup_ratio", "grad_cache_chunk_size"}


def training_options(optim: dict, trainer: dict) -> tuple[dict, dict]:
    """The module's optimisation arguments and the Trainer overrides, from the ``optim`` and
    ``trainer`` configs.

    GradCache (``optim.grad_cache_chunk_size``) steps the optimizer itself (manual optimisation),
    so it takes gradient clipping over from the Trainer, and it rules out fp16 loss scaling and
    gradient accumulation (a larger batch is what it is for).
    """
    unknown = sorted(set(optim) - OPTIM_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown option(s) optim.{', optim.'.join(unknown)}; known: {', '.join(sorted(OPTIM_OPTIONS))}")
    chunk = optim.get("grad_cache_chunk_size")
    if not chunk:
        return dict(optim), {}
    if str(trainer.get("precision")).startswith("16"):
        raise ConfigError("optim.grad_cache_chunk_size needs trainer.precision bf16-mixed or 32-true (fp16 loss scaling is not supported)")
    if int(trainer.get("accumulate_grad_batches") or 1) > 1:
        raise ConfigError("optim.grad_cache_chunk_size replaces trainer.accumulate_grad_batches: raise data.batch_size instead")
    return {**optim, "gradient_clip_val": trainer.get("gradient_clip_val")}, {"gradient_clip_val": None}
