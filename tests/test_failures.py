"""Failure behaviour (docs/failures.md): a diverged run never reports a score, faults do not lose
runs, every bad input is one line naming the option or file."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time

import pytest
import torch

from mdr.errors import ConfigError, DataError, NumericalError, UserError
from mdr.evaluation.benchmark import EvalOptions
from mdr.evaluation.evaluator import RetrievalEvaluator
from mdr.evaluation.miracl import miracl_metrics
from mdr.evaluation.pools import parallel_eval
from mdr.evaluation.settings import pool_metrics
from mdr.formats.results import read_json, train_results_path
from mdr.model.checkpoint import checkpoint_problem, load_checkpoint_encoder
from mdr.tasks import evaluate, train
from tests.helpers import (
    ROOT,
    base_overrides,
    compose_config,
    compose_train,
    make_rows,
    read_losses,
    run_script,
    tiny,
    write_jsonl,
)

DIVERGE = ["trainer.max_steps=6", "optim.lr=1e6", "optim.warmup_ratio=0", "loss.learnable_temperature=true",
           "checkpoint.every_n_train_steps=1", "checkpoint.save_top_k=-1"]


# -- 1. divergence


def test_a_diverged_run_stops_at_once_keeps_its_checkpoints_and_reports_nothing(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NumericalError) as err:
        train(compose_train(base_overrides(corpus) + DIVERGE))
    message = str(err.value)
    assert message.startswith("training diverged: the loss is nan at step ")
    assert "last finite loss" in message and "last checkpoint kept:" in message
    assert not train_results_path(tmp_path).exists()
    kept = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert kept and all(checkpoint_problem(str(p)) is None for p in kept)
    for path in kept:  # only finite weights are ever written
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_a_checkpoint_is_never_written_with_non_finite_weights():
    from mdr.model.loss import InfoNCELoss
    from mdr.model.module import BiEncoderModule

    module = BiEncoderModule(tiny(), InfoNCELoss())
    module.on_save_checkpoint({})  # finite: fine
    with torch.no_grad():
        next(module.encoder.parameters())[0, 0] = math.inf
    with pytest.raises(NumericalError, match=r"the weights are non-finite at step 0 \(encoder\.model\.embeddings"):
        module.on_save_checkpoint({})


class ConstantEncoder(torch.nn.Module):
    """Embeds every text as the same vector: NaN for a diverged model."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.value = value

    def encode(self, texts, kind, batch_size=128):
        return torch.full((len(texts), 8), self.value)


def test_the_evaluator_refuses_non_finite_embeddings(tmp_path):
    es = parallel_eval("demo", write_jsonl(tmp_path / "e.jsonl", make_rows(6, ["en", "de"], seed=4)))
    with pytest.raises(NumericalError, match=r"eval set 'demo': the encoder gave non-finite embeddings for 12 of 12 queries"):
        es.evaluate(ConstantEncoder(math.nan), EvalOptions())


class FixedResults:
    """A benchmark that reports given values and declares the pool and MIRACL metrics."""

    name = "fixed"

    def __init__(self, **values) -> None:
        self.values = values

    def metrics(self, options=EvalOptions()):
        return pool_metrics(options.recall_at) + miracl_metrics([], 100)

    def evaluate(self, encoder, options=EvalOptions()):
        return dict(self.values)


@pytest.mark.parametrize("metrics, bad", [
    ({"multilingual_map": 4.0}, "multilingual_map = 4.0"),
    ({"monolingual_map": -0.1}, "monolingual_map = -0.1"),
    ({"ndcg_at_10": math.inf}, "ndcg_at_10 = inf"),
    ({"rank_distance": 300.0, "num_candidates": 252}, "rank_distance = 300.0"),
    ({"matrix": {"en": {"de": 1.5}}}, r"matrix\[en\]\[de\] = 1.5"),
    ({"recall_at_100_per_lang": {"sw": 1.01}}, r"recall_at_100_per_lang\[sw\] = 1.01"),
    ({"encode_seconds": -1.0}, "encode_seconds = -1.0"),
])
def test_a_metric_outside_its_range_is_never_reported(metrics, bad):
    with pytest.raises(NumericalError, match=rf"eval set 'fixed': {bad} lies outside"):
        RetrievalEvaluator({"fixed": FixedResults(**metrics)})(tiny())


