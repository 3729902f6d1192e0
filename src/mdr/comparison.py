"""Comparing the runs of one or more sweeps: seeds grouped, each group tested against its baseline.

In:  the jobs of sweep folders (each job's ``results.json``, ``per_query.parquet`` and Hydra's
     ``.hydra/overrides.yaml`` / ``config.yaml``) and the metrics their benchmarks declare
     (``mdr.evaluation.benchmark.Metric``).
Out: ``groups``: runs that differ only in ``seed`` together; ``seed_rows``: per group and eval set,
     each headline metric's mean, standard deviation and 95 % t interval over seeds;
     ``compare``: for each declared tested metric, each group against its baseline group on the same
     eval set: the difference with its 95 % interval and p-value over seeds and questions
     (``mdr.stats.seeds_and_questions``), Holm-adjusted over every comparison of the table;
     ``best_group``: the group with the best mean of a chosen metric.

Rows are paired by identity, never by position: (query id, query language, pool language) within
the metric's setting. Every run of both groups must hold the same rows; otherwise the comparison
stops with one ``ComparisonError`` that says how many rows and which languages differ (or, with
``common=True``, is made on the rows all runs share, and says so). Each run's rows, weighted as the
metric's ``PerQuery`` rule says, must reproduce the metric its ``results.json`` reports, so the tested
difference is the difference of the numbers in the table.

Baselines: a group is tested against the baseline group (the groups whose runs have every override
of ``summary.baseline``, e.g. ``sampler=xx``) that shares the most of its other overrides. So in a
sweep over ``sampler=xx,hybrid data.max_examples=1000,5000`` each hybrid group is tested against
X-X at its own data size. A baseline override also matches a run that did not override it but has
that value in its resolved config, so runs of another sweep with the default value can be the baseline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf

from mdr.errors import UserError
from mdr.evaluation.benchmark import Metric, PerQuery, declared_metrics
from mdr.formats.results import FAILED_FILE, find_results, read_json, read_per_query
from mdr.stats import Difference, SeedSummary, holm, seed_interval, seeds_and_questions

SEED_OVERRIDE = re.compile(r"^\+{0,2}seed=")
KEY = ["query_id", "query_lang", "pool_lang"]  # a row's identity within one setting of one eval set


class ComparisonError(UserError):
    """Runs that cannot be compared as asked (different queries, a per-query file that does not
    belong to its results)."""


class NoPerQuery(ComparisonError):
    """A run without a per-query file: its differences are shown, not tested."""


@dataclass
class Job:
    """One job of a sweep: its folder, overrides, final results (None if it failed)."""

    folder: Path
    overrides: list[str]
    record: dict | None
    failure: str | None
    label: str = ""  # how tables name it: its number, or "<sweep>/<number>" when several sweeps are read
    unfinished: bool = False  # no final results and no failed.txt: still running, or stopped (killed, pre-empted)

    @property
    def name(self) -> str:
        return self.label or self.folder.name

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

    @cached_property
    def config(self):
        """Its composed config (``.hydra/config.yaml``, interpolations unresolved), or None."""
        path = self.folder / ".hydra" / "config.yaml"
        return OmegaConf.load(path) if path.is_file() else None


@dataclass
class Group:
    """Jobs whose overrides differ only in ``seed``."""

    key: str
    jobs: list[Job] = field(default_factory=list)

    def values(self, eval_set: str, metric: str) -> list[float]:
        return [j.record["results"][eval_set][metric] for j in self.jobs
                if isinstance(j.record["results"].get(eval_set, {}).get(metric), float)]

    def _first_results(self, eval_set: str) -> dict | None:
        return next((j.record["results"][eval_set] for j in self.jobs if eval_set in j.record["results"]), None)

    def metrics(self, eval_set: str) -> dict[str, Metric]:
        """What the eval set's benchmark declares, from the first run that has the set."""
        results = self._first_results(eval_set)
        return {} if results is None else {m.name: m for m in declared_metrics(results)}

    def bounds(self, eval_set: str, metric: str) -> tuple[float | None, float | None]:
        """The declared range of ``metric`` on ``eval_set`` (``Metric.bounds``), (None, None) if undeclared."""
        declared = self.metrics(eval_set).get(metric)
        return (None, None) if declared is None else declared.bounds(self._first_results(eval_set))

    def interval(self, eval_set: str, metric: str) -> SeedSummary:
        """The metric over the group's seeds (``mdr.stats.seed_interval``), its interval cut to the declared range."""
        return seed_interval(self.values(eval_set, metric), bounds=self.bounds(eval_set, metric))


