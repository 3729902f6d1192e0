"""Trained encoders from Lightning checkpoints written by ``train.py``.

In:  a checkpoint path and, optionally, a resolved ``model`` config (default: the one the
     checkpoint carries, stored by ``BiEncoderModule.on_save_checkpoint``).
Out: the encoder with the trained weights, in eval mode, and the model config it was built from.
"""

from __future__ import annotations

import os

import torch
from hydra.utils import instantiate

from mdr.errors import ConfigError
from mdr.model.encoder import Encoder


def load_checkpoint_encoder(ckpt: str, model_config: dict | None = None) -> tuple[Encoder, dict]:
    """The trained encoder of ``ckpt``; built from the checkpoint's own model config unless given."""
    if not os.path.isfile(ckpt):
        raise ConfigError(f"checkpoint not found: {ckpt}")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model_config = model_config or state.get("model_config")
    if not model_config:
        raise ConfigError(f"{ckpt} has no model config (written by an older version); pass model=<the model it was trained with>")
    encoder: Encoder = instantiate(model_config)
    weights = {k[len("encoder."):]: v for k, v in state["state_dict"].items() if k.startswith("encoder.")}
    try:
        missing, unexpected = encoder.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches
        missing, unexpected = [str(e).splitlines()[0]], []
    if missing or unexpected or not weights:
        raise ConfigError(
            f"checkpoint {ckpt} was trained from {state.get('encoder_name_or_path')!r} and does not fit model="
            f"{encoder.name_or_path!r} ({len(missing)} missing, {len(unexpected)} unexpected weights); "
            "pass the model option it was trained with"
        )
    return encoder.eval(), model_config
