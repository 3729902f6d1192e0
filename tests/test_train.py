"""The training pipeline end to end on the tiny random model: every sampler, resume, sweeps, errors."""

from __future__ import annotations

import csv
import json

import pytest

from mdr.errors import UserError
from mdr.tasks import evaluate, train
from tests.helpers import (
    LANGS,
    ROOT,
    base_overrides,
    check_results,
    compose_config,
    compose_train,
    make_rows,
    read_losses,
    run_script,
    write_jsonl,
)


@pytest.mark.parametrize("sampler", ["xx", "xy", "hybrid", "en_en", "mixed"])
def test_fast_dev_run_every_sampler(corpus, sampler, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = train(compose_train(base_overrides(corpus) + [f"sampler={sampler}", "trainer.fast_dev_run=1"]))
    check_results(results)


@pytest.mark.parametrize("length_groups", [1, 3])  # 3: the resume at step 4 falls inside a length group
def test_resume_mid_epoch_reproduces_uninterrupted_run(corpus, tmp_path, monkeypatch, length_groups):
    common = base_overrides(corpus) + [
        f"sampler.length_groups={length_groups}",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "trainer.max_steps=8",
        "sampler.steps_per_epoch=20",  # step 4 is mid-epoch
        "checkpoint.every_n_train_steps=4",
        "checkpoint.save_top_k=-1",
    ]
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full_dir.mkdir(), resumed_dir.mkdir()
    monkeypatch.chdir(full_dir)
    full = train(compose_train(common))
    ckpt = full_dir / "checkpoints" / "step000004.ckpt"
    assert ckpt.exists() and (full_dir / "checkpoints" / "results.json").exists()

    monkeypatch.chdir(resumed_dir)
    resumed = train(compose_train(common + [f"ckpt_path={ckpt}"]))
    a, b = read_losses(full_dir), read_losses(resumed_dir)
    assert sorted(b) == [4, 5, 6, 7]  # steps logged after the resume (0-based)
    for step in b:
        assert b[step] == pytest.approx(a[step], abs=1e-6), f"loss differs at step {step}"
    assert resumed["demo"]["multilingual_map"] == pytest.approx(full["demo"]["multilingual_map"], abs=1e-6)


def test_evaluate_a_trained_checkpoint_and_reject_another_model(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = train(compose_train(base_overrides(corpus) + ["trainer.max_steps=3"]))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    eval_over = ["model=tiny", f"eval.sets.demo.files={corpus['eval']}", f"ckpt={ckpt}"]
    again = evaluate(compose_config("evaluate", eval_over))
    assert again["demo"]["multilingual_map"] == pytest.approx(trained["demo"]["multilingual_map"], abs=1e-6)
    with pytest.raises(UserError, match="does not fit model"):
        evaluate(compose_config("evaluate", eval_over + ["model.config_overrides.hidden_size=64"]))
    assert json.loads((tmp_path / "results.json").read_text())["ckpt"] == str(ckpt)


def test_last_checkpoint_is_the_trained_model_when_training_ends_between_checkpoints(corpus, tmp_path, monkeypatch):
    """5 steps, a checkpoint every 2: Lightning alone leaves last.ckpt at step 4; it must be step 5."""
    import torch

    monkeypatch.chdir(tmp_path)
    trained = train(compose_train(base_overrides(corpus) + ["trainer.max_steps=5", "checkpoint.every_n_train_steps=2",
                                                            "checkpoint.save_top_k=-1"]))
    folder = tmp_path / "checkpoints"
    last, step4 = (torch.load(folder / name, map_location="cpu", weights_only=False) for name in ("last.ckpt", "step000004.ckpt"))
    assert (last["global_step"], step4["global_step"]) == (5, 4)
    assert any(not torch.equal(last["state_dict"][k], step4["state_dict"][k]) for k in last["state_dict"])
    again = evaluate(compose_config("evaluate", ["model=tiny", f"eval.sets.demo.files={corpus['eval']}", f"ckpt={folder / 'last.ckpt'}"]))
    assert again["demo"]["multilingual_map"] == pytest.approx(trained["demo"]["multilingual_map"], abs=1e-6)


@pytest.mark.parametrize("val_every", [2, None])  # mid-epoch validations; at each epoch's end (4 steps an epoch)
def test_a_step_checkpoint_at_a_validation_step_holds_that_validation(corpus, tmp_path, monkeypatch, val_every):
    """Checkpoints every 4 steps, validations every 2 (or each epoch of 4): step 4's checkpoint is
    written after step 4's validation, so the selection state it holds has seen it. Lightning wrote
    it before; resumed from it (ckpt_path=<file>, or auto after a SIGKILL) a run skipped that validation."""
    import csv

    import torch

    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus) + [
        "trainer.max_steps=8", "trainer.max_epochs=2", "sampler.steps_per_epoch=4", "checkpoint.every_n_train_steps=4",
        "checkpoint.save_top_k=-1",
        "data.val_split=0.2", "data.val_batches=3", f"val.every_n_steps={val_every or 'null'}", "logger=csv",
        "trainer.log_every_n_steps=1"]))
    with open(next(tmp_path.glob("csv/version_*/metrics.csv"))) as fh:
        validated = [float(row["val/loss"]) for row in csv.DictReader(fh) if row.get("val/loss")]
    assert len(validated) == (4 if val_every else 2)
    state = torch.load(tmp_path / "checkpoints" / "step000004.ckpt", map_location="cpu", weights_only=False)
    [selection] = [v for k, v in state["callbacks"].items() if "'monitor': 'val/loss'" in k]
    assert state["global_step"] == 4
    assert float(selection["current_score"]) == pytest.approx(validated[1 if val_every else 0], abs=1e-6)  # step 4's


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler.alpha=1.5", r"sampler\.alpha must be in \[0, 1\], got 1\.5"),
        ("data.batch_size=500", r"batch size 500 is larger than the \d+ examples available in language"),
        ("data.languages=[en,fr]", r"language\(s\) \['fr'\] requested but absent"),
        ("sampler=en_en data.languages=[de]", r"language 'en' is not in the data"),
        ("data.files=/nonexistent/*.jsonl", r"data file not found: /nonexistent"),
        ("data.num_hard_negatives=2", r"have no 'negatives'"),
        ("model.pooling=max", r"model\.pooling must be one of"),
        ("loss.temperature=0", r"loss\.temperature must be > 0"),
        ("loss.in_batch_positives=false", r"Eq\. 1\) needs hard negatives: set data\.num_hard_negatives >= 1"),
        ("loss.mask_false_negatives=yes", r"loss\.mask_false_negatives must be true or false, got 'yes'"),
        ("optim.grad_cache_chunk_size=4 trainer.accumulate_grad_batches=2", r"replaces trainer\.accumulate_grad_batches"),
        ("optim.grad_cache_chunk_size=0", r"optim\.grad_cache_chunk_size must be a positive integer"),
    ],
)
def test_bad_options_give_one_clear_error(corpus, tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message):
        train(compose_train(base_overrides(corpus) + override.split()))


