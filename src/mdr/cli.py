"""The entry points' error policy: a bad option or file ends a run with one line, not a stack trace.

``train.py``, ``evaluate.py`` and ``export.py`` are each ``run_cli(<task>, cfg)`` under
``@hydra.main``. In a multirun a failing job must not stop the others: its error goes to
``failed.txt`` in its folder (``mdr.formats.results``) and to the log, the sweep goes on, and
the sweep summary (``mdr.sweep``) lists it as failed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from mdr.config import register_resolvers
from mdr.errors import ConfigError, UserError
from mdr.formats.results import FAILED_FILE

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_cli(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T | None:
    """Run ``fn(cfg)``; user errors become one ``error: ...`` line (exit status 1), or, in a
    multirun, a ``failed.txt`` record while the sweep goes on."""
    register_resolvers()  # a launcher may run this job in a fresh interpreter
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        # every mandatory (???) value, checked before any work, named where it is defined
        require_values(cfg)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        return fn(cfg)
    except (UserError, MissingMandatoryValue, InterpolationToMissingValueError, InstantiationException,
            MisconfigurationException) as e:
        if isinstance(e, InstantiationException) and os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = f"error: {one_line(e)}"
        if not multirun:
            raise SystemExit(message) from None
        record_failure(message, message)
    except Exception as e:
        if not multirun:
            raise
        record_failure(f"error: {type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
    return None


def require_values(cfg: DictConfig) -> None:
    """One error naming every mandatory (``???``) option left unset, also those that are only reached
    through an interpolation (``eval.sets.mlqa_r.path: ${eval.path}``): the option to set is the ``???``."""
    missing = unset_options(OmegaConf.to_container(cfg, resolve=False))  # OmegaConf.missing_keys resolves, and so fails here
    if missing:
        one = len(missing) == 1
        raise ConfigError(f"{' and '.join(missing)} {'has' if one else 'have'} no value; set {'it' if one else 'them'} on the "
                          f"command line ({' '.join(f'{k}=...' for k in missing)})")


def unset_options(tree, prefix: str = "") -> list[str]:
    """The dotted keys of the ``???`` values in a config container (not resolved)."""
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in unset_options(value, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(tree, list):
        return [k for i, value in enumerate(tree) for k in unset_options(value, f"{prefix}[{i}]")]
    return [prefix] if tree == "???" else []


def one_line(e: Exception) -> str:
    """The error as one line that names the option or file."""
    if isinstance(e, MissingMandatoryValue):
        return f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)"
    if isinstance(e, InterpolationToMissingValueError):  # "... Missing mandatory value: eval.path" (the ??? option)
        target = str(e).splitlines()[0].rpartition("Missing mandatory value: ")[2].strip() or e.full_key
        return f"{target} has no value; set it on the command line ({target}=...) ({e.full_key} refers to it)"
    if isinstance(e, InstantiationException):  # a constructor rejected an option's value or type
        cause = e.__cause__
        where = f" (options under {e.full_key})" if getattr(e, "full_key", None) else ""
        return (f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}{where}; "
                "HYDRA_FULL_ERROR=1 shows the stack trace") if cause else str(e).splitlines()[0]
    if isinstance(e, MisconfigurationException):
        return f"Lightning rejects the configuration: {str(e).splitlines()[0]}"
    return str(e)


def record_failure(line: str, details: str) -> None:
    """Log a failed multirun job and write its error to ``failed.txt`` in the job's folder."""
    log.error("job failed, the sweep goes on: %s", line)
    print(line, file=sys.stderr)
    Path(output_dir(), FAILED_FILE).write_text(details if details.startswith(line) else f"{line}\n\n{details}")


def output_dir() -> str:
    """This run's folder: Hydra's output dir, or the working directory outside Hydra."""
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()
