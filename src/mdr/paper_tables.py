"""The paper's tables filled from a sweep folder: Tables 1 and 2, the per-language Tables 3-8 and
the MIRACL Tables 12-13 of Elmahdy, Lin, Ahmad (arXiv 2408.10536), ours beside the published figures.

In:  a sweep folder (``mdr.comparison.read_jobs``): its runs grouped over seeds
     (``mdr.comparison.groups``), each group matched to the paper's model family (LaBSE, XLM-R base)
     and batching (``sampler=xx``, ``xy``, ``hybrid``); the published figures (``mdr.reference``).
Out: ``paper_tables``: one ``PaperTable`` per printed table (and block), a DataFrame of strings in
     the paper's layout where each of its cells becomes three: ours, the published figure and the
     difference (ours - paper); ``render``: the same as Markdown.

Ours is the mean over a group's seeds, with its 95 % Student-t interval when the group has several
(``mdr.stats.seed_interval``). A language's value is the run's ``<metric>_per_lang`` entry; the Mean
(and MIRACL's Median) row is each run's mean (median) over the paper's languages of that table;
Tables 1 and 2 are those Means. On XQuAD-R and MLQA-R a run is compared only if it evaluated exactly
the paper's languages (other languages make other pools); on MIRACL each language on its own, the
Mean and Median when all 15 are there. A benchmark the sweep did not evaluate, a model family it did
not train, or a run not compared prints as such, never as a number.

    python -m mdr.paper_tables <sweep dir>                  # Markdown on stdout
    python -m mdr.paper_tables <sweep dir> --family LaBSE   # runs of other models stand in for LaBSE
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mdr.comparison import Group, groups, read_jobs
from mdr.errors import ConfigError
from mdr.evaluation.report import markdown_table
from mdr.reference.published import (
    SUMMARY_ROWS,
    model_family,
    per_language_tables,
    published_column,
    reference,
)
from mdr.stats import seed_interval

BATCHING = {"xx": "X-X", "xy": "X-Y", "hybrid": "hybrid"}
FAMILIES = ("XLM-R", "LaBSE")
BENCHMARKS = {"xquad_r": "XQuAD-R", "mlqa_r": "MLQA-R", "miracl": "MIRACL"}
SETTINGS = [("monolingual_map", "Mo"), ("crosslingual_map", "Cr"), ("multilingual_map", "Mul")]
MEASURES = {"map": "MAP", "recall_at_1": "R@1", "recall_at_10": "R@10", "ndcg_at_10": "nDCG@10", "recall_at_100": "Recall@100",
            "rank_distance": "rank distance"}
MISSING = "—"


@dataclass
class PaperTable:
    number: str  # the paper's table number ("1", "3", ...)
    title: str
    frame: pd.DataFrame | None  # None: nothing of ours to show, see note
    note: str = ""


def run_groups(jobs, family: str | None = None) -> dict[tuple[str, str], Group]:
    """(model family, batching) -> the group of runs (seeds together) the paper's cell compares with.
    ``family``: the family that runs of any other model stand in for (e.g. MiniLM at CPU size)."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"--family must be one of {list(FAMILIES)}, got {family!r}")
    out: dict[tuple[str, str], Group] = {}
    for group in groups(jobs):
        record = group.jobs[0].record
        key = (model_family(record.get("model")) or family, record.get("choices", {}).get("sampler"))
        if key[0] is None or key[1] not in BATCHING:
            continue
        if key in out:
            raise ConfigError(f"several run groups are {key[0]} / {key[1]}: {out[key].key!r} and {group.key!r}; "
                              "give a sweep folder with one group per model and batching")
        out[key] = group
    return out


def _languages(eval_set: str) -> list[str]:
    """The paper's languages of a benchmark, in its order (the rows of its per-language tables)."""
    table = next(t for t in per_language_tables()["tables"] if t["eval_set"] == eval_set)
    return [row for row in table["blocks"][0]["rows"] if row not in SUMMARY_ROWS]


