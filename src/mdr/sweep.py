"""A Hydra callback that prints and saves the comparison tables at the end of a multirun.

It reads each job's ``results.json`` and ``per_query.parquet`` and writes into the sweep folder
``summary.md`` (every table below), ``summary.csv`` (the first) and ``summary_forest.png``:

1. one row per job and eval set, with the headline metrics its benchmarks declare;
2. runs grouped over seeds: mean, standard deviation and 95 % interval of each metric, marked
   ▲ / ▼ where a group is significantly better / worse than its baseline (``summary.baseline``);
3. the tests behind the marks (``mdr.comparison``): difference, 95 % interval, p, Holm p, verdict,
   each over seeds and questions; a forest plot of the same differences;
4. the best group by ``summary.select_metric`` on ``summary.select_set``, with its interval; when the
   selection set is a dev set (one of several eval sets), it is not tested, and the selected group's
   results on the other (test) sets are given apart;
5. the hybrid-batching paper's published figures beside ours, for runs it has figures for.

With ``logger=wandb`` the tables and the forest plot are also logged to a run of the sweep's group.
Jobs with a ``failed.txt`` are listed as failed, with its first line; jobs with neither final results
nor a ``failed.txt`` as not finished (still running, or stopped: so a summary of a sweep under way
lists them). At the end of a sweep both count as failed, and it exits with status 1.

The same tables for finished sweep folders, e.g. against another baseline, or several sweeps
compared with each other (printed and written into the first folder as ``summary-<time>.md``):
``python -m mdr.sweep outputs/train-sweep/2026-12-01_10-00-00 baseline="sampler=hybrid sampler.xy_pairs=per_batch"``
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mdr.comparison import (Comparison, ComparisonError, Group, Job, baselines, best_group, compare, eval_sets, groups,
                            read_jobs, seed_rows)
from mdr.errors import ConfigError, require_number
from mdr.curves import DELTAS_COLUMNS, means_table, save_curves, swept_value
from mdr.evaluation.report import csv_table, headline, markdown_table, paper_comparison, result_rows
from mdr.reference.published import comparison_title
from mdr.resume import RESUME_OPTION, prepare_sweep

log = logging.getLogger(__name__)
DEFAULTS = {"baseline": None, "alpha": 0.05, "min_seeds": 3, "metrics": None, "common_queries": False,
            "select_set": None, "select_metric": None, "select_mode": None}
FOREST_FILE = "summary_forest.png"
NOT_TABLES = ("comparisons", "error", "groups", "jobs", "curves")  # what sweep_tables returns beside the tables


def summary_options(options: dict | None) -> dict:
    """The ``summary`` options over DEFAULTS, checked: ConfigError naming the first bad one."""
    unknown = sorted(set(options or {}) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown summary option(s) {unknown}; the options are {list(DEFAULTS)}")
    o = {**DEFAULTS, **(options or {})}
    require_number("summary.alpha", o["alpha"], 0, 1, low_open=True)
    require_number("summary.min_seeds", o["min_seeds"], low=2, integer=True)
    if o["select_mode"] not in (None, "max", "min"):
        raise ConfigError(f"summary.select_mode must be max, min or null (the metric's direction), got {o['select_mode']!r}")
    if not isinstance(o["common_queries"], bool):
        raise ConfigError(f"summary.common_queries must be true or false, got {o['common_queries']!r}")
    if o["metrics"] is not None and (isinstance(o["metrics"], str) or not all(isinstance(m, str) for m in o["metrics"])):
        raise ConfigError(f"summary.metrics must be a list of metric names or null, got {o['metrics']!r}")
    return o


def job_rows(jobs: list[Job]) -> list[dict[str, str]]:
    """One row per (job, eval set); a job without final results is one row: failed (its failed.txt) or
    not finished (none: still running, or stopped without an error)."""
    rows: list[dict[str, str]] = []
    for job in jobs:
        if job.ok:
            rows.extend(result_rows(job.record["results"], job=job.name, run=job.run, status="ok"))
        else:
            state = "not finished" if job.unfinished else "failed"
            rows.append({"job": job.name, "run": job.run, "status": f"{state} ({job.failure})"})
    return rows


def published_rows(jobs: list[Job]) -> list[dict[str, str]]:
    """The paper's figures beside ours, for the runs it has figures for."""
    return [row for job in jobs if job.ok
            for row in paper_comparison(job.record["results"], job.record.get("model"),
                                        job.record.get("choices", {}).get("sampler"), run=job.run)]


