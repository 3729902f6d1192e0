"""GradCache gives the plain loss's gradients, with dropout on, and trains like the plain step."""

from __future__ import annotations

import pytest
import torch

from mdr.model.grad_cache import grad_cache_step
from mdr.model.loss import InfoNCELoss
from tests.helpers import tiny

QUERIES = [f"question {i} about {i * 7} mountains?" for i in range(6)]
PASSAGES = [f"passage {i}: the river crosses {i * 3} valleys" + " long" * i for i in range(10)]  # + negatives


def plain_chunked(encoder, inputs, size):
    """The reference: the ordinary autograd graph over chunk-wise forwards (dropout masks are drawn
    per forward call, so chunking changes them; with dropout off chunking changes nothing)."""
    n = next(iter(inputs.values())).shape[0]
    return torch.cat([encoder(**{k: v[i : i + size] for k, v in inputs.items()}) for i in range(0, n, size)])


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gradients_equal_the_plain_loss(chunk_size, symmetric, dropout):
    encoder = tiny().train(dropout)  # dropout on: the replayed RNG state must reproduce it
    loss_fn = InfoNCELoss(temperature=0.05, learnable_temperature=True, symmetric=symmetric)
    q_in, p_in = encoder.tokenization(QUERIES, "query"), encoder.tokenization(PASSAGES, "passage")
    targets = torch.arange(len(QUERIES))

    def compute(q, p):
        return loss_fn(q, p, targets)

    trained = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]  # not the idle pooler
    params = [p for _, p in trained] + list(loss_fn.parameters())
    torch.manual_seed(1)
    if dropout:
        plain, _ = compute(plain_chunked(encoder, q_in, chunk_size), plain_chunked(encoder, p_in, chunk_size))
    else:  # the whole batch in one forward pass
        plain, _ = compute(encoder(**q_in), encoder(**p_in))
    plain.backward()
    want = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None

    torch.manual_seed(1)
    cached, _ = grad_cache_step(encoder, q_in, p_in, compute, chunk_size)
    assert cached.item() == pytest.approx(plain.item(), abs=1e-6)
    names = [n for n, _ in trained] + ["log_scale"]
    for name, p, w in zip(names, params, want):
        assert torch.allclose(p.grad, w, atol=1e-6, rtol=1e-4), name


def test_without_rng_replay_dropout_differs_and_gradients_would_not_match():
    """The check above can fail: two forwards of a model in train mode differ unless replayed."""
    encoder = tiny().train()
    inputs = encoder.tokenization(QUERIES[:2], "query")
    assert not torch.allclose(encoder(**inputs), encoder(**inputs))


def test_training_with_grad_cache_follows_the_plain_run(tmp_path, monkeypatch):
    """Whole Lightning runs, dropout off: manual optimisation (clipping, scheduler, steps) with
    GradCache gives the plain run's loss curve and final metrics."""
    from mdr.tasks import train
    from tests.helpers import base_overrides, compose_train, make_rows, read_losses, write_jsonl

    corpus = {"train": write_jsonl(tmp_path / "train.jsonl", make_rows(40, ["de", "en"], seed=0)),
              "eval": write_jsonl(tmp_path / "eval.jsonl", make_rows(8, ["de", "en"], seed=1)), "cache": tmp_path / "cache"}
    common = base_overrides(corpus) + ["logger=csv", "trainer.log_every_n_steps=1", "trainer.max_steps=4",
                                       "+model.config_overrides.hidden_dropout_prob=0",
                                       "+model.config_overrides.attention_probs_dropout_prob=0"]
    runs = {}
    for name, extra in [("plain", []), ("cached", ["optim.grad_cache_chunk_size=3"])]:
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        runs[name] = train(compose_train(common + extra))
    a, b = read_losses(tmp_path / "plain"), read_losses(tmp_path / "cached")
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    assert runs["cached"]["demo"]["multilingual_map"] == pytest.approx(runs["plain"]["demo"]["multilingual_map"], abs=1e-4)