def test_metrics_in_range_and_undefined_ones_pass():
    ok = {"multilingual_map": 1.0, "monolingual_map": 0.0, "rank_distance": 251.0, "num_candidates": 252,
          "same_language_first": math.nan, "matrix": {"en": {"de": 0.5}}, "monolingual_map_seen": 0.5}
    got = RetrievalEvaluator({"fixed": FixedResults(**ok)})(tiny())["fixed"]
    assert {k: v for k, v in got.items() if k != "metrics"} == ok
    assert [m["name"] for m in got["metrics"]][:3] == ["monolingual_map", "crosslingual_map", "multilingual_map"]


def test_a_metric_its_benchmark_does_not_declare_is_never_reported():
    with pytest.raises(NumericalError, match="eval set 'fixed': mrr_at_10 is not a metric its benchmark declares"):
        RetrievalEvaluator({"fixed": FixedResults(mrr_at_10=0.5)})(tiny())


# -- 2. faults that must not lose a run


def test_wandb_with_an_unreachable_server_falls_back_to_offline_in_seconds(corpus, tmp_path):
    start = time.monotonic()
    out = run_script([str(ROOT / "train.py"), *base_overrides(corpus), "logger=wandb", "trainer.max_steps=2",
                      f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                     env={"WANDB_MODE": "", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
                          "WANDB_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert time.monotonic() - start < 90  # it used to wait 111 s and then die
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("W&B:")]
    assert "cannot reach http://127.0.0.1:9" in line and "offline" in line and "wandb sync" in line
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert read_json(train_results_path(tmp_path / "run"))["final"] is True


def test_wandb_init_failure_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    """A reachable server that refuses the run (bad key, quota, timeout): offline, one line."""
    import wandb

    from mdr import loggers

    calls = []
    real_init = wandb.init

    def init(*args, **kwargs):
        calls.append(os.environ.get("WANDB_MODE"))
        if len(calls) == 1:
            raise wandb.errors.CommError("returned error 401: bad key")
        return real_init(*args, **kwargs)

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(loggers, "_unreachable", lambda url, timeout: None)
    monkeypatch.setattr(wandb, "init", init)
    logger = loggers.wandb_logger(save_dir=str(tmp_path))
    try:
        assert logger._offline and len(calls) == 1
        logger.experiment  # the offline run starts
        assert len(calls) == 2 and calls[1] == "dryrun"
    finally:
        wandb.finish()
    [line] = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("W&B:")]
    assert "could not start an online run (CommError: returned error 401: bad key)" in line and "wandb sync" in line


def checkpointed_run(corpus, run_dir, monkeypatch, steps=4, extra=()):
    run_dir.mkdir(exist_ok=True)
    monkeypatch.chdir(run_dir)
    return train(compose_train(base_overrides(corpus) + [
        f"trainer.max_steps={steps}", "sampler.steps_per_epoch=20", "checkpoint.every_n_train_steps=2",
        "checkpoint.save_top_k=-1", "logger=csv", "trainer.log_every_n_steps=1", *extra]))


def test_a_damaged_last_checkpoint_resumes_from_the_newest_intact_one(corpus, tmp_path, monkeypatch, caplog):
    full = checkpointed_run(corpus, tmp_path / "full", monkeypatch, steps=6)
    # what a run killed while writing last.ckpt at step 6 (by a writer that is not atomic) leaves behind
    killed = tmp_path / "killed" / "checkpoints"
    killed.mkdir(parents=True)
    for name in ("step000002.ckpt", "step000004.ckpt"):
        shutil.copy2(tmp_path / "full" / "checkpoints" / name, killed / name)
    last = killed / "last.ckpt"
    last.write_bytes((tmp_path / "full" / "checkpoints" / "last.ckpt").read_bytes()[:50_000])
    assert "truncated" in checkpoint_problem(str(last))
    with caplog.at_level(logging.WARNING):
        resumed = checkpointed_run(corpus, tmp_path / "resumed", monkeypatch, steps=6, extra=[f"ckpt_path={last}"])
    [warning] = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert str(last) in warning and warning.endswith("step000004.ckpt")
    a, b = read_losses(tmp_path / "full"), read_losses(tmp_path / "resumed")
    assert sorted(b) == [4, 5] and all(b[k] == pytest.approx(a[k], abs=1e-6) for k in b)  # continued from step 4
    assert resumed["demo"]["multilingual_map"] == pytest.approx(full["demo"]["multilingual_map"], abs=1e-6)
    for other in killed.glob("step*.ckpt"):
        other.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"ckpt_path: .*last\.ckpt is damaged \(truncated.*no intact checkpoint lies beside it"):
        checkpointed_run(corpus, tmp_path / "again", monkeypatch, steps=6, extra=[f"ckpt_path={last}"])


