"""Every option of every config group composes, resolves and builds what can be built offline, for
each entry point (train, evaluate, export, and any other top-level config): a new option file is
covered by being there. As lightning-hydra-template's config tests do, without running anything."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mdr.config import instantiate
from tests.helpers import ROOT, compose_config

CONF = ROOT / "conf"
PIECES = {"corpus", "benchmark", "hydra"}  # composed into other groups, not chosen on their own (hydra: its launchers below)
# mandatory values (???) each option leaves to the user, and what stands in for them here
MANDATORY = {"data=parallel_files": ["data.files=/data/train.jsonl"], "eval=mlqa_r": ["eval.path=/data/mlqa-r"],
             "eval=all": ["eval.sets.mlqa_r.path=/data/mlqa-r"], "experiment=paper": ["eval.sets.mlqa_r.path=/data/mlqa-r"],
             "experiment=paper_ddp": ["eval.sets.mlqa_r.path=/data/mlqa-r"]}


def entry_points() -> list[str]:
    return sorted(p.stem for p in CONF.glob("*.yaml"))


def options() -> list[tuple[str, str]]:
    """(group, option) for every selectable group: folders of conf/ without the *_options pieces."""
    out = [(group.name, option.stem) for group in sorted(CONF.iterdir())
           if group.is_dir() and group.name not in PIECES and not group.name.endswith("_options")
           for option in sorted(group.glob("*.yaml"))]
    out += [("hydra/launcher", option.stem) for option in sorted((CONF / "hydra" / "launcher").glob("*.yaml"))]
    return out


def defaults_of(entry: str) -> set[str]:
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / f"{entry}.yaml")).get("defaults", [])
    return {next(iter(d)) if isinstance(d, dict) else d for d in defaults}


def required(entry: str) -> list[str]:
    """What each entry point needs from the user to compose at all."""
    return {"export": ["ckpt=run/checkpoints/last.ckpt", "out=exported"], "mine": ["out=mined"]}.get(entry, [])


@pytest.mark.parametrize("group, option", options(), ids=lambda v: str(v))
def test_every_option_composes_resolves_and_builds_offline(group, option):
    choice = f"{group}={option}"
    entries = [e for e in entry_points() if group == "hydra/launcher" or group in defaults_of(e) or group == "experiment"]
    entries = [e for e in entries if group != "experiment" or e == "train"]
    assert entries, f"{choice} is used by no entry point"
    for entry in entries:
        cfg = compose_config(entry, [choice, *required(entry), *MANDATORY.get(choice, [])], return_hydra_config=group == "hydra/launcher")
        if group == "hydra/launcher":
            assert cfg.hydra.launcher._target_
            continue
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every interpolation resolves
        assert resolved
        if "sampler" in cfg:  # the pieces that build without data or network
            assert callable(instantiate(cfg.sampler))
        if "loss" in cfg:
            instantiate(cfg.loss)


def test_every_entry_point_composes_with_its_defaults():
    assert {"train", "evaluate", "export"} <= set(entry_points())
    for entry in entry_points():
        assert compose_config(entry, required(entry))


def test_the_eval_defaults_are_the_same_in_python_and_in_the_config():
    """conf/eval_options/default.yaml is what runs use; EvalOptions what Python callers get: one set of values."""
    from dataclasses import fields

    from mdr.evaluation.benchmark import EvalOptions

    options = OmegaConf.to_container(OmegaConf.load(CONF / "eval_options" / "default.yaml"))
    for f in fields(EvalOptions):
        value = options[f.name]
        assert (tuple(value) if isinstance(value, list) else value) == f.default, f.name