def _same_pools(result: dict, eval_set: str) -> bool:
    """XQuAD-R / MLQA-R: the run evaluated exactly the paper's languages, so that every language's
    cross-lingual pools, multilingual pool and rank distances are the paper's. (MIRACL's languages are
    evaluated each on its own corpus: any subset compares.)"""
    return eval_set == "miracl" or sorted(result.get("languages") or []) == sorted(_languages(eval_set))


def _job_value(record: dict, eval_set: str, metric: str, row: str) -> float | None:
    """One run's value of a table cell: a language's, or the mean / median over the paper's languages."""
    result = record["results"].get(eval_set, {})
    if not _same_pools(result, eval_set):
        return None
    per_lang = result.get(f"{metric}_per_lang") or {}
    if row not in SUMMARY_ROWS:
        value = per_lang.get(row)
        return float(value) if isinstance(value, (int, float)) else None
    values = [per_lang.get(lang) for lang in _languages(eval_set)]
    if any(not isinstance(v, (int, float)) for v in values):
        return None
    return float(np.mean(values) if row == "Mean" else np.median(values))


def _digits(metric: str) -> int:
    return 1 if metric.startswith("rank_distance") else 4


def _cells(group: Group | None, eval_set: str, metric: str, row: str, published: float | None, label: str,
           paper_digits: int | None = None) -> dict[str, str]:
    """``{label: ours, label (paper): published, label Δ: ours - published}`` as printed strings; the
    published figure with ``paper_digits`` decimals (Table 1 prints 3), else as many as ours."""
    digits = _digits(metric)
    values = [] if group is None else [v for job in group.jobs if (v := _job_value(job.record, eval_set, metric, row)) is not None]
    if values:
        s = seed_interval(values, bounds=group.bounds(eval_set, metric))
        ours = s.text(digits)
    else:
        ours = MISSING
    paper = MISSING if published is None else f"{published:.{paper_digits or digits}f}"
    diff = f"{s.mean - published:+.{digits}f}" if values and published is not None else MISSING
    return {label: ours, f"{label} (paper)": paper, f"{label} Δ": diff}


def table_1_and_2(found: dict[tuple[str, str], Group], evaluated: set[str]) -> list[PaperTable]:
    """Table 1 (mAP, per benchmark) and Table 2 (rank distance): one row per model and batching."""
    out = []
    for eval_set in ("xquad_r", "mlqa_r"):
        name = BENCHMARKS[eval_set]
        title = f"Table 1, {name}: mAP (macro over languages), ours beside the published"
        if eval_set not in evaluated:
            out.append(PaperTable("1", title, None, f"{name} was not evaluated in this sweep"))
            continue
        rows = []
        for family in FAMILIES:
            for batching, label in BATCHING.items():
                row = {"model": family, "batching": label}
                for metric, short in SETTINGS:
                    published = (published_row_of(family, batching) or {}).get(eval_set, {}).get(metric)
                    row.update(_cells(found.get((family, batching)), eval_set, metric, "Mean", published, short, paper_digits=3))
                rows.append(row)
        out.append(PaperTable("1", title, pd.DataFrame(rows)))
    rows = []
    for family in FAMILIES:
        for batching, label in BATCHING.items():
            row = {"model": family, "batching": label}
            for eval_set in ("xquad_r", "mlqa_r"):
                published = (published_row_of(family, batching) or {}).get(eval_set, {}).get("rank_distance")
                row.update(_cells(found.get((family, batching)), eval_set, "rank_distance", "Mean", published, BENCHMARKS[eval_set]))
            rows.append(row)
    note = "".join(f"; {BENCHMARKS[e]} was not evaluated in this sweep" for e in ("xquad_r", "mlqa_r") if e not in evaluated)
    out.append(PaperTable("2", "Table 2: rank distance (macro over query languages; the paper prints it rounded, "
                               "the published figures here are the Means of its Tables 7 and 8)", pd.DataFrame(rows), note.lstrip("; ")))
    return out


