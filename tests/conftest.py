"""Fixtures shared by the test modules (helpers without fixture semantics: tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdr.config import register_resolvers
from tests.helpers import LANGS, compose_config, make_rows, write_jsonl

register_resolvers()  # the tests compose configs themselves, as the entry points do


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic parallel corpus (Arabic covers 70 % of the examples) and a held-out eval file."""
    d = tmp_path_factory.mktemp("corpus")
    return {
        "train": write_jsonl(d / "train.jsonl", make_rows(60, LANGS, coverage={"ar": 0.7}, seed=0)),
        "eval": write_jsonl(d / "eval.jsonl", make_rows(12, LANGS, seed=1)),
        "cache": d / "cache",
    }


@pytest.fixture
def compose():
    """``compose(name, overrides, return_hydra_config=False)``: a config composed from conf/ (tests/helpers.py)."""
    return compose_config
