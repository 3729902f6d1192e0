"""GradCache: a contrastive step over a large batch in small chunks, with the exact gradients.

In:  the encoder, tokenised query and passage inputs of one batch, a loss function of the full
     batch's embeddings, and a chunk size (texts per forward pass).
Out: the loss and accuracy; the encoder's ``.grad`` hold the gradients of that loss.

Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup":
1. embed every chunk without an autograd graph, recording the RNG state before each chunk;
2. compute the loss on those embeddings (as leaves) and back-propagate to them only;
3. embed each chunk again with a graph, replaying its RNG state so that dropout is identical,
   and back-propagate the cached embedding gradients into the encoder.
Activation memory is that of one chunk, whatever the batch size; the price is a second forward.
The gradients equal those of the plain loss (tests/test_grad_cache.py). Under DDP the caller
runs step 3 without DDP's gradient sync and all-reduces once at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch


def _chunks(inputs: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = next(iter(inputs.values())).shape[0]
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, n, size)]


def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


@contextmanager
def _replay(state: tuple, device: torch.device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def grad_cache_step(
    encoder: torch.nn.Module,
    query_inputs: dict[str, torch.Tensor],
    passage_inputs: dict[str, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    chunk_size: int,
    backward: Callable[[torch.Tensor, torch.Tensor], None] = lambda t, g: t.backward(g),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GradCache step; ``backward(embeddings, grad)`` lets Lightning's ``manual_backward`` run step 3."""
    device = next(encoder.parameters()).device
    parts = {"q": _chunks(query_inputs, chunk_size), "p": _chunks(passage_inputs, chunk_size)}
    states: dict[str, list] = {"q": [], "p": []}
    cached = {}
    with torch.no_grad():  # 1. embeddings without graphs
        for kind, chunks in parts.items():
            out = []
            for chunk in chunks:
                states[kind].append(_rng_state(device))
                out.append(encoder(**chunk))
            cached[kind] = torch.cat(out).detach().requires_grad_()
    loss, accuracy = loss_fn(cached["q"], cached["p"])  # 2. loss and d loss / d embeddings
    loss.backward()
    for kind, chunks in parts.items():  # 3. replay each chunk with a graph, push the cached gradient in
        grads = cached[kind].grad.split([next(iter(c.values())).shape[0] for c in chunks])
        for chunk, state, grad in zip(chunks, states[kind], grads):
            with _replay(state, device):
                backward(encoder(**chunk), grad)
    return loss.detach(), accuracy
