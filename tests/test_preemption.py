"""One job stopped by the cluster (mdr.model.preemption, mdr.resume): on the pre-emption signal it
checkpoints at the end of its step and exits; started again (``ckpt_path=auto``, or requeued by
submitit) it goes on with the uninterrupted run's losses, validations, selection and results, and
W&B keeps one run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mdr.errors import ConfigError
from mdr.formats.results import read_json, train_results_path
from mdr.loggers import job_run_id
from mdr.model.module import BiEncoderModule
from mdr.tasks import train
from tests.helpers import ROOT, base_overrides, compose_train, wandb_history, wandb_records

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

VAL = ["data.val_split=0.2", "data.val_batches=3", "val.every_n_steps=2", "logger=csv", "trainer.log_every_n_steps=1"]


def signal_during(monkeypatch, step: int, signum: int) -> None:
    """The process sends itself ``signum`` while it trains the step after ``step`` optimizer steps."""
    original = BiEncoderModule.training_step
    sent = []

    def training_step(self, batch, batch_idx):
        if self.global_step == step and not sent:
            sent.append(step)
            os.kill(os.getpid(), signum)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(BiEncoderModule, "training_step", training_step)


def logged(run_dir, metric: str) -> dict[int, float]:
    """``metric`` by logged step over every CSV version of a run (a resumed run writes the next one); twice is a failure."""
    values: dict[int, float] = {}
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row.get(metric):
                    assert int(row["step"]) not in values, f"{metric} logged twice at step {row['step']}"
                    values[int(row["step"])] = float(row[metric])
    return values


def test_preempted_at_a_validation_step_resumes_as_the_uninterrupted_run(corpus, tmp_path, monkeypatch):
    """SIGUSR1 during step 4 of 8, validation every 2 steps: the checkpoint waits for step 4's
    validation, the run asks SLURM to requeue it (a recording scontrol) and exits; ckpt_path=auto then
    gives the same losses, validations, selected checkpoint and results as a run never stopped."""
    overrides = base_overrides(corpus) + VAL + ["trainer.max_steps=8", "sampler.steps_per_epoch=20",
                                                "checkpoint.every_n_train_steps=100"]  # the only mid-run checkpoint: the signal's
    full_dir, run_dir, bin_dir = tmp_path / "full", tmp_path / "run", tmp_path / "bin"
    for folder in (full_dir, run_dir, bin_dir):
        folder.mkdir()
    monkeypatch.chdir(full_dir)
    full = train(compose_train(overrides))

    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path / "scontrol.txt"}"\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.chdir(run_dir)
    with monkeypatch.context() as patched:
        signal_during(patched, 3, signal.SIGUSR1)
        with pytest.raises(SystemExit) as stopped:
            train(compose_train(overrides))
    assert stopped.value.code == 128 + signal.SIGUSR1
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    validated = logged(run_dir, "val/loss")
    assert state["global_step"] == 4 and len(validated) == 2 and not train_results_path(run_dir).exists()
    # the checkpoint holds step 4's validation (the model selection has seen it), not only step 2's
    [selection] = [v for k, v in state["callbacks"].items() if "'monitor': 'val/loss'" in k]
    assert float(selection["current_score"]) == pytest.approx(validated[max(validated)], abs=1e-6)

    monkeypatch.delenv("SLURM_JOB_ID")
    resumed = train(compose_train(overrides))  # the same command: ckpt_path=auto
    for metric in ("train/loss", "val/loss"):
        a, b = logged(full_dir, metric), logged(run_dir, metric)
        assert a.keys() == b.keys() and a, metric
        assert all(b[k] == pytest.approx(a[k], abs=1e-6) for k in a), metric
    ra, rb = read_json(train_results_path(full_dir)), read_json(train_results_path(run_dir))
    assert rb["selection"]["step"] == ra["selection"]["step"] and rb["trained_steps"] == 8
    assert rb["selection"]["value"] == pytest.approx(ra["selection"]["value"], abs=1e-6)
    for key in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        assert resumed["demo"][key] == pytest.approx(full["demo"][key], abs=1e-6), key


def test_a_signal_in_the_last_step_stops_before_the_final_evaluation(corpus, tmp_path, monkeypatch, capsys):
    """The job is requeued before its final evaluation, not killed in it; started again it only evaluates."""
    monkeypatch.chdir(tmp_path)
    overrides = base_overrides(corpus) + ["trainer.max_steps=4", "sampler.steps_per_epoch=20"]
    with monkeypatch.context() as patched:
        signal_during(patched, 3, signal.SIGUSR2)
        with pytest.raises(SystemExit) as stopped:
            train(compose_train(overrides))
    assert stopped.value.code == 128 + signal.SIGUSR2 and not train_results_path(tmp_path).exists()
    results = train(compose_train(overrides))
    assert f"resuming from {tmp_path / 'checkpoints' / 'last.ckpt'} (step 4)" in capsys.readouterr().out
    record = read_json(train_results_path(tmp_path))
    assert record["final"] and record["step"] == 4 and results["demo"]["multilingual_map"] > 0


def test_after_the_last_step_a_signal_goes_to_the_handler_that_was_there_before():
    """In the final evaluation there is no step to end: submitit's handler (here a recorder) gets the
    signal at once and requeues the job, which resumes from the last step's checkpoint."""
    from mdr.model.preemption import PreemptionCheckpoint

    calls = []
    callback = PreemptionCheckpoint("last.ckpt", [signal.SIGUSR2])
    callback.original = {signal.SIGUSR2: lambda signum, frame: calls.append(signum)}
    callback._handle(signal.SIGUSR2, None)
    assert calls == [] and callback.received == signal.SIGUSR2  # during training: only noted
    callback.steps_over, callback.received = True, None
    callback._handle(signal.SIGUSR2, None)
    assert calls == [signal.SIGUSR2] and callback.received is None


