"""Every sampler with every data layout, length grouping and GradCache, on one rank and on two
gloo ranks: two steps, a resume from the first, and the logged ``sampling/*`` shares must show the
batches the sampler promises. A new option must not silently break another.

One rank: the full grid (5 samplers x plain files / mixture x length groups 1 / 4 x GradCache off /
on), in process, each resumed. Two ranks (slow: two processes per run): one run per sampler, the
other options rotated so that each value of each option appears on two ranks too; the runs with
GradCache (its own optimizer step and all-reduce) are resumed as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdr.formats.results import read_json, train_results_path
from mdr.tasks import train
from tests.helpers import LANGS, ROOT, base_overrides, compose_train, last_logged, make_rows, read_losses, run_script, write_jsonl

SAMPLERS = ["xx", "xy", "hybrid", "en_en", "mixed"]


@pytest.fixture(scope="module")
def second_source(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("b") / "b.jsonl", make_rows(40, LANGS, seed=7))


def overrides(corpus, second_source, data: str, length_groups: int, grad_cache: bool) -> list[str]:
    extra = [f"sampler.length_groups={length_groups}", "trainer.max_steps=2", "sampler.steps_per_epoch=10",
             "checkpoint.every_n_train_steps=1", "checkpoint.save_top_k=-1", "logger=csv", "trainer.log_every_n_steps=1"]
    if grad_cache:
        extra.append("optim.grad_cache_chunk_size=3")
    if data == "mixture":  # two parallel corpora, drawn 2:1
        extra += ["data.files=null",
                  f"+data.sources={{a: {{files: '{corpus['train']}', weight: 2}}, b: {{files: '{second_source}', weight: 1}}}}"]
    return base_overrides(corpus, evaluate=False) + extra


def check_sampling(run_dir: Path, sampler: str, data: str) -> None:
    """The cumulative shares logged at the last step, against what the sampler promises."""
    shares = last_logged(run_dir, "sampling/")
    kinds = {k.split("/")[-1]: v for k, v in shares.items() if k.startswith("sampling/kind/")}
    pairs = [k.split("/")[-1].split("-") for k in shares if k.startswith("sampling/pair/")]
    sources = {k.split("/")[-1]: v for k, v in shares.items() if k.startswith("sampling/source/")}
    assert sum(kinds.values()) == pytest.approx(1.0), shares
    expected_kinds = {"xx": {"xx"}, "en_en": {"xx"}, "xy": {"xy"}, "hybrid": {"xx", "xy"}, "mixed": {"mixed"}}[sampler]
    assert set(kinds) <= expected_kinds, shares
    if sampler in ("xx", "en_en", "mixed"):
        assert all(x == y for x, y in pairs), shares
    if sampler == "xy":
        assert all(x != y for x, y in pairs), shares
    if sampler == "en_en":
        assert shares["sampling/query_lang/en"] == pytest.approx(1.0), shares
    if data == "mixture":
        assert set(sources) <= {"a", "b"} and sum(sources.values()) == pytest.approx(1.0), shares
    else:
        assert not sources, shares


def run_and_resume(corpus, second_source, tmp_path, monkeypatch, sampler, data, length_groups, grad_cache) -> None:
    common = overrides(corpus, second_source, data, length_groups, grad_cache) + [f"sampler={sampler}"]
    for name, extra in (("full", []), ("resumed", [f"ckpt_path={tmp_path / 'full' / 'checkpoints' / 'step000001.ckpt'}"])):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        train(compose_train(common + extra))
        assert read_json(train_results_path(tmp_path / name))["step"] == 2
        check_sampling(tmp_path / name, sampler, data)
    full, resumed = read_losses(tmp_path / "full"), read_losses(tmp_path / "resumed")
    assert sorted(resumed) == [1] and resumed[1] == pytest.approx(full[1], abs=1e-6)


@pytest.mark.parametrize("grad_cache", [False, True], ids=["plain", "gradcache"])
@pytest.mark.parametrize("length_groups", [1, 4], ids=["G1", "G4"])
@pytest.mark.parametrize("data", ["files", "mixture"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_one_rank(corpus, second_source, tmp_path, monkeypatch, sampler, data, length_groups, grad_cache):
    run_and_resume(corpus, second_source, tmp_path, monkeypatch, sampler, data, length_groups, grad_cache)


# one run per sampler on two ranks; each value of each option appears at least twice
TWO_RANKS = [
    ("xx", "files", 4, True),
    ("xy", "mixture", 1, False),
    ("hybrid", "mixture", 4, True),
    ("en_en", "files", 1, False),
    ("mixed", "mixture", 1, False),
]


@pytest.mark.slow
@pytest.mark.parametrize("sampler, data, length_groups, grad_cache", TWO_RANKS)
def test_two_gloo_ranks(corpus, second_source, tmp_path, sampler, data, length_groups, grad_cache):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    common = overrides(corpus, second_source, data, length_groups, grad_cache) + ddp + [f"sampler={sampler}"]
    resume = [f"ckpt_path={tmp_path / 'full' / 'checkpoints' / 'step000001.ckpt'}"]
    runs = [("full", []), ("resumed", resume)] if grad_cache else [("full", [])]  # resuming takes as long again
    for name, extra in runs:
        out = run_script([str(ROOT / "train.py"), *common, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert (tmp_path / name / "train_ddp_process_1.log").exists()  # the second rank ran
        check_sampling(tmp_path / name, sampler, data)
    if grad_cache:
        full, resumed = read_losses(tmp_path / "full"), read_losses(tmp_path / "resumed")
        assert sorted(resumed) == [1] and resumed[1] == pytest.approx(full[1], abs=1e-5)


@pytest.mark.slow
def test_a_diverged_run_stops_every_rank(corpus, tmp_path):
    """Two gloo ranks: a non-finite loss ends both at the same step (no rank left waiting in a collective)."""
    out = run_script([str(ROOT / "train.py"), *base_overrides(corpus, evaluate=False), "trainer=ddp", "trainer.accelerator=cpu",
                      "trainer.devices=2", "trainer.max_steps=6", "optim.lr=1e6", "optim.warmup_ratio=0",
                      "loss.learnable_temperature=true", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert out.returncode == 1
    assert "error: training diverged: the loss is nan at step" in out.stderr.strip().splitlines()[-1]
    assert not train_results_path(tmp_path).exists()
