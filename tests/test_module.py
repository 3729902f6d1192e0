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


# -- the false-negative mask: the steps hand the loss the batch's passage keys; under DDP, two gloo
#    ranks against one process holding the whole batch

@pytest.mark.parametrize("grad_cache", [None, 1])
def test_the_training_step_masks_a_duplicate_of_another_positive(monkeypatch, grad_cache):
    """A's hard negative is B's positive verbatim: the plain and the GradCache step hand the loss the
    batch's keys, and their first loss is the masked loss of the initial weights (dropout off)."""
    from mdr.data.loader import passage_keys

    torch.manual_seed(0)
    from mdr.config import minilm_path
    from mdr.model.encoder import Encoder
    from tests.helpers import TINY

    encoder = Encoder(minilm_path(), random_init=True,
                      config_overrides={**TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}).eval()
    tok = encoder.tokenization
    passages = [TEXTS[1], TEXTS[3], TEXTS[3], "the river is wide"]
    keys = passage_keys(passages, ["A", "B", "B", "Z"])
    batch = {"query": tok(TEXTS[::2], "query"), "passage": tok(passages, "passage"), "passage_keys": keys,
             "query_lang": ["en", "en"], "passage_lang": ["en", "en"], "kind": "xx"}
    with torch.no_grad():
        q, p = encoder(**batch["query"]), encoder(**batch["passage"])
        want = InfoNCELoss(temperature=0.05)(q, p, torch.arange(2), p_keys=keys)[0].item()
        unmasked = InfoNCELoss(temperature=0.05)(q, p, torch.arange(2))[0].item()
    seen = []
    forward = InfoNCELoss.forward

    def recording(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        seen.append((kwargs.get("p_keys"), out[0].item()))
        return out

    monkeypatch.setattr(InfoNCELoss, "forward", recording)
    module = BiEncoderModule(encoder, InfoNCELoss(temperature=0.05), lr=1e-3, grad_cache_chunk_size=grad_cache)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    assert len(seen) == 1 and torch.equal(seen[0][0], keys)
    assert seen[0][1] == pytest.approx(want, abs=1e-5) and abs(want - unmasked) > 1e-3



B, D = 2, 8
# the global batch: rank r holds examples [2r, 2r+1]; rank 0's negative of A is a translation of C (rank 1's
# positive), rank 1's negative of D repeats B's text (rank 0's positive), C and D share a positive text
POSITIVES = [("A", "a"), ("B", "b"), ("C", "c"), ("D", "c")]
NEGATIVES = [("C", "c in de"), ("X", "x"), ("Y", "y"), (None, "b")]


def _global_batch():
    g = torch.Generator().manual_seed(7)
    q = torch.nn.functional.normalize(torch.randn(2 * B, D, generator=g), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(4 * B, D, generator=g), dim=-1)  # positives, then negatives
    return q, p


def _masked_loss(module, q, p, keys) -> dict:
    """The module's loss, the masks it applied, and its gradients."""
    import mdr.model.loss as loss_module

    masks, plain = [], loss_module.false_negatives
    loss_module.false_negatives = lambda *a: masks.append(plain(*a)) or masks[-1]
    try:
        q, p = q.clone().requires_grad_(), p.clone().requires_grad_()
        loss, _ = module._loss(q, p, keys)
    finally:
        loss_module.false_negatives = plain
    loss.backward()
    return {"loss": loss.detach(), "masks": masks, "q_grad": q.grad, "p_grad": p.grad}


def _module(rank: int, world: int, symmetric: bool) -> BiEncoderModule:
    from types import SimpleNamespace

    from lightning.pytorch.strategies import DDPStrategy

    module = BiEncoderModule(torch.nn.Linear(1, 1), InfoNCELoss(temperature=0.05, symmetric=symmetric))  # the encoder is unused
    module.trainer = SimpleNamespace(world_size=world, global_rank=rank, strategy=DDPStrategy())
    return module


def _rank(rank: int, init_file: str, out: str) -> None:
    from mdr.data.loader import passage_keys

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    q, p = _global_batch()
    mine = slice(rank * B, (rank + 1) * B)
    local = POSITIVES[mine] + NEGATIVES[mine]  # this rank's block: [B positives, B negatives]
    keys = passage_keys([t for _, t in local], [i for i, _ in local])
    block = torch.cat([p[mine], p[2 * B:][mine]])
    results = {sym: _masked_loss(_module(rank, 2, sym), q[mine], block, keys) for sym in (False, True)}
    torch.save(results, f"{out}/{rank}.pt")
    torch.distributed.destroy_process_group()


def test_the_mask_is_the_same_on_two_gloo_ranks_as_in_one_process(tmp_path):
    from mdr.data.loader import passage_keys

    # spawned: a rank forked from a process that already ran torch's thread pools (an earlier test) can hang
    torch.multiprocessing.spawn(_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    q, p = _global_batch()
    keys = passage_keys([t for _, t in POSITIVES + NEGATIVES], [i for i, _ in POSITIVES + NEGATIVES])
    # the gathered layout [r0: pA pB nA nB | r1: pC pD nC nD] as columns of the single process's [pA..pD nA..nD]
    order = [0, 1, 4, 5, 2, 3, 6, 7]
    for sym in (False, True):
        single = _masked_loss(_module(0, 1, sym), q, p, keys)
        assert single["masks"][0].nonzero().tolist() == [[1, 7], [2, 3], [2, 4], [3, 2]]  # B <- nD, C <- pD and nA, D <- pC
        gathered = torch.cat([r[sym]["masks"][0] for r in ranks])
        assert torch.equal(gathered, single["masks"][0][:, order])
        if sym:  # the passage -> query term: its columns are the global queries in both layouts
            assert torch.equal(torch.cat([r[sym]["masks"][1] for r in ranks]), single["masks"][1])
        assert torch.stack([r[sym]["loss"] for r in ranks]).mean().item() == pytest.approx(single["loss"].item(), rel=1e-6)
        # each rank's gradients are those of the sum of both ranks' losses (the gather's backward sums them)
        torch.testing.assert_close(torch.cat([r[sym]["q_grad"] for r in ranks]) / 2, single["q_grad"], atol=1e-6, rtol=1e-5)
        p_grad = torch.cat([r[sym]["p_grad"] for r in ranks]) / 2
        torch.testing.assert_close(p_grad, single["p_grad"][order], atol=1e-6, rtol=1e-5)
