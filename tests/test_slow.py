"""End-to-end runs with the real offline model (marked slow; `make test` runs them, CI too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdr.config import xquad_r_path

XQUAD_R = Path(xquad_r_path())  # the real benchmark beside the checkout (tests skip without it)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path) -> str:
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=1800,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_demo_trains_the_real_model_and_improves_multilingual_map(tmp_path):
    """Half an epoch of `experiment=demo` (hybrid, 24 of its 47 steps) must beat the untrained model on the held-out topics."""
    before = run([str(ROOT / "evaluate.py"), "model=minilm", "eval=demo", f"hydra.run.dir={tmp_path / 'before'}"], tmp_path)
    assert "multi mAP" in before
    untrained = json.loads((tmp_path / "before" / "results.json").read_text())["results"]["demo"]
    stdout = run([str(ROOT / "train.py"), "experiment=demo", "logger=csv", "trainer.max_steps=24",
                  f"hydra.run.dir={tmp_path / 'train'}"], tmp_path)
    assert "| demo |" in stdout
    trained = json.loads((tmp_path / "train" / "checkpoints" / "results.json").read_text())["results"]["demo"]
    assert trained["languages"] == ["ar", "de", "en", "es", "hi", "ru", "zh"]
    assert trained["multilingual_map"] > untrained["multilingual_map"]
    assert trained["crosslingual_map"] > untrained["crosslingual_map"]


@pytest.mark.skipif(not XQUAD_R.is_dir(), reason=f"XQuAD-R not found at {XQUAD_R} (see shared/data/README.md)")
def test_evaluate_offline_model_on_real_xquad_r(tmp_path):
    """Two of the eleven languages, one Latin and one not, keep CI short; the full run is the README's command."""
    langs = ["en", "zh"]
    stdout = run([str(ROOT / "evaluate.py"), "model=minilm", "eval=xquad_r", f"eval.path={XQUAD_R}",
                  f"eval.sets.xquad_r.languages=[{','.join(langs)}]", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert "| xquad_r |" in stdout
    r = json.loads((tmp_path / "results.json").read_text())["results"]["xquad_r"]
    assert r["num_queries"] == len(langs) * 1190 and r["languages"] == langs
    # an English-vocabulary model: good on English, far better than chance, biased to the query's language
    assert r["matrix"]["en"]["en"] > 0.4
    assert 0.01 < r["multilingual_map"] < r["monolingual_map"]
    assert r["same_language_first"] > 1 / len(langs)
    assert (tmp_path / "xquad_r_matrix.png").stat().st_size > 0
