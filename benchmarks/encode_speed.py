"""Encoding for evaluation: our ``Encoder.encode`` against sentence-transformers' ``encode``.

The same model (any conf/model option; on a GPU ``labse_random``, LaBSE's architecture, offline) with
the same weights (ours are exported for sentence-transformers), the same texts (the candidate pool of
XQuAD-R, all 11 languages), the same batch size and max length; on a GPU both in bf16 (our autocast,
sentence-transformers' model cast to bf16). Ours batches texts by token count, sentence-transformers
by characters. Prints texts/s of both, the ratio, and how closely the embeddings agree.

    python benchmarks/encode_speed.py --model labse_random --batch-size 256          # a GPU machine
    python benchmarks/encode_speed.py --model tiny --limit 500                       # CPU smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mdr.config import PROJECT_ROOT, instantiate, register_resolvers
from mdr.config import xquad_r_path
from mdr.evaluation.lareqa import lareqa
from mdr.model.export import write_sentence_transformers_folder

register_resolvers()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="labse_random")
    parser.add_argument("--path", default=xquad_r_path())
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="only the first N texts (smoke runs)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes of each (after one warm-up pass)")
    args = parser.parse_args()
    texts = lareqa("xquad_r", args.path).cand_text[: args.limit]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={args.model}", f"model.query_max_length={args.max_length}",
                                          f"model.passage_max_length={args.max_length}"])
    torch.manual_seed(0)
    encoder = instantiate(cfg.model).to(device)
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as folder:
        write_sentence_transformers_folder(encoder.cpu(), OmegaConf.to_container(cfg.model, resolve=True), folder)
        encoder.to(device)
        st = SentenceTransformer(folder, device=device)
    st.max_seq_length = args.max_length
    if device == "cuda":
        st = st.to(torch.bfloat16)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.model} on {name}{', bf16' if device == 'cuda' else ', fp32'}: {len(texts):,} XQuAD-R candidate "
          f"sentences, batch {args.batch_size}, max length {args.max_length}")
    runs = {"ours": lambda: encoder.encode(texts, "passage", batch_size=args.batch_size),
            "sentence-transformers": lambda: torch.as_tensor(st.encode(texts, batch_size=args.batch_size,
                                                                       convert_to_numpy=False, convert_to_tensor=True)).float().cpu()}
    seconds, embeddings = {}, {}
    for label, fn in runs.items():
        embeddings[label] = fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        seconds[label] = min(times)
        print(f"{label:22s} {seconds[label]:8.2f} s  {len(texts) / seconds[label]:10.1f} texts/s")
    cos = torch.nn.functional.cosine_similarity(embeddings["ours"], embeddings["sentence-transformers"]).min()
    print(f"ratio (ours / sentence-transformers): {seconds['sentence-transformers'] / seconds['ours']:.2f}x; "
          f"lowest cosine between the two embeddings of a text: {cos:.4f}")


if __name__ == "__main__":
    main()