def selection(group_list: list[Group], o: dict) -> tuple[str | None, str | None, str | None]:
    """(eval set, metric, mode) that name the best group: the options, or the first eval set, the
    metric its benchmark declares for selection, and that metric's direction."""
    sets = eval_sets(group_list)
    name = o["select_set"] or (sets[0] if sets else None)
    if name is None:
        return None, None, None
    declared = next((g.metrics(name) for g in group_list if g.metrics(name)), {})
    metric = o["select_metric"] or next((m.name for m in declared.values() if m.select), None)
    mode = o["select_mode"] or ("max" if metric not in declared or declared[metric].higher_is_better else "min")
    return name, metric, mode


def p_text(p: float) -> str:
    """Four decimals, and "<0.0001" rather than a p of 0.0000, which no test gives."""
    return "<0.0001" if p < 0.00005 else f"{p:.4f}"


def comparison_rows(comparisons: list[Comparison], alpha: float, several_baselines: bool) -> list[dict[str, str]]:
    rows = []
    for c in comparisons:
        d = c.metric.digits
        row = {"runs": c.group, **({"against": c.baseline} if several_baselines else {}), "eval set": c.eval_set,
               "metric": c.metric.name, "seeds": f"{c.seeds[0]} / {c.seeds[1]}", "questions": str(c.questions or ""),
               "difference": "" if math.isnan(c.delta) else f"{c.delta:+.{d}f}"}  # NaN: no baseline to differ from
        if c.test is None:
            row.update({"95 % interval": "", "p": "", "p (Holm)": ""})
        else:
            row.update({"95 % interval": f"[{c.test.low:+.{d}f}, {c.test.high:+.{d}f}]", "p": p_text(c.test.p),
                        "p (Holm)": p_text(c.p_holm)})
        row["verdict"] = c.verdict(alpha) + (f" ({c.note})" if c.note and c.test is not None else "")
        rows.append(row)
    return rows


def sweep_tables(sweep_dirs: str | Path | list, options: dict | None = None) -> dict[str, Any]:
    """Every table of the summary: ``{name: (title, rows)}``, in order, and ``comparisons`` (for the
    forest plot). A comparison that cannot be made is said in its table's place (``error``)."""
    o = summary_options(options)
    dirs = sweep_dirs if isinstance(sweep_dirs, (list, tuple)) else [sweep_dirs]
    jobs = read_jobs(*dirs)
    group_list = groups(jobs)
    tables: dict[str, Any] = {"runs": ("Runs", job_rows(jobs)), "comparisons": [], "error": None, "groups": group_list,
                              "jobs": jobs}
    sets = eval_sets(group_list)
    select_set, select_metric, select_mode = selection(group_list, o)
    dev = select_set if (select_set in sets and len(sets) > 1) else None
    tested_sets = [s for s in sets if s != dev]
    if group_list and (len(group_list) > 1 or len(group_list[0].jobs) > 1):
        comparisons: list[Comparison] = []
        bases, spec = group_list[:1], o["baseline"] or group_list[0].key
        if len(group_list) > 1:
            try:
                bases, spec = baselines(group_list, o["baseline"])
                comparisons = compare(group_list, o["baseline"], tested_sets, o["metrics"], o["min_seeds"], o["common_queries"])
            except ComparisonError as e:
                tables["error"] = str(e)
        marks = {(c.group, c.eval_set, c.metric.name): (" ▲" if c.better else " ▼") for c in comparisons
                 if c.test is not None and c.p_holm < o["alpha"]}
        metrics = headline({n: r for g in group_list for j in g.jobs for n, r in j.record["results"].items()})
        tables["seeds"] = ("Over seeds: mean ±sd [95 % t interval]; ▲ / ▼ significantly better / worse than the baseline "
                           f"({spec}), over seeds and questions, Holm-corrected, alpha {o['alpha']}",
                           seed_rows(group_list, metrics, marks))
        tables["comparisons"] = comparisons
        made = sum(c.test is not None for c in comparisons)
        if tables["error"]:
            tables["significance"] = (f"Not compared: {tables['error']}", [])
        elif comparisons:
            tables["significance"] = (
                f"Against the baseline ({spec}{'; each group against the baseline group sharing most of its overrides and setting none of the others otherwise' if len(bases) > 1 else ''}): "
                "difference of the metric (group - baseline), its 95 % interval and two-sided p over seeds and questions "
                "(Welch-Satterthwaite t; a question with all its translations and pools is one unit), "
                + (f"Holm over the {made} tests of this table, verdict at alpha {o['alpha']}" if made else
                   "no test made (the verdict column says why)") + (f"; {dev} is the selection (dev) set, not tested" if dev else ""),
                comparison_rows(comparisons, o["alpha"], len(bases) > 1))
        tables["best"] = (best_line(group_list, comparisons, select_set, select_metric, select_mode, dev, tested_sets, o["alpha"]), [])
    published = published_rows(jobs)
    if published:
        tables["published"] = (comparison_title(), published)
    return tables