def read_jobs(*sweep_dirs: str | Path) -> list[Job]:
    """The numbered job folders of one or more sweeps, in order."""
    jobs = []
    for sweep_dir in sweep_dirs:
        sweep_dir = Path(sweep_dir)
        prefix = f"{sweep_dir.name}/" if len(sweep_dirs) > 1 else ""
        for folder in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
            overrides_file = folder / ".hydra" / "overrides.yaml"
            overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.exists() else []
            results_file, failed = find_results(folder), folder / FAILED_FILE
            record = read_json(results_file) if results_file else None
            label = prefix + folder.name
            if failed.exists() or record is None or not record.get("final", True):
                reason = (failed.read_text().splitlines()[0] if failed.exists() else
                          "no results.json" if record is None else f"no final results; last evaluated at step {record.get('step')}")
                jobs.append(Job(folder, overrides, None, reason.replace("|", "/"), label, unfinished=not failed.exists()))
            else:
                jobs.append(Job(folder, overrides, record, None, label))
    return jobs


def groups(jobs: list[Job]) -> list[Group]:
    """The successful jobs grouped by their overrides without ``seed=``, in order of appearance; a
    group is named by the overrides in which the groups differ (those all jobs share left out)."""
    ok = [j for j in jobs if j.ok]
    own = {id(j): [o for o in j.overrides if not SEED_OVERRIDE.match(o)] for j in ok}
    common = set.intersection(*(set(v) for v in own.values())) if own else set()
    out: dict[str, Group] = {}
    for job in ok:
        key = " ".join(o for o in own[id(job)] if o not in common) or "(all alike)"
        out.setdefault(key, Group(key)).jobs.append(job)
    return list(out.values())


def eval_sets(group_list: list[Group]) -> list[str]:
    return list(dict.fromkeys(name for g in group_list for j in g.jobs for name in j.record["results"]))


def seed_rows(group_list: list[Group], metrics: list[Metric], marks: dict | None = None) -> list[dict[str, str]]:
    """Per group and eval set: ``mean ±sd [low, high]`` of each metric over seeds, with a mark
    (▲ better, ▼ worse than the baseline, significant after Holm) where ``marks`` has one."""
    rows = []
    for g in group_list:
        for name in eval_sets([g]):
            row = {"runs": g.key, "seeds": str(len(g.jobs)), "eval set": name}
            for m in metrics:
                if g.values(name, m.name):
                    row[m.label] = g.interval(name, m.name).text(m.digits, sd=True) + (marks or {}).get((g.key, name, m.name), "")
            rows.append(row)
    return rows


# -- baselines


def _override_value(override: str) -> tuple[str, str] | None:
    key, sep, value = override.lstrip("+~").partition("=")
    return (key, value) if sep else None


def _matches(job: Job, wanted: list[str]) -> bool:
    """The job has every ``key=value`` of ``wanted``: as an override, or as its configured value."""
    overrides = set(job.overrides)
    for item in wanted:
        if item in overrides or f"+{item}" in overrides:
            continue
        key, value = _override_value(item) or (item, None)
        if job.config is None or value is None:
            return False
        try:
            configured = OmegaConf.select(job.config, key, throw_on_resolution_failure=False)
        except Exception:  # noqa: BLE001 - an interpolation that cannot be resolved outside its run
            return False
        if OmegaConf.is_config(configured):
            configured = OmegaConf.to_container(configured)
        if configured != yaml.safe_load(value):
            return False
    return True


def baselines(group_list: list[Group], baseline: str | None) -> tuple[list[Group], str]:
    """The baseline groups and the spec they match: those whose runs all have every override of
    ``baseline`` (e.g. ``sampler=xx``, or ``"sampler=hybrid sampler.xy_pairs=per_batch"``); by
    default ``sampler=xx`` if a group has it, else the first group."""
    spec = (baseline or "sampler=xx").split()
    found = [g for g in group_list if all(_matches(j, spec) for j in g.jobs)]
    if found:
        return found, " ".join(spec)
    if baseline:
        raise ComparisonError(f"summary.baseline={baseline!r} matches no run group of the sweep: {[g.key for g in group_list]}")
    return group_list[:1], group_list[0].key


def _setting(group: Group) -> dict[str, str]:
    """The group's overrides as ``{key: value}`` (seed left out; all its runs share them)."""
    return dict(kv for o in group.jobs[0].overrides if not SEED_OVERRIDE.match(o) and (kv := _override_value(o)))


