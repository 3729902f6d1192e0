"""Starting a job or a sweep again where it stopped: nothing trained twice, nothing silently restarted.

In:  a job's run folder (``checkpoints/``, ``results.json``, ``failed.txt``) and its composed config;
     for a sweep, its folder (``multirun.yaml``, the numbered job folders) and the relaunch's config.
Out: the checkpoint a job resumes from, or one error naming the options that differ; the stored
     results of a job a resumed sweep skips; a sweep folder made ready for its relaunch, or one
     error saying why it cannot be resumed.

A job. ``ckpt_path=auto`` (the default) resumes from the run folder's own ``checkpoints/last.ckpt``
(the newest intact checkpoint there when it is damaged or missing) if there is one, and starts
afresh otherwise: a requeued job (``mdr.model.preemption``) or a run started again by hand in its
folder goes on where it stopped, with the batches and losses of an uninterrupted run. Every
checkpoint stores the resolved config it was trained with (``run_info["config"]``, all options but
RESUME_IGNORED, which do not change what is trained); resuming under other options is one error
naming them, never a silent restart. ``ckpt_path=<file>`` resumes from that file whatever its
options (an explicit choice), ``ckpt_path=null`` starts afresh.

A sweep. ``python train.py -m <the same overrides> hydra.sweep.dir=<its folder> +hydra.sweep.resume=true``
launches it again with the same job numbers and folders: jobs with final results are skipped (their
results are returned as they are), the others resume from their checkpoints or start, and failed ones
(``failed.txt``) run again (resuming from their checkpoint if they have one). The option lives in
Hydra's config, so the jobs' overrides, and with them the sweep summary, stay those of the first
launch. The relaunch is refused when its overrides (the swept ones in the same order, the others as
a set), the sweeper's ``params`` or the configuration differ from the stored ``multirun.yaml``; a
sweep folder launched into again without the option is refused too, so results are never mixed.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mdr.errors import ConfigError
from mdr.formats.results import CHECKPOINT_DIR, FAILED_FILE, read_json, train_results_path
from mdr.model.checkpoint import LIGHTNING_CKPT_KEYWORDS, read_checkpoint, resume_checkpoint

log = logging.getLogger(__name__)

AUTO = "auto"
LAST = "last.ckpt"
# where and how a run is logged or loaded, not what it trains
RESUME_IGNORED = ("ckpt_path", "logger", "summary", "preempt_signals", "trainer.enable_progress_bar",
                  "trainer.log_every_n_steps", "data.num_workers", "data.cache_dir")
SWEEP_FILE = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
RESUME_OPTION = "+hydra.sweep.resume=true"
_UNSET = object()


# -- a job


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are values."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """What a checkpoint stores and a resume compares: the resolved config, flat, without RESUME_IGNORED."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in RESUME_IGNORED)}


def config_differences(stored: dict[str, Any], current: dict[str, Any], shown: int = 4) -> str | None:
    """``optim.lr: 2e-05 -> 3e-05, seed: 1 -> 2`` for the options that differ, or None."""
    keys = sorted(k for k in stored.keys() | current.keys() if stored.get(k, _UNSET) != current.get(k, _UNSET))
    if not keys:
        return None

    def show(values: dict, key: str) -> str:
        return repr(values[key]) if key in values else "(unset)"

    parts = [f"{k}: {show(stored, k)} -> {show(current, k)}" for k in keys[:shown]]
    return ", ".join(parts) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def own_checkpoint(ckpt_dir: str | os.PathLike) -> str | None:
    """The run folder's checkpoint to go on from: the newest ``last*.ckpt`` (a run started afresh in a
    folder that holds one writes ``last-v1.ckpt`` beside it, Lightning's naming), else the newest
    ``*.ckpt``, else None."""
    folder = glob.escape(str(ckpt_dir))
    for pattern in ("last*.ckpt", "*.ckpt"):
        found = glob.glob(os.path.join(folder, pattern))
        if found:
            return max(found, key=os.path.getmtime)
    return None


def checkpoint_to_resume(option: str | None, ckpt_dir: str | os.PathLike,
                         config: dict[str, Any]) -> tuple[str | None, dict | None]:
    """``ckpt_path`` as (the checkpoint to resume from, its contents read once), or (None, None) to
    start afresh; ``auto`` as in the module doc. ``config``: this run's ``run_config``."""
    if option is None:
        return None, None
    if option != AUTO:
        path = resume_checkpoint(option)
        return (path, None) if path in LIGHTNING_CKPT_KEYWORDS else (path, read_checkpoint(path, option="ckpt_path"))
    found = own_checkpoint(ckpt_dir)
    if found is None:
        return None, None
    path = resume_checkpoint(found)  # a damaged one: the newest intact one beside it, or one error
    state = read_checkpoint(path, option="ckpt_path")
    stored = (state.get("run_info") or {}).get("config")
    if stored is None:
        raise ConfigError(f"ckpt_path=auto: {path} does not say which options it was trained with (an older version "
                          f"wrote it); resume from it anyway with ckpt_path={path}, or start afresh with ckpt_path=null")
    differences = config_differences(stored, config)
    if differences:
        raise ConfigError(f"ckpt_path=auto: {path} was trained with other options ({differences}); run with those, "
                          f"start afresh in another folder (hydra.run.dir=...) or with ckpt_path=null, or resume from it "
                          f"anyway with ckpt_path={path}")
    print(f"resuming from {path} (step {state.get('global_step')})")
    return path, state


# -- a sweep


