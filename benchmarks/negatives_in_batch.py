"""In-batch false negatives: how often a passage of a training batch is another query's answer, and how
many of them the loss's mask (``loss.mask_false_negatives``) leaves in.

The in-batch InfoNCE loss (``mdr.model.loss``) scores every query against every passage of the batch,
hard negatives included. A passage other than the query's own positive is a false negative for it when
it belongs to the query's example (its translation: the same example id in another language, known from
the data's ``negative_ids``) or has the text of its positive (a verbatim copy). This script draws the
batches a run would train on (the sampler and the DataLoader, no model), finds them from the example ids
and texts as strings, and counts the ones the loss's mask, computed from the batch's hashed
``passage_keys`` as in training, does not remove (none, when the mask is on; all, when it is off).

    python benchmarks/negatives_in_batch.py --files /work/runs/22/mined/train.jsonl
    python benchmarks/negatives_in_batch.py --files /work/runs/22/mined/train.jsonl \
        --overrides experiment=demo loss.mask_false_negatives=false
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mdr.config import register_resolvers
from mdr.model.loss import false_negatives

ROOT = Path(__file__).resolve().parents[1]


def count(files: str, sampler: str, seed: int, overrides: list[str], epochs: int) -> Counter:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "data=parallel_files", f"data.files={files}", "data.num_hard_negatives=1",
                                          "data.num_workers=0", f"sampler={sampler}", f"seed={seed}"])
    dm = instantiate(cfg.data)(sampler=instantiate(cfg.sampler), tokenization=lambda texts, kind: list(texts), seed=seed)
    masking = instantiate(cfg.loss).mask_false_negatives
    dm.setup()
    n = Counter()
    for _ in range(epochs):
        for batch in dm.train_dataloader():
            size, texts, ids = len(batch["query"]), batch["passage"], batch["passage_id"]
            truth = torch.tensor([[j != i and ((ids[j] is not None and ids[j] == ids[i]) or texts[j] == texts[i])
                                   for j in range(len(texts))] for i in range(size)], dtype=torch.bool)
            keys = batch["passage_keys"]
            masked = false_negatives(keys[:size], keys, torch.arange(size)) if masking else torch.zeros_like(truth)
            negative_hit = truth[:, size:]
            n["batches"] += 1
            n["queries"] += size
            n["negatives"] += len(texts) - size
            n["negatives false for a query"] += int(negative_hit.any(0).sum())
            positives = set(texts[:size])
            n["negatives verbatim"] += sum(text in positives for text in texts[size:])
            n["pairs"] += int(truth.sum())
            n["pairs with a positive"] += int(truth[:, :size].sum())
            n["queries hurt"] += int(truth.any(1).sum())
            n["left unmasked"] += int((truth & ~masked).sum())
            n["masked, not false"] += int((masked & ~truth).sum())
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", required=True, help="a corpus with negatives (mine.py's output)")
    parser.add_argument("--samplers", nargs="+", default=["xx", "xy", "hybrid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--overrides", nargs="*", default=["experiment=demo"], help="train.py overrides (batch size, loss.*)")
    args = parser.parse_args()
    register_resolvers()
    print(f"{args.files}; {' '.join(args.overrides)}; {args.epochs} epoch(s), seeds {args.seeds}")
    print("| sampler | hard negatives | of them another query's answer (verbatim + translation) | queries | queries with a "
          "false negative | false (query, passage) pairs (of which a positive) | left unmasked | masked, not false |")
    print("|---|---|---|---|---|---|---|---|")
    for sampler in args.samplers:
        n = sum((count(args.files, sampler, seed, args.overrides, args.epochs) for seed in args.seeds), Counter())
        false, verbatim = n["negatives false for a query"], n["negatives verbatim"]
        print(f"| {sampler} | {n['negatives']} | {false} ({100 * false / n['negatives']:.1f} %; {verbatim} + {false - verbatim}) "
              f"| {n['queries']} | {n['queries hurt']} ({100 * n['queries hurt'] / n['queries']:.1f} %) "
              f"| {n['pairs']} ({n['pairs with a positive']}) | {n['left unmasked']} | {n['masked, not false']} |")


if __name__ == "__main__":
    main()
