"""export.py: the exported folder gives the Lightning module's embeddings through sentence-transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from sentence_transformers import SentenceTransformer

from mdr.model.checkpoint import load_checkpoint_encoder
from mdr.tasks import export_checkpoint, train
from tests.helpers import ROOT, base_overrides, compose_train

TEXTS = ["Where is the Great Barrier Reef?", "The reef lies off the coast of Queensland, Australia.", "短い文"]


@pytest.mark.parametrize("pooling, prefixes", [("mean", []), ("pooler", ["model.query_prefix='query: '", "model.passage_prefix='passage: '"])])
def test_exported_folder_reproduces_the_module_embeddings(corpus, tmp_path, monkeypatch, pooling, prefixes):
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus, evaluate=False) + ["trainer.max_steps=2", f"model.pooling={pooling}", *prefixes]))
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")
    out = export_checkpoint(ckpt, str(tmp_path / "exported"))

    encoder, _ = load_checkpoint_encoder(ckpt)
    st = SentenceTransformer(out, device="cpu")
    for kind in ("query", "passage"):
        ours = encoder.encode(TEXTS, kind)
        theirs = torch.as_tensor(st.encode(TEXTS, prompt_name=kind, convert_to_numpy=True))
        assert torch.allclose(ours, theirs, atol=1e-5), (kind, (ours - theirs).abs().max())
    card = (tmp_path / "exported" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card
    # the trained weights, not the initial ones, went out
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(out)
    name, param = next((n, p) for n, p in encoder.model.named_parameters() if "encoder.layer.0" in n)
    assert torch.equal(hf.state_dict()[name], param.detach())


def test_export_cli_writes_the_evaluation_into_the_model_card(corpus, tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)  # noqa: E731
    trained = run(str(ROOT / "train.py"), *base_overrides(corpus), "trainer.max_steps=2", "hydra.run.dir=run")
    assert trained.returncode == 0, trained.stderr[-2000:]
    done = run(str(ROOT / "export.py"), "ckpt=run/checkpoints/last.ckpt", "out=exported")
    assert done.returncode == 0, done.stderr[-2000:]
    card = (tmp_path / "exported" / "README.md").read_text()
    assert "## Evaluation" in card and "| demo |" in card
    missing = run(str(ROOT / "export.py"), "ckpt=nope.ckpt", "out=x")
    assert missing.returncode != 0 and missing.stderr.strip().splitlines()[-1] == "error: checkpoint not found: nope.ckpt"


def test_a_pooling_the_exporter_does_not_know_is_one_clear_error_not_cls(tmp_path):
    from mdr.errors import ConfigError
    from mdr.model.export import write_sentence_transformers_folder
    from tests.helpers import tiny

    encoder = tiny()
    encoder.pooling = "max"  # a pooling added to the encoder but not to the exporter
    with pytest.raises(ConfigError, match="export: pooling 'max' has no sentence-transformers counterpart"):
        write_sentence_transformers_folder(encoder, {"pooling": "max"}, str(tmp_path / "out"))