def in_resumed_sweep() -> bool:
    """Whether this job runs in a sweep launched with +hydra.sweep.resume=true."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and bool(hc.sweep.get("resume", False))


def finished_results(run_dir: str | os.PathLike, config: dict[str, Any]) -> dict | None:
    """In a resumed sweep, the results of this job if it finished before (it is then skipped), else None.
    Its checkpoint must have been trained with ``config`` (one error otherwise, as for ``ckpt_path=auto``)."""
    if not in_resumed_sweep():
        return None
    results = train_results_path(run_dir)
    if not results.is_file() or Path(run_dir, FAILED_FILE).exists():
        return None
    record = read_json(results)
    if not record.get("final", True):
        return None
    last = own_checkpoint(Path(run_dir, CHECKPOINT_DIR))
    if last is not None:
        stored = (read_checkpoint(last, option="ckpt_path").get("run_info") or {}).get("config")
        differences = config_differences(stored, config) if stored is not None else None
        if differences:
            raise ConfigError(f"this job finished before with other options ({differences}): the configuration changed "
                              "since the sweep was launched; resume it with the configuration it was launched with, or "
                              "launch the sweep into another hydra.sweep.dir")
    print(f"finished before, skipped: {results}")
    return record["results"]


def job_folders(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        return []
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def job_state(folder: Path) -> str:
    """``finished``, ``failed``, ``checkpoint`` (stopped with one) or ``started`` (stopped without)."""
    if (folder / FAILED_FILE).exists():
        return "failed"
    results = train_results_path(folder)
    if results.is_file() and read_json(results).get("final", True):
        return "finished"
    return "checkpoint" if own_checkpoint(folder / CHECKPOINT_DIR) else "started"


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the swept overrides in order: they number the jobs; the others, sorted)."""
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    return ([o.input_line for o in parsed if o.is_sweep_override()],
            sorted(o.input_line for o in parsed if not o.is_sweep_override()))


def sweep_differences(stored: DictConfig, config: DictConfig) -> str | None:
    """How the relaunch differs from the stored ``multirun.yaml`` in what makes its jobs, or None."""
    before, now = list(stored.hydra.overrides.task), list(config.hydra.overrides.task)
    (swept_before, _), (swept_now, _) = _split_overrides(before), _split_overrides(now)
    removed, added = [o for o in before if o not in now], [o for o in now if o not in before]
    if removed or added:
        return (f"its overrides differ from those it was launched with (removed: {' '.join(removed) or '-'}; "
                f"added: {' '.join(added) or '-'})")
    if swept_before != swept_now:
        return (f"the swept options come in another order ({' '.join(swept_now)}; launched: {' '.join(swept_before)}), "
                "which renumbers the jobs")
    params = [c.hydra.sweeper.get("params") for c in (stored, config)]
    params = [OmegaConf.to_container(p, resolve=False) if OmegaConf.is_config(p) else (p or {}) for p in params]
    if params[0] != params[1]:
        return f"hydra.sweeper.params were {params[0]}, now {params[1]}"
    tasks = [flatten({k: v for k, v in OmegaConf.to_container(c, resolve=False).items() if k != "hydra"})
             for c in (stored, config)]
    differences = config_differences(*tasks)
    return f"its configuration changed since it was launched ({differences})" if differences else None


def prepare_sweep(config: DictConfig) -> None:
    """At the start of a multirun (``mdr.sweep.SweepSummary``): refuse a launch into a folder that holds
    a sweep unless it resumes it with the same overrides; for a resume, clear the failed jobs'
    ``failed.txt`` (so they run again) and say what each job will do. ConfigError on a refusal."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    jobs, stored_file = job_folders(sweep_dir), sweep_dir / SWEEP_FILE
    if not config.hydra.sweep.get("resume", False):
        if stored_file.exists() or jobs:
            raise ConfigError(f"hydra.sweep.dir={sweep_dir} already holds a sweep: resume it with {RESUME_OPTION} "
                              "(finished jobs are kept, the others resume or run again), or launch into another folder")
        return
    sweeper = config.hydra.sweeper.get("_target_")
    if sweeper != BASIC_SWEEPER:
        raise ConfigError(f"{RESUME_OPTION} needs Hydra's basic sweeper (a grid, -m a=1,2 b=x,y), whose jobs are the same "
                          f"at every launch; {sweeper} draws its jobs as it goes")
    if not stored_file.exists():
        if jobs:
            raise ConfigError(f"{RESUME_OPTION}: {sweep_dir} has job folders but no {SWEEP_FILE}, so nothing says how "
                              "they were launched; launch into another hydra.sweep.dir")
        print(f"sweep resume: {sweep_dir} holds no sweep yet; starting it")
        return
    problem = sweep_differences(OmegaConf.load(stored_file), config)
    if problem:
        raise ConfigError(f"cannot resume the sweep in {sweep_dir}: {problem}; launch it with the options it was launched "
                          "with, or into another hydra.sweep.dir")
    states: dict[str, list[str]] = {}
    for folder in jobs:
        state = job_state(folder)
        if state == "failed":
            (folder / FAILED_FILE).unlink()
        states.setdefault(state, []).append(folder.name)
    said = {"finished": "finished, skipped", "failed": "failed, run again", "checkpoint": "resume from their checkpoint",
            "started": "stopped before a checkpoint, start again"}
    plan = "; ".join(f"{said[s]}: {', '.join(states[s])}" for s in said if s in states) or "no job started yet"
    print(f"resuming the sweep in {sweep_dir}: {plan}; the jobs without a folder start")
