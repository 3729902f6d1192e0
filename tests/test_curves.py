"""Curves over a swept numeric value (mdr.curves): which override is swept, and the drawn points are
the table's values (read back from the matplotlib artists); the PNGs are written."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mdr.comparison import Group, Job
from mdr.curves import draw_curves, log_scale, means_table, parse_key, save_curves, swept_value

SIZES = [40, 80, 160, 320, 655]
METRICS = ["monolingual_map", "crosslingual_map", "multilingual_map"]


def synthetic_tables(eval_sets=("xquad_split",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Made-up means with intervals (one point without: one seed) and differences with verdicts."""
    rng = np.random.default_rng(0)
    means, deltas = [], []
    for name in eval_sets:
        for strategy in ("sampler=xx", "sampler=hybrid"):
            for x in SIZES:
                for metric in METRICS:
                    mean, half = rng.uniform(0.2, 0.8), rng.uniform(0.005, 0.05)
                    single = strategy == "sampler=xx" and x == 80
                    means.append({"eval_set": name, "strategy": strategy, "x": x, "metric": metric, "mean": mean,
                                  "low": math.nan if single else mean - half, "high": math.nan if single else mean + 1.5 * half,
                                  "n_seeds": 1 if single else 3})
        for x in SIZES:
            for metric in METRICS[:2]:  # no paired test for multilingual_map: its panel says so
                delta = rng.uniform(-0.05, 0.05)
                deltas.append({"eval_set": name, "strategy": "sampler=hybrid", "x": x, "metric": metric, "delta": delta,
                               "low": delta - 0.01, "high": delta + 0.02, "verdict": "better" if x >= 320 else "not significant"})
    return pd.DataFrame(means), pd.DataFrame(deltas)


def test_swept_value_finds_the_numeric_override_that_varies():
    keys = [f"sampler={s} data.max_examples={n}" for n in SIZES for s in ("xx", "hybrid")]
    swept = swept_value(keys)
    assert swept.name == "data.max_examples" and swept.log_scale  # 40 .. 655 spans more than a decade
    assert swept.x["sampler=hybrid data.max_examples=160"] == 160.0
    assert swept.strategy["sampler=hybrid data.max_examples=160"] == "sampler=hybrid"
    assert swept.baseline_pairs("sampler=xx") == [(f"sampler=hybrid data.max_examples={n}", f"sampler=xx data.max_examples={n}")
                                                  for n in SIZES]
    assert swept.baseline_pairs("sampler=xx data.max_examples=655") == swept.baseline_pairs("sampler=xx")
    # alpha: the X-X group does not set it and is the reference of every alpha; a linear axis
    alpha = swept_value(["sampler=xx", "sampler=hybrid +sampler.alpha=0.25", "sampler=hybrid +sampler.alpha=0.5",
                         "sampler=hybrid +sampler.alpha=0.75"])
    assert alpha.name == "sampler.alpha" and alpha.x["sampler=xx"] is None and not alpha.log_scale
    assert alpha.baseline_pairs("sampler=xx") == [(f"sampler=hybrid +sampler.alpha={a}", "sampler=xx") for a in (0.25, 0.5, 0.75)]
    # two numeric overrides: the one with more values is x, the other names the lines
    two = swept_value([f"data.batch_size={b} trainer.max_steps={s}" for b in (16, 32) for s in (10, 20, 40)])
    assert two.name == "trainer.max_steps" and set(two.strategy.values()) == {"data.batch_size=16", "data.batch_size=32"}
    assert swept_value(["sampler=xx", "sampler=hybrid"]) is None  # nothing numeric
    assert swept_value(["data.max_examples=40", "data.max_examples=null"]) is None  # null is not a number
    assert swept_value(["(all alike)"]) is None
    assert parse_key("sampler=hybrid summary.baseline=a b") == {"sampler": "hybrid", "summary.baseline": "a b"}
    assert log_scale([1, 10]) is False and log_scale([1, 10.5]) is True and log_scale([0, 100]) is False


