"""Where the time of one training step goes: torch.profiler over our step, by category.

The step of ``benchmarks/gpu_throughput.py`` (the encoder on B queries and B passages, in-batch
InfoNCE, backward, fused AdamW; bf16 autocast on CUDA) for a model option (``labse_random``:
LaBSE's architecture, 385M of its 471M parameters in the embedding table; ``xlmr_random``: XLM-R
base's), profiled for ``--steps`` steps after ``--warmup``. Kernel (GPU) or operator (CPU) self
time is sorted into: GEMM, attention, elementwise and normalisation, embedding (lookup and its
backward), optimizer (AdamW), loss, other; then the host gap (wall time the device was idle) and,
measured apart, the tokenisation of a batch (which training runs in DataLoader workers).

    python -m benchmarks.profile_step --model labse_random --batch-size 512 --max-length 128   # a GPU
    python -m benchmarks.profile_step --model xlmr_random --batch-size 512 --max-length 128
    python -m benchmarks.profile_step --model tiny --batch-size 8 --max-length 32 --steps 2     # CPU smoke run
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.gpu_throughput import Step, load_encoder, sync

CATEGORIES = [  # first match wins; names are lower-cased kernel (GPU) or operator (CPU) names
    ("attention", ("flash", "fmha", "attention", "sdpa", "softmax_backward_data")),
    ("embedding", ("embedding", "index_select", "indexselect", "index_put", "scatter_add")),
    ("optimizer (AdamW)", ("adam", "multi_tensor_apply")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("GEMM", ("gemm", "cutlass", "xmma", "cublas", "aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("elementwise / norm", ("layer_norm", "elementwise", "vectorized", "gelu", "dropout", "bernoulli", "reduce", "softmax", "aten::add",
                            "aten::mul", "aten::div", "aten::sum", "aten::copy", "aten::to", "aten::native_layer_norm", "fill")),
]


def category(name: str) -> str:
    lowered = name.lower()
    return next((c for c, keys in CATEGORIES if any(k in lowered for k in keys)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="labse_random")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="the most expensive kernels / operators to list")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    encoder = load_encoder(args.model, args.max_length, device)
    step = Step(encoder, args.batch_size, args.max_length, device)
    for _ in range(args.warmup):
        step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync(device)
    wall_ms = (time.perf_counter() - t0) * 1e3 / args.steps
    events = [e for e in prof.key_averages() if (e.self_device_time_total if cuda else e.self_cpu_time_total) > 0]
    if cuda:  # kernels only: their self device time
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    timed = [(e.key, (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e3 / args.steps) for e in events]
    busy = sum(ms for _, ms in timed)
    totals: dict[str, float] = {}
    for name, ms in timed:
        totals[category(name)] = totals.get(category(name), 0.0) + ms
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model} on {name}: batch {args.batch_size} x {args.max_length} tokens (queries and passages), "
          f"{'bf16 autocast' if cuda else 'fp32'}; {wall_ms:.1f} ms per step, {busy:.1f} ms of it busy "
          f"({'GPU kernels' if cuda else 'operator self time'})")
    print("| category | ms per step | share of the step |\n|---|---:|---:|")
    for cat, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {cat} | {ms:.1f} | {ms / wall_ms:.1%} |")
    if cuda:
        print(f"| host gap (GPU idle) | {max(wall_ms - busy, 0):.1f} | {max(wall_ms - busy, 0) / wall_ms:.1%} |")
    texts = ["a question of about ten words on a topic of some kind"] * args.batch_size
    t0 = time.perf_counter()
    for kind in ("query", "passage"):
        encoder.tokenization(texts, kind)
    print(f"tokenising one batch (done in DataLoader workers during training): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    print(f"\nthe {args.top} most expensive {'kernels' if cuda else 'operators'}:")
    for key, ms in sorted(timed, key=lambda kv: -kv[1])[: args.top]:
        print(f"  {ms:8.2f} ms  {category(key):20s} {key[:100]}")


if __name__ == "__main__":
    main()
