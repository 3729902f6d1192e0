#!/usr/bin/env bash
# Every GPU figure and check of the README's Performance section, in one go, on one GPU machine:
#   bash benchmarks/gpu_checks.sh [LOG_DIR]        (default: gpu-checks/; about 5 minutes on an H200)
# Needs the project's requirements and the offline MiniLM package; no network (LaBSE is measured as
# model=labse_random). Each step's full output goes to LOG_DIR/<step>.txt; the summary to stdout.
set -u
cd "$(dirname "$0")/.."
LOG=${1:-gpu-checks}
mkdir -p "$LOG"
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}   # the interpreter that has the requirements
# the package itself: installed (pip install -e .), or from the checkout on a machine without pip access
$PY -c "import mdr" 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1

step() {  # step NAME COMMAND...: run, keep the log, print its last lines and the exit status
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$LOG/$name.txt" 2>&1
    local rc=$?
    echo "=== $name: $* (exit $rc, $((SECONDS - start)) s)"
    grep -v -E "it/s\]|s/it\]|Loading weights" "$LOG/$name.txt" | tail -"${TAIL:-12}"
}

# LaBSE-sized step: tokens/s and MFU with the largest batch, 128 and 256 tokens
step gpu_throughput $PY benchmarks/gpu_throughput.py --model labse_random
# bf16-mixed training end to end on MiniLM (compare with the CPU demo table)
step train_hybrid $PY train.py experiment=demo sampler=hybrid logger=csv hydra.run.dir="$LOG/train_hybrid"
# DDP (NCCL) on the visible GPUs with GradCache, bf16
step train_ddp $PY train.py experiment=demo sampler=hybrid logger=none trainer=ddp trainer.max_steps=30 \
    optim.grad_cache_chunk_size=8 hydra.run.dir="$LOG/train_ddp"
# our training step against sentence-transformers, both bf16
step train_throughput $PY benchmarks/train_throughput.py --batch-size 64 --steps 60 --warmup 10 --repeats 3
# the default test suite with the GPU visible (accelerator=auto picks it)
TAIL=5 step pytest $PY -m pytest -q -m "not slow" -p no:cacheprovider
