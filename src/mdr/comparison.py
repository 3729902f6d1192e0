"""Comparing the runs of a sweep: seeds grouped, each group tested query by query against a baseline.

In:  the jobs of a sweep folder (their ``results.json`` and ``per_query.parquet``).
Out: ``groups``: runs that differ only in ``seed`` together; ``seed_rows``: per group and eval set,
     each headline metric's mean, standard deviation and 95 % t interval over seeds;
     ``significance``: for mono-, cross- and multilingual mAP, each group against the baseline on
     the same eval set: the difference, its 95 % paired-bootstrap interval, d_z, the two-sided
     paired randomisation-test p-value and its Holm-adjusted value over every comparison of the
     table; ``best_group``: the group with the best mean of a chosen metric.

Seeds are pooled: each query's AP is averaged over a group's seeds, then the two groups are paired
by query (and pool). Every query is weighted so that the weighted mean of the AP differences is
exactly the difference of the reported metric (macro averages over languages and language pairs),
so the test is about the number in the table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from mdr.formats.results import FAILED_FILE, find_results, read_json, read_per_query
from mdr.stats import cohens_dz, holm, paired_bootstrap_interval, paired_permutation_test, seed_interval

SEED_OVERRIDE = re.compile(r"^\+{0,2}seed=")
TESTED = {"monolingual_map": "monolingual", "crosslingual_map": "crosslingual", "multilingual_map": "multilingual"}


@dataclass
class Job:
    """One job of a sweep: its folder, overrides, final results (None if it failed)."""

    folder: Path
    overrides: list[str]
    record: dict | None
    failure: str | None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def run(self) -> str:
        return " ".join(self.overrides) or self.name

    @property
    def ok(self) -> bool:
        return self.record is not None

    @cached_property
    def per_query(self) -> pd.DataFrame | None:
        """Its ``per_query.parquet``, read once (None if absent)."""
        return read_per_query(find_results(self.folder))


@dataclass
class Group:
    """Jobs whose overrides differ only in ``seed``."""

    key: str
    jobs: list[Job] = field(default_factory=list)

    def values(self, eval_set: str, metric: str) -> list[float]:
        return [j.record["results"][eval_set][metric] for j in self.jobs
                if isinstance(j.record["results"].get(eval_set, {}).get(metric), float)]


def read_jobs(sweep_dir: str | Path) -> list[Job]:
    """The numbered job folders of a sweep, in order."""
    jobs = []
    for folder in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = folder / ".hydra" / "overrides.yaml"
        overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.exists() else []
        results_file, failed = find_results(folder), folder / FAILED_FILE
        record = read_json(results_file) if results_file else None
        if failed.exists() or record is None or not record.get("final", True):
            reason = (failed.read_text().splitlines()[0] if failed.exists() else
                      "no results.json" if record is None else f"no final results; last evaluated at step {record.get('step')}")
            jobs.append(Job(folder, overrides, None, reason.replace("|", "/")))
        else:
            jobs.append(Job(folder, overrides, record, None))
    return jobs


def groups(jobs: list[Job]) -> list[Group]:
    """The successful jobs grouped by their overrides without ``seed=``, in order of appearance; a
    group is named by the overrides in which the groups differ (those all jobs share left out)."""
    ok = [j for j in jobs if j.ok]
    own = {j.name: [o for o in j.overrides if not SEED_OVERRIDE.match(o)] for j in ok}
    common = set.intersection(*(set(v) for v in own.values())) if own else set()
    out: dict[str, Group] = {}
    for job in ok:
        key = " ".join(o for o in own[job.name] if o not in common) or "(all alike)"
        out.setdefault(key, Group(key)).jobs.append(job)
    return list(out.values())


def eval_sets(group_list: list[Group]) -> list[str]:
    return list(dict.fromkeys(name for g in group_list for j in g.jobs for name in j.record["results"]))


def seed_rows(group_list: list[Group], metrics: list[tuple[str, str]], marks: dict | None = None) -> list[dict[str, str]]:
    """Per group and eval set: ``mean ±sd [low, high]`` of each metric over seeds, with a mark
    (▲ better, ▼ worse than the baseline, significant after Holm) where ``marks`` has one."""
    rows = []
    for g in group_list:
        for name in eval_sets([g]):
            row = {"runs": g.key, "seeds": str(len(g.jobs)), "eval set": name}
            for metric, label in metrics:
                values = g.values(name, metric)
                if values:
                    s = seed_interval(values)
                    digits = 1 if metric == "rank_distance" else 4
                    cell = f"{s.mean:.{digits}f}" if s.n < 2 else f"{s.mean:.{digits}f} ±{s.sd:.{digits}f} [{s.low:.{digits}f}, {s.high:.{digits}f}]"
                    row[label] = cell + (marks or {}).get((g.key, name, metric), "")
            rows.append(row)
    return rows


def pick_baseline(group_list: list[Group], baseline: str | None) -> Group:
    """The first group holding every override of ``baseline`` (e.g. ``sampler=xx``, or
    ``"sampler=hybrid sampler.xy_pairs=per_batch"``); by default the group with ``sampler=xx`` if the
    sweep has one, else the first."""
    wanted = set((baseline or "sampler=xx").split())
    for g in group_list:
        if wanted <= set(g.key.split()):
            return g
    if baseline:
        raise ValueError(f"summary.baseline={baseline!r} matches no run group of the sweep: {[g.key for g in group_list]}")
    return group_list[0]


def _pooled(group: Group, eval_set: str, setting: str) -> pd.DataFrame | None:
    """Per (query, pool): AP averaged over the group's seeds, and the query / pool languages."""
    tables = []
    for job in group.jobs:
        table = job.per_query
        if table is None:
            return None
        rows = table[(table["eval_set"] == eval_set) & (table["setting"] == setting)]
        tables.append(rows.set_index(["query", "pool_lang"])[["ap", "query_lang"]])
    if not tables:
        return None
    ap = pd.concat([t["ap"] for t in tables], axis=1, join="inner").mean(axis=1)
    return pd.DataFrame({"ap": ap, "query_lang": tables[0]["query_lang"].reindex(ap.index)})


