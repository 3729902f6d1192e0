"""InfoNCE against a direct computation, and the DDP gather layout against one big batch."""

import math

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


def eq1_by_hand(q, positives, negatives) -> float:
    """The printed Eq. 1 (arXiv 2408.10536), temperature 1, cosine scores, averaged over queries:
    -log(e^s(q_i, d_i+) / (e^s(q_i, d_i+) + sum_j e^s(q_i, d_j-))), j over every hard negative."""
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    total = 0.0
    for i, qi in enumerate(q.tolist()):
        own = math.exp(cos(qi, positives[i].tolist()))
        total += -math.log(own / (own + sum(math.exp(cos(qi, n)) for n in negatives.tolist())))
    return total / len(q)


def test_eq1_option_matches_the_printed_formula_by_hand():
    q, pos, neg = unit(3, 8, seed=11), unit(3, 8, seed=12), unit(3, 8, seed=13)
    p = torch.cat([pos, neg])
    mask = torch.tensor([True] * 3 + [False] * 3)
    loss, acc = InfoNCELoss(temperature=1.0, in_batch_positives=False)(q, p, torch.arange(3), positives=mask)
    assert loss.item() == pytest.approx(eq1_by_hand(q, pos, neg), abs=1e-6)
    # the default (DPR) form also divides by the other queries' positives: a different, larger loss here
    dpr, _ = InfoNCELoss(temperature=1.0)(q, p, torch.arange(3))
    assert dpr.item() > loss.item() + 1e-3
    scores = (q @ p.T).masked_fill(mask & (torch.arange(6) != torch.arange(3)[:, None]), -1e9)
    assert acc.item() == pytest.approx((scores.argmax(1) == torch.arange(3)).float().mean().item())


def test_eq1_in_the_module_two_ranks_equal_one_global_batch_by_hand():
    """Under DDP each rank holds [B positives, B hard negatives]; gathered, every query's denominator
    is its own positive and all 2B hard negatives of the global batch."""
    from types import SimpleNamespace

    from mdr.model.module import BiEncoderModule
    from tests.helpers import tiny

    B, d = 2, 8
    q = unit(2 * B, d, seed=21)
    blocks = [unit(2 * B, d, seed=30 + r) for r in range(2)]  # rank r: rows [0, B) positives, [B, 2B) negatives
    module = BiEncoderModule(tiny(), InfoNCELoss(temperature=1.0, in_batch_positives=False))
    module._gather = lambda x: torch.cat(blocks)
    per_rank = []
    for rank in range(2):
        module._trainer = SimpleNamespace(world_size=2, global_rank=rank)
        per_rank.append(module._loss(q[rank * B:(rank + 1) * B], blocks[rank])[0].item())
    positives = torch.cat([b[:B] for b in blocks])
    negatives = torch.cat([b[B:] for b in blocks])
    assert np.mean(per_rank) == pytest.approx(eq1_by_hand(q, positives, negatives), abs=1e-6)

    # validation batches have no hard negatives: scored against every passage of the batch
    module._trainer, module._gather = SimpleNamespace(world_size=1, global_rank=0), lambda x: x
    pos = unit(B, d, seed=40)
    val, _ = module._loss(q[:B], pos, validation=True)
    assert val.item() == pytest.approx(InfoNCELoss(temperature=1.0)(q[:B], pos, torch.arange(B))[0].item(), abs=1e-6)
    with pytest.raises(ConfigError, match=r"Eq\. 1\) needs hard negatives"):
        module._loss(q[:B], pos)  # a training batch without hard negatives


def test_eq1_has_no_symmetric_form():
    with pytest.raises(ConfigError, match="loss.symmetric=true has no Eq. 1 form"):
        InfoNCELoss(symmetric=True, in_batch_positives=False)
