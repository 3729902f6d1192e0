"""A sweep launched again into its folder (mdr.resume, +hydra.sweep.resume=true): finished jobs are
skipped, stopped ones resume from their checkpoints, failed ones run again, the summary is the one
of a sweep never stopped; a relaunch with other overrides, or without the option, is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from mdr.errors import ConfigError
from mdr.formats.results import train_results_path
from mdr.resume import finished_results, prepare_sweep
from tests.helpers import ROOT, base_overrides, run_script


def sweep_config(sweep_dir, task_overrides: list[str], resume: bool = False, **changes):
    """The config a multirun's callbacks get: composed, with the sweep's overrides as Hydra records them."""
    fixed = [o for o in task_overrides if "," not in o]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        resuming = ["+hydra.sweep.resume=true"] if resume else []
        cfg = compose("train", overrides=fixed + [f"hydra.sweep.dir={sweep_dir}", *resuming], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(task_overrides)
        for key, value in changes.items():
            OmegaConf.update(cfg, key, value)
    return cfg


def stored_sweep(sweep_dir, task_overrides: list[str], **changes) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweep_config(sweep_dir, task_overrides, **changes), sweep_dir / "multirun.yaml")


LAUNCHED = ["model=tiny", "sampler=xx,hybrid", "seed=1,2", "logger=csv"]


def test_a_launch_into_a_folder_that_holds_a_sweep_needs_the_resume_option(tmp_path):
    stored_sweep(tmp_path, LAUNCHED)
    with pytest.raises(ConfigError, match=r"already holds a sweep: resume it with \+hydra\.sweep\.resume=true"):
        prepare_sweep(sweep_config(tmp_path, LAUNCHED))
    prepare_sweep(sweep_config(tmp_path / "new", LAUNCHED))  # a new folder: nothing to refuse


@pytest.mark.parametrize("relaunch, changes, message", [
    (["model=tiny", "sampler=xx,hybrid", "seed=1,3", "logger=csv"], {},
     r"its overrides differ from those it was launched with \(removed: seed=1,2; added: seed=1,3\)"),
    (["model=tiny", "seed=1,2", "sampler=xx,hybrid", "logger=csv"], {},
     r"the swept options come in another order \(seed=1,2 sampler=xx,hybrid; launched: sampler=xx,hybrid seed=1,2\), "
     r"which renumbers"),
    (["model=tiny", "sampler=xx,hybrid", "seed=1,2"], {},
     r"its overrides differ from those it was launched with \(removed: logger=csv; added: -\)"),
    (LAUNCHED, {"optim.lr": 1e-3}, r"its configuration changed since it was launched \(optim\.lr: 2e-05 -> 0\.001\)"),
])
def test_a_resume_with_other_overrides_or_configuration_is_refused(tmp_path, relaunch, changes, message):
    stored_sweep(tmp_path, LAUNCHED)
    with pytest.raises(ConfigError, match=rf"cannot resume the sweep in {tmp_path}: {message}"):
        prepare_sweep(sweep_config(tmp_path, relaunch, resume=True, **changes))


def test_a_resume_needs_the_basic_sweeper_and_a_sweep_folder(tmp_path, capsys):
    optuna = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    stored_sweep(tmp_path, LAUNCHED)
    with pytest.raises(ConfigError, match=rf"needs Hydra's basic sweeper .*; {optuna} draws its jobs as it goes"):
        prepare_sweep(sweep_config(tmp_path, LAUNCHED, resume=True, **{"hydra.sweeper._target_": optuna}))
    (tmp_path / "elsewhere" / "0").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"has job folders but no multirun\.yaml, so nothing says how they were launched"):
        prepare_sweep(sweep_config(tmp_path / "elsewhere", LAUNCHED, resume=True))
    prepare_sweep(sweep_config(tmp_path / "new", LAUNCHED, resume=True))  # the same command can start a sweep
    assert "holds no sweep yet; starting it" in capsys.readouterr().out


def test_a_resume_clears_failed_jobs_and_says_what_each_job_does(tmp_path, capsys):
    stored_sweep(tmp_path, LAUNCHED)
    for n in range(4):
        (tmp_path / str(n) / "checkpoints").mkdir(parents=True)
    train_results_path(tmp_path / "0").write_text(json.dumps({"final": True, "results": {}}))
    (tmp_path / "1" / "failed.txt").write_text("error: CUDA out of memory\n")
    (tmp_path / "2" / "checkpoints" / "last.ckpt").write_bytes(b"")
    # the non-swept overrides in another order: the same jobs
    prepare_sweep(sweep_config(tmp_path, ["logger=csv", "sampler=xx,hybrid", "seed=1,2", "model=tiny"], resume=True))
    assert not (tmp_path / "1" / "failed.txt").exists()
    assert (f"resuming the sweep in {tmp_path}: finished, skipped: 0; failed, run again: 1; resume from their checkpoint: 2; "
            "stopped before a checkpoint, start again: 3") in capsys.readouterr().out


def test_a_resumed_sweep_returns_a_finished_jobs_results_without_training(tmp_path):
    record = {"final": True, "results": {"demo": {"multilingual_map": 0.5}}}
    train_results_path(tmp_path).parent.mkdir()
    train_results_path(tmp_path).write_text(json.dumps(record))
    cfg = sweep_config(tmp_path.parent, LAUNCHED, resume=True)
    try:
        assert finished_results(tmp_path, {}) is None  # outside a resumed sweep, a job is never skipped
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        assert finished_results(tmp_path, {}) == record["results"]
        (tmp_path / "failed.txt").write_text("error: ...")
        assert finished_results(tmp_path, {}) is None
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.slow  # four sweeps, each an interpreter: minutes on a loaded 2-core box
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_interrupted_sweep_launched_again_runs_only_the_rest(corpus, tmp_path):
    """Three jobs (seed=1,2,3): stopped by SIGTERM while job 2 trains, job 0 then marked failed (as
    a crash in its final evaluation leaves it); a relaunch with another seed list is refused, the
    resume skips job 1, evaluates job 0 again from its last checkpoint, resumes job 2 and prints
    the summary of the same sweep run without a stop."""
    overrides = [*base_overrides(corpus), "logger=csv", "trainer.max_steps=12", "sampler.steps_per_epoch=20",
                 "checkpoint.every_n_train_steps=4", "seed=1,2,3"]

    def sweep(folder, *extra) -> list[str]:
        return [str(ROOT / "train.py"), "-m", *overrides, f"hydra.sweep.dir={folder}", *extra]

    full = run_script(sweep(tmp_path / "full"), tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    stopped = tmp_path / "stopped"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, *sweep(stopped)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first, deadline = stopped / "2" / "checkpoints" / "step000004.ckpt", time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM and "pre-empted by SIGTERM at step" in err, err[-3000:]
    assert [train_results_path(stopped / str(n)).exists() for n in range(3)] == [True, True, False]
    (stopped / "0" / "failed.txt").write_text("error: CUDA out of memory\n")
    train_results_path(stopped / "0").unlink()
    kept = train_results_path(stopped / "1").stat().st_mtime_ns

    changed = run_script([str(ROOT / "train.py"), "-m", *overrides[:-1], "seed=1,2,4", f"hydra.sweep.dir={stopped}",
                          "+hydra.sweep.resume=true"], tmp_path)
    assert changed.returncode == 1 and "Traceback" not in changed.stderr
    assert changed.stderr.strip().splitlines()[-1] == (
        f"error: cannot resume the sweep in {stopped}: its overrides differ from those it was launched with "
        "(removed: seed=1,2,3; added: seed=1,2,4); launch it with the options it was launched with, or into another "
        "hydra.sweep.dir")
    assert (stopped / "0" / "failed.txt").exists()

    resumed = run_script(sweep(stopped, "+hydra.sweep.resume=true"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout
    assert "finished, skipped: 1; failed, run again: 0; resume from their checkpoint: 2" in out
    assert f"resuming from {stopped / '0' / 'checkpoints' / 'last.ckpt'} (step 12)" in out
    assert f"resuming from {stopped / '2' / 'checkpoints' / 'last.ckpt'} (step " in out
    assert f"finished before, skipped: {train_results_path(stopped / '1')}" in out
    assert train_results_path(stopped / "1").stat().st_mtime_ns == kept and not (stopped / "0" / "failed.txt").exists()
    assert (stopped / "summary.md").read_text() == (tmp_path / "full" / "summary.md").read_text()
