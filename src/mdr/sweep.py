"""A Hydra callback that prints and saves the comparison tables at the end of a multirun.

It reads each job's ``results.json`` and ``per_query.parquet`` and writes into the sweep folder
``summary.md`` (every table below) and ``summary.csv`` (the first):

1. one row per job and eval set, with the headline metrics;
2. runs grouped over seeds: mean, standard deviation and 95 % interval of each metric, marked
   ▲ / ▼ where a group is significantly better / worse than the baseline (``summary.baseline``);
3. the tests behind the marks (``mdr.comparison``): difference, bootstrap interval, d_z, p, Holm p;
4. the best group by ``summary.select_metric`` on ``summary.select_set``, with its interval;
5. the hybrid-batching paper's published figures beside ours, for runs it has figures for.

With ``logger=wandb`` the tables are also logged as W&B Tables in a run of the sweep's group. Jobs
without final results (or with a ``failed.txt``) are listed as failed, with the first line of their
``failed.txt``; the sweep then exits with status 1.

The same tables for a finished sweep folder, e.g. against another baseline (printed, files untouched):
``python -m mdr.sweep multirun/2026-12-01/10-00-00 baseline="sampler=hybrid sampler.xy_pairs=per_batch"``
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mdr.comparison import Job, best_group, eval_sets, groups, pick_baseline, read_jobs, seed_rows, significance
from mdr.errors import ConfigError, require_number
from mdr.evaluation.report import HEADLINE, csv_table, markdown_table, result_rows
from mdr.reference.published import comparison_rows, comparison_title
from mdr.resume import prepare_sweep  # issue 21

log = logging.getLogger(__name__)
DEFAULTS = {"baseline": None, "alpha": 0.05, "resamples": 9999, "bootstrap": 2000, "select_set": None,
            "select_metric": "crosslingual_map", "select_mode": "max"}


def job_rows(jobs: list[Job]) -> list[dict[str, str]]:
    """One row per (job, eval set); a job without results is one failed row."""
    rows: list[dict[str, str]] = []
    for job in jobs:
        if job.ok:
            rows.extend(result_rows(job.record["results"], job=job.name, run=job.run, status="ok"))
        else:
            rows.append({"job": job.name, "run": job.run, "status": f"failed ({job.failure})"})
    return rows


def published_rows(jobs: list[Job]) -> list[dict[str, str]]:
    """The paper's figures beside ours, for the runs it has figures for."""
    return [row for job in jobs if job.ok
            for row in comparison_rows(job.record["results"], job.record.get("model"),
                                       job.record.get("choices", {}).get("sampler"), run=job.run)]


