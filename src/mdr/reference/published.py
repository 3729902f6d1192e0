"""The hybrid-batching paper's published tables, matched to this tool's runs.

In:  a run's model (``name_or_path``), its sampler choice, and per eval set the pairs (our metric,
     the paper's name for it) that the benchmark declares (``Metric.paper``, read by
     ``mdr.evaluation.report.paper_comparison``).
Out: rows ``{run, eval set, metric, ours, published, difference}`` for every metric the paper
     reports for the same model family (LaBSE, XLM-R base), the same batching (xx, xy, hybrid) and
     the same benchmark (xquad_r, mlqa_r, miracl), labelled as published figures. Runs that match
     no published row (another model, sampler or benchmark) get none.

``elmahdy2024.yaml`` holds Tables 1, 2 and the MIRACL means (the rows above);
``elmahdy2024_tables.yaml`` the per-language Tables 3-8 and 12-13 (``per_language_tables``,
``published_column``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

REFERENCE_FILE = Path(__file__).with_name("elmahdy2024.yaml")
TABLES_FILE = Path(__file__).with_name("elmahdy2024_tables.yaml")
SUMMARY_ROWS = ("Mean", "Median")  # the rows of the per-language tables that are not a language
MODEL_FAMILIES = {"LaBSE": ("labse",), "XLM-R": ("xlm-roberta-base", "xlmr-base", "xlm_roberta_base")}


@cache
def reference() -> dict:
    """The stored paper data: citation, setup, MIRACL languages and the published rows."""
    return yaml.safe_load(REFERENCE_FILE.read_text(encoding="utf-8"))


@cache
def per_language_tables() -> dict:
    """The stored Tables 3-8 and 12-13: ``batchings``, ``inconsistencies`` and ``tables`` (see the file)."""
    return yaml.safe_load(TABLES_FILE.read_text(encoding="utf-8"))


def table_columns(table: dict) -> list[tuple[dict, str, dict[str, float]]]:
    """Every column of a stored table: (its block, batching, {row: value}), in the printed order;
    the block gives the group's ``model`` and ``metric`` through ``groups``."""
    batchings = per_language_tables()["batchings"]
    out = []
    for block in table["blocks"]:
        for g, group in enumerate(block["groups"]):
            for b, batching in enumerate(batchings):
                column = {row: values[g * len(batchings) + b] for row, values in block["rows"].items()}
                out.append(({**group, "table": table["table"], "eval_set": table["eval_set"]}, batching, column))
    return out


@cache
def _columns() -> dict[tuple[str, str, str, str], tuple[int, dict[str, float]]]:
    return {(group["eval_set"], group["model"], group["metric"], batching): (group["table"], column)
            for table in per_language_tables()["tables"] for group, batching, column in table_columns(table)}


def published_column(eval_set: str, family: str, metric: str, batching: str) -> tuple[int, dict[str, float]] | None:
    """(table number, {language or Mean / Median: value}) of a published per-language column, or None."""
    return _columns().get((eval_set, family, metric, batching))


def paper_miracl_languages() -> list[str]:
    return list(reference()["miracl_languages"])


def model_family(name_or_path: str | None) -> str | None:
    """LaBSE or XLM-R (base) from a model's hub id or path, else None."""
    name = (name_or_path or "").lower()
    if "large" in name:
        return None
    return next((family for family, keys in MODEL_FAMILIES.items() if any(k in name for k in keys)), None)


def published_row(model: str | None, sampler: str | None) -> dict | None:
    family = model_family(model)
    return next((r for r in reference()["rows"] if r["model"] == family and r["batching"] == sampler), None)


def comparison_rows(values: dict[str, list[tuple[str, str, float, int]]], model: str | None, sampler: str | None,
                    run: str = "") -> list[dict[str, str]]:
    """Our figure, the published one and the difference, for every published figure the run has.
    ``values``: per eval set, ``(our metric, the paper's name for it, our value, decimals)``."""
    row = published_row(model, sampler)
    if row is None:
        return []
    out = []
    for name, metrics in values.items():
        published = row.get(name) or {}
        for metric, paper_name, ours, digits in metrics:
            if paper_name not in published or not isinstance(ours, float):
                continue
            figure = published[paper_name]
            out.append({**({"run": run} if run else {}), "eval set": name, "metric": metric, "ours": f"{ours:.{digits}f}",
                        "published": f"{figure:.{digits}f}", "difference": f"{ours - figure:+.{digits}f}",
                        "paper row": f"{row['model']}, {row['batching']}"})
    return out


def comparison_title() -> str:
    return f"Published figures ({reference()['short']}), same model family, batching and benchmark; not re-measured here"
