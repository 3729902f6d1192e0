"""BiEncoderModule's optimisation under each precision: fused AdamW and gradient clipping together."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from mdr.model.loss import InfoNCELoss
from mdr.model.module import BiEncoderModule
from tests.helpers import tiny

CLIP = 1e-3  # far below the tiny model's gradient norm, so every step has to be clipped
TEXTS = ["where is the station", "the station is north of the river", "who wrote it", "she wrote it in 1905"]


def batches(encoder, steps: int) -> list[dict]:
    tok = encoder.tokenization
    one = {"query": tok(TEXTS[::2], "query"), "passage": tok(TEXTS[1::2], "passage"),
           "query_lang": ["en", "en"], "passage_lang": ["en", "en"], "kind": "xx"}
    return [one] * steps


@pytest.mark.parametrize("precision, grad_cache, fused", [
    ("32-true", None, True),
    ("bf16-mixed", None, True),   # a GPU's default: Lightning's AMP plugin alone refuses fused AdamW + clipping
    ("bf16-mixed", 1, True),      # GradCache clips by itself (manual optimisation)
    ("16-mixed", None, False),    # fp16's loss scaler: Lightning unscales, then clips; so AdamW is unfused
])
def test_gradients_are_clipped_under_each_precision(monkeypatch, precision, grad_cache, fused):
    seen = []
    original = BiEncoderModule.configure_gradient_clipping

    def recording(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        original(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad.float().norm() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append((optimizer.defaults["fused"], torch.linalg.vector_norm(torch.stack(grads)).item()))

    monkeypatch.setattr(BiEncoderModule, "configure_gradient_clipping", recording)
    encoder = tiny()
    module = BiEncoderModule(encoder, InfoNCELoss(temperature=0.05), lr=1e-3, grad_cache_chunk_size=grad_cache,
                             gradient_clip_val=CLIP if grad_cache else None)
    # on a CPU Lightning turns precision="16-mixed" into bf16; the plugin forces real fp16 with a scaler
    amp = ({"plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}
           if precision == "16-mixed" else {"precision": precision})
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=None if grad_cache else CLIP, **amp)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches(encoder, 3), batch_size=None))

    assert len(seen) == 3
    assert all(bool(f) is fused for f, _ in seen)
    assert [norm for _, norm in seen] == pytest.approx([CLIP] * 3, rel=1e-2)