def summary_options(options: dict | None) -> dict:
    """The ``summary`` options over DEFAULTS, checked: ConfigError naming the first bad one."""
    unknown = sorted(set(options or {}) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown summary option(s) {unknown}; the options are {list(DEFAULTS)}")
    o = {**DEFAULTS, **(options or {})}
    require_number("summary.alpha", o["alpha"], 0, 1, low_open=True)
    require_number("summary.resamples", o["resamples"], 1, integer=True)
    require_number("summary.bootstrap", o["bootstrap"], 1, integer=True)
    if o["select_mode"] not in ("max", "min"):
        raise ConfigError(f"summary.select_mode must be max or min, got {o['select_mode']!r}")
    return o


def sweep_tables(sweep_dir: str | Path, options: dict | None = None) -> dict[str, tuple[str, list[dict[str, str]]]]:
    """Every table of the summary: ``{name: (title, rows)}``, in order; and the best-group line."""
    o = summary_options(options)
    jobs = read_jobs(sweep_dir)
    tables = {"runs": ("Runs", job_rows(jobs))}
    group_list = groups(jobs)
    metrics = [(k, label) for k, label in HEADLINE]
    if group_list and (len(group_list) > 1 or len(group_list[0].jobs) > 1):
        baseline = pick_baseline(group_list, o["baseline"])
        tests = significance(group_list, baseline, o["resamples"], o["bootstrap"]) if len(group_list) > 1 else []
        marks = {(c.group, c.eval_set, c.metric): (" ▲" if c.delta > 0 else " ▼") for c in tests if c.p_holm < o["alpha"]}
        tables["seeds"] = ("Over seeds: mean ±sd [95 % t interval]; ▲ / ▼ significantly better / worse than the baseline "
                           f"({baseline.key}), paired randomisation test over queries, Holm-corrected, alpha {o['alpha']}",
                           seed_rows(group_list, metrics, marks))
        if tests:
            tables["significance"] = (
                f"Against the baseline {baseline.key}: per-query AP averaged over each group's seeds, paired by query; "
                f"difference of the metric, 95 % paired-bootstrap interval, d_z, two-sided p ({o['resamples']} sign flips), "
                f"Holm over the {len(tests)} comparisons",
                [{"runs": c.group, "eval set": c.eval_set, "metric": c.metric, "difference": f"{c.delta:+.4f}",
                  "95 % interval": f"[{c.low:+.4f}, {c.high:+.4f}]", "d_z": f"{c.dz:+.3f}", "p": f"{c.p:.4f}",
                  "p (Holm)": f"{c.p_holm:.4f}",
                  "verdict": ("better" if c.delta > 0 else "worse") if c.p_holm < o["alpha"] else "not significant"}
                 for c in tests])
        name = o["select_set"] or (eval_sets(group_list) or [None])[0]
        best = best_group(group_list, name, o["select_metric"], o["select_mode"]) if name else None
        if best:
            g, s = best
            interval = f" [{s.low:.4f}, {s.high:.4f}] over {s.n} seeds" if s.n > 1 else " (one seed: no interval)"
            tables["best"] = (f"best by {name}/{o['select_metric']} ({o['select_mode']}): {g.key}: {s.mean:.4f}{interval}", [])
        elif name:  # a misspelled set or metric must not just drop the line
            tables["best"] = (f"best by {name}/{o['select_metric']}: no run has this metric "
                              "(see summary.select_set and summary.select_metric)", [])
    published = published_rows(jobs)
    if published:
        tables["published"] = (comparison_title(), published)
    return tables


def render(tables: dict) -> str:
    parts = []
    for name, (title, rows) in tables.items():
        parts.append(markdown_table(rows) if name == "runs" else (f"{title}\n\n{markdown_table(rows)}" if rows else title))
    return "\n\n".join(parts)


class SweepSummary(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the summary when a multirun ends. Its options are
    the ``summary`` section of the sweep's config."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:  # a bad option fails the sweep before its jobs run, not after
            summary_options(dict(config.get("summary") or {}))
            # issue 21 (mdr.resume): a launch into a folder holding a sweep resumes it (+hydra.sweep.resume=true) or is refused
            prepare_sweep(config)
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        if not os.path.isdir(sweep_dir):
            return
        tables = sweep_tables(sweep_dir, dict(config.get("summary") or {}))
        text = render(tables)
        Path(sweep_dir, "summary.md").write_text(text + "\n")
        Path(sweep_dir, "summary.csv").write_text(csv_table(tables["runs"][1]))
        print(f"\nSweep summary ({sweep_dir}/summary.md):\n{text}")
        if str((config.get("logger") or {}).get("_target_", "")).endswith("wandb_logger"):
            log_summary_to_wandb(config, sweep_dir, tables)
        failed = sorted({r["job"] for r in tables["runs"][1] if r["status"].startswith("failed")}, key=int)
        if failed:
            raise SystemExit(f"{len(failed)} job(s) of the sweep failed: {', '.join(failed)} (see failed.txt in their folders)")


def log_summary_to_wandb(config: DictConfig, sweep_dir: str, tables: dict) -> None:
    """The summary tables as W&B Tables, in a run named ``<sweep>-summary`` of the sweep's group."""
    from mdr.loggers import wandb_logger

    name = os.path.basename(os.path.normpath(sweep_dir))
    options = {k: config.logger.get(k) for k in ("project", "entity", "init_timeout") if config.logger.get(k) is not None}
    logger = wandb_logger(save_dir=sweep_dir, name=f"{name}-summary", group=name, tags=["sweep-summary"], **options)
    for key, (title, rows) in tables.items():
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            logger.log_table(f"sweep/{key}", columns=columns, data=[[r.get(c, "") for c in columns] for r in rows])
    logger.experiment.summary["sweep/best"] = tables["best"][0] if "best" in tables else ""
    logger.experiment.finish()


def main(argv: list[str] | None = None) -> None:
    """``python -m mdr.sweep SWEEP_DIR [option=value ...]``: print a finished sweep's tables with other
    ``summary`` options (those of DEFAULTS)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        raise SystemExit(f"usage: python -m mdr.sweep SWEEP_DIR [option=value ...]; options: {', '.join(DEFAULTS)}")
    try:
        sweep_dir, overrides = Path(args[0]), args[1:]
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"{bad}: give summary options as option=value, with one of {list(DEFAULTS)}")
        if not sweep_dir.is_dir() or not any(p.is_dir() and p.name.isdigit() for p in sweep_dir.iterdir()):
            raise ConfigError(f"{sweep_dir}: not a sweep folder (no numbered job folders in it)")
        print(render(sweep_tables(sweep_dir, OmegaConf.to_container(OmegaConf.from_dotlist(overrides)))))
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
