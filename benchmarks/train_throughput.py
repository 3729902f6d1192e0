"""Training throughput: our Lightning training step vs sentence-transformers.

Same model (``--model``, any conf/model option; default the offline all-MiniLM-L6-v2; on a GPU
``labse_random``, LaBSE's architecture, with identical starting weights on both sides: ours are
exported for sentence-transformers), the same (query, passage) pairs (X-X batches of the demo
corpus, or --languages, fed to both as the same batches in the same order), the same batch size and
max length; sentence-transformers runs its ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss`` (the same in-batch InfoNCE).
The two alternate for --repeats rounds; each round times --steps optimizer steps after --warmup
steps. Prints pairs/s and real (non-padding) tokens/s per round, the medians and the ratio.

``--length-groups G`` draws our batches with ``sampler.length_groups=G`` (G steps drawn at once and
cut into batches of similar length); sentence-transformers then gets the same pairs with the same
language per batch, cut into batches at random within each group, as a sampler without that
option would, so the comparison isolates the lever. ``--xquad-r`` trains on XQuAD-R's questions and
their answer sentences (Wikipedia sentences in 11 languages, a realistic length spread) instead of
the demo corpus, whose passages are all 1-3 sentences.

    python benchmarks/train_throughput.py                          # CPU: 3 rounds x 20 steps, batch 32
    python benchmarks/train_throughput.py --xquad-r --length-groups 16
    python benchmarks/train_throughput.py --steps 50 --batch-size 64
    python benchmarks/train_throughput.py --model labse_random --xquad-r --batch-size 100 --steps 100 --warmup 20   # GPU
    python benchmarks/train_throughput.py --model labse_random --compile --pad-multiple 32 ...   # torch.compile, both sides

On a GPU both run bf16 (our ``bf16-mixed``, sentence-transformers' ``bf16=True``). ``--compile``
compiles both (ours: ``model.compile`` with length buckets of ``--pad-multiple`` tokens;
sentence-transformers: the HF Trainer's ``torch_compile``); the first steps, which compile, fall in
the warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mdr.config import PROJECT_ROOT, instantiate, register_resolvers
from mdr.data.datamodule import ParallelDataModule
from mdr.data.samplers import XXSampler
from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa
from mdr.model.encoder import Encoder
from mdr.model.export import write_sentence_transformers_folder
from mdr.model.loss import InfoNCELoss
from mdr.model.module import BiEncoderModule

DEMO = PROJECT_ROOT / "data" / "demo" / "train.jsonl"
register_resolvers()


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()


def xquad_r_corpus(path: Path, out: Path) -> Path:
    """XQuAD-R as parallel training pairs: each question with its answer sentence in its own language."""
    es = lareqa("xquad_r", str(path))
    with open(out, "w") as f:
        for q, (text, lang, qid) in enumerate(zip(es.query_text, es.query_lang, es.query_id)):
            answer = next(c for c in es.relevant[q] if es.cand_lang[c] == lang)
            f.write(json.dumps({"id": qid, "lang": lang, "query": text, "positive": es.cand_text[answer]}) + "\n")
    return out


def load_encoder(args, compile: bool = False) -> tuple[Encoder, dict]:
    """A fresh ``--model`` encoder (seeded: random-weight models start alike) and its config."""
    overrides = [f"model={args.model}", f"model.query_max_length={args.max_length}", f"model.passage_max_length={args.max_length}"]
    if compile:
        overrides += ["model.compile=true", f"model.pad_to_multiple_of={args.pad_multiple}"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model), OmegaConf.to_container(cfg.model, resolve=True)


def batches(args) -> tuple[list[list[tuple[str, str]]], int]:
    """The (query, passage) pairs of warmup + steps X-X batches, drawn once and used by both, and the
    length groups in use (the sampler lowers them to what the smallest language can fill)."""
    encoder, _ = load_encoder(args)
    factory = lambda index, b, **kw: XXSampler(index, b, steps_per_epoch=10_000, length_groups=args.length_groups, **kw)  # noqa: E731
    dm = ParallelDataModule(str(args.data), factory, encoder.tokenization, batch_size=args.batch_size,
                            languages=args.languages, seed=0)
    sampler = dm.build_sampler()
    rows = dm.corpus.select_columns(["query", "positive"])
    out = []
    for step in range(args.warmup + args.steps):
        pairs = sampler.batch_at(0, step).pairs(dm.index, 0, args.batch_size)
        out.append([(rows[q]["query"], rows[p]["positive"]) for q, p in pairs])
    return out, sampler.groups


def ungrouped(data: list[list[tuple[str, str]]], groups: int) -> list[list[tuple[str, str]]]:
    """The same pairs cut into batches at random within each length group (one language each)."""
    if groups == 1:
        return data
    rng, out = np.random.default_rng(0), []
    for start in range(0, len(data), groups):
        group = data[start : start + groups]
        pairs = [pair for b in group for pair in b]
        order = rng.permutation(len(pairs))
        out += [[pairs[i] for i in order[k * len(b) : (k + 1) * len(b)]] for k, b in enumerate(group)]
    return out


def token_counts(tokenizer, batch_list, max_length: int) -> tuple[int, int]:
    """Real tokens, and positions computed with dynamic padding (queries and passages padded apart)."""
    real = positions = 0
    for b in batch_list:
        for texts in ([q for q, _ in b], [p for _, p in b]):
            lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            real, positions = real + sum(lengths), positions + max(lengths) * len(lengths)
    return real, positions


def run_ours(args, data) -> float:
    encoder, _ = load_encoder(args, compile=args.compile)
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
    """Trains on ``data``'s batches in order (main() hands it the ungrouped cut)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        start = end = None

        def on_step_begin(self, targs, state, control, **kw):
            if state.global_step == args.warmup and self.start is None:
                self.start = time.perf_counter()

        def on_train_end(self, targs, state, control, **kw):
            self.end = time.perf_counter()

    folder = tempfile.mkdtemp(prefix="st-model-")
    write_sentence_transformers_folder(*load_encoder(args), folder)  # the same model and starting weights as ours
    model = SentenceTransformer(folder, device="cuda" if torch.cuda.is_available() else "cpu")
    model.max_seq_length = args.max_length
    pairs = [pair for b in data for pair in b]
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    # our batches, in order: its default sampler would shuffle pairs across batches and mix languages
    in_order = lambda dataset, batch_size, drop_last, **kw: DefaultBatchSampler(  # noqa: E731
        torch.utils.data.SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last)
    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        targs = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=len(data), learning_rate=2e-5,
            warmup_steps=0.1, max_grad_norm=1.0, logging_steps=10_000, save_strategy="no", report_to=[], seed=0,
            dataloader_num_workers=0, batch_sampler=in_order, bf16=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
            torch_compile=args.compile,
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset,
                                             loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[timer])
        trainer.train()
    return timer.end - timer.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEMO), help="a parallel corpus (default: the demo's training part)")
    parser.add_argument("--xquad-r", nargs="?", const=xquad_r_path(), default=None, metavar="DIR",
                        help="train on XQuAD-R questions and answer sentences (LAReQA JSON in DIR)")
    parser.add_argument("--length-groups", type=int, default=1, help="our sampler.length_groups (see above)")
    parser.add_argument("--languages", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="minilm", help="a conf/model option (minilm, labse_random, xlmr_random, ...)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument("--pad-multiple", type=int, default=32, help="our length buckets with --compile")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.xquad_r:
            args.data = str(xquad_r_corpus(Path(args.xquad_r), Path(tmp) / "xquad_r.jsonl"))
        data, args.length_groups = batches(args)

    tokenizer = load_encoder(args)[0].tokenization.tokenizer
    tokens, ours_positions = token_counts(tokenizer, data[args.warmup:], args.max_length)
    st_data = ungrouped(data, args.length_groups)
    _, st_positions = token_counts(tokenizer, st_data[args.warmup:], args.max_length)
    pairs = args.steps * args.batch_size
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model}{' compiled' if args.compile else ''}, {'XQuAD-R' if args.xquad_r else args.data}: {pairs} pairs / "
          f"{tokens} real tokens timed per round, batch {args.batch_size}, max length {args.max_length}, "
          f"length groups {args.length_groups}, {device}")
    print(f"real tokens per computed position: ours {tokens / ours_positions:.0%}, "
          f"sentence-transformers {tokens / st_positions:.0%}")
    results: dict[str, list[float]] = {"ours": [], "sentence-transformers": []}
    for r in range(args.repeats):
        for name, fn, batches_of in (("ours", run_ours, data), ("sentence-transformers", run_sentence_transformers, st_data)):
            seconds = fn(args, batches_of)
            results[name].append(seconds)
            print(f"round {r + 1} {name:22s} {pairs / seconds:8.1f} pairs/s {tokens / seconds:9.0f} tokens/s")
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, seconds in med.items():
        print(f"median {name:22s} {pairs / seconds:8.1f} pairs/s {tokens / seconds:9.0f} tokens/s")
    print(f"ratio (ours / sentence-transformers): {med['sentence-transformers'] / med['ours']:.2f}x")


if __name__ == "__main__":
    main()
