"""InfoNCE against a direct computation, and the DDP gather layout against one big batch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdr.errors import ConfigError
from mdr.model.loss import InfoNCELoss


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def test_matches_numpy_cross_entropy():
    q, p = unit(4, 8, seed=1), unit(6, 8, seed=2)  # 4 positives + 2 extra negatives
    loss, acc = InfoNCELoss(temperature=0.1)(q, p, torch.arange(4))
    s = (q @ p.T).numpy().astype(np.float64) / 0.1
    log_softmax = s - np.log(np.exp(s).sum(1, keepdims=True))
    assert loss.item() == pytest.approx(-log_softmax[np.arange(4), np.arange(4)].mean(), abs=1e-5)
    assert acc.item() == pytest.approx((s.argmax(1) == np.arange(4)).mean())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("k", [0, 2])
def test_gathered_ranks_equal_one_global_batch(symmetric, k):
    """Two ranks with gathered passages (blocks [B positives, B*k negatives]) give, on average, the
    loss and gradients of a single process holding the whole global batch."""
    B, world, d = 3, 2, 8
    q = unit(world * B, d, seed=3).requires_grad_()
    blocks = [unit(B * (1 + k), d, seed=10 + r) for r in range(world)]
    p_all = torch.cat(blocks).requires_grad_()
    loss_fn = InfoNCELoss(temperature=0.05, symmetric=symmetric)

    # the module's layout: rank r's query i -> row r * B(1+k) + i of the gathered passages
    per_rank = []
    for r in range(world):
        targets = torch.arange(B) + r * B * (1 + k)
        loss, _ = loss_fn(q[r * B : (r + 1) * B], p_all, targets, q_all=q, q_offset=r * B)
        per_rank.append(loss)
    ddp = torch.stack(per_rank).mean()
    g_ddp = torch.autograd.grad(ddp, [q, p_all])

    targets = torch.cat([torch.arange(B) + r * B * (1 + k) for r in range(world)])
    single, _ = loss_fn(q, p_all, targets)
    if symmetric:  # reference: the passage->query direction on the whole batch, written out
        pos = p_all[targets]
        back = F.cross_entropy(pos @ q.T / 0.05, torch.arange(world * B))
        single = 0.5 * (F.cross_entropy(q @ p_all.T / 0.05, targets) + back)
    g_single = torch.autograd.grad(single, [q, p_all])
    assert ddp.item() == pytest.approx(single.item(), abs=1e-5)
    for a, b in zip(g_ddp, g_single):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_learnable_temperature_gets_gradient_fixed_does_not():
    q, p = unit(4, 8, seed=5), unit(4, 8, seed=6)
    fixed, learn = InfoNCELoss(0.05), InfoNCELoss(0.05, learnable_temperature=True)
    assert not fixed.log_scale.requires_grad
    learn(q, p, torch.arange(4))[0].backward()
    assert learn.log_scale.grad is not None and learn.log_scale.grad.abs() > 0
    assert learn.temperature == pytest.approx(0.05)


def test_temperature_must_be_positive():
    with pytest.raises(ConfigError, match="loss.temperature"):
        InfoNCELoss(temperature=0)