def best_line(group_list: list[Group], comparisons: list[Comparison], name: str | None, metric: str | None, mode: str | None,
              dev: str | None, tested_sets: list[str], alpha: float) -> str:
    """The best group by the selection metric, and what its selection means for the tested numbers."""
    if name is None:
        return ""
    if metric is None:
        return f"best by {name}: its benchmark declares no metric to select on; set summary.select_metric"
    best = best_group(group_list, name, metric, mode)
    if not best:  # a misspelled set or metric must not just drop the line
        return (f"best by {name}/{metric}: no run has this metric (see summary.select_set and summary.select_metric)")
    g, s = best
    interval = f" [{s.low:.4f}, {s.high:.4f}] over {s.n} seeds" if s.n > 1 else " (one seed: no interval)"
    line = f"best by {name}/{metric} ({mode}): {g.key}: {s.mean:.4f}{interval}"
    if dev is None:
        return line + (f". Selected on {name}, the set whose numbers are tested above: the selected group's figures on it are "
                       "optimistic (selection on the test set); select on a dev set (summary.select_set) for a clean test result")
    parts = []
    for test_set in tested_sets:
        for m in (m for m in g.metrics(test_set).values() if m.tested):
            if not g.values(test_set, m.name):
                continue
            t = g.interval(test_set, m.name).text(m.digits)
            verdict = next(((c.verdict(alpha) if c.test is not None else "untested") for c in comparisons
                            if c.group == g.key and c.eval_set == test_set
                            and c.metric.name == m.name), "the baseline itself" if not any(c.group == g.key for c in comparisons) else "")
            parts.append(f"{test_set}/{m.name} {t}" + (f" ({verdict})" if verdict else ""))
    return line + f". Selected on the dev set {name}; its results on the test set(s): " + ("; ".join(parts) or "none")


def render(tables: dict) -> str:
    parts = []
    for name, value in tables.items():
        if name in NOT_TABLES:
            continue
        title, rows = value
        parts.append(markdown_table(rows) if name == "runs" else (f"{title}\n\n{markdown_table(rows)}" if rows else title))
    return "\n\n".join(p for p in parts if p)


def forest_points(comparisons: list[Comparison], alpha: float = 0.05) -> tuple[list[str], list[dict]]:
    """What the forest plot draws: the row labels, top to bottom (a compared group and its eval set,
    "vs <baseline>" when the groups have different baselines, wrapped), and per tested difference its
    metric, row, difference, interval and colour (green: significantly better after Holm, red: worse,
    grey: not significant)."""
    import textwrap

    tested = [c for c in comparisons if c.test is not None]
    several_baselines = len({c.baseline for c in tested}) > 1

    def label(c: Comparison) -> str:
        return "\n".join(textwrap.wrap(f"{c.group}{f' vs {c.baseline}' if several_baselines else ''} @ {c.eval_set}", 42))

    labels = list(dict.fromkeys(label(c) for c in tested))  # the same rows in every panel
    points = [{"metric": c.metric.name, "row": labels.index(label(c)), "delta": c.delta, "low": c.test.low,
               "high": c.test.high, "higher_is_better": c.metric.higher_is_better,
               "colour": ("tab:green" if c.better else "tab:red") if c.p_holm < alpha else "tab:grey"} for c in tested]
    return labels, points


