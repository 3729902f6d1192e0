"""Curves over one swept numeric value (data size, alpha, batch size, steps): each headline metric against it.

In:  ``means``: a DataFrame with columns strategy, x, metric, mean, low, high, n_seeds (and optionally
     eval_set): per strategy and x, the mean of a metric over seeds and its 95 % interval (low and
     high NaN for one seed: a point without a bar). x NaN: a group that does not set the swept value,
     e.g. ``sampler=xx`` in a sweep of ``sampler.alpha``: drawn as a horizontal line with its band.
     ``deltas`` (optional): columns strategy, x, metric, delta, low, high, verdict (optionally
     eval_set): per non-baseline strategy and x, the difference to the baseline strategy at the same
     x, its 95 % interval, and the verdict ("better", "worse", "not significant").
     The swept option's name (``x_name``) and the baseline strategy's name.
Out: ``draw_curves``: a matplotlib Figure, per metric a column of two panels: the metric against x,
     one line per strategy with error bars; below it, each strategy's difference to the baseline with
     its interval and a zero line (filled markers: significant; hollow: not). The x axis is
     logarithmic when the values span more than a decade. ``save_curves``: one PNG per eval set.
     ``swept_value``: which override of a sweep's group keys ("sampler=hybrid data.max_examples=1000")
     is numeric and varies, the x of each group and the strategy (the rest of its key);
     ``SweptValue.baseline_pairs``: each group with the baseline strategy's group at the same x
     (what the differences should be computed between).
     ``means_table``: the ``means`` frame from ``mdr.comparison`` groups (mean and t interval over seeds).

Nothing here computes a test: the intervals and verdicts are drawn as given, so the picture shows
the numbers of the summary's tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from mdr.comparison import eval_sets

MEANS_COLUMNS = ("strategy", "x", "metric", "mean", "low", "high", "n_seeds")
DELTAS_COLUMNS = ("strategy", "x", "metric", "delta", "low", "high", "verdict")
SIGNIFICANT = ("better", "worse")
ALL_ALIKE = "(all alike)"


@dataclass
class SweptValue:
    """The numeric override that varies across a sweep's groups. A group that does not set it (e.g.
    ``sampler=xx`` in a sweep of ``sampler.alpha``) has x None: a reference drawn across all x."""

    name: str                       # e.g. "data.max_examples"
    x: dict[str, float | None]      # group key -> its value
    strategy: dict[str, str]        # group key -> the rest of the key (the line it belongs to)

    @property
    def log_scale(self) -> bool:
        return log_scale([x for x in self.x.values() if x is not None])

    def baseline_pairs(self, baseline: str) -> list[tuple[str, str]]:
        """(group key, the key it is compared with): each group of another strategy against the group
        of the ``baseline`` strategy (the one whose overrides include all of ``baseline``'s, e.g.
        ``sampler=xx``; a value of the swept option in it is ignored) at the same x, or against the
        baseline's reference group without x."""
        wanted = {k: v for k, v in parse_key(baseline).items() if k != self.name}.items()
        base = {key for key, strategy in self.strategy.items() if wanted <= parse_key(strategy).items()}
        at = {self.x[key]: key for key in base}
        return [(key, at.get(x, at.get(None))) for key, x in self.x.items()
                if key not in base and at.get(x, at.get(None)) is not None]


def log_scale(xs) -> bool:
    """A logarithmic axis for positive values spanning more than a decade."""
    xs = [float(x) for x in xs]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 10


def parse_key(key: str) -> dict[str, str]:
    """``"sampler=hybrid +data.max_examples=1000"`` -> ``{"sampler": "hybrid", "data.max_examples": "1000"}``
    (a word without ``=`` belongs to the value before it: values may hold spaces)."""
    out: dict[str, str] = {}
    last = None
    for word in key.split():
        name, sep, value = word.partition("=")
        if sep and re.fullmatch(r"[+~]{0,2}[\w.@/-]+", name):
            last = name.lstrip("+~")
            out[last] = value
        elif last is not None:
            out[last] += " " + word
    return out


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def swept_value(keys: list[str]) -> SweptValue | None:
    """The override that is a number in every group key that sets it and takes at least two values;
    None when there is none. With several, the one with the most distinct values (then the first
    named); the others stay in the strategy names. Groups without it are references (x None)."""
    if len(keys) < 2 or ALL_ALIKE in keys:
        return None
    parsed = {key: parse_key(key) for key in keys}
    candidates = []
    for name in dict.fromkeys(n for p in parsed.values() for n in p):
        values = [_number(p[name]) for p in parsed.values() if name in p]
        if all(v is not None for v in values) and len(set(values)) > 1:
            candidates.append((len(set(values)), name))
    if not candidates:
        return None
    name = max(candidates, key=lambda c: c[0])[1]  # max keeps the first of equals
    x = {key: _number(p[name]) if name in p else None for key, p in parsed.items()}
    strategy = {key: " ".join(f"{k}={v}" for k, v in p.items() if k != name) or "all runs" for key, p in parsed.items()}
    return SweptValue(name, x, strategy)


def means_table(group_list, swept: SweptValue, metrics: list[str] | None = None) -> pd.DataFrame:
    """The ``means`` frame from ``mdr.comparison.Group`` s: per eval set, strategy, x and metric, the
    mean over seeds and its 95 % t interval (``mdr.stats.seed_interval``)."""
    rows = []
    for g in group_list:
        for name in eval_sets([g]):
            declared = [m.name for m in g.metrics(name).values() if m.headline]  # the benchmark's headline metrics
            for metric in metrics or declared:
                if g.values(name, metric):
                    s = g.interval(name, metric)
                    rows.append({"eval_set": name, "strategy": swept.strategy[g.key], "x": swept.x[g.key], "metric": metric,
                                 "mean": s.mean, "low": s.low, "high": s.high, "n_seeds": s.n})
    return pd.DataFrame(rows, columns=["eval_set", *MEANS_COLUMNS])


