"""Exact top-100 inner-product search over a synthetic corpus: faiss on the CPU, faiss on the GPU,
and a plain torch matrix product + topk on the GPU (the three paths of ``mdr.evaluation.search``).

The corpus is N random unit vectors of dimension d (768: LaBSE, XLM-R base) written to a float32
memmap on disk and read back block by block, as the MIRACL evaluation does; Q random unit queries.
Prints, per backend available here, the seconds and queries/s, and the share of queries whose
top-k set is the same as the first backend's (the order of near-equal scores may differ: float
sums in another order).

    python benchmarks/search_speed.py --docs 1000000 10000000 --queries 1000      # a GPU machine
    python benchmarks/search_speed.py --docs 20000 --queries 100                   # CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from mdr.evaluation.search import exact_search


def synthetic_corpus(path: str, n: int, dim: int, block: int, seed: int = 0) -> np.memmap:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out:
        for start in range(0, n, block):
            x = rng.standard_normal((min(block, n - start), dim), dtype=np.float32)
            out.write((x / np.linalg.norm(x, axis=1, keepdims=True)).tobytes())
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))


def backends() -> list[tuple[str, str]]:
    """(label, backend) pairs this machine can run."""
    import faiss

    out = [("faiss, CPU", "faiss_cpu")]
    if getattr(faiss, "get_num_gpus", lambda: 0)():
        out.append((f"faiss, {faiss.get_num_gpus()} GPU(s)", "faiss"))
    out.append((f"torch matmul + topk, {'GPU' if torch.cuda.is_available() else 'CPU'}", "torch"))
    return out


def run(backend: str, queries: np.ndarray, corpus: np.memmap, block: int, k: int) -> tuple[float, np.ndarray]:
    blocks = (np.ascontiguousarray(corpus[i : i + block]) for i in range(0, len(corpus), block))
    if backend == "faiss_cpu":  # faiss, its GPUs hidden
        import faiss
        from faiss.contrib.exhaustive_search import knn_ground_truth

        t0 = time.perf_counter()
        _, idx = knn_ground_truth(queries, blocks, k, metric_type=faiss.METRIC_INNER_PRODUCT, ngpu=0)
        return time.perf_counter() - t0, idx
    t0 = time.perf_counter()
    _, idx = exact_search(queries, blocks, k, backend)
    return time.perf_counter() - t0, idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--block", type=int, default=262_144, help="passages per search block")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--work-dir", default=None, help="where the corpus memmap goes (N x d x 4 bytes)")
    parser.add_argument("--skip", nargs="*", default=[], help="backends to leave out: faiss_cpu, faiss, torch")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for n in args.docs:
        with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
            t0 = time.perf_counter()
            corpus = synthetic_corpus(os.path.join(tmp, "corpus.f32"), n, args.dim, args.block)
            print(f"{n:,} passages x {args.dim} (float32 memmap, {n * args.dim * 4 / 2**30:.1f} GiB, written in "
                  f"{time.perf_counter() - t0:.0f} s), {args.queries} queries, top {args.k}, blocks of {args.block:,}")
            reference, times = None, {}
            for label, backend in backends():
                if backend in args.skip:
                    continue
                seconds, idx = run(backend, queries, corpus, args.block, args.k)
                same = "" if reference is None else f"  same top-{args.k} set as the first: " + \
                    f"{np.mean([set(a) == set(b) for a, b in zip(idx, reference)]):.1%} of queries"
                reference = idx if reference is None else reference
                times[backend] = seconds
                print(f"  {label:32s} {seconds:8.2f} s  {args.queries / seconds:10.1f} queries/s{same}")
            if "faiss_cpu" in times:
                for backend, seconds in times.items():
                    if backend != "faiss_cpu":
                        print(f"  {backend} vs faiss on the CPU: {times['faiss_cpu'] / seconds:.1f}x")
            del corpus


if __name__ == "__main__":
    main()
