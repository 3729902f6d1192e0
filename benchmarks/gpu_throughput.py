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
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from mdr.config import PROJECT_ROOT as ROOT
from mdr.config import instantiate, register_resolvers
from mdr.model.encoder import bf16_autocast
from mdr.model.loss import InfoNCELoss
from mdr.model.module import adamw

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


def load_encoder(model: str, max_length: int, device: torch.device):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"])
    return instantiate(cfg.model, query_max_length=max_length, passage_max_length=max_length).to(device)


class Step:
    """One training step on random full-length token ids; ``flops()`` counts it."""

    def __init__(self, encoder, batch_size: int, max_length: int, device: torch.device) -> None:
        self.encoder, self.device = encoder.train(), device
        self.loss = InfoNCELoss(temperature=0.05).to(device)
        self.optimizer = adamw(encoder, lr=2e-5, weight_decay=0.01)  # as training builds it
        vocab = encoder.model.config.vocab_size
        self.inputs = [
            {"input_ids": torch.randint(1000, vocab, (batch_size, max_length), device=device),
             "attention_mask": torch.ones(batch_size, max_length, dtype=torch.long, device=device)}
            for _ in range(2)  # queries, passages
        ]
        self.targets = torch.arange(batch_size, device=device)

    def __call__(self) -> None:
        with bf16_autocast(self.device):
            q, p = (self.encoder(**x) for x in self.inputs)
            loss, _ = self.loss(q, p, self.targets)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def flops(self) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            self()
        return counter.get_total_flops()


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


def measure(encoder, batch_size: int, max_length: int, device: torch.device, warmup: int, steps: int) -> dict:
    step = Step(encoder, batch_size, max_length, device)
    flops = step.flops()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"batch": batch_size, "seconds": seconds, "tokens_per_s": 2 * batch_size * max_length / seconds,
            "tflops": flops / seconds / 1e12, "step_tflop": flops / 1e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="labse", help="a conf/model option (labse, xlmr, xlmr_large, me5, minilm, tiny)")
    parser.add_argument("--max-length", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=None, help="default: the largest power of two that fits")
    parser.add_argument("--max-batch", type=int, default=4096, help="upper bound of the batch search")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (default: from the table)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    if device.type != "cuda" and args.batch_size is None:
        raise SystemExit("error: no GPU here; pass --batch-size for a CPU run (the batch search needs CUDA)")
    print(f"{args.model} on {name}; {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, fused AdamW, SDPA; "
          f"peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}")
    for max_length in args.max_length:
        encoder = load_encoder(args.model, max_length, device)
        if max_length == args.max_length[0]:
            print(f"{sum(p.numel() for p in encoder.parameters()):,} parameters")
        batch = args.batch_size or largest_batch(encoder, max_length, device, args.max_batch)
        r = measure(encoder, batch, max_length, device, args.warmup, args.steps)
        mfu = f"MFU {r['tflops'] / peak:.1%}" if peak else "MFU n/a"
        print(f"length {max_length:4d}  batch {r['batch']:5d}  step {r['seconds'] * 1e3:8.1f} ms  "
              f"{r['tokens_per_s']:10.0f} tokens/s  {r['tflops']:7.1f} TFLOP/s ({r['step_tflop']:.2f} TFLOP/step)  {mfu}")
        del encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