def published_row_of(family: str, batching: str) -> dict | None:
    return next((r for r in reference()["rows"] if r["model"] == family and r["batching"] == batching), None)


def per_language(found: dict[tuple[str, str], Group], evaluated: set[str]) -> list[PaperTable]:
    """Tables 3-8 and 12-13, block by block and group by group: rows = languages + Mean (+ Median)."""
    out = []
    for table in per_language_tables()["tables"]:
        number, eval_set = str(table["table"]), table["eval_set"]
        for block in table["blocks"]:
            for group in block["groups"]:
                family, metric = group["model"], group["metric"]
                measure = next(label for suffix, label in MEASURES.items() if metric.endswith(suffix))
                what = group["heading"] if group["heading"] == measure else f"{group['heading']} {measure}"
                title = f"Table {number}: {table['title']}: {what} (`{metric}`)"
                if eval_set not in evaluated:
                    out.append(PaperTable(number, title, None, f"{BENCHMARKS[eval_set]} was not evaluated in this sweep"))
                    continue
                if not any(f == family for f, _ in found):
                    out.append(PaperTable(number, title, None, f"no {family} run in this sweep"))
                    continue
                rows = []
                for row_name in block["rows"]:
                    row = {"language": row_name}
                    for batching, label in BATCHING.items():
                        _, column = published_column(eval_set, family, metric, batching)
                        row.update(_cells(found.get((family, batching)), eval_set, metric, row_name, column.get(row_name), label))
                    rows.append(row)
                out.append(PaperTable(number, title, pd.DataFrame(rows)))
    return out


def paper_tables(jobs, family: str | None = None) -> list[PaperTable]:
    """Every table, in the paper's order (see the module docstring)."""
    found = run_groups(jobs, family)
    evaluated = {name for job in jobs if job.ok for name in job.record["results"]}
    return table_1_and_2(found, evaluated) + per_language(found, evaluated)


def describe_groups(jobs, family: str | None = None) -> str:
    """Which runs fill which column: the group, its seeds, its model."""
    found = run_groups(jobs, family)
    if not found:
        return "no run of this sweep matches the paper's models (LaBSE, XLM-R base) and batchings (xx, xy, hybrid); see --family"
    lines = []
    for (fam, batching), group in found.items():
        model = group.jobs[0].record.get("model")
        stand_in = "" if model_family(model) == fam else f", standing in for {fam}"
        other = sorted({f"{BENCHMARKS.get(name, name)} over {len(result.get('languages') or [])} of the paper's "
                        f"{len(_languages(name))} languages" for job in group.jobs for name, result in job.record["results"].items()
                        if name in ("xquad_r", "mlqa_r") and not _same_pools(result, name)})
        lines.append(f"- {fam} / {BATCHING[batching]}: runs `{group.key}`, {len(group.jobs)} seed(s), model {model}{stand_in}"
                     + (f"; not compared (other pools): {', '.join(other)}" if other else ""))
    return "\n".join(lines)


def render(tables: list[PaperTable]) -> str:
    """Markdown: each table's title, then its rows or the note saying why there are none."""
    parts = []
    for t in tables:
        body = markdown_table(t.frame.to_dict("records")) if t.frame is not None else f"({t.note})"
        parts.append(f"### {t.title}\n\n{body}" + (f"\n\n({t.note})" if t.frame is not None and t.note else ""))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mdr.paper_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder of train.py -m (numbered job folders)")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="compare runs of models without a published counterpart with this family's figures")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    jobs = read_jobs(args.sweep_dir)
    try:
        tables = paper_tables(jobs, args.family)
        header = describe_groups(jobs, args.family)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# The paper's tables from {args.sweep_dir}\n\nPublished: {reference()['short']}. Ours: mean over seeds "
          f"[95 % t interval] where a group has several; Δ = ours - paper; {MISSING}: not run or not evaluated.\n\n"
          f"{header}\n\n{render(tables)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