def test_the_drawn_points_are_the_tables_values():
    means, deltas = synthetic_tables()
    fig = draw_curves(means, deltas, "data.max_examples", "sampler=xx", metrics=METRICS)
    axes = np.array(fig.axes).reshape(2, len(METRICS))
    for col, metric in enumerate(METRICS):
        top, bottom = axes[0, col], axes[1, col]
        assert top.get_xscale() == "log" and bottom.get_xlabel() == "data.max_examples"
        drawn = {c.get_label(): c for c in top.containers}
        assert list(drawn) == ["sampler=xx", "sampler=hybrid"]  # the baseline first
        for strategy, container in drawn.items():
            table = means[(means.strategy == strategy) & (means.metric == metric)].sort_values("x")
            line, _, (bars,) = container.lines
            assert np.array_equal(line.get_xdata(), table.x.to_numpy(dtype=float))
            assert np.allclose(line.get_ydata(), table["mean"])
            segments = bars.get_segments()
            for (x, low, high), segment in zip(table[["x", "low", "high"]].itertuples(index=False), segments):
                if math.isnan(low):  # one seed: no bar
                    assert segment.size == 0 or np.isnan(segment).all()
                else:
                    assert np.allclose(segment, [[x, low], [x, high]])
        rows = deltas[deltas.metric == metric].sort_values("x")
        if rows.empty:
            assert not bottom.containers and "no paired differences" in [t.get_text() for t in bottom.texts]
            continue
        [container] = bottom.containers
        line, _, (bars,) = container.lines
        assert container.get_label() == "sampler=hybrid"
        assert np.allclose(line.get_ydata(), rows.delta) and np.array_equal(line.get_xdata(), rows.x.to_numpy(dtype=float))
        assert np.allclose([s[0][1] for s in bars.get_segments()], rows.low)
        assert np.allclose([s[1][1] for s in bars.get_segments()], rows.high)
        assert any(list(ln.get_ydata()) == [0, 0] for ln in bottom.lines)  # the zero line
        filled = [ln for ln in bottom.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"][0]
        hollow = [ln for ln in bottom.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"][0]
        assert list(filled.get_xdata()) == [320, 655] and list(hollow.get_xdata()) == [40, 80, 160]


def test_a_group_without_the_swept_value_is_a_reference_line():
    rows = [{"strategy": "sampler=hybrid", "x": a, "metric": "crosslingual_map", "mean": m, "low": m - 0.01, "high": m + 0.01,
             "n_seeds": 3} for a, m in ((0.25, 0.40), (0.5, 0.45), (0.75, 0.42))]
    rows.append({"strategy": "sampler=xx", "x": math.nan, "metric": "crosslingual_map", "mean": 0.30, "low": 0.28, "high": 0.33,
                 "n_seeds": 3})
    fig = draw_curves(pd.DataFrame(rows), None, "sampler.alpha", "sampler=xx")
    top = fig.axes[0]
    assert top.get_xscale() == "linear"
    reference = [ln for ln in top.lines if ln.get_label() == "sampler=xx"]
    assert len(reference) == 1 and np.allclose(reference[0].get_ydata(), [0.30, 0.30])
    [band] = top.patches
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((0.28, 0.33))


def test_save_curves_writes_one_png_per_eval_set(tmp_path):
    means, deltas = synthetic_tables(eval_sets=("xquad_split", "mlqa r"))
    paths = save_curves(means, deltas, "data.max_examples", "sampler=xx", tmp_path / "sweep")
    assert [p.name for p in paths] == ["curves-xquad_split.png", "curves-mlqa_r.png"]
    for path in paths:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert width > 1000 and height > 600
    [single] = save_curves(means.drop(columns="eval_set")[means.eval_set == "xquad_split"], None, "data.max_examples",
                           "sampler=xx", tmp_path)
    assert single.name == "curves.png" and single.stat().st_size > 0
    with pytest.raises(ValueError, match=r"means lacks column\(s\) \['low', 'high'\]"):
        draw_curves(means.drop(columns=["low", "high"]), None, "x", "sampler=xx")


def job(folder: Path, key: str, seed: int, value: float) -> Job:
    return Job(folder / f"{key}-{seed}", [*key.split(), f"seed={seed}"], {"results": {"xq": {"crosslingual_map": value}}}, None)


def test_means_table_from_sweep_groups_is_the_mean_and_t_interval_over_seeds(tmp_path):
    values = {"sampler=xx data.max_examples=40": [0.30, 0.34, 0.32], "sampler=hybrid data.max_examples=40": [0.41, 0.40, 0.45],
              "sampler=xx data.max_examples=400": [0.50, 0.52, 0.49], "sampler=hybrid data.max_examples=400": [0.60]}
    groups = [Group(key, [job(tmp_path, key, s, v) for s, v in enumerate(vs)]) for key, vs in values.items()]
    swept = swept_value([g.key for g in groups])
    table = means_table(groups, swept, ["crosslingual_map"])
    assert len(table) == 4 and set(table.eval_set) == {"xq"}
    for key, vs in values.items():
        row = table[(table.strategy == swept.strategy[key]) & (table.x == swept.x[key])].iloc[0]
        assert row["mean"] == pytest.approx(np.mean(vs)) and row.n_seeds == len(vs)
        if len(vs) > 1:  # the t interval, computed here with scipy
            low, high = scipy_stats.t.interval(0.95, len(vs) - 1, loc=np.mean(vs), scale=scipy_stats.sem(vs))
            assert (row.low, row.high) == pytest.approx((low, high))
        else:
            assert math.isnan(row.low) and math.isnan(row.high)
    fig = draw_curves(table, None, swept.name, "sampler=xx")
    assert {c.get_label() for c in fig.axes[0].containers} == {"sampler=xx", "sampler=hybrid"}
