"""A run killed with SIGKILL mid-epoch resumes from its checkpoint with the uninterrupted run's
batches, loss curve and final metrics (tiny model, real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, base_overrides, read_losses

MAX_STEPS = 30


def command(corpus, run_dir, *extra):
    return [sys.executable, str(ROOT / "train.py"), *base_overrides(corpus), "logger=csv", "trainer.log_every_n_steps=1",
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
