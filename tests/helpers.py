"""Helpers shared by the test modules: synthetic corpora, hub layouts in miniature, composed
configs, the tiny random encoder, and subprocess runs of the entry points. Fixtures: conftest.py."""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from mdr.config import minilm_path
from mdr.data.sources.mmarco import collection_file, queries_file
from mdr.formats.miracl import corpus_folder, qrels_file, topics_file
from mdr.model.encoder import Encoder

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["ar", "de", "en", "zh"]  # the languages of the `corpus` fixture
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def tiny(**kw) -> Encoder:
    """A 2-layer random BERT with MiniLM's tokenizer (as conf/model/tiny.yaml), seeded."""
    torch.manual_seed(0)
    return Encoder(minilm_path(), random_init=True, config_overrides=TINY, **kw).eval()


# -- synthetic parallel corpora: random word-salad texts, consistent across languages (the same
#    words with a language tag), so a trained model can learn something

WORDS = (
    "river mountain city king queen war bridge ocean forest desert island music painter engine "
    "planet star moon temple empire language island harbour castle volcano glacier island law "
    "market coin paper silk spice grain horse ship train road tower church school library"
).split()


def make_rows(n_examples: int, languages: list[str], coverage: dict[str, float] | None = None,
              seed: int = 0, negatives: int = 0, topic_every: int = 5) -> list[dict]:
    """Rows for ``n_examples`` ids; language L has each example with probability coverage[L] (default 1)."""
    rng = random.Random(seed)
    rows = []
    for e in range(n_examples):
        q_words = rng.sample(WORDS, 4)
        p_words = q_words + rng.sample(WORDS, 6)
        for lang in languages:
            if coverage and rng.random() > coverage.get(lang, 1.0):
                continue
            row = {
                "id": f"ex{e:04d}",
                "lang": lang,
                "topic": f"t{e // topic_every}",
                "query": f"[{lang}] what about " + " ".join(q_words) + "?",
                "positive": f"[{lang}] " + " ".join(p_words) + ".",
            }
            if negatives:
                row["negatives"] = [f"[{lang}] " + " ".join(rng.sample(WORDS, 8)) + "." for _ in range(negatives)]
            rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# -- composed configs and entry points


def base_overrides(corpus, evaluate: bool = True) -> list[str]:
    """train.py overrides for a seconds-long run of the tiny model on the `corpus` fixture, evaluated
    on its held-out file (or not at all)."""
    return [
        "model=tiny",
        "logger=none",
        f"data.files={corpus['train']}",
        f"data.cache_dir={corpus['cache']}",
        f"eval.sets.demo.files={corpus['eval']}" if evaluate else "eval=none",
        "data.batch_size=8",
        "trainer.enable_progress_bar=false",
    ]


def compose_config(name: str, overrides: list[str], return_hydra_config: bool = False):
    """The config ``name`` (train, evaluate, export) composed from conf/ with ``overrides``, as the
    entry points compose it: the one place where the tests set Hydra up."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=return_hydra_config)


def compose_train(overrides: list[str]):
    return compose_config("train", overrides)


def check_results(results: dict) -> None:
    """The demo eval set's results on the `corpus` fixture: metrics in range, the full matrix."""
    metrics = results["demo"]
    for key in ("monolingual_map", "crosslingual_map", "multilingual_map", "same_language_first"):
        assert 0.0 < metrics[key] <= 1.0, key
    assert set(metrics["matrix"]) == set(LANGS)
    assert all(set(row) == set(LANGS) for row in metrics["matrix"].values())


def last_logged(run_dir: Path, prefix: str) -> dict[str, float]:
    """The last logged value of every CSV-logger metric whose name starts with ``prefix``."""
    [metrics] = Path(run_dir).glob("csv/version_*/metrics.csv")
    last: dict[str, float] = {}
    with open(metrics) as fh:
        for row in csv.DictReader(fh):
            last.update({k: float(v) for k, v in row.items() if k.startswith(prefix) and v})
    return last


def read_losses(run_dir: Path) -> dict[int, float]:
    [metrics] = run_dir.glob("csv/version_*/metrics.csv")
    with open(metrics) as fh:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")}


def wandb_records(run_file: Path) -> list:
    """The records of a W&B transaction log (``run-<id>.wandb``) as ``wandb_internal_pb2.Record``s. The
    file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of chunks,
    each with a 7-byte header (CRC, length, type: 1 full, 2 first, 3 middle, 4 last); not CRC-checked."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block = Path(run_file).read_bytes(), 32768
    assert data[:4] == b":W&B", run_file
    pos, records, pending = 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows of a W&B transaction log: ``{metric: value}`` (JSON-decoded)."""
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]


def run_script(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """A script of the project (train.py, ...) in a fresh interpreter, offline."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=full_env
    )


# -- hub layouts in miniature

MMARCO_LANGS = ["de", "en", "ru"]


def write_mmarco(root, n_queries=30, n_passages=120, seed=0):
    """unicamp-dl/mmarco layout; query 7 has no German translation (as happens in mMARCO)."""
    rng = random.Random(seed)
    passages = {str(1000 + i): " ".join(rng.sample(WORDS, 8)) for i in range(n_passages)}
    queries = {str(i): " ".join(rng.sample(WORDS, 4)) + "?" for i in range(n_queries)}
    (root / "data").mkdir(parents=True)
    with open(root / "data" / "triples.train.ids.small.tsv", "w") as fh:
        for q in queries:
            pos = str(1000 + int(q))
            for _ in range(3):
                fh.write(f"{q}\t{pos}\t{rng.choice(list(passages))}\n")
    for lang in MMARCO_LANGS:
        for rel, table in [(queries_file(lang), queries), (collection_file(lang), passages)]:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(root / rel, "w") as fh:
                fh.writelines(f"{k}\t[{lang}] {v}\n" for k, v in table.items() if not (lang == "de" and k == "7" and rel.endswith("queries.train.tsv")))
    return root


def write_miracl(root, langs=("de", "sw"), n_docs=180, n_topics=12, seed=0, split="dev") -> tuple:
    """Topics, qrels (graded, with judged non-relevant passages) and a two-shard gzipped corpus."""
    rng = random.Random(seed)
    for lang in langs:
        docs = [{"docid": f"{i}#{j}", "title": f"T{i}", "text": " ".join(rng.sample(WORDS, 8))}
                for i in range(n_docs // 3) for j in range(3)]
        folder = root / "corpus" / corpus_folder(lang)
        folder.mkdir(parents=True)
        for shard, part in enumerate([docs[: n_docs // 2], docs[n_docs // 2 :]]):
            with gzip.open(folder / f"docs-{shard}.jsonl.gz", "wt", encoding="utf-8") as fh:
                fh.writelines(json.dumps(d) + "\n" for d in part)
        topics, qrels = [], []
        for t in range(n_topics):
            target = rng.sample(docs, 4)
            topics.append(f"{lang}{t}\t" + " ".join(target[0]["text"].split()[:4]))
            qrels += [f"{lang}{t}\tQ0\t{target[0]['docid']}\t1", f"{lang}{t}\tQ0\t{target[1]['docid']}\t{1 + t % 2}",
                      f"{lang}{t}\tQ0\t{target[2]['docid']}\t0"]
        topics.append(f"{lang}-unjudged\tno qrels for this topic")
        for rel, lines in [(topics_file(lang, split), topics), (qrels_file(lang, split), qrels)]:
            (root / "topics" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "topics" / rel).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "topics", root / "corpus"
