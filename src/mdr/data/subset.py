"""Training on part of a corpus: ``data.max_examples`` / ``data.example_fraction``, nested subsets of example ids.

In:  the training corpus (after ``data.languages`` and the validation hold-out of ``data.val_split``,
     so a held-out id never enters), and at most one of ``max_examples`` (N >= 1 example ids; an id
     counts once, in however many languages it has) and ``example_fraction`` (a share in (0, 1]:
     round(share x ids) of them, at least one). With ``data.sources`` each source is cut on its
     own: by its own ``data.sources.<name>.max_examples`` / ``example_fraction`` when it sets one,
     else by the global options (``data.example_fraction=0.25`` keeps a quarter of every source,
     ``data.max_examples=1000`` 1,000 ids of every source).
Out: the rows of the kept ids, in every language they have, in their original order; and a record
     of what was kept: the options, ids kept and available, rows in all and per language.

Which ids are kept depends only on the ids and ``SUBSET_SALT``: they are ranked by a salted SHA-1 of
the id and the first N kept. So the subset is the same for every sampler and seed, and nested: the
1,000 ids of ``max_examples=1000`` are among the 5,000 of ``max_examples=5000``, and points of a
data-size curve differ only in the examples the larger one adds. The salt differs from the
validation split's, so the two choices are independent.
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np

from mdr.data.index import ParallelIndex
from mdr.errors import ConfigError, require_number

SUBSET_SALT = "mdr-subset-v1"  # changing it changes every subset: keep it fixed


def check_subset_options(max_examples, example_fraction, where: str = "data") -> None:
    """ConfigError naming ``<where>.max_examples`` / ``<where>.example_fraction`` for a bad value or both set."""
    if max_examples is not None and example_fraction is not None:
        raise ConfigError(f"set at most one of {where}.max_examples and {where}.example_fraction")
    if max_examples is not None:
        if isinstance(max_examples, float) and 0 < max_examples < 1:
            raise ConfigError(f"{where}.max_examples must be an integer >= 1 (a number of example ids), got {max_examples!r}; "
                              f"for a share of the examples use {where}.example_fraction={max_examples}")
        require_number(f"{where}.max_examples", max_examples, low=1, integer=True)
    if example_fraction is not None:
        require_number(f"{where}.example_fraction", example_fraction, low=0, high=1, low_open=True)


def ranked_ids(example_ids) -> np.ndarray:
    """Positions of ``example_ids`` in the order ids are kept: by the salted hash of the id."""
    keys = np.array([hashlib.sha1(f"{SUBSET_SALT}:{i}".encode()).digest() for i in example_ids], dtype=object)
    return np.argsort(keys, kind="stable")


def keep_examples(corpus: datasets.Dataset, max_examples: int | None, example_fraction: float | None,
                  where: str, option: str = "data") -> tuple[datasets.Dataset, ParallelIndex, dict]:
    """(the rows of the kept ids, their index, the record); the corpus unchanged when neither option is set.

    ``where`` names the data in errors (e.g. ``data.files [...]``), ``option`` the options' prefix.
    A count above the ids available is an error: a curve point must not silently train on fewer.
    """
    check_subset_options(max_examples, example_fraction, option)
    index = ParallelIndex.from_dataset(corpus)
    available = len(index.example_ids)
    if max_examples is not None:
        wanted = max_examples
    elif example_fraction is not None:
        wanted = max(1, round(example_fraction * available))
    else:
        wanted = available
    if wanted > available:
        raise ConfigError(f"{option}.max_examples={max_examples} is more than the {available} example ids of {where} "
                          "(after any validation hold-out); lower it, or leave it unset to train on all")
    if wanted < available:
        kept = ranked_ids(index.example_ids)[:wanted]
        rows = index.rows[kept]
        corpus = corpus.select(np.sort(rows[rows >= 0]))
        index = ParallelIndex.from_dataset(corpus)
    record = {"max_examples": max_examples, "example_fraction": example_fraction, "examples": len(index.example_ids),
              "examples_available": available, "rows": len(corpus), "rows_per_language": index.counts}
    return corpus, index, record