# -- 3. every bad path is one line


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> dict:
    """A trained run's checkpoints: intact, truncated, and a file that is no checkpoint."""
    folder = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        train(compose_train(base_overrides(corpus, evaluate=False) + ["trainer.max_steps=2"]))
    finally:
        os.chdir(cwd)
    good = folder / "checkpoints" / "last.ckpt"
    bad = folder / "broken" / "last.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[:1000])
    alien = folder / "alien.ckpt"
    shutil.make_archive(str(folder / "alien"), "zip", str(folder / "broken"))
    (folder / "alien.zip").rename(alien)
    return {"good": good, "bad": bad, "alien": alien}


@pytest.mark.parametrize("override, message", [
    ("ckpt_path=/no/such.ckpt", r"ckpt_path: checkpoint not found: /no/such\.ckpt"),
    ("ckpt_path={bad}", r"ckpt_path: .*broken/last\.ckpt is damaged \(truncated or not a checkpoint"),
    ("ckpt_path={alien}", r"ckpt_path: cannot read checkpoint .*alien\.ckpt"),
    ("ckpt_path={good} model.config_overrides.hidden_size=64", r"ckpt_path: .*last\.ckpt was trained from .* does not fit model="),
    ("optim.lr=-1", r"optim\.lr must be > 0, got -1"),
    ("optim.weight_decay=-0.1", r"optim\.weight_decay must be >= 0, got -0\.1"),
    ("optim.warmup_ratio=1.5", r"optim\.warmup_ratio must be in \[0, 1\], got 1\.5"),
    ("+optim.momentum=0.9", r"unknown option\(s\) optim\.momentum; known: grad_cache_chunk_size, lr, warmup_ratio, weight_decay"),
    ("trainer.max_steps=-5", r"trainer: `max_steps` must be a non-negative integer or -1"),
    ("trainer.precision=fp8", r"trainer: Precision 'fp8' is invalid"),
    ("trainer.accelerator=gpu", r"trainer: No supported gpu backend found"),
    ("sampler.alpha=high", r"sampler\.alpha must be a number in \[0, 1\], got 'high'"),
    ("data.batch_size=8.5", r"data\.batch_size must be an integer >= 1, got 8\.5"),
    ("sampler.length_groups=0", r"sampler\.length_groups must be >= 1, got 0"),
    ("data.num_workers=-2", r"data\.num_workers must be >= 0, got -2"),
    ("loss.temperature=warm", r"loss\.temperature must be a number > 0, got 'warm'"),
])
def test_bad_training_options_and_checkpoints_are_one_error(corpus, trained, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    overrides = override.format(**{k: str(v) for k, v in trained.items()}).split()
    with pytest.raises(UserError, match=message):
        train(compose_train(base_overrides(corpus) + ["trainer.max_steps=3"] + overrides))


@pytest.mark.parametrize("which, message", [
    ("bad", r"ckpt: checkpoint .*last\.ckpt is damaged \(truncated or not a checkpoint"),
    ("alien", r"ckpt: cannot read checkpoint .*alien\.ckpt"),
])
def test_bad_checkpoints_for_evaluate_and_export_are_one_error(corpus, trained, tmp_path, monkeypatch, which, message):
    from mdr.tasks import export_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        evaluate(compose_config("evaluate", ["model=tiny", "logger=none", f"eval.sets.demo.files={corpus['eval']}",
                                             f"ckpt={trained[which]}"]))
    with pytest.raises(UserError, match=message):
        export_checkpoint(str(trained[which]), str(tmp_path / "out"))


@pytest.mark.parametrize("config, overrides, message", [
    ("train", ["eval=mlqa_r"], "error: eval.path has no value; set it on the command line (eval.path=...)"),
    ("evaluate", ["eval=all"],
     "error: eval.sets.mlqa_r.path has no value; set it on the command line (eval.sets.mlqa_r.path=...)"),
    ("train", ["data=parallel_files"], "error: data.files has no value; set it on the command line (data.files=...)"),
])
def test_an_unset_option_is_one_line_also_behind_an_interpolation(tmp_path, monkeypatch, config, overrides, message):
    """``eval=mlqa_r`` without ``eval.path``: ``eval.sets.mlqa_r.path: ${eval.path}`` used to escape as
    InterpolationToMissingValueError with a stack trace; the line names the ``???`` option to set."""
    from mdr.cli import run_cli
    from mdr.tasks import evaluate as evaluate_task

    monkeypatch.chdir(tmp_path)
    task = train if config == "train" else evaluate_task
    with pytest.raises(SystemExit) as stopped:
        run_cli(task, compose_config(config, ["model=tiny", "logger=none", *overrides]))
    assert str(stopped.value.code) == message


def test_the_entry_points_print_one_line_for_each_kind_of_bad_path(corpus, trained, tmp_path):
    """Through the real scripts: no stack trace, the last line names the problem."""
    cases = [
        (["train.py", *base_overrides(corpus), f"ckpt_path={trained['bad']}"], "is damaged (truncated or not a checkpoint"),
        (["export.py", f"ckpt={trained['alien']}", "out=x"], "error: ckpt: cannot read checkpoint"),
    ]
    for args, expected in cases:
        out = run_script([str(ROOT / args[0]), *args[1:]], tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert expected in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]


# -- findings: evaluation under gradient accumulation, export, byte-order marks


def test_every_n_steps_evaluates_once_per_optimizer_step_under_accumulation(corpus, tmp_path, monkeypatch):
    calls = []
    original = RetrievalEvaluator.__call__

    def counting(self, encoder):
        calls.append(1)
        return original(self, encoder)

    monkeypatch.setattr(RetrievalEvaluator, "__call__", counting)
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus) + ["trainer.accumulate_grad_batches=3", "trainer.max_steps=4",
                                                  "eval.every_n_steps=2"]))
    assert len(calls) == 2  # after optimizer steps 2 and 4; the final evaluation at step 4 reuses the latter
    assert read_json(train_results_path(tmp_path))["step"] == 4


