"""A Hydra callback that prints and saves one comparison table at the end of a multirun.

It reads each job's ``results.json`` (written by the end-of-training evaluation) and the job's
overrides, and writes ``summary.md`` and ``summary.csv`` into the sweep folder. Jobs without final
results (or with a ``failed.txt``: a diverged run may have left a mid-training evaluation behind)
are listed as failed, with the first line of their ``failed.txt`` when they wrote one, so one
broken job is visible rather than silently missing; the sweep then exits with status 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mdr.evaluation.report import csv_table, markdown_table, result_rows
from mdr.formats.results import FAILED_FILE, read_json, train_results_path


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, str]]:
    """One row per (job, eval set) of a sweep folder; a job without results is one failed row."""
    sweep_dir = Path(sweep_dir)
    rows: list[dict[str, str]] = []
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for job in jobs:
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        run = " ".join(str(o) for o in overrides) or job.name
        results_file, failed = train_results_path(job), job / FAILED_FILE
        run_record = read_json(results_file) if results_file.exists() else None
        if failed.exists() or run_record is None or not run_record.get("final", True):
            reason = (failed.read_text().splitlines()[0] if failed.exists() else
                      "no results.json" if run_record is None else f"no final results; last evaluated at step {run_record.get('step')}")
            rows.append({"job": job.name, "run": run, "status": f"failed ({reason.replace('|', '/')})"})
            continue
        rows.extend(result_rows(run_record["results"], job=job.name, run=run, status="ok"))
    return rows


class SweepSummary(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        if not os.path.isdir(sweep_dir):
            return
        rows = summarize_sweep(sweep_dir)
        table = markdown_table(rows)
        Path(sweep_dir, "summary.md").write_text(table + "\n")
        Path(sweep_dir, "summary.csv").write_text(csv_table(rows))
        print(f"\nSweep summary ({sweep_dir}/summary.md):\n{table}")
        failed = sorted({r["job"] for r in rows if r["status"].startswith("failed")}, key=int)
        if failed:
            raise SystemExit(f"{len(failed)} job(s) of the sweep failed: {', '.join(failed)} (see failed.txt in their folders)")
