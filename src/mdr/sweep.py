"""A Hydra callback that prints and saves the comparison tables at the end of a multirun.

It reads each job's ``results.json`` (written by the end-of-training evaluation) and the job's
overrides, and writes ``summary.md`` and ``summary.csv`` into the sweep folder: one row per job and
eval set, then, for runs the hybrid-batching paper has figures for, the published figures beside
ours. Jobs without final results (or with a ``failed.txt``: a diverged run may have left a
mid-training evaluation behind) are listed as failed, with the first line of their ``failed.txt``
when they wrote one, so one broken job is visible rather than silently missing; the sweep then
exits with status 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mdr.evaluation.report import csv_table, markdown_table, result_rows
from mdr.formats.results import FAILED_FILE, read_json, train_results_path
from mdr.reference.published import comparison_rows, comparison_title


@dataclass
class Job:
    """One job of a sweep: its folder name, overrides, and final results (None if it failed)."""

    name: str
    run: str
    record: dict | None
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.record is not None


def read_jobs(sweep_dir: str | Path) -> list[Job]:
    """The numbered job folders of a sweep, in order."""
    jobs = []
    for folder in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = folder / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.exists() else []
        run = " ".join(str(o) for o in overrides) or folder.name
        results_file, failed = train_results_path(folder), folder / FAILED_FILE
        record = read_json(results_file) if results_file.exists() else None
        if failed.exists() or record is None or not record.get("final", True):
            reason = (failed.read_text().splitlines()[0] if failed.exists() else
                      "no results.json" if record is None else f"no final results; last evaluated at step {record.get('step')}")
            jobs.append(Job(folder.name, run, None, reason.replace("|", "/")))
        else:
            jobs.append(Job(folder.name, run, record, None))
    return jobs


def summarize_sweep(sweep_dir: str | Path) -> list[dict[str, str]]:
    """One row per (job, eval set); a job without results is one failed row."""
    rows: list[dict[str, str]] = []
    for job in read_jobs(sweep_dir):
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


class SweepSummary(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        if not os.path.isdir(sweep_dir):
            return
        rows = summarize_sweep(sweep_dir)
        sections = [markdown_table(rows)]
        published = published_rows(read_jobs(sweep_dir))
        if published:
            sections.append(f"{comparison_title()}\n\n{markdown_table(published)}")
        text = "\n\n".join(sections)
        Path(sweep_dir, "summary.md").write_text(text + "\n")
        Path(sweep_dir, "summary.csv").write_text(csv_table(rows))
        print(f"\nSweep summary ({sweep_dir}/summary.md):\n{text}")
        failed = sorted({r["job"] for r in rows if r["status"].startswith("failed")}, key=int)
        if failed:
            raise SystemExit(f"{len(failed)} job(s) of the sweep failed: {', '.join(failed)} (see failed.txt in their folders)")
