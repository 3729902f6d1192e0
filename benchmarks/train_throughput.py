"""Training throughput: our Lightning training step vs sentence-transformers.

Same model (the offline all-MiniLM-L6-v2), the same (query, passage) pairs (X-X batches of the demo
corpus, or --languages), the same batch size and max length; sentence-transformers runs its
``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` (the same in-batch InfoNCE).
The two alternate for --repeats rounds; each round times --steps optimizer steps after --warmup
steps. Prints pairs/s and real (non-padding) tokens/s per round, the medians and the ratio.

    python benchmarks/train_throughput.py                          # CPU: 3 rounds x 20 steps, batch 32
    python benchmarks/train_throughput.py --steps 50 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.datamodule import ParallelDataModule  # noqa: E402
from src.encoder import Encoder, minilm_path  # noqa: E402
from src.loss import InfoNCELoss  # noqa: E402
from src.module import BiEncoderModule  # noqa: E402
from src.samplers import XXSampler  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo" / "train.jsonl"


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()


def batches(args) -> list[list[tuple[str, str]]]:
    """The (query, passage) pairs of warmup + steps X-X batches, drawn once and used by both."""
    encoder = Encoder(minilm_path(), pooling="mean", query_max_length=args.max_length, passage_max_length=args.max_length)
    dm = ParallelDataModule(str(args.data), lambda index, b, **kw: XXSampler(index, b, steps_per_epoch=10_000, **kw),
                            encoder.tokenization, batch_size=args.batch_size, languages=args.languages, seed=0)
    sampler = dm.build_sampler()
    rows = dm.corpus.select_columns(["query", "positive"])
    out = []
    for step in range(args.warmup + args.steps):
        pairs = sampler.batch_at(0, step).pairs(dm.index, 0, args.batch_size)
        out.append([(rows[q]["query"], rows[p]["positive"]) for q, p in pairs])
    return out


def real_tokens(tokenizer, batch_list, max_length: int) -> int:
    texts = [t for b in batch_list for pair in b for t in pair]
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return sum(len(ids) for ids in enc["input_ids"])


def run_ours(args, data) -> float:
    encoder = Encoder(minilm_path(), pooling="mean", query_max_length=args.max_length, passage_max_length=args.max_length)
    module = BiEncoderModule(encoder, InfoNCELoss(temperature=0.05), lr=2e-5, warmup_ratio=0.1)
    tok = encoder.tokenization

    class Batches(torch.utils.data.Dataset):
        """Tokenises each batch when it is fetched, inside the timed loop, as the training collator does."""

        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> dict:
            b = data[i]
            return {"query": tok([q for q, _ in b], "query"), "passage": tok([p for _, p in b], "passage"),
                    "query_lang": ["x"] * len(b), "passage_lang": ["x"] * len(b), "kind": "xx"}

    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_steps=len(data), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], gradient_clip_val=1.0,
                        precision="bf16-mixed" if torch.cuda.is_available() else "32-true")
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(Batches(), batch_size=None))
    return timer.end - timer.start


def run_sentence_transformers(args, data) -> float:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        start = end = None

        def on_step_begin(self, targs, state, control, **kw):
            if state.global_step == args.warmup and self.start is None:
                self.start = time.perf_counter()

        def on_train_end(self, targs, state, control, **kw):
            self.end = time.perf_counter()

    model = SentenceTransformer(minilm_path(), device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = args.max_length
    pairs = [pair for b in data for pair in b]
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        targs = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=len(data), learning_rate=2e-5,
            warmup_steps=0.1, max_grad_norm=1.0, logging_steps=10_000, save_strategy="no", report_to=[], seed=0,
            dataloader_num_workers=0, bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset,
                                             loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[timer])
        trainer.train()
    return timer.end - timer.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEMO))
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = batches(args)
    from transformers import AutoTokenizer

    timed = data[args.warmup:]
    tokens = real_tokens(AutoTokenizer.from_pretrained(minilm_path()), timed, args.max_length)
    pairs = args.steps * args.batch_size
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"{pairs} pairs / {tokens} real tokens timed per round, batch {args.batch_size}, max length {args.max_length}, {device}")
    results: dict[str, list[float]] = {"ours": [], "sentence-transformers": []}
    for r in range(args.repeats):
        for name, fn in (("ours", run_ours), ("sentence-transformers", run_sentence_transformers)):
            seconds = fn(args, data)
            results[name].append(seconds)
            print(f"round {r + 1} {name:22s} {pairs / seconds:8.1f} pairs/s {tokens / seconds:9.0f} tokens/s")
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, seconds in med.items():
        print(f"median {name:22s} {pairs / seconds:8.1f} pairs/s {tokens / seconds:9.0f} tokens/s")
    print(f"ratio (ours / sentence-transformers): {med['sentence-transformers'] / med['ours']:.2f}x")


if __name__ == "__main__":
    main()