def test_auto_resume_refuses_a_checkpoint_of_other_options(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = base_overrides(corpus, evaluate=False) + ["trainer.max_steps=2"]
    train(compose_train(overrides))
    with pytest.raises(ConfigError, match=r"ckpt_path=auto: .*last\.ckpt was trained with other options "
                                          r"\(optim\.lr: 2e-05 -> 0\.001, seed: 42 -> 7\); run with those"):
        train(compose_train(overrides + ["optim.lr=1e-3", "seed=7"]))
    train(compose_train(overrides + ["ckpt_path=null", "seed=7"]))  # starting afresh is explicit; Lightning writes last-v1.ckpt
    with pytest.raises(ConfigError, match=r"last-v1\.ckpt was trained with other options \(seed: 7 -> 42\)"):
        train(compose_train(overrides))  # the newest checkpoint is the one to go on from
    newest = tmp_path / "checkpoints" / "last-v1.ckpt"
    state = torch.load(newest, map_location="cpu", weights_only=False)
    del state["run_info"]["config"]  # as an older version wrote it
    torch.save(state, newest)
    with pytest.raises(ConfigError, match=r"last-v1\.ckpt does not say which options it was trained with \(an older "
                                          r"version wrote it\); resume from it anyway with ckpt_path=.*last-v1\.ckpt, "
                                          r"or start afresh with ckpt_path=null"):
        train(compose_train(overrides + ["seed=7"]))


def test_preempt_signals_are_checked():
    from mdr.model.preemption import parse_signals

    assert parse_signals(["SIGUSR1", "usr2", "TERM"]) == [signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM]
    assert parse_signals(None) == [] and parse_signals([]) == []
    for bad in ("SIGFOO", "SIGKILL"):
        with pytest.raises(ConfigError, match=rf"preempt_signals: '{bad}' is not a signal that can be caught"):
            parse_signals([bad])


def test_a_resumed_job_continues_its_offline_wandb_run(corpus, tmp_path, monkeypatch):
    """SIGTERM during step 3 of 6, logger=wandb offline: the second start resumes the same W&B run id
    (stored in the job folder); its rows go on at trainer/global_step 3, none is logged twice."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    overrides = base_overrides(corpus, evaluate=False) + ["logger=wandb", "trainer.log_every_n_steps=1", "trainer.max_steps=6",
                                                          "sampler.steps_per_epoch=20"]
    with monkeypatch.context() as patched:
        signal_during(patched, 2, signal.SIGTERM)
        with pytest.raises(SystemExit) as stopped:
            train(compose_train(overrides))
    assert stopped.value.code == 128 + signal.SIGTERM
    time.sleep(max(0.0, 1.05 - time.time() % 1))  # W&B names a run's folder by the second it starts in
    train(compose_train(overrides))

    run_id = (tmp_path / "wandb" / "run_id").read_text().strip()
    folders = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    files = [next(f.glob(f"run-{run_id}.wandb")) for f in folders]
    steps = [[row["trainer/global_step"] for row in wandb_history(f) if "train/loss" in row] for f in files]
    assert steps == [[0, 1, 2], [3, 4, 5]]
    kinds = [{r.WhichOneof("record_type") for r in wandb_records(f)} for f in files]
    assert "preempting" in kinds[0] and "preempting" not in kinds[1]
    # a job that starts afresh gets a new run
    assert job_run_id(str(tmp_path), resume=True) == run_id and job_run_id(str(tmp_path), resume=False) != run_id


@pytest.mark.slow  # three interpreters (launcher, job, requeued job): minutes on a loaded 2-core box
def test_submitit_requeues_a_preempted_job_which_resumes(corpus, tmp_path, monkeypatch):
    """hydra/launcher=submitit_local, SIGUSR2 (submitit's time-limit signal) to the running job: it
    checkpoints, submitit requeues it, it resumes in its folder, and the sweep ends as if never stopped."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")
    overrides = [*base_overrides(corpus), "logger=csv", "trainer.log_every_n_steps=1", "trainer.max_steps=40", "trainer.max_epochs=3",
                 "sampler.steps_per_epoch=20", "checkpoint.every_n_train_steps=4"]
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_local", *overrides,
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first, deadline = sweep / "0" / "checkpoints" / "step000004.ckpt", time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    tasks = [c for c in psutil.Process(proc.pid).children(recursive=True) if "submitit.core._submit" in " ".join(c.cmdline())]
    assert len(tasks) == 1, "the job ended before it could be signalled"
    tasks[0].send_signal(signal.SIGUSR2)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    job_log = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "pre-empted by SIGUSR2 at step" in job_log and "Requeued job" in job_log and "resuming from" in job_log

    (tmp_path / "full").mkdir()
    monkeypatch.chdir(tmp_path / "full")
    full = train(compose_train(overrides))
    a, b = logged(tmp_path / "full", "train/loss"), logged(sweep / "0", "train/loss")
    assert sorted(b) == sorted(a) == list(range(40))
    assert all(b[k] == pytest.approx(a[k], abs=1e-6) for k in a)
    results = read_json(train_results_path(sweep / "0"))["results"]["demo"]
    for key in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        assert results[key] == pytest.approx(full["demo"][key], abs=1e-6), key


@pytest.mark.slow  # three two-rank DDP runs (gloo, CPU)
def test_ddp_ranks_stop_at_the_same_step_when_one_rank_is_signalled(corpus, tmp_path):
    """SIGUSR1 to rank 0 only: both ranks agree on the step, write one checkpoint and exit; the same
    command resumes both and ends with the losses and results of an uninterrupted two-rank run."""
    overrides = [*base_overrides(corpus), "logger=csv", "trainer.log_every_n_steps=1", "trainer=ddp", "trainer.accelerator=cpu",
                 "trainer.devices=2", "data.batch_size=4", "trainer.max_steps=16", "sampler.steps_per_epoch=20",
                 "checkpoint.every_n_train_steps=4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}

    def command(run_dir) -> list[str]:
        return [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]

    full = subprocess.run(command(tmp_path / "full"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr[-3000:]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(command(run_dir), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first, deadline = run_dir / "checkpoints" / "step000004.ckpt", time.time() + 600
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGUSR1)  # the launching process is rank 0; rank 1 is its child
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGUSR1, err[-3000:]
    assert err.count("pre-empted by SIGUSR1 at step") >= 2  # both ranks, the same signal
    resumed = subprocess.run(command(run_dir), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-3000:]
    a, b = logged(tmp_path / "full", "train/loss"), logged(run_dir, "train/loss")
    assert sorted(a) == sorted(b) == list(range(16)) and all(b[k] == pytest.approx(a[k], abs=1e-6) for k in a)
    ra, rb = (read_json(train_results_path(d))["results"]["demo"] for d in (tmp_path / "full", run_dir))
    assert rb["multilingual_map"] == pytest.approx(ra["multilingual_map"], abs=1e-6)