def matched_baselines(group_list: list[Group], baseline: str | None) -> list[tuple[Group, Group | None, str]]:
    """(group, its baseline, why none) for every group that is not a baseline: the baseline group
    sharing the most of its overrides (the first of equals), among those that set no key the
    baseline spec does not name to another value than the group does. A key that only one side
    overrides is allowed (another sweep folder, whose runs leave it at its configured value). A group
    with no such baseline (a partial sweep: hybrid runs, baselines only at X-X) gets None and the
    reason: testing it against a baseline that also differs in, say, the sampler would credit the
    strategy with the sampler's effect."""
    bases, spec = baselines(group_list, baseline)
    spec_keys = {kv[0] for item in spec.split() if (kv := _override_value(item))}
    base_settings = [(b, _setting(b)) for b in bases]
    pairs = []
    for g in group_list:
        if any(g is b for b in bases):
            continue
        mine = _setting(g)
        # per baseline: (the group's overrides it sets otherwise, how many it shares), in the order of bases
        scored = [(b, [f"{k}={v}" for k, v in mine.items() if k not in spec_keys and theirs.get(k, v) != v],
                   len(mine.items() & theirs.items())) for b, theirs in base_settings]
        eligible = [(b, shared) for b, conflicts, shared in scored if not conflicts]
        if eligible:
            pairs.append((g, max(eligible, key=lambda e: e[1])[0], ""))
        else:
            _, conflicts, _ = max(scored, key=lambda e: e[2])
            pairs.append((g, None, f"untested: no baseline group ({spec}) has its {' '.join(conflicts)}; add such runs to test it"))
    return pairs


# -- paired per-query values


def _rows(job: Job, eval_set: str, rule: PerQuery) -> pd.Series:
    """The job's per-query values of one rule, indexed by row identity (NaN rows: undefined, left out)."""
    table = job.per_query
    if table is None:
        raise NoPerQuery(f"not tested: job {job.name} has no per_query.parquet beside its results")
    rows = table[(table["eval_set"] == eval_set) & (table["setting"] == rule.setting)]
    if rule.languages:
        rows = rows[rows["query_lang"].isin(rule.languages)]
    if rule.column not in rows:
        raise ComparisonError(f"job {job.name}: per_query.parquet of {eval_set!r} has no column {rule.column!r}")
    keys = rows[KEY].astype(str)
    question = rows["question"].astype("object").where(rows["question"].notna(), rows["query_id"]) if "question" in rows else rows["query_id"]
    index = pd.MultiIndex.from_frame(keys.assign(question=question.astype(str).to_numpy()))
    values = pd.Series(rows[rule.column].to_numpy(dtype=np.float64), index=index)
    if values.index.droplevel("question").duplicated().any():
        raise ComparisonError(f"job {job.name}: per_query.parquet of {eval_set!r} holds a query twice in setting {rule.setting!r}")
    return values.dropna()


def _describe(index: pd.MultiIndex) -> str:
    langs = index.get_level_values("query_lang").value_counts().sort_index()
    return ", ".join(f"{lang} {n}" for lang, n in langs.items())


def _by_language(index: pd.MultiIndex) -> str:
    return f" ({_describe(index)})" if len(index) else ""


@dataclass
class Paired:
    """The rows all runs share: per group [seeds, rows] values, and per row its weight, cell and question."""

    values: list[np.ndarray]
    weights: np.ndarray
    cells: np.ndarray
    questions: np.ndarray
    restricted: str | None  # what was left out, with common=True


def paired_values(groups_: list[Group], eval_set: str, metric: Metric, common: bool = False) -> Paired:
    """Align every run of ``groups_`` on the rows of ``metric``'s rule (see the module docstring)."""
    rule = metric.per_query
    series = {id(j): _rows(j, eval_set, rule) for g in groups_ for j in g.jobs}
    jobs = [j for g in groups_ for j in g.jobs]
    reference = series[id(jobs[0])].index
    shared, restricted = reference, None
    for job in jobs[1:]:
        other = series[id(job)].index
        if other.equals(reference) or (len(other) == len(reference) and other.sort_values().equals(reference.sort_values())):
            continue
        missing, extra = reference.difference(other), other.difference(reference)
        if not common:
            raise ComparisonError(
                f"cannot pair the queries of {eval_set!r} ({metric.name}): job {jobs[0].name} has {len(reference)} rows "
                f"({_describe(reference)}), job {job.name} has {len(other)} ({_describe(other)}); "
                f"{len(missing)} only in job {jobs[0].name}{_by_language(missing)}, {len(extra)} only in job {job.name}"
                f"{_by_language(extra)}. Compare runs evaluated on "
                "the same queries, or set summary.common_queries=true to compare on the queries all runs share")
        shared = shared.intersection(other)
    if len(shared) < len(reference) or any(len(series[id(j)]) != len(shared) for j in jobs):
        restricted = f"{len(shared)} rows all runs share (of {max(len(s) for s in series.values())})"
    shared = shared.sort_values()
    values = [np.stack([series[id(j)].reindex(shared).to_numpy() for j in g.jobs]) for g in groups_]
    keys = shared.to_frame(index=False)
    if rule.average == "macro":
        cell = keys["query_lang"] + "|" + keys["pool_lang"]
    else:
        cell = pd.Series("all", index=keys.index)
    cells = pd.factorize(cell)[0]
    counts = np.bincount(cells)
    weights = 1.0 / (len(counts) * counts[cells])
    if restricted is None:  # the rows must reproduce each run's reported metric
        for g, v in zip(groups_, values):
            for job, row in zip(g.jobs, v):
                reported = job.record["results"].get(eval_set, {}).get(metric.name)
                ours = float(weights @ row)
                if isinstance(reported, float) and not math.isclose(ours, reported, rel_tol=1e-4, abs_tol=1e-5):
                    raise ComparisonError(f"job {job.name}: its per-query rows of {eval_set!r} give {metric.name} = {ours:.6f}, "
                                          f"its results.json says {reported:.6f}: the per-query file does not belong to these results")
    return Paired(values, weights, cells, pd.factorize(keys["question"])[0], restricted)


