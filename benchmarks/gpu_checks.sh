#!/usr/bin/env bash
# Every GPU figure and check of the README's Performance section, in one go, on one GPU machine:
#   bash benchmarks/gpu_checks.sh [LOG_DIR]        (default: gpu-checks/; not yet timed on a GPU)
#   ONLY="profile search" bash benchmarks/gpu_checks.sh     (only these groups of steps)
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

# XQuAD-R for the real-length, side-by-side and encoding checks: XQUAD_R_DIR (e.g. a carried copy)
export XQUAD_R_DIR=${XQUAD_R_DIR:-../shared/data/xquad-r}
ONLY=${ONLY:-}   # e.g. ONLY="profile search": only those groups of steps (profile throughput compile lengths side search encode train tests)
want() {
    [ -z "$ONLY" ] && return 0
    for w in $ONLY; do [ "$w" = "$1" ] && return 0; done
    return 1
}

# 1. where a step's time goes (issue 14: profile first), LaBSE- and XLM-R-base-sized
want profile && step profile_labse $PY -m benchmarks.profile_step --model labse_random --batch-size 512 --max-length 128
want profile && step profile_xlmr $PY -m benchmarks.profile_step --model xlmr_random --batch-size 512 --max-length 128
# 2. LaBSE-sized step: tokens/s and MFU with the largest batch, 128 and 256 tokens; then compiled (length buckets)
want throughput && step gpu_throughput $PY benchmarks/gpu_throughput.py --model labse_random
want compile && step gpu_compile $PY benchmarks/gpu_throughput.py --model labse_random --max-length 128 --batch-size 1024 \
    --compile --pad-multiple 32
# 3. real lengths: real tokens/s, random batches against length groups; mMARCO-like and XQuAD-R; flex attention
want lengths && step lengths_mmarco $PY benchmarks/gpu_throughput.py --model labse_random --max-length 128 --batch-size 512 \
    --lengths mmarco --length-groups 1 16 --pad-multiple 8
want lengths && step lengths_xquad $PY benchmarks/gpu_throughput.py --model labse_random --max-length 128 --batch-size 512 \
    --lengths xquad --length-groups 1 16 --pad-multiple 8
want lengths && step lengths_flex $PY benchmarks/gpu_throughput.py --model labse_random --max-length 128 --batch-size 512 \
    --lengths mmarco --length-groups 1 --attn flex_attention
# 4. side by side with sentence-transformers, LaBSE-sized, bf16 both, the same batches: batch 100 and 512
want side && step side_by_side_100 $PY benchmarks/train_throughput.py --model labse_random --xquad-r "$XQUAD_R_DIR" \
    --batch-size 100 --steps 60 --warmup 15 --repeats 2
want side && step side_by_side_512 $PY benchmarks/train_throughput.py --model labse_random --xquad-r "$XQUAD_R_DIR" \
    --batch-size 512 --steps 30 --warmup 10 --repeats 2 --length-groups 8
# 5. exact search: faiss on the CPU against the GPU paths, 1M passages; 10M on the GPU only
want search && step search_1m $PY benchmarks/search_speed.py --docs 1000000 --queries 1000
want search && step search_10m $PY benchmarks/search_speed.py --docs 10000000 --queries 1000 --skip faiss_cpu
# 6. encoding the XQuAD-R pool for evaluation against sentence-transformers' encode, bf16 both
want encode && step encode $PY benchmarks/encode_speed.py --model labse_random --batch-size 256 --path "$XQUAD_R_DIR"
# 7. end to end: bf16-mixed training on MiniLM, DDP (NCCL) with GradCache, the test suite with the GPU visible
#    (ckpt_path=null: a second run into the same $LOG trains afresh instead of resuming the first)
want train && step train_hybrid $PY train.py experiment=demo sampler=hybrid logger=csv ckpt_path=null hydra.run.dir="$LOG/train_hybrid"
want train && step train_ddp $PY train.py experiment=demo sampler=hybrid logger=none trainer=ddp trainer.max_steps=30 \
    optim.grad_cache_chunk_size=8 ckpt_path=null hydra.run.dir="$LOG/train_ddp"
want tests && TAIL=5 step pytest $PY -m pytest -q -m "not slow" -p no:cacheprovider
