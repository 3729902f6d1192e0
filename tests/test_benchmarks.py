"""The benchmark scripts' own arithmetic: what their printed figures are computed from."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_throughput, train_throughput


def test_mfu_numerator_is_the_step_flops_of_a_bert():
    """FlopCounterMode on our step equals the analytic count for BERT: every matmul of the forward
    (Q, K, V, output and the two FFN projections per token and layer; QK^T and AV per sequence; the
    in-batch score matrix) once forward and twice backward."""
    batch, length, hidden, inter, layers = 4, 16, 32, 64, 2  # conf/model/tiny.yaml
    encoder = gpu_throughput.load_encoder("tiny", length, torch.device("cpu"))
    tokens = 2 * batch * length  # queries and passages
    linear = layers * tokens * 2 * (4 * hidden * hidden + 2 * hidden * inter)
    attention = layers * 2 * batch * 2 * (2 * length * length * hidden)
    scores = 2 * batch * batch * hidden
    assert gpu_throughput.Step(encoder, batch, length, torch.device("cpu")).flops() == 3 * (linear + attention + scores)


def test_labse_random_is_labse_sized():
    """model=labse_random (what the GPU figures are measured on offline) has LaBSE's published
    parameter count, 470,926,848: BERT-base layers, a 501,153-token vocabulary and the pooler head.
    Built on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        encoder = gpu_throughput.load_encoder("labse_random", 128, torch.device("meta"))
    hidden, inter, layers, vocab = 768, 3072, 12, 501_153
    embeddings = (vocab + 512 + 2) * hidden + 2 * hidden  # words, positions, token types; LayerNorm
    layer = 4 * (hidden * hidden + hidden) + (hidden * inter + inter) + (inter * hidden + hidden) + 2 * 2 * hidden
    pooler = hidden * hidden + hidden
    assert embeddings + layers * layer + pooler == 470_926_848
    assert sum(p.numel() for p in encoder.parameters()) == 470_926_848
    assert encoder.pooling == "pooler"


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA T4", None)])
def test_peak_flops_by_gpu_name(name, peak):
    assert gpu_throughput.peak_tflops(name) == peak


def test_ungrouped_keeps_each_groups_pairs_and_batch_sizes():
    """sentence-transformers gets the same pairs as our length-grouped batches, re-cut at random
    within each group (a partial last group included)."""
    data = [[(f"q{g}-{b}-{i}", f"p{g}-{b}-{i}") for i in range(4)] for g in range(3) for b in range(3)][:8]
    cut = train_throughput.ungrouped(data, 3)
    assert [len(b) for b in cut] == [len(b) for b in data]
    for start in range(0, len(data), 3):
        assert sorted(p for b in cut[start : start + 3] for p in b) == sorted(p for b in data[start : start + 3] for p in b)
    assert cut != data
    assert train_throughput.ungrouped(data, 1) is data


@pytest.mark.parametrize("name, expected", [
    ("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_32x5_tn", "GEMM"), ("aten::addmm", "GEMM"),
    ("pytorch_flash::flash_fwd_kernel", "attention"), ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "attention"),
    ("void at::native::(anonymous namespace)::embedding_backward_feature_kernel", "embedding"),
    ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>", "optimizer (AdamW)"),
    ("void at::native::cunn_SoftMaxForward<log_softmax>", "loss"), ("aten::native_layer_norm", "elementwise / norm"),
    ("aten::bernoulli_", "elementwise / norm"), ("Memcpy HtoD", "other"),
])
def test_profile_categories(name, expected):
    from benchmarks.profile_step import category

    assert category(name) == expected


def test_realistic_length_batches_and_their_length_groups():
    """mMARCO-like lengths (queries ~10 tokens, passages 60-100); grouping sorts each draw by passage
    length, so a batch's passages span less than at random, with the same lengths overall."""
    plain = gpu_throughput.length_pairs("mmarco", batch=16, steps=8, max_length=128, groups=1)
    grouped = gpu_throughput.length_pairs("mmarco", batch=16, steps=8, max_length=128, groups=4)
    assert len(plain) == len(grouped) == 8 and all(len(q) == len(p) == 16 for q, p in plain)
    assert sorted(x for _, p in plain for x in p) == sorted(x for _, p in grouped for x in p)
    assert all(4 <= x <= 32 for q, _ in plain for x in q) and all(60 <= x <= 100 for _, p in plain for x in p)
    spread = lambda batches: sum(max(p) - min(p) for _, p in batches)  # noqa: E731
    assert spread(grouped) < spread(plain) / 2
    fixed = gpu_throughput.random_inputs([5, 9], vocab=1000 + 50, device=torch.device("cpu"), pad_multiple=8)
    assert fixed["input_ids"].shape == (2, 16) and fixed["attention_mask"].sum(1).tolist() == [5, 9]


@pytest.mark.parametrize("sampler", ["xx", "xy"])
def test_in_batch_false_negatives_are_found_and_all_masked(tmp_path, sampler):
    """Every example's hard negative is the next example's positive, in the row's language, with its id: in
    X-X batches a verbatim copy, in X-Y batches mostly a translation of the next example's positive. The
    loss's mask leaves none of them in, masks nothing else, and with the option off masks nothing."""
    from benchmarks.negatives_in_batch import count
    from tests.helpers import make_rows, write_jsonl

    rows = make_rows(24, ["de", "en", "zh"], seed=4)
    positive = {(r["id"], r["lang"]): r["positive"] for r in rows}
    for r in rows:
        nxt = f"ex{(int(r['id'][2:]) + 1) % 24:04d}"
        r["negatives"], r["negative_ids"] = [positive[(nxt, r["lang"])]], [nxt]
    files = str(write_jsonl(tmp_path / "neg.jsonl", rows))
    common = ["data.batch_size=8", f"data.cache_dir={tmp_path / 'cache'}"]
    on = count(files, sampler, 0, common, epochs=1)
    off = count(files, sampler, 0, [*common, "loss.mask_false_negatives=false"], epochs=1)
    assert on["negatives false for a query"] > 0 and on["pairs"] > 0
    assert (on["negatives verbatim"] == on["negatives false for a query"]) == (sampler == "xx")  # X-Y: translations too
    assert on["left unmasked"] == 0 and on["masked, not false"] == 0
    assert off["left unmasked"] == off["pairs"] == on["pairs"]
