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
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from mdr.config import register_resolvers
from mdr.errors import UserError
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
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        return fn(cfg)
    except (UserError, MissingMandatoryValue) as e:
        message = (f"error: {e.full_key} has no value; set it on the command line ({e.full_key}=...)"
                   if isinstance(e, MissingMandatoryValue) else f"error: {e}")
        if not multirun:
            raise SystemExit(message) from None
        record_failure(message, message)
    except Exception as e:
        if not multirun:
            raise
        record_failure(f"error: {type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
    return None


def record_failure(line: str, details: str) -> None:
    """Log a failed multirun job and write its error to ``failed.txt`` in the job's folder."""
    log.error("job failed, the sweep goes on: %s", line)
    print(line, file=sys.stderr)
    Path(output_dir(), FAILED_FILE).write_text(details if details.startswith(line) else f"{line}\n\n{details}")


def output_dir() -> str:
    """This run's folder: Hydra's output dir, or the working directory outside Hydra."""
    return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else os.getcwd()
