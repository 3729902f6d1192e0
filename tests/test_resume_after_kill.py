"""A run killed with SIGKILL mid-epoch resumes from its checkpoint with the uninterrupted run's
batches, loss curve and final metrics; a kill during a checkpoint write leaves the previous one
intact (tiny model, real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from mdr.model.checkpoint import checkpoint_problem
from tests.helpers import ROOT, base_overrides, read_losses

MAX_STEPS = 30


def command(corpus, run_dir, *extra, evaluate=True):
    return [sys.executable, str(ROOT / "train.py"), *base_overrides(corpus, evaluate), "logger=csv", "trainer.log_every_n_steps=1",
            f"trainer.max_steps={MAX_STEPS}", "trainer.max_epochs=3", "sampler.steps_per_epoch=20", "checkpoint.every_n_train_steps=5",
            "checkpoint.save_top_k=-1", f"hydra.run.dir={run_dir}", *extra]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(corpus, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    full = subprocess.run(command(corpus, tmp_path / "full"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert full.returncode == 0, full.stderr[-2000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(command(corpus, killed_dir), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first, last = killed_dir / "checkpoints" / "step000005.ckpt", killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not (first.exists() and last.exists()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed_dir / "checkpoints" / "results.json").exists()  # it really died mid-training

    resumed_dir = tmp_path / "resumed"
    resumed = subprocess.run(command(corpus, resumed_dir, f"ckpt_path={first}"), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = read_losses(tmp_path / "full"), read_losses(resumed_dir)
    assert sorted(b) == list(range(5, MAX_STEPS))  # step 5 is mid-epoch (20 steps per epoch), the run crosses into epoch 2
    for step in b:
        assert b[step] == pytest.approx(a[step], abs=1e-6), f"loss differs at step {step}"
    ra = json.loads((tmp_path / "full" / "checkpoints" / "results.json").read_text())["results"]["demo"]
    rb = json.loads((resumed_dir / "checkpoints" / "results.json").read_text())["results"]["demo"]
    for key in ("monolingual_map", "crosslingual_map", "multilingual_map"):
        assert rb[key] == pytest.approx(ra[key], abs=1e-6), key


def writing(folder, sizes: dict) -> bool:
    """Whether last.ckpt, or a file being written to become it, changed size since the last look."""
    changed = False
    for entry in os.scandir(folder):
        if "last.ckpt" not in entry.name:
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:  # renamed into place meanwhile
            continue
        changed |= entry.name in sizes and sizes[entry.name] != size
        sizes[entry.name] = size
    return changed


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_intact(corpus, tmp_path):
    """SIGKILL while a checkpoint is being written (a ~100 MB one, every step): last.ckpt must still be
    the complete previous checkpoint, and resuming from it must work. The system temp folder is put on
    another filesystem where there is one (/dev/shm), as on clusters whose /tmp is a local disk."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        env["TMPDIR"] = tempfile.mkdtemp(dir=shm)
    run_dir = tmp_path / "run"
    ckpt_dir, last = run_dir / "checkpoints", run_dir / "checkpoints" / "last.ckpt"
    big = ["model.config_overrides.hidden_size=256", "model.config_overrides.intermediate_size=512",
           "checkpoint.every_n_train_steps=1", "checkpoint.save_top_k=1"]
    proc = subprocess.Popen(command(corpus, run_dir, *big, evaluate=False), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sizes: dict = {}
    deadline = time.time() + 600
    try:
        while not (last.exists() and checkpoint_problem(str(last)) is None) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        writing(ckpt_dir, sizes)
        while not writing(ckpt_dir, sizes) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
    assert proc.wait() == -signal.SIGKILL, "the run ended before a checkpoint write could be interrupted"
    assert checkpoint_problem(str(last)) is None, "the kill damaged the previous checkpoint"
    resumed = subprocess.run(command(corpus, tmp_path / "resumed", *big, f"ckpt_path={last}", evaluate=False), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "is damaged" not in resumed.stderr  # resumed from last.ckpt itself