def _check(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; expected {list(columns)}")


def _format(x: float) -> str:
    return f"{x:g}" if x < 1e5 else f"{x:.2g}"


def draw_curves(means: pd.DataFrame, deltas: pd.DataFrame | None, x_name: str, baseline: str,
                metrics: list[str] | None = None, title: str | None = None) -> Figure:
    """The figure (see the module doc) for one eval set (``title``: its name); ``metrics`` default:
    those of ``means``, in their order there (``means_table``: the benchmarks' declaration order)."""
    _check(means, MEANS_COLUMNS, "means")
    deltas = deltas if deltas is not None else pd.DataFrame(columns=list(DELTAS_COLUMNS))
    _check(deltas, DELTAS_COLUMNS, "deltas")
    present = list(dict.fromkeys(means["metric"]))
    metrics = metrics or present
    strategies = list(dict.fromkeys([baseline] * (baseline in set(means["strategy"])) + list(means["strategy"])))
    color = {s: f"C{i % 10}" for i, s in enumerate(strategies)}
    xs = sorted(x for x in set(means["x"].astype(float)) | set(deltas["x"].astype(float)) if math.isfinite(x))
    logarithmic = log_scale(xs)

    fig = Figure(figsize=(4.2 * len(metrics), 6.4))
    axes = fig.subplots(2, len(metrics), squeeze=False, sharex="col")
    for col, metric in enumerate(metrics):
        top, bottom = axes[0][col], axes[1][col]
        for strategy in strategies:
            rows = means[(means["strategy"] == strategy) & (means["metric"] == metric)].sort_values("x")
            for _, ref in rows[rows["x"].isna()].iterrows():  # not swept: the same at every x
                top.axhline(ref["mean"], color=color[strategy], linestyle=":", linewidth=1.2, label=strategy)
                if math.isfinite(ref["low"]) and math.isfinite(ref["high"]):
                    top.axhspan(ref["low"], ref["high"], color=color[strategy], alpha=0.12, linewidth=0)
            rows = rows[rows["x"].notna()]
            if rows.empty:
                continue
            mean, low, high = (rows[c].to_numpy(dtype=float) for c in ("mean", "low", "high"))
            top.errorbar(rows["x"].to_numpy(dtype=float), mean, yerr=[mean - low, high - mean], label=strategy,
                         color=color[strategy], marker="o", markersize=4, capsize=3, linewidth=1.2)
        top.set_title(metric)
        if col == 0:
            top.set_ylabel("mean over seeds")
        top.grid(alpha=0.3)
        rows_of = deltas[deltas["metric"] == metric]
        if rows_of.empty:
            bottom.text(0.5, 0.5, "no paired differences", ha="center", va="center", transform=bottom.transAxes, color="grey")
            bottom.set_yticks([])
        for strategy in [s for s in strategies if s != baseline]:
            rows = rows_of[(rows_of["strategy"] == strategy) & rows_of["x"].notna()].sort_values("x")
            if rows.empty:
                continue
            x = rows["x"].to_numpy(dtype=float)
            delta, low, high = (rows[c].to_numpy(dtype=float) for c in ("delta", "low", "high"))
            bottom.errorbar(x, delta, yerr=[delta - low, high - delta], label=strategy, color=color[strategy],
                            capsize=3, linewidth=1.2)
            significant = rows["verdict"].isin(SIGNIFICANT).to_numpy()
            bottom.plot(x[significant], delta[significant], "o", color=color[strategy], markersize=5)
            bottom.plot(x[~significant], delta[~significant], "o", markerfacecolor="white", color=color[strategy], markersize=5)
        if not rows_of.empty:
            bottom.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
            bottom.set_ylabel(f"difference to {baseline}" if col == 0 else "")
            bottom.grid(alpha=0.3)
        bottom.set_xlabel(x_name)
        for ax in (top, bottom):
            if logarithmic:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(xs, [_format(x) for x in xs])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(f"{title or 'headline metrics'} against {x_name}: mean over seeds with its 95 % interval\n"
                 f"below: the difference to {baseline} at the same {x_name}, with its interval (filled: significant)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return fig


def save_curves(means: pd.DataFrame, deltas: pd.DataFrame | None, x_name: str, baseline: str, out_dir: str | Path,
                stem: str = "curves", metrics: list[str] | None = None, dpi: int = 120) -> list[Path]:
    """``draw_curves`` saved as PNG in ``out_dir``: ``<stem>.png``, or ``<stem>-<eval set>.png`` per
    eval set when ``means`` has an ``eval_set`` column; returns the paths written."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if "eval_set" not in means.columns:
        parts = [(None, means, deltas)]
    else:
        parts = [(name, means[means["eval_set"] == name],
                  deltas[deltas["eval_set"] == name] if deltas is not None and "eval_set" in deltas.columns else deltas)
                 for name in dict.fromkeys(means["eval_set"])]
    paths = []
    for name, m, d in parts:
        path = Path(out_dir, f"{stem}-{_safe(name)}.png" if name is not None else f"{stem}.png")
        fig = draw_curves(m, d, x_name, baseline, metrics, title=name)
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", str(name))

