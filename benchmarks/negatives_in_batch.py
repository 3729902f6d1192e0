"""How often a hard negative is also another query's positive in the same training batch.

The in-batch InfoNCE loss (``mdr.model.loss``) scores every query against every passage of the
batch; a query's hard negative that is the positive of another query of the batch is then one more
copy of that positive, scored as a negative for the other query (a false negative). This script
draws the batches a run would train on (the sampler only, no model) and counts, per sampler, the
share of negatives whose text is a positive of the same batch, and the share of queries whose own
positive appears among the batch's negatives.

    python benchmarks/negatives_in_batch.py --files /work/runs/22/mined/train.jsonl --overrides experiment=demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mdr.config import register_resolvers

ROOT = Path(__file__).resolve().parents[1]


def count(files: str, sampler: str, seed: int, overrides: list[str], epochs: int) -> tuple[int, int, int, int]:
    """(negatives, negatives that are a positive of the batch, queries, queries whose positive is among its batch's negatives)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data=parallel_files", f"data.files={files}", "data.num_hard_negatives=1",
                                          "data.num_workers=0", f"sampler={sampler}", f"seed={seed}"])
    dm = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=lambda texts, kind: list(texts), seed=seed)
    dm.setup()
    negatives = hits = queries = hurt = 0
    for _ in range(epochs):
        for batch in dm.train_dataloader():
            size = len(batch["query"])
            positives, negs = batch["passage"][:size], batch["passage"][size:]
            negatives, queries = negatives + len(negs), queries + size
            hits += sum(n in set(positives) for n in negs)
            hurt += sum(p in set(negs) for p in positives)
    return negatives, hits, queries, hurt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", required=True, help="a corpus with negatives (mine.py's output)")
    parser.add_argument("--samplers", nargs="+", default=["xx", "xy", "hybrid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--overrides", nargs="*", default=["experiment=demo"], help="train.py overrides (batch size, ...)")
    args = parser.parse_args()
    register_resolvers()
    print(f"{args.files}; {' '.join(args.overrides)}; {args.epochs} epoch(s), seeds {args.seeds}")
    print("| sampler | negatives | also a positive of the batch | queries | positive also among the batch's negatives |")
    print("|---|---|---|---|---|")
    for sampler in args.samplers:
        n = h = q = u = 0
        for seed in args.seeds:
            a, b, c, d = count(args.files, sampler, seed, args.overrides, args.epochs)
            n, h, q, u = n + a, h + b, q + c, u + d
        print(f"| {sampler} | {n} | {h} ({100 * h / n:.1f} %) | {q} | {u} ({100 * u / q:.1f} %) |")


if __name__ == "__main__":
    main()
