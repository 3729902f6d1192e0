"""Training tokens/s and model-FLOPs utilisation (MFU) of our training step, for a GPU.

Per ``--max-length``, one training step as ``BiEncoderModule`` runs it — the shared encoder on B
queries and B passages, in-batch InfoNCE, backward, fused AdamW — under bf16 autocast on CUDA, with
SDPA attention, on full-length sequences (the worst case padding can give). The batch is the largest
power of two that fits (searched by doubling until CUDA runs out of memory) or ``--batch-size``.
The FLOPs of one step are counted on the real step by ``torch.utils.flop_counter.FlopCounterMode``
(matrix multiplications and attention, forward and backward), and

    MFU = FLOPs per step / seconds per step / peak dense bf16 FLOP/s of the GPU

tokens/s counts queries and passages (2 x batch x length per step); the peak comes from the table
below (by GPU name) or ``--peak-tflops``. The model is any ``model`` config of ``conf/model``
(default ``labse``; hub models need the network or a local cache; ``labse_random`` is LaBSE's
architecture with random weights, offline, and costs the same per step). ``tests/test_benchmarks.py``
checks the FLOP count against the analytic count for BERT.

    python benchmarks/gpu_throughput.py                                # LaBSE at 128 and 256 tokens
    python benchmarks/gpu_throughput.py --model labse_random           # the same, without the hub
    python benchmarks/gpu_throughput.py --model xlmr --max-length 512
    python benchmarks/gpu_throughput.py --model minilm --batch-size 8 --steps 2 --warmup 1   # CPU smoke run

Real lengths (``--lengths``): ``fixed`` (every sequence ``--max-length`` long, the default),
``mmarco`` (queries ~N(10, 3) tokens, passages uniform in 60-100, as mMARCO) or ``xquad`` (the
token counts of XQuAD-R's questions and answer sentences); batches are padded to their longest
sequence (or to ``--pad-multiple``), ``--length-groups G`` sorts each draw of G batches by passage
length first, as ``sampler.length_groups`` does. tokens/s then counts real tokens only, and FLOPs are
counted per batch. ``--compile`` uses ``model.compile`` (compile time printed); ``--attn`` picks the
attention implementation (sdpa, flex_attention, flash_attention_2 where installed).

    python benchmarks/gpu_throughput.py --model labse_random --lengths mmarco --batch-size 256 --length-groups 1 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from mdr.config import PROJECT_ROOT as ROOT
from mdr.config import instantiate, register_resolvers
from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa
from mdr.model.encoder import bf16_autocast
from mdr.model.loss import InfoNCELoss
from mdr.model.optim import adamw

register_resolvers()

# dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; other GPUs: --peak-tflops.
# "H100" alone is the SXM part (reported as "NVIDIA H100 80GB HBM3").
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0}


def peak_tflops(device_name: str) -> float | None:
    """The table's entry whose name occurs in the device name (longest match first)."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_BF16_TFLOPS[key]
    return None


def load_encoder(model: str, max_length: int, device: torch.device, **options):
    overrides = [f"model={model}"] + [f"model.{k}={v}" for k, v in options.items() if v is not None]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.model, query_max_length=max_length, passage_max_length=max_length).to(device)