def test_an_exported_model_loads_without_missing_weights(corpus, tmp_path, monkeypatch):
    from transformers import AutoModel

    from mdr.tasks import export_checkpoint

    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus, evaluate=False) + ["trainer.max_steps=1"]))  # mean pooling
    out = export_checkpoint(str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "exported"))
    for folder in (out, os.path.join(out, "0_Transformer")):
        _, info = AutoModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    encoder, _ = load_checkpoint_encoder(str(tmp_path / "checkpoints" / "last.ckpt"))
    assert encoder.model.pooler is None and not any(p.requires_grad for p in encoder.idle_pooler.parameters())  # kept, frozen, unused


def test_files_with_a_byte_order_mark_load(tmp_path):
    from mdr.evaluation.lareqa import lareqa
    from mdr.formats.miracl import read_qrels, read_topics
    from mdr.formats.parallel import load_parallel_corpus

    bom = "\ufeff"
    rows = make_rows(4, ["en", "de"], seed=5)
    (tmp_path / "c.jsonl").write_text(bom + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tsv = "id\tlang\tquery\tpositive\n" + "".join(f"{r['id']}\t{r['lang']}\t{r['query']}\t{r['positive']}\n" for r in rows)
    (tmp_path / "c.tsv").write_text(bom + tsv, encoding="utf-8")
    for name in ("c.jsonl", "c.tsv"):
        ds = load_parallel_corpus(str(tmp_path / name), cache_dir=str(tmp_path / "cache"))
        assert ds["id"] == [r["id"] for r in rows] and ds["query"] == [r["query"] for r in rows]
    (tmp_path / "topics.tsv").write_text(bom + "q1\twhere?\n", encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text(bom + "q1 Q0 d1 1\n", encoding="utf-8")
    assert read_topics(str(tmp_path / "topics.tsv")) == {"q1": "where?"}
    assert read_qrels(str(tmp_path / "qrels.tsv")) == {"q1": {"d1": 1}}
    para = {"context": "One. Two.", "sentences": ["One.", "Two."], "sentence_breaks": [[0, 4], [5, 9]],
            "qas": [{"id": "q", "question": "Which?", "answers": [{"answer_start": 5, "text": "Two"}]}]}
    (tmp_path / "lareqa").mkdir()
    (tmp_path / "lareqa" / "en.json").write_text(bom + json.dumps({"data": [{"paragraphs": [para]}]}), encoding="utf-8")
    assert lareqa("t", str(tmp_path / "lareqa")).cand_text == ["One.", "Two."]
    (tmp_path / "latin1.jsonl").write_bytes("é".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl: not UTF-8 text"):
        load_parallel_corpus(str(tmp_path / "latin1.jsonl"), cache_dir=str(tmp_path / "cache"))