# -- the comparisons of a summary


@dataclass
class Comparison:
    group: str
    baseline: str
    eval_set: str
    metric: Metric
    delta: float  # the group's mean metric minus the baseline's, on the paired rows
    seeds: tuple[int, int]  # (the group's, the baseline's)
    questions: int
    test: Difference | None  # None: too few seeds to test
    note: str = ""  # a restriction to common queries, or why it is not tested
    p_holm: float = math.nan

    @property
    def better(self) -> bool:
        return (self.delta > 0) == self.metric.higher_is_better

    def verdict(self, alpha: float) -> str:
        if self.test is None:
            return self.note
        if self.p_holm < alpha:
            return "better" if self.better else "worse"
        return "not significant"


def compare(group_list: list[Group], baseline: str | None, sets: list[str], tested: list[str] | None = None,
            min_seeds: int = 3, common: bool = False) -> list[Comparison]:
    """Each non-baseline group against its baseline, per eval set of ``sets`` and tested metric (the
    metrics declared ``tested``, or the names in ``tested``); Holm over all the tests made."""
    def is_tested(m: Metric) -> bool:
        return m.name in tested if tested else m.tested

    out = []
    for g, base, why_none in matched_baselines(group_list, baseline):
        if base is None:
            out += [Comparison(g.key, "", name, metric, math.nan, (len(g.jobs), 0), 0, None, why_none)
                    for name in sets for metric in g.metrics(name).values() if is_tested(metric)]
            continue
        for name in sets:
            mine, theirs = g.metrics(name), base.metrics(name)
            for metric in (m for m in mine.values() if m.name in theirs and is_tested(m)):
                if metric.per_query is None:
                    raise ComparisonError(f"summary.metrics: {metric.name} of {name!r} has no per-query rule, so it cannot be tested")
                seeds = (len(g.jobs), len(base.jobs))
                try:
                    paired = paired_values([g, base], name, metric, common)
                except NoPerQuery as e:  # the difference of the reported means, untested
                    delta = float(np.mean(g.values(name, metric.name)) - np.mean(base.values(name, metric.name)))
                    out.append(Comparison(g.key, base.key, name, metric, delta, seeds, 0, None, str(e)))
                    continue
                delta = float(paired.weights @ (paired.values[0].mean(0) - paired.values[1].mean(0)))
                questions = int(paired.questions.max()) + 1
                note = f"on the {paired.restricted}" if paired.restricted else ""
                if min(seeds) < min_seeds:
                    few = min(seeds)
                    out.append(Comparison(g.key, base.key, name, metric, delta, seeds, questions, None,
                                          f"{few} seed{'s' if few != 1 else ''}: add seeds to test the strategy "
                                          f"(summary.min_seeds={min_seeds} per group)"))
                    continue
                test = seeds_and_questions(paired.values[0], paired.values[1], paired.weights, paired.cells, paired.questions)
                out.append(Comparison(g.key, base.key, name, metric, delta, seeds, questions, test, note))
    made = [c for c in out if c.test is not None]
    for c, adjusted in zip(made, holm([c.test.p for c in made])):
        c.p_holm = adjusted
    return out


def best_group(group_list: list[Group], eval_set: str, metric: str, mode: str = "max") -> tuple[Group, object] | None:
    """The group with the best mean of ``metric`` on ``eval_set`` over its seeds, and its interval."""
    scored = [(g, g.interval(eval_set, metric)) for g in group_list if g.values(eval_set, metric)]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda gs: gs[1].mean)
