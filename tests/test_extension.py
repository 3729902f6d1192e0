"""A benchmark defined only here, with metric names nothing under src/ knows, reaches every reader of
results through its declaration: the printed tables, a training run's results and per-query file,
the sweep summary with its tests and selection, and the exported model card."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from mdr.evaluation.benchmark import EvalOptions, Metric, PerQuery
from mdr.evaluation.evaluator import RetrievalEvaluator
from mdr.evaluation.report import results_report
from mdr.formats.results import read_json, train_results_path, write_results
from mdr.sweep import render, sweep_tables
from mdr.tasks import export_checkpoint, train
from tests.helpers import base_overrides, compose_train

TOPICS = [f"topic {i} " + " ".join(f"w{(i * 7 + k) % 50}" for k in range(6)) for i in range(24)]


class ToyBenchmark:
    """Each topic is a query ("what about <topic>") and a passage (the topic's words); per query the
    rank of its passage among all of them. Two metrics of its own: Hit@3 and the mean rank."""

    def __init__(self, name: str = "toy", languages: tuple[str, ...] = ("en", "fr")) -> None:
        self.name, self.languages = name, list(languages)

    def metrics(self, options: EvalOptions = EvalOptions()) -> list[Metric]:
        return [Metric("hit_rate_at_3", "Hit@3", per_query=PerQuery("monolingual", "hit3"), tested=True, select=True),
                Metric("mean_rank", "mean rank", low=1.0, high="num_candidates", higher_is_better=False, digits=2,
                       per_query=PerQuery("monolingual", "rank"), tested=True)]

    def evaluate(self, encoder, options: EvalOptions = EvalOptions()) -> dict:
        rows = []
        for lang in self.languages:
            q = encoder.encode([f"[{lang}] what about {t}?" for t in TOPICS], "query")
            p = encoder.encode([f"[{lang}] {t}." for t in TOPICS], "passage")
            scores = q @ p.T
            ranks = (scores > scores.diag()[:, None]).sum(1) + 1
            rows += [{"query_id": f"t{i}", "query_lang": lang, "pool_lang": lang, "setting": "monolingual",
                      "rank": float(r), "hit3": float(r <= 3)} for i, r in enumerate(ranks.tolist())]
        table = pd.DataFrame(rows)
        return {"num_candidates": len(TOPICS), "hit_rate_at_3": float(table["hit3"].mean()),
                "mean_rank": float(table["rank"].mean()), "per_query": table}


class NoisyEncoder(torch.nn.Module):
    """Embeds a text by its words (shared by a topic's query and passage) plus noise: less noise, a better model."""

    def __init__(self, noise: float, seed: int) -> None:
        super().__init__()
        self.noise, self.seed = noise, seed
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode(self, texts, kind, batch_size=128):
        out = []
        for text in texts:
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}|{kind}|{text}".encode()))
            v = torch.zeros(64)
            for word in text.strip("?.").split()[3:]:
                v[int(word[1:]) % 64 if word[1:].isdigit() else 0] += 1.0
            out.append(torch.nn.functional.normalize(v + self.noise * torch.randn(64, generator=g), dim=0))
        return torch.stack(out)


def test_a_new_benchmarks_metrics_reach_the_tables_the_summary_and_its_tests(tmp_path):
    n = 0
    for sampler, noise in (("xx", 1.2), ("hybrid", 0.3)):
        for seed in (1, 2, 3):
            results = RetrievalEvaluator({"toy": ToyBenchmark()})(NoisyEncoder(noise, seed))
            folder = tmp_path / str(n)
            (folder / ".hydra").mkdir(parents=True)
            (folder / ".hydra" / "overrides.yaml").write_text(f"- sampler={sampler}\n- seed={seed}\n")
            write_results(folder / "checkpoints" / "results.json", {"step": 5, "final": True, "results": results})
            n += 1
    report = results_report(results)
    assert "| eval set | Hit@3 | mean rank |" in report and f"{results['toy']['mean_rank']:.2f}" in report
    tables = sweep_tables(tmp_path)
    text = render(tables)
    assert "| runs | seeds | eval set | Hit@3 | mean rank |" in text
    tested = {c.metric.name: c for c in tables["comparisons"]}
    assert set(tested) == {"hit_rate_at_3", "mean_rank"}
    assert tested["hit_rate_at_3"].verdict(0.05) == "better" and tested["mean_rank"].delta < 0
    assert tested["mean_rank"].verdict(0.05) == "better"  # lower is better, as declared
    assert "best by toy/hit_rate_at_3 (max): sampler=hybrid" in text  # the declared selection metric and direction
    assert "| sampler=hybrid | toy | mean_rank | 3 / 3 | 24 |" in text


def test_a_new_benchmark_in_a_training_run_and_its_model_card(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = train(compose_train(base_overrides(corpus, evaluate=False) + [
        "trainer.max_steps=2", "+eval.sets.toy={_target_: tests.test_extension.ToyBenchmark, name: toy}"]))
    assert 0.0 <= results["toy"]["hit_rate_at_3"] <= 1.0 and 1.0 <= results["toy"]["mean_rank"] <= len(TOPICS)
    record = read_json(train_results_path(tmp_path))
    assert [m["name"] for m in record["results"]["toy"]["metrics"]] == ["hit_rate_at_3", "mean_rank"]
    per_query = pd.read_parquet(tmp_path / "checkpoints" / "per_query.parquet")
    assert set(per_query["eval_set"]) == {"toy"} and len(per_query) == 2 * len(TOPICS)
    out = export_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "exported"))
    card = (tmp_path / "exported" / "README.md").read_text()
    assert out and "| eval set | Hit@3 | mean rank |" in card and f"{results['toy']['mean_rank']:.2f}" in card


@pytest.mark.parametrize("value", [0.5, 30.0])
def test_a_new_metric_outside_its_declared_range_is_never_reported(value):
    from mdr.errors import NumericalError

    class Broken(ToyBenchmark):
        def evaluate(self, encoder, options=EvalOptions()):
            return {**super().evaluate(encoder, options), "mean_rank": value}

    with pytest.raises(NumericalError, match=rf"eval set 'toy': mean_rank = {value} lies outside \[1.0, 24.0\]"):
        RetrievalEvaluator({"toy": Broken()})(NoisyEncoder(0.5, 1))
    assert np.isfinite(value)