def metric_weights(rows: pd.DataFrame) -> np.ndarray:
    """Weights under which the weighted mean AP is the reported (macro) metric: every (query
    language, pool language) cell counts alike, every query alike within its cell."""
    pool = rows.index.get_level_values("pool_lang").astype(str)
    cell = rows["query_lang"].astype(str).to_numpy() + "|" + np.asarray(pool)
    cells, inverse, counts = np.unique(cell, return_inverse=True, return_counts=True)
    return 1.0 / (len(cells) * counts[inverse])


@dataclass
class Comparison:
    group: str
    eval_set: str
    metric: str
    delta: float
    low: float
    high: float
    dz: float
    p: float
    p_holm: float = math.nan


def significance(group_list: list[Group], baseline: Group, resamples: int = 9999, bootstrap: int = 2000) -> list[Comparison]:
    """Each other group against the baseline, per eval set and tested metric (see the module doc)."""
    out, baseline_pooled = [], {}
    for g in group_list:
        if g is baseline:
            continue
        for name in eval_sets([g, baseline]):
            for metric, setting in TESTED.items():
                if (name, setting) not in baseline_pooled:
                    baseline_pooled[name, setting] = _pooled(baseline, name, setting)
                ours, base = _pooled(g, name, setting), baseline_pooled[name, setting]
                if ours is None or base is None:
                    continue
                both = ours.join(base["ap"].rename("base"), how="inner")
                if both.empty:
                    continue
                w = metric_weights(both)
                a, b = both["ap"].to_numpy(), both["base"].to_numpy()
                low, high = paired_bootstrap_interval(a, b, w, n_resamples=bootstrap)
                out.append(Comparison(g.key, name, metric, float(np.sum(w * (a - b))), low, high, cohens_dz(a, b),
                                      paired_permutation_test(a, b, w, n_resamples=resamples)))
    for c, adjusted in zip(out, holm([c.p for c in out])):
        c.p_holm = adjusted
    return out


def best_group(group_list: list[Group], eval_set: str, metric: str, mode: str = "max") -> tuple[Group, object] | None:
    """The group with the best mean of ``metric`` on ``eval_set`` over its seeds, and its interval."""
    scored = [(g, seed_interval(g.values(eval_set, metric))) for g in group_list if g.values(eval_set, metric)]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda gs: gs[1].mean)
