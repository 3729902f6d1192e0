"""Memory and time of mine.py's mining (``mdr.mining.mine_corpus``) as the corpus grows.

A synthetic parallel corpus (N examples in two languages, written as Parquet) is mined in pivot mode
with a stand-in encoder: a deterministic random unit vector per text, of MiniLM's size (384), so
that the measurement is the mining's (memmaps, search, rules, writing) and not a transformer's.
Prints per N the wall time and the peak anonymous memory (RssAnon, sampled every 50 ms: the
process's own heap, not the page cache that backs the embedding memmaps) beside the size the
query and passage embeddings would take in RAM.

    python benchmarks/mining_scale.py --examples 10000 40000
    python benchmarks/mining_scale.py --examples 500000 --method random     # no search: encoding, rules, writing
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mdr.mining import MiningOptions, mine_corpus


class HashEncoder:
    """A unit vector per text, seeded by the text: the same text, the same vector."""

    name_or_path = "hash-encoder"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def encode(self, texts, kind, batch_size=128) -> torch.Tensor:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
            out[i] = v / np.linalg.norm(v)
        return torch.from_numpy(out)


def rss_anon_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:"))


class PeakMemory:
    """The highest RssAnon seen while the block runs (a sampling thread)."""

    def __enter__(self):
        self.peak, self._stop = rss_anon_kb(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_anon_kb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def write_corpus(path: str, n: int) -> None:
    ids = [f"q{i:08d}" for i in range(n)]
    table = pa.table({"id": ids * 2, "lang": ["en"] * n + ["de"] * n,
                      "query": [f"question {i} en" for i in range(n)] + [f"frage {i} de" for i in range(n)],
                      "positive": [f"passage {i} en" for i in range(n)] + [f"abschnitt {i} de" for i in range(n)]})
    pq.write_table(table, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", type=int, default=[10000, 40000])
    parser.add_argument("--method", default="hard", choices=["hard", "random"])
    parser.add_argument("--block-size", type=int, default=8192)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"pivot mode, method {args.method}, 2 languages, 384-d, block_size {args.block_size}; {os.cpu_count()} CPU core(s)")
    print("| examples | rows | seconds | peak RssAnon (MB) | embeddings if held in RAM (MB) |")
    print("|---|---|---|---|---|")
    for n in args.examples:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = os.path.join(tmp, "train.parquet")
            write_corpus(corpus, n)
            options = MiningOptions(method=args.method, relative_margin=0.05 if args.method == "hard" else None)
            t0 = time.perf_counter()
            with PeakMemory() as memory:
                mine_corpus(corpus, os.path.join(tmp, "out"), options, HashEncoder(), cache_dir=os.path.join(tmp, "cache"),
                            block_size=args.block_size, work_dir=tmp, progress=False)
            seconds = time.perf_counter() - t0
        print(f"| {n:,} | {2 * n:,} | {seconds:.1f} | {memory.peak / 1024:.0f} | {2 * 2 * n * 384 * 4 / 1e6:.0f} |", flush=True)


if __name__ == "__main__":
    main()