def plot_forest(comparisons: list[Comparison], path: str | Path, alpha: float = 0.05) -> str | None:
    """Each tested difference with its 95 % interval (``forest_points``), one panel per metric, the
    rows labelled once on the left, 0 (the baseline) marked. None if nothing was tested."""
    labels, points = forest_points(comparisons, alpha)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = list(dict.fromkeys(p["metric"] for p in points))
    lines = sum(lab.count("\n") + 1 for lab in labels)
    fig, axes = plt.subplots(1, len(metrics), sharey=True, squeeze=False, layout="constrained",
                             figsize=(2.6 + 3.2 * len(metrics), 1.2 + 0.3 * lines + 0.25 * len(labels)))
    top = len(labels) - 1  # the first row at the top
    for ax, metric in zip(axes[0], metrics):
        mine = [p for p in points if p["metric"] == metric]
        for p in mine:
            ax.errorbar(p["delta"], top - p["row"], xerr=[[p["delta"] - p["low"]], [p["high"] - p["delta"]]], fmt="o",
                        color=p["colour"], capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{metric}\n({'higher' if mine[0]['higher_is_better'] else 'lower'} is better)", fontsize=9)
        ax.set_xlabel("difference, 95 % interval", fontsize=8)
    axes[0][0].set_yticks(range(len(labels)), list(reversed(labels)), fontsize=7)
    axes[0][0].set_ylim(-0.6, len(labels) - 0.4)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_curves(group_list: list[Group], comparisons: list[Comparison], folder: str | Path, stem: str, alpha: float) -> list[Path]:
    """When a numeric override varies across the groups (data size, alpha, ...): each headline metric
    against it, mean over seeds with its interval, and each tested difference to the baseline at the
    same value (``mdr.curves``); one PNG per eval set. Nothing without such an override."""
    swept = swept_value([g.key for g in group_list])
    if swept is None:
        return []
    tested = [c for c in comparisons if c.test is not None]
    deltas = pd.DataFrame([{"eval_set": c.eval_set, "strategy": swept.strategy[c.group], "x": swept.x[c.group],
                            "metric": c.metric.name, "delta": c.delta, "low": c.test.low, "high": c.test.high,
                            "verdict": c.verdict(alpha)} for c in tested], columns=["eval_set", *DELTAS_COLUMNS])
    baseline = swept.strategy[next((c.baseline for c in comparisons if c.baseline), group_list[0].key)]
    return save_curves(means_table(group_list, swept), deltas, swept.name, baseline, folder, stem=stem)


def write_summary(folder: str | Path, tables: dict, alpha: float, name: str = "summary") -> str:
    """``<name>.md``, ``<name>.csv`` (the runs), the forest plot and, over a swept number, the curves
    into ``folder``; returns the text."""
    text = render(tables)
    Path(folder, f"{name}.md").write_text(text + "\n")
    Path(folder, f"{name}.csv").write_text(csv_table(tables["runs"][1]))
    forest = FOREST_FILE if name == "summary" else f"{name}_forest.png"
    if plot_forest(tables["comparisons"], Path(folder, forest), alpha):
        text += f"\n\nForest plot: {Path(folder, forest)}"
    curves = plot_curves(tables.get("groups") or [], tables["comparisons"], folder, f"{name}_curves", alpha)
    if curves:
        text += "\n\nCurves: " + ", ".join(str(p) for p in curves)
    tables["curves"] = curves
    return text


class SweepSummary(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the summary when a multirun ends. Its options are
    the ``summary`` section of the sweep's config."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:  # a bad option fails the sweep before its jobs run, not after
            o = summary_options(dict(config.get("summary") or {}))
            check_selection(config, o)
            prepare_sweep(config)  # a launch into a folder holding a sweep resumes it (+hydra.sweep.resume=true) or is refused
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        if not os.path.isdir(sweep_dir):
            return
        o = summary_options(dict(config.get("summary") or {}))
        tables = sweep_tables(sweep_dir, o)
        text = write_summary(sweep_dir, tables, o["alpha"])
        print(f"\nSweep summary ({sweep_dir}/summary.md):\n{text}")
        if str((config.get("logger") or {}).get("_target_", "")).endswith("wandb_logger"):
            log_summary_to_wandb(config, sweep_dir, tables)
        # at the end of the sweep no job runs: one without final results failed, with or without a failed.txt
        failed = [job.name for job in tables["jobs"] if not job.ok]
        if failed:
            raise SystemExit(f"{len(failed)} job(s) of the sweep failed: {', '.join(failed)} (see failed.txt in their folders; "
                             f"a job without one was stopped: {RESUME_OPTION} runs it again)")
        if tables["error"]:
            raise SystemExit(f"error: {tables['error']}")


def check_selection(config: DictConfig, o: dict) -> None:
    """``summary.select_set`` / ``select_metric``, against the metrics the configured benchmarks declare,
    before any job trains. Eval sets that cannot be built here (data elsewhere) are left to the jobs."""
    if not o["select_set"] and not o["select_metric"]:
        return
    eval_cfg = config.get("eval")
    if eval_cfg is None or "sets" not in eval_cfg:
        return
    names = list(eval_cfg.sets)
    name = o["select_set"] or (names[0] if names else None)
    if o["select_set"] and o["select_set"] not in names:
        raise ConfigError(f"summary.select_set={o['select_set']!r} is not an eval set of this sweep (eval.sets: {names})")
    if not o["select_metric"] or name is None:
        return
    from mdr.tasks import build_evaluator  # noqa: PLC0415 - builds the eval sets: only when there is something to check

    try:
        evaluator = build_evaluator(eval_cfg)
        declared = [m.name for m in evaluator.metrics(name)]
    except Exception as e:  # noqa: BLE001 - data that only the jobs can read: they will say what is wrong
        log.warning("summary.select_metric not checked before the jobs: eval set %r cannot be built here (%s)", name, e)
        return
    derived = {f"{m}{suffix}" for m in declared for suffix in ("_seen", "_unseen")}
    if o["select_metric"] not in set(declared) | derived:
        raise ConfigError(f"summary.select_metric={o['select_metric']!r} is not a metric of eval set {name!r} "
                          f"(it declares: {', '.join(declared)})")


def log_summary_to_wandb(config: DictConfig, sweep_dir: str, tables: dict) -> None:
    """The summary tables as W&B Tables and the forest plot, in a run named ``<sweep>-summary`` of the sweep's group."""
    from mdr.loggers import wandb_logger

    name = os.path.basename(os.path.normpath(sweep_dir))
    options = {k: config.logger.get(k) for k in ("project", "entity", "init_timeout") if config.logger.get(k) is not None}
    logger = wandb_logger(save_dir=sweep_dir, name=f"{name}-summary", group=name, tags=["sweep-summary"], **options)
    for key, value in tables.items():
        if key in NOT_TABLES:
            continue
        _, rows = value
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            logger.log_table(f"sweep/{key}", columns=columns, data=[[r.get(c, "") for c in columns] for r in rows])
    forest = Path(sweep_dir, FOREST_FILE)
    if forest.is_file():
        logger.log_image("sweep/forest", [str(forest)])
    if tables.get("curves"):
        logger.log_image("sweep/curves", [str(p) for p in tables["curves"]])
    logger.experiment.summary["sweep/best"] = tables["best"][0] if "best" in tables else ""
    logger.experiment.finish()


def main(argv: list[str] | None = None) -> None:
    """``python -m mdr.sweep SWEEP_DIR [SWEEP_DIR ...] [option=value ...]``: the tables of finished
    sweeps with other ``summary`` options (those of DEFAULTS); several folders are compared as one."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        raise SystemExit(f"usage: python -m mdr.sweep SWEEP_DIR [SWEEP_DIR ...] [option=value ...]; options: {', '.join(DEFAULTS)}")
    try:
        dirs = [Path(a) for a in args if "=" not in a]
        overrides = [a for a in args if "=" in a]
        for d in dirs:
            if not d.is_dir() or not any(p.is_dir() and p.name.isdigit() for p in d.iterdir()):
                raise ConfigError(f"{d}: not a sweep folder (no numbered job folders in it); give options as option=value")
        o = summary_options(OmegaConf.to_container(OmegaConf.from_dotlist(overrides)))
        tables = sweep_tables(dirs, o)
        name = f"summary-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        text = write_summary(dirs[0], tables, o["alpha"], name)
        print(text + f"\n\n(written to {dirs[0]}/{name}.md)")
        if tables["error"]:
            raise SystemExit(f"error: {tables['error']}")
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
