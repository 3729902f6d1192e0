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


def test_mask_option_must_be_a_boolean():
    with pytest.raises(ConfigError, match="loss.mask_false_negatives must be true or false, got 'yes'"):
        InfoNCELoss(mask_false_negatives="yes")


# -- the false-negative mask (loss.mask_false_negatives)

def keys(*pairs):
    """[P, 2] passage keys from (example id, text) pairs; id None: unknown (0), as the collator keys them."""
    from mdr.data.loader import passage_keys

    return passage_keys([t for _, t in pairs], [i for i, _ in pairs])


def masked_cross_entropy(s: np.ndarray, targets, masked: set[tuple[int, int]]) -> float:
    """The hand computation: each row's log-softmax over the columns not masked for it."""
    out = []
    for i, t in enumerate(targets):
        cols = [j for j in range(s.shape[1]) if (i, j) not in masked]
        out.append(-(s[i, t] - np.log(np.exp(s[i, cols]).sum())))
    return float(np.mean(out))


# three queries (examples A, B, C) with one hard negative each, passages [pA, pB, pC, nA, nB, nC]:
# A's negative is a translation of B's positive (B's example id, another text), B's negative has C's
# positive text verbatim but no known id (a BM25 negative), C's negative is example D. False negatives:
# query B <- nA (its translation), query C <- nB (its text). Nothing else, A's own negative included.
PASSAGES = [("A", "pA en"), ("B", "pB en"), ("C", "pC en"), ("B", "pB de"), (None, "pC en"), ("D", "pD en")]
FALSE = {(1, 3), (2, 4)}


def test_masked_loss_matches_the_hand_computation():
    q, p = unit(3, 8, seed=21), unit(6, 8, seed=22)
    loss, acc = InfoNCELoss(temperature=0.1)(q, p, torch.arange(3), p_keys=keys(*PASSAGES))
    s = (q @ p.T).numpy().astype(np.float64) / 0.1
    assert loss.item() == pytest.approx(masked_cross_entropy(s, [0, 1, 2], FALSE), abs=1e-5)
    assert loss.item() != pytest.approx(masked_cross_entropy(s, [0, 1, 2], set()), abs=1e-3)  # the mask matters here
    best = [max((j for j in range(6) if (i, j) not in FALSE), key=lambda j: s[i, j]) for i in range(3)]
    assert acc.item() == pytest.approx(np.mean(np.array(best) == np.arange(3)))


def test_the_mask_catches_what_it_should():
    from mdr.model.loss import false_negatives

    k = keys(*PASSAGES)
    got = false_negatives(k[:3], k, torch.arange(3))
    assert {tuple(x) for x in got.nonzero().tolist()} == FALSE
    # an unknown id (0) never matches another unknown id; equal texts always match
    k = keys((None, "x"), (None, "y"), (None, "x"))
    assert {tuple(x) for x in false_negatives(k[:2], k, torch.arange(2)).nonzero().tolist()} == {(0, 2)}


def test_symmetric_term_masks_the_queries_whose_answer_it_is():
    """Two positives with the same text under different ids (a passage two examples share): each is the
    other's answer in both directions."""
    q, p = unit(3, 8, seed=31), unit(5, 8, seed=32)
    k = keys(("A", "shared"), ("B", "shared"), ("C", "pC"), ("D", "n1"), ("E", "n2"))
    loss, _ = InfoNCELoss(temperature=0.1, symmetric=True)(q, p, torch.arange(3), p_keys=k)
    s = (q @ p.T).numpy().astype(np.float64) / 0.1
    forward = masked_cross_entropy(s, [0, 1, 2], {(0, 1), (1, 0)})
    back = masked_cross_entropy(s[:, :3].T.copy(), [0, 1, 2], {(0, 1), (1, 0)})  # positive i -> query j
    assert loss.item() == pytest.approx(0.5 * (forward + back), abs=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_mask_off_is_the_plain_loss_exactly(symmetric):
    q, p = unit(3, 8, seed=41).requires_grad_(), unit(6, 8, seed=42).requires_grad_()
    plain = InfoNCELoss(0.5, symmetric=symmetric)(q, p, torch.arange(3))[0]  # no keys: today's call
    off = InfoNCELoss(0.5, symmetric=symmetric, mask_false_negatives=False)(q, p, torch.arange(3), p_keys=keys(*PASSAGES))[0]
    assert torch.equal(plain, off)
    assert torch.equal(torch.autograd.grad(plain, [q, p])[0], torch.autograd.grad(off, [q, p])[0])
    on = InfoNCELoss(0.5, symmetric=symmetric)(q, p, torch.arange(3), p_keys=keys(*PASSAGES))[0]
    assert on.item() < plain.item()  # false negatives removed from the denominators
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(on, [q, p]))  # -inf logits give zero, not NaN, gradients


@pytest.mark.parametrize("symmetric", [False, True])
def test_masked_gathered_ranks_equal_one_global_batch(symmetric):
    """As above with the mask, across ranks: rank 0's negative is a translation of rank 1's first positive,
    rank 1's negative repeats rank 0's second positive's text, and rank 1's two positives share a text."""
    B, world, d = 2, 2, 8
    q = unit(world * B, d, seed=51).requires_grad_()
    p_all = unit(world * 2 * B, d, seed=52).requires_grad_()  # [r0: pA pB nA nB | r1: pC pD nC nD]
    k = keys(("A", "a"), ("B", "b"), ("C", "c de"), ("X", "x"), ("C", "cd"), ("D", "cd"), (None, "b"), ("Y", "y"))
    loss_fn = InfoNCELoss(temperature=0.05, symmetric=symmetric)
    q_all_targets = torch.tensor([0, 1, 4, 5])
    per_rank = [loss_fn(q[r * B:(r + 1) * B], p_all, q_all_targets[r * B:(r + 1) * B], q_all=q, q_offset=r * B, p_keys=k,
                        q_all_targets=q_all_targets)[0] for r in range(world)]
    ddp = torch.stack(per_rank).mean()
    single = loss_fn(q, p_all, q_all_targets, p_keys=k)[0]
    assert ddp.item() == pytest.approx(single.item(), abs=1e-5)
    for a, b in zip(torch.autograd.grad(ddp, [q, p_all]), torch.autograd.grad(single, [q, p_all])):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    s = (q @ p_all.T).detach().numpy().astype(np.float64) / 0.05  # query C <- nA (2, 2); B <- nD (1, 6); C, D share "cd"
    forward = masked_cross_entropy(s, [0, 1, 4, 5], {(2, 2), (1, 6), (2, 5), (3, 4)})
    if symmetric:
        back = masked_cross_entropy(s[:, [0, 1, 4, 5]].T.copy(), [0, 1, 2, 3], {(2, 3), (3, 2)})
        forward = 0.5 * (forward + back)
    assert single.item() == pytest.approx(forward, abs=1e-5)