def random_inputs(lengths, vocab: int, device: torch.device, pad_multiple: int | None = None) -> dict:
    """Token ids for sequences of the given lengths, padded to the longest (or a multiple)."""
    width = max(lengths)
    if pad_multiple:
        width = -(-width // pad_multiple) * pad_multiple
    mask = (torch.arange(width)[None, :] < torch.as_tensor(lengths)[:, None]).long()
    ids = torch.randint(1000, vocab, (len(lengths), width)) * mask
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


class Step:
    """One training step on random token ids (full length, or the given (query, passage) lengths
    per batch, cycled); ``flops()`` counts one step."""

    def __init__(self, encoder, batch_size: int, max_length: int, device: torch.device, lengths=None,
                 pad_multiple: int | None = None) -> None:
        self.encoder, self.device = encoder.train(), device
        self.loss = InfoNCELoss(temperature=0.05).to(device)
        self.optimizer = adamw(encoder, lr=2e-5, weight_decay=0.01)  # as training builds it
        vocab = encoder.model.config.vocab_size
        lengths = lengths or [([max_length] * batch_size, [max_length] * batch_size)]
        self.batches = [[random_inputs(q, vocab, device, pad_multiple), random_inputs(p, vocab, device, pad_multiple)]
                        for q, p in lengths]
        self.inputs, self.position = self.batches[0], 0
        self.targets = torch.arange(batch_size, device=device)

    def __call__(self) -> None:
        self.inputs = self.batches[self.position % len(self.batches)]
        self.position += 1
        with bf16_autocast(self.device):
            q, p = (self.encoder(**x) for x in self.inputs)
            loss, _ = self.loss(q, p, self.targets)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def real_tokens(self) -> int:
        return int(sum(x["attention_mask"].sum() for x in self.inputs))

    def flops(self) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            self()
        return counter.get_total_flops()


def length_pairs(kind: str, batch: int, steps: int, max_length: int, groups: int, tokenizer=None, seed: int = 0):
    """Per step, the (query lengths, passage lengths) of a batch: fixed, mMARCO-like or XQuAD-R's;
    with ``groups`` > 1 each draw of ``groups`` batches sorted by passage length before cutting."""
    rng = np.random.default_rng(seed)
    n = batch * steps
    if kind == "fixed":
        q = p = np.full(n, max_length)
    elif kind == "mmarco":
        q = np.clip(np.rint(rng.normal(10, 3, n)), 4, 32).astype(int)
        p = rng.integers(60, 101, n)
    else:  # xquad: token counts of the real questions and answer sentences
        es = lareqa("xquad_r", xquad_r_path())
        pool_q = [len(x) for x in tokenizer(es.query_text, truncation=True, max_length=max_length)["input_ids"]]
        answer = [next(c for c in r if es.cand_lang[c] == lang) for r, lang in zip(es.relevant, es.query_lang)]
        pool_p = [len(x) for x in tokenizer([es.cand_text[c] for c in answer], truncation=True, max_length=max_length)["input_ids"]]
        pick = rng.integers(0, len(pool_q), n)
        q, p = np.asarray(pool_q)[pick], np.asarray(pool_p)[pick]
    q, p = np.minimum(q, max_length), np.minimum(p, max_length)
    order = np.arange(n)
    if groups > 1:
        for start in range(0, n, groups * batch):
            block = order[start : start + groups * batch]
            order[start : start + groups * batch] = block[np.argsort(p[block], kind="stable")]
    return [(q[order[i : i + batch]].tolist(), p[order[i : i + batch]].tolist()) for i in range(0, n, batch)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def largest_batch(encoder, max_length: int, device: torch.device, limit: int) -> int:
    """Largest power of two (<= limit) for which a step runs without running out of CUDA memory."""
    fits, batch = 0, 8
    while batch <= limit:
        try:
            Step(encoder, batch, max_length, device)()
            fits, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            encoder.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    if not fits:
        raise SystemExit(f"error: a batch of 8 x {max_length} tokens does not fit on this GPU")
    return fits


def measure(encoder, batch_size: int, max_length: int, device: torch.device, warmup: int, steps: int,
            lengths=None, pad_multiple: int | None = None) -> dict:
    step = Step(encoder, batch_size, max_length, device, lengths, pad_multiple)
    t0 = time.perf_counter()
    step()  # the first step (compiles, with --compile)
    sync(device)
    first = time.perf_counter() - t0
    flops = [step.flops() for _ in step.batches]  # one count per distinct batch, in cycle order
    for _ in range(warmup):
        step()
    times, tokens, positions, counted = [], 0, 0, 0
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        tokens += step.real_tokens()
        positions += sum(x["attention_mask"].numel() for x in step.inputs)
        counted += flops[(step.position - 1) % len(flops)]
    seconds = sum(times)
    return {"batch": batch_size, "seconds": statistics.median(times), "tokens_per_s": tokens / seconds,
            "real_share": tokens / positions, "tflops": counted / seconds / 1e12, "step_tflop": counted / steps / 1e12,
            "first_step_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="labse", help="a conf/model option (labse, labse_random, xlmr_random, minilm, tiny, ...)")
    parser.add_argument("--max-length", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=None, help="default: the largest power of two that fits")
    parser.add_argument("--max-batch", type=int, default=4096, help="upper bound of the batch search")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (default: from the table)")
    parser.add_argument("--lengths", choices=["fixed", "mmarco", "xquad"], default="fixed")
    parser.add_argument("--length-groups", type=int, nargs="+", default=[1])
    parser.add_argument("--pad-multiple", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--attn", default=None, help="model.attn_implementation (default: the config's, sdpa)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    if device.type != "cuda" and args.batch_size is None:
        raise SystemExit("error: no GPU here; pass --batch-size for a CPU run (the batch search needs CUDA)")
    options = {"compile": "true" if args.compile else None, "attn_implementation": args.attn}
    print(f"{args.model} on {name}; {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, fused AdamW, "
          f"{args.attn or 'sdpa'}{', compiled' if args.compile else ''}; lengths {args.lengths}; "
          f"peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}")
    for max_length in args.max_length:
        for groups in args.length_groups:
            encoder = load_encoder(args.model, max_length, device, **options)
            if max_length == args.max_length[0] and groups == args.length_groups[0]:
                print(f"{sum(p.numel() for p in encoder.parameters()):,} parameters")
            batch = args.batch_size or largest_batch(encoder, max_length, device, args.max_batch)
            lengths = None if args.lengths == "fixed" and groups == 1 else length_pairs(
                args.lengths, batch, args.steps, max_length, groups, encoder.tokenization.tokenizer)
            r = measure(encoder, batch, max_length, device, args.warmup, args.steps, lengths, args.pad_multiple)
            mfu = f"MFU {r['tflops'] / peak:.1%}" if peak else "MFU n/a"
            print(f"length {max_length:4d}  groups {groups:3d}  batch {r['batch']:5d}  step {r['seconds'] * 1e3:8.1f} ms  "
                  f"{r['tokens_per_s']:10.0f} real tokens/s ({r['real_share']:.0%} of positions)  {r['tflops']:7.1f} TFLOP/s "
                  f"({r['step_tflop']:.2f} TFLOP/step)  {mfu}  first step {r['first_step_s']:.1f} s")
            del encoder
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
