"""Exact inner-product top-k over a corpus that arrives block by block (MIRACL's corpus search).

In:  query embeddings [Q, d] (float32), an iterator of corpus blocks [n_i, d], k.
Out: (scores [Q, k], corpus indices [Q, k]) of the k best passages per query, best first; -1 where
     the corpus has fewer than k passages.

Backends, all exact:
- ``faiss``: a flat inner-product index per block (faiss puts it on every GPU it sees, with the
  ``faiss-gpu`` packages; on the CPU otherwise), results merged in a heap;
- ``torch``: a float32 matrix product and ``topk`` per block on CUDA when available, else the CPU;
- ``auto`` (default): faiss when it sees a GPU, else torch on CUDA when there is one, else faiss on
  the CPU. So the GPU is used whenever one is there, with or without faiss-gpu.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from mdr.errors import ConfigError

BACKENDS = ("auto", "faiss", "torch")


def resolve_backend(backend: str) -> tuple[str, str]:
    """(``faiss`` or ``torch``, the device it will run on)."""
    if backend not in BACKENDS:
        raise ConfigError(f"eval.sets.<set>.search must be one of {BACKENDS}, got {backend!r}")
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if backend == "faiss" or (backend == "auto" and (gpus or not torch.cuda.is_available())):
        return "faiss", f"{gpus} GPU(s)" if gpus else "cpu"
    return "torch", "cuda" if torch.cuda.is_available() else "cpu"


def exact_search(queries: np.ndarray, blocks: Iterable[np.ndarray], k: int, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The k best corpus entries by inner product for every query (see the module docstring)."""
    name, device = resolve_backend(backend)
    if name == "faiss":
        import faiss
        from faiss.contrib.exhaustive_search import knn_ground_truth

        return knn_ground_truth(np.ascontiguousarray(queries, dtype=np.float32), blocks, k, metric_type=faiss.METRIC_INNER_PRODUCT)
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32), device=device)
    best_scores = torch.full((len(q), k), -torch.inf, device=device)
    best_idx = torch.full((len(q), k), -1, dtype=torch.long, device=device)
    offset = 0
    for block in blocks:
        scores = q @ torch.from_numpy(np.array(block, dtype=np.float32)).to(device).T  # a copy: memmaps are read-only
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        merged_scores = torch.cat([best_scores, top.values], 1)
        merged_idx = torch.cat([best_idx, top.indices + offset], 1)
        keep = torch.topk(merged_scores, k, dim=1).indices
        best_scores, best_idx = merged_scores.gather(1, keep), merged_idx.gather(1, keep)
        offset += scores.shape[1]
    best_idx[torch.isinf(best_scores)] = -1
    return best_scores.cpu().numpy(), best_idx.cpu().numpy()