def test_cli_prints_one_line_for_user_errors_and_lists_unknown_options(corpus, tmp_path):
    bad = run_script([str(ROOT / "train.py"), *base_overrides(corpus), "sampler.alpha=-1"], tmp_path)
    assert bad.returncode != 0
    assert "error: sampler.alpha must be in [0, 1], got -1" in bad.stderr
    assert "Traceback" not in bad.stderr
    # eval.path is reached through an interpolation (eval.sets.mlqa_r.path: ${eval.path}): the ??? option is named
    missing = run_script([str(ROOT / "train.py"), "model=tiny", "logger=none", "data=parallel_files", "eval=mlqa_r"], tmp_path)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == ("error: data.files and eval.path have no value; set them on the command "
                                                       "line (data.files=... eval.path=...)")
    for group, name in (("sampler", "xz"), ("model", "bert")):
        unknown = run_script([str(ROOT / "train.py"), f"{group}={name}"], tmp_path)
        assert unknown.returncode != 0
        assert f"Could not find '{group}/{name}'" in unknown.stderr
        assert "Available options" in unknown.stderr


@pytest.mark.parametrize(
    "sweep, jobs",
    [("sampler=xx,xy,hybrid", 3), ("sampler=hybrid sampler.alpha=0.25,0.5,0.75", 3)],
)
def test_multirun_prints_and_saves_a_comparison_table(corpus, tmp_path, sweep, jobs):
    sweep_dir = tmp_path / "sweep"
    out = run_script(
        [str(ROOT / "train.py"), "-m", *base_overrides(corpus), "trainer.max_steps=2", *sweep.split(),
         f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Sweep summary" in out.stdout
    table = (sweep_dir / "summary.md").read_text()
    rows = [line for line in table.splitlines() if "| ok |" in line]
    assert len(rows) == jobs, table
    for value in sweep.split()[-1].split("=")[1].split(","):
        assert value in table
    with open(sweep_dir / "summary.csv") as fh:
        assert len(list(csv.DictReader(fh))) == jobs


def test_wandb_without_credentials_runs_offline_and_says_how_to_sync(corpus, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    out = run_script(
        [str(ROOT / "train.py"), *base_overrides(corpus), "logger=wandb", "trainer.fast_dev_run=1"],
        tmp_path,
        env={"WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(netrc), "WANDB_DIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("W&B:")]
    assert len(line) == 1 and "offline" in line[0] and "wandb sync" in line[0]
    assert list(tmp_path.glob("outputs/train/*/wandb/offline-run-*"))


def test_hard_negatives_reach_the_loss(corpus, tmp_path, monkeypatch):
    from mdr.data.loader import ParallelPairs
    from mdr.formats.parallel import load_parallel_corpus

    train_file = write_jsonl(tmp_path / "neg.jsonl", make_rows(40, LANGS, seed=3, negatives=1))
    ds = load_parallel_corpus(train_file, cache_dir=str(tmp_path / "cache"))
    fetched = ParallelPairs(ds, num_hard_negatives=2).__getitems__([(0, 1), (4, 5)])
    # B positives first, then each example's k negatives (cycled: the data has 1 per row)
    assert fetched["passage"][:2] == [ds[1]["positive"], ds[5]["positive"]]
    assert fetched["passage"][2:] == [ds[1]["negatives"][0]] * 2 + [ds[5]["negatives"][0]] * 2
    assert fetched["passage_id"] == [ds[1]["id"], ds[5]["id"], None, None, None, None]  # no negative_ids: unknown

    monkeypatch.chdir(tmp_path)
    results = train(compose_train(base_overrides(corpus) + [f"data.files={train_file}", "data.num_hard_negatives=2",
                                                           "trainer.fast_dev_run=1"]))
    check_results(results)
    # the paper's Eq. 1 (own positive + hard negatives, temperature 1), with a validation loss, in its own run folder
    (tmp_path / "eq1").mkdir()
    monkeypatch.chdir(tmp_path / "eq1")
    eq1 = train(compose_train(base_overrides(corpus) + [f"data.files={train_file}", "data.num_hard_negatives=1",
                                                       "loss.in_batch_positives=false", "loss.temperature=1", "data.val_split=0.2",
                                                       "trainer.fast_dev_run=1"]))
    check_results(eq1)


def test_ddp_two_cpu_ranks_plain_and_with_grad_cache(corpus, tmp_path):
    """Lightning DDP with two gloo ranks: gathered passages, per-rank sampler slices, rank-0
    evaluation. With dropout off, GradCache (no-sync chunk backwards + one all-reduce) must give
    the plain DDP run's loss curve."""
    losses = {}
    for name, extra in [("plain", []), ("grad_cache", ["optim.grad_cache_chunk_size=3"])]:
        run_dir = tmp_path / name
        out = run_script(
            [str(ROOT / "train.py"), *base_overrides(corpus), "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
             "trainer.max_steps=3", "logger=csv", "trainer.log_every_n_steps=1", f"hydra.run.dir={run_dir}",
             "+model.config_overrides.hidden_dropout_prob=0", "+model.config_overrides.attention_probs_dropout_prob=0",
             *extra],
            tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert (run_dir / "train_ddp_process_1.log").exists()  # the second rank ran
        results = json.loads((run_dir / "checkpoints" / "results.json").read_text())
        assert results["step"] == 3
        check_results(results["results"])
        losses[name] = read_losses(run_dir)
    assert sorted(losses["plain"]) == [0, 1, 2]
    for step, loss in losses["plain"].items():
        assert losses["grad_cache"][step] == pytest.approx(loss, abs=1e-5), step


def test_training_steps_run_in_train_mode(corpus, tmp_path, monkeypatch):
    """from_pretrained hands back a model in eval mode; dropout must be on while fine-tuning."""
    from mdr.model.encoder import Encoder
    from mdr.model.module import BiEncoderModule

    modes, step, init = [], BiEncoderModule.training_step, Encoder.__init__

    def init_like_from_pretrained(self, *args, **kwargs):  # the tiny model is built from a config
        init(self, *args, **kwargs)
        self.eval()

    def recording_step(self, batch, batch_idx):
        modes.append(all(m.training for m in self.encoder.modules()))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(BiEncoderModule, "training_step", recording_step)
    monkeypatch.setattr(Encoder, "__init__", init_like_from_pretrained)
    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus, evaluate=False) + ["trainer.max_steps=3"]))
    assert modes == [True] * 3


def test_a_failing_job_does_not_stop_the_sweep_and_the_summary_names_it(corpus, tmp_path):
    sweep_dir = tmp_path / "sweep"
    out = run_script(
        [str(ROOT / "train.py"), "-m", *base_overrides(corpus), "trainer.max_steps=2", "sampler=hybrid",
         "sampler.alpha=1.5,0.5", f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
    )
    assert out.returncode == 1
    assert "1 job(s) of the sweep failed: 0" in out.stderr
    table = (sweep_dir / "summary.md").read_text()
    assert "sampler.alpha=0.5" in [line for line in table.splitlines() if "| ok |" in line][0]
    failed_row = [line for line in table.splitlines() if "failed" in line][0]
    assert "sampler.alpha=1.5" in failed_row and "sampler.alpha must be in [0, 1]" in failed_row
    assert (sweep_dir / "0" / "failed.txt").exists() and (sweep_dir / "1" / "checkpoints" / "results.json").exists()


def test_results_and_logger_record_the_data_trained_on(corpus, tmp_path, monkeypatch):
    """results.json and the logger's config say what the run trained on (cf. the paper's Tables 9-11):
    examples and rows per language from the corpus, the epoch, and the steps and epochs trained."""
    import yaml

    from mdr.formats.parallel import load_parallel_corpus

    monkeypatch.chdir(tmp_path)
    train(compose_train(base_overrides(corpus) + ["trainer.max_steps=3", "logger=csv", "data.val_split=0.25"]))
    record = json.loads((tmp_path / "checkpoints" / "results.json").read_text())["data"]
    rows = load_parallel_corpus(corpus["train"], cache_dir=str(tmp_path / "arrow")).to_pandas()
    per_lang = rows.groupby("lang").size().to_dict()
    source = record["sources"]["corpus"]
    held_out = record["validation"]["examples"]  # data.val_split: a quarter of the ids, in every language
    assert 0 < held_out < rows["id"].nunique() and source["examples"] + held_out == rows["id"].nunique()
    assert sum(source["rows_per_language"].values()) + sum(record["validation"]["rows_per_language"].values()) == len(rows)
    assert set(source["rows_per_language"]) == set(per_lang) and source["rows_per_language"]["ar"] < source["rows_per_language"]["en"]
    assert record["steps_per_epoch"] == source["rows"] // 8 and record["global_batch_size"] == 8
    assert (record["trained_steps"], record["trained_epochs"]) == (3, round(3 / record["steps_per_epoch"], 4))
    [hparams] = tmp_path.glob("csv/version_*/hparams.yaml")
    logged = yaml.safe_load(hparams.read_text())["training_data"]
    assert logged["sources"]["corpus"]["rows_per_language"] == source["rows_per_language"]
